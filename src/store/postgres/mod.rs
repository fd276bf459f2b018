//! The PostgreSQL store (feature `postgres`): many processes on many
//! machines share one queue.
//!
//! - Every process connects to the same database and schema. Producers
//!   insert; each process claims the due jobs of the tasks it serves with
//!   `FOR UPDATE SKIP LOCKED`, in priority order, in batches.
//! - A claimed job is leased to its process, which renews the lease by
//!   heartbeat. A lease that lapses (the process died, the network cut) is
//!   returned to ready by a rescuer any process runs, with the attempt
//!   counted. At-least-once: nothing is lost when a worker dies.
//! - Inserts and releases `NOTIFY` a channel that wakes the processes; a
//!   poll covers lost notifications.
//! - State changes arrive in batches and are applied in one statement per
//!   batch (`UNNEST` arrays), so a burst of completions costs one round trip.
//! - Migrations are embedded and versioned, run under an advisory lock so
//!   processes may start together, and a process refuses a schema newer
//!   than it knows.

mod claim;
mod copy;
mod exec;
mod limited;
mod nodes;
mod relay;
mod rounds;
mod rows;
mod schedules;
mod shared;
mod suspensions;
mod transactional;
mod unique;
mod vacuum;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Executor, PgConnection, Postgres, QueryBuilder, Row};
use uuid::Uuid;

use super::{
    Capabilities, JobDelete, JobQuery, JobUpdate, Order, ScheduleAdvance, SchedulePause,
    ScheduleRecord, SharedStore, StatusCount, Store, StoreError, Upserted,
};
use crate::event::relay::{CreatedJob, Relay};
use crate::job::{Job, JobId, JobStatus};
use copy::CopyRows;
use exec::Exec;
use rows::{job_from_row, map_err, JOB_COLUMNS};

/// The schema versions this kessel knows, in order.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("migrations/0001_jobs.sql")),
    (2, include_str!("migrations/0002_claims.sql")),
    (3, include_str!("migrations/0003_implied_created.sql")),
    (4, include_str!("migrations/0004_next_due_delayed.sql")),
    (5, include_str!("migrations/0005_list_by_id.sql")),
    (6, include_str!("migrations/0006_unique.sql")),
    (7, include_str!("migrations/0007_schedules.sql")),
    (8, include_str!("migrations/0008_nodes.sql")),
    (9, include_str!("migrations/0009_suspensions.sql")),
    (10, include_str!("migrations/0010_leader_handover.sql")),
    (11, include_str!("migrations/0011_ran_by.sql")),
    (12, include_str!("migrations/0012_autovacuum.sql")),
    (13, include_str!("migrations/0013_job_callback.sql")),
    (14, include_str!("migrations/0014_job_group.sql")),
    (15, include_str!("migrations/0015_event_log.sql")),
    (16, include_str!("migrations/0016_callback_secret.sql")),
    (17, include_str!("migrations/0017_flow_limits.sql")),
    (18, include_str!("migrations/0018_tag_limits.sql")),
    (19, include_str!("migrations/0019_no_vacuum_truncate.sql")),
    (20, include_str!("migrations/0020_running_places.sql")),
    (21, include_str!("migrations/0021_tag_places.sql")),
];

/// The newest schema version this kessel knows.
pub const SCHEMA_VERSION: i64 = 21;

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
    url: String,
    schema: String,
    max_connections: u32,
    lease: Duration,
    application_name: String,
    vacuum_after: Option<u64>,
    event_log_kept: Duration,
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
const DEFAULT_VACUUM_AFTER: u64 = 500;

/// SQL text with the schema name put in, built once per store.
#[derive(Debug)]
struct Sql {
    schema: String,
    channel: String,
}

impl Sql {
    fn table(&self, name: &str) -> String {
        format!("{}.{name}", self.schema)
    }
}

/// A [`Store`] in PostgreSQL, shared by every process that connects to the
/// same schema. See the [module documentation](self).
///
/// Its connections live on a small runtime of their own, and every call
/// runs there (through `spawn_blocking`, which also keeps a paused test
/// clock from jumping while a query is on the wire), so the store works
/// from any executor: an actix arbiter, a paused tokio test, a plain thread.
///
/// # Examples
///
/// ```no_run
/// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
/// let queue = kessel::Queue::postgres("postgres://postgres@127.0.0.1:5432/test").await?;
/// queue.create("send email", serde_json::json!({ "to": "ford@example.com" })).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct PgStore {
    db: Db,
    exec: Arc<Exec>,
}

/// The database side: everything here runs on the store's own runtime.
#[derive(Debug, Clone)]
pub(super) struct Db {
    /// kessel's own statements.
    pool: PgPool,
    /// [`PgStore::pool`]: the caller's queries, connected on first use.
    user_pool: PgPool,
    sql: Arc<Sql>,
    owner: Uuid,
    lease: Duration,
    /// See [`PgOptions::vacuum_after`].
    vacuum_after: Option<u64>,
    event_log_kept: Duration,
    /// Marked when the listener hears that the suspensions changed (or
    /// reconnects); see [`SharedStore::suspension_changes`].
    suspensions_changed: Arc<tokio::sync::watch::Sender<()>>,
    /// Events between processes (see `relay.rs`).
    relay: Arc<Relay>,
    /// Whether the last claim saw grouped jobs waiting among the tasks it
    /// claimed for: the next claim takes the fair path (see `claim.rs`).
    groups_waiting: Arc<std::sync::atomic::AtomicBool>,
}

