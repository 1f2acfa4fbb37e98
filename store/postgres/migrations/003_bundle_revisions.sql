-- The revision of each gateway's current bundle content, claimed with a
-- compare-and-set (store.Runtime.ClaimBundleRevision) so that every replica
-- serves one content under one revision. Runtime data: no revision, change
-- log or audit.
CREATE TABLE gh_bundle_revisions (
    tenant_id  text        COLLATE "C" NOT NULL,
    gateway_id text        COLLATE "C" NOT NULL,
    hash       text        COLLATE "C" NOT NULL,
    revision   bigint      NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, gateway_id)
);

-- Earlier versions kept this as runtime state of kind 'bundle-revisions'
-- (value {"hash": …, "revision": …}): carry it over, so that unchanged
-- content keeps its revision (and ETag) across the upgrade.
INSERT INTO gh_bundle_revisions (tenant_id, gateway_id, hash, revision, updated_at)
SELECT tenant_id, id, value->>'hash', (value->>'revision')::bigint, updated_at
FROM gh_state
WHERE kind = 'bundle-revisions' AND jsonb_typeof(value->'hash') = 'string' AND jsonb_typeof(value->'revision') = 'number';
DELETE FROM gh_state WHERE kind = 'bundle-revisions';
