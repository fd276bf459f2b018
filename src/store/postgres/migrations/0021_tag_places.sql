-- kessel schema version 21: a tag's running limit held as places, and
-- every limit's places shared fairly between the processes short of them.
-- `{schema}` is replaced by the store's schema name.
--
-- Version 20 gave a task's running limit places per process; a tag's
-- (`tag_max_running`, all the tag's tasks together) still counted every
-- leased job of the tag: a process ran at most the limit per claim round
-- trip. Now a tag's limit is held as places too, the same way (see
-- version 20): a claim gives its owner up to what it wants of the tag's
-- places the other owners' live rows leave, the owner runs at most that
-- many of the tag's jobs at once, and leases up to `ahead` times as many.
--
-- A row names the tag's tasks as the owner defines them (`tasks`), so a
-- heartbeat of the owner's jobs of any of them renews it; a row lives
-- until `until_us`, and a process that leaves deletes its rows.
--
-- Places are shared fairly between the owners that need them (tasks'
-- and tags' alike): a row says how many places its owner lacked at its
-- last claim (`short`: it asked for more than it got, and had jobs for
-- them, held or due). While another live owner is short, a claim gives
-- an owner at most its fair share of the limit (the limit over the owners
-- with places or short, rounded up), and the owner starts no more than
-- that from then on; its row keeps the places it may still be running
-- in (`runs`: what it may run until the claim's reply, its places or its
-- runs, as it counts them, at most the jobs it holds), and gives them back
-- at its next claims as its runs end, for the short owners to take.
CREATE TABLE {schema}.tag_places (
    tag text NOT NULL,
    owner uuid NOT NULL,
    places bigint NOT NULL,
    until_us bigint NOT NULL,
    tasks text[] NOT NULL,
    short bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (tag, owner)
);
CREATE INDEX tag_places_owner ON {schema}.tag_places (owner);
ALTER TABLE {schema}.running_places ADD COLUMN short bigint NOT NULL DEFAULT 0;

-- `claim_places` of version 20 with places for the limited tags too:
-- `tag_wants` (per tag; null: the tag's limit counts every leased job of
-- its tasks, as before) says how many of the tag's places the owner asks
-- for and `tag_holds` how many of the tag's jobs it holds; a limited
-- tag's room is `places * ahead` less those. `runs` and `tag_runs` say
-- how many jobs of each the owner may run until the reply (its row keeps
-- at least that many places, at most what it holds), and the fair share
-- above caps what a claim gives while another owner is short. The
-- version 20 function stays, for processes not upgraded yet.
CREATE FUNCTION {schema}.claim_all_places(
    tasks text[], caps bigint[], group_caps bigint[], intervals bigint[], tolerances bigint[],
    group_intervals bigint[], group_tolerances bigint[], task_tags text[],
    tags text[], tag_caps bigint[], tag_intervals bigint[], tag_tolerances bigint[],
    member_tags text[], member_tasks text[],
    locks text[], ended uuid[], now_us bigint, most bigint,
    me uuid, wants bigint[], holds bigint[], ahead bigint,
    tag_wants bigint[], tag_holds bigint[], runs bigint[], tag_runs bigint[])
RETURNS TABLE (task text, n bigint, gcap bigint, ng bigint, rate_allowed bigint,
               rate_from bigint, rate_interval bigint, rate_tolerance bigint,
               group_interval bigint, group_tolerance bigint, none_allowed bigint, none_from bigint,
               tag text, tn bigint, tag_allowed bigint, tag_from bigint, tag_interval bigint,
               tag_tolerance bigint, places bigint, held bigint, tag_places bigint, tag_held bigint,
               wanted bigint, tag_wanted bigint, kept bigint, tag_kept bigint)
-- A claim serves a few tasks: without this the planner takes a thousand
-- rows, and the claim's estimate grows past the JIT threshold (a second
-- of compiling per claim; see version 17).
LANGUAGE plpgsql VOLATILE ROWS 10
-- The rooms' query is planned once per connection, not at every claim:
-- with its parameters' values the planner found the same plan (index
-- scans along `jobs_leased` and the primary keys) at eight times the
-- cost, 1.6-1.7 ms of planning against 0.14-0.22 ms in all per call.
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
DECLARE
    k text;
