package postgres

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gatehouse-dev/gatehouse/store"
)

func checkRuntimeKey(parts ...string) error {
	if !storable(parts...) {
		return fmt.Errorf("%w: runtime keys must be valid UTF-8 without NUL bytes", store.ErrInvalid)
	}
	return nil
}

// stateLive is the predicate of a state row that has not expired, by the
// database server's clock (one clock for every replica).
const stateLive = `(expires_at IS NULL OR expires_at > now())`

// stateExpiry is the SQL of a new row's expires_at from a ttl in
// microseconds given as parameter $n (NULL, never, when it is 0).
func stateExpiry(n int) string {
	return fmt.Sprintf(`CASE WHEN $%[1]d::bigint > 0 THEN now() + $%[1]d::bigint * interval '1 microsecond' END`, n)
}

// checkState validates a state write and returns its ttl in microseconds.
func checkState(kind, tenantID, id string, value json.RawMessage, ttl time.Duration) (int64, error) {
	if kind == "" || id == "" || !json.Valid(value) {
		return 0, fmt.Errorf("%w: state needs a kind, an id and a JSON value", store.ErrInvalid)
	}
	if err := checkRuntimeKey(kind, tenantID, id); err != nil {
		return 0, err
	}
	ttl, err := store.StateTTL(ttl)
	if err != nil {
		return 0, err
	}
	return ttl.Microseconds(), nil
}

// PutState implements store.Runtime.
func (s *Store) PutState(ctx context.Context, kind, tenantID, id string, value json.RawMessage) error {
	return s.PutStateTTL(ctx, kind, tenantID, id, value, 0)
}

// PutStateTTL implements store.Runtime with one upsert.
func (s *Store) PutStateTTL(ctx context.Context, kind, tenantID, id string, value json.RawMessage, ttl time.Duration) error {
	micros, err := checkState(kind, tenantID, id, value, ttl)
	if err != nil {
		return err
	}
	_, err = s.pool.Exec(ctx, `INSERT INTO gh_state (kind, tenant_id, id, value, updated_at, expires_at)
		VALUES ($1, $2, $3, $4, $5, `+stateExpiry(6)+`)
		ON CONFLICT (kind, tenant_id, id) DO UPDATE SET value = EXCLUDED.value, updated_at = EXCLUDED.updated_at,
			expires_at = EXCLUDED.expires_at`,
		kind, tenantID, id, []byte(value), now(), micros)
	return dbError(err, "put state %s %q", kind, id)
}

// PutStateIfAbsent implements store.Runtime with one upsert that replaces
// only an expired row: it returns a row when it inserted or replaced one,
// none when a live row was there. Concurrent inserts of one key are
// ordered by the primary key's unique index, so exactly one creates it.
func (s *Store) PutStateIfAbsent(ctx context.Context, kind, tenantID, id string, value json.RawMessage, ttl time.Duration) (bool, error) {
	micros, err := checkState(kind, tenantID, id, value, ttl)
	if err != nil {
		return false, err
	}
	var created bool
	err = s.pool.QueryRow(ctx, `INSERT INTO gh_state AS st (kind, tenant_id, id, value, updated_at, expires_at)
		VALUES ($1, $2, $3, $4, $5, `+stateExpiry(6)+`)
		ON CONFLICT (kind, tenant_id, id) DO UPDATE SET value = EXCLUDED.value, updated_at = EXCLUDED.updated_at,
			expires_at = EXCLUDED.expires_at
		WHERE st.expires_at IS NOT NULL AND st.expires_at <= now()
		RETURNING true`,
		kind, tenantID, id, []byte(value), now(), micros).Scan(&created)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, dbError(err, "put state %s %q if absent", kind, id)
	}
	return created, nil
}

// GetState implements store.Runtime.
func (s *Store) GetState(ctx context.Context, kind, tenantID, id string) (*store.StateEntry, error) {
	if !storable(kind, tenantID, id) {
		return nil, fmt.Errorf("state %s %q: %w", kind, id, store.ErrNotFound)
	}
	e, err := scanState(s.pool.QueryRow(ctx, `SELECT value, updated_at, expires_at FROM gh_state
		WHERE kind = $1 AND tenant_id = $2 AND id = $3 AND `+stateLive,
		kind, tenantID, id), kind, tenantID, id)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("state %s %q: %w", kind, id, store.ErrNotFound)
	}
	if err != nil {
		return nil, dbError(err, "get state %s %q", kind, id)
	}
	return e, nil
}

