SELECT kind, name, suspended_by, since
FROM kessel_suspensions
ORDER BY kind DESC, name
