WHERE status IN ('scheduled', 'ready', 'running', 'retrying')
ORDER BY created_at, id
