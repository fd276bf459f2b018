//! Claiming as a service: on a shared store, the scheduler takes the due
//! jobs of the tasks it serves with a lease, about as many as its workers
//! run during one round trip to the store.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use actix::SpawnHandle;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::config::SharedConfig;
use crate::store::{ClaimReply, JobClaim, Store, StoreError};

/// What the claimer asks for and how many, and when to claim again.
///
/// Its prefetch allowance starts at [`SharedConfig::prefetch`] beyond the
/// workers' free slots; it doubles (up to [`SharedConfig::MAX_PREFETCH`])
/// while the workers empty what this process holds before the next claim
/// comes back, and halves as soon as claimed jobs wait here. The scheduler
/// runs it when a worker frees a slot after a full claim, when the store
/// announces new jobs, when a claimed job's time comes near, and at least
/// every [`SharedConfig::poll`].
#[derive(Debug)]
pub(crate) struct Claimer {
    store: Arc<dyn Store>,
    config: SharedConfig,
    owner: Uuid,
    /// A claim is with the store.
    in_flight: bool,
    /// A claim was asked for while one was in flight: another follows.
    again: bool,
    /// The prefetch allowance now; 0 until the first claim.
    prefetch: usize,
    /// The last claim came back full.
    last_full: bool,
    /// The timer of the next claim.
    pub(crate) timer: Option<SpawnHandle>,
}

/// The limits of the served tasks a claim must respect (see
/// [`JobClaim::running_limits`], [`JobClaim::group_running_limits`],
/// [`JobClaim::rate_limits`], [`JobClaim::group_rate_limits`] and
/// [`JobClaim::tag_limits`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RunningLimits {
    /// Each limited task's own limit.
    pub(crate) per_task: Vec<(String, u32)>,
    /// What this process asks of each limited task's places.
    pub(crate) places: Vec<crate::store::TaskPlaces>,
    /// Each task's limit per group.
    pub(crate) per_group: Vec<(String, u32)>,
    /// Each rate-limited task's rate limit.
    pub(crate) rate: Vec<(String, crate::RateLimit)>,
    /// Each task's rate limit per group.
    pub(crate) group_rate: Vec<(String, crate::RateLimit)>,
    /// The limits of the served tasks' tags.
    pub(crate) tags: Vec<crate::store::TagClaimLimit>,
    /// What this process asks of each tag's running limit's places.
    pub(crate) tag_places: Vec<crate::store::TagPlaces>,
    /// How many of each task under a rate limit per process this claim
    /// may take (see [`JobClaim::task_caps`]).
    pub(crate) task_caps: Vec<(String, u32)>,
    /// How many of each tag's tasks under a tag's rate limit per process
    /// this claim may take together (see [`JobClaim::tag_caps`]).
    pub(crate) tag_caps: Vec<crate::store::TagCap>,
}

impl RunningLimits {
    /// Whether a limit counts the jobs leased and not final (so a claim
    /// sends the ends not stored yet): a task's own running limit does not,
    /// nor a tag's held as places: their places are counted by what this
    /// process says it holds.
    pub(crate) fn counts_running(&self) -> bool {
        !self.per_group.is_empty()
            || self
                .tags
                .iter()
                .any(|t| t.max_running.is_some() && !self.tag_places.iter().any(|p| p.tag == t.tag))
    }
}

impl Claimer {
    /// A claimer of `owner` on `store`, or `None` when the store is not
    /// shared.
    pub(crate) fn new(store: Arc<dyn Store>, config: SharedConfig, owner: Uuid) -> Option<Self> {
        store.shared()?;
        Some(Claimer {
            store,
            config,
            owner,
            in_flight: false,
            again: false,
            prefetch: 0,
            last_full: false,
            timer: None,
        })
    }

    /// The configuration it runs with.
    pub(crate) fn config(&self) -> &SharedConfig {
        &self.config
    }

