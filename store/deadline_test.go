package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/gatehouse-dev/gatehouse/store"
)

// hung is a backend that answers nothing until the caller's context ends,
// as a hung database does behind a driver that honours contexts.
type hung struct{ store.Store }

func (hung) Get(ctx context.Context, kind, tenantID, id string) (*store.Object, error) {
	<-ctx.Done()
	return nil, fmt.Errorf("read: %w", ctx.Err())
}

func (hung) Update(ctx context.Context, fn func(ctx context.Context, tx store.Tx) error) (int64, error) {
	<-ctx.Done()
	return 0, fmt.Errorf("begin: %w", ctx.Err())
}

func (hung) Ping(ctx context.Context) error {
	<-ctx.Done()
	return ctx.Err()
}

func TestWithDeadlineBoundsEveryCall(t *testing.T) {
	st := store.WithDeadline(hung{}, 100*time.Millisecond)
	reg := prometheus.NewRegistry()
	if err := st.RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	calls := map[string]func() error{
		"get": func() error { _, err := st.Get(ctx, "k", "t", "a"); return err },
		"update": func() error {
			_, err := st.Update(ctx, func(context.Context, store.Tx) error { return nil })
			return err
		},
		"ping": func() error { return st.Ping(ctx) },
	}
	for op, call := range calls {
		start := time.Now()
		err := call()
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%s took %s with a 100ms deadline", op, d)
		}
		if !errors.Is(err, store.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s: %v, want ErrUnavailable wrapping the deadline", op, err)
		}
		if n := value(st.ErrorsCounter(op, "unavailable")); n != 1 {
			t.Errorf("gatehouse_store_errors_total{op=%q,error=unavailable} = %v, want 1", op, n)
		}
	}
}

// The caller's own end (cancelled, or its own earlier deadline) is not the
// store being unavailable.
func TestWithDeadlineKeepsTheCallersEnd(t *testing.T) {
	st := store.WithDeadline(hung{}, 10*time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	if _, err := st.Get(ctx, "k", "t", "a"); !errors.Is(err, context.Canceled) || errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("cancelled: %v", err)
	}
	dctx, dcancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer dcancel()
	start := time.Now()
	_, err := st.Get(dctx, "k", "t", "a")
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("caller's deadline: %v", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatal("the caller's earlier deadline was not used")
	}
}

// full is a backend whose writes fail for want of space while space is
// false.
type full struct {
	store.Store
	space *bool
	puts  *int
}

func (f full) Ping(ctx context.Context) error { return nil }

func (f full) PutState(ctx context.Context, kind, tenantID, id string, value json.RawMessage) error {
	*f.puts++
	if !*f.space {
		return fmt.Errorf("put: %w", store.ErrStorageFull)
	}
	return nil
}

func TestWithDeadlineRemembersStorageFull(t *testing.T) {
	space, puts := true, 0
	st := store.WithDeadline(full{space: &space, puts: &puts}, time.Second)
	ctx := context.Background()
	if err := st.Ping(ctx); err != nil || puts != 0 {
		t.Fatalf("ping of a healthy store: %v (%d probe writes, want none)", err, puts)
	}
	space = false
	if err := st.PutState(ctx, "k", "", "x", json.RawMessage(`{}`)); !errors.Is(err, store.ErrStorageFull) {
		t.Fatal(err)
	}
	if err := st.Ping(ctx); !errors.Is(err, store.ErrStorageFull) {
		t.Fatalf("ping after a disk-full write: %v", err)
	}
	if n := value(st.StorageFullGauge()); n != 1 {
		t.Fatalf("gatehouse_store_storage_full = %v", n)
	}
	space = true
	if err := st.Ping(ctx); err != nil {
		t.Fatalf("ping once space is back: %v", err)
	}
	if st.StorageFull() || value(st.StorageFullGauge()) != 0 {
		t.Fatal("still marked full")
	}
	before := puts
	if err := st.Ping(ctx); err != nil || puts != before {
		t.Fatalf("ping probes again after recovery: %v, %d writes", err, puts-before)
	}
}

// value reads a counter's or gauge's current value.
func value(m prometheus.Metric) float64 {
	var out dto.Metric
	if err := m.Write(&out); err != nil {
		panic(err)
	}
	if out.Counter != nil {
		return out.Counter.GetValue()
	}
	return out.Gauge.GetValue()
}
