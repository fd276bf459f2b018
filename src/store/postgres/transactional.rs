//! New jobs written on the caller's own connection, inside the caller's
//! transaction: what [`Queue::create_in`](crate::Queue::create_in) stores
//! with.
//!
//! The statements are the store's own (the same schema-qualified
//! `INSERT`/`COPY`, the same log lines, the same `pg_notify` of the
//! schema's channel), only run on a connection kessel does not own.
//! PostgreSQL delivers a `NOTIFY` issued in a transaction when, and only
//! if, that transaction commits: the processes listening on the schema
//! wake as the jobs become visible, and a rollback leaves neither rows
//! nor a wake-up.

use sqlx::PgConnection;

use super::wake::Wake;
use super::{Db, NewJobs, PgStore};
use crate::job::Job;
use crate::store::StoreError;

impl PgStore {
    /// Inserts `jobs` on `conn`, in whatever transaction is open there
    /// (none: the statement commits on its own), with the wake-up of the
    /// processes serving them. Runs on the caller's task: the connection
    /// is the caller's, driven by the caller's runtime.
    pub(crate) async fn jobs_insert_on(
        &self,
        conn: &mut PgConnection,
        jobs: &[Job],
    ) -> Result<(), StoreError> {
        if jobs.is_empty() {
            return Ok(());
        }
        self.db.jobs_insert_on(conn, &NewJobs::new(jobs)?).await
    }
}

impl Db {
    pub(super) async fn jobs_insert_on(
        &self,
        conn: &mut PgConnection,
        batch: &NewJobs,
    ) -> Result<(), StoreError> {
        match batch {
            NewJobs::Rows(jobs) => {
                self.jobs_insert_rows(&mut *conn, jobs, Wake::WithInsert)
                    .await
            }
            NewJobs::Copy(rows, logs, created) => {
                self.jobs_copy_on(conn, rows, logs, created, Wake::WithInsert)
                    .await
            }
        }
    }
}
