-- In the order of `kessel_jobs_by_status_task`, which answers it alone.
SELECT task, status, COUNT(*) FROM kessel_jobs GROUP BY status, task
