//! Middleware order and short-circuits, plugins, tracing spans, and
//! composed jobs.

mod common;

use std::sync::Arc;

use common::{pause, Trace};
use kessel::middleware::{from_fn, HandlerFuture, Middleware, Next};
use kessel::plugin::Environment;
use kessel::{Error, JobContext, JobError, JobMeta, JobStatus, Queue, RetryPolicy, Step};

struct Tracer {
    name: &'static str,
    trace: Trace<String>,
}

impl Middleware for Tracer {
    fn handle(&self, job: JobMeta, next: Next) -> HandlerFuture {
        let (name, trace) = (self.name, self.trace.clone());
        Box::pin(async move {
            trace.push(format!("{name} before {}", job.attempt()));
            let out = next.run().await;
            trace.push(format!("{name} after"));
            out
        })
    }
}

#[actix_rt::test]
async fn queue_middleware_wraps_task_middleware_in_the_order_added() {
    pause();
    let queue = Queue::new();
    let trace = Trace::default();
    let tracer = |name| Tracer {
        name,
        trace: trace.clone(),
    };
    queue.middleware(tracer("queue 1"));
    queue.middleware(tracer("queue 2"));
    let t = trace.clone();
    queue
        .define("t")
        .middleware(tracer("task 1"))
        .middleware(tracer("task 2"))
        .action(move |_: JobContext<()>| {
            let t = t.clone();
            async move {
                t.push("handler".into());
                Ok::<_, JobError>(())
            }
        })
        .unwrap();
    queue.process(["default"]).start().unwrap();
    queue.create("t", ()).await.unwrap().result().await.unwrap();
    assert_eq!(
        trace.items(),
        [
            "queue 1 before 1",
            "queue 2 before 1",
            "task 1 before 1",
            "task 2 before 1",
            "handler",
            "task 2 after",
            "task 1 after",
            "queue 2 after",
            "queue 1 after"
        ]
    );
}

#[actix_rt::test]
async fn middleware_can_short_circuit_the_handler() {
    pause();
    let queue = Queue::new();
    let ran = Trace::default();
    let r = ran.clone();
    queue
        .define("guarded")
        .retry(RetryPolicy::none())
        .middleware(from_fn(|job: JobMeta, _next: Next| async move {
            Err(JobError::fatal(format!("{} refused by policy", job.task())))
        }))
        .action(move |_: JobContext<()>| {
            let r = r.clone();
            async move {
                r.push(());
                Ok::<_, JobError>(())
            }
        })
        .unwrap();
    queue.process(["default"]).start().unwrap();
    let result = queue
        .create("guarded", ())
        .await
        .unwrap()
        .result()
        .await
        .unwrap();
    assert_eq!(result.status, JobStatus::Buried);
    assert_eq!(result.message.as_deref(), Some("guarded refused by policy"));
    assert!(ran.items().is_empty());
}

#[actix_rt::test]
async fn a_plugin_is_given_the_queue() {
    pause();
    let queue = Queue::new();
    queue
        .plugin(|q: &Queue| {
            q.define("installed")
                .action(|_: JobContext<()>| async { Ok::<_, JobError>(()) })
                .map(|_| ())
        })
        .unwrap();
    assert_eq!(queue.tasks(), ["installed"]);
    let failing = queue.plugin(|_: &Queue| {
        Err(Error::InvalidInput {
            field: "plugin",
            reason: "no".into(),
        })
    });
    assert!(matches!(
        failing,
        Err(Error::InvalidInput {
            field: "plugin",
            ..
        })
    ));
    // Without QUEUE the environment plugin starts nothing and succeeds.
    std::env::remove_var("QUEUE");
    queue.plugin(Environment { concurrency: 2 }).unwrap();
}

