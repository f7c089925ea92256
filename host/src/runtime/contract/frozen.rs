//! Tests that every published contract folder (`wit/vX.Y.Z`) stays byte for byte as it was
//! published, and that the SDK's copy of each folder it carries is the same.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::Contract;

/// sha256 of each published `wit/vX.Y.Z` folder (see [`folder_hash`]).
///
/// A published contract version must never change: plugins built against it are running
/// somewhere, and the host promises to keep running them. A change is a new version folder
/// (`wit/v0.2.0`), its own module under `runtime/contract/`, and conversions.
const FROZEN: &[(&str, &str)] = &[(
    "v0.1.0",
    "39ddefe63e0e45d426e9572a9c55a6346e61116f33caacbc0506dacb43be8501",
)];

/// Contract folders the host serves that are not published yet, so still open to change:
/// `wit/v0.2.0` gains what delivery needs before it is frozen. Publishing one moves it from
/// here to [`FROZEN`] with its hash. The SDK's copy is still checked against `wit/`.
const OPEN: &[&str] = &["v0.2.0"];

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the host crate sits in the repository")
        .to_path_buf()
}

/// Every file under `dir`, as paths relative to it with `/` separators, sorted.
fn files(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let relative = path.strip_prefix(root).expect("under the root");
                let parts: Vec<_> = relative
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                out.push(parts.join("/"));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// sha256 over every file of `dir`, in path order: its relative path, a NUL, its length as
/// 8 little-endian bytes, its bytes.
fn folder_hash(dir: &Path) -> String {
    let mut hash = Sha256::new();
    for file in files(dir) {
        let bytes = std::fs::read(dir.join(&file)).expect("readable WIT file");
        hash.update(file.as_bytes());
        hash.update([0]);
        hash.update((bytes.len() as u64).to_le_bytes());
        hash.update(&bytes);
    }
    hex::encode(hash.finalize())
}

#[test]
fn published_contract_folders_never_change() {
    for (folder, pinned) in FROZEN {
        let dir = repository().join("wit").join(folder);
        let now = folder_hash(&dir);
        assert_eq!(
            &now, pinned,
            "wit/{folder} changed (sha256 {now}, published as {pinned}). A published contract \
             version must never change: plugins built against it must keep loading as they \
             are. Revert the change and put it in a new version folder (wit/vX.Y.Z with a \
             higher version), with its own module under host/src/runtime/contract/."
        );
    }
}

#[test]
fn every_contract_the_host_serves_is_pinned() {
    for contract in Contract::ALL {
        let folder = format!("v{}", contract.package_version());
        let pinned = FROZEN.iter().any(|(f, _)| *f == folder);
        let open = OPEN.contains(&folder.as_str());
        assert!(
            pinned != open,
            "contract {contract} is served, so wit/{folder} must be either pinned in FROZEN \
             (published) or listed in OPEN (not yet published), not both or neither"
        );
        assert!(repository().join("wit").join(&folder).is_dir());
    }
}

#[test]
fn the_sdk_carries_the_same_wit_as_the_repository() {
    let sdk = repository().join("sdk/wit");
    let carried: Vec<_> = std::fs::read_dir(&sdk)
        .expect("sdk/wit exists")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    let latest = format!("v{}", Contract::LATEST.package_version());
    assert!(
        carried.contains(&latest),
        "sdk/wit lacks {latest}: {carried:?}"
    );
    for folder in carried {
        let (ours, theirs) = (repository().join("wit").join(&folder), sdk.join(&folder));
        assert_eq!(
            files(&ours),
            files(&theirs),
            "sdk/wit/{folder} must hold the same files as wit/{folder}"
        );
        assert_eq!(
            folder_hash(&ours),
            folder_hash(&theirs),
            "sdk/wit/{folder} differs from wit/{folder}: copy wit/{folder} over it (wit/ is \
             the source; the SDK carries a copy so that it can be packaged)"
        );
    }
}
