//! Suspensions in the shared schema: the [`Store`](crate::store::Store)
//! suspension methods of [`PgStore`].
//!
//! A suspend or resume is one statement: the row's insert or delete and a
//! `pg_notify` on the schema's channel with the payload
//! [`SUSPENSIONS_PAYLOAD`], delivered when it commits. Every process's
//! listener (`shared.rs`) tells its scheduler, which reads the table again;
//! a listener that reconnects does too, since it may have missed one.

use sqlx::{AssertSqlSafe, Row};

use super::rows::map_err;
use super::{Db, PgStore};
use crate::store::StoreError;
use crate::suspension::{Suspended, Suspension};

/// The notification payload that says the suspensions changed (the
/// channel's other notifications, with an empty payload, say jobs may be
/// claimable).
pub(super) const SUSPENSIONS_PAYLOAD: &str = "suspensions";

impl Db {
    fn suspensions(&self) -> String {
        self.sql.table("suspensions")
    }

    pub(super) async fn suspensions_list(&self) -> Result<Vec<Suspension>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT kind, name, suspended_by, since FROM {} ORDER BY kind DESC, name",
            self.suspensions()
        )))
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        rows.iter()
            .map(|row| {
                let kind: String = row.try_get("kind").map_err(map_err)?;
                let name: String = row.try_get("name").map_err(map_err)?;
                let corrupt = |reason: String| StoreError::Corrupt {
                    id: format!("(suspension of {kind} {name})"),
                    reason,
                };
                let what = Suspended::from_parts(&kind, name.clone())
                    .ok_or_else(|| corrupt(format!("unknown kind `{kind}`")))?;
                Ok(Suspension {
                    what,
                    by: row
                        .try_get("suspended_by")
                        .map_err(|e| corrupt(e.to_string()))?,
                    since: row.try_get("since").map_err(|e| corrupt(e.to_string()))?,
                })
            })
            .collect()
    }

    pub(super) async fn suspension_insert(&self, s: &Suspension) -> Result<bool, StoreError> {
        let inserted: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
            "WITH added AS (
                 INSERT INTO {} (kind, name, suspended_by, since) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (kind, name) DO NOTHING
                 RETURNING 1)
             SELECT (SELECT count(*) FROM added), pg_notify($5, $6)",
            self.suspensions()
        )))
        .bind(s.what.kind())
        .bind(s.what.name())
        .bind(&s.by)
        .bind(s.since)
        .bind(&self.sql.channel)
        .bind(SUSPENSIONS_PAYLOAD)
        .fetch_one(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(inserted > 0)
    }

    pub(super) async fn suspension_delete(&self, what: &Suspended) -> Result<bool, StoreError> {
        let deleted: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
            "WITH gone AS (
                 DELETE FROM {} WHERE kind = $1 AND name = $2 RETURNING 1)
             SELECT (SELECT count(*) FROM gone), pg_notify($3, $4)",
            self.suspensions()
        )))
        .bind(what.kind())
        .bind(what.name())
        .bind(&self.sql.channel)
        .bind(SUSPENSIONS_PAYLOAD)
        .fetch_one(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(deleted > 0)
    }
}

impl PgStore {
    pub(super) async fn suspensions_list_(&self) -> Result<Vec<Suspension>, StoreError> {
        let db = self.db.clone();
        self.exec
            .run(async move { db.suspensions_list().await })
            .await
    }

    pub(super) async fn suspension_insert_(&self, s: &Suspension) -> Result<bool, StoreError> {
        let (db, s) = (self.db.clone(), s.clone());
        self.exec
            .run(async move { db.suspension_insert(&s).await })
            .await
    }

    pub(super) async fn suspension_delete_(&self, what: &Suspended) -> Result<bool, StoreError> {
        let (db, what) = (self.db.clone(), what.clone());
        self.exec
            .run(async move { db.suspension_delete(&what).await })
            .await
    }
}
