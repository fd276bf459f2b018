DELETE FROM kessel_jobs WHERE id IN (
    SELECT id FROM kessel_jobs
    WHERE status IN (SELECT value FROM json_each(?1))
      AND status IN ('completed', 'buried', 'expired', 'cancelled')
      AND (?2 IS NULL OR task IN (SELECT value FROM json_each(?2)))
      AND (?3 IS NULL OR finished_at < ?3)
    ORDER BY COALESCE(finished_at, created_at), id
    LIMIT ?4
)
