package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// DefaultTimeout bounds one store call when nothing else is configured
// (gatehouse serve --store-timeout).
const DefaultTimeout = 5 * time.Second

// The runtime state value Ping writes, while the storage is full, to learn
// whether space is back.
const (
	probeKind = "store-probe"
	probeID   = "readyz"
)

// DeadlineStore is a Store whose every call runs under a deadline, so that
// a hung or unreachable backend makes callers wait at most that long. A
// call that overruns it fails with an error wrapping ErrUnavailable (unless
// the caller's own context ended first: then the caller's error is
// returned as it is). Update and View give their function the deadline's
// context, so a whole transaction is bounded. Watch streams are not: they
// run as long as their context.
//
// It also remembers that the storage is full: after a call failed with
// ErrStorageFull, Ping fails with ErrStorageFull too until a write
// succeeds again (Ping then tries a small runtime state write itself), so
// a readiness check reports the condition and notices its end.
type DeadlineStore struct {
	st      Store
	timeout time.Duration
	full    atomic.Bool

	errors   *prometheus.CounterVec
	duration *prometheus.HistogramVec
	fullG    prometheus.Gauge
}

var _ Store = (*DeadlineStore)(nil)

// WithDeadline wraps st so that each of its calls runs under timeout
// (DefaultTimeout when timeout is not positive).
func WithDeadline(st Store, timeout time.Duration) *DeadlineStore {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	return &DeadlineStore{
		st:      st,
		timeout: timeout,
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_store_errors_total",
			Help: "Store calls that failed because the store was unavailable (down, hung, past --store-timeout) or out of space, by operation.",
		}, []string{"op", "error"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "gatehouse_store_call_duration_seconds",
			Help:    "Duration of store calls by operation (whole transactions for update and view).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"op"}),
		fullG: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gatehouse_store_storage_full",
			Help: "1 while the store is out of space (a write failed with disk full and none succeeded since).",
		}),
	}
}

// Timeout is the deadline of each call.
func (d *DeadlineStore) Timeout() time.Duration { return d.timeout }

// Unwrap returns the wrapped store.
func (d *DeadlineStore) Unwrap() Store { return d.st }

// StorageFull reports whether the last write failed for want of space and
// none succeeded since.
func (d *DeadlineStore) StorageFull() bool { return d.full.Load() }

// RegisterMetrics registers the store metrics with reg:
// gatehouse_store_errors_total{op,error}, gatehouse_store_call_duration_seconds{op}
// and gatehouse_store_storage_full.
func (d *DeadlineStore) RegisterMetrics(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{d.errors, d.duration, d.fullG} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("register store metrics: %w", err)
		}
	}
	return nil
}

// call runs fn under the deadline and classifies its error.
func call[T any](d *DeadlineStore, ctx context.Context, op string, write bool, fn func(ctx context.Context) (T, error)) (T, error) {
	cctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	start := time.Now()
	v, err := fn(cctx)
	d.duration.WithLabelValues(op).Observe(time.Since(start).Seconds())
	return v, d.classify(ctx, cctx, op, write, err)
}

func (d *DeadlineStore) classify(parent, cctx context.Context, op string, write bool, err error) error {
	if err == nil {
		if write {
			d.setFull(false)
		}
		return nil
	}
	if parent.Err() == nil && errors.Is(cctx.Err(), context.DeadlineExceeded) &&
		!errors.Is(err, ErrUnavailable) && !errors.Is(err, ErrStorageFull) {
		err = fmt.Errorf("%w: %s did not answer within %s: %w", ErrUnavailable, op, d.timeout, err)
	}
	switch {
	case errors.Is(err, ErrStorageFull):
		d.setFull(true)
		d.errors.WithLabelValues(op, "storage_full").Inc()
	case errors.Is(err, ErrUnavailable):
		d.errors.WithLabelValues(op, "unavailable").Inc()
	}
	return err
}

func (d *DeadlineStore) setFull(full bool) {
	if d.full.Swap(full) != full {
		if full {
			d.fullG.Set(1)
		} else {
			d.fullG.Set(0)
		}
	}
}

