//! The `kessel` command line (feature `cli`): an operator's tool that
//! opens a store as a producer-only process (no task defined, no worker
//! started) and reads or changes its jobs through the library's public
//! API, or does the same through a running kessel HTTP API.
//! `docs/cli.md` describes every command.
//!
//! - [`args`]: the command line as clap reads it;
//! - [`parse`]: ids, durations, times, payloads, URLs, as typed errors;
//! - [`connect`]: opening the store and the queue, and closing them;
//! - [`api`]: the client of a running HTTP API;
//! - [`backend`]: a store or an API, behind the commands;
//! - [`commands`]: one function per command on a backend;
//! - [`migrate`], [`serve`], [`tail`]: the commands that need one kind;
//! - [`output`]: tables, colour, JSON and progress bars;
//! - [`error`]: the CLI's error and its exit codes.

mod api;
mod args;
mod backend;
mod commands;
mod connect;
mod error;
mod migrate;
mod output;
mod parse;
mod serve;
mod tail;

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
        let at = info
            .location()
            .map(|l| format!(" (at {}:{})", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!(
            "error: internal error (a bug in kessel, please report it): {}{at}",
            what.join(" ")
        );
        // For a report: the whole trace, on request.
        if std::env::var_os("KESSEL_BACKTRACE").is_some() {
            eprintln!("{}", std::backtrace::Backtrace::force_capture());
        }
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
    let target = connect::Connection {
        database_url: cli.database_url.as_deref(),
        schema: cli.schema.as_deref(),
        api: cli.api.as_deref(),
        token: cli.token.as_deref(),
    };
    match cli.command {
        Command::Completions { shell } => {
            let mut command = Cli::command();
            clap_complete::generate(shell, &mut command, "kessel", &mut std::io::stdout());
            Ok(())
        }
        Command::Migrate(args) => migrate::run(&target, &out, args).await,
        Command::Serve(args) => serve::run(&target, &out, args).await,
        Command::Tail(args) => tail::run(&target, &out, args),
        command => {
            let backend = target.backend().await?;
            let result = dispatch(&backend, &out, command).await;
            let closed = backend.close().await;
            result.and(closed)
        }
    }
}

async fn dispatch(backend: &backend::Backend, out: &Out, command: Command) -> Result<(), CliError> {
    match command {
        Command::Tasks => commands::tasks(backend, out).await,
        Command::Jobs => commands::jobs(backend, out).await,
        Command::Stats => commands::stats(backend, out).await,
        Command::Nodes => commands::nodes(backend, out).await,
        Command::List(args) => commands::list(backend, out, args).await,
        Command::Show { id } => commands::show(backend, out, &id).await,
        Command::Create(args) => commands::create(backend, out, args).await,
        Command::Cancel(args) => commands::cancel(backend, out, args).await,
        Command::Delete(args) => commands::delete(backend, out, args).await,
        Command::Kick(args) => commands::kick(backend, out, args).await,
        Command::Clean(args) => commands::clean(backend, out, args).await,
        Command::DeleteMatching { task, pattern } => {
            commands::delete_matching(backend, out, &task, &pattern).await
        }
        Command::Suspend(args) => commands::suspend(backend, out, "suspend", args).await,
        Command::Resume(args) => commands::suspend(backend, out, "resume", args).await,
        Command::Schedules(args) => commands::schedules(backend, out, args).await,
        Command::Migrate(_)
        | Command::Serve(_)
        | Command::Tail(_)
        | Command::Completions { .. } => Ok(()),
    }
}
