package storetest

import (
	"context"
	"testing"

	"github.com/gatehouse-dev/gatehouse/store"
)

// durabilityTests: what was committed is there after a reopen.
func durabilityTests() []test {
	return []test{
		{name: "a reopened store keeps its objects, events, revision and history", fn: testReopen},
	}
}

func testReopen(t *testing.T, h Harness) {
	s := h.Open(t)
	o := obj("widgets", "t1", "a", "alpha", widget{Count: 7})
	rev := create(t, s, o)
	mustUpdate(t, s, func(ctx context.Context, tx store.Tx) error {
		return tx.AppendEvent(ctx, &store.Event{TenantID: "t1", Actor: "me", Action: "create", Kind: "widgets", ObjectID: "a"})
	})
	last, _ := s.Revision(ctxT(t))
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	s2 := open(t, h)
	ctx := ctxT(t)
	if !t.Run("objects, events and the revision are kept", func(t *testing.T) {
		got, err := s2.Get(ctx, "widgets", "t1", "a")
		if err != nil || got.UID != o.UID || got.Revision != rev || specOf(t, got).Count != 7 {
			t.Fatalf("after reopen: %v %+v", err, got)
		}
		if cur, _ := s2.Revision(ctx); cur != last {
			t.Fatalf("revision after reopen %d, want %d", cur, last)
		}
		if ev, err := s2.ListEvents(ctx, store.EventQuery{TenantID: "t1"}); err != nil || len(ev.Items) != 1 {
			t.Fatalf("events after reopen: %v %+v", err, ev)
		}
	}) {
		return
	}
	var next int64
	if !t.Run("revisions continue after the last one", func(t *testing.T) {
		next = create(t, s2, obj("widgets", "t1", "b", "", widget{}))
		if next != last+1 {
			t.Fatalf("revision after reopen continued at %d, want %d", next, last+1)
		}
	}) {
		return
	}
	t.Run("the change feed holds the history from before the reopen", func(t *testing.T) {
		ch, err := s2.Watch(ctx, 0)
		if err != nil {
			t.Fatal(err)
		}
		if evs := collect(t, ch, 3); evs[0].Revision != rev || evs[2].Revision != next {
			t.Fatalf("history after reopen: %+v", evs)
		}
	})
}
