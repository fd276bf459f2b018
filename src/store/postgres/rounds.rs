//! The statements of one claim of [`PgStore`](super::PgStore): a claim
//! may take several (fast, then fair; see `claim.rs`), and [`Rounds`]
//! keeps what they took and what the last one said of rate limits and
//! places.

use std::sync::atomic::Ordering;

use sqlx::Row;
use uuid::Uuid;

use super::claim;
use super::rows::{job_from_row, map_err};
use super::Db;
use crate::job::Job;
use crate::store::StoreError;

/// The statements of one claim (see `claim.rs`): fast or fair, and how
/// many jobs each asks for.
pub(super) struct Rounds<'a> {
    db: &'a Db,
    limit: usize,
    form: claim::Form,
    /// How many jobs the last statement asked for.
    asked: Option<usize>,
    /// Whether to make another statement.
    again: bool,
    rounds: usize,
    pub(super) taken: Vec<Job>,
    /// The statements are the limited claim's, whose rows say
    /// `rate_wake`. (Every claim statement returns a row of NULLs with
    /// `groups_waiting` when it takes nothing.)
    limited: bool,
    /// When a rate limit allows the next start, as the last statement
    /// said (µs since the Unix epoch).
    pub(super) rate_wake: Option<i64>,
    /// The places of each capped task the owner holds, as the last
    /// statement wrote them.
    pub(super) places: Vec<(String, u32)>,
    /// The places of each tag held as places the owner holds, as the
    /// last statement wrote them.
    pub(super) tag_places: Vec<(String, u32)>,
}

/// The places a claim wrote: names and counts as two arrays (null when it
/// wrote none).
fn places_of(names: Option<Vec<String>>, counts: Option<Vec<i64>>) -> Vec<(String, u32)> {
    names
        .unwrap_or_default()
        .into_iter()
        .zip(counts.unwrap_or_default())
        .map(|(name, n)| (name, u32::try_from(n.max(0)).unwrap_or(u32::MAX)))
        .collect()
}

impl<'a> Rounds<'a> {
    pub(super) fn new(db: &'a Db, limit: usize) -> Self {
        Rounds {
            db,
            limit,
            form: if db.claims_groups().load(Ordering::Relaxed) {
                claim::Form::Shares
            } else {
                claim::Form::Fast
            },
            asked: None,
            again: true,
            rounds: 0,
            taken: Vec::new(),
            limited: false,
            rate_wake: None,
            places: Vec::new(),
            tag_places: Vec::new(),
        }
    }

    /// Rounds of the limited claim (see [`Rounds::limited`]).
    pub(super) fn limited(db: &'a Db, limit: usize) -> Self {
        Rounds {
            limited: true,
            ..Self::new(db, limit)
        }
    }

    /// The next statement: its form, and how many jobs it asks for.
    pub(super) fn next(&mut self) -> Option<(claim::Form, usize)> {
        let want = self.limit.saturating_sub(self.taken.len());
        if !self.again || want == 0 || self.rounds >= claim::MAX_ROUNDS {
            return None;
        }
        self.again = false;
        self.rounds += 1;
        self.asked = Some(want);
        Some((self.form, want))
    }

    /// Takes the jobs of a statement's `rows` (their state, not their log)
    /// and decides whether to ask again.
    pub(super) fn took(&mut self, rows: &[sqlx::postgres::PgRow]) -> Result<(), StoreError> {
        let want = self.asked.unwrap_or(0);
        let mut grouped = false;
        let mut waiting = None;
        let mut got = 0;
        if self.limited {
            self.rate_wake = None;
        }
        if let Some(row) = rows.first().filter(|_| self.limited) {
            let tasks: Option<Vec<String>> = row.try_get("place_tasks").map_err(map_err)?;
            let counts: Option<Vec<i64>> = row.try_get("place_counts").map_err(map_err)?;
            self.places = places_of(tasks, counts);
            let tags: Option<Vec<String>> = row.try_get("tag_place_names").map_err(map_err)?;
            let counts: Option<Vec<i64>> = row.try_get("tag_place_counts").map_err(map_err)?;
            self.tag_places = places_of(tags, counts);
        }
        for row in rows {
            if self.limited {
                self.rate_wake = row.try_get("rate_wake").map_err(map_err)?;
            }
            waiting = Some(row.try_get::<bool, _>("groups_waiting").map_err(map_err)?);
            // The row of a claim that took nothing.
            if row
                .try_get::<Option<Uuid>, _>("id")
                .map_err(map_err)?
                .is_none()
            {
                continue;
            }
            got += 1;
            let mut job = job_from_row(row)?;
            // A claim hands over the job's state, not its log, and as it
            // was before the claim: the claim counted the attempt in the
            // store (see `claim::CLAIM_SET`), its owner counts it when it
            // starts the job.
            job.logs.clear();
            let from: String = row.try_get("claimed_from").map_err(map_err)?;
            job.status =
                from.parse()
                    .map_err(|e: crate::job::UnknownStatus| StoreError::Corrupt {
                        id: job.id.to_string(),
                        reason: e.to_string(),
                    })?;
            job.attempts = job.attempts.saturating_sub(1);
            grouped |= job.group.is_some();
            waiting = Some(row.try_get::<bool, _>("groups_waiting").map_err(map_err)?);
            self.taken.push(job);
        }
        if let Some(waiting) = waiting {
            self.db.claims_groups().store(waiting, Ordering::Relaxed);
        }
        let short = got < want;
        match self.form {
            // Short with grouped jobs waiting (or, should no row have
            // said, not knowing): the fair way takes them.
            claim::Form::Fast if short && waiting != Some(false) => {
                self.form = claim::Form::Shares;
                self.again = true;
            }
            // A group had fewer due jobs than its share: the rest, each
            // group reading up to all of it.
            claim::Form::Shares if short && grouped => {
                self.form = claim::Form::Exact;
                self.again = true;
            }
            _ => {}
        }
        Ok(())
    }
}