    /// Someone wants a claim: whether one may start now. While one is in
    /// flight, another is remembered to follow it.
    pub(crate) fn want(&mut self) -> bool {
        if self.in_flight {
            self.again = true;
            return false;
        }
        true
    }

    /// Whether a claim is with the store.
    pub(crate) fn in_flight(&self) -> bool {
        self.in_flight
    }

    /// Whether the last claim came back full (more may be waiting).
    pub(crate) fn last_full(&self) -> bool {
        self.last_full
    }

    /// The claim to make at `now` for `tasks` under `limits`, with `free` worker slots and
    /// `waiting` claimed jobs not yet running; `None` when there is
    /// nothing to ask for. A claim returned is in flight until
    /// [`Claimer::claimed`] or [`Claimer::failed`].
    pub(crate) fn plan(
        &mut self,
        tasks: Vec<String>,
        limits: RunningLimits,
        ended: Vec<crate::job::JobId>,
        free: usize,
        waiting: usize,
        now: DateTime<Utc>,
    ) -> Option<JobClaim> {
        self.prefetch = self.prefetch.max(self.config.prefetch);
        let limit = (free + self.prefetch).saturating_sub(waiting);
        if tasks.is_empty() || limit == 0 {
            return None;
        }
        self.in_flight = true;
        self.again = false;
        let lease = self.store.shared().map_or(Duration::ZERO, |s| s.lease());
        let after = |d: Duration| crate::time::saturating_after(now, d);
        Some(JobClaim {
            owner: self.owner,
            tasks,
            due_by: after(self.config.horizon),
            limit,
            lease_until: after(lease),
            running_limits: limits.per_task,
            group_running_limits: limits.per_group,
            places: limits.places,
            rate_limits: limits.rate,
            group_rate_limits: limits.group_rate,
            tag_limits: limits.tags,
            tag_places: limits.tag_places,
            task_caps: limits.task_caps,
            tag_caps: limits.tag_caps,
            now,
            ended,
            group_weights: Vec::new(),
        })
    }

