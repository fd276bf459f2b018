//! Webhook callbacks against HTTP receivers on localhost: one that fails
//! before it accepts, one that never answers, and a delivery that waits in
//! a SQLite file across a restart.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[cfg(feature = "postgres")]
mod common;

use futures::StreamExt;
use kessel::event::{Event, Filter};
use kessel::webhook::{verify_signature, CallbackBody, Webhooks, SIGNATURE_HEADER, TASK};
use kessel::{Error, Job, JobContext, JobError, JobId, JobStatus, Queue, RetryPolicy};

const SECRET: &[u8] = b"test secret, not a real one";

/// One request a receiver got: its headers (names lower-cased) and body.
#[derive(Debug, Clone)]
struct Request {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// How a receiver answers: these statuses in turn (then 200), or never.
enum Answers {
    InTurn(Vec<u16>),
    Never,
}

/// An HTTP receiver on a thread of its own, on a free localhost port.
struct Receiver {
    url: String,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl Receiver {
    fn start(answers: Answers) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
        let url = format!(
            "http://{}/hooks",
            listener.local_addr().expect("its address")
        );
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        std::thread::spawn(move || {
            let mut statuses = match &answers {
                Answers::InTurn(s) => s.clone().into_iter(),
                Answers::Never => Vec::new().into_iter(),
            };
            // Connections of a receiver that never answers stay open here.
            let mut held = Vec::new();
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let Some(request) = read_request(&mut stream) else {
                    continue;
                };
                seen.lock().expect("lock").push(request);
                match answers {
                    Answers::Never => held.push(stream),
                    Answers::InTurn(_) => {
                        let status = statuses.next().unwrap_or(200);
                        let _ = write!(
                            stream,
                            "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                        );
                    }
                }
            }
        });
        Receiver { url, requests }
    }

    fn requests(&self) -> Vec<Request> {
        self.requests.lock().expect("lock").clone()
    }
}

fn read_request(stream: &mut TcpStream) -> Option<Request> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let headers: Vec<(String, String)> = head
        .lines()
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(Request {
        headers,
        body: buf[head_end..head_end + length].to_vec(),
    })
}

/// A short retry policy: `attempts` attempts, 5 ms apart, no jitter.
fn quick(attempts: u32) -> RetryPolicy {
    RetryPolicy::exponential(attempts)
        .base_delay(Duration::from_millis(5))
        .jitter(0.0)
}

/// Defines `export`, whose jobs return `"exported"`, with a callback to `url`.
fn define_export(queue: &Queue, url: &str) {
    queue
        .define("export")
        .callback(url)
        .action(|_: JobContext<()>| async { Ok::<_, JobError>("exported") })
        .expect("define export");
}

/// How long a test waits for a delivery to end, in real time: far more
/// than any delivery here takes (the longest is two 200 ms timeouts), so
/// only a lost event or a stuck delivery reaches it.
const DELIVERY_DEADLINE: Duration = Duration::from_secs(60);

/// Waits for the first delivery job to reach a final state; its id. Fails
/// the test, saying so, when none does within [`DELIVERY_DEADLINE`].
async fn final_delivery(events: &mut kessel::event::EventStream) -> JobId {
    let wait = async {
        while let Some(event) = events.next().await {
            if let Event::Job(e) = event {
                if e.kind.is_final() {
                    return e.id;
                }
            }
        }
        panic!("the event stream ended before a delivery was final");
    };
    match tokio::time::timeout(DELIVERY_DEADLINE, wait).await {
        Ok(id) => id,
        Err(_) => panic!(
            "no delivery of `{TASK}` reached a final state within {DELIVERY_DEADLINE:?}: \
             its event was lost or the delivery is stuck"
        ),
    }
}

fn handler_lines(job: &Job) -> Vec<String> {
    job.logs
        .iter()
        .filter(|l| l.message.starts_with("attempt "))
        .map(|l| l.message.to_string())
        .collect()
}