fn valid_schema(schema: &str) -> bool {
    let mut chars = schema.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && schema.len() <= 63
}

impl PgStore {
    /// What carries events between the processes sharing the schema,
    /// while [`wakeups`](SharedStore::wakeups) is listened to.
    pub(crate) fn relay(&self) -> Arc<Relay> {
        self.db.relay.clone()
    }

    /// Connects with default options (schema `kessel`) and migrates.
    ///
    /// # Errors
    ///
    /// As [`PgStore::connect_with`].
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(PgOptions::new(url)).await
    }

    /// Connects, creates the schema if needed and brings it to the current
    /// version under an advisory lock.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the database cannot be reached,
    /// [`StoreError::NewerSchema`] when the schema was written by a newer
    /// kessel, [`StoreError::InvalidConfig`] for a schema name that is not
    /// a plain identifier or a URL that cannot be read.
    pub async fn connect_with(options: PgOptions) -> Result<Self, StoreError> {
        if !valid_schema(&options.schema) {
            return Err(StoreError::InvalidConfig(format!(
                "`{}` is not a usable schema name (lowercase letters, digits and _, not starting with a digit)",
                options.schema
            )));
        }
        let exec = Arc::new(Exec::new()?);
        let db = exec.run(Db::connect(options)).await?;
        Ok(PgStore { db, exec })
    }

    /// The SQL that connecting brings `schema` at version `from_version`
    /// to [`SCHEMA_VERSION`] with (0: a new schema), for review or to
    /// apply by hand: one transaction that takes the migration lock,
    /// creates the schema and its `kessel_schema` table if missing, and
    /// runs each migration with its version row. No migrations when
    /// `from_version` is current.
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidConfig`] for a schema name that is not a plain
    /// lowercase identifier.
    ///
    /// # Examples
    ///
    /// ```
    /// use kessel::store::PgStore;
    /// let sql = PgStore::migration_sql("jobs", 0).unwrap();
    /// assert!(sql.contains("CREATE TABLE jobs.jobs"));
    /// assert!(PgStore::migration_sql("Jobs; DROP", 0).is_err());
    /// ```
    pub fn migration_sql(schema: &str, from_version: i64) -> Result<String, StoreError> {
        if !valid_schema(schema) {
            return Err(StoreError::InvalidConfig(format!(
                "`{schema}` is not a usable schema name (lowercase letters, digits and _, not starting with a digit)"
            )));
        }
        let mut text = format!(
            "BEGIN;\n\
             SELECT pg_advisory_xact_lock(hashtext('kessel migrate ' || '{schema}'));\n\
             CREATE SCHEMA IF NOT EXISTS {schema};\n\
             CREATE TABLE IF NOT EXISTS {schema}.kessel_schema (version bigint PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now());\n"
        );
        for (number, sql) in MIGRATIONS.iter().filter(|(n, _)| *n > from_version) {
            text.push_str(&format!(
                "\n-- schema version {number}\n{}\nINSERT INTO {schema}.kessel_schema (version) VALUES ({number});\n",
                sql.replace("{schema}", schema).trim_end()
            ));
        }
        text.push_str("COMMIT;\n");
        Ok(text)
    }

    /// The schema version the database is at.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`].
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        let db = self.db.clone();
        self.exec
            .run(async move { current_version(&db.pool, &db.sql.schema).await })
            .await
    }

    /// A connection pool for the caller's own queries in the same
    /// database (from any tokio runtime). It is not the pool kessel's own
    /// statements use (whose sessions plan every statement generically):
    /// it connects on first use, with the same URL, application name and
    /// size, and default session settings.
    // Deliberately not `db.pool`, kessel's own (see above).
    #[allow(clippy::misnamed_getters)]
    pub fn pool(&self) -> &PgPool {
        &self.db.user_pool
    }
}

impl Db {
    async fn connect(options: PgOptions) -> Result<Db, StoreError> {
        let connect = options
            .url
            .parse::<PgConnectOptions>()
            .map_err(|e| StoreError::InvalidConfig(format!("cannot read the database URL: {e}")))?
            .application_name(&options.application_name);
        let user_pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect_lazy_with(connect.clone());
        // kessel's statements bind whole batches as arrays. A custom plan
        // sees a batch's size and, on a table it thinks small (no fresh
        // statistics, many dead rows), hash-joins it against a scan of the
        // whole table; the generic plan looks each row up by its index,
        // which is what every statement here is written for.
        let connect = connect.options([("plan_cache_mode", "force_generic_plan")]);
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(connect)
            .await
            .map_err(map_err)?;
        let sql = Arc::new(Sql {
            channel: format!("kessel_{}", options.schema),
            schema: options.schema,
        });
        migrate(&pool, &sql.schema).await?;
        let owner = Uuid::new_v4();
        Ok(Db {
            pool,
            user_pool,
            sql,
            owner,
            relay: Arc::new(Relay::new(owner)),
            lease: options.lease,
            vacuum_after: options.vacuum_after,
            event_log_kept: options.event_log_kept,
            suspensions_changed: Arc::new(tokio::sync::watch::Sender::new(())),
            groups_waiting: Arc::new(std::sync::atomic::AtomicBool::new(true)),
        })
    }

