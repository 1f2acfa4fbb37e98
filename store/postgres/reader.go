package postgres

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/gatehouse-dev/gatehouse/store"
)

// querier is what the pool and a transaction have in common.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// objectColumns lists gh_objects' columns in the order scanObject reads
// them, each prefixed with p (a table alias and dot, or "").
func objectColumns(p string) string {
	return p + "uid::text, " + p + "kind, " + p + "tenant_id, " + p + "id, " + p + "name, " +
		p + "parent_id, " + p + "description, " + p + "labels, " + p + "revision, " +
		p + "create_revision, " + p + "created_at, " + p + "created_by, " + p + "updated_at, " +
		p + "updated_by, " + p + "deleted_at, " + p + "spec"
}

// scanObject reads one row of objectColumns, after the extra leading
// destinations, if any.
func scanObject(row pgx.Row, extra ...any) (*store.Object, error) {
	var o store.Object
	var labels, spec []byte
	var deleted *time.Time
	dest := append(extra, &o.UID, &o.Kind, &o.TenantID, &o.ID, &o.Name, &o.ParentID, &o.Description,
		&labels, &o.Revision, &o.CreateRevision, &o.CreatedAt, &o.CreatedBy, &o.UpdatedAt, &o.UpdatedBy,
		&deleted, &spec)
	if err := row.Scan(dest...); err != nil {
		return nil, err
	}
	o.CreatedAt, o.UpdatedAt = o.CreatedAt.UTC(), o.UpdatedAt.UTC()
	if deleted != nil {
		t := deleted.UTC()
		o.DeletedAt = &t
	}
	if len(labels) > 0 && string(labels) != "null" {
		if err := json.Unmarshal(labels, &o.Labels); err != nil {
			return nil, fmt.Errorf("decode labels of %s %q: %w", o.Kind, o.ID, err)
		}
		if len(o.Labels) == 0 {
			o.Labels = nil
		}
	}
	if len(spec) > 0 {
		// jsonb prints with spaces; hand back compact JSON like the
		// embedded backend.
		var buf bytes.Buffer
		if err := json.Compact(&buf, spec); err != nil {
			return nil, fmt.Errorf("decode spec of %s %q: %w", o.Kind, o.ID, err)
		}
		o.Spec = buf.Bytes()
	}
	return &o, nil
}

// storable reports whether PostgreSQL can store every s as text: valid UTF-8
// without NUL bytes. A value that is not storable cannot match a stored one.
func storable(ss ...string) bool {
	for _, s := range ss {
		if !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0 {
			return false
		}
	}
	return true
}

// dbError wraps a database error (nil stays nil) with what was being done, adding the store
// error that matches its SQLSTATE so that callers can use errors.Is.
func dbError(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	what := fmt.Sprintf(format, args...)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case pgErr.Code == "23505": // unique_violation
			return fmt.Errorf("%s: %w: %w", what, store.ErrAlreadyExists, err)
		case strings.HasPrefix(pgErr.Code, "22"): // data exception
			return fmt.Errorf("%s: %w: %w", what, store.ErrInvalid, err)
		}
	}
	return classify(fmt.Errorf("%s: %w", what, err))
}

// reader implements store.Reader over the pool or a transaction.
type reader struct{ q querier }

func (r reader) getBy(ctx context.Context, column, kind, tenantID, value string) (*store.Object, error) {
	what := fmt.Sprintf("%s %q", kind, value)
	if column == "name" {
		what = fmt.Sprintf("%s named %q", kind, value)
	}
	if !storable(kind, tenantID, value) {
		return nil, fmt.Errorf("%s: %w", what, store.ErrNotFound)
	}
	o, err := scanObject(r.q.QueryRow(ctx, `SELECT `+objectColumns("")+` FROM gh_objects
		WHERE kind = $1 AND tenant_id = $2 AND `+column+` = $3 AND deleted_at IS NULL`, kind, tenantID, value))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%s: %w", what, store.ErrNotFound)
	}
	if err != nil {
		return nil, dbError(err, "get %s", what)
	}
	return o, nil
}

func (r reader) Get(ctx context.Context, kind, tenantID, id string) (*store.Object, error) {
	return r.getBy(ctx, "id", kind, tenantID, id)
}

func (r reader) GetByName(ctx context.Context, kind, tenantID, name string) (*store.Object, error) {
	if name == "" {
		return nil, fmt.Errorf("%s named %q: %w", kind, name, store.ErrNotFound)
	}
	return r.getBy(ctx, "name", kind, tenantID, name)
}

// nilUUID sorts before every generated UID; it stands for a cursor without
// one.
const nilUUID = "00000000-0000-0000-0000-000000000000"

