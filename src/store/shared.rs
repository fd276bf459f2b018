//! The capability of a store shared by many processes: claims with leases,
//! heartbeats, rescue of lapsed leases, cross-process cancel and wake-ups.
//!
//! A shared store does not hand the scheduler every pending job at start.
//! Instead each process claims the jobs of the tasks it serves that are due
//! within a short horizon; a claim is a lease the process renews by
//! heartbeat while it holds the job. A lease that lapses (the process died,
//! the network cut) is returned to ready by a rescuer, with the attempt it
//! was running counted.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use uuid::Uuid;

use super::{LeaderElect, NodeBeat, StoreError};
use crate::job::{Job, JobId, JobStatus};
use crate::node::Node;

/// What [`SharedStore::jobs_claim`] claims.
#[derive(Debug, Clone, PartialEq)]
pub struct JobClaim {
    /// The claiming process.
    pub owner: Uuid,
    /// Only jobs of these tasks (the ones the process serves).
    pub tasks: Vec<String>,
    /// Only jobs due at or before this time.
    pub due_by: DateTime<Utc>,
    /// At most this many, best first: priority, then due time, then creation.
    pub limit: usize,
    /// The lease lasts until then.
    pub lease_until: DateTime<Utc>,
    /// Tasks limited in how many of their jobs may run at once, by every
    /// owner together (see
    /// [`TaskBuilder::max_running`](crate::TaskBuilder::max_running)),
    /// held as **places**: the claim gives its owner up to
    /// [`places`](JobClaim::places) of the places the other
    /// owners leave, says how many in [`ClaimReply::places`], and takes at
    /// most [`JOBS_PER_PLACE`] jobs per place (the owner runs at most its
    /// places at once; the others wait in the process and start there as
    /// places free). An owner keeps at most as many places as it has jobs of the
    /// task leased and not final, so a process with nothing to run gives
    /// its places back at its next claim; its places lapse with its
    /// leases. Claims of limited tasks take turns, so the limit holds
    /// whichever processes claim at once.
    pub running_limits: Vec<(String, u32)>,
    /// What this owner asks of each task in
    /// [`running_limits`](JobClaim::running_limits): how many places it
    /// wants and how many of the task's jobs it holds. A task left out
    /// asks for its whole limit, and the store counts what it holds.
    pub places: Vec<TaskPlaces>,
    /// Tasks limited in how many jobs of each group may be leased at once,
    /// by every owner together (see
    /// [`TaskBuilder::max_running_per_group`](crate::TaskBuilder::max_running_per_group)):
    /// a claim takes at most, of each group (the jobs without one being
    /// one more), the limit minus the group's jobs of the task already
    /// leased and not final. Claims of these tasks take turns too.
    pub group_running_limits: Vec<(String, u32)>,
    /// Tasks limited in how often their jobs may start, by every owner
    /// together (see
    /// [`TaskBuilder::rate_limit`](crate::TaskBuilder::rate_limit)): a
    /// claim takes at most as many of the task's jobs as the limit allows
    /// at [`now`](JobClaim::now), and spends them; a job over it stays in
    /// the store, and [`ClaimReply::retry_at`] says when the next may be
    /// claimed. Claims of these tasks take turns too.
    pub rate_limits: Vec<(String, crate::RateLimit)>,
    /// Tasks whose groups are each limited in how often their jobs may
    /// start, by every owner together (see
    /// [`TaskBuilder::rate_limit_per_group`](crate::TaskBuilder::rate_limit_per_group)):
    /// a claim takes at most, of each group (the jobs without one being
    /// one more), as many as the group's own copy of the limit allows at
    /// [`now`](JobClaim::now), and spends them. Claims of these tasks take
    /// turns too.
    pub group_rate_limits: Vec<(String, crate::RateLimit)>,
    /// Tags limited in how many of their jobs may be leased at once, or
    /// how often they may start, all their tasks and every owner together
    /// (see [`QueueBuilder::tag_max_running`](crate::QueueBuilder::tag_max_running)
    /// and [`QueueBuilder::tag_rate_limit`](crate::QueueBuilder::tag_rate_limit)):
    /// a claim takes at most, of the served tasks of such a tag together,
    /// what the tag's running limit leaves (held as places when the tag
    /// is in [`tag_places`](JobClaim::tag_places); otherwise the limit
    /// minus the jobs of the tag's tasks already leased and not final),
    /// and as many as its rate limit allows at [`now`](JobClaim::now).
    /// Claims of these tags take turns too.
    pub tag_limits: Vec<TagClaimLimit>,
    /// What this owner asks of each tag in
    /// [`tag_limits`](JobClaim::tag_limits) with a running limit, to
    /// hold it as **places**, as a task's in
    /// [`running_limits`](JobClaim::running_limits): the claim gives the
    /// owner up to [`wanted`](TagPlaces::wanted) of the tag's places the
    /// other owners leave, says how many in [`ClaimReply::tag_places`],
    /// and takes at most [`JOBS_PER_PLACE`] of the tag's jobs per place
    /// (the owner runs at most its places of the tag at once). A tag left
    /// out counts every leased job of its tasks against its limit.
    pub tag_places: Vec<TagPlaces>,
    /// Tasks this owner takes no more of than a number of its own, in
    /// this claim (its rounds together): how many of each it may start
    /// soon under a rate limit it keeps alone
    /// ([`RateLimit::per_process`](crate::RateLimit::per_process)), less
    /// the task's jobs it already holds. The store keeps no state for
    /// them. Combines with the task's other limits: the claim takes at
    /// most the least.
    pub task_caps: Vec<(String, u32)>,
    /// Tags whose served tasks this owner takes no more of, together,
    /// than a number of its own in this claim (see
    /// [`task_caps`](JobClaim::task_caps)): a tag's rate limit per
    /// process.
    pub tag_caps: Vec<TagCap>,
    /// The claiming process's time: rate limits are counted at it.
    pub now: DateTime<Utc>,
    /// Jobs of limited tasks (or of tags with a running limit) this owner
    /// has finished, whose end may not be stored yet: they run no more,
    /// so they do not count against `running_limits`,
    /// `group_running_limits` or a tag's running limit (a process can
    /// refill its room at once, without waiting for its writes).
    pub ended: Vec<crate::job::JobId>,
    /// The weights of fair groups other than 1 (see
    /// [`QueueBuilder::group_weight`](crate::QueueBuilder::group_weight)):
    /// within one priority, the claim shares its jobs between the groups
    /// present, a group of weight `w` taking `w` turns per turn of a group
    /// of weight 1; jobs without a group are one group of weight 1.
    pub group_weights: Vec<(String, f64)>,
}