    /// Whether the last claim saw grouped jobs waiting (see `claim.rs`).
    pub(super) fn claims_groups(&self) -> &std::sync::atomic::AtomicBool {
        &self.groups_waiting
    }

    pub(super) fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn notify(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(&self.sql.channel)
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn attach_logs(&self, jobs: &mut [Job]) -> Result<(), StoreError> {
        if jobs.is_empty() {
            return Ok(());
        }
        let ids: Vec<Uuid> = jobs.iter().map(|j| j.id.0).collect();
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT job_id, at, attempt, message, data FROM {} WHERE job_id = ANY($1) ORDER BY job_id, seq",
            self.sql.table("job_logs")
        )))
        .bind(&ids)
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        let mut by_job: HashMap<Uuid, Vec<crate::job::LogLine>> = HashMap::new();
        for row in rows {
            let (id, line) = rows::log_from_row(&row)?;
            by_job.entry(id).or_default().push(line);
        }
        for job in jobs {
            // After the implied "created" line, if the job has one.
            job.logs
                .extend(by_job.remove(&job.id.0).into_iter().flatten());
        }
        Ok(())
    }
}

async fn current_version(pool: &PgPool, schema: &str) -> Result<i64, StoreError> {
    let exists: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM information_schema.tables WHERE table_schema = $1 AND table_name = 'kessel_schema')",
    )
    .bind(schema)
    .fetch_one(pool)
    .await
    .map_err(map_err)?;
    if !exists {
        return Ok(0);
    }
    let version: Option<i64> = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT max(version) FROM {schema}.kessel_schema"
    )))
    .fetch_one(pool)
    .await
    .map_err(map_err)?;
    Ok(version.unwrap_or(0))
}

async fn migrate(pool: &PgPool, schema: &str) -> Result<(), StoreError> {
    let mut tx = pool.begin().await.map_err(map_err)?;
    // One migrator at a time per schema, however many processes start.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('kessel migrate ' || $1))")
        .bind(schema)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
    sqlx::query(AssertSqlSafe(format!(
        "CREATE SCHEMA IF NOT EXISTS {schema}"
    )))
    .execute(&mut *tx)
    .await
    .map_err(map_err)?;
    sqlx::query(AssertSqlSafe(format!(
        "CREATE TABLE IF NOT EXISTS {schema}.kessel_schema (version bigint PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
    )))
    .execute(&mut *tx)
    .await
    .map_err(map_err)?;
    let version: Option<i64> = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT max(version) FROM {schema}.kessel_schema"
    )))
    .fetch_one(&mut *tx)
    .await
    .map_err(map_err)?;
    let version = version.unwrap_or(0);
    if version > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    for (number, text) in MIGRATIONS.iter().filter(|(n, _)| *n > version) {
        sqlx::raw_sql(AssertSqlSafe(text.replace("{schema}", schema)))
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {schema}.kessel_schema (version) VALUES ($1)"
        )))
        .bind(number)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
    }
    tx.commit().await.map_err(map_err)?;
    Ok(())
}

/// The columns of a batch of state changes, one array each, for `UNNEST`.
#[derive(Default)]
struct UpdateColumns {
    ids: Vec<Uuid>,
    statuses: Vec<&'static str>,
    attempts: Vec<i64>,
    max_attempts: Vec<Option<i64>>,
    run_at: Vec<DateTime<Utc>>,
    last_error: Vec<Option<String>>,
    result: Vec<Option<String>>,
    progress_current: Vec<Option<i64>>,
    progress_total: Vec<Option<i64>>,
    finished_at: Vec<Option<DateTime<Utc>>>,
}

/// Batches of at least this many new jobs are written with `COPY` (see
/// `copy.rs`): a few more round trips, less work on the server per row.
const COPY_FROM: usize = 64;

/// New jobs, made ready on the caller's side to be written.
enum NewJobs {
    /// A small batch, bound as arrays of one `INSERT`.
    Rows(Vec<Job>),
    /// A large batch in `COPY`'s format, the log lines beyond each job's
    /// implied "created" line, and what the jobs' `created` events say.
    Copy(CopyRows, LogColumns, Vec<CreatedJob>),
}

impl NewJobs {
    fn new(jobs: &[Job]) -> Result<Self, StoreError> {
        if jobs.len() < COPY_FROM {
            return Ok(NewJobs::Rows(jobs.to_vec()));
        }
        let mut logs = LogColumns::default();
        for job in jobs {
            let implied = job
                .logs
                .first()
                .is_some_and(|l| l.is_created_at(job.created_at));
            for line in &job.logs[usize::from(implied)..] {
                logs.push(job.id, line);
            }
        }
        let created = jobs.iter().map(CreatedJob::of).collect();
        Ok(NewJobs::Copy(CopyRows::new(jobs)?, logs, created))
    }
}

#[derive(Default)]
struct LogColumns {
    job_ids: Vec<Uuid>,
    at: Vec<DateTime<Utc>>,
    attempts: Vec<i64>,
    messages: Vec<String>,
    data: Vec<Option<String>>,
}

