-- A schedule defined anew: its paused flag, last run and last job stay.
UPDATE kessel_schedules SET task = ?2, payload = ?3, spec = ?4, next_run = ?5
WHERE name = ?1
