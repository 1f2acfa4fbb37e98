-- Runtime state may expire (store.Runtime.PutStateTTL, PutStateIfAbsent):
-- a value whose expires_at has passed (by the database server's clock) is
-- invisible to every read and is deleted by SweepExpiredState, which reads
-- the partial index in expiry order. NULL: the value never expires.
ALTER TABLE gh_state ADD COLUMN expires_at timestamptz;
CREATE INDEX gh_state_expires_idx ON gh_state (expires_at) WHERE expires_at IS NOT NULL;
