SELECT MAX(version) FROM kessel_schema
