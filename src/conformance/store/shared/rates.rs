//! Shared stores, rate limits: a claim takes no more of a rate-limited
//! task than its rate allows, and claims by many owners over time
//! follow a task's, a tag's and each group's rate (the generic cell rate
//! algorithm).

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{claim_limited_by, due, mail};
use crate::conformance::fixtures::{insert, now, secs};
use crate::conformance::harness::conformance_test;
use crate::conformance::{StoreFactory, Verdict};
use crate::job::Job;
use crate::store::{JobClaim, SharedStore};

/// A claim of `tasks` by `owner` at `at`, with `rate` on task `rated`.
async fn claim_rated(
    shared: &dyn SharedStore,
    owner: Uuid,
    tasks: &[&str],
    rate: crate::RateLimit,
    at: DateTime<Utc>,
) -> crate::store::ClaimReply {
    let params = JobClaim {
        owner,
        tasks: tasks.iter().map(|t| t.to_string()).collect(),
        due_by: at,
        limit: 100,
        lease_until: secs(at, 600),
        running_limits: Vec::new(),
        group_running_limits: Vec::new(),
        places: Vec::new(),
        tag_places: Vec::new(),
        rate_limits: vec![("rated".into(), rate)],
        group_rate_limits: Vec::new(),
        tag_limits: Vec::new(),
        now: at,
        ended: Vec::new(),
        task_caps: Vec::new(),
        tag_caps: Vec::new(),
        group_weights: Vec::new(),
    };
    shared
        .jobs_claim_reply(&params)
        .await
        .unwrap_or_else(|e| panic!("jobs_claim_reply({params:?}) failed: {e}"))
}

conformance_test!(store,
    /// A claim takes no more jobs of a rate-limited task than the limit
    /// allows at the claim's time, whichever owner asks: its burst after a
    /// quiet spell, then one per interval. The rest stay in the store,
    /// and the reply says when the next may be claimed; other tasks in the
    /// same claim are not held back. (Time is passed in: the claim's
    /// `now`.)
    a_claim_takes_no_more_of_a_rate_limited_task_than_its_rate_allows => claim_rated_limit
);

async fn claim_rated_limit<F: StoreFactory>(factory: F) -> Verdict {
    shared_store!(factory => store, shared);
    let t = now();
    let rated: Vec<Job> = (0..20).map(|n| due("rated", n, secs(t, -10))).collect();
    let free: Vec<Job> = (100..103).map(|n| due("free", n, secs(t, -10))).collect();
    insert(&store, &rated).await;
    insert(&store, &free).await;
    // 10 a second, bursts of 4: starts 100 ms apart, 4 at once at most.
    let rate = crate::RateLimit::per_second(10).burst(4);
    let ms = |n: i64| t + chrono::Duration::milliseconds(n);
    let of = |jobs: &[Job], task: &str| jobs.iter().filter(|j| &*j.task == task).count();
    let (a, b) = (shared.owner(), Uuid::new_v4());

    let first = claim_rated(shared, a, &["rated", "free"], rate, t).await;
    assert_eq!(of(&first.jobs, "rated"), 4, "the burst: 4 of the 20");
    assert_eq!(
        of(&first.jobs, "free"),
        3,
        "the other task is not held back"
    );
    assert_eq!(
        first.retry_at,
        Some(ms(100)),
        "the burst is spent: the next start is allowed one interval on"
    );
    let second = claim_rated(shared, b, &["rated"], rate, ms(50)).await;
    assert!(
        second.jobs.is_empty(),
        "another owner gets none before the interval: {:?}",
        second.jobs
    );
    assert_eq!(second.retry_at, Some(ms(100)), "and is told when");
    let third = claim_rated(shared, b, &["rated"], rate, ms(100)).await;
    assert_eq!(third.jobs.len(), 1, "one interval later, one more");
    assert_eq!(third.retry_at, Some(ms(200)));
    // A quiet second refills the burst, never more.
    let fourth = claim_rated(shared, a, &["rated"], rate, ms(1_500)).await;
    assert_eq!(fourth.jobs.len(), 4, "after a quiet spell, the burst again");
    // The jobs are all claimed: nothing to wait for.
    let rest = claim_rated(shared, a, &["rated"], rate, ms(60_000)).await;
    assert_eq!(rest.jobs.len(), 4, "the burst");
    let last = claim_rated(shared, b, &["rated"], rate, ms(120_000)).await;
    assert_eq!(last.jobs.len(), 4, "the burst");
    let none = claim_rated(shared, b, &["rated"], rate, ms(180_000)).await;
    assert_eq!(none.jobs.len(), 3, "the last 3 of the 20");
    assert_eq!(
        none.retry_at, None,
        "no job was held back: no time to claim again"
    );
    Verdict::Passed
}

