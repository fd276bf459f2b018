//! Shared stores, running limits: a claim takes no more of a task, a
//! group or a tag than its running limit leaves.

use uuid::Uuid;

use super::{assert_claimed, claim_limited_by, delayed, due, mail};
use crate::conformance::fixtures::{in_status, insert, now, record, secs};
use crate::conformance::harness::conformance_test;
use crate::conformance::{StoreFactory, Verdict};
use crate::job::{Job, JobId, JobStatus};
use crate::store::{JobClaim, TagPlaces, TaskPlaces, JOBS_PER_PLACE};

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
            places: Vec::new(),
            tag_places: Vec::new(),
            ended,
            task_caps: Vec::new(),
            tag_caps: Vec::new(),
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
    /// A task's running limit is held as places: a claim gives its owner
    /// up to the places it wants of those the other owners leave, and
    /// leases at most `JOBS_PER_PLACE` jobs per place it holds, less those
    /// it holds; other tasks are not
    /// held back. An owner keeps no more places than it has jobs of the
    /// task leased and not final (its ended jobs, stored or not, aside),
    /// keeps those it still has jobs for, and an owner's places lapse
    /// with its lease.
    a_running_limit_is_held_as_places_that_owners_take_and_give_back => claim_limited
);

async fn claim_limited<F: StoreFactory>(factory: F) -> Verdict {
    shared_store!(factory => store, shared);
    let t = now();
    // Exactly as many due as the places of the limit lease: two for the
    // first owner, one for the second.
    let per = JOBS_PER_PLACE as usize;
    let limited: Vec<Job> = (0..3 * per as u32)
        .map(|n| due("limited", n, secs(t, -10)))
        .collect();
    let later: Vec<Job> = (1000..1004)
        .map(|n| delayed("limited", n, secs(t, -10), secs(t, 30)))
        .collect();
    let free: Vec<Job> = (500..504).map(|n| due("free", n, secs(t, -10))).collect();
    insert(&store, &limited).await;
    insert(&store, &later).await;
    insert(&store, &free).await;
    let lease = secs(t, 60);
    // A claim by `owner` at `now`, of the jobs due by then, asking for
    // `want` places and saying it holds so many of the task's jobs (none:
    // the whole limit of 3, and the store counts what it holds), saying
    // `ended` ended.
    let claim = |owner, now, want: Option<(u32, u32)>, ended: Vec<JobId>| {
        let params = JobClaim {
            owner,
            tasks: vec!["limited".into(), "free".into()],
            due_by: now,
            limit: 10_000,
            lease_until: lease,
            running_limits: vec![("limited".into(), 3)],
            places: want
                .map(|(wanted, holding)| {
                    vec![TaskPlaces {
                        task: "limited".into(),
                        wanted,
                        holding,
                        may_run: 0,
                    }]
                })
                .unwrap_or_default(),
            group_running_limits: Vec::new(),
            tag_places: Vec::new(),
            ended,
            task_caps: Vec::new(),
            tag_caps: Vec::new(),
            group_weights: Vec::new(),
            rate_limits: Vec::new(),
            group_rate_limits: Vec::new(),
            tag_limits: Vec::new(),
            now,
        };
        async move {
            shared
                .jobs_claim_reply(&params)
                .await
                .unwrap_or_else(|e| panic!("jobs_claim_reply({params:?}) failed: {e}"))
        }
    };
    let of = |jobs: &[Job], task: &str| jobs.iter().filter(|j| &*j.task == task).count();
    let places = |reply: &crate::store::ClaimReply| places_of(&reply.places, "limited");
    let (a, b, c, d) = four_owners(shared);
    let first = claim(a, t, Some((2, 0)), Vec::new()).await;
    assert_eq!(places(&first), Some(2), "the two places it asked for");
    assert_eq!(
        of(&first.jobs, "limited"),
        2 * per,
        "JOBS_PER_PLACE per place"
    );
    assert_eq!(
        of(&first.jobs, "free"),
        4,
        "the other task is not held back"
    );
    let second = claim(b, t, None, Vec::new()).await;
    assert_eq!(places(&second), Some(1), "the one place the first leaves");
    assert_eq!(of(&second.jobs, "limited"), per);
    let third = claim(c, secs(t, 31), None, Vec::new()).await;
    assert_eq!(places(&third), Some(0), "every place is held");
    assert_eq!(of(&third.jobs, "limited"), 0, "no place, no job");
    // The second owner's jobs ended (not stored yet) and nothing of
    // the task is due for it: it gives its place back.
    let ended: Vec<JobId> = second.jobs.iter().map(|j| j.id).collect();
    let back = claim(b, t, None, ended).await;
    assert_eq!(places(&back), Some(0), "no job of the task left: no place");
    let fourth = claim(c, secs(t, 31), None, Vec::new()).await;
    assert_eq!(places(&fourth), Some(1), "the place given back");
    assert_eq!(of(&fourth.jobs, "limited"), 4, "the later jobs, now due");
    // The first owner claims again with nothing new due: it keeps the
    // places it has jobs for.
    let again = claim(a, secs(t, 31), Some((2, 2 * per as u32)), Vec::new()).await;
    assert_eq!(places(&again), Some(2), "places in use are kept");
    assert_eq!(of(&again.jobs, "limited"), 0);
    // Holding one job of the task (as it says), it keeps one place.
    let fewer = claim(a, secs(t, 31), Some((2, 1)), Vec::new()).await;
    assert_eq!(places(&fewer), Some(1), "no more places than jobs held");
    // Its jobs stored as completed, the first owner holds no more places
    // at its next claim, the store counting what it holds.
    for job in first.jobs.iter().filter(|j| &*j.task == "limited") {
        let mut done = in_status(job.clone(), JobStatus::Completed);
        record(&store, &mut done, Vec::new()).await;
    }
    let done = claim(a, secs(t, 31), None, Vec::new()).await;
    assert_eq!(places(&done), Some(0), "its jobs are final: no place");
    // Past every lease, the places held lapse: a new owner takes the
    // whole limit for the jobs due then.
    let more: Vec<Job> = (2000..2004)
        .map(|n| due("limited", n, secs(t, 50)))
        .collect();
    insert(&store, &more).await;
    let fifth = claim(d, secs(t, 61), None, Vec::new()).await;
    assert_eq!(places(&fifth), Some(3), "lapsed places are free");
    assert_eq!(
        of(&fifth.jobs, "limited"),
        4,
        "the jobs due, fewer than its places lease"
    );
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

conformance_test!(store,
    /// A tag's running limit is held as places when the owner asks for
    /// them, as a task's is: a claim gives its owner up to the places it
    /// wants of those the other owners leave, and leases at most
    /// `JOBS_PER_PLACE` of the tag's jobs (all its tasks together) per
    /// place, less those it holds; other tasks are not held back. An
    /// owner keeps no more of the tag's places than the tag's jobs it
    /// holds, and its places lapse with its lease.
    a_tag_running_limit_is_held_as_places_that_owners_take_and_give_back => claim_tag_places
);

async fn claim_tag_places<F: StoreFactory>(factory: F) -> Verdict {
    shared_store!(factory => store, shared);
    let t = now();
    // Exactly as many of the tag's jobs due as its 3 places lease, of
    // both its tasks.
    let per = JOBS_PER_PLACE;
    let mail_jobs: Vec<Job> = (0..3 * per)
        .map(|n| {
            let task = if n % 2 == 0 { "digest" } else { "welcome" };
            due(task, n, secs(t, -10))
        })
        .collect();
    let later: Vec<Job> = (1000..1004)
        .map(|n| delayed("welcome", n, secs(t, -10), secs(t, 30)))
        .collect();
    let free: Vec<Job> = (500..502).map(|n| due("free", n, secs(t, -10))).collect();
    insert(&store, &mail_jobs).await;
    insert(&store, &later).await;
    insert(&store, &free).await;
    let tasks = ["welcome", "digest", "free"];
    // A claim by `owner` at `at`, asking for `wanted` of the tag's
    // places and saying it holds `holding` of the tag's jobs.
    let claim = |owner, at, wanted: u32, holding: u32| {
        claim_limited_by(shared, owner, &tasks, at, move |c| {
            c.limit = 10_000;
            c.lease_until = secs(t, 60);
            c.tag_limits = vec![mail(Some(3), None)];
            c.tag_places = vec![TagPlaces {
                tag: "mail".into(),
                wanted,
                holding,
                may_run: 0,
            }];
        })
    };
    let of = |jobs: &[Job], task: &str| jobs.iter().filter(|j| &*j.task == task).count();
    let mail_of = |jobs: &[Job]| of(jobs, "digest") + of(jobs, "welcome");
    let places = |reply: &crate::store::ClaimReply| places_of(&reply.tag_places, "mail");
    let (a, b, c, d) = four_owners(shared);
    let first = claim(a, t, 2, 0).await;
    assert_eq!(places(&first), Some(2), "the two places it asked for");
    assert_eq!(
        mail_of(&first.jobs),
        2 * per as usize,
        "JOBS_PER_PLACE per place, of the tag's tasks together"
    );
    assert!(
        of(&first.jobs, "digest") > 0 && of(&first.jobs, "welcome") > 0,
        "both of the tag's tasks"
    );
    assert_eq!(
        of(&first.jobs, "free"),
        2,
        "the other task is not held back"
    );
    let second = claim(b, t, 3, 0).await;
    assert_eq!(places(&second), Some(1), "the one place the first leaves");
    assert_eq!(mail_of(&second.jobs), per as usize);
    let third = claim(c, secs(t, 31), 3, 0).await;
    assert_eq!(places(&third), Some(0), "every place is held");
    assert_eq!(mail_of(&third.jobs), 0, "no place, no job");
    // The second owner holds none of the tag's jobs now (they ended),
    // and nothing of the tag is due for it: it gives its place back.
    let back = claim(b, t, 3, 0).await;
    assert_eq!(places(&back), Some(0), "no job of the tag left: no place");
    let fourth = claim(c, secs(t, 31), 3, 0).await;
    assert_eq!(places(&fourth), Some(1), "the place given back");
    assert_eq!(mail_of(&fourth.jobs), 4, "the later jobs, now due");
    // The first owner, holding its jobs, keeps its places; holding one
    // job of the tag, it keeps one.
    let again = claim(a, secs(t, 31), 2, 2 * per).await;
    assert_eq!(places(&again), Some(2), "places in use are kept");
    let fewer = claim(a, secs(t, 31), 2, 1).await;
    assert_eq!(places(&fewer), Some(1), "no more places than jobs held");
    // Past every lease, the places held lapse: a new owner takes the
    // whole limit for the jobs due then.
    let more: Vec<Job> = (2000..2004)
        .map(|n| due("digest", n, secs(t, 50)))
        .collect();
    insert(&store, &more).await;
    let fifth = claim(d, secs(t, 61), 3, 0).await;
    assert_eq!(places(&fifth), Some(3), "lapsed places are free");
    assert_eq!(
        mail_of(&fifth.jobs),
        4,
        "the jobs due then, fewer than its places lease"
    );
    Verdict::Passed
}

/// The places a claim's reply gives of task or tag `name`.
fn places_of(places: &[(String, u32)], name: &str) -> Option<u32> {
    places.iter().find(|(n, _)| n == name).map(|(_, n)| *n)
}

/// The store's own owner and three others.
fn four_owners(shared: &dyn crate::store::SharedStore) -> (Uuid, Uuid, Uuid, Uuid) {
    (
        shared.owner(),
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
    )
}

conformance_test!(store,
    /// While another owner is short of a running limit's places (it
    /// asked for more than it got, and had jobs for them), a claim gives
    /// an owner at most its fair share of the limit, but the store keeps
    /// the places it may still be running in: they go back at its next
    /// claims as its runs end, and the short owner takes them. An owner
    /// without jobs for more places is not short, and takes nothing from
    /// the others.
    places_are_shared_fairly_between_the_owners_that_need_them => claim_places_fairly
);

async fn claim_places_fairly<F: StoreFactory>(factory: F) -> Verdict {
    shared_store!(factory => store, shared);
    let t = now();
    let per = JOBS_PER_PLACE;
    let busy: Vec<Job> = (0..8 * per)
        .map(|n| due("limited", n, secs(t, -10)))
        .collect();
    let quiet: Vec<Job> = (0..2 * per)
        .map(|n| due("quiet", 10_000 + n, secs(t, -10)))
        .collect();
    insert(&store, &busy).await;
    insert(&store, &quiet).await;
    // A claim of the one task in `only` (limited to `cap` running) by
    // `owner`, wanting `wanted` places, holding `holding` of its jobs and
    // running `running` of them.
    let claim = |owner,
                 only: &'static [&'static str; 1],
                 cap: u32,
                 (wanted, holding, running): (u32, u32, u32)| {
        let task = only[0];
        claim_limited_by(shared, owner, only, t, move |c| {
            c.limit = 10_000;
            c.running_limits = vec![(task.into(), cap)];
            c.places = vec![TaskPlaces {
                task: task.into(),
                wanted,
                holding,
                may_run: running,
            }];
        })
    };
    let places = |reply: &crate::store::ClaimReply, task| places_of(&reply.places, task);
    let (a, b, c, d) = four_owners(shared);
    let first = claim(a, &["limited"], 4, (4, 0, 0)).await;
    assert_eq!(places(&first, "limited"), Some(4), "the whole limit");
    assert_eq!(first.jobs.len(), 4 * per as usize);
    let held = first.jobs.len() as u32;
    let short = claim(b, &["limited"], 4, (4, 0, 0)).await;
    assert_eq!(places(&short, "limited"), Some(0), "every place is held");
    assert!(short.jobs.is_empty());
    // The other owner is short (jobs are due for it): the first is
    // given its fair share, half the limit of 4, and starts no more...
    let fair = claim(a, &["limited"], 4, (4, held, 4)).await;
    assert_eq!(places(&fair, "limited"), Some(2), "half the limit of 4");
    // ...but keeps the places it may still run in until its runs end.
    let still = claim(b, &["limited"], 4, (4, 0, 0)).await;
    assert_eq!(places(&still, "limited"), Some(0), "places in use are kept");
    // Its runs ended but one, it keeps its share alone.
    let shared_out = claim(a, &["limited"], 4, (4, held - 3, 2)).await;
    assert_eq!(places(&shared_out, "limited"), Some(2));
    let given = claim(b, &["limited"], 4, (4, 0, 0)).await;
    assert_eq!(places(&given, "limited"), Some(2), "the places given back");
    assert_eq!(given.jobs.len(), 2 * per as usize);
    // An owner with nothing due for it is not short: the holder keeps
    // every place it wants.
    let all = claim(c, &["quiet"], 2, (2, 0, 0)).await;
    assert_eq!(places(&all, "quiet"), Some(2));
    assert_eq!(all.jobs.len(), 2 * per as usize, "every job of the task");
    let idle = claim(d, &["quiet"], 2, (2, 0, 0)).await;
    assert_eq!(places(&idle, "quiet"), Some(0));
    let kept = claim(c, &["quiet"], 2, (2, 2 * per, 1)).await;
    assert_eq!(
        places(&kept, "quiet"),
        Some(2),
        "an owner with no job due is not short"
    );
    Verdict::Passed
}