#[actix_rt::test]
async fn a_receiver_that_fails_twice_gets_the_signed_callback_on_the_third_attempt() {
    let receiver = Receiver::start(Answers::InTurn(vec![500, 503]));
    let queue = Queue::new();
    queue
        .webhooks(Webhooks::new().secret("default", SECRET).retry(quick(5)))
        .expect("webhooks");
    define_export(&queue, &receiver.url);
    let mut events = queue.events(Filter::Task(TASK.into()));
    queue.process(["default"]).start().expect("worker");
    let export = queue
        .create("export", ())
        .reference("order-7")
        .await
        .expect("create");
    assert_eq!(
        export.result().await.expect("result").status,
        JobStatus::Completed
    );

    let delivery_id = final_delivery(&mut events).await;
    let delivery = queue.job(delivery_id).await.expect("the delivery");
    assert_eq!(delivery.status, JobStatus::Completed, "{delivery:?}");
    assert_eq!(delivery.attempts, 3);
    let lines = handler_lines(&delivery);
    assert_eq!(lines.len(), 3, "one log line per attempt: {lines:?}");
    assert!(lines[0].contains("answered 500"), "{lines:?}");
    assert!(lines[1].contains("answered 503"), "{lines:?}");
    assert!(lines[2].contains("answered 200"), "{lines:?}");
    assert_eq!(
        delivery
            .logs
            .iter()
            .filter_map(|l| l.data.as_ref())
            .filter(|d| d["status"].is_u64())
            .count(),
        3
    );

    // Found from the job it follows.
    let found = queue.callbacks(export.id()).await.expect("callbacks");
    assert_eq!(
        found.iter().map(|j| j.id).collect::<Vec<_>>(),
        [delivery_id]
    );

    let requests = receiver.requests();
    assert_eq!(requests.len(), 3);
    for request in &requests {
        let header = request.header(SIGNATURE_HEADER).expect("signed");
        assert_eq!(
            verify_signature(SECRET, header, &request.body, Duration::from_secs(300)),
            Ok(())
        );
        assert_eq!(request.header("content-type"), Some("application/json"));
    }
    let body: CallbackBody = serde_json::from_slice(&requests[2].body).expect("a callback body");
    assert_eq!(body.job_id, export.id());
    assert_eq!(body.task, "export");
    assert_eq!(body.reference.as_deref(), Some("order-7"));
    assert_eq!(body.status, JobStatus::Completed);
    assert_eq!(body.result, Some(serde_json::json!("exported")));
    assert_eq!(body.error, None);
}

#[actix_rt::test]
async fn a_buried_job_calls_back_with_its_error() {
    let receiver = Receiver::start(Answers::InTurn(Vec::new()));
    let queue = Queue::new();
    queue
        .webhooks(Webhooks::new().secret("partner", SECRET).retry(quick(2)))
        .expect("webhooks");
    queue
        .define("charge")
        .retry(RetryPolicy::none())
        .callback(&receiver.url)
        .callback_secret("partner")
        .action(|_: JobContext<()>| async { Err::<(), _>(JobError::fatal("card declined")) })
        .expect("define");
    let mut events = queue.events(Filter::Task(TASK.into()));
    queue.process(["default"]).start().expect("worker");
    let charge = queue.create("charge", ()).await.expect("create");
    assert_eq!(
        charge.result().await.expect("result").status,
        JobStatus::Buried
    );
    let delivery = queue
        .job(final_delivery(&mut events).await)
        .await
        .expect("read");
    assert_eq!(delivery.status, JobStatus::Completed, "{delivery:?}");
    let payload = delivery.payload.to_value().expect("json");
    assert_eq!(
        payload["secret"], "partner",
        "the secret's name, not the secret"
    );
    assert!(!delivery.payload.as_str().contains("test secret"));
    let requests = receiver.requests();
    let body: CallbackBody = serde_json::from_slice(&requests[0].body).expect("a callback body");
    assert_eq!(body.status, JobStatus::Buried);
    assert_eq!(body.error.as_deref(), Some("card declined"));
}

#[actix_rt::test]
async fn a_receiver_that_never_answers_times_out_each_attempt_and_the_delivery_is_buried() {
    let receiver = Receiver::start(Answers::Never);
    let queue = Queue::new();
    queue
        .webhooks(
            Webhooks::new()
                .secret("default", SECRET)
                .timeout("200ms")
                .retry(quick(2)),
        )
        .expect("webhooks");
    define_export(&queue, &receiver.url);
    let mut events = queue.events(Filter::Task(TASK.into()));
    queue.process(["default"]).start().expect("worker");
    let export = queue.create("export", ()).await.expect("create");
    export.result().await.expect("result");

    let delivery = queue
        .job(final_delivery(&mut events).await)
        .await
        .expect("read");
    assert_eq!(delivery.status, JobStatus::Buried, "{delivery:?}");
    assert_eq!(delivery.attempts, 2);
    let error = delivery.last_error.clone().unwrap_or_default();
    assert!(
        error.contains("did not answer within the 200ms timeout"),
        "{error}"
    );
    let lines = handler_lines(&delivery);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines.iter().all(|l| l.contains("200ms timeout")),
        "{lines:?}"
    );
    // The receiver's thread may still be reading the second request.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while receiver.requests().len() < 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        receiver.requests().len(),
        2,
        "each attempt reached the receiver"
    );
}

