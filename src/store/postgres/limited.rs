//! The limited claim of [`PgStore`](super::PgStore): running limits held as
//! places, running limits per group and per tag, and rate limits, all
//! counted in the claim's one statement (see the migrations of versions
//! 17, 18 and 20).

use chrono::{DateTime, Utc};
use sqlx::AssertSqlSafe;
use uuid::Uuid;

use super::claim::{self, CLAIMABLE};
use super::rounds::Rounds;
use super::rows::map_err;
use super::shared::{returned_columns, LEASE_COMMIT};
use super::Db;
use crate::store::{ClaimReply, JobClaim, StoreError};

/// A rate limit as the claim counts it (GCRA, see the migration of
/// version 17 and 18): microseconds between starts at the steady rate, rounded
/// up so the store never allows more than the limit, and how far ahead
/// of now the next start may be (`interval * (burst - 1)`). Both are
/// kept under [`Gcra::MAX_SPAN`], so the statement's sums stay in range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Gcra {
    interval: i64,
    tolerance: i64,
}

impl Gcra {
    /// About 3,000 years in microseconds: a longer period limits the same.
    const MAX_SPAN: i64 = 100_000_000_000_000_000;

    /// The intervals and tolerances of `rates`, as two array parameters
    /// (null: no limit).
    fn columns(rates: &[Option<Gcra>]) -> (Vec<Option<i64>>, Vec<Option<i64>>) {
        rates
            .iter()
            .map(|r| (r.map(|r| r.interval), r.map(|r| r.tolerance)))
            .unzip()
    }

    fn of(limit: &crate::RateLimit) -> Self {
        let per = i64::try_from(limit.per().as_micros()).unwrap_or(i64::MAX);
        let count = i64::from(limit.count().max(1));
        let interval = (per / count + i64::from(per % count != 0)).clamp(1, Self::MAX_SPAN);
        let tolerance = interval
            .saturating_mul(i64::from(limit.burst_size().max(1)) - 1)
            .min(Self::MAX_SPAN);
        Gcra {
            interval,
            tolerance,
        }
    }
}

