INSERT INTO kessel_schema (version, applied_at) VALUES (?1, ?2)
