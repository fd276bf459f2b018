//! Opening a store file: take the lock, check what the file is, and only
//! then write to it (WAL mode, migrations).
//!
//! The order matters. A file that is not a kessel store, or one from a
//! newer kessel, must be left exactly as it was, so nothing is written
//! until the file has been read and found to be ours (or empty).

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteLockingMode, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection, Row};

use super::errors::{open_error, store_error};
use super::rows::micros;
use super::{Durability, SqliteOptions};
use crate::store::StoreError;

/// The schema versions this kessel knows, oldest first, each with the SQL
/// that brings the previous version to it.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("sql/migrations/0001_init.sql")),
    (2, include_str!("sql/migrations/0002_implied_created.sql")),
    (3, include_str!("sql/migrations/0003_list_by_id.sql")),
    (4, include_str!("sql/migrations/0004_prune_by_index.sql")),
    (5, include_str!("sql/migrations/0005_unique.sql")),
    (6, include_str!("sql/migrations/0006_schedules.sql")),
    (7, include_str!("sql/migrations/0007_suspensions.sql")),
    (8, include_str!("sql/migrations/0008_job_callback.sql")),
    (9, include_str!("sql/migrations/0009_job_group.sql")),
    (
        10,
        include_str!("sql/migrations/0010_callback_secret_and_reference_index.sql"),
    ),
];

/// The newest schema version of the SQLite store this kessel knows. A
/// file written at a newer version is refused with
/// [`StoreError::NewerSchema`], untouched.
///
/// # Examples
///
/// ```
/// assert!(kessel::store::SQLITE_SCHEMA_VERSION >= 1);
/// ```
pub const SCHEMA_VERSION: i64 = 10;

/// Pages the WAL holds before it is checkpointed into the file.
pub(super) const WAL_AUTOCHECKPOINT_PAGES: u64 = 1000;

/// Bytes the WAL file is cut back to after a checkpoint (32 MiB).
pub(super) const JOURNAL_SIZE_LIMIT: u64 = 32 << 20;

/// `PRAGMA auto_vacuum`'s value for `INCREMENTAL`.
const AUTO_VACUUM_INCREMENTAL: i64 = 2;

/// What [`inspect`] found in the file.
enum Found {
    /// No tables: a new file, or an empty database.
    Empty,
    /// A kessel store at this schema version.
    Kessel(i64),
}

