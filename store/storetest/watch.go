package storetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/store"
)

// watchTests: the change feed delivers every transaction once, in
// revision order, from any revision, to every handle.
func watchTests() []test {
	return []test{
		{name: "the change feed delivers every transaction in order and resumes from any revision", fn: testWatch},
		{name: "a watch from the current revision waits for the next write", fn: testWatchFuture},
		{name: "a second handle sees the first handle's writes", fn: testSecondHandle, multiHandleOnly: true},
	}
}

func collect(t *testing.T, ch <-chan store.WatchEvent, n int) []store.WatchEvent {
	t.Helper()
	var out []store.WatchEvent
	timeout := time.After(20 * time.Second)
	for len(out) < n {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatalf("watch closed after %d events", len(out))
			}
			if ev.Err != nil {
				t.Fatalf("watch error: %v", ev.Err)
			}
			out = append(out, ev)
		case <-timeout:
			t.Fatalf("watch: got %d events, want %d", len(out), n)
		}
	}
	return out
}

func testWatch(t *testing.T, h Harness) {
	s := open(t, h)
	ctx := ctxT(t)
	start, _ := s.Revision(ctx)
	wctx, cancel := context.WithCancel(ctx)
	live, err := s.Watch(wctx, start)
	if err != nil {
		t.Fatal(err)
	}
	var r1, r2, r3 int64
	if !t.Run("a live watch delivers each transaction's changes in order", func(t *testing.T) {
		r1 = create(t, s, obj("widgets", "t1", "a", "", widget{}), obj("widgets", "t1", "b", "", widget{}))
		r2 = mustUpdate(t, s, func(ctx context.Context, tx store.Tx) error {
			return tx.Update(ctx, obj("widgets", "t1", "a", "", widget{Count: 1}), 0)
		})
		r3 = mustUpdate(t, s, func(ctx context.Context, tx store.Tx) error {
			_, err := tx.Delete(ctx, "widgets", "t1", "b", 0, false)
			return err
		})
		evs := collect(t, live, 3)
		if evs[0].Revision != r1 || evs[1].Revision != r2 || evs[2].Revision != r3 {
			t.Fatalf("watch revisions %d %d %d, want %d %d %d", evs[0].Revision, evs[1].Revision, evs[2].Revision, r1, r2, r3)
		}
		if len(evs[0].Changes) != 2 || evs[0].Changes[0].Op != store.OpCreate || evs[0].Changes[0].ID != "a" || evs[0].Changes[1].ID != "b" {
			t.Fatalf("first transaction's changes: %+v", evs[0].Changes)
		}
		if c := evs[1].Changes; len(c) != 1 || c[0].Op != store.OpUpdate || c[0].Kind != "widgets" || c[0].TenantID != "t1" || c[0].Revision != r2 {
			t.Fatalf("update change: %+v", c)
		}
		if c := evs[2].Changes; len(c) != 1 || c[0].Op != store.OpDelete || c[0].ID != "b" {
			t.Fatalf("delete change: %+v", c)
		}
	}) {
		cancel()
		return
	}
	t.Run("the channel closes once the context ends", func(t *testing.T) {
		cancel()
		for range live {
		}
	})
	t.Run("a watch from a revision delivers only later ones", func(t *testing.T) {
		resumed, err := s.Watch(ctx, r1)
		if err != nil {
			t.Fatal(err)
		}
		evs := collect(t, resumed, 2)
		if evs[0].Revision != r2 || evs[1].Revision != r3 {
			t.Fatalf("resume from %d gave %d %d", r1, evs[0].Revision, evs[1].Revision)
		}
	})
	t.Run("a watch from 0 delivers the whole history", func(t *testing.T) {
		all, err := s.Watch(ctx, 0)
		if err != nil {
			t.Fatal(err)
		}
		if evs := collect(t, all, 3); evs[0].Revision != r1 {
			t.Fatalf("watch from 0 started at %d", evs[0].Revision)
		}
	})
}

func testWatchFuture(t *testing.T, h Harness) {
	s := open(t, h)
	ctx := ctxT(t)
	create(t, s, obj("widgets", "t1", "a", "", widget{}))
	cur, _ := s.Revision(ctx)
	ch, err := s.Watch(ctx, cur)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-ch:
		t.Fatalf("watch from the current revision delivered %+v before any write", ev)
	case <-time.After(200 * time.Millisecond):
	}
	r := create(t, s, obj("widgets", "t1", "b", "", widget{}))
	if ev := collect(t, ch, 1)[0]; ev.Revision != r {
		t.Fatalf("got revision %d, want %d", ev.Revision, r)
	}
}

func testSecondHandle(t *testing.T, h Harness) {
	writer := open(t, h)
	watcher := open(t, h)
	ctx := ctxT(t)
	from, _ := watcher.Revision(ctx)
	ch, err := watcher.Watch(ctx, from)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // let the watcher settle into waiting
	for i := 0; i < 3; i++ {
		rev := create(t, writer, obj("widgets", "t1", fmt.Sprintf("x%d", i), "", widget{}))
		start := time.Now()
		ev := collect(t, ch, 1)[0]
		if ev.Revision != rev {
			t.Fatalf("second handle saw revision %d, want %d", ev.Revision, rev)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("change took %v to reach the other handle", d)
		}
	}
	if o, err := watcher.Get(ctx, "widgets", "t1", "x2"); err != nil || o.ID != "x2" {
		t.Fatalf("second handle read: %v", err)
	}
}