impl LogColumns {
    fn push(&mut self, id: JobId, line: &crate::job::LogLine) {
        self.job_ids.push(id.0);
        self.at.push(line.at);
        self.attempts.push(i64::from(line.attempt));
        self.messages.push(line.message.to_string());
        self.data.push(line.data.as_ref().map(|d| d.to_string()));
    }
}

const PENDING: &str = "('scheduled', 'ready', 'retrying', 'running')";

impl Db {
    /// Inserts new jobs and their log lines, in one transaction that also
    /// wakes the processes serving them.
    async fn jobs_insert(&self, batch: &NewJobs) -> Result<(), StoreError> {
        match batch {
            NewJobs::Rows(jobs) => self.jobs_insert_rows(&self.pool, jobs).await,
            NewJobs::Copy(rows, logs, created) => self.jobs_copy(rows, logs, created).await,
        }
    }

    /// A few jobs: one statement, so one round trip; the jobs, their log
    /// lines and the wake-up commit together (on the pool a statement is
    /// its own transaction; on a caller's connection, with its
    /// transaction).
    async fn jobs_insert_rows<'c>(
        &self,
        on: impl Executor<'c, Database = Postgres>,
        jobs: &[Job],
    ) -> Result<(), StoreError> {
        if jobs.is_empty() {
            return Ok(());
        }
        if let [job] = jobs {
            if job.logs.len() == 1 && job.logs[0].is_created_at(job.created_at) {
                return self.job_insert_one(on, job).await;
            }
        }
        self.relay.ready_to_write().await;
        let events = self.relay.created(jobs);
        let mut logs = LogColumns::default();
        let mut log_created = Vec::with_capacity(jobs.len());
        for job in jobs {
            let implied = job
                .logs
                .first()
                .is_some_and(|l| l.is_created_at(job.created_at));
            log_created.push(implied);
            for line in &job.logs[usize::from(implied)..] {
                logs.push(job.id, line);
            }
        }
        sqlx::query(AssertSqlSafe(format!(
            "WITH new_jobs AS (
                 INSERT INTO {jobs} ({columns})
                 SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[],
                                      $7::timestamptz[], $8::timestamptz[], $9::timestamptz[], $10::bigint[], $11::bigint[],
                                      $12::text[], $13::text[], $14::bigint[], $15::bigint[], $16::timestamptz[],
                                      $17::boolean[], $18::text[], $19::text[], $20::text[])),
             new_logs AS ({insert_logs}),
             new_events AS (INSERT INTO {event_log} (node, events, entries) SELECT $27, $28, $30 WHERE $28 IS NOT NULL)
             SELECT pg_notify($26, ''), CASE WHEN $28 IS NOT NULL THEN pg_notify($26, $29) END",
            jobs = self.sql.table("jobs"),
            columns = copy::COLUMNS,
            insert_logs = self.insert_logs_sql(21),
            event_log = self.sql.table("event_log"),
        )))
        .bind(jobs.iter().map(|j| j.id.0).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| j.reference.clone()).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| j.task.to_string()).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| j.payload.as_str().to_owned()).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| i64::from(j.priority)).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| j.status.as_str()).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| j.created_at).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| j.run_at).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| j.expires_at).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| i64::from(j.attempts)).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| j.max_attempts.map(i64::from)).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| j.last_error.clone()).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| j.result.as_ref().map(|r| r.to_string())).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| j.progress.map(|p| p.current as i64)).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| j.progress.map(|p| p.total as i64)).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| j.finished_at).collect::<Vec<_>>())
        .bind(&log_created)
        .bind(jobs.iter().map(|j| j.callback.clone()).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| j.group.clone()).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| j.callback_secret.clone()).collect::<Vec<_>>())
        .bind(&logs.job_ids)
        .bind(&logs.at)
        .bind(&logs.attempts)
        .bind(&logs.messages)
        .bind(&logs.data)
        .bind(&self.sql.channel)
        .bind(self.owner)
        .bind(events.as_ref().map(|e| e.json.as_str()))
        .bind(relay::LOG_GREW)
        .bind(events.as_ref().map(|e| e.entries))
        .execute(on)
        .await
        .map_err(map_err)?;
        Ok(())
    }

    /// One job whose log is its "created" line alone (the usual single
    /// create): its values bound as they are, with no arrays for the
    /// server to take apart, and the wake-up in the same statement.
    async fn job_insert_one<'c>(
        &self,
        on: impl Executor<'c, Database = Postgres>,
        job: &Job,
    ) -> Result<(), StoreError> {
        self.relay.ready_to_write().await;
        let events = self.relay.created(std::slice::from_ref(job));
        sqlx::query(AssertSqlSafe(format!(
            "WITH new_job AS (
                 INSERT INTO {jobs} ({columns})
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, true, $17, $18, $19)),
             new_events AS (INSERT INTO {event_log} (node, events, entries) SELECT $21, $22, $24 WHERE $22 IS NOT NULL)
             SELECT pg_notify($20, ''), CASE WHEN $22 IS NOT NULL THEN pg_notify($20, $23) END",
            jobs = self.sql.table("jobs"),
            columns = copy::COLUMNS,
            event_log = self.sql.table("event_log"),
        )))
        .bind(job.id.0)
        .bind(job.reference.as_deref())
        .bind(&*job.task)
        .bind(job.payload.as_str())
        .bind(i64::from(job.priority))
        .bind(job.status.as_str())
        .bind(job.created_at)
        .bind(job.run_at)
        .bind(job.expires_at)
        .bind(i64::from(job.attempts))
        .bind(job.max_attempts.map(i64::from))
        .bind(job.last_error.as_deref())
        .bind(job.result.as_ref().map(|r| r.to_string()))
        .bind(job.progress.map(|p| p.current as i64))
        .bind(job.progress.map(|p| p.total as i64))
        .bind(job.finished_at)
        .bind(job.callback.as_deref())
        .bind(job.group.as_deref())
        .bind(job.callback_secret.as_deref())
        .bind(&self.sql.channel)
        .bind(self.owner)
        .bind(events.as_ref().map(|e| e.json.as_str()))
        .bind(relay::LOG_GREW)
        .bind(events.as_ref().map(|e| e.entries))
        .execute(on)
        .await
        .map_err(map_err)?;
        Ok(())
    }

    /// `INSERT`s the log lines bound as five arrays from `$first` on, in
    /// array order (their `seq` follows it).
    fn insert_logs_sql(&self, first: usize) -> String {
        let n = |k: usize| first + k;
        format!(
            "INSERT INTO {logs} (job_id, at, attempt, message, data)
             SELECT u.job_id, u.at, u.attempt, u.message, u.data
             FROM UNNEST(${}::uuid[], ${}::timestamptz[], ${}::bigint[], ${}::text[], ${}::text[])
                  WITH ORDINALITY AS u(job_id, at, attempt, message, data, ord)
             ORDER BY u.ord",
            n(0),
            n(1),
            n(2),
            n(3),
            n(4),
            logs = self.sql.table("job_logs"),
        )
    }

    /// Many jobs: `COPY`, then their log lines and the wake-up, in one
    /// transaction.
    async fn jobs_copy(
        &self,
        rows: &CopyRows,
        logs: &LogColumns,
        created: &[CreatedJob],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        self.jobs_copy_on(&mut tx, rows, logs, created).await?;
        tx.commit().await.map_err(map_err)
    }

    /// `COPY`, the log lines and the wake-up on `conn`, inside the
    /// transaction the caller has open there.
    async fn jobs_copy_on(
        &self,
        conn: &mut PgConnection,
        rows: &CopyRows,
        logs: &LogColumns,
        created: &[CreatedJob],
    ) -> Result<(), StoreError> {
        let mut copy = conn
            .copy_in_raw(&format!(
                "COPY {} ({}) FROM STDIN (FORMAT binary)",
                self.sql.table("jobs"),
                copy::COLUMNS
            ))
            .await
            .map_err(map_err)?;
        if let Err(err) = copy.send(rows.bytes()).await {
            let _ = copy.abort("kessel could not send the rows").await;
            return Err(map_err(err));
        }
        copy.finish().await.map_err(map_err)?;
        if !logs.job_ids.is_empty() {
            sqlx::query(AssertSqlSafe(self.insert_logs_sql(1)))
                .bind(&logs.job_ids)
                .bind(&logs.at)
                .bind(&logs.attempts)
                .bind(&logs.messages)
                .bind(&logs.data)
                .execute(&mut *conn)
                .await
                .map_err(map_err)?;
        }
        self.relay.ready_to_write().await;
        if let Some(events) = self.relay.created_of(created.iter().cloned()) {
            self.log_write_on(&mut *conn, &events).await?;
        }
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(&self.sql.channel)
            .execute(&mut *conn)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    pub(super) async fn jobs_update(&self, updates: &[JobUpdate]) -> Result<(), StoreError> {
        self.jobs_update_on(&self.pool, updates).await
    }

    /// The updates and the new jobs they made (a dead letter) in one
    /// transaction: both are kept, or neither.
    async fn jobs_write(&self, updates: &[JobUpdate], inserts: &NewJobs) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        self.jobs_update_on(&mut *tx, updates).await?;
        self.jobs_insert_on(&mut tx, inserts).await?;
        tx.commit().await.map_err(map_err)
    }

    /// [`Db::jobs_update`] on `on`: the pool (the statement is its own
    /// transaction) or a caller's transaction.
    async fn jobs_update_on<'c>(
        &self,
        on: impl Executor<'c, Database = Postgres>,
        updates: &[JobUpdate],
    ) -> Result<(), StoreError> {
        if updates.is_empty() {
            return Ok(());
        }
        // One row per job: the last state wins, every log line is kept in order.
        let mut last: HashMap<JobId, usize> = HashMap::with_capacity(updates.len());
        let mut logs = LogColumns::default();
        for (i, u) in updates.iter().enumerate() {
            last.insert(u.id, i);
            for line in &u.logs {
                logs.push(u.id, line);
            }
        }
        let mut cols = UpdateColumns::default();
        let mut releases_work = false;
        let mut order: Vec<usize> = last.into_values().collect();
        order.sort_unstable();
        for i in order {
            let u = &updates[i];
            releases_work |= matches!(
                u.status,
                JobStatus::Ready | JobStatus::Retrying | JobStatus::Scheduled
            );
            cols.ids.push(u.id.0);
            cols.statuses.push(u.status.as_str());
            cols.attempts.push(i64::from(u.attempts));
            cols.max_attempts.push(u.max_attempts.map(i64::from));
            cols.run_at.push(u.run_at);
            cols.last_error.push(u.last_error.clone());
            cols.result.push(u.result.as_ref().map(|r| r.to_string()));
            cols.progress_current
                .push(u.progress.map(|p| p.current as i64));
            cols.progress_total.push(u.progress.map(|p| p.total as i64));
            cols.finished_at.push(u.finished_at);
        }
        // One statement, one round trip: the state changes, the log lines
        // (of jobs that exist) and, when jobs went back to waiting, the
        // wake-up, committed together.
        sqlx::query(AssertSqlSafe(format!(
            "WITH changed AS (
                 UPDATE {jobs} AS j SET
                     status = u.status, attempts = u.attempts, max_attempts = u.max_attempts, run_at = u.run_at,
                     last_error = u.last_error, result = u.result, progress_current = u.progress_current,
                     progress_total = u.progress_total, finished_at = u.finished_at,
                     leased_by = CASE WHEN u.status IN ('completed', 'buried', 'expired', 'cancelled') THEN NULL ELSE j.leased_by END,
                     lease_until = CASE WHEN u.status IN ('completed', 'buried', 'expired', 'cancelled') THEN NULL ELSE j.lease_until END,
                     cancel_requested = CASE WHEN u.status IN ('completed', 'buried', 'expired', 'cancelled') THEN false ELSE j.cancel_requested END
                 FROM UNNEST($1::uuid[], $2::text[], $3::bigint[], $4::bigint[], $5::timestamptz[], $6::text[], $7::text[],
                             $8::bigint[], $9::bigint[], $10::timestamptz[])
                      AS u(id, status, attempts, max_attempts, run_at, last_error, result, progress_current, progress_total, finished_at)
                 WHERE j.id = u.id AND (j.leased_by IS NULL OR j.leased_by = $11)
                 RETURNING j.id),
             new_logs AS (
                 INSERT INTO {logs} (job_id, at, attempt, message, data)
                 SELECT u.job_id, u.at, u.attempt, u.message, u.data
                 FROM UNNEST($12::uuid[], $13::timestamptz[], $14::bigint[], $15::text[], $16::text[])
                      WITH ORDINALITY AS u(job_id, at, attempt, message, data, ord)
                 -- the updated jobs from the hash of what changed; others
                 -- (held by another process now) by a lookup
                 WHERE u.job_id IN (SELECT id FROM changed)
                    OR EXISTS (SELECT 1 FROM {jobs} WHERE id = u.job_id)
                 ORDER BY u.ord)
             SELECT pg_notify($17, '') WHERE $18",
            jobs = self.sql.table("jobs"),
            logs = self.sql.table("job_logs"),
        )))
        .bind(&cols.ids)
        .bind(&cols.statuses)
        .bind(&cols.attempts)
        .bind(&cols.max_attempts)
        .bind(&cols.run_at)
        .bind(&cols.last_error)
        .bind(&cols.result)
        .bind(&cols.progress_current)
        .bind(&cols.progress_total)
        .bind(&cols.finished_at)
        .bind(self.owner)
        .bind(&logs.job_ids)
        .bind(&logs.at)
        .bind(&logs.attempts)
        .bind(&logs.messages)
        .bind(&logs.data)
        .bind(&self.sql.channel)
        .bind(releases_work)
        .execute(on)
        .await
        .map_err(map_err)?;
        Ok(())
    }

    pub(super) async fn jobs_pending(&self) -> Result<Vec<Job>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {JOB_COLUMNS} FROM {} WHERE status IN {PENDING} ORDER BY id",
            self.sql.table("jobs")
        )))
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        let mut jobs = rows
            .iter()
            .map(job_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        self.attach_logs(&mut jobs).await?;
        Ok(jobs)
    }

    pub(super) async fn job_get(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {JOB_COLUMNS} FROM {} WHERE id = $1",
            self.sql.table("jobs")
        )))
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err)?;
        let Some(row) = row else { return Ok(None) };
        let mut jobs = vec![job_from_row(&row)?];
        self.attach_logs(&mut jobs).await?;
        Ok(jobs.pop())
    }

    pub(super) async fn jobs_query(&self, query: &JobQuery) -> Result<Vec<Job>, StoreError> {
        // In id order, so along the primary key; the filters are checked
        // on the way.
        let mut qb: QueryBuilder<Postgres> = QueryBuilder::new(format!(
            "SELECT {JOB_COLUMNS} FROM {} WHERE true",
            self.sql.table("jobs")
        ));
        if !query.statuses.is_empty() {
            let statuses: Vec<&str> = query.statuses.iter().map(|s| s.as_str()).collect();
            qb.push(" AND status = ANY(").push_bind(statuses).push(")");
        }
        if !query.tasks.is_empty() {
            qb.push(" AND task = ANY(")
                .push_bind(query.tasks.clone())
                .push(")");
        }
        if let Some(r) = &query.reference {
            qb.push(" AND reference = ").push_bind(r.clone());
        }
        if let Some(t) = query.created_after {
            qb.push(" AND created_at >= ").push_bind(t);
        }
        if let Some(t) = query.created_before {
            qb.push(" AND created_at < ").push_bind(t);
        }
        qb.push(match query.order {
            Order::NewestFirst => " ORDER BY id DESC",
            Order::OldestFirst => " ORDER BY id ASC",
        })
        .push(" LIMIT ")
        .push_bind(i64::try_from(query.limit).unwrap_or(i64::MAX))
        .push(" OFFSET ")
        .push_bind(i64::try_from(query.offset).unwrap_or(i64::MAX));
        let rows = qb.build().fetch_all(&self.pool).await.map_err(map_err)?;
        let mut jobs = rows
            .iter()
            .map(job_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        self.attach_logs(&mut jobs).await?;
        Ok(jobs)
    }

    pub(super) async fn jobs_count(&self) -> Result<Vec<StatusCount>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT task, status, count(*) AS n FROM {} GROUP BY task, status ORDER BY task, status",
            self.sql.table("jobs")
        )))
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let task: String = row.try_get("task").map_err(map_err)?;
            let status: String = row.try_get("status").map_err(map_err)?;
            let count: i64 = row.try_get("n").map_err(map_err)?;
            let status =
                status
                    .parse()
                    .map_err(|e: crate::job::UnknownStatus| StoreError::Corrupt {
                        id: format!("(count of {task})"),
                        reason: e.to_string(),
                    })?;
            out.push(StatusCount {
                task,
                status,
                count: count as u64,
            });
        }
        out.sort_by(|a, b| (&a.task, a.status).cmp(&(&b.task, b.status)));
        Ok(out)
    }

    /// Removes one final job and its log lines.
    pub(super) async fn job_delete(&self, id: JobId) -> Result<bool, StoreError> {
        let jobs = self.sql.table("jobs");
        let deleted: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
            "WITH gone AS (
                 DELETE FROM {jobs} WHERE id = $1
                   AND status IN ('completed', 'buried', 'expired', 'cancelled')
                 RETURNING id),
             gone_logs AS (DELETE FROM {logs} WHERE job_id IN (SELECT id FROM gone))
             SELECT count(*) FROM gone",
            logs = self.sql.table("job_logs"),
        )))
        .bind(id.0)
        .fetch_one(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(deleted > 0)
    }

    pub(super) async fn jobs_delete(&self, params: &JobDelete) -> Result<u64, StoreError> {
        let statuses: Vec<&str> = params
            .statuses
            .iter()
            .filter(|s| s.is_final())
            .map(|s| s.as_str())
            .collect();
        if statuses.is_empty() {
            return Ok(0);
        }
        let limit = params.limit.map(|l| i64::try_from(l).unwrap_or(i64::MAX));
        let jobs = self.sql.table("jobs");
        // The oldest first, along `jobs_finished`: only a branch naming
        // `finished_at IS NOT NULL` may use that partial index (without it
        // the plan sorted the whole table for each batch: 0.86 s a batch
        // of 1,024 at 2M completed jobs, 7.6 ms with it). Jobs without a
        // finish time come after them (as `NULLS LAST` would put them),
        // and only when a cut-off is not given; their branch runs only if
        // the first one did not fill the limit. The rows are then taken
        // through their keys (`= ANY (ARRAY(..))`, not `IN (..)`): the
        // generic plan of a prepared statement does not know the limit,
        // and joined the batch with a scan of the whole jobs table (1.2 s
        // a batch, 5 ms through the keys).
        let filter = "status = ANY($1) AND (cardinality($2::text[]) = 0 OR task = ANY($2))";
        // Log lines go with their jobs (there is no foreign key to cascade).
        let deleted: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
            "WITH gone AS (
                 DELETE FROM {jobs} WHERE id = ANY (ARRAY(
                     SELECT id FROM (
                         (SELECT id FROM {jobs}
                          WHERE finished_at IS NOT NULL AND {filter}
                            AND ($3::timestamptz IS NULL OR finished_at < $3)
                          ORDER BY finished_at, id
                          LIMIT $4)
                         UNION ALL
                         (SELECT id FROM {jobs}
                          WHERE finished_at IS NULL AND {filter} AND $3::timestamptz IS NULL)
                     ) AS oldest_first
                     LIMIT $4))
                 RETURNING id),
             gone_logs AS (DELETE FROM {logs} WHERE job_id = ANY (ARRAY(SELECT id FROM gone)))
             SELECT count(*) FROM gone",
            logs = self.sql.table("job_logs"),
        )))
        .bind(statuses)
        .bind(&params.tasks)
        .bind(params.finished_before)
        .bind(limit)
        .fetch_one(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(deleted as u64)
    }
}