#[actix_rt::test]
async fn a_pending_delivery_survives_closing_and_reopening_a_sqlite_queue() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("jobs.db");
    let receiver = Receiver::start(Answers::InTurn(Vec::new()));
    // Nobody works the delivery tag in the first process.
    let hooks = || {
        Webhooks::new()
            .secret("default", SECRET)
            .tag("webhooks")
            .retry(quick(3))
    };
    let export_id = {
        let queue = Queue::sqlite(&path).await.expect("open");
        queue.webhooks(hooks()).expect("webhooks");
        define_export(&queue, &receiver.url);
        queue.process(["default"]).start().expect("worker");
        let export = queue.create("export", ()).await.expect("create");
        assert_eq!(
            export.result().await.expect("result").status,
            JobStatus::Completed
        );
        // Shutting down waits for the delivery to be stored.
        queue
            .shutdown(Duration::from_secs(5))
            .await
            .expect("shutdown");
        queue.store().close().await.expect("close");
        export.id()
    };
    assert!(receiver.requests().is_empty());

    let queue = Queue::sqlite(&path).await.expect("reopen");
    queue.webhooks(hooks()).expect("webhooks");
    define_export(&queue, &receiver.url);
    let pending = queue.callbacks(export_id).await.expect("callbacks");
    assert_eq!(
        pending.iter().map(|j| j.status).collect::<Vec<_>>(),
        [JobStatus::Ready],
        "the delivery waits in the file: {pending:?}"
    );
    let mut events = queue.events(Filter::Task(TASK.into()));
    queue.process(["webhooks"]).start().expect("worker");
    let delivery = queue
        .job(final_delivery(&mut events).await)
        .await
        .expect("read");
    assert_eq!(delivery.status, JobStatus::Completed, "{delivery:?}");
    let requests = receiver.requests();
    assert_eq!(requests.len(), 1);
    let body: CallbackBody = serde_json::from_slice(&requests[0].body).expect("a callback body");
    assert_eq!(body.job_id, export_id);
    queue
        .shutdown(Duration::from_secs(5))
        .await
        .expect("shutdown");
}

#[actix_rt::test]
async fn a_callback_that_is_not_an_http_url_is_refused_naming_the_field() {
    let queue = Queue::new();
    queue
        .webhooks(Webhooks::new().secret("default", SECRET))
        .expect("webhooks");
    for url in [
        "ftp://example.com/x",
        "example.com/hooks",
        "http://",
        "not a url",
        "",
    ] {
        let err = queue
            .define(format!("task {url}"))
            .callback(url)
            .action(|_: JobContext<()>| async { Ok::<_, JobError>(()) })
            .expect_err(url);
        assert!(
            matches!(
                err,
                Error::InvalidInput {
                    field: "callback",
                    ..
                }
            ),
            "{url:?}: {err}"
        );
    }
}

