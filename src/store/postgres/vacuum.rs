//! The vacuums a running queue makes of its own tables between
//! autovacuum's visits (`PgOptions::vacuum_after`): when, how often, with
//! statistics or without, and leaving a table to the process that has it.

use std::time::Duration;

use sqlx::AssertSqlSafe;

/// Whether a table whose rows changed `changed` times since its
/// statistics were taken, of `live` rows, needs them taken again: past a
/// tenth of its rows and at least 10,000 changes, and, when they were
/// taken before (`since` ago, by kessel or autovacuum, from any process),
/// at least [`ANALYZE_SPACING`] ago. The planner's choices for the claim
/// and the pruner's deletes rest on them, and autovacuum, which would
/// otherwise take them, may be off or far behind a busy queue: with
/// statistics from an empty table, pruning a backlog of completed jobs
/// took 1.6 s a batch of 1,024 (a scan of the whole table, and of its log
/// lines), behind jobs completing at 15,000 a second. The spacing: a queue
/// table changes by a tenth every second at a few thousand jobs a second,
/// and an `ANALYZE` each second (0.1–0.5 s of sampling each on two cores,
/// and every session's prepared statements planned again after it) held
/// creates back for up to 100 ms at a time.
fn stale_statistics(changed: i64, live: i64, since: Option<Duration>) -> bool {
    changed >= 10_000 && changed >= live / 10 && since.is_none_or(|since| since >= ANALYZE_SPACING)
}

/// How long statistics taken are left alone at least (see
/// [`stale_statistics`]): autovacuum visits a database at most this
/// often too (its default `autovacuum_naptime`).
const ANALYZE_SPACING: Duration = Duration::from_secs(60);

/// What [`vacuum`] reads of one table, from the server's statistics
/// (of every process: each vacuums, and leaves alone what another just
/// did or is doing).
#[derive(Debug, Clone, Default, PartialEq)]
struct TableCounts {
    /// Dead row versions.
    dead: i64,
    /// Rows changed since its statistics were taken.
    changed: i64,
    /// Live rows.
    live: i64,
    /// How long ago its statistics were taken (by anyone), if ever.
    analyzed_ago: Option<Duration>,
    /// How long ago a vacuum of it (by anyone) ended, if ever.
    vacuumed_ago: Option<Duration>,
    /// A vacuum of it is under way (another process's, or autovacuum's).
    vacuuming: bool,
}

impl TableCounts {
    async fn read(pool: &sqlx::PgPool, table: &str) -> Result<Self, sqlx::Error> {
        type Row = (
            Option<i64>,
            Option<i64>,
            Option<i64>,
            Option<f64>,
            Option<f64>,
            bool,
        );
        let (dead, changed, live, analyzed, vacuumed, vacuuming): Row = sqlx::query_as(
            "SELECT pg_stat_get_dead_tuples(r), pg_stat_get_mod_since_analyze(r),
                    pg_stat_get_live_tuples(r),
                    EXTRACT(EPOCH FROM now() - GREATEST(pg_stat_get_last_analyze_time(r),
                                                        pg_stat_get_last_autoanalyze_time(r)))::float8,
                    EXTRACT(EPOCH FROM now() - GREATEST(pg_stat_get_last_vacuum_time(r),
                                                        pg_stat_get_last_autovacuum_time(r)))::float8,
                    EXISTS (SELECT 1 FROM pg_stat_progress_vacuum AS p WHERE p.relid = r)
             FROM to_regclass($1) AS r",
        )
        .bind(table)
        .fetch_one(pool)
        .await?;
        let ago = |secs: Option<f64>| {
            secs.map(|s| Duration::try_from_secs_f64(s.max(0.0)).unwrap_or(Duration::MAX))
        };
        Ok(TableCounts {
            dead: dead.unwrap_or(0),
            changed: changed.unwrap_or(0),
            live: live.unwrap_or(0),
            analyzed_ago: ago(analyzed),
            vacuumed_ago: ago(vacuumed),
            vacuuming,
        })
    }

    /// Whether to vacuum the table now, past `dead` dead rows: `None` to
    /// leave it, else whether to take its statistics too (see
    /// [`stale_statistics`]). A table another process is vacuuming, or
    /// vacuumed less than [`VACUUM_CHECK`] ago, is left alone: with
    /// every process checking every second, a queue of many processes
    /// would otherwise vacuum its tables once a second per process, and
    /// each one that found a table taken would have the server log
    /// "skipping vacuum ... lock not available" (`SKIP_LOCKED` still
    /// covers the race between two that look at once).
    fn plan(&self, dead: u64) -> Option<bool> {
        if self.vacuuming
            || self.vacuumed_ago.is_some_and(|ago| ago < VACUUM_CHECK)
            || u64::try_from(self.dead).unwrap_or(0) <= dead
        {
            return None;
        }
        Some(stale_statistics(self.changed, self.live, self.analyzed_ago))
    }
}

