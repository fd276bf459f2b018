//! Metrics (feature `metrics`): job counters and histograms the scheduler
//! records, the sampler's gauges, and the store wrapper's timings,
//! read back from the Prometheus text the exporter renders.
//!
//! One Prometheus recorder serves the whole test binary (a recorder is
//! global), so each test uses task, tag and label values of its own.

mod common;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use common::pause;
use kessel::metrics::{JobMetrics, MeteredStore, Prometheus, Sampler, SamplerConfig};
use kessel::store::SqliteStore;
use kessel::{JobContext, JobError, JobStatus, NewJob, Queue, RetryPolicy};

fn prometheus() -> &'static Prometheus {
    static PROMETHEUS: OnceLock<Prometheus> = OnceLock::new();
    PROMETHEUS.get_or_init(|| Prometheus::install().expect("the only recorder of this binary"))
}

/// The value of the sample `name{labels}` in the rendered text, where
/// `labels` is written as Prometheus writes it (`task="a"`), or `None`
/// when there is no such sample.
fn sample(name: &str, labels: &str) -> Option<f64> {
    let series = if labels.is_empty() {
        name.to_owned()
    } else {
        format!("{name}{{{labels}}}")
    };
    prometheus().render().lines().find_map(|line| {
        let (key, value) = line.rsplit_once(' ')?;
        (key == series).then(|| value.parse().expect("a number"))
    })
}

/// Whether `value` is `expected` seconds, give or take the millisecond
/// by which tokio's timer may end a sleep late on the paused clock.
fn about(value: Option<f64>, expected: f64) -> bool {
    value.is_some_and(|v| (expected..expected + 0.01).contains(&v))
}

fn counter(name: &str, task: &str) -> f64 {
    sample(name, &format!("task=\"{task}\"")).unwrap_or(0.0)
}

