//! Helpers for the `kessel` binary's tests against an HTTP API: a kessel
//! HTTP API served in this test process (a memory queue whose worker runs
//! `greet` and `other`), child processes awaited with a deadline, and
//! conditions awaited by polling.

use std::io::Read;
use std::process::{Child, ExitStatus};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use kessel::web::{Api, Auth};
use kessel::{JobContext, JobError, Queue};
use serde_json::Value;

/// How long anything awaited may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// A port nobody listens on right now (the OS picked it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A kessel HTTP API on localhost, on a memory queue whose worker runs
/// `greet` (payload `"fail"` is buried, anything else completes with
/// itself) and `other` (completes), both on tag `default`.
pub struct ApiServer {
    pub url: String,
    handle: actix_web::dev::ServerHandle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ApiServer {
    pub fn start(auth: Auth) -> ApiServer {
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            actix_rt::System::new().block_on(async move {
                let queue = Queue::new();
                for task in ["greet", "other"] {
                    queue
                        .define(task)
                        .action(|job: JobContext<Value>| async move {
                            if job.payload == "fail" {
                                Err(JobError::fatal("told to fail"))
                            } else {
                                Ok(job.payload)
                            }
                        })
                        .expect("define");
                }
                queue.process(["default"]).start().expect("worker");
                let api = Api::new(queue, auth);
                // The port was free a moment ago; another process may
                // take it in between, so try a few.
                let mut last = None;
                for _ in 0..20 {
                    let port = free_port();
                    match api.clone().server(("127.0.0.1", port)) {
                        Ok(server) => {
                            let _ = tx.send((format!("http://127.0.0.1:{port}"), server.handle()));
                            let _ = server.await;
                            return;
                        }
                        Err(e) => last = Some(e),
                    }
                }
                panic!("cannot bind a port: {last:?}");
            });
        });
        let (url, handle) = rx.recv_timeout(PATIENCE).expect("the API server starts");
        ApiServer {
            url,
            handle,
            thread: Some(thread),
        }
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        futures::executor::block_on(self.handle.stop(false));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Polls `done` until it is true; fails the test after [`PATIENCE`].
pub fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits for `child` to exit, calling `meanwhile` between polls; kills it
/// and fails the test after [`PATIENCE`]. Returns its status, stdout and
/// stderr.
pub fn wait_for(mut child: Child, mut meanwhile: impl FnMut()) -> (ExitStatus, String, String) {
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll the child") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the child process did not exit in time");
        }
        meanwhile();
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_string(&mut stdout);
    }
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut stderr);
    }
    (status, stdout, stderr)
}

/// Sends SIGTERM to `child` (as a service manager stops a service).
pub fn terminate(child: &Child) {
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("run kill")
        .success();
    assert!(ok, "kill -TERM failed");
}