impl JobClaim {
    /// A claim by `owner` of at most `limit` jobs of `tasks` due by `now`,
    /// leased until `lease_until`, with no limits, caps, places or group
    /// weights (set those fields after, or with struct update syntax).
    ///
    /// # Examples
    ///
    /// ```
    /// use kessel::store::JobClaim;
    /// let now = chrono::Utc::now();
    /// let claim = JobClaim::new(uuid::Uuid::new_v4(), ["email"], now, 10, now + chrono::Duration::seconds(30));
    /// assert_eq!((claim.limit, claim.due_by, claim.now), (10, now, now));
    /// assert!(claim.running_limits.is_empty() && claim.rate_limits.is_empty());
    /// ```
    pub fn new<S: Into<String>>(
        owner: Uuid,
        tasks: impl IntoIterator<Item = S>,
        now: DateTime<Utc>,
        limit: usize,
        lease_until: DateTime<Utc>,
    ) -> Self {
        JobClaim {
            owner,
            tasks: tasks.into_iter().map(Into::into).collect(),
            due_by: now,
            limit,
            lease_until,
            running_limits: Vec::new(),
            group_running_limits: Vec::new(),
            places: Vec::new(),
            tag_places: Vec::new(),
            ended: Vec::new(),
            task_caps: Vec::new(),
            tag_caps: Vec::new(),
            group_weights: Vec::new(),
            rate_limits: Vec::new(),
            group_rate_limits: Vec::new(),
            tag_limits: Vec::new(),
            now,
        }
    }
}

/// How many jobs of a task with a running limit a claim leases at most
/// per place its owner holds (see [`JobClaim::running_limits`]): one runs
/// in the place, the others wait in the process and start there as
/// places free, without a round trip to the store. A cap: how many a
/// claim asks for is the process's prefetch (about what its workers get
/// through while a claim is on its way), so short jobs are leased far
/// ahead of the places and slow ones are not.
///
/// # Examples
///
/// ```
/// // A process holding 5 places of a task holds at most 320 of its jobs.
/// assert_eq!(5 * kessel::store::JOBS_PER_PLACE, 320);
/// ```
pub const JOBS_PER_PLACE: u32 = 64;