#[actix_rt::test]
async fn outcomes_are_counted_by_task_with_run_time_and_lateness() {
    pause();
    let _ = prometheus();
    let queue = Queue::new();
    let metrics = JobMetrics::attach(&queue);
    // Three jobs of two seconds each on one slot: they start 0, 2 and 4
    // seconds late.
    queue
        .define("m-ok")
        .tag("m-ok")
        .action(|_: JobContext<()>| async {
            tokio::time::sleep(Duration::from_secs(2)).await;
            Ok::<_, JobError>(())
        })
        .unwrap();
    queue
        .define("m-flaky")
        .tag("m-other")
        .retry(
            RetryPolicy::exponential(3)
                .base_delay(Duration::from_secs(1))
                .jitter(0.0),
        )
        .action(|job: JobContext<()>| async move {
            if job.attempt() == 1 {
                return Err(JobError::transient("first try fails"));
            }
            Ok(())
        })
        .unwrap();
    queue
        .define("m-doomed")
        .tag("m-other")
        .action(|_: JobContext<()>| async { Err::<(), _>(JobError::fatal("never works")) })
        .unwrap();
    queue
        .define("m-slow")
        .tag("m-other")
        .timeout("1s")
        .retry(RetryPolicy::none())
        .action(|_: JobContext<()>| async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok::<_, JobError>(())
        })
        .unwrap();
    queue.process(["m-ok"]).concurrency(1).start().unwrap();
    queue.process(["m-other"]).concurrency(4).start().unwrap();

    let mut handles = Vec::new();
    for _ in 0..3 {
        handles.push(queue.create("m-ok", ()).await.unwrap());
    }
    handles.push(queue.create("m-flaky", ()).await.unwrap());
    handles.push(queue.create("m-doomed", ()).await.unwrap());
    handles.push(queue.create("m-slow", ()).await.unwrap());
    let cancelled = queue.create("m-cancel", ()).delay("1h").await.unwrap();
    queue.cancel(cancelled.id()).await.unwrap();
    // No worker serves its tag: it expires where it waits.
    let expired = queue.create("m-expire", ()).expires_in("1s").await.unwrap();
    for h in &handles {
        h.result().await.unwrap();
    }
    assert_eq!(
        expired.result().await.unwrap().status,
        JobStatus::Expired,
        "the job nobody ran expired"
    );
    metrics.wait_finished(8).await;

    use kessel::metrics::names::*;
    for (task, created, started, completed, failed, timed_out, retried, buried) in [
        ("m-ok", 3, 3, 3, 0, 0, 0, 0),
        ("m-flaky", 1, 2, 1, 1, 0, 1, 0),
        ("m-doomed", 1, 1, 0, 1, 0, 0, 1),
        ("m-slow", 1, 1, 0, 0, 1, 0, 1),
    ] {
        assert_eq!(
            counter(JOBS_CREATED, task),
            created as f64,
            "{task} created"
        );
        assert_eq!(
            counter(JOBS_STARTED, task),
            started as f64,
            "{task} started"
        );
        assert_eq!(
            counter(JOBS_COMPLETED, task),
            completed as f64,
            "{task} completed"
        );
        assert_eq!(counter(JOBS_FAILED, task), failed as f64, "{task} failed");
        assert_eq!(
            counter(JOBS_TIMED_OUT, task),
            timed_out as f64,
            "{task} timed out"
        );
        assert_eq!(
            counter(JOBS_RETRIED, task),
            retried as f64,
            "{task} retried"
        );
        assert_eq!(counter(JOBS_BURIED, task), buried as f64, "{task} buried");
    }
    assert_eq!(counter(JOBS_CANCELLED, "m-cancel"), 1.0);
    assert_eq!(counter(JOBS_STARTED, "m-cancel"), 0.0);
    assert_eq!(counter(JOBS_EXPIRED, "m-expire"), 1.0);
    assert_eq!(counter(JOBS_CANCELLED, "m-ok"), 0.0);

    let ok = "task=\"m-ok\"";
    let run_count = format!("{JOB_RUN_SECONDS}_count");
    let run_sum = format!("{JOB_RUN_SECONDS}_sum");
    assert_eq!(
        sample(&run_count, ok),
        Some(3.0),
        "one run time per attempt"
    );
    assert!(about(sample(&run_sum, ok), 6.0), "three runs of 2 s");
    let late_count = format!("{JOB_LATENESS_SECONDS}_count");
    let late_sum = format!("{JOB_LATENESS_SECONDS}_sum");
    assert_eq!(sample(&late_count, ok), Some(3.0));
    assert!(about(sample(&late_sum, ok), 6.0), "0 + 2 + 4 s late");
    assert_eq!(
        sample(
            &format!("{JOB_LATENESS_SECONDS}_bucket"),
            &format!("{ok},le=\"1\"")
        ),
        Some(1.0),
        "one start on time"
    );
    // Both attempts of the flaky job ran and were timed; its retry started
    // when its backoff ended, not late.
    assert_eq!(sample(&run_count, "task=\"m-flaky\""), Some(2.0));
    assert_eq!(sample(&late_count, "task=\"m-flaky\""), Some(2.0));
    assert!(about(sample(&late_sum, "task=\"m-flaky\""), 0.0));
    // The timed-out run is timed to its timeout.
    assert!(about(sample(&run_sum, "task=\"m-slow\""), 1.0));
    // A job that never started has no run time.
    assert_eq!(sample(&run_count, "task=\"m-cancel\"").unwrap_or(0.0), 0.0);
}

