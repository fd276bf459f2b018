INSERT INTO kessel_schedules (name, task, payload, spec, paused, next_run, last_run, last_job)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
