package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/gatehouse-dev/gatehouse/store"
)

// txn implements store.Tx. Its Update holds the revision row lock from the
// start, so the checks below (existence, names, expected revisions) cannot
// race with another writer; they run before anything is written so that a
// failed call leaves the transaction usable, as in the embedded backend.
type txn struct {
	reader
	tx      pgx.Tx
	now     time.Time
	rev     int64
	changes []store.Change
}

func (t *txn) WriteRevision() int64 { return t.rev }

// revision returns the transaction's write revision, bumping the global
// counter at the first write.
func (t *txn) revision(ctx context.Context) (int64, error) {
	if t.rev != 0 {
		return t.rev, nil
	}
	var rev int64
	if err := t.tx.QueryRow(ctx, `UPDATE gh_revision SET rev = rev + 1 RETURNING rev`).Scan(&rev); err != nil {
		return 0, dbError(err, "bump revision")
	}
	t.rev = rev
	return rev, nil
}

func (t *txn) record(op store.Op, o *store.Object) {
	t.changes = append(t.changes, store.Change{
		Revision: t.rev, Op: op, Kind: o.Kind, TenantID: o.TenantID, ID: o.ID, UID: o.UID, ParentID: o.ParentID,
	})
}

// checkObject rejects what PostgreSQL cannot store (store.ValidateObject has
// already checked the envelope) and repairs what the embedded backend's JSON
// encoding would repair: invalid UTF-8 in free-text fields.
func checkObject(o *store.Object) error {
	if !storable(o.Kind, o.TenantID, o.ID, o.Name, o.ParentID) {
		return fmt.Errorf("%w: key fields of %s %q must be valid UTF-8", store.ErrInvalid, o.Kind, o.ID)
	}
	for _, s := range []string{o.Description, o.CreatedBy, o.UpdatedBy} {
		if strings.IndexByte(s, 0) >= 0 {
			return fmt.Errorf("%w: NUL byte in %s %q", store.ErrInvalid, o.Kind, o.ID)
		}
	}
	o.Description = strings.ToValidUTF8(o.Description, "\uFFFD")
	o.CreatedBy = strings.ToValidUTF8(o.CreatedBy, "\uFFFD")
	o.UpdatedBy = strings.ToValidUTF8(o.UpdatedBy, "\uFFFD")
	for k, v := range o.Labels {
		if strings.IndexByte(k, 0) >= 0 || strings.IndexByte(v, 0) >= 0 {
			return fmt.Errorf("%w: NUL byte in labels of %s %q", store.ErrInvalid, o.Kind, o.ID)
		}
	}
	if len(o.Spec) > 0 && !json.Valid(o.Spec) {
		return fmt.Errorf("%w: spec of %s %q is not valid JSON", store.ErrInvalid, o.Kind, o.ID)
	}
	return nil
}

// labelsArg is the jsonb parameter for labels: NULL when there are none.
func labelsArg(labels map[string]string) ([]byte, error) {
	if len(labels) == 0 {
		return nil, nil
	}
	return json.Marshal(labels)
}

// specArg is the jsonb parameter for a spec: NULL when empty.
func specArg(spec json.RawMessage) []byte {
	if len(spec) == 0 {
		return nil
	}
	return []byte(spec)
}

