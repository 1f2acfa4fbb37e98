package admin

import (
	"context"
	"errors"
	"testing"
	"time"
)

// One job per tenant at a time: a second job of the same tenant waits for
// the first and gives up after its wait; another tenant's job runs
// meanwhile; a released turn is the next waiter's; idle tenants leave
// nothing behind.
func TestTenantGate(t *testing.T) {
	var g tenantGate
	ctx := context.Background()
	releaseA, err := g.acquire(ctx, "a", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.acquire(ctx, "a", 20*time.Millisecond); !errors.Is(err, errTenantBusy) {
		t.Fatalf("a second job of tenant a: %v", err)
	}
	releaseB, err := g.acquire(ctx, "b", 20*time.Millisecond)
	if err != nil {
		t.Fatalf("tenant b waits for tenant a: %v", err)
	}
	releaseB()

	got := make(chan error, 1)
	go func() {
		release, err := g.acquire(ctx, "a", time.Minute)
		if err == nil {
			release()
		}
		got <- err
	}()
	// The waiter is registered before the turn is released (users == 2).
	for {
		g.mu.Lock()
		n := g.slots["a"].users
		g.mu.Unlock()
		if n == 2 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	releaseA()
	if err := <-got; err != nil {
		t.Fatalf("the waiter after the release: %v", err)
	}

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	// A free turn and an ended context are both ready: either may win,
	// and neither leaves anything held.
	if release, err := g.acquire(cancelled, "c", time.Minute); err == nil {
		release()
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.slots) != 0 {
		t.Fatalf("idle tenants left slots: %v", g.slots)
	}
}