/// Opens, locks, checks and migrates the store file.
pub(super) async fn open(options: &SqliteOptions) -> Result<SqliteConnection, StoreError> {
    let path = &options.path;
    let connect = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        // Held for the life of the connection: one process per file.
        .locking_mode(SqliteLockingMode::Exclusive)
        // Only waits while opening: once open, nobody else can take the lock.
        .busy_timeout(options.lock_timeout)
        // Not enforced: checking `kessel_job_logs.job_id` cost a lookup of
        // the job for every line written (a fifth of a bulk insert). Lines
        // are written for jobs inserted in the same write or checked to
        // exist (`log_insert.sql`), and deleting jobs deletes their lines
        // (`logs_delete.sql`).
        .foreign_keys(false)
        .synchronous(match options.durability {
            Durability::Full => SqliteSynchronous::Full,
            Durability::ProcessCrash => SqliteSynchronous::Normal,
        })
        // A new file gets 16 KiB pages (SQLite's default is 4 KiB): jobs
        // are appended in creation order, and bigger pages split less
        // often and hold more of each index: a bulk insert measured ~15%
        // faster. Only a file without pages takes it (and a WAL file never
        // changes it again): existing files, ours or not, keep theirs and
        // are not written to by this.
        .page_size(16384)
        // Up to 32 MiB of pages in memory (SQLite's default is 2 MiB): a
        // batch's index inserts then find their pages without a read.
        .pragma("cache_size", "-32768")
        // The WAL is checkpointed into the file once it holds this many
        // pages (SQLite's default, 1,000, stated: 16 MiB with 16 KiB
        // pages), and cut back to `journal_size_limit` when it starts over
        // after a checkpoint. Without the limit it kept the size of the
        // largest transaction ever written (403 MB after a 2M-row prune).
        // Both hold for this connection only: nothing is written to the
        // file by them.
        .pragma("wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES.to_string())
        .pragma("journal_size_limit", JOURNAL_SIZE_LIMIT.to_string())
        .statement_cache_capacity(64)
        .disable_statement_logging();
    let mut conn = connect.connect().await.map_err(|e| open_error(path, e))?;
    match prepare(&mut conn, options).await {
        Ok(()) => Ok(conn),
        Err(err) => {
            // Release the lock before reporting, so the caller may retry.
            let _ = conn.close().await;
            Err(err)
        }
    }
}

async fn prepare(conn: &mut SqliteConnection, options: &SqliteOptions) -> Result<(), StoreError> {
    let path = &options.path;
    // An exclusive transaction takes the file's exclusive lock; in
    // EXCLUSIVE locking mode it is never given back until the connection
    // closes. A second opener fails here, with SQLITE_BUSY.
    sqlx::raw_sql("BEGIN EXCLUSIVE")
        .execute(&mut *conn)
        .await
        .map_err(|e| open_error(path, e))?;
    let found = inspect(conn, options).await;
    sqlx::raw_sql("COMMIT")
        .execute(&mut *conn)
        .await
        .map_err(|e| open_error(path, e))?;
    let from = match found? {
        Found::Empty => 0,
        Found::Kessel(version) if version > SCHEMA_VERSION => {
            return Err(StoreError::NewerSchema {
                found: version,
                supported: SCHEMA_VERSION,
            })
        }
        Found::Kessel(version) => version,
    };

    // The file is ours: from here on, writing is fine.
    if from == 0 {
        // Before the first table: only then can a file take it without a
        // VACUUM. Pages that retention frees are then given back to the
        // file system in small steps (`connection.rs`, `reclaim`).
        sqlx::raw_sql("PRAGMA auto_vacuum = INCREMENTAL")
            .execute(&mut *conn)
            .await
            .map_err(store_error)?;
    }
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode = WAL")
        .fetch_one(&mut *conn)
        .await
        .map_err(store_error)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Unavailable(std::sync::Arc::new(
            std::io::Error::other(format!(
                "{} cannot use write-ahead logging (journal mode stayed {mode})",
                path.display()
            )),
        )));
    }
    if let Some(bytes) = options.max_size {
        let page_size: i64 = sqlx::query_scalar("PRAGMA page_size")
            .fetch_one(&mut *conn)
            .await
            .map_err(store_error)?;
        let pages = (bytes / page_size.max(512) as u64).max(1);
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "PRAGMA max_page_count = {pages}"
        )))
        .execute(&mut *conn)
        .await
        .map_err(store_error)?;
    }
    migrate(conn, from).await?;
    incremental_vacuum(conn, path).await;
    Ok(())
}

/// Switches a file made before schema version 4 (without incremental
/// auto-vacuum) to it, once: that takes a `VACUUM`, which rewrites the
/// whole file (as long as copying it, and as much free disk space). If it
/// fails (a full disk), the store works as before, without giving pages
/// back to the file system, and tries again at the next open.
async fn incremental_vacuum(conn: &mut SqliteConnection, path: &std::path::Path) {
    let mode: Result<i64, _> = sqlx::query_scalar("PRAGMA auto_vacuum")
        .fetch_one(&mut *conn)
        .await;
    if matches!(mode, Ok(AUTO_VACUUM_INCREMENTAL)) {
        return;
    }
    let started = std::time::Instant::now();
    let switched = sqlx::raw_sql("PRAGMA auto_vacuum = INCREMENTAL; VACUUM")
        .execute(&mut *conn)
        .await;
    match switched {
        Ok(_) => tracing::info!(
            path = %path.display(),
            elapsed = ?started.elapsed(),
            "switched the SQLite store to incremental auto-vacuum (once, with a VACUUM)"
        ),
        Err(err) => tracing::warn!(
            path = %path.display(),
            error = %err,
            "could not switch the SQLite store to incremental auto-vacuum; \
             freed pages stay in the file until the next open tries again"
        ),
    }
}

