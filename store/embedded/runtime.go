package embedded

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/gatehouse-dev/gatehouse/store"
)

// Runtime buckets.
var (
	bucketState = []byte("state") // kind\0tenant\0id -> StateEntry JSON
	// bucketStateExpiry: expiry (unix µs, big-endian) ++ kind\0tenant\0id
	// -> nil, for the state values that expire (SweepExpiredState).
	bucketStateExpiry = []byte("state_expiry")
	bucketLogs        = []byte("logs")        // seq -> LogEntry JSON
	bucketLogIx       = []byte("logs_by_key") // stream\0tenant\0key\0seq -> nil
	// bucketBundleRevs: tenant\0gateway -> bundleRevision JSON
	// (ClaimBundleRevision).
	bucketBundleRevs = []byte("bundle_revisions")
)

// legacyBundleStateKind is the runtime state kind earlier versions kept
// bundle revisions under; Open carries it over into bucketBundleRevs.
const legacyBundleStateKind = "bundle-revisions"

// bundleRevision is a gateway's recorded bundle content.
type bundleRevision struct {
	Hash     string `json:"hash"`
	Revision int64  `json:"revision"`
}

func validKey(parts ...string) error {
	for _, p := range parts {
		if bytes.IndexByte([]byte(p), 0) >= 0 {
			return fmt.Errorf("%w: NUL byte in key", store.ErrInvalid)
		}
	}
	return nil
}

// PutState implements store.Runtime.
func (s *Store) PutState(ctx context.Context, kind, tenantID, id string, value json.RawMessage) error {
	return s.PutStateTTL(ctx, kind, tenantID, id, value, 0)
}

// newStateEntry validates a state write and returns its entry, expiring
// ttl from now (never when ttl is 0).
func newStateEntry(kind, tenantID, id string, value json.RawMessage, ttl time.Duration) (*store.StateEntry, error) {
	if kind == "" || id == "" || !json.Valid(value) {
		return nil, fmt.Errorf("%w: state needs a kind, an id and a JSON value", store.ErrInvalid)
	}
	if err := validKey(kind, tenantID, id); err != nil {
		return nil, err
	}
	ttl, err := store.StateTTL(ttl)
	if err != nil {
		return nil, err
	}
	e := &store.StateEntry{Kind: kind, TenantID: tenantID, ID: id, Value: value}
	stamp(e, ttl)
	return e, nil
}

// stamp sets e's update time to now and its expiry ttl later (none when
// ttl is 0).
func stamp(e *store.StateEntry, ttl time.Duration) {
	e.UpdatedAt, e.ExpiresAt = now(), nil
	if ttl > 0 {
		at := e.UpdatedAt.Add(ttl)
		e.ExpiresAt = &at
	}
}

// PutStateTTL implements store.Runtime.
func (s *Store) PutStateTTL(ctx context.Context, kind, tenantID, id string, value json.RawMessage, ttl time.Duration) error {
	e, err := newStateEntry(kind, tenantID, id, value, ttl)
	if err != nil {
		return err
	}
	return s.updateBatched(ctx, func(tx *bolt.Tx) error {
		k := key(kind, tenantID, id)
		old, err := readState(tx, k)
		if err != nil {
			return err
		}
		return writeState(tx, k, old, e)
	})
}

// PutStateIfAbsent implements store.Runtime: a read answers when a live
// value is there; else one write transaction checks again and writes.
func (s *Store) PutStateIfAbsent(ctx context.Context, kind, tenantID, id string, value json.RawMessage, ttl time.Duration) (bool, error) {
	e, err := newStateEntry(kind, tenantID, id, value, ttl)
	if err != nil {
		return false, err
	}
	k := key(kind, tenantID, id)
	live := false
	if err := s.db.View(func(tx *bolt.Tx) error {
		old, err := readState(tx, k)
		live = old != nil && !old.Expired(now())
		return err
	}); err != nil || live {
		return false, err
	}
	ttl, _ = store.StateTTL(ttl) // valid: newStateEntry checked it
	created := false
	err = s.updateBatched(ctx, func(tx *bolt.Tx) error {
		created = false
		old, err := readState(tx, k)
		if err != nil || (old != nil && !old.Expired(now())) {
			return err
		}
		stamp(e, ttl) // the expiry counts from the write, not the first read
		created = true
		return writeState(tx, k, old, e)
	})
	if err != nil {
		return false, err
	}
	return created, nil
}