conformance_test!(store,
    /// Claims by three owners at many times over a simulated 20 seconds
    /// never take more of a rate-limited task than `burst + span /
    /// interval` over any span between claims, and each takes all the
    /// limit allows at its time while jobs wait: the limit holds for
    /// every owner together.
    claims_of_many_owners_never_start_more_than_the_rate_allows_over_time => claim_rated_over_time
);

async fn claim_rated_over_time<F: StoreFactory>(factory: F) -> Verdict {
    shared_store!(factory => store, shared);
    let t = now();
    let rated: Vec<Job> = (0..300).map(|n| due("rated", n, secs(t, -10))).collect();
    insert(&store, &rated).await;
    // 5 a second, bursts of 3: an interval of 200 ms.
    let rate = crate::RateLimit::per_second(5).burst(3);
    let owners = [shared.owner(), Uuid::new_v4(), Uuid::new_v4()];
    // (time in ms, jobs taken), every claim.
    let mut taken: Vec<(i64, usize)> = Vec::new();
    let mut at = 0i64;
    let mut i = 0usize;
    while at <= 20_000 {
        let reply = claim_rated(
            shared,
            owners[i % owners.len()],
            &["rated"],
            rate,
            t + chrono::Duration::milliseconds(at),
        )
        .await;
        taken.push((at, reply.jobs.len()));
        // Uneven steps, some within an interval, some across several.
        at += [37, 90, 210, 13, 450, 160][i % 6];
        i += 1;
    }
    // Over every span [a, b] between claims: at most burst + (b - a) / 200.
    for (x, &(from, _)) in taken.iter().enumerate() {
        let mut sum = 0;
        for &(to, n) in &taken[x..] {
            sum += n;
            let most = 3 + usize::try_from((to - from) / 200).unwrap_or(0);
            assert!(
                sum <= most,
                "{sum} claimed from {from} ms to {to} ms, the limit allows {most}: {taken:?}"
            );
        }
    }
    // And each claim takes all the limit allows while jobs wait: exactly
    // what the generic cell rate algorithm gives (one start per 200 ms,
    // up to 400 ms ahead).
    let mut tat = i64::MIN;
    for &(at, n) in &taken {
        let from = tat.max(at);
        let allowed = if from - at > 400 {
            0
        } else {
            (at + 400 - from) / 200 + 1
        };
        assert_eq!(
            n as i64, allowed,
            "at {at} ms the limit allows {allowed}: {taken:?}"
        );
        if n > 0 {
            tat = from + n as i64 * 200;
        }
    }
    Verdict::Passed
}

/// What the generic cell rate algorithm allows at `at` (ms) with the
/// theoretical arrival time `tat`: how many starts, and from when.
fn gcra_allows(tat: i64, at: i64, interval: i64, tolerance: i64) -> (i64, i64) {
    let from = tat.max(at);
    let allowed = if from - at > tolerance {
        0
    } else {
        (at + tolerance - from) / interval + 1
    };
    (allowed, from)
}

/// Uneven steps between claims (ms), some within an interval, some
/// across several.
const STEPS: [i64; 6] = [37, 90, 210, 13, 450, 160];

conformance_test!(store,
    /// Claims by three owners, each serving some of a rate-limited tag's
    /// tasks, at many times over a simulated 20 seconds take of the
    /// tag's tasks together exactly what the tag's rate allows at each
    /// claim's time (the generic cell rate algorithm), and the reply says
    /// when the next start is allowed: the limit holds for every owner
    /// and every task of the tag together.
    claims_of_a_rate_limited_tags_tasks_by_many_owners_follow_the_tags_rate => claim_tag_rated_over_time
);

