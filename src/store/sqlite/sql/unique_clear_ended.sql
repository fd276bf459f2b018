-- Frees key ?1 from a row whose hold has ended at ?2 (microseconds).
UPDATE kessel_jobs SET unique_key = NULL
WHERE unique_key = ?1
  AND NOT ((unique_scope = 0 AND status IN ('scheduled', 'ready', 'retrying'))
        OR (unique_scope = 1 AND status IN ('scheduled', 'ready', 'running', 'retrying'))
        OR (unique_scope = 2 AND unique_until > ?2))
