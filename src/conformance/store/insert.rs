//! Inserts: every field of a job round-trips, at the edges of its range
//! (times to the microsecond at least, from 1970 to the year 9000;
//! payloads and results as the same JSON value, the text may be
//! reformatted; priorities and attempts over the whole `u32` range;
//! progress counts up to `i64::MAX`), through `jobs_insert` and
//! `jobs_insert_owned` alike; a job's own callback URL and the name of
//! its callback secret through every insert path.

use serde_json::json;

use crate::conformance::fixtures::{
    assert_same_job, fresh, get, in_status, insert, job, job_at, line, now, record,
};
use crate::conformance::harness::conformance_test;
use crate::conformance::{StoreFactory, Verdict};
use crate::job::{Job, JobStatus, Progress};
use crate::store::JobQuery;

conformance_test!(store,
    /// Every field of a job, at the edges of its range, is stored and read
    /// back unchanged.
    insert_then_get_round_trips_every_field => round_trip
);

async fn round_trip<F: StoreFactory>(factory: F) -> Verdict {
    let (store, _place) = fresh(&factory).await;
    let t = now();
    let payload = json!({
        "to": "ford@example.com",
        "items": [1, 2.5, "x", null, {"nested": true}],
        "unicode": "žluťoučký kůň 🐎 \"quoted\" \\ back",
        "big": u64::MAX,
        "negative": i64::MIN,
    });
    let mut full = in_status(job_at("send email", payload, t), JobStatus::Retrying);
    full.reference = Some("order-42".into());
    full.priority = 7;
    full.run_at = "9000-01-01T00:00:00.123456Z".parse().expect("a valid time");
    full.expires_at = Some("1999-12-31T23:59:59.999999Z".parse().expect("a valid time"));
    full.attempts = 3;
    full.max_attempts = Some(5);
    full.last_error = Some("upstream said 503 — try later".into());
    full.result = Some(json!({"partial": [1, 2, 3]}));
    full.progress = Some(Progress {
        current: 3,
        total: u64::try_from(i64::MAX).unwrap_or(u64::MAX),
    });
    full.logs = vec![
        line("created", 0, t, None),
        line(
            "started",
            1,
            t,
            Some(json!({"worker": 3, "tags": ["a", "b"]})),
        ),
    ];

    let bare = job("t", serde_json::Value::Null);

    let mut extreme = in_status(job("t", json!("just a string")), JobStatus::Completed);
    extreme.priority = u32::MAX;
    extreme.attempts = u32::MAX;
    extreme.max_attempts = Some(u32::MAX);
    extreme.result = Some(json!(null));
    extreme.reference = Some(String::new());
    extreme.created_at = "1970-01-01T00:00:00Z".parse().expect("a valid time");
    extreme.finished_at = Some("2262-04-12T00:00:00.000001Z".parse().expect("a valid time"));

    let jobs = vec![full, bare, extreme];
    insert(&store, &jobs).await;
    for want in &jobs {
        assert_same_job(
            &get(&store, want.id).await,
            want,
            "job_get after jobs_insert",
        );
    }
    Verdict::Passed
}

conformance_test!(store,
    /// `jobs_insert_owned` (how a queue hands a store kept in its process its final
    /// jobs) stores exactly what `jobs_insert` would, every field.
    owned_insert_stores_what_insert_stores => owned_insert
);

async fn owned_insert<F: StoreFactory>(factory: F) -> Verdict {
    let (store, _place) = fresh(&factory).await;
    let mut done = in_status(job("t", json!({"n": 1})), JobStatus::Completed);
    done.attempts = 1;
    done.finished_at = Some(now());
    done.result = Some(json!("ok"));
    done.logs.push(line("completed", 1, now(), None));
    let waiting = job("t", json!(2));
    let want = vec![done, waiting];
    if let Err((err, back)) = store.jobs_insert_owned(want.clone()).await {
        panic!(
            "jobs_insert_owned failed: {err} ({} jobs handed back)",
            back.len()
        );
    }
    for job in &want {
        assert_same_job(&get(&store, job.id).await, job, "a job inserted owned");
    }
    Verdict::Passed
}

conformance_test!(store,
    /// A job's own webhook callback URL is stored with it, however it was
    /// inserted (alone, in a small batch, in a large one, owned), read
    /// back by id, by query and among pending jobs, and kept through
    /// state changes; a job without one reads back without one.
    a_job_keeps_its_own_callback_url => callback_round_trip
);

