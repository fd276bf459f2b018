-- The job keeping key ?1, live at ?2 (microseconds) unless ?3.
SELECT id FROM kessel_jobs
WHERE unique_key = ?1
  AND (?3
    OR (unique_scope = 0 AND status IN ('scheduled', 'ready', 'retrying'))
    OR (unique_scope = 1 AND status IN ('scheduled', 'ready', 'running', 'retrying'))
    OR (unique_scope = 2 AND unique_until > ?2))