// scanState reads value, updated_at and expires_at into a StateEntry.
func scanState(row pgx.Row, kind, tenantID, id string) (*store.StateEntry, error) {
	e := &store.StateEntry{Kind: kind, TenantID: tenantID, ID: id}
	var value []byte
	var expires *time.Time
	if err := row.Scan(&value, &e.UpdatedAt, &expires); err != nil {
		return nil, err
	}
	e.Value, e.UpdatedAt = value, e.UpdatedAt.UTC()
	if expires != nil {
		at := expires.UTC()
		e.ExpiresAt = &at
	}
	return e, nil
}

// TakeState implements store.Runtime with one DELETE … RETURNING: the row
// lock orders concurrent takers, and those after the first find no row.
func (s *Store) TakeState(ctx context.Context, kind, tenantID, id string) (*store.StateEntry, bool, error) {
	if !storable(kind, tenantID, id) {
		return nil, false, nil
	}
	e, err := scanState(s.pool.QueryRow(ctx, `DELETE FROM gh_state
		WHERE kind = $1 AND tenant_id = $2 AND id = $3 AND `+stateLive+`
		RETURNING value, updated_at, expires_at`,
		kind, tenantID, id), kind, tenantID, id)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, dbError(err, "take state %s %q", kind, id)
	}
	return e, true, nil
}

// DeleteState implements store.Runtime.
func (s *Store) DeleteState(ctx context.Context, kind, tenantID, id string) error {
	if !storable(kind, tenantID, id) {
		return nil
	}
	_, err := s.pool.Exec(ctx, `DELETE FROM gh_state WHERE kind = $1 AND tenant_id = $2 AND id = $3`, kind, tenantID, id)
	return dbError(err, "delete state %s %q", kind, id)
}

// ListState implements store.Runtime.
func (s *Store) ListState(ctx context.Context, kind, tenantID string) ([]*store.StateEntry, error) {
	out := []*store.StateEntry{}
	if !storable(kind, tenantID) {
		return out, nil
	}
	rows, err := s.pool.Query(ctx, `SELECT id, value, updated_at, expires_at FROM gh_state
		WHERE kind = $1 AND tenant_id = $2 AND `+stateLive+` ORDER BY id`,
		kind, tenantID)
	if err != nil {
		return nil, dbError(err, "list state %s", kind)
	}
	defer rows.Close()
	for rows.Next() {
		e := &store.StateEntry{Kind: kind, TenantID: tenantID}
		var value []byte
		var expires *time.Time
		if err := rows.Scan(&e.ID, &value, &e.UpdatedAt, &expires); err != nil {
			return nil, dbError(err, "list state %s", kind)
		}
		e.Value, e.UpdatedAt = value, e.UpdatedAt.UTC()
		if expires != nil {
			at := expires.UTC()
			e.ExpiresAt = &at
		}
		out = append(out, e)
	}
	return out, dbError(rows.Err(), "list state %s", kind)
}

// SweepExpiredState implements store.Runtime with one DELETE of at most
// limit expired rows, read from the expiry index oldest first; rows
// another sweep (replica) holds are skipped, not waited for, and a row
// renewed meanwhile fails the outer predicate and stays.
func (s *Store) SweepExpiredState(ctx context.Context, limit int) (int, error) {
	if err := store.CheckSweepLimit(limit); err != nil {
		return 0, err
	}
	tag, err := s.pool.Exec(ctx, `DELETE FROM gh_state
		WHERE (kind, tenant_id, id) IN (
			SELECT kind, tenant_id, id FROM gh_state
			WHERE expires_at IS NOT NULL AND expires_at <= now()
			ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED)
		AND expires_at IS NOT NULL AND expires_at <= now()`, limit)
	if err != nil {
		return 0, dbError(err, "sweep expired state")
	}
	return int(tag.RowsAffected()), nil
}

// AppendLog implements store.Runtime: the entries go in with one COPY
// (one statement: all of them or none), in order, under the stream's
// lock (appendLog).
func (s *Store) AppendLog(ctx context.Context, st store.LogStream, entries []json.RawMessage) error {
	if st.Name == "" {
		return fmt.Errorf("%w: log stream needs a name", store.ErrInvalid)
	}
	if err := checkRuntimeKey(st.Name, st.TenantID, st.Key); err != nil {
		return err
	}
	for _, e := range entries {
		if !json.Valid(e) || bytes.Contains(e, []byte(`\u0000`)) {
			return fmt.Errorf("%w: log entry is not storable JSON", store.ErrInvalid)
		}
	}
	if len(entries) == 0 {
		return nil
	}
	at := now()
	rows := make([][]any, len(entries))
	for i, e := range entries {
		rows[i] = []any{st.Name, st.TenantID, st.Key, at, []byte(e)}
	}
	return classify(dbError(s.appendLog(ctx, st, rows), "append to log %s", st.Name))
}