async fn claim_tag_rated_over_time<F: StoreFactory>(factory: F) -> Verdict {
    shared_store!(factory => store, shared);
    let t = now();
    let mut jobs: Vec<Job> = (0..150).map(|n| due("welcome", n, secs(t, -10))).collect();
    jobs.extend((150..300).map(|n| due("digest", n, secs(t, -10))));
    jobs.extend((300..303).map(|n| due("free", n, secs(t, -10))));
    insert(&store, &jobs).await;
    // 5 a second, bursts of 3: an interval of 200 ms, 400 ms ahead.
    let rate = crate::RateLimit::per_second(5).burst(3);
    let limit = |c: &mut JobClaim| c.tag_limits = vec![mail(None, Some(rate))];
    let served: [&[&str]; 3] = [&["welcome", "free"], &["digest"], &["digest", "welcome"]];
    let owners = [shared.owner(), Uuid::new_v4(), Uuid::new_v4()];
    let ms = |n: i64| t + chrono::Duration::milliseconds(n);
    let (mut tat, mut at) = (i64::MIN, 0i64);
    let mut i = 0usize;
    while at <= 20_000 {
        let reply = claim_limited_by(shared, owners[i % 3], served[i % 3], ms(at), limit).await;
        let of_tag = reply.jobs.iter().filter(|j| &*j.task != "free").count() as i64;
        let (allowed, from) = gcra_allows(tat, at, 200, 400);
        assert_eq!(
            of_tag,
            allowed,
            "at {at} ms, owner {} serving {:?}: the tag's rate allows {allowed}",
            i % 3,
            served[i % 3]
        );
        if i == 0 {
            assert_eq!(
                reply.jobs.iter().filter(|j| &*j.task == "free").count(),
                3,
                "a task of another tag is not held back"
            );
        }
        tat = from + of_tag * 200;
        assert_eq!(
            reply.retry_at,
            Some(ms(tat - 400)),
            "at {at} ms the reply says when the tag allows its next start"
        );
        at += STEPS[i % STEPS.len()];
        i += 1;
    }
    Verdict::Passed
}

conformance_test!(store,
    /// Claims by three owners at many times over a simulated 20 seconds
    /// take of each group of a task limited in rate per group (the jobs
    /// without a group being one more group) exactly what the group's
    /// own copy of the limit allows at each claim's time, whatever the
    /// other groups took, and the reply says when the next start of any
    /// group is allowed: each group's limit holds for every owner
    /// together.
    claims_of_many_owners_follow_each_groups_own_rate => claim_group_rated_over_time
);

async fn claim_group_rated_over_time<F: StoreFactory>(factory: F) -> Verdict {
    shared_store!(factory => store, shared);
    let t = now();
    let groups = [Some("a"), Some("b"), None];
    let mut jobs = Vec::new();
    for (g, group) in groups.iter().enumerate() {
        for n in 0..150u32 {
            let mut job = due("rated", (g as u32) * 1000 + n, secs(t, -10));
            job.group = group.map(str::to_owned);
            jobs.push(job);
        }
    }
    insert(&store, &jobs).await;
    // Per group: 5 a second, bursts of 2: an interval of 200 ms, 200 ms
    // ahead.
    let rate = crate::RateLimit::per_second(5).burst(2);
    let limit = |c: &mut JobClaim| c.group_rate_limits = vec![("rated".into(), rate)];
    let owners = [shared.owner(), Uuid::new_v4(), Uuid::new_v4()];
    let ms = |n: i64| t + chrono::Duration::milliseconds(n);
    let mut tats = [i64::MIN; 3];
    let mut at = 0i64;
    let mut i = 0usize;
    while at <= 20_000 {
        let reply = claim_limited_by(shared, owners[i % 3], &["rated"], ms(at), limit).await;
        for (g, group) in groups.iter().enumerate() {
            let n = reply
                .jobs
                .iter()
                .filter(|j| j.group.as_deref() == *group)
                .count() as i64;
            let (allowed, from) = gcra_allows(tats[g], at, 200, 200);
            assert_eq!(
                n, allowed,
                "at {at} ms group {group:?} is allowed {allowed}: {:?}",
                reply.jobs
            );
            tats[g] = from + n * 200;
        }
        let next = tats.iter().min().copied().unwrap_or_default() - 200;
        assert_eq!(
            reply.retry_at,
            Some(ms(next)),
            "at {at} ms the reply says when the first group allows its next start"
        );
        at += STEPS[i % STEPS.len()];
        i += 1;
    }
    Verdict::Passed
}