#[actix_rt::test]
async fn a_callback_without_webhooks_registered_is_refused() {
    let queue = Queue::new();
    let err = queue
        .define("export")
        .callback("http://127.0.0.1:9/hooks")
        .action(|_: JobContext<()>| async { Ok::<_, JobError>(()) })
        .expect_err("nothing would deliver it");
    assert!(
        matches!(
            err,
            Error::InvalidInput {
                field: "callback",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("queue.webhooks"), "{err}");
}

#[actix_rt::test]
async fn a_callback_secret_without_a_callback_is_refused() {
    let queue = Queue::new();
    queue
        .webhooks(Webhooks::new().secret("default", SECRET))
        .expect("webhooks");
    let err = queue
        .define("export")
        .callback_secret("default")
        .action(|_: JobContext<()>| async { Ok::<_, JobError>(()) })
        .expect_err("a secret for no URL");
    assert!(
        matches!(
            err,
            Error::InvalidInput {
                field: "callback_secret",
                ..
            }
        ),
        "{err}"
    );
}

#[actix_rt::test]
async fn a_cancelled_job_calls_back_with_its_status() {
    let receiver = Receiver::start(Answers::InTurn(Vec::new()));
    let queue = Queue::new();
    queue
        .webhooks(Webhooks::new().secret("default", SECRET).retry(quick(2)))
        .expect("webhooks");
    define_export(&queue, &receiver.url);
    let mut events = queue.events(Filter::Task(TASK.into()));
    queue.process(["default"]).start().expect("worker");
    let later = queue
        .create("export", ())
        .delay("1h")
        .await
        .expect("create");
    queue.cancel(later.id()).await.expect("cancel");
    let delivery = queue
        .job(final_delivery(&mut events).await)
        .await
        .expect("read");
    assert_eq!(delivery.status, JobStatus::Completed, "{delivery:?}");
    let requests = receiver.requests();
    let body: CallbackBody = serde_json::from_slice(&requests[0].body).expect("a callback body");
    assert_eq!(
        (body.job_id, body.status),
        (later.id(), JobStatus::Cancelled)
    );
    assert_eq!(body.attempts, 0);
}

/// The same on PostgreSQL: the delivery stored by one queue is delivered
/// by another on the same schema (skipped without a database unless
/// `KESSEL_REQUIRE_DB=1`).
#[cfg(feature = "postgres")]
#[actix_rt::test]
async fn a_pending_delivery_survives_a_restart_on_postgres() {
    let Some(db) = common::pg::fresh().await else {
        return;
    };
    let receiver = Receiver::start(Answers::InTurn(vec![500]));
    let hooks = || {
        Webhooks::new()
            .secret("default", SECRET)
            .tag("webhooks")
            .retry(quick(3))
    };
    let (lease, poll) = (Duration::from_secs(30), Duration::from_millis(50));
    let export_id = {
        let queue = db.queue(lease, poll).await;
        queue.webhooks(hooks()).expect("webhooks");
        define_export(&queue, &receiver.url);
        queue.process(["default"]).start().expect("worker");
        let export = queue.create("export", ()).await.expect("create");
        assert_eq!(
            export.result().await.expect("result").status,
            JobStatus::Completed
        );
        queue
            .shutdown(Duration::from_secs(5))
            .await
            .expect("shutdown");
        export.id()
    };
    assert!(receiver.requests().is_empty());

    let queue = db.queue(lease, poll).await;
    queue.webhooks(hooks()).expect("webhooks");
    define_export(&queue, &receiver.url);
    let mut events = queue.events(Filter::Task(TASK.into()));
    queue.process(["webhooks"]).start().expect("worker");
    let delivery = queue
        .job(final_delivery(&mut events).await)
        .await
        .expect("read");
    assert_eq!(delivery.status, JobStatus::Completed, "{delivery:?}");
    assert_eq!(delivery.attempts, 2, "one 500, then 200");
    let requests = receiver.requests();
    let body: CallbackBody = serde_json::from_slice(&requests[1].body).expect("a callback body");
    assert_eq!(body.job_id, export_id);
    queue
        .shutdown(Duration::from_secs(5))
        .await
        .expect("shutdown");
    db.drop().await;
}

#[actix_rt::test]
async fn a_job_with_its_own_callback_is_called_back_there_not_at_its_tasks() {
    let task_receiver = Receiver::start(Answers::InTurn(Vec::new()));
    let job_receiver = Receiver::start(Answers::InTurn(Vec::new()));
    let queue = Queue::new();
    queue
        .webhooks(Webhooks::new().secret("partner", SECRET).retry(quick(2)))
        .expect("webhooks");
    queue
        .define("export")
        .callback(&task_receiver.url)
        .callback_secret("partner")
        .action(|_: JobContext<()>| async { Ok::<_, JobError>("exported") })
        .expect("define export");
    let mut events = queue.events(Filter::Task(TASK.into()));
    queue.process(["default"]).start().expect("worker");
    let export = queue
        .create("export", ())
        .callback(&job_receiver.url)
        .await
        .expect("create");
    assert_eq!(
        queue
            .job(export.id())
            .await
            .expect("read")
            .callback
            .as_deref(),
        Some(job_receiver.url.as_str())
    );
    export.result().await.expect("result");
    let delivery = queue
        .job(final_delivery(&mut events).await)
        .await
        .expect("read");
    assert_eq!(delivery.status, JobStatus::Completed, "{delivery:?}");
    let requests = job_receiver.requests();
    assert_eq!(requests.len(), 1);
    assert!(
        task_receiver.requests().is_empty(),
        "the task's URL is not called"
    );
    // Signed with the task's secret.
    let header = requests[0].header(SIGNATURE_HEADER).expect("signed");
    assert_eq!(
        verify_signature(SECRET, header, &requests[0].body, Duration::from_secs(300)),
        Ok(())
    );
    let body: CallbackBody = serde_json::from_slice(&requests[0].body).expect("a callback body");
    assert_eq!(
        (body.job_id, body.status),
        (export.id(), JobStatus::Completed)
    );
}

#[actix_rt::test]
async fn a_job_of_a_task_without_a_callback_is_called_back_at_its_own_signed_with_the_default_secret(
) {
    let receiver = Receiver::start(Answers::InTurn(Vec::new()));
    let queue = Queue::new();
    queue
        .webhooks(Webhooks::new().secret("default", SECRET).retry(quick(2)))
        .expect("webhooks");
    queue
        .define("charge")
        .retry(RetryPolicy::none())
        .action(|_: JobContext<()>| async { Err::<(), _>(JobError::fatal("card declined")) })
        .expect("define");
    let mut events = queue.events(Filter::Task(TASK.into()));
    queue.process(["default"]).start().expect("worker");
    let plain = queue.create("charge", ()).await.expect("create");
    let charge = queue
        .create_job(kessel::NewJob::new("charge", ()).callback(&receiver.url))
        .await
        .expect("create");
    charge.result().await.expect("result");
    plain.result().await.expect("result");
    let delivery = queue
        .job(final_delivery(&mut events).await)
        .await
        .expect("read");
    assert_eq!(delivery.status, JobStatus::Completed, "{delivery:?}");
    assert_eq!(
        delivery.payload.to_value().expect("json")["secret"],
        kessel::webhook::DEFAULT_SECRET
    );
    let requests = receiver.requests();
    assert_eq!(requests.len(), 1, "only the job with a callback calls back");
    let header = requests[0].header(SIGNATURE_HEADER).expect("signed");
    assert_eq!(
        verify_signature(SECRET, header, &requests[0].body, Duration::from_secs(300)),
        Ok(())
    );
    let body: CallbackBody = serde_json::from_slice(&requests[0].body).expect("a callback body");
    assert_eq!((body.job_id, body.status), (charge.id(), JobStatus::Buried));
    assert!(queue
        .callbacks(plain.id())
        .await
        .expect("callbacks")
        .is_empty());
}

#[actix_rt::test]
async fn a_job_callback_that_is_not_an_http_url_is_refused_naming_the_field() {
    let queue = Queue::new();
    for url in ["ftp://example.com/x", "example.com/hooks", "http://", ""] {
        let err = queue
            .create("export", ())
            .callback(url)
            .await
            .expect_err(url);
        assert!(
            matches!(
                err,
                Error::InvalidInput {
                    field: "callback",
                    ..
                }
            ),
            "{url:?}: {err}"
        );
    }
    let stats = queue.stats().await.expect("stats");
    assert_eq!(stats.counts.len(), 0, "nothing was created");
}

#[actix_rt::test]
async fn a_job_callback_survives_closing_and_reopening_a_sqlite_queue() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("jobs.db");
    let receiver = Receiver::start(Answers::InTurn(Vec::new()));
    let hooks = || Webhooks::new().secret("default", SECRET).retry(quick(3));
    let define = |queue: &Queue| {
        queue
            .define("export")
            .action(|_: JobContext<()>| async { Ok::<_, JobError>("exported") })
            .expect("define export");
    };
    // Created in one process, run by the next.
    let export_id = {
        let queue = Queue::sqlite(&path).await.expect("open");
        queue.webhooks(hooks()).expect("webhooks");
        define(&queue);
        let export = queue
            .create("export", ())
            .callback(&receiver.url)
            .await
            .expect("create");
        queue
            .shutdown(Duration::from_secs(5))
            .await
            .expect("shutdown");
        queue.store().close().await.expect("close");
        export.id()
    };
    let queue = Queue::sqlite(&path).await.expect("reopen");
    queue.webhooks(hooks()).expect("webhooks");
    define(&queue);
    let mut events = queue.events(Filter::Task(TASK.into()));
    queue.process(["default"]).start().expect("worker");
    let delivery = queue
        .job(final_delivery(&mut events).await)
        .await
        .expect("read");
    assert_eq!(delivery.status, JobStatus::Completed, "{delivery:?}");
    let requests = receiver.requests();
    assert_eq!(requests.len(), 1);
    let body: CallbackBody = serde_json::from_slice(&requests[0].body).expect("a callback body");
    assert_eq!(
        (body.job_id, body.status),
        (export_id, JobStatus::Completed)
    );
    queue
        .shutdown(Duration::from_secs(5))
        .await
        .expect("shutdown");
}

#[actix_rt::test]
async fn a_job_with_its_own_callback_secret_is_signed_with_that_secret_not_its_tasks() {
    const PARTNER: &[u8] = b"the secret partner A was given";
    let receiver = Receiver::start(Answers::InTurn(Vec::new()));
    let queue = Queue::new();
    queue
        .webhooks(
            Webhooks::new()
                .secret("default", SECRET)
                .secret("partner-a", PARTNER)
                .retry(quick(2)),
        )
        .expect("webhooks");
    define_export(&queue, "http://127.0.0.1:9/task-hooks");
    let mut events = queue.events(Filter::Task(TASK.into()));
    queue.process(["default"]).start().expect("worker");
    let export = queue
        .create("export", ())
        .callback(&receiver.url)
        .callback_secret("partner-a")
        .await
        .expect("create");
    let stored = queue.job(export.id()).await.expect("read");
    assert_eq!(stored.callback_secret.as_deref(), Some("partner-a"));
    export.result().await.expect("result");
    let delivery = queue
        .job(final_delivery(&mut events).await)
        .await
        .expect("read");
    assert_eq!(delivery.status, JobStatus::Completed, "{delivery:?}");
    // The delivery carries the secret's name, never the secret.
    let payload = delivery.payload.to_value().expect("json");
    assert_eq!(payload["secret"], "partner-a");
    assert!(!delivery.payload.as_str().contains("partner A was given"));
    let requests = receiver.requests();
    assert_eq!(requests.len(), 1);
    let header = requests[0].header(SIGNATURE_HEADER).expect("signed");
    let window = Duration::from_secs(300);
    assert_eq!(
        verify_signature(PARTNER, header, &requests[0].body, window),
        Ok(())
    );
    assert!(
        verify_signature(SECRET, header, &requests[0].body, window).is_err(),
        "not signed with the task's secret"
    );
}

#[actix_rt::test]
async fn a_job_callback_secret_that_is_unknown_to_the_deliverer_buries_the_delivery_naming_it() {
    let receiver = Receiver::start(Answers::InTurn(Vec::new()));
    let queue = Queue::new();
    queue
        .webhooks(Webhooks::new().secret("default", SECRET).retry(quick(2)))
        .expect("webhooks");
    define_export(&queue, &receiver.url);
    let mut events = queue.events(Filter::Task(TASK.into()));
    queue.process(["default"]).start().expect("worker");
    let export = queue
        .create("export", ())
        .callback(&receiver.url)
        .callback_secret("partner-z")
        .await
        .expect("create");
    export.result().await.expect("result");
    let delivery = queue
        .job(final_delivery(&mut events).await)
        .await
        .expect("read");
    assert_eq!(delivery.status, JobStatus::Buried, "{delivery:?}");
    let error = delivery.last_error.unwrap_or_default();
    assert!(error.contains("partner-z"), "{error}");
    assert!(receiver.requests().is_empty(), "nothing unsigned went out");
}

#[actix_rt::test]
async fn a_bad_job_callback_secret_is_refused_naming_the_field() {
    let queue = Queue::new();
    let long = "k".repeat(kessel::webhook::MAX_SECRET_NAME_LEN + 1);
    for (job, why) in [
        (
            kessel::NewJob::new("export", ()).callback_secret("partner-a"),
            "no callback URL",
        ),
        (
            kessel::NewJob::new("export", ())
                .callback("http://127.0.0.1:9/hooks")
                .callback_secret(""),
            "empty",
        ),
        (
            kessel::NewJob::new("export", ())
                .callback("http://127.0.0.1:9/hooks")
                .callback_secret(long.clone()),
            "too long",
        ),
        (
            kessel::NewJob::new("export", ())
                .callback("http://127.0.0.1:9/hooks")
                .callback_secret("a\tb"),
            "a control character",
        ),
    ] {
        let err = queue.create_job(job).await.expect_err(why);
        assert!(
            matches!(
                err,
                Error::InvalidInput {
                    field: "callback_secret",
                    ..
                }
            ),
            "{why}: {err}"
        );
    }
    let stats = queue.stats().await.expect("stats");
    assert_eq!(stats.counts.len(), 0, "nothing was created");
}
