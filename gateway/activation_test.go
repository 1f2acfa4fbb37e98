package gateway

import (
	"context"
	"errors"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	"github.com/gatehouse-dev/gatehouse/policies"
)

// TestReplacedEnginesAreReleased activates two revisions through the
// follower, with the first one's decisions logged, and checks that nothing
// keeps the first engine once the second is active; and that the
// follower's engines keep no copy of the data for the Rego entrypoint.
func TestReplacedEnginesAreReleased(t *testing.T) {
	ctx := context.Background()
	key, err := policies.GenerateSigningKey("acme")
	if err != nil {
		t.Fatal(err)
	}
	f, engines := newFollowerFixture(t, "http://127.0.0.1:1", "", key)
	if _, err := f.activate(ctx, signedBundle(t, key, 1, nil), "test"); err != nil {
		t.Fatal(err)
	}
	first := engines.Get("acme", "edge")
	if first == nil {
		t.Fatal("no engine")
	}
	if _, err := first.rego.Decision(ctx, map[string]any{}); err == nil {
		t.Error("the follower's engine evaluates the Rego entrypoint: it kept all of the data")
	}
	enc := newEventEncoder(&DecisionLogger{})
	enc.prefix(first)
	var released atomic.Bool
	runtime.AddCleanup(first, func(*atomic.Bool) { released.Store(true) }, &released)
	first = nil

	if _, err := f.activate(ctx, signedBundle(t, key, 2, nil), "test"); err != nil {
		t.Fatal(err)
	}
	if e := engines.Get("acme", "edge"); e == nil || e.Revision != "2" {
		t.Fatalf("revision 2 is not active: %v", e)
	}
	testkit.Eventually(t, followerWait, func() error {
		runtime.GC()
		if !released.Load() {
			return errors.New("the replaced engine is still reachable")
		}
		return nil
	})
	runtime.KeepAlive(enc)
}
