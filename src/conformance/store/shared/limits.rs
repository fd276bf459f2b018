//! Shared stores, running limits: a claim takes no more of a task, a
//! group or a tag than its running limit leaves.

use uuid::Uuid;

use super::{assert_claimed, claim_limited_by, due, mail};
use crate::conformance::fixtures::{in_status, insert, now, record, secs};
use crate::conformance::harness::conformance_test;
use crate::conformance::{StoreFactory, Verdict};
use crate::job::{Job, JobId, JobStatus};
use crate::store::JobClaim;

conformance_test!(store,
    /// A claim takes no more jobs of each group of a task limited per
    /// group than the limit minus the group's jobs already leased (by any
    /// owner) and not final, the jobs without a group being one more
    /// group; other tasks are not held back, and an ended job makes room
    /// in its own group only.
    a_claim_takes_no_more_of_a_group_than_its_limit_per_group_leaves => claim_limited_per_group
);

async fn claim_limited_per_group<F: StoreFactory>(factory: F) -> Verdict {
    shared_store!(factory => store, shared);
    let t = now();
    let mut jobs = Vec::new();
    for (i, group) in [Some("a"), Some("b"), None].into_iter().enumerate() {
        for n in 0..3 {
            let mut job = due("limited", (i * 10) as u32 + n, secs(t, -10));
            job.group = group.map(str::to_owned);
            jobs.push(job);
        }
    }
    jobs.extend((100..102).map(|n| due("free", n, secs(t, -10))));
    insert(&store, &jobs).await;
    let lease = secs(t, 60);
    let claim = |owner, ended: Vec<JobId>| {
        let params = JobClaim {
            owner,
            tasks: vec!["limited".into(), "free".into()],
            due_by: t,
            limit: 100,
            lease_until: lease,
            running_limits: Vec::new(),
            group_running_limits: vec![("limited".into(), 2)],
            ended,
            group_weights: Vec::new(),
            rate_limits: Vec::new(),
            group_rate_limits: Vec::new(),
            tag_limits: Vec::new(),
            now: t,
        };
        async move {
            shared
                .jobs_claim(&params)
                .await
                .unwrap_or_else(|e| panic!("jobs_claim({params:?}) failed: {e}"))
        }
    };
    let of = |jobs: &[Job], task: &str, group: Option<&str>| {
        jobs.iter()
            .filter(|j| &*j.task == task && j.group.as_deref() == group)
            .count()
    };
    let (a, b) = (shared.owner(), Uuid::new_v4());
    let first = claim(a, Vec::new()).await;
    for group in [Some("a"), Some("b"), None] {
        assert_eq!(
            of(&first, "limited", group),
            2,
            "2 of the 3 of group {group:?}"
        );
    }
    assert_eq!(
        of(&first, "free", None),
        2,
        "the other task is not held back"
    );
    let second = claim(b, Vec::new()).await;
    assert!(
        second.is_empty(),
        "another owner gets none while each group has 2 leased: {second:?}"
    );
    let ended = first
        .iter()
        .find(|j| j.group.as_deref() == Some("a"))
        .expect("a job of group a")
        .id;
    let credited = claim(a, vec![ended]).await;
    assert_eq!(credited.len(), 1, "one room, in group a: {credited:?}");
    assert_eq!(credited[0].group.as_deref(), Some("a"));
    Verdict::Passed
}

conformance_test!(store,
    /// A claim takes no more jobs of a task limited in running jobs than
    /// its limit minus the task's jobs already leased (by any owner) and
    /// not final; other tasks in the same claim are not held back, and a
    /// job that ends makes room.
    a_claim_takes_no_more_of_a_limited_task_than_its_limit_leaves => claim_limited
);

