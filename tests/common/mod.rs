//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

#[cfg(feature = "postgres")]
pub mod pg;

use std::sync::Arc;

use parking_lot::Mutex;

/// A log the handlers append to, to check order and timing.
#[derive(Clone)]
pub struct Trace<T>(pub Arc<Mutex<Vec<T>>>);

impl<T> Default for Trace<T> {
    fn default() -> Self {
        Trace(Arc::new(Mutex::new(Vec::new())))
    }
}

impl<T: Clone> Trace<T> {
    pub fn push(&self, item: T) {
        self.0.lock().push(item);
    }

    pub fn items(&self) -> Vec<T> {
        self.0.lock().clone()
    }
}

/// A paused tokio clock: timers fire as soon as the runtime is idle, at the
/// exact virtual time they were set for.
pub fn pause() {
    tokio::time::pause();
}

/// The example `name`, built into this test's own target directory: with
/// every feature when this test was (as `cargo test --all-features`
/// builds it, so cargo finds it up to date), else with `features`. A test
/// run alone gets it built and current.
pub fn example_binary(name: &str, features: &str) -> std::path::PathBuf {
    use std::path::Path;
    let exe = std::env::current_exe().expect("the test's own path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test binary lives in <target>/<profile>/deps");
    let target_dir = profile_dir.parent().expect("<target>/<profile>");
    let mut cargo = std::process::Command::new(env!("CARGO"));
    cargo.args(["build", "--example", name]);
    if cfg!(all(feature = "postgres", feature = "test-utils")) {
        cargo.arg("--all-features");
    } else {
        cargo.args(["--features", features]);
    }
    if profile_dir.ends_with("release") {
        cargo.arg("--release");
    }
    let built = cargo
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo to build the example");
    assert!(
        built.status.success(),
        "building the {name} example failed:\n{}",
        String::from_utf8_lossy(&built.stderr)
    );
    profile_dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
}

/// Kills a child process still running when its patience runs out, so a
/// test waiting on it fails instead of hanging.
pub struct Watchdog {
    done: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<bool>,
}

impl Watchdog {
    /// Watches `child` for `patience`.
    pub fn arm(child: &std::process::Child, patience: std::time::Duration) -> Self {
        let pid = child.id().to_string();
        let (done, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || match rx.recv_timeout(patience) {
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                let _ = std::process::Command::new("kill")
                    .args(["-9", &pid])
                    .status();
                true
            }
            _ => false,
        });
        Watchdog { done, thread }
    }

    /// Stands down; returns whether it had to kill the child.
    pub fn disarm(self) -> bool {
        let _ = self.done.send(());
        self.thread.join().unwrap_or(true)
    }
}