// GetState implements store.Runtime.
func (s *Store) GetState(ctx context.Context, kind, tenantID, id string) (*store.StateEntry, error) {
	var e *store.StateEntry
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		e, err = readState(tx, key(kind, tenantID, id))
		if err != nil {
			return err
		}
		if e == nil || e.Expired(now()) {
			e = nil
			return fmt.Errorf("state %s %q: %w", kind, id, store.ErrNotFound)
		}
		return nil
	})
	return e, err
}

// TakeState implements store.Runtime in one write transaction (after a
// read that answers when there is nothing to take, as for a replayed
// code).
func (s *Store) TakeState(ctx context.Context, kind, tenantID, id string) (*store.StateEntry, bool, error) {
	if validKey(kind, tenantID, id) != nil {
		return nil, false, nil
	}
	k := key(kind, tenantID, id)
	live := false
	if err := s.db.View(func(tx *bolt.Tx) error {
		e, err := readState(tx, k)
		live = e != nil && !e.Expired(now())
		return err
	}); err != nil || !live {
		return nil, false, err
	}
	var taken *store.StateEntry
	err := s.updateBatched(ctx, func(tx *bolt.Tx) error {
		taken = nil
		e, err := readState(tx, k)
		if err != nil || e == nil || e.Expired(now()) {
			return err // an expired value is the sweeper's
		}
		if err := removeState(tx, k, e); err != nil {
			return err
		}
		taken = e
		return nil
	})
	if err != nil || taken == nil {
		return nil, false, err
	}
	return taken, true, nil
}

// DeleteState implements store.Runtime.
func (s *Store) DeleteState(ctx context.Context, kind, tenantID, id string) error {
	return s.updateBatched(ctx, func(tx *bolt.Tx) error {
		k := key(kind, tenantID, id)
		old, err := readState(tx, k)
		if err != nil || old == nil {
			return err
		}
		return removeState(tx, k, old)
	})
}

// ListState implements store.Runtime.
func (s *Store) ListState(ctx context.Context, kind, tenantID string) ([]*store.StateEntry, error) {
	out := []*store.StateEntry{}
	prefix := append(key(kind, tenantID), 0)
	err := s.db.View(func(tx *bolt.Tx) error {
		at := now()
		c := tx.Bucket(bucketState).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			var e store.StateEntry
			if err := json.Unmarshal(v, &e); err != nil {
				return err
			}
			if !e.Expired(at) {
				out = append(out, &e)
			}
		}
		return nil
	})
	return out, err
}

