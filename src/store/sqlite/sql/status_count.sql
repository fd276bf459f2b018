-- A range of `kessel_jobs_by_status_task`, read alone.
SELECT COUNT(*) FROM kessel_jobs WHERE status = ?1
