//! One-line constructors of a queue on each durable store, behind the
//! store's feature.

#[cfg(any(feature = "sqlite", feature = "postgres"))]
use {super::Queue, crate::error::Error, std::sync::Arc};

#[cfg(feature = "sqlite")]
impl Queue {
    /// A queue on the SQLite store at `path` (feature `sqlite`): opened
    /// with default [`SqliteOptions`](crate::store::SqliteOptions), and every job still pending in it
    /// handed to the queue's scheduler.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] with the reasons of [`SqliteOptions::open`](crate::store::SqliteOptions::open).
    ///
    /// # Panics
    ///
    /// Outside a running actix system.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # std::env::set_current_dir(dir.path()).unwrap();
    /// let queue = kessel::Queue::sqlite("jobs.db").await?;
    /// # let _ = queue;
    /// # Ok(()) }
    /// ```
    pub async fn sqlite(path: impl AsRef<std::path::Path>) -> Result<Queue, Error> {
        let store = crate::store::SqliteStore::open(path).await?;
        Queue::builder().store(Arc::new(store)).build().await
    }
}

#[cfg(feature = "postgres")]
impl Queue {
    /// A queue on PostgreSQL at `url` (schema `kessel`), in one line.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] when the database cannot be reached or its schema
    /// is newer than this kessel knows.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// let queue = kessel::Queue::postgres("postgres://postgres@127.0.0.1:5432/test").await?;
    /// # let _ = queue;
    /// # Ok(()) }
    /// ```
    pub async fn postgres(url: &str) -> Result<Queue, Error> {
        let store = crate::store::PgStore::connect(url).await?;
        Queue::builder().store(Arc::new(store)).build().await
    }
}

#[cfg(feature = "postgres")]
impl Queue {
    /// A queue on PostgreSQL with `options` (a schema of its own, the pool
    /// size, the lease), in one line.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] with the reasons of
    /// [`PgStore::connect_with`](crate::store::PgStore::connect_with).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// use kessel::store::PgOptions;
    /// let url = "postgres://postgres@127.0.0.1:5432/test";
    /// let queue = kessel::Queue::postgres_with(PgOptions::new(url).schema("billing_jobs")).await?;
    /// # let _ = queue;
    /// # Ok(()) }
    /// ```
    pub async fn postgres_with(options: crate::store::PgOptions) -> Result<Queue, Error> {
        let store = crate::store::PgStore::connect_with(options).await?;
        Queue::builder().store(Arc::new(store)).build().await
    }
}
