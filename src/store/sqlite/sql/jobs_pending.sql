WHERE status IN ('scheduled', 'ready', 'running', 'retrying')
ORDER BY id