/// What a claim asks of a task's running limit held as places (see
/// [`JobClaim::running_limits`]).
///
/// # Examples
///
/// ```
/// use kessel::store::{TaskPlaces, JOBS_PER_PLACE};
/// // Eight workers serve the task; three of its jobs run here and two
/// // wait for a place.
/// let asked = TaskPlaces { task: "export".into(), wanted: 8, holding: 5, may_run: 8 };
/// // Given the eight places, a claim leases at most this many more.
/// assert_eq!(asked.wanted * JOBS_PER_PLACE - asked.holding, 507);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskPlaces {
    /// The task.
    pub task: String,
    /// How many places the owner asks for: about as many of the task's
    /// jobs as it can run at once (its workers' slots for the task's
    /// tag), and never fewer than it runs now.
    pub wanted: u32,
    /// How many of the task's jobs the owner holds (leased to it and not
    /// ended: running, or waiting for a place or a worker). The claim
    /// leases at most [`JOBS_PER_PLACE`] per place less these, and leaves the
    /// owner no more places than these and what it takes.
    pub holding: u32,
    /// How many of the task's jobs the owner may run until this claim's
    /// reply: the places it holds now, or its runs if more. While other
    /// owners lack places the claim gives it no more than its fair share
    /// of the limit, and its places in the store stay at least this (at
    /// most what it holds) until its runs end: it gives them back at its
    /// next claims.
    pub may_run: u32,
}

/// What a claim asks of a tag's running limit held as places (see
/// [`JobClaim::tag_places`]): how many places the owner wants, and how
/// many jobs of the tag's tasks it holds (running or waiting there).
///
/// # Examples
///
/// ```
/// use kessel::store::{TagPlaces, JOBS_PER_PLACE};
/// // Four workers serve the tag; one job of its tasks runs here.
/// let asked = TagPlaces { tag: "email".into(), wanted: 4, holding: 1, may_run: 4 };
/// // Given the four places, a claim leases at most this many more.
/// assert_eq!(asked.wanted * JOBS_PER_PLACE - asked.holding, 255);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagPlaces {
    /// The tag.
    pub tag: String,
    /// How many of the tag's places the owner asks for: what its workers
    /// serving the tag can run, and never fewer than it runs now.
    pub wanted: u32,
    /// How many jobs of the tag's tasks the owner holds: running, or
    /// leased and waiting there.
    pub holding: u32,
    /// How many of the tag's jobs the owner may run until this claim's
    /// reply: the places of the tag it holds now, or its runs if more
    /// (see [`TaskPlaces::may_run`]).
    pub may_run: u32,
}

/// A cap on how many jobs of a tag's tasks together a claim takes (see
/// [`JobClaim::tag_caps`]).
///
/// # Examples
///
/// ```
/// use kessel::store::TagCap;
/// // This process may start 3 more jobs of tag `sms` soon.
/// let cap = TagCap { tag: "sms".into(), tasks: vec!["remind".into(), "verify".into()], max: 3 };
/// assert_eq!(cap.max, 3);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagCap {
    /// The tag.
    pub tag: String,
    /// Its tasks, as this owner defines them.
    pub tasks: Vec<String>,
    /// At most this many of their jobs together.
    pub max: u32,
}

/// A tag's limits as a claim counts them (see [`JobClaim::tag_limits`]):
/// the tag's jobs are those of its `tasks`, which a store does not know
/// by itself. The tag's rate state is kept by its name; its running limit
/// too when the claim asks for the tag's places
/// ([`JobClaim::tag_places`]), so owners may serve different tasks of
/// the tag. A claim without the tag's places counts the leased jobs of
/// the `tasks` it sends.
///
/// # Examples
///
/// ```
/// use kessel::store::TagClaimLimit;
/// let email = TagClaimLimit {
///     tag: "email".into(),
///     tasks: vec!["welcome email".into(), "digest email".into()],
///     max_running: Some(10),
///     rate: Some(kessel::RateLimit::per_minute(100)),
/// };
/// assert_eq!(email.tasks.len(), 2);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagClaimLimit {
    /// The tag.
    pub tag: String,
    /// Every task of the tag (served in this claim or not): their jobs
    /// leased and not final count against `max_running`.
    pub tasks: Vec<String>,
    /// At most this many of the tag's jobs leased at once.
    pub max_running: Option<u32>,
    /// The tag's starts, all its tasks together, follow this rate.
    pub rate: Option<crate::RateLimit>,
}

