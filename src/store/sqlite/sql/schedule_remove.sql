DELETE FROM kessel_schedules WHERE name = ?1