async fn claim_limited<F: StoreFactory>(factory: F) -> Verdict {
    shared_store!(factory => store, shared);
    let t = now();
    let limited: Vec<Job> = (0..6).map(|n| due("limited", n, secs(t, -10))).collect();
    let free: Vec<Job> = (10..14).map(|n| due("free", n, secs(t, -10))).collect();
    insert(&store, &limited).await;
    insert(&store, &free).await;
    let lease = secs(t, 60);
    let claim_with_limit = |owner| {
        let params = JobClaim {
            owner,
            tasks: vec!["limited".into(), "free".into()],
            due_by: t,
            limit: 100,
            lease_until: lease,
            running_limits: vec![("limited".into(), 3)],
            group_running_limits: Vec::new(),
            ended: Vec::new(),
            group_weights: Vec::new(),
            rate_limits: Vec::new(),
            group_rate_limits: Vec::new(),
            tag_limits: Vec::new(),
            now: t,
        };
        async move {
            shared
                .jobs_claim(&params)
                .await
                .unwrap_or_else(|e| panic!("jobs_claim({params:?}) failed: {e}"))
        }
    };
    // The store's own owner first: its writes (the completion below) are
    // those of the process holding the lease.
    let (a, b) = (shared.owner(), Uuid::new_v4());
    let first = claim_with_limit(a).await;
    let of = |jobs: &[Job], task: &str| jobs.iter().filter(|j| &*j.task == task).count();
    assert_eq!(of(&first, "limited"), 3, "the limit: 3 of the 6");
    assert_eq!(of(&first, "free"), 4, "the other task is not held back");
    let second = claim_with_limit(b).await;
    assert_eq!(
        of(&second, "limited"),
        0,
        "another owner gets none while 3 are leased"
    );
    // The owner says one of its leased jobs ended (not stored yet): that
    // one no longer counts, so one more may be leased, by it alone.
    let ended = first
        .iter()
        .find(|j| &*j.task == "limited")
        .expect("a limited job")
        .id;
    let credited = shared
        .jobs_claim(&JobClaim {
            owner: a,
            tasks: vec!["limited".into()],
            due_by: t,
            limit: 100,
            lease_until: lease,
            running_limits: vec![("limited".into(), 3)],
            group_running_limits: Vec::new(),
            ended: vec![ended],
            group_weights: Vec::new(),
            rate_limits: Vec::new(),
            group_rate_limits: Vec::new(),
            tag_limits: Vec::new(),
            now: t,
        })
        .await
        .unwrap_or_else(|e| panic!("jobs_claim with an ended job failed: {e}"));
    assert_eq!(
        of(&credited, "limited"),
        1,
        "the ended job's room is refilled"
    );
    // The ended job's end is stored: its room was refilled already, so
    // another owner still gets none; one more completing makes room.
    for id in [
        ended,
        first
            .iter()
            .find(|j| &*j.task == "limited" && j.id != ended)
            .expect("another")
            .id,
    ] {
        let job = first.iter().find(|j| j.id == id).expect("claimed").clone();
        let mut done = in_status(job, JobStatus::Completed);
        record(&store, &mut done, Vec::new()).await;
        let third = claim_with_limit(b).await;
        let want = usize::from(id != ended);
        assert_eq!(
            of(&third, "limited"),
            want,
            "after {} stored completion(s), room for {want}",
            1 + want
        );
    }
    Verdict::Passed
}

conformance_test!(store,
    /// A claim takes no more jobs of a tag limited in running jobs than
    /// its limit minus the jobs of all the tag's tasks already leased (by
    /// any owner, of any of its tasks, served by the claim or not) and
    /// not final: the best of the tag's served tasks together, other
    /// tasks not held back; an ended job makes room.
    a_claim_takes_no_more_of_a_tag_than_its_running_limit_leaves => claim_tag_limited
);

async fn claim_tag_limited<F: StoreFactory>(factory: F) -> Verdict {
    shared_store!(factory => store, shared);
    let t = now();
    // Digest and welcome jobs in turns, oldest first: d0 w0 d1 w1 ...
    let mut jobs = Vec::new();
    for n in 0..4u32 {
        jobs.push(due("digest", n, secs(t, -40 + 2 * i64::from(n))));
        jobs.push(due("welcome", 10 + n, secs(t, -39 + 2 * i64::from(n))));
    }
    let free: Vec<Job> = (20..22).map(|n| due("free", n, secs(t, -50))).collect();
    insert(&store, &jobs).await;
    insert(&store, &free).await;
    let limit = |c: &mut JobClaim| c.tag_limits = vec![mail(Some(3), None)];
    let mail_of = |jobs: &[Job]| {
        jobs.iter()
            .filter(|j| &*j.task == "digest" || &*j.task == "welcome")
            .count()
    };
    let (a, b) = (shared.owner(), Uuid::new_v4());
    let first = claim_limited_by(shared, a, &["welcome", "digest", "free"], t, limit).await;
    assert_claimed(
        &first.jobs,
        &[&jobs[0], &jobs[1], &jobs[2], &free[0], &free[1]],
        "the 3 best of the tag's tasks together, and the other task's",
    );
    let second = claim_limited_by(shared, b, &["welcome"], t, limit).await;
    assert!(
        second.jobs.is_empty(),
        "another owner serving one of the tag's tasks gets none while 3 of the tag are leased: {:?}",
        second.jobs
    );
    // The owner says one of its leased jobs ended (not stored yet): that
    // one no longer counts, so one more may be leased, by it alone.
    let ended = jobs[0].id;
    let credited = claim_limited_by(shared, a, &["welcome", "digest"], t, |c| {
        limit(c);
        c.ended = vec![ended];
    })
    .await;
    assert_claimed(
        &credited.jobs,
        &[&jobs[3]],
        "the ended job's room is refilled, with the tag's best",
    );
    // Its end stored, another owner still gets none (the room was
    // refilled); one more completing makes room for one.
    for (id, want) in [(ended, 0), (jobs[1].id, 1)] {
        let job = first
            .jobs
            .iter()
            .find(|j| j.id == id)
            .expect("claimed")
            .clone();
        let mut done = in_status(job, JobStatus::Completed);
        record(&store, &mut done, Vec::new()).await;
        let next = claim_limited_by(shared, b, &["welcome", "digest"], t, limit).await;
        assert_eq!(
            mail_of(&next.jobs),
            want,
            "after the completion of {id}, room for {want}: {:?}",
            next.jobs
        );
    }
    Verdict::Passed
}
