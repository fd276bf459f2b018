//! The command line, as clap reads it. Values kessel must interpret
//! (ids, durations, times, statuses, payloads) are kept as text here and
//! read by [`super::parse`], so a bad one is a one-line typed error.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Operate a kessel job queue on SQLite or PostgreSQL: list, inspect,
/// create, cancel, kick and clean jobs. Runs no workers.
#[derive(Debug, Parser)]
#[command(name = "kessel", version, propagate_version = true)]
pub(crate) struct Cli {
    /// The store: sqlite:PATH, a path ending in .db/.sqlite/.sqlite3, or
    /// postgres://USER@HOST/DB.
    #[arg(
        long,
        short = 'd',
        global = true,
        env = "KESSEL_DATABASE_URL",
        hide_env_values = true
    )]
    pub(crate) database_url: Option<String>,
    /// The PostgreSQL schema kessel's tables are in (default `kessel`).
    #[arg(long, global = true, env = "KESSEL_SCHEMA")]
    pub(crate) schema: Option<String>,
    /// Print machine-readable JSON instead of tables.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// What to do.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Tasks that have jobs, with counts.
    Tasks,
    /// Job counts by task and status.
    Jobs,
    /// Jobs, newest first, with filters.
    List(ListArgs),
    /// One job: payload, result, progress, times and log.
    Show {
        /// The job's id.
        id: String,
    },
    /// Creates a job (or many, with --from).
    Create(CreateArgs),
    /// Cancels jobs by id.
    Cancel {
        /// The jobs' ids.
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Returns buried jobs to ready, by id or every buried job of a task.
    #[command(visible_alias = "retry")]
    Kick(KickArgs),
    /// Removes final jobs and their logs (completed ones by default).
    Clean(CleanArgs),
    /// Cancels a task's queued jobs whose JSON payload matches a regex.
    DeleteMatching {
        /// The task.
        task: String,
        /// A regular expression, matched against the payload's JSON text.
        pattern: String,
    },
    /// Totals by status, and what the store is.
    Stats,
    /// Creates the store or brings its schema to this kessel's version.
    Migrate,
    /// Prints a shell completion script.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// `kessel list`.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Only jobs in these statuses (repeat, or separate with commas).
    #[arg(long, short = 's')]
    pub(crate) status: Vec<String>,
    /// Only jobs of these tasks (repeat).
    #[arg(long, short = 't')]
    pub(crate) task: Vec<String>,
    /// Only the job(s) with this reference.
    #[arg(long, short = 'r')]
    pub(crate) reference: Option<String>,
    /// At most this many jobs.
    #[arg(long, short = 'n', default_value_t = 20)]
    pub(crate) limit: usize,
    /// Skip this many matches first (paging).
    #[arg(long, default_value_t = 0)]
    pub(crate) offset: usize,
    /// Oldest first.
    #[arg(long)]
    pub(crate) oldest: bool,
}

/// `kessel create`.
#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    /// The task to run the job (need not be defined anywhere yet).
    pub(crate) task: String,
    /// The payload as JSON, or `-` to read it from stdin (default null).
    #[arg(conflicts_with = "from")]
    pub(crate) payload: Option<String>,
    /// A file of JSON lines, one payload per line, to create one job each
    /// (`-` for stdin).
    #[arg(long, value_name = "FILE")]
    pub(crate) from: Option<PathBuf>,
    /// Start no earlier than this from now (30s, 5m, 2h, 1d).
    #[arg(long, value_name = "DURATION", conflicts_with = "run_at")]
    pub(crate) delay: Option<String>,
    /// Start no earlier than this time (RFC 3339).
    #[arg(long, value_name = "TIME")]
    pub(crate) run_at: Option<String>,
    /// Expire unless started within this duration.
    #[arg(long, value_name = "DURATION")]
    pub(crate) expires_in: Option<String>,
    /// 0 runs first; larger numbers wait.
    #[arg(long, short = 'p', allow_negative_numbers = true)]
    pub(crate) priority: Option<i64>,
    /// Your own reference for the job.
    #[arg(long, short = 'r', conflicts_with = "from")]
    pub(crate) reference: Option<String>,
    /// Attempts allowed (default: the task's retry policy).
    #[arg(long)]
    pub(crate) max_attempts: Option<u32>,
}

/// `kessel kick`.
#[derive(Debug, Args)]
pub(crate) struct KickArgs {
    /// The buried jobs' ids.
    #[arg(required_unless_present = "task", conflicts_with = "task")]
    pub(crate) ids: Vec<String>,
    /// Kick the buried jobs of this task, oldest first.
    #[arg(long, short = 't')]
    pub(crate) task: Option<String>,
    /// With --task: at most this many.
    #[arg(long, short = 'n', requires = "task")]
    pub(crate) limit: Option<usize>,
}

/// `kessel clean`.
#[derive(Debug, Args)]
pub(crate) struct CleanArgs {
    /// Final statuses to remove (repeat, or separate with commas; default
    /// completed).
    #[arg(long, short = 's')]
    pub(crate) status: Vec<String>,
    /// Only jobs of these tasks (repeat).
    #[arg(long, short = 't')]
    pub(crate) task: Vec<String>,
    /// Only jobs that finished longer ago than this (7d, 12h).
    #[arg(long, value_name = "DURATION")]
    pub(crate) older_than: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