/// How often [`vacuum`] reads the tables' dead-tuple counts.
const VACUUM_CHECK: Duration = Duration::from_secs(1);

/// Vacuums each of `tables` once it holds more than `dead` dead tuples
/// and no other process has it (see [`TableCounts::plan`]), taking its
/// statistics too when they are stale (see [`stale_statistics`]), until
/// `alive`'s receiver goes (see `PgOptions::vacuum_after`): reads the
/// counts every [`VACUUM_CHECK`], and after a vacuum that took `t` waits
/// at least `4 t`, so at most a fifth of the time goes to it.
/// `TRUNCATE false`: a vacuum that gives a table's empty last pages back
/// holds an ACCESS EXCLUSIVE lock on it meanwhile, and every claim and
/// create of the queue waits behind it (the tables also say so, schema 19,
/// for autovacuum).
/// `SKIP_LOCKED` leaves a table alone while another vacuum (autovacuum, or
/// another process's that started after the counts were read) works on
/// it. A failure is logged, and waited out ten times longer.
pub(super) async fn vacuum(
    pool: sqlx::PgPool,
    tables: [String; 2],
    dead: u64,
    alive: tokio::sync::mpsc::Sender<()>,
) {
    let mut rest = VACUUM_CHECK;
    loop {
        tokio::select! {
            () = tokio::time::sleep(rest) => {}
            () = alive.closed() => return,
        }
        rest = VACUUM_CHECK;
        for table in &tables {
            let counts = match TableCounts::read(&pool, table).await {
                Ok(counts) => counts,
                Err(e) => {
                    tracing::warn!(error = %e, "reading dead tuples failed");
                    rest = VACUUM_CHECK * 10;
                    break;
                }
            };
            let Some(analyze) = counts.plan(dead) else {
                continue;
            };
            let started = std::time::Instant::now();
            let command = if analyze {
                "VACUUM (SKIP_LOCKED, TRUNCATE false, ANALYZE)"
            } else {
                "VACUUM (SKIP_LOCKED, TRUNCATE false)"
            };
            let done = sqlx::raw_sql(AssertSqlSafe(format!("{command} {table}")))
                .execute(&pool)
                .await;
            if let Err(e) = done {
                tracing::warn!(error = %e, table, "vacuuming a kessel table failed");
                rest = VACUUM_CHECK * 10;
                break;
            }
            rest = rest.max(started.elapsed() * 4);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{stale_statistics, TableCounts, ANALYZE_SPACING, VACUUM_CHECK};

    #[test]
    fn a_table_past_its_dead_rows_is_vacuumed_unless_another_process_has_it_or_just_did() {
        let busy = TableCounts {
            dead: 5_000,
            changed: 3_000,
            live: 100_000,
            analyzed_ago: Some(Duration::from_secs(5)),
            vacuumed_ago: Some(Duration::from_secs(3)),
            vacuuming: false,
        };
        assert_eq!(busy.plan(500), Some(false), "vacuumed, statistics kept");
        assert_eq!(busy.plan(5_000), None, "not past the dead rows");
        let taken = TableCounts {
            vacuuming: true,
            ..busy.clone()
        };
        assert_eq!(taken.plan(500), None, "another vacuum is under way");
        let just_done = TableCounts {
            vacuumed_ago: Some(VACUUM_CHECK - Duration::from_millis(1)),
            ..busy.clone()
        };
        assert_eq!(just_done.plan(500), None, "another process just did it");
        let never = TableCounts {
            vacuumed_ago: None,
            analyzed_ago: None,
            changed: 20_000,
            ..busy
        };
        assert_eq!(never.plan(500), Some(true), "and its statistics taken");
    }

    #[test]
    fn statistics_are_taken_again_past_a_tenth_of_the_rows_and_ten_thousand_changes() {
        // A table that grew from nothing: its statistics say empty.
        assert!(stale_statistics(2_000_000, 1_900_000, None));
        assert!(stale_statistics(10_000, 0, None));
        // A busy large table with few changes since: left alone.
        assert!(!stale_statistics(50_000, 1_000_000, None));
        // A small table: a vacuum's worth of changes is not worth it.
        assert!(!stale_statistics(9_999, 0, None));
    }

    #[test]
    fn statistics_taken_less_than_a_minute_ago_are_left_alone_however_busy_the_table() {
        // A queue table at a few thousand jobs a second changes by a
        // tenth every second: once a minute at most, not every vacuum.
        let just_now = Some(Duration::from_secs(1));
        assert!(!stale_statistics(2_000_000, 100_000, just_now));
        assert!(!stale_statistics(
            2_000_000,
            100_000,
            Some(ANALYZE_SPACING - Duration::from_millis(1))
        ));
        assert!(stale_statistics(2_000_000, 100_000, Some(ANALYZE_SPACING)));
        // Still only past a tenth of the rows, however long ago.
        assert!(!stale_statistics(
            50_000,
            1_000_000,
            Some(Duration::from_secs(3600))
        ));
    }
}
