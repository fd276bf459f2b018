//! Which jobs a claim takes, with fair groups (see [`crate::group`]): the
//! `picked` part of both claims in `shared.rs`, in two forms.
//!
//! - **Fast**, the claim from before groups: each served task's best jobs
//!   without a group, in order through `jobs_claim`, the best of those
//!   taken. It also says whether grouped jobs of the served tasks wait
//!   (one probe of `jobs_claim_grouped`, empty while no job has a group).
//! - **Fair**: the groups with claimable jobs are found by a skip scan of
//!   `jobs_claim_grouped` (one index probe per group), and each group (the
//!   jobs without one being one more, of weight 1) reads at most its
//!   share of the batch by weight, in order, so a claim reads about its
//!   batch and not a batch per group. Within a priority, the k-th job of
//!   a group of stride `s` takes turn `k * s`; the batch is the best by
//!   (priority, turn, due time, creation).
//!
//! A store takes the fast form while its last claim saw no grouped job
//! waiting, else the fair one: a queue without groups pays one index
//! probe per claim, and a grouped job created meanwhile waits at most one
//! claim before groups take turns. A fast claim that comes back short
//! with grouped jobs waiting asks again the fair way (every statement
//! says whether they wait, with a row of NULLs when it takes nothing); a fair batch left short with grouped jobs in it (a group had
//! fewer due jobs than its share, or only delayed ones) asks once more
//! for the rest, each group reading up to the whole rest. So a short
//! claim still means nothing more is due, in at most three statements. Rows are locked as they are read, skipping those another
//! claim holds, as before.

use crate::group::STRIDE;

/// The states a claim takes jobs from.
pub(super) const CLAIMABLE: &str = "('scheduled', 'ready', 'retrying')";

/// What a claim sets on each job it takes, `$4` the owner and `$5` the
/// lease's end: the lease, and the attempt, counted as started.
///
/// Counting the attempt at the claim (as the job's start does in the
/// owner's memory) makes the claim the job's one write before it ends:
/// the start's own write would repeat it (the same status and attempt),
/// and `jobs_update` skips a write that changes nothing. That is a row
/// version and its index entries less per job started apart from its
/// finish: 2.29 KB of WAL a job became 2.03 KB at half of capacity (see
/// `docs/benchmarks.md`). A claimed job reads as running to other
/// processes while it waits for a free worker; an owner that gives one
/// back unstarted records its state from before the claim first (the
/// scheduler's release does), and a rescue counts its attempt, as it
/// would a started one. The claim returns each job as it was before
/// (its status from `picked`, the attempt not counted): the owner counts
/// the attempt when it starts the job.
pub(super) const CLAIM_SET: &str =
    "leased_by = $4, lease_until = $5, ran_by = $4, status = 'running', attempts = j.attempts + 1";

/// Whether job `job` (an alias of the jobs table), stored as running,
/// started the attempt its claim counted (see [`CLAIM_SET`]): its
/// `started` line for that attempt was written, as the scheduler writes
/// it when it hands the job to a worker. A job claimed and not started is
/// still waiting: a rescue does not count its attempt, and it keeps a key
/// unique while waiting.
pub(super) fn started_sql(logs: &str, job: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM {logs} AS l
                 WHERE l.job_id = {job}.id AND l.attempt = {job}.attempts AND l.message = 'started')"
    )
}

/// The end of a claim's statement: its rows, each joined with its status
/// before the claim (`claimed_from`), and one row of NULLs when it took
/// nothing; `columns` are the statement's own columns after the job's.
pub(super) fn claimed_rows(columns: &str, from: &str) -> String {
    format!(
        "SELECT c.*, p.status AS claimed_from, {columns} {from}
         LEFT JOIN (claimed AS c JOIN picked AS p ON p.id = c.id) ON true"
    )
}

/// How many statements one claim makes at most: fast, shares, exact.
pub(super) const MAX_ROUNDS: usize = 3;

/// The form of a claim's statement (see the [module documentation](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Form {
    /// The claim from before groups, for jobs without a group.
    Fast,
    /// Every group reads at most its share of the batch by weight.
    Shares,
    /// Every group reads up to the whole batch: after a share round left
    /// room (some group had fewer due jobs than its share).
    Exact,
}

