-- kessel schema version 18: limits per tag and rate limits per group,
-- shared by every process, in the same claim statement as the task
-- limits of version 17.
-- `{schema}` is replaced by the store's schema name.
--
-- The jobs table keeps no tag: a tag's jobs are those of the tasks the
-- claiming process knows for it (`member_tags`, `member_tasks`: pairs of
-- a limited tag and one of its tasks). Every process must define a tag's
-- tasks alike, as every process must set the same limits.
--
-- `claim_limits` is `claim_rooms` of version 17 with three more limits,
-- read under the same locks (the caller sorts every key, tasks' and
-- tags', so two claims never wait on each other in a circle):
-- - a tag's running limit: the tag's jobs leased and not final count
--   against it, whatever their task (those in `ended` aside);
-- - a tag's rate limit: its state in `rate_limits`, `kind` 'tag', `name`
--   the tag, `grp` '';
-- - a task's rate limit per group: one row per group, `kind` 'group',
--   `name` the task, `grp` the group, '' for the jobs without one (a
--   group key is never empty). The task's lock covers its groups; a
--   group's row goes once it has rested for a minute (see below).
-- A tag's room `tn` is how many jobs of all its served tasks together
-- the claim may take (the claim ranks them across its tasks, best
-- first); each task's `n` is at most it. The version 17 functions stay,
-- for processes not upgraded yet.
CREATE FUNCTION {schema}.claim_limits(
    tasks text[], caps bigint[], group_caps bigint[], intervals bigint[], tolerances bigint[],
    group_intervals bigint[], group_tolerances bigint[], task_tags text[],
    tags text[], tag_caps bigint[], tag_intervals bigint[], tag_tolerances bigint[],
    member_tags text[], member_tasks text[],
    locks text[], ended uuid[], now_us bigint, most bigint)
RETURNS TABLE (task text, n bigint, gcap bigint, ng bigint, rate_allowed bigint,
               rate_from bigint, rate_interval bigint, rate_tolerance bigint,
               group_interval bigint, group_tolerance bigint, none_allowed bigint, none_from bigint,
               tag text, tn bigint, tag_allowed bigint, tag_from bigint, tag_interval bigint,
               tag_tolerance bigint)
-- A claim serves a few tasks: without this the planner takes a thousand
-- rows, and the claim's estimate grows past the JIT threshold (a second
-- of compiling per claim; see version 17).
LANGUAGE plpgsql VOLATILE ROWS 10 AS $$
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
    RETURN QUERY
    WITH tag_rooms AS (
        SELECT g.tag, g.ti, g.tt, b.t0,
               CASE WHEN g.cap IS NULL THEN most
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
        FROM UNNEST(tags, tag_caps, tag_intervals, tag_tolerances) AS g(tag, cap, ti, tt)
        CROSS JOIN LATERAL (
            SELECT GREATEST(now_us, COALESCE(
                (SELECT s.tat FROM {schema}.rate_limits AS s
                 WHERE g.ti IS NOT NULL AND s.kind = 'tag' AND s.name = g.tag AND s.grp = ''),
                now_us)) AS t0) AS b),
    task_rooms AS (
        SELECT u.task, u.gcap, u.ri, u.rt, u.gri, u.grt, u.tag, b.t0, b.g0,
               CASE WHEN u.cap IS NULL THEN most
                    ELSE GREATEST(0, u.cap - (
                        SELECT count(*) FROM {schema}.jobs AS l
                        WHERE l.task = u.task AND l.leased_by IS NOT NULL
                          AND l.status IN ('scheduled', 'ready', 'running', 'retrying')
                          AND NOT (l.id = ANY (ended)))) END AS room,
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
                    task_tags) AS u(task, cap, gcap, ri, rt, gri, grt, tag)
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
           x.limited_tag, x.tn, x.tag_allowed, x.tag_t0, x.ti, x.tt
    FROM (SELECT r.*, LEAST(r.room, r.allowed, COALESCE(LEAST(g.room, g.allowed), most)) AS n,
                 g.tag AS limited_tag, LEAST(g.room, g.allowed) AS tn, g.allowed AS tag_allowed,
                 g.t0 AS tag_t0, g.ti, g.tt
          FROM task_rooms AS r LEFT JOIN tag_rooms AS g ON g.tag = r.tag) AS x;
END $$;

-- The room of group `grp` of `task` (a key, never the jobs without one)
-- and the state of its rate limit, read under a fresh snapshot after
-- `claim_limits` took the task's lock: the group's running limit `gcap`
-- less its jobs leased and not final (those in `ended` aside), and at
-- most what its rate limit (`gri`, `grt`) allows now; `allowed` is the
-- rate limit's alone, `rate_from` `max(tat, now)`. A null limit: none.
CREATE FUNCTION {schema}.claim_group_limits(
    task text, grp text, gcap bigint, gri bigint, grt bigint, ended uuid[], now_us bigint,
    most bigint)
RETURNS TABLE (room bigint, allowed bigint, rate_from bigint)
LANGUAGE plpgsql VOLATILE ROWS 1 AS $$
DECLARE
    free bigint := most;
BEGIN
    allowed := most;
    IF claim_group_limits.gcap IS NOT NULL THEN
        SELECT GREATEST(0, claim_group_limits.gcap - count(*)) INTO free
        FROM {schema}.jobs AS l
        WHERE l.task = claim_group_limits.task AND l.group_key = claim_group_limits.grp
          AND l.leased_by IS NOT NULL
          AND l.status IN ('scheduled', 'ready', 'running', 'retrying')
          AND NOT (l.id = ANY (claim_group_limits.ended));
    END IF;
    IF claim_group_limits.gri IS NOT NULL THEN
        SELECT GREATEST(claim_group_limits.now_us, COALESCE(max(s.tat), claim_group_limits.now_us))
        INTO rate_from
        FROM {schema}.rate_limits AS s
        WHERE s.kind = 'group' AND s.name = claim_group_limits.task AND s.grp = claim_group_limits.grp;
        allowed := CASE WHEN rate_from - claim_group_limits.now_us > claim_group_limits.grt THEN 0
                        ELSE (claim_group_limits.now_us + claim_group_limits.grt - rate_from)
                             / claim_group_limits.gri + 1 END;
    END IF;
    room := LEAST(free, allowed);
    RETURN NEXT;
END $$;