// Get implements Reader.
func (d *DeadlineStore) Get(ctx context.Context, kind, tenantID, id string) (*Object, error) {
	return call(d, ctx, "get", false, func(ctx context.Context) (*Object, error) { return d.st.Get(ctx, kind, tenantID, id) })
}

// GetByName implements Reader.
func (d *DeadlineStore) GetByName(ctx context.Context, kind, tenantID, name string) (*Object, error) {
	return call(d, ctx, "get_by_name", false, func(ctx context.Context) (*Object, error) {
		return d.st.GetByName(ctx, kind, tenantID, name)
	})
}

// List implements Reader.
func (d *DeadlineStore) List(ctx context.Context, q Query) (*Page, error) {
	return call(d, ctx, "list", false, func(ctx context.Context) (*Page, error) { return d.st.List(ctx, q) })
}

// ListEvents implements Reader.
func (d *DeadlineStore) ListEvents(ctx context.Context, q EventQuery) (*EventPage, error) {
	return call(d, ctx, "list_events", false, func(ctx context.Context) (*EventPage, error) { return d.st.ListEvents(ctx, q) })
}

// Revision implements Reader.
func (d *DeadlineStore) Revision(ctx context.Context) (int64, error) {
	return call(d, ctx, "revision", false, func(ctx context.Context) (int64, error) { return d.st.Revision(ctx) })
}

// PutState implements Runtime.
func (d *DeadlineStore) PutState(ctx context.Context, kind, tenantID, id string, value json.RawMessage) error {
	_, err := call(d, ctx, "put_state", true, func(ctx context.Context) (struct{}, error) {
		return struct{}{}, d.st.PutState(ctx, kind, tenantID, id, value)
	})
	return err
}

// PutStateTTL implements Runtime.
func (d *DeadlineStore) PutStateTTL(ctx context.Context, kind, tenantID, id string, value json.RawMessage, ttl time.Duration) error {
	_, err := call(d, ctx, "put_state", true, func(ctx context.Context) (struct{}, error) {
		return struct{}{}, d.st.PutStateTTL(ctx, kind, tenantID, id, value, ttl)
	})
	return err
}

// PutStateIfAbsent implements Runtime. Only a call that created the value
// proves there is space again.
func (d *DeadlineStore) PutStateIfAbsent(ctx context.Context, kind, tenantID, id string, value json.RawMessage, ttl time.Duration) (bool, error) {
	created, err := call(d, ctx, "put_state_if_absent", false, func(ctx context.Context) (bool, error) {
		return d.st.PutStateIfAbsent(ctx, kind, tenantID, id, value, ttl)
	})
	if err == nil && created {
		d.setFull(false)
	}
	return created, err
}

// TakeState implements Runtime.
func (d *DeadlineStore) TakeState(ctx context.Context, kind, tenantID, id string) (*StateEntry, bool, error) {
	type taken struct {
		e  *StateEntry
		ok bool
	}
	r, err := call(d, ctx, "take_state", false, func(ctx context.Context) (taken, error) {
		e, ok, err := d.st.TakeState(ctx, kind, tenantID, id)
		return taken{e, ok}, err
	})
	return r.e, r.ok, err
}

// SweepExpiredState implements Runtime.
func (d *DeadlineStore) SweepExpiredState(ctx context.Context, limit int) (int, error) {
	return call(d, ctx, "sweep_expired_state", false, func(ctx context.Context) (int, error) {
		return d.st.SweepExpiredState(ctx, limit)
	})
}

// GetState implements Runtime.
func (d *DeadlineStore) GetState(ctx context.Context, kind, tenantID, id string) (*StateEntry, error) {
	return call(d, ctx, "get_state", false, func(ctx context.Context) (*StateEntry, error) {
		return d.st.GetState(ctx, kind, tenantID, id)
	})
}

// ListState implements Runtime.
func (d *DeadlineStore) ListState(ctx context.Context, kind, tenantID string) ([]*StateEntry, error) {
	return call(d, ctx, "list_state", false, func(ctx context.Context) ([]*StateEntry, error) {
		return d.st.ListState(ctx, kind, tenantID)
	})
}

