-- kessel schema version 17: flow limits shared by every process, claimed
-- in one statement.
-- `{schema}` is replaced by the store's schema name.
--
-- A claim of limited tasks (a running limit, a running limit per group, a
-- rate limit) must count what is leased, and read each rate limit's
-- state, *after* it holds the limited tasks' advisory locks: a count read
-- under a snapshot taken before the lock would miss the jobs another
-- process leased and committed while this claim waited for it. A single
-- statement's snapshot is taken before any of it runs; but a VOLATILE
-- function takes a fresh snapshot for each query it runs. So the claim
-- calls `claim_rooms`, which takes the locks and then reads the rooms,
-- and `claim_group_room` for each group of a task limited per group:
-- one statement, one round trip, where it was a transaction of five.
--
-- The rate limits' state: one row per limited thing (a task, `kind`
-- 'task', `grp` ''), the theoretical arrival time of its next start
-- (GCRA, microseconds since the Unix epoch on the claiming process's
-- clock). No row: the burst is available. A claim of `k` jobs moves it to
-- `max(tat, now) + k * interval`; a start is allowed while
-- `max(tat, now) - now <= tolerance` (`interval * (burst - 1)`).
CREATE TABLE {schema}.rate_limits (
    kind text NOT NULL,
    name text NOT NULL,
    grp text NOT NULL DEFAULT '',
    tat bigint NOT NULL,
    PRIMARY KEY (kind, name, grp)
);

-- The locks, then each served task's room: `n`, how many of its jobs this
-- claim may take (its running limit less its jobs leased and not final,
-- and at most what its rate limit allows now), and `ng`, of its jobs
-- without a group (with a limit per group, that limit less those leased
-- and not final). `rate_from` is `max(tat, now)` of a rate-limited task,
-- for the claim to move its `tat` by what it took. Jobs in `ended` (the
-- claiming process finished them; their end may not be stored yet) do
-- not count. A null cap, group cap or interval: no such limit.
CREATE FUNCTION {schema}.claim_rooms(
    tasks text[], caps bigint[], group_caps bigint[], intervals bigint[], tolerances bigint[],
    locks text[], ended uuid[], now_us bigint, most bigint)
RETURNS TABLE (task text, n bigint, gcap bigint, ng bigint, rate_allowed bigint,
               rate_from bigint, rate_interval bigint, rate_tolerance bigint)
-- A claim serves a few tasks: without this the planner takes a thousand
-- rows, and the fair claim's estimate grew past the JIT threshold (a
-- second of compiling per claim).
LANGUAGE plpgsql VOLATILE ROWS 10 AS $$
#variable_conflict use_column
DECLARE
    k text;
BEGIN
    -- In the order given (the caller sorts), so two claims never wait on
    -- each other in a circle.
    FOREACH k IN ARRAY locks LOOP
        PERFORM pg_advisory_xact_lock(hashtextextended(k, 7014));
    END LOOP;
    RETURN QUERY
    SELECT r.task, LEAST(r.room, r.allowed), r.gcap,
           CASE WHEN r.gcap IS NULL THEN LEAST(r.room, r.allowed)
                ELSE LEAST(r.room, r.allowed, GREATEST(0, r.gcap - (
                    SELECT count(*) FROM {schema}.jobs AS l
                    WHERE l.task = r.task AND l.group_key IS NULL AND l.leased_by IS NOT NULL
                      AND l.status IN ('scheduled', 'ready', 'running', 'retrying')
                      AND NOT (l.id = ANY (ended))))) END,
           r.allowed, r.t0, r.ri, r.rt
    FROM (SELECT u.task, u.gcap, u.ri, u.rt, b.t0,
                 CASE WHEN u.cap IS NULL THEN most
                      ELSE GREATEST(0, u.cap - (
                          SELECT count(*) FROM {schema}.jobs AS l
                          WHERE l.task = u.task AND l.leased_by IS NOT NULL
                            AND l.status IN ('scheduled', 'ready', 'running', 'retrying')
                            AND NOT (l.id = ANY (ended)))) END AS room,
                 CASE WHEN u.ri IS NULL THEN most
                      WHEN b.t0 - now_us > u.rt THEN 0
                      ELSE (now_us + u.rt - b.t0) / u.ri + 1 END AS allowed
          FROM UNNEST(tasks, caps, group_caps, intervals, tolerances) AS u(task, cap, gcap, ri, rt)
          CROSS JOIN LATERAL (
              SELECT GREATEST(now_us, COALESCE(
                  (SELECT s.tat FROM {schema}.rate_limits AS s
                   WHERE u.ri IS NOT NULL AND s.kind = 'task' AND s.name = u.task AND s.grp = ''),
                  now_us)) AS t0) AS b) AS r;
END $$;

-- The room of group `grp` of `task`, limited to `gcap` running per group:
-- the limit less the group's jobs leased and not final (those in `ended`
-- aside), read under a fresh snapshot, after `claim_rooms` took the lock.
CREATE FUNCTION {schema}.claim_group_room(task text, grp text, gcap bigint, ended uuid[])
RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RETURN GREATEST(0, gcap - (
        SELECT count(*) FROM {schema}.jobs AS l
        WHERE l.task = claim_group_room.task AND l.group_key = claim_group_room.grp
          AND l.leased_by IS NOT NULL
          AND l.status IN ('scheduled', 'ready', 'running', 'retrying')
          AND NOT (l.id = ANY (claim_group_room.ended))));
END $$;
