package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/gatehouse-dev/gatehouse/store"
)

// concurrencyTests: concurrent writers are serialised without losing an
// update or sharing a revision.
func concurrencyTests() []test {
	return []test{
		{name: "concurrent writers lose no update and never share a revision", fn: testConcurrentWriters},
		{name: "a read and an unconditional write in one transaction lose no concurrent update", fn: testReadModifyWriteInTx},
	}
}

func testConcurrentWriters(t *testing.T, h Harness) {
	s := open(t, h)
	ctx := ctxT(t)
	create(t, s, obj("counters", "t1", "c", "", widget{}))
	const writers, increments = 8, 15
	var wg sync.WaitGroup
	errs := make(chan error, writers*2)
	revs := make(chan int64, writers*increments*2)
	for w := 0; w < writers; w++ {
		wg.Add(2)
		go func(w int) { // read-modify-write with optimistic concurrency
			defer wg.Done()
			for i := 0; i < increments; {
				cur, err := s.Get(ctx, "counters", "t1", "c")
				if err != nil {
					errs <- err
					return
				}
				n := specOf(t, cur).Count
				rev, err := s.Update(ctx, func(ctx context.Context, tx store.Tx) error {
					return tx.Update(ctx, obj("counters", "t1", "c", "", widget{Count: n + 1}), cur.Revision)
				})
				if errors.Is(err, store.ErrConflict) {
					continue // someone else won; re-read and retry
				}
				if err != nil {
					errs <- err
					return
				}
				revs <- rev
				i++
			}
		}(w)
		go func(w int) { // independent creates
			defer wg.Done()
			for i := 0; i < increments; i++ {
				rev, err := s.Update(ctx, func(ctx context.Context, tx store.Tx) error {
					return tx.Create(ctx, obj("items", "t1", fmt.Sprintf("w%d-%d", w, i), "", widget{}))
				})
				if err != nil {
					errs <- err
					return
				}
				revs <- rev
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	close(revs)
	for err := range errs {
		t.Fatalf("writer failed: %v", err)
	}
	c, err := s.Get(ctx, "counters", "t1", "c")
	if err != nil {
		t.Fatal(err)
	}
	if n := specOf(t, c).Count; n != writers*increments {
		t.Fatalf("lost updates: counter is %d, want %d", n, writers*increments)
	}
	items := listAll(t, s, store.Query{Kind: "items", TenantID: "t1", Limit: 50})
	if len(items) != writers*increments {
		t.Fatalf("lost creates: %d items, want %d", len(items), writers*increments)
	}
	seen := map[int64]bool{}
	for r := range revs {
		if seen[r] {
			t.Fatalf("two transactions were given revision %d", r)
		}
		seen[r] = true
	}
	// The change log holds every transaction exactly once, in order.
	ch, err := s.Watch(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	evs := collect(t, ch, 1+2*writers*increments)
	for i := 1; i < len(evs); i++ {
		if evs[i].Revision != evs[i-1].Revision+1 {
			t.Fatalf("change log gap or disorder: %d after %d", evs[i].Revision, evs[i-1].Revision)
		}
	}
}

// testReadModifyWriteInTx: a read followed by an unconditional write in one
// transaction must not lose concurrent updates (writers are serialised).
func testReadModifyWriteInTx(t *testing.T, h Harness) {
	s := open(t, h)
	ctx := ctxT(t)
	create(t, s, obj("counters", "t1", "c", "", widget{}))
	const writers, increments = 6, 10
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < increments; i++ {
				_, err := s.Update(ctx, func(ctx context.Context, tx store.Tx) error {
					cur, err := tx.Get(ctx, "counters", "t1", "c")
					if err != nil {
						return err
					}
					var w widget
					if err := json.Unmarshal(cur.Spec, &w); err != nil {
						return err
					}
					return tx.Update(ctx, obj("counters", "t1", "c", "", widget{Count: w.Count + 1}), 0)
				})
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("writer failed: %v", err)
	}
	c, err := s.Get(ctx, "counters", "t1", "c")
	if err != nil {
		t.Fatal(err)
	}
	if n := specOf(t, c).Count; n != writers*increments {
		t.Fatalf("lost updates: counter is %d, want %d", n, writers*increments)
	}
}
