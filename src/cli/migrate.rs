//! `kessel migrate`: apply the schema migrations (opening a store does),
//! or print their SQL without applying it. To know where a store stands,
//! `--print` reads its schema version with a plain read-only connection:
//! it never opens the store through the library, which would migrate it.

use std::time::Duration;

use kessel::store::{PgStore, SqliteStore, SQLITE_SCHEMA_VERSION};
use serde_json::json;
use sqlx::{ConnectOptions, Connection};

use super::args::MigrateArgs;
use super::connect::{self, Connection as Target};
use super::error::CliError;
use super::output::Out;
use super::parse;

/// `kessel migrate [--print [--from VERSION [--store KIND]]]`.
pub(crate) async fn run(target: &Target<'_>, out: &Out, args: MigrateArgs) -> Result<(), CliError> {
    if target.api_url()?.is_some() {
        return Err(CliError::NeedsDatabase("migrate"));
    }
    if !args.print {
        return apply(target, out).await;
    }
    let store = match (
        target.database_url.filter(|u| !u.trim().is_empty()),
        &args.store,
    ) {
        (Some(url), None) => Some(parse::database_url(url)?),
        (None, Some(_)) => None,
        (Some(_), Some(_)) => {
            return Err(CliError::BadValue {
                flag: "--store",
                reason: "give a database or --store, not both".into(),
            })
        }
        (None, None) if args.from.is_some() => {
            return Err(CliError::BadValue {
                flag: "--from",
                reason: "say which store's SQL with --store sqlite|postgres, or give a database"
                    .into(),
            })
        }
        (None, None) => return Err(CliError::NoDatabase),
    };
    let postgres = matches!(
        (&store, args.store.as_deref()),
        (Some(parse::Target::Postgres(_)), _) | (None, Some("postgres"))
    );
    if !postgres && target.schema.is_some() {
        return Err(CliError::SchemaOnSqlite("SQLite".into()));
    }
    let latest = if postgres {
        kessel::store::postgres::SCHEMA_VERSION
    } else {
        SQLITE_SCHEMA_VERSION
    };
    let from = match (args.from, &store) {
        (Some(v), _) if !(0..=latest).contains(&v) => {
            return Err(CliError::BadValue {
                flag: "--from",
                reason: format!("schema versions go from 0 (none) to {latest}, not {v}"),
            })
        }
        (Some(v), _) => v,
        (None, Some(parse::Target::Sqlite(path))) => sqlite_version(path).await?,
        (None, Some(parse::Target::Postgres(url))) => {
            postgres_version(url, target.schema.unwrap_or("kessel")).await?
        }
        (None, None) => 0,
    };
    if from > latest {
        return Err(CliError::Connect {
            target: target.database_url.map(parse::redact).unwrap_or_default(),
            source: kessel::Error::Store(kessel::store::StoreError::NewerSchema {
                found: from,
                supported: latest,
            }),
        });
    }
    let sql = if postgres {
        PgStore::migration_sql(target.schema.unwrap_or("kessel"), from)
            .map_err(|e| CliError::queue("cannot print the migrations", e.into()))?
    } else {
        SqliteStore::migration_sql(from)
    };
    if out.json {
        return out.json(&json!({
            "store": if postgres { "postgres" } else { "sqlite" },
            "from_version": from,
            "to_version": latest,
            "sql": if from == latest { String::new() } else { sql },
        }));
    }
    if from == latest {
        return out.text(&format!(
            "-- the store is at schema version {latest}, this kessel's: nothing to apply"
        ));
    }
    out.text(&format!(
        "-- kessel schema migrations from version {from} to {latest}\n{}",
        sql.trim_end()
    ))
}

/// `kessel migrate`: opens (creating a SQLite file if needed) and so
/// migrates the store, then prints its version.
async fn apply(target: &Target<'_>, out: &Out) -> Result<(), CliError> {
    let opened = connect::open(target.database_url, target.schema, true).await?;
    let version = opened.schema_version().await;
    let closed = opened.close(None).await;
    let version = version?;
    closed?;
    if out.json {
        return out.json(&json!({
            "location": opened.location,
            "schema_version": version,
        }));
    }
    out.text(&format!(
        "{} is at schema version {version}",
        opened.location
    ))
}

fn read_error(target: String, e: sqlx::Error) -> CliError {
    CliError::Connect {
        target,
        source: kessel::Error::Store(kessel::store::StoreError::Unavailable(std::sync::Arc::new(
            e,
        ))),
    }
}

/// The schema version of the SQLite file at `path`, read without writing
/// (0 for no file or an empty one).
async fn sqlite_version(path: &std::path::Path) -> Result<i64, CliError> {
    let shown = format!("sqlite:{}", path.display());
    if !path.exists() {
        return Ok(0);
    }
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .busy_timeout(Duration::from_secs(2))
        .connect()
        .await
        .map_err(|e| read_error(shown.clone(), e))?;
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
            .fetch_all(&mut conn)
            .await
            .map_err(|e| read_error(shown.clone(), e))?;
    let version = if tables.iter().any(|t| t == "kessel_schema") {
        sqlx::query_scalar::<_, Option<i64>>("SELECT MAX(version) FROM kessel_schema")
            .fetch_one(&mut conn)
            .await
            .map_err(|e| read_error(shown.clone(), e))?
            .unwrap_or(0)
    } else if tables.is_empty() {
        0
    } else {
        let _ = conn.close().await;
        return Err(CliError::Connect {
            target: shown,
            source: kessel::Error::Store(kessel::store::StoreError::NotKessel(format!(
                "{} is a SQLite database of something else (no kessel_schema table)",
                path.display()
            ))),
        });
    };
    let _ = conn.close().await;
    Ok(version)
}

/// The schema version of `schema` in the PostgreSQL database at `url`,
/// read without writing (0 when it has no kessel tables).
async fn postgres_version(url: &str, schema: &str) -> Result<i64, CliError> {
    let shown = parse::redact(url);
    let options: sqlx::postgres::PgConnectOptions =
        url.parse().map_err(|e| read_error(shown.clone(), e))?;
    let mut conn = tokio::time::timeout(Duration::from_secs(10), options.connect())
        .await
        .map_err(|_| CliError::Connect {
            target: shown.clone(),
            source: kessel::Error::Store(kessel::store::StoreError::Unavailable(
                std::sync::Arc::new(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "no connection within 10 s",
                )),
            )),
        })?
        .map_err(|e| read_error(shown.clone(), e))?;
    let exists: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM information_schema.tables WHERE table_schema = $1 AND table_name = 'kessel_schema')",
    )
    .bind(schema)
    .fetch_one(&mut conn)
    .await
    .map_err(|e| read_error(shown.clone(), e))?;
    let version = if exists {
        // The schema name is checked by `PgStore::migration_sql` before
        // anything is printed; here it only names a table, quoted.
        let quoted = format!("\"{}\"", schema.replace('"', "\"\""));
        sqlx::query_scalar::<_, Option<i64>>(sqlx::AssertSqlSafe(format!(
            "SELECT max(version) FROM {quoted}.kessel_schema"
        )))
        .fetch_one(&mut conn)
        .await
        .map_err(|e| read_error(shown.clone(), e))?
        .unwrap_or(0)
    } else {
        0
    };
    let _ = conn.close().await;
    Ok(version)
}
