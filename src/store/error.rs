use std::sync::Arc;

/// The error source a store wraps.
pub type BoxError = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// What a [`Store`](super::Store) returns when it fails, in kinds that do not
/// depend on which store it is. Cheap to clone, so every producer waiting on
/// a failed batch gets the same error.
///
/// # Examples
///
/// ```
/// use kessel::store::StoreError;
/// let err = StoreError::NewerSchema { found: 9, supported: 1 };
/// assert_eq!(err.to_string(), "the store's schema version 9 is newer than this kessel knows (1)");
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store cannot be reached or an I/O operation failed; worth retrying.
    #[error("store unavailable: {0}")]
    Unavailable(BoxError),
    /// The disk or database is full.
    #[error("store is full: {0}")]
    Full(BoxError),
    /// The file or database is not a kessel store.
    #[error("not a kessel store: {0}")]
    NotKessel(String),
    /// The store's configuration cannot be used (a URL that cannot be
    /// read, a schema name that is not a plain identifier).
    #[error("invalid store configuration: {0}")]
    InvalidConfig(String),
    /// The store was written by a newer kessel.
    #[error("the store's schema version {found} is newer than this kessel knows ({supported})")]
    NewerSchema {
        /// The version found.
        found: i64,
        /// The newest version this kessel knows.
        supported: i64,
    },
    /// Another process holds the store.
    #[error("the store is in use by another process: {0}")]
    Locked(String),
    /// A stored record cannot be read back.
    #[error("corrupt record for job {id}: {reason}")]
    Corrupt {
        /// The job whose record is bad.
        id: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The store does not do what was asked (a store written before the
    /// feature existed, say unique jobs).
    #[error("this store does not support {0}")]
    Unsupported(&'static str),
    /// Anything else.
    #[error("{0}")]
    Other(BoxError),
}

impl StoreError {
    /// Wraps any error as [`StoreError::Other`].
    pub fn other(err: impl std::error::Error + Send + Sync + 'static) -> Self {
        StoreError::Other(Arc::new(err))
    }

    /// Wraps any error as [`StoreError::Unavailable`].
    pub fn unavailable(err: impl std::error::Error + Send + Sync + 'static) -> Self {
        StoreError::Unavailable(Arc::new(err))
    }

    /// Whether retrying the same operation later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StoreError::Unavailable(_) | StoreError::Full(_) | StoreError::Locked(_)
        )
    }
}
