-- The live children of an object (an API's service, a membership's group,
-- a mapping's user: store.Query.ParentID), found by index in list order
-- rather than by reading every object of the kind in the tenant.
CREATE INDEX gh_objects_live_parent_idx ON gh_objects (tenant_id, kind, parent_id, id, uid)
    WHERE deleted_at IS NULL AND parent_id <> '';
