INSERT INTO kessel_suspensions (kind, name, suspended_by, since)
VALUES (?1, ?2, ?3, ?4)
ON CONFLICT (kind, name) DO NOTHING