func (r reader) List(ctx context.Context, q store.Query) (*store.Page, error) {
	if q.Kind == "" {
		return nil, fmt.Errorf("%w: query kind is required", store.ErrInvalid)
	}
	cur, err := store.DecodeObjectCursor(q.After)
	if err != nil {
		return nil, err
	}
	curUID := nilUUID
	if cur.ID != "" {
		if !storable(cur.ID) {
			return nil, fmt.Errorf("%w: malformed cursor", store.ErrInvalid)
		}
		if cur.UID != "" {
			u, err := uuid.Parse(cur.UID)
			if err != nil {
				return nil, fmt.Errorf("%w: malformed cursor", store.ErrInvalid)
			}
			curUID = u.String()
		}
	}
	page := &store.Page{Items: []*store.Object{}}
	if !storable(q.Kind, q.TenantID, q.ParentID) {
		return page, nil
	}

	args := []any{q.Kind, q.TenantID}
	match := `kind = $1 AND tenant_id = $2`
	if !q.IncludeDeleted {
		match += ` AND deleted_at IS NULL`
	}
	if q.ParentID != "" {
		args = append(args, q.ParentID)
		match += ` AND parent_id = $` + strconv.Itoa(len(args))
	}
	countSQL := `SELECT count(*) FROM gh_objects WHERE ` + match
	rest := match
	if cur.ID != "" {
		args = append(args, cur.ID, curUID)
		rest += fmt.Sprintf(` AND (id, uid) > ($%d, $%d::uuid)`, len(args)-1, len(args))
	}
	limit := "ALL"
	if q.Limit > 0 {
		limit = strconv.Itoa(q.Limit + 1) // one more tells whether a next page exists
	}
	// The total is an uncorrelated subquery: evaluated once, in the same
	// snapshot as the page.
	rows, err := r.q.Query(ctx, `SELECT (`+countSQL+`), `+objectColumns("")+` FROM gh_objects
		WHERE `+rest+` ORDER BY gh_objects.id, gh_objects.uid LIMIT `+limit, args...)
	if err != nil {
		return nil, dbError(err, "list %s", q.Kind)
	}
	defer rows.Close()
	total := int64(-1)
	for rows.Next() {
		o, err := scanObject(rows, &total)
		if err != nil {
			return nil, dbError(err, "list %s", q.Kind)
		}
		page.Items = append(page.Items, o)
	}
	if err := rows.Err(); err != nil {
		return nil, dbError(err, "list %s", q.Kind)
	}
	if total < 0 { // empty page: count on its own
		if err := r.q.QueryRow(ctx, countSQL, args[:len(args)-cursorArgs(cur)]...).Scan(&total); err != nil {
			return nil, dbError(err, "count %s", q.Kind)
		}
	}
	page.Total = int(total)
	if q.Limit > 0 && len(page.Items) > q.Limit {
		page.Items = page.Items[:q.Limit]
		page.Next = store.EncodeObjectCursor(page.Items[q.Limit-1])
	}
	return page, nil
}

func cursorArgs(c store.ObjectCursor) int {
	if c.ID == "" {
		return 0
	}
	return 2
}

func (r reader) ListEvents(ctx context.Context, q store.EventQuery) (*store.EventPage, error) {
	after, err := store.DecodeEventCursor(q.After)
	if err != nil {
		return nil, err
	}
	page := &store.EventPage{Items: []*store.Event{}}
	if !storable(q.TenantID, q.Kind, q.Action, q.Actor) {
		return page, nil
	}
	args := []any{q.TenantID}
	where := `tenant_id = $1`
	add := func(cond string, v any) {
		args = append(args, v)
		where += ` AND ` + cond + ` $` + strconv.Itoa(len(args))
	}
	if after > 0 {
		add("seq <", after)
	}
	if q.Kind != "" {
		add("kind =", q.Kind)
	}
	if q.Action != "" {
		add("action =", q.Action)
	}
	if q.Actor != "" {
		add("actor =", q.Actor)
	}
	if q.MinRevision > 0 {
		add("revision >=", q.MinRevision)
	}
	if !q.From.IsZero() {
		add("time >=", q.From)
	}
	if !q.To.IsZero() {
		add("time <=", q.To)
	}
	limit := "ALL"
	if q.Limit > 0 {
		limit = strconv.Itoa(q.Limit + 1)
	}
	rows, err := r.q.Query(ctx, `SELECT seq, tenant_id, actor, action, kind, object_id, revision, time, request_id, changes
		FROM gh_events WHERE `+where+` ORDER BY seq DESC LIMIT `+limit, args...)
	if err != nil {
		return nil, dbError(err, "list events")
	}
	defer rows.Close()
	for rows.Next() {
		var e store.Event
		var seq int64
		var changes []byte
		if err := rows.Scan(&seq, &e.TenantID, &e.Actor, &e.Action, &e.Kind, &e.ObjectID, &e.Revision, &e.Time, &e.RequestID, &changes); err != nil {
			return nil, dbError(err, "list events")
		}
		if len(changes) > 0 {
			e.Changes = json.RawMessage(changes)
		}
		e.ID = strconv.FormatInt(seq, 10)
		e.Time = e.Time.UTC()
		page.Items = append(page.Items, &e)
	}
	if err := rows.Err(); err != nil {
		return nil, dbError(err, "list events")
	}
	if q.Limit > 0 && len(page.Items) > q.Limit {
		page.Items = page.Items[:q.Limit]
		page.Next = store.EncodeEventCursor(page.Items[q.Limit-1])
	}
	return page, nil
}

func (r reader) Revision(ctx context.Context) (int64, error) {
	var rev int64
	if err := r.q.QueryRow(ctx, `SELECT rev FROM gh_revision`).Scan(&rev); err != nil {
		return 0, dbError(err, "read revision")
	}
	return rev, nil
}