/// What [`SharedStore::jobs_claim_reply`] returns: the jobs claimed, and
/// when to claim again for jobs a rate limit held back.
///
/// # Examples
///
/// ```
/// let reply = kessel::store::ClaimReply::default();
/// assert!(reply.jobs.is_empty() && reply.retry_at.is_none());
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClaimReply {
    /// The jobs claimed, as [`SharedStore::jobs_claim`] returns them.
    pub jobs: Vec<Job>,
    /// A [rate limit](JobClaim::rate_limits) (a task's, a tag's or a
    /// group's) held back some due jobs (or took all it allowed): the earliest time it allows the
    /// next start, on the claimer's clock. The claimer claims again then,
    /// not only when it is notified.
    pub retry_at: Option<DateTime<Utc>>,
    /// The places this owner now holds of each task in
    /// [`JobClaim::running_limits`] the claim served: how many of the
    /// task's jobs it may run at once.
    pub places: Vec<(String, u32)>,
    /// The places this owner now holds of each tag in
    /// [`JobClaim::tag_places`] the claim served: how many of the tag's
    /// jobs it may run at once, all its tasks together.
    pub tag_places: Vec<(String, u32)>,
}

/// What [`SharedStore::jobs_heartbeat`] renews.
#[derive(Debug, Clone, PartialEq)]
pub struct JobHeartbeat {
    /// The process holding the leases.
    pub owner: Uuid,
    /// The jobs it holds.
    pub ids: Vec<JobId>,
    /// The leases' new end.
    pub lease_until: DateTime<Utc>,
}

/// What a heartbeat learned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeartbeatReply {
    /// Held jobs another process asked to cancel.
    pub cancel_requested: Vec<JobId>,
    /// Held jobs whose lease is no longer this process's (it lapsed and was
    /// rescued, or the job was removed): the process must drop them.
    pub lost: Vec<JobId>,
}

/// What [`SharedStore::job_cancel`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The job was pending and not held: it is now cancelled.
    Cancelled,
    /// Another process holds it: the cancel is recorded and that process
    /// cancels it at its next heartbeat.
    Requested,
    /// The job is already final.
    Final(JobStatus),
    /// No job has this id.
    Unknown,
}

/// A store many processes share: claims with leases, heartbeats, rescue
/// of lapsed leases, cross-process cancel and wake-ups.
///
/// # Examples
///
/// ```
/// use kessel::store::{MemoryStore, Store};
/// // The memory store is single-process: it has no shared capability.
/// assert!(MemoryStore::new().shared().is_none());
/// ```
#[async_trait]
pub trait SharedStore: Send + Sync {
    /// This process's owner id for leases.
    fn owner(&self) -> Uuid;

    /// Claims due, unleased, pending jobs, leasing them to `owner`.
    ///
    /// A claim may count each job's attempt in the store, as if started
    /// (the PostgreSQL store does: the job is stored as `running` with one
    /// attempt more, so starting it writes nothing but its `started`
    /// line, and a rescue counts the attempt). Either way it returns each
    /// job as it was before the claim; the owner counts the attempt when
    /// it starts the job, and records the job's state before giving it
    /// back unstarted ([`SharedStore::jobs_release`]).
    async fn jobs_claim(&self, params: &JobClaim) -> Result<Vec<Job>, StoreError>;

    /// Claims as [`SharedStore::jobs_claim`] does, and says when to claim
    /// again for jobs a rate limit held back ([`ClaimReply::retry_at`]).
    /// The default claims and says nothing more: a store that does not
    /// hold jobs back by rate.
    async fn jobs_claim_reply(&self, params: &JobClaim) -> Result<ClaimReply, StoreError> {
        Ok(ClaimReply {
            jobs: self.jobs_claim(params).await?,
            retry_at: None,
            places: Vec::new(),
            tag_places: Vec::new(),
        })
    }

    /// Renews the leases `owner` holds; reports cancels and lost leases.
    async fn jobs_heartbeat(&self, params: &JobHeartbeat) -> Result<HeartbeatReply, StoreError>;

    /// Gives held jobs back, unleased, in their stored state. An owner
    /// records a job's state first ([`Store::jobs_update`](crate::store::Store::jobs_update));
    /// a job still stored as its claim left it (`running`, the attempt
    /// counted) goes back `ready`, the claim's attempt undone.
    async fn jobs_release(&self, owner: Uuid, ids: &[JobId]) -> Result<(), StoreError>;

