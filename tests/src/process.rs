//! `HostProcess`: the real `tessera serve` binary in a child process, for tests that must
//! measure the host's own memory, see it survive (or crash and restart), or run it exactly
//! as an operator does.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::{ADMIN_KEY, Api, workspace};

/// The `tessera` binary of this test's profile, built (or found fresh) by cargo once per test
/// process; `TESSERA_TEST_BINARY` names another one to run instead (a build of another
/// commit, to measure the same attack before and after a change).
pub fn tessera_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| match std::env::var_os("TESSERA_TEST_BINARY") {
            Some(path) => PathBuf::from(path),
            None => build_binary(),
        })
        .clone()
}

fn build_binary() -> PathBuf {
    // The test runs from target/<profile>/deps/; the binary lives in target/<profile>/.
    let exe = std::env::current_exe().expect("test executable");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .args(["build", "-p", "tessera", "--bin", "tessera"])
        .current_dir(workspace());
    // Cargo gives a test its package's variables (CARGO_PKG_NAME, CARGO_MANIFEST_DIR, ...);
    // build scripts that watch them (ring's does) would rebuild on every run if they leaked
    // into the inner build.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("CARGO_PKG_")
            || key.starts_with("CARGO_MANIFEST_")
            || [
                "CARGO_CRATE_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
            ]
            .contains(&key.as_ref())
        {
            build.env_remove(key.as_ref());
        }
    }
    if profile_dir.ends_with("release") {
        build.arg("--release");
    }
    let status = build.status().expect("cargo runs");
    assert!(status.success(), "building the tessera binary failed");
    // Another checkout sharing this target directory may rebuild `tessera` while tests run:
    // each checkout runs its own copy (renamed into place, so readers never see half a file).
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    std::hash::Hash::hash(&workspace(), &mut hasher);
    let key = std::hash::Hasher::finish(&hasher);
    let copy = profile_dir.join(format!("tessera-under-test-{key:016x}"));
    let tmp = profile_dir.join(format!(
        "tessera-under-test-{key:016x}.{}",
        std::process::id()
    ));
    std::fs::copy(profile_dir.join("tessera"), &tmp).expect("copying the tessera binary");
    std::fs::rename(&tmp, &copy).expect("renaming the tessera binary");
    copy
}

/// How to start a [`HostProcess`].
#[derive(Debug, Clone)]
pub struct HostOptions {
    /// Extra `tessera serve` arguments (`--allow-address`, ...).
    pub args: Vec<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Serve the bundled plugins from `target/plugins` (as the README's run command does).
    pub bundled_plugins: bool,
    /// Kill the host (SIGKILL) when its resident memory passes this many bytes, so a
    /// runaway host cannot harm the machine; [`HostProcess::killed_for_memory`] says whether
    /// it happened. (An address-space limit would not do: the pooling allocator reserves
    /// far more virtual memory than it ever touches.)
    pub memory_watchdog: Option<u64>,
    /// Run this binary instead of the workspace's, with no plugin flags: it finds the bundled
    /// plugins shipped beside it (or none), as an installed binary does.
    pub binary: Option<PathBuf>,
}

impl Default for HostOptions {
    fn default() -> Self {
        Self {
            args: Vec::new(),
            env: Vec::new(),
            bundled_plugins: false,
            memory_watchdog: Some(4 << 30),
            binary: None,
        }
    }
}

/// `tessera serve` in a child process on a free loopback port, killed on drop. Its output is
/// kept, so a failing test can print it.
pub struct HostProcess {
    /// The host's API with [`ADMIN_KEY`].
    pub api: Api,
    /// The data directory (kept across restarts).
    pub data_dir: PathBuf,
    options: HostOptions,
    child: Child,
    log: Arc<Mutex<String>>,
    output_bytes: Arc<std::sync::atomic::AtomicU64>,
    killed_for_memory: Arc<std::sync::atomic::AtomicBool>,
    _tmp: Option<tempfile::TempDir>,
}

impl std::ops::Deref for HostProcess {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

impl HostProcess {
    /// A host on a fresh data directory.
    pub fn start(options: HostOptions) -> Self {
        let tmp = tempfile::tempdir().expect("temp dir");
        let mut host = Self::start_in(tmp.path(), options);
        host._tmp = Some(tmp);
        host
    }

