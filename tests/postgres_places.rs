//! A task's running limit held as places on PostgreSQL (schema version
//! 20): the places a process holds live as long as its leases, are
//! renewed with them, and are free for the others as soon as it leaves.
#![cfg(feature = "postgres")]

mod common;

use std::time::Duration;

use chrono::{DateTime, Utc};
use common::pg;
use kessel::store::{ClaimReply, JobClaim, JobHeartbeat, PgStore, SharedStore, Store, TaskPlaces};
use uuid::Uuid;

/// `n` ready jobs of task "limited", due at `now`.
fn jobs(n: usize, now: DateTime<Utc>) -> Vec<kessel::Job> {
    pg::ready_jobs("limited", n, now)
}

/// Two processes' stores on one schema, with leases of a minute.
async fn two_stores(db: &pg::TestDb) -> (PgStore, PgStore) {
    db.two_stores(Duration::from_secs(60)).await
}

/// A claim of `owner` at `now` of task "limited", limited to 3 running;
/// the store counts what the owner holds.
async fn claim(store: &PgStore, owner: Uuid, now: DateTime<Utc>) -> ClaimReply {
    claim_asking(store, owner, now, Vec::new()).await
}

/// A claim as [`claim`], asking `places` of the task.
async fn claim_asking(
    store: &PgStore,
    owner: Uuid,
    now: DateTime<Utc>,
    places: Vec<TaskPlaces>,
) -> ClaimReply {
    store
        .jobs_claim_reply(&JobClaim {
            running_limits: vec![("limited".into(), 3)],
            places,
            ..JobClaim::new(
                owner,
                ["limited"],
                now,
                100,
                now + chrono::Duration::seconds(60),
            )
        })
        .await
        .expect("claim")
}

fn places(reply: &ClaimReply) -> Option<u32> {
    reply
        .places
        .iter()
        .find(|(task, _)| task == "limited")
        .map(|(_, n)| *n)
}

#[actix_rt::test]
async fn a_process_that_leaves_gives_its_places_back_at_once() {
    let Some(db) = pg::fresh().await else { return };
    let (first, second) = two_stores(&db).await;
    let now = Utc::now();
    first.jobs_insert(&jobs(6, now)).await.unwrap();
    let taken = claim(&first, first.owner(), now).await;
    assert_eq!(places(&taken), Some(3), "the whole limit");
    assert_eq!(taken.jobs.len(), 6);
    second.jobs_insert(&jobs(2, now)).await.unwrap();
    let held_back = claim(&second, second.owner(), now).await;
    assert_eq!(places(&held_back), Some(0), "every place is held");
    assert!(held_back.jobs.is_empty());
    first.node_leave(first.owner()).await.unwrap();
    let after = claim(&second, second.owner(), now).await;
    assert_eq!(
        places(&after),
        Some(2),
        "its places are free: one per job due"
    );
    assert_eq!(after.jobs.len(), 2);
    db.drop().await;
}

#[actix_rt::test]
async fn a_heartbeat_keeps_a_processs_places_past_its_first_lease() {
    let Some(db) = pg::fresh().await else { return };
    let (first, second) = two_stores(&db).await;
    let now = Utc::now();
    first.jobs_insert(&jobs(3, now)).await.unwrap();
    let taken = claim(&first, first.owner(), now).await;
    assert_eq!(places(&taken), Some(3));
    second.jobs_insert(&jobs(2, now)).await.unwrap();
    // Past the claim's lease, the places would be free...
    let later = now + chrono::Duration::seconds(90);
    // ...but the heartbeat renewed them with the jobs' leases.
    first
        .jobs_heartbeat(&JobHeartbeat {
            owner: first.owner(),
            ids: taken.jobs.iter().map(|j| j.id).collect(),
            lease_until: now + chrono::Duration::seconds(120),
        })
        .await
        .unwrap();
    let held_back = claim(&second, second.owner(), later).await;
    assert_eq!(places(&held_back), Some(0), "renewed places are held");
    assert!(held_back.jobs.is_empty());
    // Past the renewed lease, they lapse.
    let lapsed = claim(
        &second,
        second.owner(),
        now + chrono::Duration::seconds(121),
    )
    .await;
    assert_eq!(places(&lapsed), Some(2), "lapsed places are free");
    db.drop().await;
}

#[actix_rt::test]
async fn a_heartbeat_renews_only_the_places_of_tasks_it_holds_jobs_of() {
    let Some(db) = pg::fresh().await else { return };
    let (first, second) = two_stores(&db).await;
    let now = Utc::now();
    first.jobs_insert(&jobs(3, now)).await.unwrap();
    let taken = claim(&first, first.owner(), now).await;
    assert_eq!(places(&taken), Some(3));
    // Its jobs of the task are over (stored or given back); it goes on
    // holding a job of another task, whose lease it renews.
    first
        .jobs_release(
            first.owner(),
            &taken.jobs.iter().map(|j| j.id).collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    let mut other = jobs(1, now);
    other[0].task = "other".into();
    first.jobs_insert(&other).await.unwrap();
    first
        .jobs_heartbeat(&JobHeartbeat {
            owner: first.owner(),
            ids: vec![other[0].id],
            lease_until: now + chrono::Duration::seconds(120),
        })
        .await
        .unwrap();
    // Past the claim's lease, its places of the task have lapsed.
    let lapsed = claim(&second, second.owner(), now + chrono::Duration::seconds(90)).await;
    assert_eq!(
        places(&lapsed),
        Some(3),
        "places of a task it holds no job of lapse"
    );
    db.drop().await;
}

#[actix_rt::test]
async fn places_count_the_jobs_every_round_of_a_claim_took() {
    let Some(db) = pg::fresh().await else { return };
    let store = db.store(Duration::from_secs(60)).await;
    let now = Utc::now();
    // Two jobs without a group, two of group "g": the claim takes the
    // first two in its first statement, sees grouped jobs waiting, and
    // takes the others in a second, fair one.
    let mut four = jobs(4, now);
    for job in &mut four[2..] {
        job.group = Some("g".into());
    }
    store.jobs_insert(&four).await.unwrap();
    let asked = TaskPlaces {
        task: "limited".into(),
        wanted: 3,
        holding: 0,
        may_run: 0,
    };
    let reply = claim_asking(&store, store.owner(), now, vec![asked]).await;
    assert_eq!(reply.jobs.len(), 4);
    assert_eq!(
        places(&reply),
        Some(3),
        "four jobs held after both rounds: all three places"
    );
    db.drop().await;
}
