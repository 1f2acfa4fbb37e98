package gatewaycred_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/gatewaycred"
	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	"github.com/gatehouse-dev/gatehouse/store"
)

// usageStore counts (and can fail) the writes of credentials' last use.
type usageStore struct {
	store.Store
	puts atomic.Int32
	fail atomic.Bool
	// block, when set, holds every write until it is closed.
	block chan struct{}
}

func (s *usageStore) PutState(ctx context.Context, kind, tid, id string, v json.RawMessage) error {
	if kind == gatewaycred.UsageStateKind {
		s.puts.Add(1)
		if s.block != nil {
			<-s.block
		}
		if s.fail.Load() {
			return errors.New("disk on fire")
		}
	}
	return s.Store.PutState(ctx, kind, tid, id, v)
}

func TestVerifyRecordsLastUseThrottled(t *testing.T) {
	base := testkit.Store(t)
	testkit.Create(t, base, testkit.Tenant("acme"))
	edgeID, edge := createGateway(t, base, "acme", "edge")
	otherID, other := createGateway(t, base, "acme", "other")
	st := &usageStore{Store: base}
	v := gatewaycred.New(st, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx := context.Background()

	before := time.Now().Add(-time.Second)
	for range 5 {
		if _, err := v.VerifyGateway(ctx, edge); err != nil {
			t.Fatal(err)
		}
	}
	v.WaitUsage()
	if n := st.puts.Load(); n != 1 {
		t.Fatalf("5 verifications within a minute wrote the last use %d times, want 1", n)
	}
	used, err := gatewaycred.LastUsed(ctx, base, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if at, ok := used[edgeID]; !ok || at.Before(before.Truncate(time.Second)) || at.After(time.Now()) {
		t.Fatalf("last use of %s: %v (%v), want about now", edgeID, at, used)
	}
	if _, ok := used[otherID]; ok {
		t.Fatalf("an unused credential has a last use: %v", used)
	}
	// Another credential is throttled on its own.
	if _, err := v.VerifyGateway(ctx, other); err != nil {
		t.Fatal(err)
	}
	v.WaitUsage()
	if n := st.puts.Load(); n != 2 {
		t.Fatalf("writes after another credential's first use: %d, want 2", n)
	}
	// A refused credential records nothing.
	if _, err := v.VerifyGateway(ctx, edge+"x"); err == nil {
		t.Fatal("a wrong secret verified")
	}
	v.WaitUsage()
	if n := st.puts.Load(); n != 2 {
		t.Fatalf("writes after a refused credential: %d, want 2", n)
	}
}

func TestLastUseWriteFailureNeitherBlocksNorFailsVerification(t *testing.T) {
	base := testkit.Store(t)
	testkit.Create(t, base, testkit.Tenant("acme"))
	edgeID, edge := createGateway(t, base, "acme", "edge")
	st := &usageStore{Store: base, block: make(chan struct{})}
	st.fail.Store(true)
	v := gatewaycred.New(st, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx := context.Background()

	// The write hangs: the verification answers anyway.
	done := make(chan error, 1)
	go func() { _, err := v.VerifyGateway(ctx, edge); done <- err }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("verify with a failing usage write: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("verification waited for the usage write")
	}
	close(st.block)
	v.WaitUsage()
	// The failed write is tried again at the next use, not a minute later.
	st.fail.Store(false)
	if _, err := v.VerifyGateway(ctx, edge); err != nil {
		t.Fatal(err)
	}
	v.WaitUsage()
	if n := st.puts.Load(); n != 2 {
		t.Fatalf("usage writes: %d, want 2 (the failed one, then its retry)", n)
	}
	used, _ := gatewaycred.LastUsed(ctx, base, "acme")
	if _, ok := used[edgeID]; !ok {
		t.Fatalf("the retried write recorded nothing: %v", used)
	}
}

func TestUsageRecordingOff(t *testing.T) {
	base := testkit.Store(t)
	testkit.Create(t, base, testkit.Tenant("acme"))
	_, edge := createGateway(t, base, "acme", "edge")
	st := &usageStore{Store: base}
	v := gatewaycred.New(st, nil, gatewaycred.WithUsageInterval(0))
	if _, err := v.VerifyGateway(context.Background(), edge); err != nil {
		t.Fatal(err)
	}
	v.WaitUsage()
	if n := st.puts.Load(); n != 0 {
		t.Fatalf("WithUsageInterval(0) still wrote %d times", n)
	}
}
