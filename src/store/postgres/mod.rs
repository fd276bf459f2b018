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
//!   poll covers lost notifications. A create that overlaps another of
//!   the store's creates notifies after its insert committed, so
//!   concurrent creates share the WAL flush (see `wake.rs`).
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
mod options;
mod reads;
mod relay;
mod rounds;
mod rows;
mod schedules;
mod shared;
mod suspensions;
mod transactional;
mod unique;
mod vacuum;
mod wake;
mod writes;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::AssertSqlSafe;
use uuid::Uuid;

use super::{
    Capabilities, JobDelete, JobQuery, JobUpdate, ScheduleAdvance, SchedulePause, ScheduleRecord,
    SharedStore, StatusCount, Store, StoreError, Upserted,
};
use crate::event::relay::Relay;
use crate::job::{Job, JobId};
use exec::Exec;
pub use options::PgOptions;
use rows::map_err;
use writes::NewJobs;

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
    /// Marked when the listener hears that the schedules changed (or
    /// reconnects); see [`SharedStore::schedule_changes`].
    schedules_changed: Arc<tokio::sync::watch::Sender<()>>,
    /// Events between processes (see `relay.rs`).
    relay: Arc<Relay>,
    /// Whether the last claim saw grouped jobs waiting among the tasks it
    /// claimed for: the next claim takes the fair path (see `claim.rs`).
    groups_waiting: Arc<std::sync::atomic::AtomicBool>,
    /// The wake-ups sent after new jobs committed (see `wake.rs`).
    wakes: Arc<wake::Wakes>,
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

    /// The value of the PostgreSQL setting `name` as kessel's own sessions
    /// see it. They differ from the server's defaults in two settings:
    /// `plan_cache_mode` is `force_generic_plan` and `jit` is `off` (see
    /// "Settings of kessel's sessions" in `docs/deploying.md`).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::store::StoreError> {
    /// let store = kessel::store::PgStore::connect("postgres://postgres@127.0.0.1:5432/test").await?;
    /// assert_eq!(store.session_setting("jit").await?, "off");
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`], or [`StoreError::Other`] (the server's
    /// "unrecognized configuration parameter", naming it) for a setting the
    /// server does not know.
    pub async fn session_setting(&self, name: &str) -> Result<String, StoreError> {
        let db = self.db.clone();
        let name = name.to_owned();
        self.exec
            .run(async move {
                sqlx::query_scalar::<_, String>("SELECT current_setting($1)")
                    .bind(&name)
                    .fetch_one(&db.pool)
                    .await
                    .map_err(map_err)
            })
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
        //
        // And no JIT compilation: a generic plan is costed without its
        // parameters' values, so a statement that counts rows of a large
        // table (a limited claim's rooms, after `ANALYZE` saw many leased
        // jobs) crosses `jit_above_cost` and compiles itself at every
        // execution, 100–150 ms of LLVM for a statement that runs in under
        // a millisecond. kessel's statements are short and indexed; none
        // gains from JIT.
        let connect = connect.options([("plan_cache_mode", "force_generic_plan"), ("jit", "off")]);
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
            schedules_changed: Arc::new(tokio::sync::watch::Sender::new(())),
            groups_waiting: Arc::new(std::sync::atomic::AtomicBool::new(true)),
            wakes: Arc::default(),
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
        sqlx::query(wake::WAKE_SQL)
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

/// The statuses of a job not final yet, as SQL.
pub(super) const PENDING: &str = "('scheduled', 'ready', 'retrying', 'running')";

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
