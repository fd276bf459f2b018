WHERE reference = ?3
  AND (?1 IS NULL OR status IN (SELECT value FROM json_each(?1)))
  AND (?2 IS NULL OR task IN (SELECT value FROM json_each(?2)))
  AND (?4 IS NULL OR created_at >= ?4)
  AND (?5 IS NULL OR created_at < ?5)