// TrimLog implements store.Runtime.
func (s *Store) TrimLog(ctx context.Context, st store.LogStream, keep int) (int, error) {
	if !storable(st.Name, st.TenantID, st.Key) {
		return 0, nil
	}
	tag, err := s.pool.Exec(ctx, `DELETE FROM gh_logs WHERE stream = $1 AND tenant_id = $2 AND key = $3 AND seq < COALESCE((
			SELECT seq FROM gh_logs WHERE stream = $1 AND tenant_id = $2 AND key = $3
			ORDER BY seq DESC OFFSET GREATEST($4::int, 0) - 1 LIMIT 1), 0)`,
		st.Name, st.TenantID, st.Key, keep)
	if err != nil {
		return 0, dbError(err, "trim log %s", st.Name)
	}
	return int(tag.RowsAffected()), nil
}

// ClaimBundleRevision implements store.Runtime: a read when the recorded
// content already has this hash (the usual case: unchanged content, or
// content another replica recorded), else one upsert whose row lock orders
// concurrent claims and which always returns the row it leaves.
func (s *Store) ClaimBundleRevision(ctx context.Context, tenantID, gatewayID, contentHash string, candidate int64) (int64, error) {
	if err := store.CheckBundleClaim(tenantID, gatewayID, contentHash, candidate); err != nil {
		return 0, err
	}
	if err := checkRuntimeKey(tenantID, gatewayID, contentHash); err != nil {
		return 0, err
	}
	var hash string
	var rev int64
	err := s.pool.QueryRow(ctx, `SELECT hash, revision FROM gh_bundle_revisions WHERE tenant_id = $1 AND gateway_id = $2`,
		tenantID, gatewayID).Scan(&hash, &rev)
	switch {
	case err == nil && hash == contentHash:
		return rev, nil
	case err != nil && !errors.Is(err, pgx.ErrNoRows):
		return 0, dbError(err, "read bundle revision of %s/%s", tenantID, gatewayID)
	}
	err = s.pool.QueryRow(ctx, `INSERT INTO gh_bundle_revisions AS b (tenant_id, gateway_id, hash, revision, updated_at)
		VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (tenant_id, gateway_id) DO UPDATE SET
			hash = CASE WHEN b.hash <> EXCLUDED.hash AND b.revision < EXCLUDED.revision THEN EXCLUDED.hash ELSE b.hash END,
			revision = CASE WHEN b.hash <> EXCLUDED.hash AND b.revision < EXCLUDED.revision THEN EXCLUDED.revision ELSE b.revision END,
			updated_at = CASE WHEN b.hash <> EXCLUDED.hash AND b.revision < EXCLUDED.revision THEN EXCLUDED.updated_at ELSE b.updated_at END
		RETURNING hash, revision`,
		tenantID, gatewayID, contentHash, candidate, now()).Scan(&hash, &rev)
	if err != nil {
		return 0, dbError(err, "claim bundle revision of %s/%s", tenantID, gatewayID)
	}
	if hash != contentHash {
		return 0, store.BundleClaimConflict(tenantID, gatewayID, candidate, rev)
	}
	return rev, nil
}

// deleteTenantRuntime removes a tenant's state, logs and bundle revisions
// in tx.
func deleteTenantRuntime(ctx context.Context, tx pgx.Tx, tenantID string) error {
	if _, err := tx.Exec(ctx, `DELETE FROM gh_state WHERE tenant_id = $1`, tenantID); err != nil {
		return dbError(err, "delete state of tenant %q", tenantID)
	}
	if _, err := tx.Exec(ctx, `DELETE FROM gh_logs WHERE tenant_id = $1`, tenantID); err != nil {
		return dbError(err, "delete logs of tenant %q", tenantID)
	}
	if _, err := tx.Exec(ctx, `DELETE FROM gh_bundle_revisions WHERE tenant_id = $1`, tenantID); err != nil {
		return dbError(err, "delete bundle revisions of tenant %q", tenantID)
	}
	return nil
}
