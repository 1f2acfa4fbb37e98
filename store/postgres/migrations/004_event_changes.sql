-- Audit events carry a summary of what the write changed (field →
-- before/after, secrets masked), written by the admin API; NULL for
-- events recorded before this column existed or without a summary.
ALTER TABLE gh_events ADD COLUMN changes jsonb;