/// Checks `text` is Prometheus text exposition: every line a comment, a
/// blank or `series value`; each family typed once; each histogram
/// series with cumulative buckets (bounds rising, counts never falling),
/// a last `+Inf` bucket equal to its `_count`, and a `_sum`.
fn assert_exposition(text: &str) {
    use std::collections::{BTreeMap, BTreeSet};
    let mut typed = BTreeSet::new();
    let mut histograms = BTreeSet::new();
    let mut values: BTreeMap<String, f64> = BTreeMap::new();
    // Per histogram series (name and labels but `le`): its buckets in order.
    let mut buckets: BTreeMap<(String, String), Vec<(f64, f64)>> = BTreeMap::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with("# HELP ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            assert!(typed.insert(name.to_owned()), "{name} typed twice");
            if kind == "histogram" {
                histograms.insert(name.to_owned());
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("series value");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("a number in {line:?}")),
        };
        let name = series.split('{').next().unwrap();
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "{line}"
        );
        assert!(
            !series.contains('{') || series.ends_with('}'),
            "labels closed: {line}"
        );
        if let Some(base) = name.strip_suffix("_bucket") {
            let (labels, le) = series
                .rsplit_once("le=\"")
                .unwrap_or_else(|| panic!("a bucket has le: {line}"));
            let le = le.trim_end_matches("\"}");
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().expect("le is a number")
            };
            let labels = labels
                .trim_start_matches(name)
                .trim_start_matches('{')
                .trim_end_matches(',')
                .to_owned();
            buckets
                .entry((base.to_owned(), labels))
                .or_default()
                .push((le, value));
        } else {
            values.insert(series.to_owned(), value);
        }
    }
    for ((name, labels), series) in &buckets {
        assert!(histograms.contains(name), "{name} is typed histogram");
        for pair in series.windows(2) {
            assert!(pair[0].0 < pair[1].0, "{name}{{{labels}}}: bounds rise");
            assert!(
                pair[0].1 <= pair[1].1,
                "{name}{{{labels}}}: buckets are cumulative"
            );
        }
        let (last, inf) = *series.last().unwrap();
        assert_eq!(last, f64::INFINITY, "{name}{{{labels}}} ends with +Inf");
        let braces = |suffix: &str| {
            if labels.is_empty() {
                format!("{name}_{suffix}")
            } else {
                format!("{name}_{suffix}{{{labels}}}")
            }
        };
        assert_eq!(
            values.get(&braces("count")),
            Some(&inf),
            "{name}{{{labels}}}: +Inf equals _count"
        );
        assert!(
            values.contains_key(&braces("sum")),
            "{name}{{{labels}}}: _sum"
        );
    }
}

/// Run times of 3 ms, 200 ms, 2 s and 2 h on the paused clock, all on
/// time: each lands in its bucket, the sum is theirs, the count is four.
#[actix_rt::test]
async fn run_times_land_in_their_buckets_with_their_sum_and_count() {
    pause();
    let _ = prometheus();
    let queue = Queue::new();
    let metrics = JobMetrics::attach(&queue);
    queue
        .define("m-hist")
        .tag("m-hist")
        .action(|job: JobContext<u64>| async move {
            tokio::time::sleep(Duration::from_millis(job.payload)).await;
            Ok::<_, JobError>(())
        })
        .unwrap();
    queue.process(["m-hist"]).concurrency(4).start().unwrap();
    for ms in [3, 200, 2_000, 7_200_000] {
        queue.create("m-hist", ms).await.unwrap();
    }
    metrics.wait_finished(4).await;

    use kessel::metrics::names::*;
    let task = "task=\"m-hist\"";
    let bucket =
        |name: &str, le: &str| sample(&format!("{name}_bucket"), &format!("{task},le=\"{le}\""));
    for (le, runs) in [
        ("0.001", 0.0),
        ("0.005", 1.0),
        ("0.1", 1.0),
        ("0.25", 2.0),
        ("1", 2.0),
        ("2.5", 3.0),
        ("3600", 3.0),
        ("+Inf", 4.0),
    ] {
        assert_eq!(bucket(JOB_RUN_SECONDS, le), Some(runs), "runs <= {le} s");
    }
    assert_eq!(sample(&format!("{JOB_RUN_SECONDS}_count"), task), Some(4.0));
    assert!(about(
        sample(&format!("{JOB_RUN_SECONDS}_sum"), task),
        7_202.203
    ));
    // All four started as soon as they were created.
    assert_eq!(bucket(JOB_LATENESS_SECONDS, "0.001"), Some(4.0));
    assert_eq!(bucket(JOB_LATENESS_SECONDS, "+Inf"), Some(4.0));
    assert_eq!(
        sample(&format!("{JOB_LATENESS_SECONDS}_sum"), task),
        Some(0.0)
    );
    assert_exposition(&prometheus().render());
}

/// The scheduler counts in cells of its own; a render hands every change
/// to the recorder first, so the counters are exact after any number of
/// jobs, with no sampler running.
#[actix_rt::test]
async fn counters_and_histogram_counts_are_exact_after_many_jobs() {
    pause();
    let _ = prometheus();
    let queue = Queue::new();
    let metrics = JobMetrics::attach(&queue);
    queue
        .define("m-many")
        .tag("m-many")
        .action(|_: JobContext<()>| async { Ok::<_, JobError>(()) })
        .unwrap();
    queue.process(["m-many"]).concurrency(16).start().unwrap();
    for round in 1..=3u64 {
        queue
            .create_many((0..1000).map(|_| NewJob::new("m-many", ())))
            .await
            .unwrap();
        metrics.wait_finished(round * 1000).await;
        use kessel::metrics::names::*;
        let n = (round * 1000) as f64;
        assert_eq!(counter(JOBS_CREATED, "m-many"), n);
        assert_eq!(counter(JOBS_STARTED, "m-many"), n);
        assert_eq!(counter(JOBS_COMPLETED, "m-many"), n);
        assert_eq!(
            sample(&format!("{JOB_RUN_SECONDS}_count"), "task=\"m-many\""),
            Some(n)
        );
        assert_eq!(
            sample(
                &format!("{JOB_LATENESS_SECONDS}_bucket"),
                "task=\"m-many\",le=\"+Inf\""
            ),
            Some(n)
        );
    }
    assert_exposition(&prometheus().render());
}