// nameTaken reports whether a live object of that kind and tenant has name.
func (t *txn) nameTaken(ctx context.Context, kind, tenantID, name string) (bool, error) {
	var taken bool
	err := t.tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM gh_objects
		WHERE kind = $1 AND tenant_id = $2 AND name = $3 AND deleted_at IS NULL)`, kind, tenantID, name).Scan(&taken)
	if err != nil {
		return false, dbError(err, "check %s named %q", kind, name)
	}
	return taken, nil
}

func (t *txn) Create(ctx context.Context, o *store.Object) error {
	if err := store.ValidateObject(o); err != nil {
		return err
	}
	if err := checkObject(o); err != nil {
		return err
	}
	var idTaken bool
	err := t.tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM gh_objects
		WHERE kind = $1 AND tenant_id = $2 AND id = $3 AND deleted_at IS NULL)`, o.Kind, o.TenantID, o.ID).Scan(&idTaken)
	if err != nil {
		return dbError(err, "check %s %q", o.Kind, o.ID)
	}
	if idTaken {
		return store.AlreadyExists(o.Kind, "id", o.ID)
	}
	if o.Name != "" {
		taken, err := t.nameTaken(ctx, o.Kind, o.TenantID, o.Name)
		if err != nil {
			return err
		}
		if taken {
			return store.AlreadyExists(o.Kind, "name", o.Name)
		}
	}
	labels, err := labelsArg(o.Labels)
	if err != nil {
		return fmt.Errorf("encode labels of %s %q: %w", o.Kind, o.ID, err)
	}
	rev, err := t.revision(ctx)
	if err != nil {
		return err
	}
	// Written back only once nothing can fail any more.
	uid := uuid.NewString()
	updatedBy := o.UpdatedBy
	if updatedBy == "" {
		updatedBy = o.CreatedBy
	}
	_, err = t.tx.Exec(ctx, `INSERT INTO gh_objects (uid, kind, tenant_id, id, name, parent_id, description,
			labels, revision, create_revision, created_at, created_by, updated_at, updated_by, deleted_at, spec)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10, $11, $10, $12, NULL, $13)`,
		uid, o.Kind, o.TenantID, o.ID, o.Name, o.ParentID, o.Description,
		labels, rev, t.now, o.CreatedBy, updatedBy, specArg(o.Spec))
	if err != nil {
		return dbError(err, "create %s %q", o.Kind, o.ID)
	}
	o.UID = uid
	o.Revision, o.CreateRevision = rev, rev
	o.CreatedAt, o.UpdatedAt = t.now, t.now
	o.UpdatedBy = updatedBy
	o.DeletedAt = nil
	t.record(store.OpCreate, o)
	return nil
}

func (t *txn) Update(ctx context.Context, o *store.Object, expectRevision int64) error {
	if err := store.ValidateObject(o); err != nil {
		return err
	}
	if err := checkObject(o); err != nil {
		return err
	}
	old, err := t.Get(ctx, o.Kind, o.TenantID, o.ID)
	if err != nil {
		return err
	}
	if expectRevision != 0 && old.Revision != expectRevision {
		return fmt.Errorf("%s %q is at revision %d, not %d: %w", o.Kind, o.ID, old.Revision, expectRevision, store.ErrConflict)
	}
	if o.Name != old.Name && o.Name != "" {
		taken, err := t.nameTaken(ctx, o.Kind, o.TenantID, o.Name)
		if err != nil {
			return err
		}
		if taken {
			return store.AlreadyExists(o.Kind, "name", o.Name)
		}
	}
	labels, err := labelsArg(o.Labels)
	if err != nil {
		return fmt.Errorf("encode labels of %s %q: %w", o.Kind, o.ID, err)
	}
	rev, err := t.revision(ctx)
	if err != nil {
		return err
	}
	_, err = t.tx.Exec(ctx, `UPDATE gh_objects SET name = $2, parent_id = $3, description = $4, labels = $5,
			revision = $6, updated_at = $7, updated_by = $8, deleted_at = NULL, spec = $9
		WHERE uid = $1`,
		old.UID, o.Name, o.ParentID, o.Description, labels, rev, t.now, o.UpdatedBy, specArg(o.Spec))
	if err != nil {
		return dbError(err, "update %s %q", o.Kind, o.ID)
	}
	o.UID = old.UID
	o.CreateRevision, o.CreatedAt, o.CreatedBy = old.CreateRevision, old.CreatedAt, old.CreatedBy
	o.Revision, o.UpdatedAt = rev, t.now
	o.DeletedAt = nil
	t.record(store.OpUpdate, o)
	return nil
}

