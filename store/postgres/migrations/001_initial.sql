-- Gatehouse storage schema, version 1.
--
-- Key columns use the "C" collation so that ordering and the List cursor
-- compare bytes, exactly like the embedded backend, whatever the database's
-- default collation is.

-- The global revision: one row, bumped once per write transaction. Its row
-- lock serialises writers, so commit order equals revision order.
CREATE TABLE gh_revision (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    rev       bigint  NOT NULL
);
INSERT INTO gh_revision (singleton, rev) VALUES (true, 0);

-- Every configuration object, whatever its kind.
CREATE TABLE gh_objects (
    uid             uuid        PRIMARY KEY,
    kind            text        COLLATE "C" NOT NULL,
    tenant_id       text        COLLATE "C" NOT NULL DEFAULT '',
    id              text        COLLATE "C" NOT NULL,
    name            text        COLLATE "C" NOT NULL DEFAULT '',
    parent_id       text        COLLATE "C" NOT NULL DEFAULT '',
    description     text        NOT NULL DEFAULT '',
    labels          jsonb,
    revision        bigint      NOT NULL,
    create_revision bigint      NOT NULL,
    created_at      timestamptz NOT NULL,
    created_by      text        NOT NULL DEFAULT '',
    updated_at      timestamptz NOT NULL,
    updated_by      text        NOT NULL DEFAULT '',
    deleted_at      timestamptz NULL,
    spec            jsonb
);

-- IDs and names are unique among live objects of one kind and tenant; a soft
-- delete frees them.
CREATE UNIQUE INDEX gh_objects_live_id_key
    ON gh_objects (kind, tenant_id, id) WHERE deleted_at IS NULL;
CREATE UNIQUE INDEX gh_objects_live_name_key
    ON gh_objects (kind, tenant_id, name) WHERE deleted_at IS NULL AND name <> '';

-- List order (and DeleteTenant's scan).
CREATE INDEX gh_objects_list_idx ON gh_objects (tenant_id, kind, id, uid);

-- The change log: the changes of one write transaction per revision.
CREATE TABLE gh_changes (
    revision bigint PRIMARY KEY,
    changes  jsonb  NOT NULL
);

-- The audit log, append-only.
CREATE TABLE gh_events (
    seq        bigserial   PRIMARY KEY,
    tenant_id  text        NOT NULL DEFAULT '',
    actor      text        NOT NULL DEFAULT '',
    action     text        NOT NULL DEFAULT '',
    kind       text        NOT NULL DEFAULT '',
    object_id  text        NOT NULL DEFAULT '',
    revision   bigint      NOT NULL,
    time       timestamptz NOT NULL,
    request_id text        NOT NULL DEFAULT ''
);
CREATE INDEX gh_events_tenant_seq_idx ON gh_events (tenant_id, seq DESC);