async fn callback_round_trip<F: StoreFactory>(factory: F) -> Verdict {
    let (store, _place) = fresh(&factory).await;
    let with = |n: usize| {
        let mut j = job("export", json!(n));
        if n % 2 == 0 {
            j.callback = Some(format!(
                "https://hooks.example.com/kessel/{n}?sig=a%20b&n={n}"
            ));
        }
        j
    };
    // One job (its log only the "created" line), a small batch and a
    // batch large enough to take a store's bulk path.
    let alone = vec![with(0)];
    let small: Vec<Job> = (1..=4).map(with).collect();
    let large: Vec<Job> = (5..205).map(with).collect();
    for batch in [&alone, &small, &large] {
        insert(&store, batch).await;
    }
    let mut owned = in_status(with(206), JobStatus::Completed);
    owned.result = Some(json!("exported"));
    if let Err((err, _)) = store.jobs_insert_owned(vec![owned.clone()]).await {
        panic!("jobs_insert_owned failed: {err}");
    }
    let all: Vec<Job> = alone
        .iter()
        .chain(&small)
        .chain(&large)
        .chain(std::iter::once(&owned))
        .cloned()
        .collect();
    for want in &all {
        let got = get(&store, want.id).await;
        assert_eq!(got.callback, want.callback, "job_get of job {}", want.id);
    }
    let pending = match store.jobs_pending().await {
        Ok(p) => p,
        Err(err) => panic!("jobs_pending failed: {err}"),
    };
    let queried = match store
        .jobs_query(&JobQuery::default().task("export").limit(1000))
        .await
    {
        Ok(q) => q,
        Err(err) => panic!("jobs_query failed: {err}"),
    };
    for want in &all {
        let found = queried.iter().find(|j| j.id == want.id);
        assert_eq!(
            found.map(|j| j.callback.clone()),
            Some(want.callback.clone()),
            "jobs_query of job {}",
            want.id
        );
        if !want.status.is_final() {
            let found = pending.iter().find(|j| j.id == want.id);
            assert_eq!(
                found.map(|j| j.callback.clone()),
                Some(want.callback.clone()),
                "jobs_pending of job {}",
                want.id
            );
        }
    }
    // A state change leaves it as it was.
    let mut done = in_status(alone[0].clone(), JobStatus::Running);
    record(&store, &mut done, vec![line("started", 1, now(), None)]).await;
    done = in_status(done, JobStatus::Completed);
    record(&store, &mut done, vec![line("completed", 1, now(), None)]).await;
    let got = get(&store, done.id).await;
    assert_eq!(got.status, JobStatus::Completed);
    assert_eq!(got.callback, alone[0].callback, "after two updates");
    Verdict::Passed
}

conformance_test!(store,
    /// The name of a job's own callback secret is stored with it, however
    /// it was inserted (alone, in a small batch, in a large one, owned),
    /// read back by id, among pending jobs and by a query by reference
    /// (which finds the one job of that reference, as deliveries are found
    /// from their job), and kept through state changes.
    a_job_keeps_the_name_of_its_callback_secret_and_is_found_by_reference => callback_secret_round_trip
);

async fn callback_secret_round_trip<F: StoreFactory>(factory: F) -> Verdict {
    let (store, _place) = fresh(&factory).await;
    let with = |n: usize| {
        let mut j = job("export", json!(n));
        j.reference = Some(format!("webhook:{n}"));
        if n % 3 != 2 {
            j.callback = Some(format!("https://partner-{n}.example.com/hooks"));
        }
        if n % 3 == 0 {
            j.callback_secret = Some(format!("partner-{n} \u{e9}"));
        }
        j
    };
    let alone = vec![with(0)];
    let small: Vec<Job> = (1..=4).map(with).collect();
    let large: Vec<Job> = (5..205).map(with).collect();
    for batch in [&alone, &small, &large] {
        insert(&store, batch).await;
    }
    // Jobs without a reference, which a search by reference leaves out.
    let plain: Vec<Job> = (0..10).map(|n| job("export", json!(n))).collect();
    insert(&store, &plain).await;
    let mut owned = in_status(with(206), JobStatus::Completed);
    owned.result = Some(json!("exported"));
    if let Err((err, _)) = store.jobs_insert_owned(vec![owned.clone()]).await {
        panic!("jobs_insert_owned failed: {err}");
    }
    let all: Vec<Job> = alone
        .iter()
        .chain(&small)
        .chain(&large)
        .chain(std::iter::once(&owned))
        .cloned()
        .collect();
    let pending = match store.jobs_pending().await {
        Ok(p) => p,
        Err(err) => panic!("jobs_pending failed: {err}"),
    };
    for want in &all {
        let got = get(&store, want.id).await;
        assert_eq!(
            got.callback_secret, want.callback_secret,
            "job_get of job {}",
            want.id
        );
        let reference = want.reference.clone().expect("a reference");
        for query in [
            JobQuery::default().reference(reference.clone()),
            JobQuery::default()
                .task("export")
                .reference(reference.clone()),
        ] {
            let found = match store.jobs_query(&query).await {
                Ok(q) => q,
                Err(err) => panic!("jobs_query by reference failed: {err}"),
            };
            assert_eq!(
                found
                    .iter()
                    .map(|j| (j.id, j.callback_secret.clone()))
                    .collect::<Vec<_>>(),
                [(want.id, want.callback_secret.clone())],
                "jobs_query of reference {reference}"
            );
        }
        if !want.status.is_final() {
            let found = pending.iter().find(|j| j.id == want.id);
            assert_eq!(
                found.map(|j| j.callback_secret.clone()),
                Some(want.callback_secret.clone()),
                "jobs_pending of job {}",
                want.id
            );
        }
    }
    let none = match store
        .jobs_query(&JobQuery::default().reference("webhook:none"))
        .await
    {
        Ok(q) => q,
        Err(err) => panic!("jobs_query by reference failed: {err}"),
    };
    assert!(none.is_empty(), "no job has that reference: {none:?}");
    // A state change leaves it as it was.
    let mut done = in_status(alone[0].clone(), JobStatus::Running);
    record(&store, &mut done, vec![line("started", 1, now(), None)]).await;
    done = in_status(done, JobStatus::Completed);
    record(&store, &mut done, vec![line("completed", 1, now(), None)]).await;
    let got = get(&store, done.id).await;
    assert_eq!(got.status, JobStatus::Completed);
    assert_eq!(
        got.callback_secret, alone[0].callback_secret,
        "after two updates"
    );
    Verdict::Passed
}