func (t *txn) Delete(ctx context.Context, kind, tenantID, id string, expectRevision int64, soft bool) (*store.Object, error) {
	old, err := t.Get(ctx, kind, tenantID, id)
	if err != nil {
		return nil, err
	}
	if expectRevision != 0 && old.Revision != expectRevision {
		return nil, fmt.Errorf("%s %q is at revision %d, not %d: %w", kind, id, old.Revision, expectRevision, store.ErrConflict)
	}
	rev, err := t.revision(ctx)
	if err != nil {
		return nil, err
	}
	if soft {
		_, err = t.tx.Exec(ctx, `UPDATE gh_objects SET deleted_at = $2, updated_at = $2, revision = $3 WHERE uid = $1`,
			old.UID, t.now, rev)
	} else {
		_, err = t.tx.Exec(ctx, `DELETE FROM gh_objects WHERE uid = $1`, old.UID)
	}
	if err != nil {
		return nil, dbError(err, "delete %s %q", kind, id)
	}
	if soft {
		ts := t.now
		old.DeletedAt = &ts
		old.Revision, old.UpdatedAt = rev, t.now
	}
	t.record(store.OpDelete, old)
	return old, nil
}

func (t *txn) DeleteTenant(ctx context.Context, tenantID string) (int, error) {
	if tenantID == "" {
		return 0, fmt.Errorf("%w: tenant id is required", store.ErrInvalid)
	}
	if !storable(tenantID) {
		return 0, nil
	}
	// Only live objects are reported as changes (so only they need a
	// revision); soft-deleted leftovers are purged silently.
	var live bool
	err := t.tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM gh_objects WHERE tenant_id = $1 AND deleted_at IS NULL)`,
		tenantID).Scan(&live)
	if err != nil {
		return 0, dbError(err, "check objects of tenant %q", tenantID)
	}
	if live {
		if _, err := t.revision(ctx); err != nil {
			return 0, err
		}
	}
	rows, err := t.tx.Query(ctx, `WITH d AS (
			DELETE FROM gh_objects WHERE tenant_id = $1
			RETURNING kind, id, uid, parent_id, deleted_at IS NULL AS live)
		SELECT kind, id, uid::text, parent_id, live FROM d ORDER BY d.kind, d.id, d.uid`, tenantID)
	if err != nil {
		return 0, dbError(err, "delete objects of tenant %q", tenantID)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		o := store.Object{TenantID: tenantID}
		var wasLive bool
		if err := rows.Scan(&o.Kind, &o.ID, &o.UID, &o.ParentID, &wasLive); err != nil {
			return 0, dbError(err, "delete objects of tenant %q", tenantID)
		}
		n++
		if wasLive {
			t.record(store.OpDelete, &o)
		}
	}
	if err := rows.Err(); err != nil {
		return 0, dbError(err, "delete objects of tenant %q", tenantID)
	}
	rows.Close()
	if err := deleteTenantRuntime(ctx, t.tx, tenantID); err != nil {
		return 0, err
	}
	return n, nil
}

func (t *txn) AppendEvent(ctx context.Context, e *store.Event) error {
	fields := []*string{&e.TenantID, &e.Actor, &e.Action, &e.Kind, &e.ObjectID, &e.RequestID}
	for _, f := range fields {
		if strings.IndexByte(*f, 0) >= 0 {
			return fmt.Errorf("%w: NUL byte in event", store.ErrInvalid)
		}
	}
	var changes any // NULL when there are none
	if len(e.Changes) > 0 {
		if !json.Valid(e.Changes) {
			return fmt.Errorf("%w: event changes are not JSON", store.ErrInvalid)
		}
		changes = string(e.Changes)
	}
	rev, err := t.revision(ctx)
	if err != nil {
		return err
	}
	for _, f := range fields {
		*f = strings.ToValidUTF8(*f, "\uFFFD")
	}
	if e.Time.IsZero() {
		e.Time = t.now
	}
	var seq int64
	err = t.tx.QueryRow(ctx, `INSERT INTO gh_events (tenant_id, actor, action, kind, object_id, revision, time, request_id, changes)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb) RETURNING seq`,
		e.TenantID, e.Actor, e.Action, e.Kind, e.ObjectID, rev, e.Time, e.RequestID, changes).Scan(&seq)
	if err != nil {
		return dbError(err, "append event")
	}
	e.ID = strconv.FormatInt(seq, 10)
	e.Revision = rev
	return nil
}