impl Db {
    /// A claim with limits on how many jobs of some tasks or tags may be
    /// leased at once or how often they may start, in one statement (one
    /// round trip): `claim_places` (schema version 20) first takes a lock
    /// per limited task and per limited tag (all keys in one order, so
    /// two claims never wait on each other in a circle), so claims of a
    /// limited task or tag take turns; then, under a fresh snapshot, reads
    /// each task's room: with a running limit, [`JOBS_PER_PLACE`](crate::store::JOBS_PER_PLACE) jobs
    /// per place the owner may hold (what it wants of the places the other
    /// owners' live rows leave) less its jobs of the task leased and not
    /// final; at most what its rate limit allows now, and at most its tag's room
    /// (the tag's limit minus the jobs of the tag's tasks leased and not
    /// final, at most what the tag's rate allows); and each group's of a
    /// task limited per group (`claim_group_limits`), the group's limit
    /// minus the group's jobs leased and not final, at most what the
    /// group's rate allows. The statement then picks and leases at most
    /// that many (of a tag's served tasks together, at most the tag's
    /// room, best first), as the unlimited claim does, writes the owner's
    /// places (at most its jobs of the task leased and not final), moves
    /// each rate limit on by the jobs it took, and says when a rate limit that held
    /// jobs back allows the next start; the locks last until it commits.
    /// Each round of a claim (see [`Rounds`]) is a statement of its own,
    /// and counts anew what the rounds before it leased and spent.
    pub(super) async fn jobs_claim_limited(
        &self,
        params: &JobClaim,
    ) -> Result<ClaimReply, StoreError> {
        let jobs = self.jobs_table();
        let not_suspended = self.not_suspended();
        let cap_of = |limits: &[(String, u32)]| -> Vec<Option<i64>> {
            params
                .tasks
                .iter()
                .map(|t| {
                    limits
                        .iter()
                        .find(|(name, _)| name == t)
                        .map(|(_, max)| i64::from(*max))
                })
                .collect()
        };
        let caps = cap_of(&params.running_limits);
        let group_caps = cap_of(&params.group_running_limits);
        let gcra_of = |limits: &[(String, crate::RateLimit)]| -> Vec<Option<Gcra>> {
            params
                .tasks
                .iter()
                .map(|t| {
                    limits
                        .iter()
                        .find(|(name, _)| name == t)
                        .map(|(_, limit)| Gcra::of(limit))
                })
                .collect()
        };
        let (intervals, tolerances) = Gcra::columns(&gcra_of(&params.rate_limits));
        let (group_intervals, group_tolerances) =
            Gcra::columns(&gcra_of(&params.group_rate_limits));
        // The limited tags of the served tasks: each task's, and each
        // tag's limits with its tasks as pairs.
        let tags: Vec<&crate::store::TagClaimLimit> = params
            .tag_limits
            .iter()
            .filter(|l| l.max_running.is_some() || l.rate.is_some())
            .filter(|l| l.tasks.iter().any(|m| params.tasks.contains(m)))
            .collect();
        let task_tags: Vec<Option<&str>> = params
            .tasks
            .iter()
            .map(|t| {
                tags.iter()
                    .find(|l| l.tasks.contains(t))
                    .map(|l| l.tag.as_str())
            })
            .collect();
        let tag_names: Vec<&str> = tags.iter().map(|l| l.tag.as_str()).collect();
        let tag_caps: Vec<Option<i64>> =
            tags.iter().map(|l| l.max_running.map(i64::from)).collect();
        let (tag_intervals, tag_tolerances) = Gcra::columns(
            &tags
                .iter()
                .map(|l| l.rate.as_ref().map(Gcra::of))
                .collect::<Vec<_>>(),
        );
        let (member_tags, member_tasks): (Vec<&str>, Vec<&str>) = tags
            .iter()
            .flat_map(|l| l.tasks.iter().map(|m| (l.tag.as_str(), m.as_str())))
            .unzip();
        let limited = params
            .running_limits
            .iter()
            .chain(&params.group_running_limits)
            .map(|(name, _)| name.as_str())
            .chain(params.rate_limits.iter().map(|(name, _)| name.as_str()))
            .chain(
                params
                    .group_rate_limits
                    .iter()
                    .map(|(name, _)| name.as_str()),
            )
            .filter(|name| params.tasks.iter().any(|t| t == name));
        // The same task keys as before version 17, so a process still
        // running the former claim takes turns with this one; every key,
        // the tags' too, in one order, so claims never wait in a circle.
        let mut locks: Vec<String> = limited
            .map(|task| format!("{jobs}:running:{task}"))
            .chain(tag_names.iter().map(|tag| format!("{jobs}:tag:{tag}")))
            .collect();
        locks.sort();
        locks.dedup();
        let rooms = format!(
            "{f}($1::text[], $6::bigint[], $10::bigint[], $11::bigint[], $12::bigint[],
                 $15::bigint[], $16::bigint[], $17::text[], $18::text[], $19::bigint[],
                 $20::bigint[], $21::bigint[], $22::text[], $23::text[],
                 $13::text[], $7::uuid[], $14::bigint, $3::bigint,
                 $4::uuid, $24::bigint[], $27::bigint[], $25::bigint,
                 $28::bigint[], $29::bigint[], $30::bigint[], $31::bigint[])",
            f = self.sql.table("claim_all_places")
        );
        let group_room = self.sql.table("claim_group_limits");
        // The owner's own caps (see `JobClaim::task_caps`), along the
        // served tasks: each task's, and its tag's with the tag's name.
        let capped = !params.task_caps.is_empty() || !params.tag_caps.is_empty();
        let task_cap = |t: &String| {
            params
                .task_caps
                .iter()
                .filter(|(name, _)| name == t)
                .map(|(_, max)| *max)
                .min()
        };
        let tag_cap = |t: &String| params.tag_caps.iter().find(|c| c.tasks.contains(t));
        let cap_tags: Vec<Option<&str>> = params
            .tasks
            .iter()
            .map(|t| tag_cap(t).map(|c| c.tag.as_str()))
            .collect();
        // Less what the claim's rounds before took.
        let caps_after = |taken: &[crate::job::Job]| -> (Vec<Option<i64>>, Vec<Option<i64>>) {
            let took = |t: &String| taken.iter().filter(|j| *j.task == **t).count() as i64;
            params
                .tasks
                .iter()
                .map(|t| {
                    let own = task_cap(t).map(|max| (i64::from(max) - took(t)).max(0));
                    let tag = tag_cap(t)
                        .map(|c| (i64::from(c.max) - c.tasks.iter().map(took).sum::<i64>()).max(0));
                    (own, tag)
                })
                .unzip()
        };
        let rooms = claim::Rooms {
            rooms: &rooms,
            group_room: &group_room,
            ended: 7,
            now: 14,
            tagged: !tags.is_empty() || cap_tags.iter().any(Option::is_some),
            caps: capped.then_some(32),
        };
        let rate_limits = self.sql.table("rate_limits");
        let running_places = self.sql.table("running_places");
        let tag_places = self.sql.table("tag_places");
        // What the owner asks of each capped task's places (null: its
        // cap, and the store counts what it holds).
        let asked = |t: &String| params.places.iter().find(|p| &p.task == t);
        let wants: Vec<Option<i64>> = params
            .tasks
            .iter()
            .map(|t| asked(t).map(|p| i64::from(p.wanted)))
            .collect();
        // What it holds of each, with what the claim's rounds before took
        // (a statement of its own each, see `Rounds`).
        let holds = |taken: &[crate::job::Job]| -> Vec<Option<i64>> {
            params
                .tasks
                .iter()
                .map(|t| {
                    let took = taken.iter().filter(|j| *j.task == **t).count();
                    asked(t).map(|p| {
                        i64::from(p.holding).saturating_add(i64::try_from(took).unwrap_or(i64::MAX))
                    })
                })
                .collect()
        };
        // What the owner asks of each limited tag's places (null: the
        // tag's limit counts every leased job of its tasks), and what it
        // holds of the tag's jobs, with what the rounds before took.
        let tag_asked = |tag: &str| params.tag_places.iter().find(|p| p.tag == tag);
        let tag_wants: Vec<Option<i64>> = tags
            .iter()
            .map(|l| {
                tag_asked(&l.tag)
                    .filter(|_| l.max_running.is_some())
                    .map(|p| i64::from(p.wanted))
            })
            .collect();
        // How many of each capped task's and limited tag's jobs the owner
        // may run until this claim's reply: its row keeps at least as
        // many places (at most the jobs it holds).
        let runs: Vec<Option<i64>> = params
            .tasks
            .iter()
            .map(|t| asked(t).map(|p| i64::from(p.may_run)))
            .collect();
        let tag_runs: Vec<Option<i64>> = tags
            .iter()
            .map(|l| tag_asked(&l.tag).map(|p| i64::from(p.may_run)))
            .collect();
        let tag_holds = |taken: &[crate::job::Job]| -> Vec<Option<i64>> {
            tags.iter()
                .map(|l| {
                    let took = taken
                        .iter()
                        .filter(|j| l.tasks.iter().any(|m| *j.task == **m))
                        .count();
                    tag_asked(&l.tag).map(|p| {
                        i64::from(p.holding).saturating_add(i64::try_from(took).unwrap_or(i64::MAX))
                    })
                })
                .collect()
        };
        // Due jobs beyond the `k` a claim took, of the rows `m` that
        // `which` names: counted up to `k + 1`, to say whether a rate
        // limit held any back.
        let more_due = |which: &str, k: &str| {
            format!(
                "(SELECT count(*) FROM (SELECT 1 FROM {jobs} AS m
                     WHERE {which} AND m.leased_by IS NULL
                       AND m.status IN {CLAIMABLE} AND m.run_at <= $2
                     LIMIT {k} + 1) AS x)"
            )
        };
        // A rate-limited task's due jobs: in each claim index apart, so
        // each is read along its own.
        let task_due = format!(
            "{} + {}",
            more_due(
                "m.task = s.task AND m.group_key IS NULL",
                "COALESCE(t.k, 0)"
            ),
            more_due(
                "m.task = s.task AND m.group_key IS NOT NULL",
                "COALESCE(t.k, 0)"
            )
        );
        let none_due = more_due(
            "m.task = s.task AND m.group_key IS NULL",
            "COALESCE(t.k_none, 0)",
        );
        let tag_due = more_due(
            "m.task IN (SELECT v.task FROM served AS v WHERE v.tag = r.tag)",
            "COALESCE(g.k, 0)",
        );
        // Whether due jobs of the served task `s.task` (or of the served
        // tasks of tag `s.tag`) are left unleased: a claim that took
        // none while they were was short of places (the snapshot still
        // shows unleased the jobs the claim took, so it asks only when
        // it took none).
        let task_left = format!(
            "EXISTS (SELECT 1 FROM {jobs} AS m WHERE m.task = s.task AND m.leased_by IS NULL
                        AND m.status IN {CLAIMABLE} AND m.run_at <= $2)"
        );
        let tag_left = format!(
            "EXISTS (SELECT 1 FROM {jobs} AS m
                     WHERE m.task IN (SELECT v.task FROM served AS v WHERE v.tag = s.tag)
                       AND m.leased_by IS NULL AND m.status IN {CLAIMABLE} AND m.run_at <= $2)"
        );
        let group_due = more_due(
            "m.task = l.task AND m.group_key = l.grp",
            "COALESCE(g.k, 0)",
        );
        let sql = |form: claim::Form| {
            // The groups' own rate limits: only the fair forms read groups.
            let (group_taken, group_spent, group_wake) = if form == claim::Form::Fast {
                (String::new(), String::new(), String::new())
            } else {
                (
                    "group_taken AS (
                         SELECT c.task, c.group_key AS grp, count(*) AS k FROM claimed AS c
                         WHERE c.group_key IS NOT NULL GROUP BY c.task, c.group_key),"
                        .to_owned(),
                    "UNION ALL
                     SELECT 'group', l.task, l.grp, l.rate_from + g.k * s.group_interval
                     FROM lanes AS l JOIN served AS s ON s.task = l.task
                     JOIN group_taken AS g ON g.task = l.task AND g.grp = l.grp
                     WHERE s.group_interval IS NOT NULL"
                        .to_owned(),
                    format!(
                        "UNION ALL
                         SELECT l.rate_from + COALESCE(g.k, 0) * s.group_interval - s.group_tolerance
                         FROM lanes AS l JOIN served AS s ON s.task = l.task
                         LEFT JOIN group_taken AS g ON g.task = l.task AND g.grp = l.grp
                         WHERE s.group_interval IS NOT NULL AND COALESCE(g.k, 0) >= l.rate_allowed
                           AND {group_due} > COALESCE(g.k, 0)"
                    ),
                )
            };
            format!(
                "{picked},
                 claimed AS (
                     UPDATE {jobs} AS j SET {set}
                     WHERE j.id = ANY (ARRAY(SELECT id FROM picked)) AND {LEASE_COMMIT}
                     RETURNING {columns}),
                 taken AS (
                     SELECT c.task, count(*) AS k, count(*) FILTER (WHERE c.group_key IS NULL) AS k_none
                     FROM claimed AS c GROUP BY c.task),
                 tag_taken AS (
                     SELECT s.tag, count(*) AS k FROM claimed AS c JOIN served AS s ON s.task = c.task
                     WHERE s.tag IS NOT NULL GROUP BY s.tag),
                 tag_rates AS (
                     SELECT DISTINCT s.tag, s.tag_from, s.tag_interval, s.tag_tolerance, s.tag_allowed
                     FROM served AS s WHERE s.tag_interval IS NOT NULL),
                 {group_taken}
                 spent AS (
                     INSERT INTO {rate_limits} AS b (kind, name, grp, tat)
                     SELECT 'task', s.task, '', s.rate_from + t.k * s.rate_interval
                     FROM served AS s JOIN taken AS t ON t.task = s.task
                     WHERE s.rate_interval IS NOT NULL
                     UNION ALL
                     SELECT 'group', s.task, '', s.none_from + t.k_none * s.group_interval
                     FROM served AS s JOIN taken AS t ON t.task = s.task
                     WHERE s.group_interval IS NOT NULL AND t.k_none > 0
                     UNION ALL
                     SELECT 'tag', r.tag, '', r.tag_from + g.k * r.tag_interval
                     FROM tag_rates AS r JOIN tag_taken AS g ON g.tag = r.tag
                     {group_spent}
                     ON CONFLICT (kind, name, grp) DO UPDATE SET tat = EXCLUDED.tat),
                 placed AS (
                     INSERT INTO {running_places} AS p (task, owner, places, until_us, short)
                     SELECT s.task, $4, GREATEST(w.places, s.kept), $26,
                            CASE WHEN w.places < s.wanted
                                  AND (s.held + COALESCE(t.k, 0) > w.places
                                       OR (COALESCE(t.k, 0) = 0 AND {task_left}))
                                 THEN s.wanted - w.places ELSE 0 END
                     FROM served AS s LEFT JOIN taken AS t ON t.task = s.task
                     CROSS JOIN LATERAL (
                         SELECT LEAST(s.places, s.held + COALESCE(t.k, 0)) AS places) AS w
                     WHERE s.places IS NOT NULL
                     ON CONFLICT (task, owner) DO UPDATE
                         SET places = EXCLUDED.places, until_us = EXCLUDED.until_us, short = EXCLUDED.short),
                 tag_placed AS (
                     INSERT INTO {tag_places} AS p (tag, owner, places, until_us, tasks, short)
                     SELECT DISTINCT ON (s.tag) s.tag, $4, GREATEST(w.places, s.tag_kept), $26,
                            ARRAY(SELECT m.task FROM UNNEST($22::text[], $23::text[]) AS m(tag, task)
                                  WHERE m.tag = s.tag),
                            CASE WHEN w.places < s.tag_wanted
                                  AND (s.tag_held + COALESCE(g.k, 0) > w.places
                                       OR (COALESCE(g.k, 0) = 0 AND {tag_left}))
                                 THEN s.tag_wanted - w.places ELSE 0 END
                     FROM served AS s LEFT JOIN tag_taken AS g ON g.tag = s.tag
                     CROSS JOIN LATERAL (
                         SELECT LEAST(s.tag_places, s.tag_held + COALESCE(g.k, 0)) AS places) AS w
                     WHERE s.tag_places IS NOT NULL
                     ON CONFLICT (tag, owner) DO UPDATE
                         SET places = EXCLUDED.places, until_us = EXCLUDED.until_us,
                             tasks = EXCLUDED.tasks, short = EXCLUDED.short),
                 wake AS (
                     SELECT min(w.at) AS at FROM (
                         SELECT s.rate_from + COALESCE(t.k, 0) * s.rate_interval - s.rate_tolerance AS at
                         FROM served AS s LEFT JOIN taken AS t ON t.task = s.task
                         WHERE s.rate_interval IS NOT NULL AND COALESCE(t.k, 0) >= s.rate_allowed
                           AND {task_due} > COALESCE(t.k, 0)
                         UNION ALL
                         SELECT s.none_from + COALESCE(t.k_none, 0) * s.group_interval - s.group_tolerance
                         FROM served AS s LEFT JOIN taken AS t ON t.task = s.task
                         WHERE s.group_interval IS NOT NULL AND COALESCE(t.k_none, 0) >= s.none_allowed
                           AND {none_due} > COALESCE(t.k_none, 0)
                         UNION ALL
                         SELECT r.tag_from + COALESCE(g.k, 0) * r.tag_interval - r.tag_tolerance
                         FROM tag_rates AS r LEFT JOIN tag_taken AS g ON g.tag = r.tag
                         WHERE COALESCE(g.k, 0) >= r.tag_allowed AND {tag_due} > COALESCE(g.k, 0)
                         {group_wake}) AS w)
                 {rows}",
                picked = claim::picked_sql(form, &jobs, &not_suspended, Some(&rooms), (8, 9)),
                set = claim::CLAIM_SET,
                columns = returned_columns(),
                rows = claim::claimed_rows(
                    &format!(
                        "{waiting}, w.at AS rate_wake, pl.place_tasks, pl.place_counts,
                         tp.tag_place_names, tp.tag_place_counts",
                        waiting = claim::groups_waiting_sql(&jobs)
                    ),
                    "FROM wake AS w
                 CROSS JOIN (SELECT array_agg(s.task) AS place_tasks,
                                    array_agg(LEAST(s.places, s.held + COALESCE(t.k, 0))) AS place_counts
                             FROM served AS s LEFT JOIN taken AS t ON t.task = s.task
                             WHERE s.places IS NOT NULL) AS pl
                 CROSS JOIN (SELECT array_agg(x.tag) AS tag_place_names,
                                    array_agg(x.places) AS tag_place_counts
                             FROM (SELECT DISTINCT ON (s.tag) s.tag,
                                          LEAST(s.tag_places, s.tag_held + COALESCE(g.k, 0)) AS places
                                   FROM served AS s LEFT JOIN tag_taken AS g ON g.tag = s.tag
                                   WHERE s.tag_places IS NOT NULL) AS x) AS tp"
                ),
            )
        };
        let (names, strides) = claim::group_params(&params.group_weights);
        let ended: Vec<Uuid> = params.ended.iter().map(|id| id.0).collect();
        let mut rounds = Rounds::limited(self, params.limit);
        while let Some((form, want)) = rounds.next() {
            let statement = sql(form);
            let holds = holds(&rounds.taken);
            let tag_holds = tag_holds(&rounds.taken);
            let (own_caps, own_tag_caps) = caps_after(&rounds.taken);
            // $8 and $9 are only in the fair form; the others always.
            let query = sqlx::query(AssertSqlSafe(statement))
                .bind(&params.tasks)
                .bind(params.due_by)
                .bind(i64::try_from(want).unwrap_or(i64::MAX))
                .bind(params.owner)
                .bind(params.lease_until)
                .bind(&caps)
                .bind(&ended)
                .bind(&names)
                .bind(&strides)
                .bind(&group_caps)
                .bind(&intervals)
                .bind(&tolerances)
                .bind(&locks)
                .bind(params.now.timestamp_micros())
                .bind(&group_intervals)
                .bind(&group_tolerances)
                .bind(&task_tags)
                .bind(&tag_names)
                .bind(&tag_caps)
                .bind(&tag_intervals)
                .bind(&tag_tolerances)
                .bind(&member_tags)
                .bind(&member_tasks)
                .bind(&wants)
                .bind(i64::from(crate::store::JOBS_PER_PLACE))
                .bind(params.lease_until.timestamp_micros())
                .bind(&holds)
                .bind(&tag_wants)
                .bind(&tag_holds)
                .bind(&runs)
                .bind(&tag_runs);
            // $32 to $34 only when some cap is set.
            let query = if capped {
                query.bind(&own_caps).bind(&cap_tags).bind(&own_tag_caps)
            } else {
                query
            };
            let rows = query.fetch_all(self.pool()).await.map_err(map_err)?;
            rounds.took(&rows)?;
        }
        let retry_at = rounds
            .rate_wake
            .and_then(DateTime::<Utc>::from_timestamp_micros);
        Ok(ClaimReply {
            jobs: rounds.taken,
            retry_at,
            places: rounds.places,
            tag_places: rounds.tag_places,
        })
    }
}
