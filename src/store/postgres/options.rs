//! How to connect a PostgreSQL store: its URL, schema, pool, lease,
//! vacuum threshold and event log retention.

use std::time::Duration;

/// How to connect a [`PgStore`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// let options = kessel::store::PgOptions::new("postgres://postgres@127.0.0.1/test")
///     .schema("jobs")
///     .max_connections(8)
///     .lease(Duration::from_secs(20));
/// assert_eq!(options.schema_name(), "jobs");
/// ```
#[derive(Debug, Clone)]
pub struct PgOptions {
    pub(super) url: String,
    pub(super) schema: String,
    pub(super) max_connections: u32,
    pub(super) lease: Duration,
    pub(super) application_name: String,
    pub(super) vacuum_after: Option<u64>,
    pub(super) event_log_kept: Duration,
}

impl PgOptions {
    /// Options for the database at `url`, schema `kessel`, 10 connections,
    /// 30 s leases.
    pub fn new(url: impl Into<String>) -> Self {
        PgOptions {
            url: url.into(),
            schema: "kessel".into(),
            max_connections: 10,
            lease: Duration::from_secs(30),
            application_name: "kessel".into(),
            vacuum_after: Some(DEFAULT_VACUUM_AFTER),
            event_log_kept: Duration::from_secs(60),
        }
    }

    /// The `application_name` the connections report (default `kessel`),
    /// which tells this process's sessions apart in `pg_stat_activity`.
    pub fn application_name(mut self, name: impl Into<String>) -> Self {
        self.application_name = name.into();
        self
    }

    /// The schema kessel's tables live in (created if missing). Lowercase
    /// letters, digits and `_`, not starting with a digit; anything else
    /// makes connecting fail with an error naming it.
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// The schema name set.
    pub fn schema_name(&self) -> &str {
        &self.schema
    }

    /// The pool size: one connection listens for notifications, the rest
    /// serve claims, heartbeats, batches of updates and producers.
    pub fn max_connections(mut self, max: u32) -> Self {
        self.max_connections = max.max(2);
        self
    }

    /// How long a claimed job's lease lasts without renewal; heartbeats
    /// renew it every third of that. A dead process's jobs are rescued
    /// within one lease period plus one rescue interval.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease.max(Duration::from_millis(30));
        self
    }

    /// When kessel vacuums its own job tables: once one holds more than
    /// `dead` dead tuples (default 500), or never (`None`: autovacuum
    /// alone, with the per-table settings kessel's migrations give them).
    ///
    /// Every state change of a job leaves a dead row version behind, and
    /// autovacuum visits a database at most once per
    /// `autovacuum_naptime` (a minute by default), so at a few hundred jobs
    /// a second tens of thousands pile up between its visits. A running
    /// queue on this store reads the tables' dead-tuple counts every
    /// second and runs `VACUUM (SKIP_LOCKED, TRUNCATE false)` on one that
    /// is past `dead`, spending at most a fifth of its time vacuuming:
    /// after a vacuum that took `t` it waits at least `4 t` before the
    /// next. No vacuum truncates the job tables (neither this one nor
    /// autovacuum: the tables say `vacuum_truncate = false`): giving their
    /// empty last pages back takes a lock that stops every claim and
    /// create until it is done. The
    /// connection needs to own the tables (it created them) for the
    /// vacuum to do anything.
    ///
    /// # Examples
    ///
    /// ```
    /// let eager = kessel::store::PgOptions::new("postgres://postgres@127.0.0.1/test")
    ///     .vacuum_after(Some(200));
    /// assert_eq!(eager.vacuum_threshold(), Some(200));
    /// let autovacuum_only = eager.vacuum_after(None);
    /// assert_eq!(autovacuum_only.vacuum_threshold(), None);
    /// ```
    pub fn vacuum_after(mut self, dead: Option<u64>) -> Self {
        self.vacuum_after = dead;
        self
    }

    /// The dead-tuple count past which kessel vacuums its job tables, if
    /// it does (see [`PgOptions::vacuum_after`]).
    ///
    /// # Examples
    ///
    /// ```
    /// let options = kessel::store::PgOptions::new("postgres://postgres@127.0.0.1/test");
    /// assert_eq!(options.vacuum_threshold(), Some(500));
    /// ```
    pub fn vacuum_threshold(&self) -> Option<u64> {
        self.vacuum_after
    }

    /// How long the shared event log (which carries events between the
    /// processes, see `docs/events.md`) keeps a row once every listening
    /// process has read it (default one minute; a row is removed after
    /// ten minutes, read or not, or after this if longer). Pruning runs
    /// every ten seconds, or this often if shorter (at least each second).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let options = kessel::store::PgOptions::new("postgres://postgres@127.0.0.1/test")
    ///     .event_log_kept(Duration::from_secs(5));
    /// assert_eq!(options.event_log_retention(), Duration::from_secs(5));
    /// ```
    pub fn event_log_kept(mut self, kept: Duration) -> Self {
        self.event_log_kept = kept;
        self
    }

    /// How long the shared event log keeps rows every listener has read
    /// (see [`PgOptions::event_log_kept`]).
    ///
    /// # Examples
    ///
    /// ```
    /// let options = kessel::store::PgOptions::new("postgres://postgres@127.0.0.1/test");
    /// assert_eq!(options.event_log_retention(), std::time::Duration::from_secs(60));
    /// ```
    pub fn event_log_retention(&self) -> Duration {
        self.event_log_kept
    }
}

/// The default of [`PgOptions::vacuum_after`].
pub(super) const DEFAULT_VACUUM_AFTER: u64 = 500;
