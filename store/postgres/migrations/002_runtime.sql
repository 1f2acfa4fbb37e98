-- Runtime data: not configuration, so no revision, change log or audit.

-- Latest value per (kind, tenant, id): gateway status, bundle bookkeeping.
CREATE TABLE gh_state (
    kind       text        COLLATE "C" NOT NULL,
    tenant_id  text        COLLATE "C" NOT NULL DEFAULT '',
    id         text        COLLATE "C" NOT NULL,
    value      jsonb       NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (kind, tenant_id, id)
);
CREATE INDEX gh_state_tenant_idx ON gh_state (tenant_id);

-- Append-only logs (decision logs), one stream per (stream, tenant, key).
CREATE TABLE gh_logs (
    seq       bigserial   PRIMARY KEY,
    stream    text        COLLATE "C" NOT NULL,
    tenant_id text        COLLATE "C" NOT NULL DEFAULT '',
    key       text        COLLATE "C" NOT NULL DEFAULT '',
    time      timestamptz NOT NULL,
    data      jsonb       NOT NULL
);
CREATE INDEX gh_logs_stream_idx ON gh_logs (stream, tenant_id, key, seq DESC);
CREATE INDEX gh_logs_tenant_idx ON gh_logs (tenant_id);