/// How a claim of limited tasks reads its rooms (see
/// [`picked_sql`]): the functions of schema version 20 (and 18), which
/// take the limited tasks' and tags' locks and then count under a fresh
/// snapshot.
pub(super) struct Rooms<'a> {
    /// The `FROM` item of each served task's room: a call of
    /// `claim_places`, columns `task`, `n`, `gcap`, `ng`, the rate
    /// limits' (the task's, per group, the tag's), `tag` (of a limited
    /// tag) and `tn`, the tag's room.
    pub(super) rooms: &'a str,
    /// The function of a group's room and rate (`claim_group_limits`).
    pub(super) group_room: &'a str,
    /// The parameter of the ids of jobs ended but maybe not stored yet.
    pub(super) ended: usize,
    /// The parameter of the claim's time (µs since the Unix epoch).
    pub(super) now: usize,
    /// Some served task has a limited tag: the claim takes at most `tn`
    /// of each such tag's served tasks together.
    pub(super) tagged: bool,
    /// The first of three parameters capping the rooms with the owner's
    /// own numbers (see `JobClaim::task_caps` and `JobClaim::tag_caps`),
    /// each an array along the served tasks (`$1`): the task's cap, the
    /// name of its tag with a cap, and that tag's cap (null: none).
    pub(super) caps: Option<usize>,
}

/// The columns of `claim_all_places` (schema version 21) after `task`,
/// `n`, `gcap` and `ng`, up to `tag`; and after `tn`.
const ROOM_RATES: &str = "t.rate_allowed, t.rate_from, t.rate_interval, t.rate_tolerance,
     t.group_interval, t.group_tolerance, t.none_allowed, t.none_from";
const ROOM_REST: &str = "t.tag_allowed, t.tag_from, t.tag_interval, t.tag_tolerance, t.places,
     t.held, t.tag_places, t.tag_held, t.wanted, t.tag_wanted, t.kept, t.tag_kept";

