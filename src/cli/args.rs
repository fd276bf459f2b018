//! The command line, as clap reads it. Values kessel must interpret
//! (ids, durations, times, statuses, payloads) are kept as text here and
//! read by [`super::parse`], so a bad one is a one-line typed error.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Operate a kessel job queue on SQLite or PostgreSQL, or through a
/// running kessel HTTP API: list, inspect, create, cancel, kick and clean
/// jobs, follow events, serve the API. Runs no workers.
#[derive(Debug, Parser)]
#[command(name = "kessel", version, propagate_version = true)]
pub(crate) struct Cli {
    /// The store: sqlite:PATH, a path ending in .db/.sqlite/.sqlite3, or
    /// postgres://USER@HOST/DB; an http:// URL is read as --api.
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
    /// A running kessel HTTP API instead of a database: its base URL
    /// (http://HOST:PORT, with the path it is mounted at).
    #[arg(long, global = true, env = "KESSEL_API_URL", value_name = "URL")]
    pub(crate) api: Option<String>,
    /// The bearer token for --api; for `serve`, the admin token it
    /// accepts.
    #[arg(
        long,
        global = true,
        env = "KESSEL_API_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub(crate) token: Option<String>,
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
    /// Creates a job (or many, with --from-file).
    Create(CreateArgs),
    /// Cancels jobs by id, or every job matching a filter.
    Cancel(BulkArgs),
    /// Removes ended jobs (completed, buried, expired, cancelled) and their
    /// logs, by id (a pending job is refused: cancel it first), or every
    /// ended job matching a filter.
    Delete(BulkArgs),
    /// Returns buried jobs to ready: by id, every buried job of a task, or
    /// those matching a filter.
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
    /// Stops starting a task's jobs (or, with --tag, the jobs of every
    /// task with the tag) in every process (kept in the database: on
    /// PostgreSQL applied by every worker at once, on SQLite by the next
    /// one to open the file); running jobs go on.
    Suspend(SuspendArgs),
    /// Starts a suspended task's (or tag's) jobs again, as `suspend`
    /// stops them.
    Resume(SuspendArgs),
    /// The recurring jobs (schedules): list them, or pause, resume or run
    /// one now.
    Schedules(SchedulesArgs),
    /// Follows job and queue events as they happen (--api only).
    Tail(TailArgs),
    /// Totals by status, and what the store is.
    Stats,
    /// The processes using the queue (nodes), and which one leads.
    Nodes,
    /// Creates the store or brings its schema to this kessel's version;
    /// with --print, prints the SQL instead.
    Migrate(MigrateArgs),
    /// Serves the kessel HTTP API on a store (no workers).
    Serve(ServeArgs),
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
    /// Only jobs of tasks with these tags (repeat; --api only: tags are
    /// known to the process that defines the tasks).
    #[arg(long)]
    pub(crate) tag: Vec<String>,
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
    #[arg(long = "from-file", visible_alias = "from", value_name = "FILE")]
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
    /// Create nothing while a live job holds this unique key (then print
    /// that job's id).
    #[arg(long, value_name = "KEY", conflicts_with_all = ["from", "unique_by_payload"])]
    pub(crate) unique: Option<String>,
    /// Create nothing while a live job of the task has an equal payload.
    #[arg(long, conflicts_with = "from")]
    pub(crate) unique_by_payload: bool,
    /// Put the job(s) in this fair group (a tenant): within a priority,
    /// groups take turns.
    #[arg(long, value_name = "KEY")]
    pub(crate) group: Option<String>,
}

/// `kessel cancel` and `kessel delete`: by id, or by filter.
#[derive(Debug, Args)]
#[command(group(
    clap::ArgGroup::new("which")
        .required(true)
        .multiple(true)
        .args(["ids", "status", "task", "tag", "reference", "all"])
))]
pub(crate) struct BulkArgs {
    /// The jobs' ids.
    #[arg(conflicts_with_all = ["status", "task", "tag", "reference", "all", "dry_run"])]
    pub(crate) ids: Vec<String>,
    /// Every job in these statuses (repeat, or separate with commas).
    #[arg(long, short = 's')]
    pub(crate) status: Vec<String>,
    /// Every job of these tasks (repeat).
    #[arg(long, short = 't')]
    pub(crate) task: Vec<String>,
    /// Every job of tasks with these tags (repeat; --api only: tags are
    /// known to the process that defines the tasks).
    #[arg(long)]
    pub(crate) tag: Vec<String>,
    /// Every job with this reference.
    #[arg(long, short = 'r')]
    pub(crate) reference: Option<String>,
    /// Every job of the queue (required to act without a filter).
    #[arg(long, conflicts_with_all = ["status", "task", "tag", "reference"])]
    pub(crate) all: bool,
    /// Only count the jobs it would act on.
    #[arg(long)]
    pub(crate) dry_run: bool,
}