#[actix_rt::test]
async fn the_tracing_plugin_opens_a_span_per_job_run() {
    use tracing_subscriber::layer::SubscriberExt;

    #[derive(Clone, Default)]
    struct Spans(Arc<parking_lot::Mutex<Vec<String>>>);

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Spans {
        fn on_new_span(
            &self,
            attrs: &tracing::span::Attributes<'_>,
            _: &tracing::span::Id,
            _: tracing_subscriber::layer::Context<'_, S>,
        ) {
            struct Fields(String);
            impl tracing::field::Visit for Fields {
                fn record_debug(
                    &mut self,
                    field: &tracing::field::Field,
                    value: &dyn std::fmt::Debug,
                ) {
                    self.0.push_str(&format!("{}={:?} ", field.name(), value));
                }
            }
            let mut fields = Fields(format!("{} ", attrs.metadata().name()));
            attrs.record(&mut fields);
            self.0.lock().push(fields.0);
        }
    }

    pause();
    let spans = Spans::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(spans.clone()));
    let queue = Queue::new();
    queue.plugin(kessel::plugin::Tracing).unwrap();
    queue
        .define("traced")
        .action(|_: JobContext<()>| async { Ok::<_, JobError>(()) })
        .unwrap();
    queue.process(["default"]).start().unwrap();
    let h = queue.create("traced", ()).await.unwrap();
    h.result().await.unwrap();
    let recorded = spans.0.lock().clone();
    let job_spans: Vec<&String> = recorded
        .iter()
        .filter(|s| s.starts_with("kessel.job"))
        .collect();
    assert_eq!(job_spans.len(), 1, "{recorded:?}");
    assert!(
        job_spans[0].contains(&format!("job.id={}", h.id())),
        "{}",
        job_spans[0]
    );
    assert!(
        job_spans[0].contains("job.task=\"traced\""),
        "{}",
        job_spans[0]
    );
    assert!(job_spans[0].contains("job.attempt=1"), "{}", job_spans[0]);
}

#[actix_rt::test]
async fn a_composed_job_runs_its_steps_in_series_passing_outputs_on() {
    pause();
    let queue = Queue::new();
    queue
        .define("fetch")
        .action(|job: JobContext<String>| async move {
            Ok::<_, JobError>(serde_json::json!({ "destination": format!("/tmp/{}", job.payload) }))
        })
        .unwrap();
    queue
        .define("archive")
        .action(|job: JobContext<serde_json::Value>| async move {
            Ok::<_, JobError>(format!(
                "{}.tar.gz",
                job.payload["origin"].as_str().unwrap_or("?")
            ))
        })
        .unwrap();
    queue
        .define("download and archive")
        .compose([
            Step::task("fetch"),
            Step::action("rename", |job: JobContext<serde_json::Value>| async move {
                Ok::<_, JobError>(serde_json::json!({ "origin": job.payload["destination"] }))
            }),
            Step::task("archive"),
        ])
        .unwrap();
    queue.process(["default"]).start().unwrap();
    let result = queue
        .create("download and archive", "site")
        .await
        .unwrap()
        .result()
        .await
        .unwrap();
    assert_eq!(result.value, Some(serde_json::json!("/tmp/site.tar.gz")));
}

#[actix_rt::test]
async fn a_composed_job_failing_at_step_two_names_the_step_and_stops() {
    pause();
    let queue = Queue::new();
    let ran = Trace::default();
    let (r1, r3) = (ran.clone(), ran.clone());
    queue
        .define("composed")
        .retry(RetryPolicy::none())
        .compose([
            Step::action("one", move |job: JobContext<u32>| {
                let r = r1.clone();
                async move {
                    r.push(1);
                    Ok::<_, JobError>(job.payload + 1)
                }
            }),
            Step::action("two", |job: JobContext<u32>| async move {
                Err::<u32, _>(JobError::fatal(format!("cannot handle {}", job.payload)))
            }),
            Step::action("three", move |_: JobContext<u32>| {
                let r = r3.clone();
                async move {
                    r.push(3);
                    Ok::<_, JobError>(())
                }
            }),
        ])
        .unwrap();
    queue.process(["default"]).start().unwrap();
    let result = queue
        .create("composed", 41)
        .await
        .unwrap()
        .result()
        .await
        .unwrap();
    assert_eq!(result.status, JobStatus::Buried);
    assert_eq!(
        result.message.as_deref(),
        Some("step 2 (`two`) failed: cannot handle 42")
    );
    assert_eq!(ran.items(), [1]);
    // composing from an unknown task, or from nothing, is a typed error
    assert!(matches!(
        queue.define("x").compose([Step::task("missing")]),
        Err(Error::InvalidInput { field: "step", .. })
    ));
    assert!(matches!(
        queue.define("y").compose([]),
        Err(Error::InvalidInput { field: "steps", .. })
    ));
}
