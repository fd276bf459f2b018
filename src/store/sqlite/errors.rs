//! SQLite's result codes as [`StoreError`] kinds.

use std::path::Path;
use std::sync::Arc;

use crate::store::StoreError;

// Primary result codes (https://www.sqlite.org/rescode.html); an extended
// code carries its primary code in the low byte.
const SQLITE_PERM: i32 = 3;
const SQLITE_BUSY: i32 = 5;
const SQLITE_LOCKED: i32 = 6;
const SQLITE_NOMEM: i32 = 7;
const SQLITE_READONLY: i32 = 8;
const SQLITE_IOERR: i32 = 10;
const SQLITE_CORRUPT: i32 = 11;
const SQLITE_FULL: i32 = 13;
const SQLITE_CANTOPEN: i32 = 14;
const SQLITE_NOTADB: i32 = 26;

/// The primary result code of a database error, if it is one.
fn primary_code(err: &sqlx::Error) -> Option<i32> {
    match err {
        sqlx::Error::Database(db) => db
            .code()
            .and_then(|c| c.parse::<i32>().ok())
            .map(|c| c & 0xff),
        _ => None,
    }
}

/// Maps an error from a statement on an open store.
pub(super) fn store_error(err: sqlx::Error) -> StoreError {
    match primary_code(&err) {
        Some(SQLITE_FULL) => StoreError::Full(Arc::new(err)),
        Some(SQLITE_BUSY | SQLITE_LOCKED) => StoreError::Locked(err.to_string()),
        Some(SQLITE_IOERR | SQLITE_CANTOPEN | SQLITE_READONLY | SQLITE_PERM | SQLITE_NOMEM) => {
            StoreError::Unavailable(Arc::new(err))
        }
        Some(SQLITE_NOTADB | SQLITE_CORRUPT) => StoreError::Corrupt {
            id: "(database)".into(),
            reason: err.to_string(),
        },
        Some(_) => StoreError::Other(Arc::new(err)),
        None => match err {
            sqlx::Error::Io(_)
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed => StoreError::Unavailable(Arc::new(err)),
            other => StoreError::Other(Arc::new(other)),
        },
    }
}

/// Maps an error met while opening the file at `path`: a locked file is
/// another process's store, a file SQLite cannot read is not a kessel store.
pub(super) fn open_error(path: &Path, err: sqlx::Error) -> StoreError {
    match primary_code(&err) {
        Some(SQLITE_BUSY | SQLITE_LOCKED) => StoreError::Locked(format!(
            "{} is open in another process (or another store in this one); \
             a SQLite store belongs to one process at a time",
            path.display()
        )),
        Some(SQLITE_NOTADB) => {
            StoreError::NotKessel(format!("{} is not a SQLite database", path.display()))
        }
        _ => store_error(err),
    }
}

/// Whether an error may have ended the whole transaction (SQLite rolls a
/// transaction back by itself on some of these), so the batch it belongs
/// to must fail as a whole.
pub(super) fn ends_transaction(err: &StoreError) -> bool {
    matches!(
        err,
        StoreError::Full(_)
            | StoreError::Unavailable(_)
            | StoreError::Locked(_)
            | StoreError::Corrupt { .. }
    )
}

/// Operations on a store that was closed.
#[derive(Debug, thiserror::Error)]
#[error("the SQLite store at {0} is closed")]
pub(super) struct Closed(pub(super) String);

pub(super) fn closed(path: &Path) -> StoreError {
    StoreError::Unavailable(Arc::new(Closed(path.display().to_string())))
}