/// Whether the open file gives freed pages back (`auto_vacuum =
/// INCREMENTAL`).
pub(super) async fn reclaims(conn: &mut SqliteConnection) -> bool {
    matches!(
        sqlx::query_scalar::<_, i64>("PRAGMA auto_vacuum")
            .fetch_one(&mut *conn)
            .await,
        Ok(AUTO_VACUUM_INCREMENTAL)
    )
}

/// Reads what the file holds, without writing.
async fn inspect(
    conn: &mut SqliteConnection,
    options: &SqliteOptions,
) -> Result<Found, StoreError> {
    let path = &options.path;
    let objects = sqlx::query(include_str!("sql/schema_objects.sql"))
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| open_error(path, e))?;
    if objects.is_empty() {
        return Ok(Found::Empty);
    }
    let has_schema_table = objects.iter().any(|row| {
        row.try_get::<String, _>("name")
            .is_ok_and(|name| name == "kessel_schema")
    });
    if !has_schema_table {
        let names: Vec<String> = objects
            .iter()
            .filter_map(|row| row.try_get::<String, _>("name").ok())
            .take(5)
            .collect();
        return Err(StoreError::NotKessel(format!(
            "{} is a SQLite database of something else (it holds {}, but no kessel_schema table)",
            path.display(),
            names.join(", ")
        )));
    }
    let version: Option<i64> = sqlx::query_scalar(include_str!("sql/schema_version.sql"))
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| open_error(path, e))?;
    match version {
        Some(v) if v >= 1 => Ok(Found::Kessel(v)),
        other => Err(StoreError::NotKessel(format!(
            "{} has a kessel_schema table without a valid version ({other:?})",
            path.display()
        ))),
    }
}

/// The SQL that [`open`] runs on a file at schema version `from` (0: a new
/// file), as one script: the pragmas a new file gets, then each
/// migration in its own transaction with its version row.
pub(super) fn script(from: i64) -> String {
    let mut text = String::new();
    if from <= 0 {
        text.push_str("PRAGMA auto_vacuum = INCREMENTAL;\n");
    }
    text.push_str("PRAGMA journal_mode = WAL;\n");
    for &(version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > from) {
        text.push_str(&format!(
            "\n-- schema version {version}\nBEGIN;\n{}\n\
             INSERT INTO kessel_schema (version, applied_at) VALUES \
             ({version}, CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER));\n\
             COMMIT;\n",
            sql.trim_end()
        ));
    }
    text
}

