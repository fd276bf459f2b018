//! The `kessel` command line (feature `cli`): an operator's tool that
//! opens a store as a producer-only process (no task defined, no worker
//! started) and reads or changes its jobs through the library's public
//! API. `docs/cli.md` describes every command.
//!
//! - [`args`]: the command line as clap reads it;
//! - [`parse`]: ids, durations, times, payloads, URLs, as typed errors;
//! - [`connect`]: opening the store and the queue, and closing them;
//! - [`commands`]: one function per command;
//! - [`output`]: tables, colour, JSON and progress bars;
//! - [`error`]: the CLI's error and its exit codes.

mod args;
mod commands;
mod connect;
mod error;
mod output;
mod parse;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use args::{Cli, Command};
use error::{CliError, EXIT_ERROR, EXIT_OK};
use output::Out;

/// Runs the command line and returns the exit code: 0 ok, 1 error, 2
/// usage, 3 not found. Every error is one line on stderr.
pub(crate) fn main() -> ExitCode {
    // A bug must still end in one line, not a panic message and a
    // backtrace hint.
    std::panic::set_hook(Box::new(|info| {
        let what = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown".into());
        let what: Vec<&str> = what.split_whitespace().collect();
        eprintln!(
            "error: internal error (a bug in kessel, please report it): {}",
            what.join(" ")
        );
    }));
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // Usage errors exit 2 with clap's message; --help and --version 0.
        Err(e) => e.exit(),
    };
    let out = Out::new(cli.json);
    let result = std::panic::catch_unwind(|| actix_rt::System::new().block_on(run(cli, out)));
    match result {
        Ok(Ok(())) => ExitCode::from(EXIT_OK),
        Ok(Err(err)) => {
            eprintln!("{}", err.line());
            ExitCode::from(err.exit_code())
        }
        Err(_) => ExitCode::from(EXIT_ERROR),
    }
}

async fn run(cli: Cli, out: Out) -> Result<(), CliError> {
    let url = cli.database_url.as_deref();
    let schema = cli.schema.as_deref();
    match cli.command {
        Command::Completions { shell } => {
            let mut command = Cli::command();
            clap_complete::generate(shell, &mut command, "kessel", &mut std::io::stdout());
            Ok(())
        }
        Command::Migrate => {
            let opened = connect::open(url, schema, true).await?;
            let version = opened.schema_version().await;
            let closed = opened.close(None).await;
            let version = version?;
            closed?;
            if out.json {
                return out.json(&serde_json::json!({
                    "location": opened.location,
                    "schema_version": version,
                }));
            }
            out.text(&format!(
                "{} is at schema version {version}",
                opened.location
            ))
        }
        command => {
            let opened = connect::open(url, schema, false).await?;
            let queue = match opened.queue().await {
                Ok(queue) => queue,
                Err(e) => {
                    let _ = opened.close(None).await;
                    return Err(e);
                }
            };
            let result = dispatch(&opened, &queue, &out, command).await;
            let closed = opened.close(Some(queue)).await;
            result.and(closed)
        }
    }
}

async fn dispatch(
    opened: &connect::Opened,
    queue: &kessel::Queue,
    out: &Out,
    command: Command,
) -> Result<(), CliError> {
    match command {
        Command::Tasks => commands::tasks(queue, out).await,
        Command::Jobs => commands::jobs(queue, out).await,
        Command::Stats => commands::stats(opened, queue, out).await,
        Command::List(args) => commands::list(queue, out, args).await,
        Command::Show { id } => commands::show(queue, out, &id).await,
        Command::Create(args) => commands::create(queue, out, args).await,
        Command::Cancel { ids } => commands::cancel(queue, out, &ids).await,
        Command::Kick(args) => commands::kick(queue, out, args).await,
        Command::Clean(args) => commands::clean(queue, &*opened.store, out, args).await,
        Command::DeleteMatching { task, pattern } => {
            commands::delete_matching(queue, &*opened.store, out, &task, &pattern).await
        }
        Command::Migrate | Command::Completions { .. } => Ok(()),
    }
}