#[test]
fn the_build_info_gauge_names_this_version() {
    assert_eq!(
        sample(
            kessel::metrics::names::BUILD_INFO,
            &format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))
        ),
        Some(1.0)
    );
}

/// The scheduler counts as it moves jobs: a burst a slow event
/// subscriber cannot keep up with is still counted in full.
#[actix_rt::test]
async fn a_burst_is_counted_in_full_while_a_slow_subscriber_lags() {
    pause();
    let _ = prometheus();
    let queue = Queue::new();
    let metrics = JobMetrics::attach(&queue);
    let _slow = queue.events_with_buffer(kessel::event::Filter::All, 4);
    queue
        .define("m-burst")
        .tag("m-burst")
        .action(|_: JobContext<()>| async { Ok::<_, JobError>(()) })
        .unwrap();
    queue
        .create_many((0..50).map(|_| NewJob::new("m-burst", ())))
        .await
        .unwrap();
    queue.process(["m-burst"]).start().unwrap();
    metrics.wait_finished(50).await;
    assert!(queue.events_missed() > 0, "the slow subscriber lagged");
    assert_eq!(
        counter(kessel::metrics::names::JOBS_CREATED, "m-burst"),
        50.0
    );
    assert_eq!(
        counter(kessel::metrics::names::JOBS_STARTED, "m-burst"),
        50.0
    );
    assert_eq!(
        counter(kessel::metrics::names::JOBS_COMPLETED, "m-burst"),
        50.0
    );
    assert_eq!(metrics.finished(), 50);
}

#[actix_rt::test]
async fn the_sampler_reports_depth_by_tag_and_status_and_the_oldest_ready_age() {
    pause();
    let _ = prometheus();
    let queue = Queue::new();
    queue
        .define("m-depth")
        .tag("m-depth-tag")
        .action(|_: JobContext<()>| async { Ok::<_, JobError>(()) })
        .unwrap();
    let mut ready = Vec::new();
    for _ in 0..3 {
        ready.push(queue.create("m-depth", ()).await.unwrap());
    }
    queue.create("m-depth", ()).delay("1h").await.unwrap();
    tokio::time::advance(Duration::from_secs(5)).await;
    let sampler = Sampler::new(&queue, SamplerConfig::default()).unwrap();
    sampler.run_once().await.unwrap();

    use kessel::metrics::names::*;
    let depth = |status: &str| {
        sample(
            QUEUE_DEPTH,
            &format!("tag=\"m-depth-tag\",status=\"{status}\""),
        )
    };
    assert_eq!(depth("ready"), Some(3.0));
    assert_eq!(depth("scheduled"), Some(1.0));
    assert_eq!(depth("running"), Some(0.0), "a defined tag reports zeros");
    assert_eq!(depth("retrying"), Some(0.0));
    assert_eq!(
        sample(OLDEST_JOB_AGE_SECONDS, "tag=\"m-depth-tag\""),
        Some(5.0),
        "ready for five seconds"
    );

    // Once a worker ran them, the gauges follow.
    queue.process(["m-depth-tag"]).start().unwrap();
    for h in &ready {
        h.result().await.unwrap();
    }
    sampler.run_once().await.unwrap();
    assert_eq!(depth("ready"), Some(0.0));
    assert_eq!(depth("scheduled"), Some(1.0));
    assert_eq!(
        sample(OLDEST_JOB_AGE_SECONDS, "tag=\"m-depth-tag\""),
        Some(0.0)
    );
}

