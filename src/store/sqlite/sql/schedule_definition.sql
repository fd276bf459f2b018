SELECT task, payload, spec FROM kessel_schedules WHERE name = ?1
