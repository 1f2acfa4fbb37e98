package postgres

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gatehouse-dev/gatehouse/store"
)

// Searching a log stream: the decision fields are columns that PostgreSQL
// computes from each entry's data (migration 006), indexed per stream.

// logLockClass is the first key of the advisory locks that order one
// stream's appends (the second is a hash of the stream).
const logLockClass = 0x6768_6c67 // "ghlg"

// logWhere is the WHERE clause selecting a stream's entries that match f,
// with its arguments. Booleans are written as literals so that a denial
// search is planned on the partial index of denials.
type logWhere struct {
	sql  strings.Builder
	args []any
}

func (w *logWhere) add(cond string, arg any) {
	w.args = append(w.args, arg)
	fmt.Fprintf(&w.sql, " AND "+cond, len(w.args))
}

// newLogWhere builds the clause; ok is false when f can match nothing
// PostgreSQL can store (a value with a NUL byte or invalid UTF-8).
func newLogWhere(st store.LogStream, f *store.LogFilter) (w *logWhere, ok bool, err error) {
	since, err := store.DecodeEventCursor(f.Since)
	if err != nil {
		return nil, false, err
	}
	if !storable(st.Name, st.TenantID, st.Key, f.DecisionID, f.APIID, f.PolicyID, f.Subject, f.TokenReason) {
		return nil, false, nil
	}
	w = &logWhere{args: []any{st.Name, st.TenantID, st.Key}}
	w.sql.WriteString("stream = $1 AND tenant_id = $2 AND key = $3")
	if since > 0 {
		w.add("seq > $%d", since)
	}
	// Times are stored to the microsecond, and PostgreSQL rounds a
	// parameter to one: the bounds are rounded inwards first, so that
	// they compare as the exact times would.
	if !f.From.IsZero() {
		from := f.From.Truncate(time.Microsecond)
		if from.Before(f.From) {
			from = from.Add(time.Microsecond)
		}
		w.add("time >= $%d", from)
	}
	if !f.To.IsZero() {
		w.add("time <= $%d", f.To.Truncate(time.Microsecond))
	}
	if f.Allowed != nil {
		fmt.Fprintf(&w.sql, " AND allowed = %t", *f.Allowed)
	}
	if f.HTTPStatus != 0 {
		if f.HTTPStatus <= math.MinInt32 || f.HTTPStatus > math.MaxInt32 {
			return nil, false, nil
		}
		w.add("http_status = $%d", f.HTTPStatus)
	}
	for _, c := range [...]struct{ col, v string }{{"decision_id", f.DecisionID}, {"api_id", f.APIID}, {"policy_id", f.PolicyID}, {"subject", f.Subject}, {"token_reason", f.TokenReason}} {
		if c.v != "" {
			w.add(c.col+" = $%d", c.v)
		}
	}
	return w, true, nil
}

// ListLog implements store.Runtime. With WithTotal, the page and its total
// are read in one REPEATABLE READ snapshot.
func (s *Store) ListLog(ctx context.Context, q store.LogQuery) (*store.LogPage, error) {
	after, err := store.DecodeEventCursor(q.After)
	if err != nil {
		return nil, err
	}
	page := &store.LogPage{Items: []*store.LogEntry{}}
	w, ok, err := newLogWhere(q.Stream, &q.Filter)
	if err != nil || !ok {
		return page, err
	}
	limit := int64(q.Limit) + 1
	if q.Limit <= 0 {
		limit = -1
	}
	// seq < $n (not "$n = 0 OR …") keeps every page a range scan of an
	// index of the stream, however deep the cursor.
	if after == 0 {
		after = math.MaxInt64
	}
	args := append(append([]any{}, w.args...), after, limit)
	pageSQL := `SELECT seq, time, data FROM gh_logs WHERE ` + w.sql.String() +
		fmt.Sprintf(` AND seq < $%d ORDER BY seq DESC LIMIT NULLIF($%d, -1)`, len(args)-1, len(args))
	read := func(ctx context.Context, db querier) error {
		rows, err := db.Query(ctx, pageSQL, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var seq int64
			var data []byte
			e := &store.LogEntry{}
			if err := rows.Scan(&seq, &e.Time, &data); err != nil {
				return err
			}
			e.ID, e.Time, e.Data = strconv.FormatInt(seq, 10), e.Time.UTC(), data
			page.Items = append(page.Items, e)
		}
		return rows.Err()
	}
	if q.WithTotal {
		err = s.snapshot(ctx, func(ctx context.Context, tx pgx.Tx) error {
			if err := read(ctx, tx); err != nil {
				return err
			}
			return tx.QueryRow(ctx, `SELECT count(*) FROM gh_logs WHERE `+w.sql.String(), w.args...).Scan(&page.Total)
		})
	} else {
		err = read(ctx, s.pool)
	}
	if err != nil {
		return nil, classify(dbError(err, "list log %s", q.Stream.Name))
	}
	if q.Limit > 0 && len(page.Items) > q.Limit {
		page.Items = page.Items[:q.Limit]
		page.Next = page.Items[q.Limit-1].ID
	}
	return page, nil
}

// snapshot runs fn in a read-only REPEATABLE READ transaction: its
// statements see one state.
func (s *Store) snapshot(ctx context.Context, fn func(ctx context.Context, tx pgx.Tx) error) error {
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if err := fn(ctx, tx); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// CountLog implements store.Runtime with one grouped count.
func (s *Store) CountLog(ctx context.Context, st store.LogStream, f store.LogFilter) ([]store.LogPolicyCount, error) {
	out := []store.LogPolicyCount{}
	w, ok, err := newLogWhere(st, &f)
	if err != nil || !ok {
		return out, err
	}
	rows, err := s.pool.Query(ctx, `SELECT COALESCE(policy_id, ''), count(*), count(*) FILTER (WHERE allowed), count(*) FILTER (WHERE NOT allowed)
		FROM gh_logs WHERE `+w.sql.String()+` GROUP BY 1 ORDER BY 1`, w.args...)
	if err != nil {
		return nil, classify(dbError(err, "count log %s", st.Name))
	}
	defer rows.Close()
	for rows.Next() {
		var c store.LogPolicyCount
		if err := rows.Scan(&c.PolicyID, &c.Total, &c.Allowed, &c.Denied); err != nil {
			return nil, classify(dbError(err, "count log %s", st.Name))
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, classify(dbError(err, "count log %s", st.Name))
	}
	return out, nil
}

// appendLog appends rows to a stream in one transaction holding the
// stream's advisory lock, so that one stream's appends commit in the order
// they take their seqs: a reader never sees an entry before an older one
// of its stream (what a follower reading "newer than the last I saw"
// needs; concurrent COPYs would otherwise commit in any order).
func (s *Store) appendLog(ctx context.Context, st store.LogStream, rows [][]any) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, hashtext($2))`, int32(logLockClass), st.Name+"/"+st.TenantID+"/"+st.Key); err != nil {
		return err
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"gh_logs"}, []string{"stream", "tenant_id", "key", "time", "data"}, pgx.CopyFromRows(rows)); err != nil {
		return err
	}
	return tx.Commit(ctx)
}
