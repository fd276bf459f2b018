UPDATE kessel_schedules SET paused = ?2, next_run = COALESCE(?3, next_run)
WHERE name = ?1