    /// Returns jobs whose lease lapsed before `now` to ready (one that
    /// started with its attempt counted, one claimed and never started
    /// as it was before the claim); returns how many.
    async fn jobs_rescue(&self, now: DateTime<Utc>) -> Result<u64, StoreError>;

    /// Expires unleased pending jobs whose `expires_at` is at or before
    /// `now`: those in `ids`, or every such job when `ids` is empty.
    /// Returns how many.
    async fn jobs_expire(&self, now: DateTime<Utc>, ids: &[JobId]) -> Result<u64, StoreError>;

    /// Cancels a job from any process.
    async fn job_cancel(&self, id: JobId, now: DateTime<Utc>) -> Result<CancelOutcome, StoreError>;

    /// When the next unleased pending job of `tasks` is due.
    async fn jobs_next_due(&self, tasks: &[String]) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// Wake-ups: an item whenever jobs may have become claimable (created,
    /// released, kicked). Lost notifications are covered by polling.
    fn wakeups(&self) -> BoxStream<'static, ()>;

    /// An item whenever the suspensions in the store may have changed (a
    /// process suspended or resumed a task or tag, or the notifications
    /// reconnected and may have missed one): the scheduler reads them
    /// again. The default never yields; the scheduler also reads them at
    /// every claim poll.
    ///
    /// ```
    /// use kessel::store::{MemoryStore, Store};
    /// assert!(MemoryStore::new().shared().is_none());
    /// ```
    fn suspension_changes(&self) -> BoxStream<'static, ()> {
        Box::pin(futures::stream::pending())
    }

    /// A stream of items, one whenever the schedules in the store may have
    /// changed (a process added, changed, removed, paused or resumed one,
    /// or the notifications reconnected and may have missed one), or
    /// `None` when the store does not say: the leader's schedule timer
    /// then reads the schedules every second; with a stream, it reads them
    /// when told, and every minute in case a notification was lost.
    ///
    /// ```
    /// use kessel::store::{MemoryStore, Store};
    /// // A store of one process has no other process to hear from.
    /// assert!(MemoryStore::new().shared().is_none());
    /// ```
    fn schedule_changes(&self) -> Option<BoxStream<'static, ()>> {
        None
    }

    /// How long a lease lasts without renewal.
    fn lease(&self) -> Duration {
        Duration::from_secs(30)
    }

    /// Registers the node `beat` describes, or renews its row. A store
    /// that keeps no nodes does nothing (the default).
    async fn node_beat(&self, beat: &NodeBeat) -> Result<(), StoreError> {
        let _ = beat;
        Ok(())
    }

    /// Removes node `id` (it shuts down) and gives up its leadership, if
    /// it leads, so another node may take it at once. The default does
    /// nothing.
    async fn node_leave(&self, id: Uuid) -> Result<(), StoreError> {
        let _ = id;
        Ok(())
    }

    /// The nodes registered, oldest first, each [`Gone`](crate::NodeStatus::Gone)
    /// when its lease ended before `now`, and the one whose leadership
    /// lasts past `now` marked [`leader`](Node::leader).
    ///
    /// # Errors
    ///
    /// [`StoreError::Unsupported`] (`"nodes"`) from a store that keeps no
    /// nodes (the default).
    async fn nodes_list(&self, now: DateTime<Utc>) -> Result<Vec<Node>, StoreError> {
        let _ = now;
        Err(StoreError::Unsupported("nodes"))
    }

    /// Removes the nodes whose lease ended before `gone_before`; returns
    /// how many. The default removes none.
    async fn nodes_prune(&self, gone_before: DateTime<Utc>) -> Result<u64, StoreError> {
        let _ = gone_before;
        Ok(0)
    }

    /// Takes or renews the leadership of the store for `bid.owner` until
    /// `bid.lease_until`: granted when the owner already leads, when
    /// nobody's leadership lasts past `bid.now`, or when the bidder
    /// [`serves`](LeaderElect::serves) and the leader does not. Returns
    /// whether it was granted. At most one owner holds the leadership at
    /// any time (by the callers' clocks); one that lost it to a serving
    /// bidder learns so at its next bid.
    ///
    /// A store that cannot elect grants every bid (the default): every
    /// process then runs the maintenance that a leader alone runs on a
    /// store that can, which the store must allow (rescue and pruning are
    /// safe to run from many processes at once).
    async fn leader_elect(&self, bid: &LeaderElect) -> Result<bool, StoreError> {
        let _ = bid;
        Ok(true)
    }
}
