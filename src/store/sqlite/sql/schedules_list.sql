SELECT name, task, payload, spec, paused, next_run, last_run, last_job
FROM kessel_schedules
ORDER BY name