// DeleteState implements Runtime.
func (d *DeadlineStore) DeleteState(ctx context.Context, kind, tenantID, id string) error {
	_, err := call(d, ctx, "delete_state", false, func(ctx context.Context) (struct{}, error) {
		return struct{}{}, d.st.DeleteState(ctx, kind, tenantID, id)
	})
	return err
}

// AppendLog implements Runtime.
func (d *DeadlineStore) AppendLog(ctx context.Context, stream LogStream, entries []json.RawMessage) error {
	_, err := call(d, ctx, "append_log", true, func(ctx context.Context) (struct{}, error) {
		return struct{}{}, d.st.AppendLog(ctx, stream, entries)
	})
	return err
}

// ListLog implements Runtime.
func (d *DeadlineStore) ListLog(ctx context.Context, q LogQuery) (*LogPage, error) {
	return call(d, ctx, "list_log", false, func(ctx context.Context) (*LogPage, error) { return d.st.ListLog(ctx, q) })
}

// CountLog implements Runtime.
func (d *DeadlineStore) CountLog(ctx context.Context, stream LogStream, f LogFilter) ([]LogPolicyCount, error) {
	return call(d, ctx, "count_log", false, func(ctx context.Context) ([]LogPolicyCount, error) { return d.st.CountLog(ctx, stream, f) })
}

// TrimLog implements Runtime.
func (d *DeadlineStore) TrimLog(ctx context.Context, stream LogStream, keep int) (int, error) {
	return call(d, ctx, "trim_log", false, func(ctx context.Context) (int, error) { return d.st.TrimLog(ctx, stream, keep) })
}

// ClaimBundleRevision implements Runtime.
func (d *DeadlineStore) ClaimBundleRevision(ctx context.Context, tenantID, gatewayID, contentHash string, candidateRevision int64) (int64, error) {
	return call(d, ctx, "claim_bundle_revision", false, func(ctx context.Context) (int64, error) {
		return d.st.ClaimBundleRevision(ctx, tenantID, gatewayID, contentHash, candidateRevision)
	})
}

// Update implements Store; fn runs under the call's deadline. A write that
// fails with ErrUnavailable may have committed.
func (d *DeadlineStore) Update(ctx context.Context, fn func(ctx context.Context, tx Tx) error) (int64, error) {
	cctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	start := time.Now()
	rev, err := d.st.Update(cctx, fn)
	d.duration.WithLabelValues("update").Observe(time.Since(start).Seconds())
	// Only a transaction that wrote proves there is space again.
	return rev, d.classify(ctx, cctx, "update", rev != 0, err)
}

// View implements Store; fn runs under the call's deadline.
func (d *DeadlineStore) View(ctx context.Context, fn func(ctx context.Context, r Reader) error) error {
	_, err := call(d, ctx, "view", false, func(ctx context.Context) (struct{}, error) {
		return struct{}{}, d.st.View(ctx, fn)
	})
	return err
}

// Watch implements Store. Starting the watch is bounded; the stream runs
// as long as ctx (a hung backend shows as a stream that waits, or as an
// error event when the backend notices).
func (d *DeadlineStore) Watch(ctx context.Context, fromRevision int64) (<-chan WatchEvent, error) {
	return d.st.Watch(ctx, fromRevision)
}

// Ping implements Store: the backend's ping under the deadline, then, while
// the storage is known to be full, a small runtime state write (a value of
// kind "store-probe"): ErrStorageFull until it succeeds.
func (d *DeadlineStore) Ping(ctx context.Context) error {
	_, err := call(d, ctx, "ping", false, func(ctx context.Context) (struct{}, error) { return struct{}{}, d.st.Ping(ctx) })
	if err != nil || !d.full.Load() {
		return err
	}
	body, _ := json.Marshal(map[string]any{"at": time.Now().UTC()})
	if err := d.PutState(ctx, probeKind, "", probeID, body); err != nil {
		if errors.Is(err, ErrStorageFull) {
			return err
		}
		return fmt.Errorf("storage was full; probe write: %w", err)
	}
	return nil
}

// Close implements Store.
func (d *DeadlineStore) Close() error { return d.st.Close() }