#[actix_rt::test]
async fn the_store_wrapper_times_every_call_to_a_sqlite_store() {
    let _ = prometheus();
    let spans = spans();
    let dir = tempfile::tempdir().unwrap();
    let store = MeteredStore::new(SqliteStore::open(dir.path().join("jobs.db")).await.unwrap());
    let queue = Queue::builder()
        .store(Arc::new(store))
        .build()
        .await
        .unwrap();
    queue
        .define("m-stored")
        .tag("m-stored")
        .action(|_: JobContext<()>| async { Ok::<_, JobError>(()) })
        .unwrap();
    queue.process(["m-stored"]).start().unwrap();
    let handles = [
        queue.create("m-stored", ()).await.unwrap(),
        queue.create("m-stored", ()).await.unwrap(),
    ];
    for h in &handles {
        assert_eq!(h.result().await.unwrap().status, JobStatus::Completed);
    }
    queue.stats().await.unwrap();

    use kessel::metrics::names::STORE_CALL_SECONDS;
    let calls = |operation: &str| {
        sample(
            &format!("{STORE_CALL_SECONDS}_count"),
            &format!("operation=\"{operation}\""),
        )
        .unwrap_or(0.0)
    };
    assert_eq!(
        calls("jobs_pending"),
        1.0,
        "read once, when the queue was built"
    );
    assert!(calls("jobs_insert") >= 1.0, "the creates were stored");
    assert!(calls("jobs_update") >= 1.0, "the runs were recorded");
    assert!(calls("jobs_count") >= 1.0, "stats read the store");
    assert_eq!(
        sample(
            &format!("{STORE_CALL_SECONDS}_bucket"),
            "operation=\"jobs_pending\",le=\"+Inf\""
        ),
        Some(1.0)
    );
    assert!(
        queue.store().shared().is_none(),
        "SQLite stays single-process"
    );
    let store_spans: Vec<String> = spans
        .0
        .lock()
        .iter()
        .filter(|(name, _)| name == "kessel.store")
        .map(|(_, fields)| fields.clone())
        .collect();
    assert!(
        store_spans
            .iter()
            .any(|f| f.contains("operation=\"jobs_pending\"")),
        "a span per store call: {store_spans:?}"
    );
    assert!(store_spans
        .iter()
        .any(|f| f.contains("operation=\"jobs_insert\"") && f.contains("rows=")));
}

/// Spans of one test: the name and the recorded fields of each new span.
#[derive(Clone, Default)]
struct Spans(Arc<parking_lot::Mutex<Vec<(String, String)>>>);

struct Fields(String);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!("{}={:?} ", field.name(), value));
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Spans {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        _: &tracing::span::Id,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut fields = Fields(String::new());
        attrs.record(&mut fields);
        self.0
            .lock()
            .push((attrs.metadata().name().to_owned(), fields.0));
    }
}

/// The spans of this binary, from a global subscriber: a subscriber set
/// for one thread races the other tests over tracing's per-callsite
/// interest cache, a global one does not.
fn spans() -> &'static Spans {
    static SPANS: OnceLock<Spans> = OnceLock::new();
    SPANS.get_or_init(|| {
        use tracing_subscriber::layer::SubscriberExt;
        let spans = Spans::default();
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(spans.clone()))
            .expect("the only subscriber of this binary");
        spans
    })
}

#[actix_rt::test]
async fn with_the_tracing_plugin_each_attempt_runs_in_a_kessel_job_span() {
    pause();
    let spans = spans();
    let queue = Queue::new();
    queue.plugin(kessel::plugin::Tracing).unwrap();
    let inside = common::Trace::default();
    let seen = inside.clone();
    queue
        .define("m-traced")
        .tag("m-traced")
        .retry(
            RetryPolicy::exponential(2)
                .base_delay(Duration::from_secs(1))
                .jitter(0.0),
        )
        .action(move |job: JobContext<()>| {
            let seen = seen.clone();
            async move {
                let current = tracing::Span::current();
                seen.push(current.metadata().map(|m| m.name()));
                if job.attempt() == 1 {
                    return Err(JobError::transient("again"));
                }
                Ok(())
            }
        })
        .unwrap();
    queue.process(["m-traced"]).start().unwrap();
    let h = queue.create("m-traced", ()).await.unwrap();
    h.result().await.unwrap();

    assert_eq!(inside.items(), [Some("kessel.job"), Some("kessel.job")]);
    let jobs: Vec<String> = spans
        .0
        .lock()
        .iter()
        .filter(|(name, fields)| name == "kessel.job" && fields.contains("\"m-traced\""))
        .map(|(_, fields)| fields.clone())
        .collect();
    assert_eq!(jobs.len(), 2, "one span per attempt: {jobs:?}");
    for (n, fields) in jobs.iter().enumerate() {
        assert!(fields.contains(&format!("job.id={}", h.id())), "{fields}");
        assert!(fields.contains("job.task=\"m-traced\""), "{fields}");
        assert!(fields.contains("job.tag=\"m-traced\""), "{fields}");
        assert!(
            fields.contains(&format!("job.attempt={}", n + 1)),
            "{fields}"
        );
        assert!(
            fields.contains(&format!("job.node={}", queue.node_id())),
            "{fields}"
        );
    }
}