/// `kessel kick`.
#[derive(Debug, Args)]
pub(crate) struct KickArgs {
    /// The buried jobs' ids.
    #[arg(
        required_unless_present_any = ["task", "tag", "reference", "all"],
        conflicts_with_all = ["task", "tag", "reference", "all", "dry_run"]
    )]
    pub(crate) ids: Vec<String>,
    /// Kick the buried jobs of this task, oldest first.
    #[arg(long, short = 't')]
    pub(crate) task: Option<String>,
    /// With --task: at most this many.
    #[arg(long, short = 'n', requires = "task", conflicts_with_all = ["tag", "reference", "dry_run"])]
    pub(crate) limit: Option<usize>,
    /// Kick the buried jobs of tasks with these tags (repeat; --api only:
    /// tags are known to the process that defines the tasks).
    #[arg(long)]
    pub(crate) tag: Vec<String>,
    /// Kick the buried jobs with this reference.
    #[arg(long, short = 'r')]
    pub(crate) reference: Option<String>,
    /// Kick every buried job of the queue.
    #[arg(long, conflicts_with_all = ["task", "tag", "reference"])]
    pub(crate) all: bool,
    /// Only count the buried jobs it would kick.
    #[arg(long)]
    pub(crate) dry_run: bool,
}

/// `kessel clean`.
#[derive(Debug, Args)]
pub(crate) struct CleanArgs {
    /// Final statuses to remove (repeat, or separate with commas; default
    /// completed).
    #[arg(long, short = 's')]
    pub(crate) status: Vec<String>,
    /// Only jobs of these tasks (repeat; on a database).
    #[arg(long, short = 't', conflicts_with = "tag")]
    pub(crate) task: Vec<String>,
    /// Only jobs of tasks with these tags (repeat; --api only: tags are
    /// known to the process that defines the tasks).
    #[arg(long)]
    pub(crate) tag: Vec<String>,
    /// Only jobs that finished longer ago than this (7d, 12h).
    #[arg(long, value_name = "DURATION")]
    pub(crate) older_than: Option<String>,
}

/// `kessel suspend` and `kessel resume`.
#[derive(Debug, Args)]
pub(crate) struct SuspendArgs {
    /// The task.
    #[arg(required_unless_present = "tag", conflicts_with = "tag")]
    pub(crate) task: Option<String>,
    /// A tag instead of a task: every task with it, defined now or later.
    #[arg(long)]
    pub(crate) tag: Option<String>,
}

/// `kessel schedules`.
#[derive(Debug, Args)]
pub(crate) struct SchedulesArgs {
    /// What to do (default: list).
    #[command(subcommand)]
    pub(crate) action: Option<ScheduleAction>,
}

/// `kessel schedules ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum ScheduleAction {
    /// Every schedule, by name, with its timing, next run and last job.
    List,
    /// Pauses a schedule: no process enqueues its ticks until resumed.
    Pause {
        /// The schedule's name.
        name: String,
    },
    /// Resumes a paused schedule from its first tick after now.
    Resume {
        /// The schedule's name.
        name: String,
    },
    /// Creates a job of the schedule now, outside its ticks; prints its id.
    RunNow {
        /// The schedule's name.
        name: String,
    },
}

/// `kessel tail`.
#[derive(Debug, Args)]
pub(crate) struct TailArgs {
    /// Only events of jobs of this task.
    #[arg(long, short = 't')]
    pub(crate) task: Option<String>,
    /// Only events of jobs of tasks with this tag.
    #[arg(long)]
    pub(crate) tag: Option<String>,
    /// Only events of this job.
    #[arg(long)]
    pub(crate) job: Option<String>,
    /// Only these kinds (repeat or comma separate): created, scheduled,
    /// started, progress, log, completed, failed, timed-out, retrying,
    /// buried, expired, cancelled, kicked, and queue for queue events.
    #[arg(long, short = 'k')]
    pub(crate) kind: Vec<String>,
    /// Stop after this many events.
    #[arg(long, short = 'n')]
    pub(crate) count: Option<u64>,
}

/// `kessel migrate`.
#[derive(Debug, Args)]
pub(crate) struct MigrateArgs {
    /// Print the SQL that would bring the store to this kessel's schema,
    /// without applying it.
    #[arg(long)]
    pub(crate) print: bool,
    /// With --print: the SQL from this schema version on (0: all of it),
    /// without reading the store's version.
    #[arg(long, requires = "print", value_name = "VERSION")]
    pub(crate) from: Option<i64>,
    /// With --print --from: which store's SQL (sqlite or postgres), when
    /// no database is given.
    #[arg(long, requires = "from", value_parser = ["sqlite", "postgres"])]
    pub(crate) store: Option<String>,
}

/// `kessel serve`.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// The address to listen on.
    #[arg(
        long,
        env = "KESSEL_BIND",
        default_value = "127.0.0.1:8080",
        value_name = "ADDR"
    )]
    pub(crate) bind: String,
    /// A token that may read but not change jobs (the admin token is
    /// --token).
    #[arg(
        long,
        env = "KESSEL_API_READ_ONLY_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub(crate) read_only_token: Option<String>,
    /// Serve without tokens: anyone who reaches the address may create,
    /// cancel and delete jobs.
    #[arg(long, conflicts_with = "read_only_token")]
    pub(crate) no_auth: bool,
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
