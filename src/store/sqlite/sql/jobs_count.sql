SELECT task, status, COUNT(*) FROM kessel_jobs GROUP BY task, status
