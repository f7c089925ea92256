//! The contract versions this host serves, one module each, and which one a component implements.
//!
//! Each `vX_Y` module binds one `wit/vX.Y.Z` folder: its generated bindings, its host imports
//! in the linker, its world checks, and `From` conversions between its generated types and the
//! host's own [`super::types`]. Nothing outside the runtime sees generated types.
//!
//! The version a component implements is read from the component itself: every interface it
//! exports from `tessera:cx` carries it (`tessera:cx/source@0.1.0`). A manifest that names
//! another contract is refused ([`LoadError::ContractMismatch`]).
//!
//! A new version is a module `vX_Y` (bindings, `add_to_linker`, `check_world`, conversions),
//! a variant of [`Contract`] in the matches below and in the sandbox's calls, and `latest`
//! pointed at it. The linker keeps every version's imports, so a 0.1 component goes on running
//! unchanged next to 0.2 ones: the sandbox lowers a call's input through the conversions of
//! the version the component implements (a 0.1 rule gets no past events and answers bools).

#[macro_use]
mod shared;

#[cfg(test)]
mod frozen;
pub mod v0_1;
pub mod v0_2;
#[cfg(test)]
mod worlds;

/// The newest contract version's module.
pub use v0_2 as latest;

use wasmtime::Engine;
use wasmtime::component::{Component, InstancePre, Linker};

use super::error::LoadError;
use super::{PluginKind, PluginState};

/// The WIT package every contract version belongs to.
pub const PACKAGE: &str = "tessera:cx";

/// Contract versions (`major.minor`, as manifests name them) this host serves, oldest first.
pub const SUPPORTED: &[&str] = &["0.1", "0.2"];

/// A contract version this host serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Contract {
    /// `tessera:cx@0.1.0`, the folder `wit/v0.1.0`.
    V0_1,
    /// `tessera:cx@0.2.0`, the folder `wit/v0.2.0`.
    V0_2,
}

impl Contract {
    /// Every version served, oldest first.
    pub const ALL: &[Contract] = &[Contract::V0_1, Contract::V0_2];
    /// The newest.
    pub const LATEST: Contract = Contract::V0_2;

    /// `0.1`: how manifests name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Contract::V0_1 => "0.1",
            Contract::V0_2 => "0.2",
        }
    }

    /// `0.1.0`: the WIT package's version.
    pub fn package_version(self) -> &'static str {
        match self {
            Contract::V0_1 => v0_1::PACKAGE_VERSION,
            Contract::V0_2 => v0_2::PACKAGE_VERSION,
        }
    }

    /// The version a manifest names (`0.1`), if this host serves it.
    pub fn parse(major_minor: &str) -> Option<Self> {
        Self::ALL
            .iter()
            .copied()
            .find(|c| c.as_str() == major_minor)
    }

    /// The export name of one of its interfaces: `tessera:cx/source@0.1.0`.
    pub fn interface(self, name: &str) -> String {
        format!("{PACKAGE}/{name}@{}", self.package_version())
    }

    /// Checks that a component implements `kind`'s world of this version.
    pub(super) fn check_world<T>(
        self,
        pre: &InstancePre<T>,
        kind: PluginKind,
    ) -> Result<(), LoadError> {
        match self {
            Contract::V0_1 => v0_1::check_world(pre, kind),
            Contract::V0_2 => v0_2::check_world(pre, kind),
        }
    }
}

impl Contract {
    /// True when the component exports this version's `self-test` with its types.
    pub(super) fn exports_self_test<T>(self, pre: &InstancePre<T>) -> bool {
        match self {
            Contract::V0_1 => v0_1::exports_self_test(pre),
            Contract::V0_2 => v0_2::exports_self_test(pre),
        }
    }
}

impl std::fmt::Display for Contract {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Links the host imports of every contract version served.
pub(super) fn add_to_linker(linker: &mut Linker<PluginState>) -> wasmtime::Result<()> {
    v0_1::add_to_linker(linker)?;
    v0_2::add_to_linker(linker)
}

/// `major.minor` of a WIT package version (`0.1.0` -> `0.1`), as manifests name contracts.
fn major_minor(version: &semver::Version) -> String {
    format!("{}.{}", version.major, version.minor)
}

/// The `tessera:cx` package versions named by export names (`tessera:cx/source@0.1.0`),
/// distinct and sorted, each with the first export that names it.
pub fn exported_versions<'a>(
    names: impl IntoIterator<Item = &'a str>,
) -> Vec<(semver::Version, String)> {
    let mut found: Vec<(semver::Version, String)> = Vec::new();
    for name in names {
        let Some((interface, version)) = name.split_once('@') else {
            continue;
        };
        if interface.split_once('/').map(|(package, _)| package) != Some(PACKAGE) {
            continue;
        }
        // An unparsable version names no contract this host could serve; it is reported as
        // found, so the mismatch message shows it.
        let version = semver::Version::parse(version)
            .unwrap_or_else(|_| semver::Version::new(u64::MAX, u64::MAX, 0));
        if !found.iter().any(|(v, _)| *v == version) {
            found.push((version, name.to_string()));
        }
    }
    found.sort();
    found
}

/// The contract `component` implements, read from its exports, checked against the one its
/// manifest names (`claimed`, `major.minor`).
///
/// A component that exports nothing from `tessera:cx` is taken at its manifest's word: the
/// world check then says what it lacks.
pub(super) fn of_component(
    component: &Component,
    engine: &Engine,
    claimed: &str,
) -> Result<Contract, LoadError> {
    let ty = component.component_type();
    let found = exported_versions(ty.exports(engine).map(|(name, _)| name));
    let mismatch = |component: String| LoadError::ContractMismatch {
        manifest: claimed.to_string(),
        component,
    };
    match found.as_slice() {
        [] => Contract::parse(claimed).ok_or_else(|| mismatch("none".into())),
        [(version, export)] => {
            let contract = major_minor(version);
            if contract != claimed {
                return Err(mismatch(format!("{contract} (it exports `{export}`)")));
            }
            Contract::parse(&contract).ok_or_else(|| mismatch(contract))
        }
        several => Err(mismatch(format!(
            "several versions at once ({})",
            several
                .iter()
                .map(|(_, export)| format!("`{export}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_from_tessera_export_names_only() {
        let names = [
            "wasi:cli/run@0.2.6",
            "tessera:cx/source@0.1.0",
            "tessera:cx/self-test@0.1.0",
            "tessera:cxx/source@9.0.0",
            "plain",
        ];
        let found = exported_versions(names);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(major_minor(&found[0].0), "0.1");
        assert_eq!(found[0].1, "tessera:cx/source@0.1.0");
        let two = exported_versions(["tessera:cx/source@0.1.0", "tessera:cx/rule@0.2.0"]);
        assert_eq!(two.len(), 2);
    }

    #[test]
    fn every_supported_contract_parses_and_names_its_interfaces() {
        let served: Vec<&str> = Contract::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(served, SUPPORTED);
        assert_eq!(Contract::parse("0.1"), Some(Contract::V0_1));
        assert_eq!(Contract::parse("0.2"), Some(Contract::V0_2));
        assert_eq!(Contract::parse("0.9"), None);
        assert_eq!(
            Contract::V0_1.interface("source"),
            "tessera:cx/source@0.1.0"
        );
        assert_eq!(Contract::LATEST, *Contract::ALL.last().unwrap());
        assert_eq!(latest::PACKAGE_VERSION, Contract::LATEST.package_version());
    }
}