/// Applies every migration newer than `from`, each in its own transaction
/// together with its version row.
async fn migrate(conn: &mut SqliteConnection, from: i64) -> Result<(), StoreError> {
    for &(version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > from) {
        let mut tx = conn.begin().await.map_err(store_error)?;
        sqlx::raw_sql(sql)
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        sqlx::query(include_str!("sql/schema_version_insert.sql"))
            .bind(version)
            .bind(micros(chrono::Utc::now()))
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        tx.commit().await.map_err(store_error)?;
        tracing::info!(version, "migrated the SQLite store's schema");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use sqlx::sqlite::SqliteConnectOptions;
    use sqlx::{ConnectOptions, Connection, Row};

    use super::MIGRATIONS;
    use crate::job::JobStatus;
    use crate::store::sqlite::connection::{
        JOBS_BY_REFERENCE_NEWEST_FIRST, JOBS_BY_REFERENCE_OLDEST_FIRST,
    };
    use crate::store::sqlite::SqliteStore;
    use crate::store::{JobQuery, Store};

    /// A file at schema version `upto`, made by the migrations up to it.
    async fn file_at(path: &std::path::Path, upto: i64) -> sqlx::SqliteConnection {
        let mut conn = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .connect()
            .await
            .unwrap();
        for &(version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v <= upto) {
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut conn)
                .await
                .unwrap();
            sqlx::query("INSERT INTO kessel_schema (version, applied_at) VALUES (?1, 0)")
                .bind(version)
                .execute(&mut conn)
                .await
                .unwrap();
        }
        conn
    }

    /// The lines of SQLite's plan for `sql`, its parameters bound.
    async fn plan(conn: &mut sqlx::SqliteConnection, sql: &str) -> Vec<String> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")))
            .bind(None::<String>)
            .bind(r#"["kessel.webhook"]"#)
            .bind("webhook:0193")
            .bind(None::<i64>)
            .bind(None::<i64>)
            .bind(100_i64)
            .bind(0_i64)
            .fetch_all(conn)
            .await
            .unwrap();
        rows.iter().map(|r| r.get::<String, _>("detail")).collect()
    }

    #[actix_rt::test]
    async fn a_search_by_reference_reads_the_reference_index() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = file_at(&dir.path().join("jobs.db"), i64::MAX).await;
        for sql in [
            JOBS_BY_REFERENCE_NEWEST_FIRST,
            JOBS_BY_REFERENCE_OLDEST_FIRST,
        ] {
            let plan = plan(&mut conn, sql).await;
            assert!(
                plan.iter()
                    .any(|l| l.contains("USING INDEX kessel_jobs_by_reference")),
                "{plan:?}"
            );
            assert!(
                !plan.iter().any(|l| l == "SCAN kessel_jobs"),
                "no scan of every job: {plan:?}"
            );
        }
    }

    #[actix_rt::test]
    async fn jobs_stored_at_schema_9_are_found_by_reference_after_the_migration_to_10() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jobs.db");
        {
            let mut conn = file_at(&path, 9).await;
            for (n, reference) in [(1, Some("webhook:a")), (2, None), (3, Some("webhook:b"))] {
                sqlx::query(
                    "INSERT INTO kessel_jobs (id, reference, task, payload, priority, status, \
                     created_at, run_at, attempts, log_created, callback) \
                     VALUES (?1, ?2, 'kessel.webhook', '{}', 0, 'ready', ?3, ?3, 0, 1, NULL)",
                )
                .bind(format!("0193a6d0-0000-7000-8000-00000000000{n}"))
                .bind(reference)
                .bind(1_700_000_000_000_000_i64 + n)
                .execute(&mut conn)
                .await
                .unwrap();
            }
            conn.close().await.unwrap();
        }
        let store = SqliteStore::open(&path).await.expect("opens and migrates");
        let found = store
            .jobs_query(
                &JobQuery::default()
                    .task("kessel.webhook")
                    .reference("webhook:b"),
            )
            .await
            .unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].reference.as_deref(), Some("webhook:b"));
        assert_eq!(found[0].status, JobStatus::Ready);
        assert_eq!(
            found[0].callback_secret, None,
            "a job stored before names none"
        );
        store.close().await.unwrap();
        let mut conn = SqliteConnectOptions::new()
            .filename(&path)
            .connect()
            .await
            .unwrap();
        let version: i64 = sqlx::query("SELECT max(version) FROM kessel_schema")
            .fetch_one(&mut conn)
            .await
            .unwrap()
            .get(0);
        assert_eq!(version, super::SCHEMA_VERSION);
        let plan = plan(&mut conn, JOBS_BY_REFERENCE_NEWEST_FIRST).await;
        assert!(
            plan.iter()
                .any(|l| l.contains("USING INDEX kessel_jobs_by_reference")),
            "{plan:?}"
        );
    }
}