#[test]
fn the_grafana_dashboard_queries_only_metrics_kessel_records() {
    use kessel::metrics::names::*;
    let known = [
        JOBS_CREATED,
        JOBS_STARTED,
        JOBS_COMPLETED,
        JOBS_FAILED,
        JOBS_TIMED_OUT,
        JOBS_RETRIED,
        JOBS_BURIED,
        JOBS_EXPIRED,
        JOBS_CANCELLED,
        JOBS_KICKED,
        JOB_RUN_SECONDS,
        JOB_LATENESS_SECONDS,
        EVENTS_DROPPED,
        QUEUE_DEPTH,
        OLDEST_JOB_AGE_SECONDS,
        STUCK_THREADS,
        SAMPLER_ERRORS,
        STORE_CALL_SECONDS,
        STORE_ERRORS,
        LEASES_RESCUED,
        LEASES_LOST,
        NODES,
        BUILD_INFO,
    ];
    let text = include_str!("../docs/grafana-dashboard.json");
    let dashboard: serde_json::Value = serde_json::from_str(text).expect("valid JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 5);
    let names = regex::Regex::new(r"kessel_[a-z_]+").unwrap();
    let mut used = 0;
    for panel in panels {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("a query");
            for name in names.find_iter(expr).map(|m| m.as_str()) {
                let base = name.strip_suffix("_bucket").unwrap_or(name);
                assert!(
                    known.contains(&base),
                    "{name} in {expr:?} is not a kessel metric"
                );
                used += 1;
            }
        }
    }
    assert!(used > 10);
}

/// On PostgreSQL the sampler counts the processes registered on the
/// store by status: this queue's own node and another live one, and one
/// whose lease lapsed.
#[cfg(feature = "postgres")]
#[actix_rt::test]
async fn the_sampler_reports_live_and_gone_nodes_of_a_shared_store() {
    use kessel::store::{NodeBeat, SharedStore};
    let Some(db) = common::pg::fresh().await else {
        return;
    };
    let _ = prometheus();
    let queue = db
        .queue(Duration::from_secs(30), Duration::from_secs(1))
        .await;
    let store = db.store(Duration::from_secs(30)).await;
    let now = chrono::Utc::now();
    let beat = |lease_until| NodeBeat {
        id: uuid::Uuid::new_v4(),
        host: "elsewhere".into(),
        pid: 1,
        version: env!("CARGO_PKG_VERSION").into(),
        tags: vec![],
        concurrency: 0,
        running: 0,
        started_at: now - chrono::Duration::hours(1),
        at: now,
        lease_until,
    };
    store
        .node_beat(&beat(now + chrono::Duration::hours(1)))
        .await
        .unwrap();
    store
        .node_beat(&beat(now - chrono::Duration::minutes(1)))
        .await
        .unwrap();
    // This queue registers itself with its first tick, as it starts.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !queue
        .nodes()
        .await
        .unwrap()
        .iter()
        .any(|n| n.id == queue.node_id())
    {
        assert!(
            std::time::Instant::now() < deadline,
            "this queue never registered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Sampler::new(&queue, SamplerConfig::default())
        .unwrap()
        .run_once()
        .await
        .unwrap();
    use kessel::metrics::names::NODES;
    assert_eq!(sample(NODES, "status=\"live\""), Some(2.0));
    assert_eq!(sample(NODES, "status=\"gone\""), Some(1.0));
    queue.shutdown(Duration::from_secs(5)).await.unwrap();
    db.drop().await;
}