/// The `WITH ... picked AS (...)` of a claim, picking the ids to lease
/// and their statuses before the claim (see [`CLAIM_SET`]), fair or fast
/// (see the [module documentation](self)). Parameters: `$1`
/// tasks, `$2` due by, `$3` limit; `groups`, only in the fair form, the
/// parameters of the weighted groups' names and strides. `not_suspended`
/// is a condition on `t.task`.
///
/// With `rooms`, each served task has its room `n` (what its limits let
/// this claim take) and the room `ng` of its jobs without a group (at
/// most `n`); each group of a task with a cap or a rate per group reads
/// at most its own room (one call of the group function, which reads it
/// after the rooms' locks were taken: it takes a served task's limits,
/// so it runs on the rooms' rows; `lanes` keeps its `rate_allowed` and
/// `rate_from`); and the served tasks of a limited tag take at most its
/// room `tn` together, the best first.
pub(super) fn picked_sql(
    form: Form,
    jobs: &str,
    not_suspended: &str,
    rooms: Option<&Rooms<'_>>,
    groups: (usize, usize),
) -> String {
    let served = match rooms {
        None => format!(
            "SELECT t.task, $3::bigint AS n, $3::bigint AS ng, NULL::text AS tag, $3::bigint AS tn
             FROM UNNEST($1::text[]) AS t(task) WHERE {not_suspended}"
        ),
        Some(Rooms {
            rooms,
            caps: Some(c),
            ..
        }) => format!(
            // The owner's own caps lower the rooms (LEAST passes over a
            // null); a tag with a cap counts as limited.
            "SELECT t.task, LEAST(t.n, c.cap) AS n, t.gcap, LEAST(t.ng, c.cap) AS ng, {ROOM_RATES},
                    COALESCE(t.tag, c.tag) AS tag, LEAST(t.tn, c.tag_cap) AS tn, {ROOM_REST}
             FROM {rooms} AS t
             LEFT JOIN UNNEST($1::text[], ${c}::bigint[], ${tc}::text[], ${tcap}::bigint[])
                 AS c(task, cap, tag, tag_cap) ON c.task = t.task
             WHERE {not_suspended}",
            tc = c + 1,
            tcap = c + 2,
        ),
        Some(r) => format!(
            "SELECT t.* FROM {rooms} AS t WHERE {not_suspended}",
            rooms = r.rooms
        ),
    };
    // The room of group `k.grp` of task `s.task`, and its rate limit's
    // state: read only for a task limited per group.
    let (group_room, group_limits) = match rooms {
        None => ("s.n AS room".to_owned(), String::new()),
        Some(r) => (
            "LEAST(s.n, COALESCE(g.room, s.n)) AS room, g.allowed AS rate_allowed, g.rate_from"
                .to_owned(),
            format!(
                "LEFT JOIN LATERAL (
                     SELECT f.* FROM {f}(k.task, k.grp, s.gcap, s.group_interval, s.group_tolerance,
                                         ${ended}::uuid[], ${now}::bigint, $3::bigint) AS f
                     WHERE s.gcap IS NOT NULL OR s.group_interval IS NOT NULL) AS g ON true",
                f = r.group_room,
                ended = r.ended,
                now = r.now
            ),
        ),
    };
    let tagged = rooms.is_some_and(|r| r.tagged);
    if form == Form::Fast {
        let lateral = format!(
            "FROM served AS t CROSS JOIN LATERAL (
                 SELECT id, status, priority, run_at, created_at FROM {jobs}
                 WHERE task = t.task AND group_key IS NULL AND leased_by IS NULL
                   AND status IN {CLAIMABLE} AND run_at <= $2
                 ORDER BY priority, run_at, created_at, id
                 LIMIT LEAST($3, t.ng, t.tn)
                 FOR UPDATE SKIP LOCKED) AS c"
        );
        if tagged {
            // At most `tn` of a limited tag's tasks together, best first.
            return format!(
                "WITH served AS ({served}),
                 picked AS (
                     SELECT x.id, x.status FROM (
                         SELECT c.id, c.status, c.priority, c.run_at, c.created_at, t.tag, t.tn,
                                row_number() OVER (
                                    PARTITION BY t.tag ORDER BY c.priority, c.run_at, c.created_at, c.id) AS in_tag
                         {lateral}) AS x
                     WHERE x.tag IS NULL OR x.in_tag <= x.tn
                     ORDER BY x.priority, x.run_at, x.created_at, x.id
                     LIMIT $3)"
            );
        }
        return format!(
            "WITH served AS ({served}),
             picked AS (
                 SELECT c.id, c.status {lateral}
                 ORDER BY c.priority, c.run_at, c.created_at, c.id
                 LIMIT $3)"
        );
    }
    let (names, strides) = groups;
    let (plain_cap, group_cap) = match form {
        Form::Exact => ("$3".to_owned(), "$3".to_owned()),
        _ => (
            "CEIL($3 / shares.total)::bigint".to_owned(),
            format!("CEIL($3 * ({STRIDE}::float8 / l.stride) / shares.total)::bigint"),
        ),
    };
    // Per task, at most its room `n`: only a claim with caps needs the
    // count.
    // And per limited tag, at most its room `tn`, of the jobs each task's
    // room lets through.
    let (ranked, in_task) = match rooms {
        None => (
            "ranked AS (SELECT * FROM plain UNION ALL SELECT * FROM grouped),",
            "",
        ),
        Some(_) if tagged => (
            "ranked_tasks AS (
                 SELECT u.*, row_number() OVER (
                     PARTITION BY u.task ORDER BY u.priority, u.turn, u.run_at, u.created_at, u.id) AS in_task
                 FROM (SELECT * FROM plain UNION ALL SELECT * FROM grouped) AS u),
             ranked AS (
                 SELECT r.*, row_number() OVER (
                     PARTITION BY r.tag ORDER BY r.priority, r.turn, r.run_at, r.created_at, r.id) AS in_tag
                 FROM ranked_tasks AS r WHERE r.in_task <= r.n),",
            "WHERE tag IS NULL OR in_tag <= tn",
        ),
        Some(_) => (
            "ranked AS (
                 SELECT u.*, row_number() OVER (
                     PARTITION BY u.task ORDER BY u.priority, u.turn, u.run_at, u.created_at, u.id) AS in_task
                 FROM (SELECT * FROM plain UNION ALL SELECT * FROM grouped) AS u),",
            "WHERE in_task <= n",
        ),
    };
    format!(
        "WITH RECURSIVE served AS ({served}),
         group_keys(task, grp) AS (
             SELECT s.task, (SELECT g.group_key FROM {jobs} AS g
                             WHERE g.task = s.task AND g.group_key IS NOT NULL
                               AND g.leased_by IS NULL AND g.status IN {CLAIMABLE}
                             ORDER BY g.group_key LIMIT 1)
             FROM served AS s
             UNION ALL
             SELECT k.task, (SELECT g.group_key FROM {jobs} AS g
                             WHERE g.task = k.task AND g.group_key > k.grp
                               AND g.leased_by IS NULL AND g.status IN {CLAIMABLE}
                             ORDER BY g.group_key LIMIT 1)
             FROM group_keys AS k WHERE k.grp IS NOT NULL),
         lanes AS (
             SELECT k.task, k.grp, COALESCE(w.stride, {STRIDE}) AS stride, {group_room}
             FROM group_keys AS k JOIN served AS s ON s.task = k.task
             {group_limits}
             LEFT JOIN UNNEST(${names}::text[], ${strides}::bigint[]) AS w(grp, stride) ON w.grp = k.grp
             WHERE k.grp IS NOT NULL),
         shares AS (
             SELECT GREATEST(1.0, COALESCE((SELECT sum({STRIDE}::float8 / d.stride)
                                            FROM (SELECT DISTINCT grp, stride FROM lanes) AS d), 0)
                 + CASE WHEN EXISTS (SELECT 1 FROM served AS s WHERE EXISTS (
                       SELECT 1 FROM {jobs}
                       WHERE task = s.task AND group_key IS NULL AND leased_by IS NULL
                         AND status IN {CLAIMABLE} AND run_at <= $2)) THEN 1 ELSE 0 END) AS total),
         plain AS (
             SELECT c.id, c.status, c.priority, c.run_at, c.created_at, s.task, s.n, s.tag, s.tn,
                    row_number() OVER (PARTITION BY c.priority ORDER BY c.run_at, c.created_at, c.id)
                        * {STRIDE} AS turn
             FROM served AS s CROSS JOIN shares CROSS JOIN LATERAL (
                 SELECT id, status, priority, run_at, created_at FROM {jobs}
                 WHERE task = s.task AND group_key IS NULL AND leased_by IS NULL
                   AND status IN {CLAIMABLE} AND run_at <= $2
                 ORDER BY priority, run_at, created_at, id
                 LIMIT LEAST(s.ng, s.tn, {plain_cap})
                 FOR UPDATE SKIP LOCKED) AS c),
         grouped AS (
             SELECT c.id, c.status, c.priority, c.run_at, c.created_at, s.task, s.n, s.tag, s.tn,
                    row_number() OVER (PARTITION BY c.priority, l.grp ORDER BY c.run_at, c.created_at, c.id)
                        * l.stride AS turn
             FROM lanes AS l JOIN served AS s ON s.task = l.task CROSS JOIN shares CROSS JOIN LATERAL (
                 SELECT id, status, priority, run_at, created_at FROM {jobs}
                 WHERE task = l.task AND group_key = l.grp AND leased_by IS NULL
                   AND status IN {CLAIMABLE} AND run_at <= $2
                 ORDER BY priority, run_at, created_at, id
                 LIMIT LEAST(l.room, s.tn, {group_cap})
                 FOR UPDATE SKIP LOCKED) AS c),
         {ranked}
         picked AS (
             SELECT id, status FROM ranked {in_task}
             ORDER BY priority, turn, run_at, created_at, id
             LIMIT $3)"
    )
}

/// The weighted groups of a claim as its two array parameters: names
/// and strides.
pub(super) fn group_params(weights: &[(String, f64)]) -> (Vec<String>, Vec<i64>) {
    weights
        .iter()
        .filter(|(_, w)| crate::group::check_weight(*w).is_ok())
        .map(|(g, w)| (g.clone(), crate::group::stride_of(*w) as i64))
        .unzip()
}

/// What a claim returns besides the jobs: whether grouped jobs of the
/// served tasks were waiting when it started (`$1` the tasks).
pub(super) fn groups_waiting_sql(jobs: &str) -> String {
    format!(
        "(SELECT EXISTS (SELECT 1 FROM {jobs} AS w
                         WHERE w.task = ANY ($1::text[]) AND w.group_key IS NOT NULL
                           AND w.leased_by IS NULL AND w.status IN {CLAIMABLE})) AS groups_waiting"
    )
}
