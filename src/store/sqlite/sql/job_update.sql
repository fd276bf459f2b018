UPDATE kessel_jobs SET
    status = ?2,
    attempts = ?3,
    max_attempts = ?4,
    run_at = ?5,
    last_error = ?6,
    result = ?7,
    progress_current = ?8,
    progress_total = ?9,
    finished_at = ?10
WHERE id = ?1