#[async_trait]
impl Store for PgStore {
    fn capabilities(&self) -> Capabilities {
        // `jobs_write` is one transaction.
        Capabilities::DURABLE.with_atomic_writes()
    }

    async fn jobs_insert(&self, jobs: &[Job]) -> Result<(), StoreError> {
        if jobs.is_empty() {
            return Ok(());
        }
        let (db, batch) = (self.db.clone(), NewJobs::new(jobs)?);
        self.exec
            .run(async move { db.jobs_insert(&batch).await })
            .await
    }

    async fn jobs_insert_unique(
        &self,
        job: &Job,
        hold: &crate::store::UniqueHold,
    ) -> Result<crate::store::Inserted, StoreError> {
        let (db, batch, hold) = (
            self.db.clone(),
            NewJobs::new(std::slice::from_ref(job))?,
            hold.clone(),
        );
        // The job is created now, by the queue's clock.
        let (id, now) = (job.id, job.created_at);
        self.exec
            .run(async move { db.jobs_insert_unique(id, &batch, &hold, now).await })
            .await
    }

    async fn job_unique_holder(
        &self,
        key: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<JobId>, StoreError> {
        let (db, key) = (self.db.clone(), key.to_owned());
        self.exec
            .run(async move { db.job_unique_holder(&key, now).await })
            .await
    }

    async fn jobs_update(&self, updates: &[JobUpdate]) -> Result<(), StoreError> {
        let (db, updates) = (self.db.clone(), updates.to_vec());
        self.exec
            .run(async move { db.jobs_update(&updates).await })
            .await
    }

    async fn jobs_write(&self, updates: &[JobUpdate], inserts: &[Job]) -> Result<(), StoreError> {
        if inserts.is_empty() {
            return self.jobs_update(updates).await;
        }
        let (db, updates, inserts) = (self.db.clone(), updates.to_vec(), NewJobs::new(inserts)?);
        self.exec
            .run(async move { db.jobs_write(&updates, &inserts).await })
            .await
    }

    async fn jobs_pending(&self) -> Result<Vec<Job>, StoreError> {
        let db = self.db.clone();
        self.exec.run(async move { db.jobs_pending().await }).await
    }

    async fn job_get(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        let db = self.db.clone();
        self.exec.run(async move { db.job_get(id).await }).await
    }

    async fn jobs_query(&self, query: &JobQuery) -> Result<Vec<Job>, StoreError> {
        let (db, query) = (self.db.clone(), query.clone());
        self.exec
            .run(async move { db.jobs_query(&query).await })
            .await
    }

    async fn jobs_count(&self) -> Result<Vec<StatusCount>, StoreError> {
        let db = self.db.clone();
        self.exec.run(async move { db.jobs_count().await }).await
    }

    async fn job_delete(&self, id: JobId) -> Result<bool, StoreError> {
        let db = self.db.clone();
        self.exec.run(async move { db.job_delete(id).await }).await
    }

    async fn jobs_delete(&self, params: &JobDelete) -> Result<u64, StoreError> {
        let (db, params) = (self.db.clone(), params.clone());
        self.exec
            .run(async move { db.jobs_delete(&params).await })
            .await
    }

    async fn schedules_list(&self) -> Result<Vec<ScheduleRecord>, StoreError> {
        self.schedules_list_().await
    }

    async fn schedule_upsert(&self, record: &ScheduleRecord) -> Result<Upserted, StoreError> {
        self.schedule_upsert_(record).await
    }

    async fn schedule_remove(&self, name: &str) -> Result<bool, StoreError> {
        self.schedule_remove_(name).await
    }

    async fn schedule_pause(&self, pause: &SchedulePause) -> Result<bool, StoreError> {
        self.schedule_pause_(pause).await
    }

    /// The compare-and-set and the jobs' insert in one transaction: see
    /// the trait's contract.
    async fn schedule_advance(
        &self,
        advance: &ScheduleAdvance,
        jobs: &[Job],
    ) -> Result<bool, StoreError> {
        self.schedule_advance_(advance, jobs).await
    }

    async fn suspensions_list(&self) -> Result<Vec<crate::Suspension>, StoreError> {
        self.suspensions_list_().await
    }

    /// The insert and the notification that tells every process, in one
    /// statement.
    async fn suspension_insert(&self, suspension: &crate::Suspension) -> Result<bool, StoreError> {
        self.suspension_insert_(suspension).await
    }

    async fn suspension_delete(&self, what: &crate::Suspended) -> Result<bool, StoreError> {
        self.suspension_delete_(what).await
    }

    fn shared(&self) -> Option<&dyn SharedStore> {
        Some(self)
    }

    fn postgres(&self) -> Option<&PgStore> {
        Some(self)
    }

    async fn close(&self) -> Result<(), StoreError> {
        let db = self.db.clone();
        self.exec
            .run(async move {
                db.pool.close().await;
                db.user_pool.close().await;
            })
            .await;
        Ok(())
    }
}

impl Db {
    pub(crate) fn lease_duration(&self) -> Duration {
        self.lease
    }

    pub(crate) fn vacuum_threshold(&self) -> Option<u64> {
        self.vacuum_after
    }

    pub(crate) fn owner_id(&self) -> Uuid {
        self.owner
    }

    pub(crate) fn channel(&self) -> &str {
        &self.sql.channel
    }

    pub(crate) fn jobs_table(&self) -> String {
        self.sql.table("jobs")
    }

    pub(crate) fn logs_table(&self) -> String {
        self.sql.table("job_logs")
    }

    pub(crate) async fn notify_work(&self) -> Result<(), StoreError> {
        self.notify().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_plain_identifiers() {
        assert!(valid_schema("kessel"));
        assert!(valid_schema("_jobs_2"));
        assert!(!valid_schema("Kessel"));
        assert!(!valid_schema("1jobs"));
        assert!(!valid_schema("jobs; DROP TABLE x"));
        assert!(!valid_schema(""));
    }
}