    /// The store call for `params`, to run wherever the caller runs store
    /// calls.
    pub(crate) fn run_once(
        &self,
        params: JobClaim,
    ) -> impl Future<Output = Result<ClaimReply, StoreError>> + Send + 'static {
        let store = self.store.clone();
        async move {
            match store.shared() {
                Some(shared) => shared.jobs_claim_reply(&params).await,
                None => Ok(ClaimReply::default()),
            }
        }
    }

    /// A claim of at most `limit` came back with `got` jobs, `waiting`
    /// claimed jobs now waiting here: adapts the prefetch allowance.
    /// Returns whether to claim again at once (it came back full, or a
    /// claim was asked for meanwhile).
    pub(crate) fn claimed(&mut self, got: usize, limit: usize, waiting: usize) -> bool {
        let full = got >= limit;
        self.in_flight = false;
        self.last_full = full;
        let (least, most) = (
            self.config.prefetch,
            self.config.prefetch.max(SharedConfig::MAX_PREFETCH),
        );
        if full && waiting == 0 {
            // The workers ran out while this claim was on the way: claim
            // more at a time.
            self.prefetch = (self.prefetch * 2).min(most);
        } else if waiting > self.prefetch / 2 {
            // Claimed jobs wait here: claim fewer.
            self.prefetch = (self.prefetch / 2).max(least);
        }
        full || self.again
    }

    /// A claim failed: how long to wait before the next (`wait`, at most
    /// the poll interval), or `None` to claim again at once because one
    /// was asked for meanwhile.
    pub(crate) fn failed(&mut self, wait: Option<Duration>) -> Option<Duration> {
        self.in_flight = false;
        let wait = wait.map_or(self.config.poll, |w| w.min(self.config.poll));
        if self.again && wait > Duration::ZERO {
            return None;
        }
        Some(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claimer() -> Claimer {
        // The planning needs no store calls: a claimer on a memory store,
        // built directly.
        Claimer {
            store: Arc::new(crate::store::MemoryStore::new()),
            config: SharedConfig::default(),
            owner: Uuid::nil(),
            in_flight: false,
            again: false,
            prefetch: 0,
            last_full: false,
            timer: None,
        }
    }

    #[test]
    fn ends_are_sent_only_for_limits_counted_on_every_leased_job() {
        let mail = crate::store::TagClaimLimit {
            tag: "mail".into(),
            tasks: vec!["digest".into()],
            max_running: Some(3),
            rate: None,
        };
        let mut limits = RunningLimits {
            tags: vec![mail],
            ..RunningLimits::default()
        };
        assert!(limits.counts_running(), "a tag's limit without places");
        limits.tag_places.push(crate::store::TagPlaces {
            tag: "mail".into(),
            wanted: 3,
            holding: 0,
            may_run: 0,
        });
        assert!(!limits.counts_running(), "a tag's limit held as places");
        limits.per_group.push(("digest".into(), 1));
        assert!(
            limits.counts_running(),
            "a limit per group counts leased jobs"
        );
    }

    #[test]
    fn it_asks_for_the_free_slots_and_its_prefetch_less_what_waits() {
        let mut c = claimer();
        let now = Utc::now();
        let params = c
            .plan(
                vec!["t".into()],
                RunningLimits::default(),
                Vec::new(),
                16,
                10,
                now,
            )
            .expect("a claim");
        assert_eq!(params.limit, 16 + 64 - 10);
        assert_eq!(params.due_by, now + chrono::Duration::seconds(2));
        assert!(c.in_flight());
        assert!(!c.want(), "one at a time");
        assert!(c.claimed(3, params.limit, 0), "asked for meanwhile: again");
        assert!(
            c.plan(Vec::new(), RunningLimits::default(), Vec::new(), 16, 0, now)
                .is_none(),
            "no tasks"
        );
        assert!(
            c.plan(
                vec!["t".into()],
                RunningLimits::default(),
                Vec::new(),
                0,
                64,
                now
            )
            .is_none(),
            "enough waits here"
        );
    }

    #[test]
    fn the_prefetch_doubles_while_workers_run_dry_and_halves_when_jobs_wait() {
        let mut c = claimer();
        let now = Utc::now();
        let mut limits = Vec::new();
        for _ in 0..8 {
            let p = c
                .plan(
                    vec!["t".into()],
                    RunningLimits::default(),
                    Vec::new(),
                    0,
                    0,
                    now,
                )
                .unwrap();
            limits.push(p.limit);
            assert!(c.claimed(p.limit, p.limit, 0), "full: claim again");
        }
        assert_eq!(&limits[..4], [64, 128, 256, 512]);
        assert_eq!(*limits.last().unwrap(), SharedConfig::MAX_PREFETCH);
        let p = c
            .plan(
                vec!["t".into()],
                RunningLimits::default(),
                Vec::new(),
                0,
                0,
                now,
            )
            .unwrap();
        assert!(!c.claimed(10, p.limit, 3_000));
        assert_eq!(
            c.plan(
                vec!["t".into()],
                RunningLimits::default(),
                Vec::new(),
                0,
                0,
                now
            )
            .unwrap()
            .limit,
            2_048
        );
    }

    #[test]
    fn a_failed_claim_waits_at_most_the_poll_interval() {
        let mut c = claimer();
        c.plan(
            vec!["t".into()],
            RunningLimits::default(),
            Vec::new(),
            1,
            0,
            Utc::now(),
        )
        .unwrap();
        assert_eq!(
            c.failed(Some(Duration::from_secs(60))),
            Some(c.config().poll)
        );
        c.plan(
            vec!["t".into()],
            RunningLimits::default(),
            Vec::new(),
            1,
            0,
            Utc::now(),
        )
        .unwrap();
        assert!(!c.want());
        assert_eq!(
            c.failed(Some(Duration::from_millis(500))),
            None,
            "asked for meanwhile"
        );
    }
}
