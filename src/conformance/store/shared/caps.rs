//! Shared stores, an owner's own caps: a claim takes no more of a task
//! than [`JobClaim::task_caps`](crate::store::JobClaim::task_caps) says,
//! nor of a tag's tasks together than
//! [`JobClaim::tag_caps`](crate::store::JobClaim::tag_caps) says, over all
//! its rounds (fair groups make a claim ask more than once), and holds no
//! other task back. A process sends them for its rate limits per process
//! (`RateLimit::per_process`); the store keeps nothing for them.

use uuid::Uuid;

use super::{claim_limited_by, due};
use crate::conformance::fixtures::{insert, now, secs};
use crate::conformance::harness::conformance_test;
use crate::conformance::{StoreFactory, Verdict};
use crate::job::Job;
use crate::store::TagCap;

/// How many of `jobs` are of `task`.
fn of(jobs: &[Job], task: &str) -> usize {
    jobs.iter().filter(|j| &*j.task == task).count()
}

conformance_test!(store,
    /// A claim takes at most its cap of a task and of a tag's tasks
    /// together, whether the task's jobs have fair groups or not; a cap of
    /// 0 takes none; tasks without a cap are not held back; and with a
    /// rate limit for every process as well, the claim takes the lesser.
    a_claim_takes_no_more_of_a_task_or_tag_than_its_owners_caps => claim_capped
);

async fn claim_capped<F: StoreFactory>(factory: F) -> Verdict {
    shared_store!(factory => store, shared);
    let t = now();
    let past = secs(t, -10);
    // `sms` jobs in three fair groups and without one, so a claim of them
    // asks the fair way, in more than one round.
    let sms: Vec<Job> = (0..30)
        .map(|n| {
            let mut job = due("sms", n, past);
            if n % 4 != 0 {
                job.group = Some(format!("tenant-{}", n % 4));
            }
            job
        })
        .collect();
    let digest: Vec<Job> = (100..110).map(|n| due("digest", n, past)).collect();
    let welcome: Vec<Job> = (200..210).map(|n| due("welcome", n, past)).collect();
    let free: Vec<Job> = (300..305).map(|n| due("free", n, past)).collect();
    for jobs in [&sms, &digest, &welcome, &free] {
        insert(&store, jobs).await;
    }
    let owner = shared.owner();
    let mail = |max: u32| TagCap {
        tag: "mail".into(),
        tasks: vec!["digest".into(), "welcome".into()],
        max,
    };

    let first = claim_limited_by(
        shared,
        owner,
        &["sms", "digest", "welcome", "free"],
        t,
        |c| {
            c.task_caps = vec![("sms".into(), 7)];
            c.tag_caps = vec![mail(5)];
        },
    )
    .await;
    assert_eq!(of(&first.jobs, "sms"), 7, "the task's cap, over its groups");
    assert_eq!(
        of(&first.jobs, "digest") + of(&first.jobs, "welcome"),
        5,
        "the tag's cap, its two tasks together"
    );
    assert_eq!(of(&first.jobs, "free"), 5, "a task without a cap: all");
    assert_eq!(
        first.retry_at, None,
        "a cap is the owner's: no time to wait for"
    );

    let other = Uuid::new_v4();
    let none = claim_limited_by(shared, other, &["sms", "digest"], t, |c| {
        c.task_caps = vec![("sms".into(), 0)];
        c.tag_caps = vec![mail(0)];
    })
    .await;
    assert!(none.jobs.is_empty(), "caps of 0 take none: {:?}", none.jobs);

    // A rate for every process lets 2 start now: the lesser wins.
    let rated = claim_limited_by(shared, other, &["sms"], t, |c| {
        c.task_caps = vec![("sms".into(), 10)];
        c.rate_limits = vec![("sms".into(), crate::RateLimit::per_second(1).burst(2))];
    })
    .await;
    assert_eq!(rated.jobs.len(), 2, "the rate's 2, under the cap of 10");
    let capped = claim_limited_by(shared, other, &["sms"], secs(t, 60), |c| {
        c.task_caps = vec![("sms".into(), 1)];
        c.rate_limits = vec![("sms".into(), crate::RateLimit::per_second(1).burst(2))];
    })
    .await;
    assert_eq!(capped.jobs.len(), 1, "the cap's 1, under the rate's 2");

    // Without caps, the rest.
    let rest = claim_limited_by(shared, owner, &["sms", "digest", "welcome"], t, |_| {}).await;
    assert_eq!(of(&rest.jobs, "sms"), 30 - 7 - 2 - 1);
    assert_eq!(of(&rest.jobs, "digest") + of(&rest.jobs, "welcome"), 15);
    Verdict::Passed
}
