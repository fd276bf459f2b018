-- kessel schema version 10: a handover of the leadership without two
-- leaders at once. `{schema}` is replaced by the store's schema name.
--
-- Until version 9 a node running workers took the lease at once from a
-- leader that ran none, and that leader learnt it only at its next bid, a
-- third of a lease later: meanwhile both ran the leader's maintenance.
-- Now such a node only marks the lease `wanted`; the leader gives the
-- lease up at its next bid, and the node takes it at its own.
ALTER TABLE {schema}.leader ADD COLUMN wanted boolean NOT NULL DEFAULT false;
