package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/store"
	"github.com/gatehouse-dev/gatehouse/store/embedded"
)

func TestStateTTLRoundsUpToAMicrosecond(t *testing.T) {
	for _, tc := range []struct{ in, want time.Duration }{
		{0, 0}, {time.Nanosecond, time.Microsecond}, {time.Microsecond, time.Microsecond},
		{1500 * time.Nanosecond, 2 * time.Microsecond}, {time.Hour, time.Hour},
	} {
		if got, err := store.StateTTL(tc.in); err != nil || got != tc.want {
			t.Errorf("StateTTL(%s) = %s, %v; want %s", tc.in, got, err, tc.want)
		}
	}
	if _, err := store.StateTTL(-time.Nanosecond); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("a negative ttl: %v", err)
	}
}

// TestStateSweeperRun: the sweeper, run as a component, deletes expired
// values in the background (in batches of 2: a later sweep finds none
// left), keeps the others, and returns nil when its context ends.
func TestStateSweeperRun(t *testing.T) {
	st, err := embedded.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	for _, id := range []string{"a", "b", "c"} {
		if err := st.PutStateTTL(ctx, "codes", "t1", id, json.RawMessage(`{}`), time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.PutState(ctx, "codes", "t1", "kept", json.RawMessage(`{}`)); err != nil {
		t.Fatal(err)
	}
	var swept atomic.Int64
	counting := countingRuntime{Store: st, swept: &swept}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- (&store.StateSweeper{Runtime: counting, Interval: 10 * time.Millisecond, Batch: 2,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}).Run(runCtx)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for swept.Load() < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("the sweeper removed %d of 3 expired values in 10s", swept.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run after its context ended: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	if n, err := st.SweepExpiredState(ctx, 10); err != nil || n != 0 {
		t.Fatalf("a sweep after the sweeper's: %d (%v), want nothing left", n, err)
	}
	if _, err := st.GetState(ctx, "codes", "t1", "kept"); err != nil {
		t.Fatalf("the sweeper removed a value without expiry: %v", err)
	}
}

// countingRuntime counts what its sweeps delete.
type countingRuntime struct {
	store.Store
	swept *atomic.Int64
}

func (c countingRuntime) SweepExpiredState(ctx context.Context, limit int) (int, error) {
	n, err := c.Store.SweepExpiredState(ctx, limit)
	c.swept.Add(int64(n))
	return n, err
}
