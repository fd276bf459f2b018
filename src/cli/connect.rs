//! Opening the store and a queue on it as an operator: no task is
//! defined, no worker started, and retention is off, so this process runs
//! no job and removes nothing it was not asked to. On PostgreSQL it claims
//! nothing (a process claims only the tasks it defines), like
//! `examples/producer.rs`; on SQLite it holds the file's lock while it
//! runs, so it works only while no worker has the file open.

use std::sync::Arc;
use std::time::Duration;

use kessel::store::{PgOptions, PgStore, SqliteStore, Store};
use kessel::{Queue, Retention};

use super::api::{self, ApiClient};
use super::backend::Backend;
use super::error::CliError;
use super::parse::{self, Target};

/// Where the command line says to connect: a database or an API.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Connection<'a> {
    /// `--database-url` / `KESSEL_DATABASE_URL`.
    pub(crate) database_url: Option<&'a str>,
    /// `--schema` / `KESSEL_SCHEMA`.
    pub(crate) schema: Option<&'a str>,
    /// `--api` / `KESSEL_API_URL`.
    pub(crate) api: Option<&'a str>,
    /// `--token` / `KESSEL_API_TOKEN`.
    pub(crate) token: Option<&'a str>,
}

fn given(value: Option<&str>) -> Option<&str> {
    value.filter(|v| !v.trim().is_empty())
}

fn is_http(url: &str) -> bool {
    let url = url.trim();
    url.starts_with("http://") || url.starts_with("https://")
}

impl Connection<'_> {
    /// The API's URL when the command line names one: `--api`, or an
    /// `http(s)://` database URL. Both a database and an API is an error.
    pub(crate) fn api_url(&self) -> Result<Option<&str>, CliError> {
        match (given(self.database_url), given(self.api)) {
            (Some(_), Some(_)) => Err(CliError::BothTargets),
            (Some(db), None) if is_http(db) => Ok(Some(db)),
            (_, api) => Ok(api),
        }
    }

    /// Connects to what the command line names. `create` is passed on to
    /// [`open`].
    pub(crate) async fn backend(&self) -> Result<Backend, CliError> {
        if let Some(url) = self.api_url()? {
            if self.schema.is_some() {
                return Err(CliError::SchemaOnSqlite(format!("the API at {url}")));
            }
            let base = api::base_url(url)?;
            return Ok(Backend::Api(ApiClient::new(
                base,
                self.token.map(str::to_owned),
            )));
        }
        let opened = open(self.database_url, self.schema, false).await?;
        match opened.queue().await {
            Ok(queue) => Ok(Backend::Store { opened, queue }),
            Err(e) => {
                let _ = opened.close(None).await;
                Err(e)
            }
        }
    }
}

/// An open store.
#[derive(Debug)]
pub(crate) struct Opened {
    /// The store.
    pub(crate) store: Arc<dyn Store>,
    /// The PostgreSQL store again, typed, to read its schema version.
    pg: Option<Arc<PgStore>>,
    /// What it is, for messages and `stats`.
    pub(crate) location: Location,
}

/// Which store is open, as printed.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "store", rename_all = "snake_case")]
pub(crate) enum Location {
    /// A SQLite file.
    Sqlite {
        /// Its path.
        path: String,
    },
    /// A PostgreSQL schema.
    Postgres {
        /// The URL, password hidden.
        url: String,
        /// The schema.
        schema: String,
    },
    /// A running kessel HTTP API.
    Api {
        /// Its base URL.
        url: String,
    },
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Sqlite { path } => write!(f, "sqlite:{path}"),
            Location::Postgres { url, schema } => write!(f, "{url} (schema {schema})"),
            Location::Api { url } => write!(f, "{url} (kessel HTTP API)"),
        }
    }
}

/// Opens the store `database_url` names. Opening migrates the schema (the
/// library always does); a SQLite file that does not exist is an error
/// unless `create` (for `migrate`).
pub(crate) async fn open(
    database_url: Option<&str>,
    schema: Option<&str>,
    create: bool,
) -> Result<Opened, CliError> {
    let url = database_url
        .filter(|u| !u.trim().is_empty())
        .ok_or(CliError::NoDatabase)?;
    match parse::database_url(url)? {
        Target::Sqlite(path) => {
            let shown = path.display().to_string();
            if schema.is_some() {
                return Err(CliError::SchemaOnSqlite(format!("sqlite:{shown}")));
            }
            if !create && !path.exists() {
                return Err(CliError::NoSqliteFile(shown));
            }
            let store = SqliteStore::open(&path)
                .await
                .map_err(|e| CliError::Connect {
                    target: format!("sqlite:{shown}"),
                    source: e.into(),
                })?;
            Ok(Opened {
                store: Arc::new(store),
                pg: None,
                location: Location::Sqlite { path: shown },
            })
        }
        Target::Postgres(url) => {
            let schema = schema.unwrap_or("kessel").to_owned();
            let shown = parse::redact(&url);
            let options = PgOptions::new(&url)
                .schema(&schema)
                .application_name("kessel-cli")
                .max_connections(2);
            let store = PgStore::connect_with(options)
                .await
                .map_err(|e| CliError::Connect {
                    target: shown.clone(),
                    source: e.into(),
                })?;
            let store = Arc::new(store);
            Ok(Opened {
                store: store.clone(),
                pg: Some(store),
                location: Location::Postgres { url: shown, schema },
            })
        }
    }
}

impl Opened {
    /// The schema version the store is at.
    pub(crate) async fn schema_version(&self) -> Result<i64, CliError> {
        match &self.pg {
            Some(pg) => pg
                .schema_version()
                .await
                .map_err(|e| CliError::queue("read the schema version", e.into())),
            // Opening brought the file to this version.
            None => Ok(kessel::store::SQLITE_SCHEMA_VERSION),
        }
    }

    /// A queue on the store that defines no task, starts no worker and
    /// runs no schedule (pausing, resuming or running one by hand does
    /// not make this process tick the store's schedules).
    pub(crate) async fn queue(&self) -> Result<Queue, CliError> {
        Queue::builder()
            .store(self.store.clone())
            .retention(Retention::keep_all())
            .manual_schedules()
            .build()
            .await
            .map_err(|source| CliError::Connect {
                target: self.location.to_string(),
                source,
            })
    }

    /// Stores what the queue still holds (state changes are written in
    /// batches), stops it and closes the store.
    pub(crate) async fn close(&self, queue: Option<Queue>) -> Result<(), CliError> {
        if let Some(queue) = queue {
            match queue.shutdown(Duration::ZERO).await {
                Ok(_) | Err(kessel::Error::ShutDown) => {}
                Err(e) => return Err(CliError::queue("stop the queue", e)),
            }
        }
        self.store
            .close()
            .await
            .map_err(|e| CliError::queue("close the store", e.into()))
    }
}