// SweepExpiredState implements store.Runtime: the expiry index is read in
// order, up to limit entries that have expired, in one write transaction.
func (s *Store) SweepExpiredState(ctx context.Context, limit int) (int, error) {
	if err := store.CheckSweepLimit(limit); err != nil {
		return 0, err
	}
	n := 0
	err := s.update(ctx, func(tx *bolt.Tx) error {
		n = 0
		at := now()
		idx := tx.Bucket(bucketStateExpiry)
		var due [][]byte
		c := idx.Cursor()
		for k, _ := c.First(); k != nil && len(due) < limit; k, _ = c.Next() {
			if len(k) >= 8 && int64(binary.BigEndian.Uint64(k[:8])) > at.UnixMicro() {
				break
			}
			due = append(due, append([]byte{}, k...))
		}
		for _, ik := range due {
			if len(ik) >= 8 {
				sk := ik[8:]
				e, err := readState(tx, sk)
				if err != nil {
					return err
				}
				// Only the entry this index key is for, and only once expired.
				if e != nil && e.ExpiresAt != nil && bytes.Equal(expiryKey(*e.ExpiresAt, sk), ik) && e.Expired(at) {
					if err := tx.Bucket(bucketState).Delete(sk); err != nil {
						return err
					}
					n++
				}
			}
			if err := idx.Delete(ik); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// expiryKey is the key of bucketStateExpiry for a state value under k
// that expires at at.
func expiryKey(at time.Time, k []byte) []byte {
	return append(u64(at.UnixMicro()), k...)
}

// readState returns the state value under k, expired or not (nil when
// there is none).
func readState(tx *bolt.Tx, k []byte) (*store.StateEntry, error) {
	v := tx.Bucket(bucketState).Get(k)
	if v == nil {
		return nil, nil
	}
	e := &store.StateEntry{}
	if err := json.Unmarshal(v, e); err != nil {
		return nil, fmt.Errorf("state %q: %w", k, err)
	}
	return e, nil
}

// writeState stores e under k in place of old (nil when none), keeping the
// expiry index in step.
func writeState(tx *bolt.Tx, k []byte, old, e *store.StateEntry) error {
	body, err := json.Marshal(e)
	if err != nil {
		return err
	}
	idx := tx.Bucket(bucketStateExpiry)
	if old != nil && old.ExpiresAt != nil {
		if err := idx.Delete(expiryKey(*old.ExpiresAt, k)); err != nil {
			return err
		}
	}
	if e.ExpiresAt != nil {
		if err := idx.Put(expiryKey(*e.ExpiresAt, k), nil); err != nil {
			return err
		}
	}
	return tx.Bucket(bucketState).Put(k, body)
}

// removeState deletes the state value old under k and its expiry index key.
func removeState(tx *bolt.Tx, k []byte, old *store.StateEntry) error {
	if old.ExpiresAt != nil {
		if err := tx.Bucket(bucketStateExpiry).Delete(expiryKey(*old.ExpiresAt, k)); err != nil {
			return err
		}
	}
	return tx.Bucket(bucketState).Delete(k)
}

func logPrefix(st store.LogStream) []byte {
	return append(key(st.Name, st.TenantID, st.Key), 0)
}

// AppendLog implements store.Runtime.
func (s *Store) AppendLog(ctx context.Context, st store.LogStream, entries []json.RawMessage) error {
	if st.Name == "" {
		return fmt.Errorf("%w: log stream needs a name", store.ErrInvalid)
	}
	if err := validKey(st.Name, st.TenantID, st.Key); err != nil {
		return err
	}
	for _, e := range entries {
		if !json.Valid(e) {
			return fmt.Errorf("%w: log entry is not valid JSON", store.ErrInvalid)
		}
	}
	// The fields a search reads, parsed before the writer is taken.
	metas := make([]store.DecisionFields, len(entries))
	for i, e := range entries {
		metas[i] = store.ParseDecisionFields(e)
	}
	return s.update(ctx, func(tx *bolt.Tx) error {
		logs, idx := tx.Bucket(bucketLogs), tx.Bucket(bucketLogIx)
		prefix := logPrefix(st)
		at, err := appendTime(tx)
		if err != nil {
			return err
		}
		for i, data := range entries {
			seq, err := logs.NextSequence()
			if err != nil {
				return err
			}
			body, err := json.Marshal(store.LogEntry{ID: strconv.FormatUint(seq, 10), Time: at, Data: data})
			if err != nil {
				return err
			}
			if err := logs.Put(u64(seq), body); err != nil {
				return err
			}
			if err := idx.Put(append(append([]byte{}, prefix...), u64(seq)...), encodeLogMeta(at, &metas[i])); err != nil {
				return err
			}
		}
		return nil
	})
}

// TrimLog implements store.Runtime.
func (s *Store) TrimLog(ctx context.Context, st store.LogStream, keep int) (int, error) {
	removed := 0
	prefix := logPrefix(st)
	err := s.update(ctx, func(tx *bolt.Tx) error {
		idx, logs := tx.Bucket(bucketLogIx), tx.Bucket(bucketLogs)
		var keys [][]byte
		c := idx.Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			keys = append(keys, append([]byte{}, k...))
		}
		if len(keys) <= keep {
			return nil
		}
		for _, k := range keys[:len(keys)-max(keep, 0)] {
			if err := idx.Delete(k); err != nil {
				return err
			}
			if err := logs.Delete(k[len(prefix):]); err != nil {
				return err
			}
			removed++
		}
		return nil
	})
	return removed, err
}

// ClaimBundleRevision implements store.Runtime in one write transaction
// (after a read that answers when the recorded content has this hash).
func (s *Store) ClaimBundleRevision(ctx context.Context, tenantID, gatewayID, contentHash string, candidate int64) (int64, error) {
	if err := store.CheckBundleClaim(tenantID, gatewayID, contentHash, candidate); err != nil {
		return 0, err
	}
	if err := validKey(tenantID, gatewayID); err != nil {
		return 0, err
	}
	k := key(tenantID, gatewayID)
	read := func(tx *bolt.Tx) (bundleRevision, bool, error) {
		var cur bundleRevision
		v := tx.Bucket(bucketBundleRevs).Get(k)
		if v == nil {
			return cur, false, nil
		}
		if err := json.Unmarshal(v, &cur); err != nil {
			return cur, false, fmt.Errorf("bundle revision of %s/%s: %w", tenantID, gatewayID, err)
		}
		return cur, true, nil
	}
	var rev int64
	err := s.db.View(func(tx *bolt.Tx) error {
		cur, ok, err := read(tx)
		if ok && cur.Hash == contentHash {
			rev = cur.Revision
		}
		return err
	})
	if err != nil || rev != 0 {
		return rev, err
	}
	err = s.update(ctx, func(tx *bolt.Tx) error {
		cur, ok, err := read(tx)
		switch {
		case err != nil:
			return err
		case ok && cur.Hash == contentHash:
			rev = cur.Revision
			return nil
		case ok && cur.Revision >= candidate:
			return store.BundleClaimConflict(tenantID, gatewayID, candidate, cur.Revision)
		}
		body, err := json.Marshal(bundleRevision{Hash: contentHash, Revision: candidate})
		if err != nil {
			return err
		}
		rev = candidate
		return tx.Bucket(bucketBundleRevs).Put(k, body)
	})
	if err != nil {
		return 0, err
	}
	return rev, nil
}

// migrateBundleRevisions carries the runtime state of kind
// legacyBundleStateKind over into bucketBundleRevs and removes it. It runs
// in Open's transaction, only when that created the bucket.
func migrateBundleRevisions(tx *bolt.Tx) error {
	state, revs := tx.Bucket(bucketState), tx.Bucket(bucketBundleRevs)
	prefix := append([]byte(legacyBundleStateKind), 0)
	var doomed [][]byte
	c := state.Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		doomed = append(doomed, append([]byte{}, k...))
		var e store.StateEntry
		var br bundleRevision
		if json.Unmarshal(v, &e) != nil || json.Unmarshal(e.Value, &br) != nil || br.Hash == "" || br.Revision <= 0 {
			continue
		}
		body, err := json.Marshal(br)
		if err != nil {
			return err
		}
		if err := revs.Put(key(e.TenantID, e.ID), body); err != nil {
			return err
		}
	}
	for _, k := range doomed {
		if err := state.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// deleteTenantRuntime removes a tenant's state, logs and bundle revisions
// inside tx.
func deleteTenantRuntime(tx *bolt.Tx, tenantID string) error {
	revs := tx.Bucket(bucketBundleRevs)
	prefix := append([]byte(tenantID), 0)
	var gone [][]byte
	rc := revs.Cursor()
	for k, _ := rc.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = rc.Next() {
		gone = append(gone, append([]byte{}, k...))
	}
	for _, k := range gone {
		if err := revs.Delete(k); err != nil {
			return err
		}
	}
	state := tx.Bucket(bucketState)
	var doomed [][]byte
	c := state.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		if parts := bytes.SplitN(k, []byte{0}, 3); len(parts) == 3 && string(parts[1]) == tenantID {
			doomed = append(doomed, append([]byte{}, k...))
		}
	}
	for _, k := range doomed {
		old, err := readState(tx, k)
		if err != nil {
			return err
		}
		if err := removeState(tx, k, old); err != nil {
			return err
		}
	}
	idx, logs := tx.Bucket(bucketLogIx), tx.Bucket(bucketLogs)
	doomed = doomed[:0]
	c = idx.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		if parts := bytes.SplitN(k, []byte{0}, 3); len(parts) == 3 && string(parts[1]) == tenantID {
			doomed = append(doomed, append([]byte{}, k...))
		}
	}
	for _, k := range doomed {
		if err := idx.Delete(k); err != nil {
			return err
		}
		if err := logs.Delete(k[len(k)-8:]); err != nil {
			return err
		}
	}
	return nil
}
