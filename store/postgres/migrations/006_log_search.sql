-- Decision search (store.LogFilter, store.Runtime.CountLog): the fields of
-- OPA decision log events a search reads, as stored columns computed from
-- data by PostgreSQL on insert, each NULL unless the event has it with the
-- JSON type named (store.ParseDecisionFields reads them alike for the
-- embedded store). Adding them rewrites gh_logs once, under an exclusive
-- lock: upgrading a control plane whose logs hold millions of events
-- takes some seconds per million, during which uploads and listings wait.
ALTER TABLE gh_logs
    ADD COLUMN decision_id text COLLATE "C" GENERATED ALWAYS AS (
        CASE WHEN jsonb_typeof(data -> 'decision_id') = 'string' THEN data ->> 'decision_id' END) STORED,
    ADD COLUMN allowed boolean GENERATED ALWAYS AS (
        CASE WHEN jsonb_typeof(data #> '{result,allowed}') = 'boolean' THEN (data #> '{result,allowed}')::boolean END) STORED,
    ADD COLUMN http_status integer GENERATED ALWAYS AS (
        CASE WHEN jsonb_typeof(data #> '{result,http_status}') = 'number'
              AND (data #> '{result,http_status}')::numeric = trunc((data #> '{result,http_status}')::numeric)
              AND abs((data #> '{result,http_status}')::numeric) < 1000000000
            THEN (data #> '{result,http_status}')::numeric::integer END) STORED,
    ADD COLUMN api_id text COLLATE "C" GENERATED ALWAYS AS (
        CASE WHEN jsonb_typeof(data #> '{result,api_id}') = 'string' THEN data #>> '{result,api_id}' END) STORED,
    ADD COLUMN policy_id text COLLATE "C" GENERATED ALWAYS AS (
        CASE WHEN jsonb_typeof(data #> '{result,policy_id}') = 'string' THEN data #>> '{result,policy_id}' END) STORED,
    ADD COLUMN subject text COLLATE "C" GENERATED ALWAYS AS (
        CASE WHEN jsonb_typeof(data #> '{input,gatehouse,token,subject}') = 'string'
            THEN data #>> '{input,gatehouse,token,subject}' END) STORED,
    ADD COLUMN token_reason text COLLATE "C" GENERATED ALWAYS AS (
        CASE WHEN jsonb_typeof(data #> '{result,token_reason}') = 'string' THEN data #>> '{result,token_reason}' END) STORED;

-- Indexes, chosen for what they save a search against what they cost
-- every upload (PostgreSQL 15 on the 2-CPU VM of docs/benchmarks.md:
-- about 25 µs of backend CPU an event without them; the columns add ~3,
-- the subject and api_id indexes ~10 each, the others 1 to 6):
--   - denials (usually the rare outcome): a partial index in seq order;
--   - subject and api_id (many values, each rare): in seq order per value,
--     so a page is a range scan;
--   - decision_id (one event each, random): a hash index, an exact look-up;
--   - token_reason (only events of refused tokens have one): a partial
--     index of those events in seq order;
--   - received time: windows (from/to), and with the policy and outcome
--     included, the per-policy counts and policy_id searches are read from
--     this index alone.
-- The other fields (allowed = true, http_status, policy_id in a page) are
-- read as an index of the stream is walked.
CREATE INDEX gh_logs_denied_idx ON gh_logs (stream, tenant_id, key, seq DESC) WHERE allowed = false;
CREATE INDEX gh_logs_subject_idx ON gh_logs (stream, tenant_id, key, subject, seq DESC);
CREATE INDEX gh_logs_api_idx ON gh_logs (stream, tenant_id, key, api_id, seq DESC);
CREATE INDEX gh_logs_decision_id_idx ON gh_logs USING hash (decision_id);
CREATE INDEX gh_logs_token_reason_idx ON gh_logs (stream, tenant_id, key, seq DESC) WHERE token_reason IS NOT NULL;
CREATE INDEX gh_logs_time_idx ON gh_logs (stream, tenant_id, key, time) INCLUDE (policy_id, allowed);