    /// A host on `data_dir` (which may hold a previous host's state).
    pub fn start_in(data_dir: &Path, options: HostOptions) -> Self {
        let (child, log, output_bytes, base) = spawn(data_dir, &options);
        let killed_for_memory = watch_memory(child.id(), options.memory_watchdog);
        Self {
            api: Api::new(base),
            data_dir: data_dir.to_path_buf(),
            options,
            child,
            log,
            output_bytes,
            killed_for_memory,
            _tmp: None,
        }
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// True while the process runs.
    pub fn is_alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// How the process ended, if it has (`None` while it runs).
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// True when the memory watchdog killed the host.
    pub fn killed_for_memory(&self) -> bool {
        self.killed_for_memory
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Everything the host printed so far.
    pub fn output(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Bytes the process wrote to stdout and stderr so far (all of them, not only what
    /// [`output`](Self::output) keeps).
    pub fn output_bytes(&self) -> u64 {
        self.output_bytes.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Resident memory now, in bytes. Panics when it cannot be read: a test that measures
    /// must never pass without measuring.
    pub fn resident_bytes(&self) -> u64 {
        proc_status_bytes(self.pid(), "VmRSS:")
    }

    /// The most resident memory the process ever had, in bytes (the kernel's high-water
    /// mark). Panics when it cannot be read.
    pub fn peak_resident_bytes(&self) -> u64 {
        proc_status_bytes(self.pid(), "VmHWM:")
    }

    /// Open file descriptors of the process.
    pub fn open_files(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .expect("the host's /proc/PID/fd is readable")
            .count()
    }

    /// Kills the process (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Kills the process and starts a new one on the same data directory and options.
    pub fn restart(&mut self) {
        self.kill();
        let (child, log, output_bytes, base) = spawn(&self.data_dir, &self.options);
        self.killed_for_memory = watch_memory(child.id(), self.options.memory_watchdog);
        self.child = child;
        self.log = log;
        self.output_bytes = output_bytes;
        self.api = Api::new(base);
    }
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- host output ---\n{}", self.output());
        }
    }
}

type Spawned = (
    Child,
    Arc<Mutex<String>>,
    Arc<std::sync::atomic::AtomicU64>,
    String,
);

fn spawn(data_dir: &Path, options: &HostOptions) -> Spawned {
    let mut command = Command::new(options.binary.clone().unwrap_or_else(tessera_binary));
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .args(&options.args)
        .env("TESSERA_ADMIN_KEY", ADMIN_KEY)
        .env("NO_COLOR", "1")
        .envs(options.env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if options.binary.is_some() {
        // As installed: whatever the binary finds beside itself.
    } else if options.bundled_plugins {
        let plugins = workspace().join("target/plugins");
        assert!(
            plugins.is_dir(),
            "{} is missing: run scripts/build-plugins.sh first",
            plugins.display()
        );
        command.arg("--plugins-dir").arg(plugins);
    } else {
        command.arg("--no-bundled-plugins");
    }
    let mut child = command.spawn().expect("tessera serve starts");
    let log = Arc::new(Mutex::new(String::new()));
    let output_bytes = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (tx, rx) = std::sync::mpsc::channel();
    // Keep draining both pipes so that the host never blocks on a full one.
    let stdout = child.stdout.take().expect("stdout");
    let kept = log.clone();
    let counted = output_bytes.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            counted.fetch_add(line.len() as u64 + 1, std::sync::atomic::Ordering::SeqCst);
            if let Some(address) = line.split("listening on http://").nth(1) {
                let address: String = address
                    .chars()
                    .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                    .collect();
                let _ = tx.send(address);
            }
            let mut kept = kept.lock().unwrap();
            // A hostile plugin may log a lot: keep the last 1 MiB.
            if kept.len() > 1 << 20 {
                let cut = kept.len() - (512 << 10);
                let cut = (cut..kept.len())
                    .find(|i| kept.is_char_boundary(*i))
                    .unwrap_or(kept.len());
                kept.drain(..cut);
            }
            kept.push_str(&(line + "\n"));
        }
    });
    let stderr = child.stderr.take().expect("stderr");
    let kept = log.clone();
    let counted = output_bytes.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            counted.fetch_add(line.len() as u64 + 1, std::sync::atomic::Ordering::SeqCst);
            kept.lock().unwrap().push_str(&(line + "\n"));
        }
    });
    let address = rx
        .recv_timeout(Duration::from_secs(120))
        .unwrap_or_else(|_| {
            let _ = child.kill();
            panic!(
                "tessera serve did not start listening:\n{}",
                log.lock().unwrap()
            )
        });
    (child, log, output_bytes, format!("http://{address}"))
}

/// Polls the process's resident memory every 5 ms and kills it past `limit` bytes.
fn watch_memory(pid: u32, limit: Option<u64>) -> Arc<std::sync::atomic::AtomicBool> {
    let killed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let Some(limit) = limit else {
        return killed;
    };
    let flag = killed.clone();
    std::thread::spawn(move || {
        loop {
            let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
                return;
            };
            let rss = status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .map_or(0, |kb| kb * 1024);
            // A zombie has no VmRSS line: the process is gone.
            if !status.contains("VmRSS:") {
                return;
            }
            if rss > limit {
                flag.store(true, std::sync::atomic::Ordering::SeqCst);
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    killed
}

/// A `/proc/PID/status` field in kB, as bytes; panics when it cannot be read.
fn proc_status_bytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status cannot be read: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Resident memory of this process, in bytes; panics when it cannot be read.
pub fn own_resident_bytes() -> u64 {
    proc_status_bytes(std::process::id(), "VmRSS:")
}
