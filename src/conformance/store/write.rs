//! Writes of changes with the jobs they made ([`Store::jobs_write`]): a
//! buried job's update and its dead letter are stored together, and on a
//! store with [`Capabilities::atomic_writes`](crate::store::Capabilities)
//! not at all when one part is refused.

use serde_json::json;

use crate::conformance::fixtures::{assert_same_job, fresh, get, insert, job, line, now};
use crate::conformance::harness::conformance_test;
use crate::conformance::{StoreFactory, Verdict};
use crate::dead_letter::DeadLetter;
use crate::job::{Job, JobStatus};
use crate::store::JobUpdate;

/// `job` buried now after one attempt, and the update that records it.
fn bury(job: &mut Job) -> JobUpdate {
    let t = now();
    job.status = JobStatus::Buried;
    job.attempts = 1;
    job.last_error = Some("mailbox does not exist".into());
    job.finished_at = Some(crate::conformance::fixtures::micro(t));
    let logs = vec![line("buried", 1, t, None)];
    job.logs.extend(logs.clone());
    JobUpdate::of(job, logs)
}

/// The dead letter of `job`, a new job of "email failures".
fn letter_of(job: &Job) -> Job {
    let mut letter = crate::conformance::fixtures::job(
        "email failures",
        json!({"job_id": job.id, "task": &*job.task}),
    );
    letter.reference = Some(DeadLetter::reference_for(job.id));
    letter
}

conformance_test!(store,
    /// A write of updates and new jobs stores both: the buried job reads
    /// back buried, with its log line, and its dead letter is there, every
    /// field as given. A write of only one of the two stores that one.
    a_write_stores_its_updates_and_the_jobs_they_made => write_both
);

async fn write_both<F: StoreFactory>(factory: F) -> Verdict {
    let (store, _place) = fresh(&factory).await;
    let mut failed = job("send email", json!({"to": "nobody@example.com"}));
    let mut other = job("send email", json!({"to": "someone@example.com"}));
    insert(&store, &[failed.clone(), other.clone()]).await;
    let update = bury(&mut failed);
    let letter = letter_of(&failed);
    if let Err(err) = store
        .jobs_write(&[update], std::slice::from_ref(&letter))
        .await
    {
        panic!("jobs_write of a bury and its letter failed: {err}");
    }
    assert_same_job(&get(&store, failed.id).await, &failed, "the buried job");
    assert_same_job(&get(&store, letter.id).await, &letter, "its dead letter");

    let alone = job("email failures", json!({"n": 2}));
    if let Err(err) = store.jobs_write(&[], std::slice::from_ref(&alone)).await {
        panic!("jobs_write of a new job alone failed: {err}");
    }
    assert_same_job(&get(&store, alone.id).await, &alone, "a new job alone");
    let update = bury(&mut other);
    if let Err(err) = store.jobs_write(&[update], &[]).await {
        panic!("jobs_write of an update alone failed: {err}");
    }
    assert_same_job(&get(&store, other.id).await, &other, "an update alone");
    Verdict::Passed
}

conformance_test!(store,
    /// On a store with atomic writes, a write whose new job is refused
    /// (here: its id is taken) stores none of its updates either: the job
    /// it would have buried reads back as it was, so a crash or an error
    /// never keeps a bury without its dead letter. (A store that accepts
    /// the duplicate, as the memory store does, passes by storing both.)
    a_write_whose_new_job_is_refused_stores_none_of_its_updates => write_atomic
);

async fn write_atomic<F: StoreFactory>(factory: F) -> Verdict {
    let (store, _place) = fresh(&factory).await;
    if !store.capabilities().atomic_writes {
        return Verdict::Skipped(
            "the store's jobs_write is not atomic (Capabilities::atomic_writes)",
        );
    }
    let taken = job("email failures", json!("first"));
    let failed = job("send email", json!({"to": "nobody@example.com"}));
    let next = job("send email", json!({"to": "no one@example.com"}));
    insert(&store, &[taken.clone(), failed.clone(), next.clone()]).await;
    let mut buried = failed.clone();
    let update = bury(&mut buried);
    let mut duplicate = letter_of(&buried);
    duplicate.id = taken.id;
    match store
        .jobs_write(&[update], std::slice::from_ref(&duplicate))
        .await
    {
        Err(_) => {
            assert_same_job(
                &get(&store, failed.id).await,
                &failed,
                "a job whose bury was written with a refused letter",
            );
            assert_same_job(
                &get(&store, taken.id).await,
                &taken,
                "the job whose id was taken",
            );
        }
        Ok(()) => {
            assert_same_job(&get(&store, failed.id).await, &buried, "the buried job");
            assert_same_job(
                &get(&store, taken.id).await,
                &duplicate,
                "the duplicate, accepted",
            );
        }
    }
    // A write with a letter that can be stored is kept whole.
    let mut buried = next;
    let update = bury(&mut buried);
    let letter = letter_of(&buried);
    if let Err(err) = store
        .jobs_write(&[update], std::slice::from_ref(&letter))
        .await
    {
        panic!("jobs_write of a bury and its letter failed: {err}");
    }
    assert_same_job(
        &get(&store, buried.id).await,
        &buried,
        "the next buried job",
    );
    assert_same_job(&get(&store, letter.id).await, &letter, "its dead letter");
    Verdict::Passed
}
