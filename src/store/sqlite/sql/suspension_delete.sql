DELETE FROM kessel_suspensions WHERE kind = ?1 AND name = ?2