BEGIN
    FOREACH k IN ARRAY locks LOOP
        PERFORM pg_advisory_xact_lock(hashtextextended(k, 7014));
    END LOOP;
    -- In one claim of sixteen, up to 256 rows of the served tasks' groups
    -- rested for a minute (a row whose `tat` is past is the same as no
    -- row), so one-off groups leave no rows behind: under the tasks'
    -- locks, as every write of these rows is; sampled, so a claim does
    -- not read every busy group's row each time.
    IF random() < 0.0625 THEN
        DELETE FROM {schema}.rate_limits AS d
        WHERE d.ctid = ANY (ARRAY(
            SELECT s.ctid FROM {schema}.rate_limits AS s
            WHERE s.kind = 'group'
              AND s.name IN (SELECT u.task FROM UNNEST(tasks, group_intervals) AS u(task, gri)
                             WHERE u.gri IS NOT NULL)
              AND s.tat < now_us - 60000000
            LIMIT 256));
    END IF;
    -- In one claim of sixteen, rows of owners gone for a minute (a
    -- process that stopped without leaving, or whose lease lapsed) go.
    IF random() < 0.0625 THEN
        DELETE FROM {schema}.running_places AS d
        WHERE d.task = ANY (tasks) AND d.until_us < now_us - 60000000;
        DELETE FROM {schema}.tag_places AS d
        WHERE d.tag = ANY (tags) AND d.until_us < now_us - 60000000;
    END IF;
    RETURN QUERY
    WITH tag_rooms AS (
        SELECT g.tag, g.ti, g.tt, b.t0, p.places, p.held, p.want, p.kept,
               CASE WHEN g.cap IS NULL THEN most
                    WHEN p.places IS NOT NULL THEN GREATEST(0, p.places * ahead - p.held)
                    ELSE GREATEST(0, g.cap - (
                        SELECT count(*) FROM {schema}.jobs AS l
                        WHERE l.task IN (SELECT m.task FROM UNNEST(member_tags, member_tasks) AS m(tag, task)
                                         WHERE m.tag = g.tag)
                          AND l.leased_by IS NOT NULL
                          AND l.status IN ('scheduled', 'ready', 'running', 'retrying')
                          AND NOT (l.id = ANY (ended)))) END AS room,
               CASE WHEN g.ti IS NULL THEN most
                    WHEN b.t0 - now_us > g.tt THEN 0
                    ELSE (now_us + g.tt - b.t0) / g.ti + 1 END AS allowed
        FROM UNNEST(tags, tag_caps, tag_intervals, tag_tolerances, tag_wants, tag_holds, tag_runs)
             AS g(tag, cap, ti, tt, want, hold, run)
        -- The other owners' live rows of a limited tag whose places the
        -- owner asks for: the places they hold, how many are short, and
        -- how many hold places or are short.
        CROSS JOIN LATERAL (
            SELECT COALESCE(sum(o.places), 0)::bigint AS taken,
                   count(*) FILTER (WHERE o.short > 0) AS short_owners,
                   count(*) FILTER (WHERE o.places > 0 OR o.short > 0) AS busy_owners
            FROM {schema}.tag_places AS o
            WHERE g.cap IS NOT NULL AND g.want IS NOT NULL
              AND o.tag = g.tag AND o.owner <> me AND o.until_us >= now_us) AS o
        -- Its places: at most what it wants of what the others leave;
        -- while one of them is short, at most its fair share, never
        -- fewer than it runs. And the tag's jobs it holds, as it counts
        -- them.
        CROSS JOIN LATERAL (
            SELECT CASE WHEN g.cap IS NULL OR g.want IS NULL THEN NULL
                        ELSE LEAST(g.want, GREATEST(0, g.cap - o.taken),
                                   CASE WHEN o.short_owners > 0
                                        THEN (g.cap + o.busy_owners) / (o.busy_owners + 1)
                                        ELSE g.cap END)
                        END AS places,
                   COALESCE(g.hold, 0) AS held, g.want,
                   LEAST(COALESCE(g.run, 0), COALESCE(g.hold, 0)) AS kept
            OFFSET 0) AS p
        CROSS JOIN LATERAL (
            SELECT GREATEST(now_us, COALESCE(
                (SELECT s.tat FROM {schema}.rate_limits AS s
                 WHERE g.ti IS NOT NULL AND s.kind = 'tag' AND s.name = g.tag AND s.grp = ''),
                now_us)) AS t0) AS b),
    task_rooms AS (
        SELECT u.task, u.gcap, u.ri, u.rt, u.gri, u.grt, u.tag, b.t0, b.g0,
               CASE WHEN u.cap IS NULL THEN most
                    ELSE GREATEST(0, p.places * ahead - p.held) END AS room,
               p.places, p.held, COALESCE(u.want, u.cap) AS wanted, p.kept,
               CASE WHEN u.ri IS NULL THEN most
                    WHEN b.t0 - now_us > u.rt THEN 0
                    ELSE (now_us + u.rt - b.t0) / u.ri + 1 END AS allowed,
               CASE WHEN u.gri IS NULL THEN most
                    WHEN b.g0 - now_us > u.grt THEN 0
                    ELSE (now_us + u.grt - b.g0) / u.gri + 1 END AS none_allowed,
               CASE WHEN u.gcap IS NULL THEN most
                    ELSE GREATEST(0, u.gcap - (
                        SELECT count(*) FROM {schema}.jobs AS l
                        WHERE l.task = u.task AND l.group_key IS NULL AND l.leased_by IS NOT NULL
                          AND l.status IN ('scheduled', 'ready', 'running', 'retrying')
                          AND NOT (l.id = ANY (ended)))) END AS none_room
        FROM UNNEST(tasks, caps, group_caps, intervals, tolerances, group_intervals, group_tolerances,
                    task_tags, wants, holds, runs) AS u(task, cap, gcap, ri, rt, gri, grt, tag, want, hold, run)
        -- The other owners' live rows of a capped task: the places they
        -- hold, how many are short, how many hold places or are short.
        CROSS JOIN LATERAL (
            SELECT COALESCE(sum(o.places), 0)::bigint AS taken,
                   count(*) FILTER (WHERE o.short > 0) AS short_owners,
                   count(*) FILTER (WHERE o.places > 0 OR o.short > 0) AS busy_owners
            FROM {schema}.running_places AS o
            WHERE u.cap IS NOT NULL AND o.task = u.task AND o.owner <> me
              AND o.until_us >= now_us) AS o
        -- A capped task's places: at most what this owner wants of what
        -- the others leave; while one of them is short, at most its fair
        -- share, never fewer than it runs. And its jobs of the task
        -- leased and not final.
        CROSS JOIN LATERAL (
            SELECT CASE WHEN u.cap IS NULL THEN NULL
                        ELSE LEAST(COALESCE(u.want, u.cap), GREATEST(0, u.cap - o.taken),
                                   CASE WHEN o.short_owners > 0
                                        THEN (u.cap + o.busy_owners) / (o.busy_owners + 1)
                                        ELSE u.cap END)
                        END AS places,
                   CASE WHEN u.cap IS NULL THEN NULL
                        WHEN u.hold IS NOT NULL THEN u.hold
                        ELSE (SELECT count(*) FROM {schema}.jobs AS l
                              WHERE l.task = u.task AND l.leased_by IS NOT NULL AND l.leased_by = me
                                AND l.status IN ('scheduled', 'ready', 'running', 'retrying')
                                AND NOT (l.id = ANY (ended))) END AS held,
                   LEAST(COALESCE(u.run, 0), COALESCE(u.hold, 0)) AS kept
            -- Once per task, not once per use of its columns.
            OFFSET 0) AS p
        CROSS JOIN LATERAL (
            SELECT GREATEST(now_us, COALESCE(
                       (SELECT s.tat FROM {schema}.rate_limits AS s
                        WHERE u.ri IS NOT NULL AND s.kind = 'task' AND s.name = u.task AND s.grp = ''),
                       now_us)) AS t0,
                   GREATEST(now_us, COALESCE(
                       (SELECT s.tat FROM {schema}.rate_limits AS s
                        WHERE u.gri IS NOT NULL AND s.kind = 'group' AND s.name = u.task AND s.grp = ''),
                       now_us)) AS g0) AS b)
    SELECT x.task, x.n, x.gcap, LEAST(x.n, x.none_room, x.none_allowed), x.allowed,
           x.t0, x.ri, x.rt, x.gri, x.grt, x.none_allowed, x.g0,
           x.limited_tag, x.tn, x.tag_allowed, x.tag_t0, x.ti, x.tt, x.places, x.held,
           x.tag_places, x.tag_held, x.wanted, x.tag_wanted, x.kept, x.tag_kept
    FROM (SELECT r.*, LEAST(r.room, r.allowed, COALESCE(LEAST(g.room, g.allowed), most)) AS n,
                 g.tag AS limited_tag, LEAST(g.room, g.allowed) AS tn, g.allowed AS tag_allowed,
                 g.t0 AS tag_t0, g.ti, g.tt, g.places AS tag_places, g.held AS tag_held,
                 g.want AS tag_wanted, g.kept AS tag_kept
          FROM task_rooms AS r LEFT JOIN tag_rooms AS g ON g.tag = r.tag) AS x;
END $$;

