//! A tag's running limit held as places on PostgreSQL (schema version
//! 21): the places a process holds of a tag live as long as its leases of
//! the tag's jobs, of any of its tasks, are renewed with them, and are
//! free for the others as soon as it leaves.
#![cfg(feature = "postgres")]

mod common;

use std::time::Duration;

use chrono::{DateTime, Utc};
use common::pg;
use kessel::store::{
    ClaimReply, JobClaim, JobHeartbeat, PgStore, SharedStore, Store, TagClaimLimit, TagPlaces,
};
use uuid::Uuid;

/// `n` ready jobs of `task`, due at `now`.
fn jobs(task: &str, n: usize, now: DateTime<Utc>) -> Vec<kessel::Job> {
    pg::ready_jobs(task, n, now)
}

/// Two processes' stores on one schema, with leases of a minute.
async fn two_stores(db: &pg::TestDb) -> (PgStore, PgStore) {
    db.two_stores(Duration::from_secs(60)).await
}

/// A claim of `owner` at `now` of the tasks of tag "mail" ("digest" and
/// "welcome"), limited to 3 running together, asking for the tag's
/// places as `asked` says (none: it counts every leased job).
fn params(owner: Uuid, now: DateTime<Utc>, asked: Option<TagPlaces>) -> JobClaim {
    JobClaim {
        tag_limits: vec![TagClaimLimit {
            tag: "mail".into(),
            tasks: vec!["digest".into(), "welcome".into()],
            max_running: Some(3),
            rate: None,
        }],
        tag_places: asked.into_iter().collect(),
        ..JobClaim::new(
            owner,
            ["digest", "welcome"],
            now,
            100,
            now + chrono::Duration::seconds(60),
        )
    }
}

/// A claim as [`params`] says, asking for all 3 places and holding
/// `holding` of the tag's jobs.
async fn claim(store: &PgStore, owner: Uuid, now: DateTime<Utc>, holding: u32) -> ClaimReply {
    let asked = TagPlaces {
        tag: "mail".into(),
        wanted: 3,
        holding,
        may_run: 0,
    };
    store
        .jobs_claim_reply(&params(owner, now, Some(asked)))
        .await
        .expect("claim")
}

fn places(reply: &ClaimReply) -> Option<u32> {
    reply
        .tag_places
        .iter()
        .find(|(tag, _)| tag == "mail")
        .map(|(_, n)| *n)
}

#[actix_rt::test]
async fn a_process_that_leaves_gives_its_places_of_a_tag_back_at_once() {
    let Some(db) = pg::fresh().await else { return };
    let (first, second) = two_stores(&db).await;
    let now = Utc::now();
    first.jobs_insert(&jobs("digest", 6, now)).await.unwrap();
    let taken = claim(&first, first.owner(), now, 0).await;
    assert_eq!(places(&taken), Some(3), "the whole limit");
    assert_eq!(taken.jobs.len(), 6);
    second.jobs_insert(&jobs("welcome", 2, now)).await.unwrap();
    let held_back = claim(&second, second.owner(), now, 0).await;
    assert_eq!(places(&held_back), Some(0), "every place is held");
    assert!(held_back.jobs.is_empty());
    first.node_leave(first.owner()).await.unwrap();
    let after = claim(&second, second.owner(), now, 0).await;
    assert_eq!(
        places(&after),
        Some(2),
        "its places are free: one per job due"
    );
    assert_eq!(after.jobs.len(), 2);
    db.drop().await;
}

#[actix_rt::test]
async fn a_heartbeat_of_any_of_a_tags_tasks_keeps_the_tags_places() {
    let Some(db) = pg::fresh().await else { return };
    let (first, second) = two_stores(&db).await;
    let now = Utc::now();
    first.jobs_insert(&jobs("digest", 2, now)).await.unwrap();
    first.jobs_insert(&jobs("welcome", 1, now)).await.unwrap();
    let taken = claim(&first, first.owner(), now, 0).await;
    assert_eq!(places(&taken), Some(3));
    // Its digest jobs are over; it goes on holding the welcome job,
    // whose lease it renews: a job of the tag, so its places are kept.
    let (digests, welcome): (Vec<_>, Vec<_>) =
        taken.jobs.iter().partition(|j| &*j.task == "digest");
    first
        .jobs_release(
            first.owner(),
            &digests.iter().map(|j| j.id).collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    first
        .jobs_heartbeat(&JobHeartbeat {
            owner: first.owner(),
            ids: welcome.iter().map(|j| j.id).collect(),
            lease_until: now + chrono::Duration::seconds(120),
        })
        .await
        .unwrap();
    let later = now + chrono::Duration::seconds(90);
    let held_back = claim(&second, second.owner(), later, 0).await;
    assert_eq!(places(&held_back), Some(0), "renewed places are held");
    assert!(held_back.jobs.is_empty());
    // Past the renewed lease, they lapse.
    let lapsed = claim(
        &second,
        second.owner(),
        now + chrono::Duration::seconds(121),
        0,
    )
    .await;
    assert_eq!(places(&lapsed), Some(2), "lapsed places are free");
    db.drop().await;
}

#[actix_rt::test]
async fn a_heartbeat_of_other_tasks_lets_a_tags_places_lapse() {
    let Some(db) = pg::fresh().await else { return };
    let (first, second) = two_stores(&db).await;
    let now = Utc::now();
    first.jobs_insert(&jobs("digest", 3, now)).await.unwrap();
    let taken = claim(&first, first.owner(), now, 0).await;
    assert_eq!(places(&taken), Some(3));
    first
        .jobs_release(
            first.owner(),
            &taken.jobs.iter().map(|j| j.id).collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    let other = jobs("other", 1, now);
    first.jobs_insert(&other).await.unwrap();
    first
        .jobs_heartbeat(&JobHeartbeat {
            owner: first.owner(),
            ids: vec![other[0].id],
            lease_until: now + chrono::Duration::seconds(120),
        })
        .await
        .unwrap();
    let lapsed = claim(
        &second,
        second.owner(),
        now + chrono::Duration::seconds(90),
        0,
    )
    .await;
    assert_eq!(
        places(&lapsed),
        Some(3),
        "places of a tag it holds no job of lapse"
    );
    db.drop().await;
}

#[actix_rt::test]
async fn a_tag_left_out_of_tag_places_counts_every_leased_job() {
    let Some(db) = pg::fresh().await else { return };
    let (first, second) = two_stores(&db).await;
    let now = Utc::now();
    first.jobs_insert(&jobs("digest", 6, now)).await.unwrap();
    let mut params = params(first.owner(), now, None);
    let counted = first.jobs_claim_reply(&params).await.unwrap();
    assert_eq!(
        counted.jobs.len(),
        3,
        "one leased job per place of the limit"
    );
    assert!(counted.tag_places.is_empty(), "no places asked, none given");
    params.owner = second.owner();
    let none = second.jobs_claim_reply(&params).await.unwrap();
    assert!(none.jobs.is_empty(), "the limit's three are leased");
    db.drop().await;
}

#[actix_rt::test]
async fn a_tags_places_are_shared_fairly_with_a_process_short_of_them() {
    let Some(db) = pg::fresh().await else { return };
    let (first, second) = two_stores(&db).await;
    let now = Utc::now();
    first.jobs_insert(&jobs("digest", 300, now)).await.unwrap();
    let claim = |store: &PgStore, holding: u32, running: u32| {
        let asked = TagPlaces {
            tag: "mail".into(),
            wanted: 3,
            holding,
            may_run: running,
        };
        let params = params(store.owner(), now, Some(asked));
        let store = store.clone();
        async move { store.jobs_claim_reply(&params).await.expect("claim") }
    };
    let taken = claim(&first, 0, 0).await;
    assert_eq!(places(&taken), Some(3), "the whole limit");
    let held = taken.jobs.len() as u32;
    let short = claim(&second, 0, 0).await;
    assert_eq!(places(&short), Some(0), "every place is held; jobs are due");
    // Its fair share of 3 between two, rounded up; it starts no more.
    let fair = claim(&first, held, 3).await;
    assert_eq!(places(&fair), Some(2), "its fair share");
    // The places it may still run in are kept until its runs end.
    let still = claim(&second, 0, 0).await;
    assert_eq!(places(&still), Some(0), "places in use are kept");
    let ended = claim(&first, held - 2, 2).await;
    assert_eq!(places(&ended), Some(2), "its share, its runs ended");
    let given = claim(&second, 0, 0).await;
    assert_eq!(places(&given), Some(1), "the place given back");
    assert!(!given.jobs.is_empty());
    db.drop().await;
}
