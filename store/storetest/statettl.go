package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/store"
)

// stateTTLTests: runtime state that is taken once, created only when
// absent, and expires — what authorization codes, sessions and refresh
// tokens are kept as.
func stateTTLTests() []test {
	return []test{
		{name: "TakeState returns a value exactly once, to one of 32 concurrent takers", fn: testTakeStateOnce},
		{name: "PutStateIfAbsent creates a value exactly once among concurrent writers", fn: testPutStateIfAbsent},
		{name: "an expired value is gone for every read before any sweep", fn: testStateExpiry},
		{name: "one key in two tenants is two values", fn: testStateTenantIsolation},
		{name: "SweepExpiredState deletes expired values only, in bounded batches", fn: testSweepExpiredState},
		{name: "no runtime state call moves the revision or enters the change feed", fn: testStateOutsideRevision},
	}
}

// handles returns the store handles concurrent callers use: two on
// backends that allow several (separate pools, as two replicas), else one.
func handles(t *testing.T, h Harness) []store.Store {
	t.Helper()
	hs := []store.Store{open(t, h)}
	if h.MultiHandle {
		hs = append(hs, open(t, h))
	}
	return hs
}

// waitExpired polls until the value is no longer found, which a short ttl
// makes happen without any sweep; it fails the test after 30s.
func waitExpired(t *testing.T, s store.Store, kind, tenant, id string) {
	t.Helper()
	ctx := ctxT(t)
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := s.GetState(ctx, kind, tenant, id)
		if errors.Is(err, store.ErrNotFound) {
			return
		}
		if err != nil {
			t.Fatalf("get %s/%s/%s while waiting for it to expire: %v", kind, tenant, id, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s/%s/%s has not expired after 30s", kind, tenant, id)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func testTakeStateOnce(t *testing.T, h Harness) {
	hs := handles(t, h)
	s := hs[0]
	ctx := ctxT(t)
	const takers = 32
	for round := range 5 {
		id := fmt.Sprintf("code-%d", round)
		value := json.RawMessage(fmt.Sprintf(`{"round":%d}`, round))
		ttl := time.Duration(0)
		if round%2 == 1 {
			ttl = time.Hour // an expiring value is taken the same way
		}
		if err := s.PutStateTTL(ctx, "oauth-codes", "t1", id, value, ttl); err != nil {
			t.Fatal(err)
		}
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			winners []*store.StateEntry
			errs    []error
		)
		start := make(chan struct{})
		for i := range takers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				e, ok, err := hs[i%len(hs)].TakeState(ctx, "oauth-codes", "t1", id)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err != nil:
					errs = append(errs, err)
				case ok:
					winners = append(winners, e)
				case e != nil:
					errs = append(errs, fmt.Errorf("a losing take returned an entry: %+v", e))
				}
			}()
		}
		close(start)
		wg.Wait()
		if len(errs) > 0 {
			t.Fatalf("round %d: takers failed: %v", round, errs)
		}
		if len(winners) != 1 {
			t.Fatalf("round %d: %d of %d concurrent takers got the value, want exactly 1", round, len(winners), takers)
		}
		w := winners[0]
		var got struct{ Round int }
		if err := json.Unmarshal(w.Value, &got); err != nil || got.Round != round || w.ID != id || w.TenantID != "t1" || w.Kind != "oauth-codes" || w.UpdatedAt.IsZero() {
			t.Fatalf("round %d: the taken entry is %+v (%v)", round, w, err)
		}
		if (ttl > 0) != (w.ExpiresAt != nil) {
			t.Fatalf("round %d: ttl %s, taken entry expires at %v", round, ttl, w.ExpiresAt)
		}
		if _, err := s.GetState(ctx, "oauth-codes", "t1", id); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("round %d: a taken value is still readable: %v", round, err)
		}
		for _, hd := range hs {
			if e, ok, err := hd.TakeState(ctx, "oauth-codes", "t1", id); ok || e != nil || err != nil {
				t.Fatalf("round %d: a second take: %+v %v %v", round, e, ok, err)
			}
		}
	}
	if e, ok, err := s.TakeState(ctx, "oauth-codes", "t1", "never-there"); ok || e != nil || err != nil {
		t.Fatalf("take of a missing value: %+v %v %v", e, ok, err)
	}
}

func testPutStateIfAbsent(t *testing.T, h Harness) {
	hs := handles(t, h)
	s := hs[0]
	ctx := ctxT(t)
	const writers = 32
	for round := range 3 {
		id := fmt.Sprintf("session-%d", round)
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			created []int
			errs    []error
		)
		start := make(chan struct{})
		for i := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				ok, err := hs[i%len(hs)].PutStateIfAbsent(ctx, "sessions", "t1", id, json.RawMessage(fmt.Sprintf(`{"writer":%d}`, i)), time.Hour)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, err)
				} else if ok {
					created = append(created, i)
				}
			}()
		}
		close(start)
		wg.Wait()
		if len(errs) > 0 {
			t.Fatalf("round %d: writers failed: %v", round, errs)
		}
		if len(created) != 1 {
			t.Fatalf("round %d: %d of %d concurrent writers created the value, want exactly 1", round, len(created), writers)
		}
		e, err := s.GetState(ctx, "sessions", "t1", id)
		if err != nil {
			t.Fatal(err)
		}
		var got struct{ Writer int }
		if err := json.Unmarshal(e.Value, &got); err != nil || got.Writer != created[0] || e.ExpiresAt == nil {
			t.Fatalf("round %d: stored %s (expires %v, %v), want the value of writer %d, expiring", round, e.Value, e.ExpiresAt, err, created[0])
		}
	}
	must := func(ok bool, err error, want bool, what string) {
		t.Helper()
		if err != nil || ok != want {
			t.Fatalf("%s: created=%v (%v), want %v", what, ok, err, want)
		}
	}
	ok, err := s.PutStateIfAbsent(ctx, "sessions", "t1", "session-0", json.RawMessage(`{"writer":-1}`), 0)
	must(ok, err, false, "a put-if-absent over a live value")
	if e, _ := s.GetState(ctx, "sessions", "t1", "session-0"); e == nil || sameJSON(e.Value, `{"writer":-1}`) {
		t.Fatalf("a refused put-if-absent changed the value: %+v", e)
	}
	if err := s.DeleteState(ctx, "sessions", "t1", "session-0"); err != nil {
		t.Fatal(err)
	}
	ok, err = s.PutStateIfAbsent(ctx, "sessions", "t1", "session-0", json.RawMessage(`{"writer":-2}`), 0)
	must(ok, err, true, "a put-if-absent after delete")
	if e, err := s.GetState(ctx, "sessions", "t1", "session-0"); err != nil || !sameJSON(e.Value, `{"writer":-2}`) || e.ExpiresAt != nil {
		t.Fatalf("a put-if-absent without ttl: %+v (%v)", e, err)
	}
	ok, err = s.PutStateIfAbsent(ctx, "sessions", "t1", "other", json.RawMessage(`{broken`), 0)
	if !errors.Is(err, store.ErrInvalid) || ok {
		t.Fatalf("a put-if-absent of invalid JSON: %v %v", ok, err)
	}
	ok, err = s.PutStateIfAbsent(ctx, "sessions", "t1", "other", json.RawMessage(`{}`), -time.Second)
	if !errors.Is(err, store.ErrInvalid) || ok {
		t.Fatalf("a put-if-absent with a negative ttl: %v %v", ok, err)
	}
	if _, err := s.GetState(ctx, "sessions", "t1", "other"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a refused put-if-absent stored something: %v", err)
	}
}

func testStateExpiry(t *testing.T, h Harness) {
	s := open(t, h)
	ctx := ctxT(t)
	const short = 200 * time.Millisecond
	before := time.Now()
	if err := s.PutStateTTL(ctx, "codes", "t1", "short", json.RawMessage(`{"n":1}`), short); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.PutStateIfAbsent(ctx, "codes", "t1", "short-ia", json.RawMessage(`{"n":2}`), short); err != nil || !ok {
		t.Fatalf("put-if-absent: %v %v", ok, err)
	}
	if err := s.PutStateTTL(ctx, "codes", "t1", "long", json.RawMessage(`{"n":3}`), time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := s.PutState(ctx, "codes", "t1", "forever", json.RawMessage(`{"n":4}`)); err != nil {
		t.Fatal(err)
	}
	if !t.Run("a value with a ttl says when it expires; one without says nothing", func(t *testing.T) {
		long, err := s.GetState(ctx, "codes", "t1", "long")
		if err != nil {
			t.Fatal(err)
		}
		// Loose bounds: the backend's clock may not be this process's.
		if long.ExpiresAt == nil || long.ExpiresAt.Before(before.Add(time.Hour-time.Minute)) || long.ExpiresAt.After(time.Now().Add(time.Hour+time.Minute)) {
			t.Fatalf("a value put with a ttl of an hour expires at %v (now %v)", long.ExpiresAt, time.Now())
		}
		forever, err := s.GetState(ctx, "codes", "t1", "forever")
		if err != nil || forever.ExpiresAt != nil {
			t.Fatalf("a value put without ttl: %+v (%v)", forever, err)
		}
	}) {
		return
	}
	if !t.Run("once expired, get, list, take and put-if-absent treat it as absent", func(t *testing.T) {
		waitExpired(t, s, "codes", "t1", "short")
		waitExpired(t, s, "codes", "t1", "short-ia")
		list, err := s.ListState(ctx, "codes", "t1")
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != 2 || list[0].ID != "forever" || list[1].ID != "long" {
			t.Fatalf("list after expiry: %+v, want forever and long", list)
		}
		if e, ok, err := s.TakeState(ctx, "codes", "t1", "short"); ok || e != nil || err != nil {
			t.Fatalf("take of an expired value: %+v %v %v", e, ok, err)
		}
		ok, err := s.PutStateIfAbsent(ctx, "codes", "t1", "short-ia", json.RawMessage(`{"n":5}`), time.Hour)
		if err != nil || !ok {
			t.Fatalf("put-if-absent over an expired value: created=%v (%v), want true", ok, err)
		}
		if e, err := s.GetState(ctx, "codes", "t1", "short-ia"); err != nil || !sameJSON(e.Value, `{"n":5}`) || e.ExpiresAt == nil {
			t.Fatalf("the value that replaced an expired one: %+v (%v)", e, err)
		}
	}) {
		return
	}
	if !t.Run("put replaces an expiry: PutState clears it, PutStateTTL sets it", func(t *testing.T) {
		if err := s.PutState(ctx, "codes", "t1", "long", json.RawMessage(`{"n":6}`)); err != nil {
			t.Fatal(err)
		}
		if e, err := s.GetState(ctx, "codes", "t1", "long"); err != nil || e.ExpiresAt != nil {
			t.Fatalf("PutState over an expiring value: %+v (%v), want no expiry", e, err)
		}
		if err := s.PutStateTTL(ctx, "codes", "t1", "forever", json.RawMessage(`{"n":7}`), short); err != nil {
			t.Fatal(err)
		}
		waitExpired(t, s, "codes", "t1", "forever")
		if err := s.PutStateTTL(ctx, "codes", "t1", "x", json.RawMessage(`{}`), -time.Nanosecond); !errors.Is(err, store.ErrInvalid) {
			t.Fatalf("a negative ttl: %v", err)
		}
	}) {
		return
	}
	t.Run("the shortest ttl still expires", func(t *testing.T) {
		if err := s.PutStateTTL(ctx, "codes", "t1", "ns", json.RawMessage(`{}`), time.Nanosecond); err != nil {
			t.Fatal(err)
		}
		waitExpired(t, s, "codes", "t1", "ns")
	})
}

func testStateTenantIsolation(t *testing.T, h Harness) {
	s := open(t, h)
	ctx := ctxT(t)
	for _, tid := range []string{"t1", "t2"} {
		ok, err := s.PutStateIfAbsent(ctx, "codes", tid, "same", json.RawMessage(fmt.Sprintf(`{"tenant":%q}`, tid)), time.Hour)
		if err != nil || !ok {
			t.Fatalf("put-if-absent in %s beside the same key in another tenant: created=%v (%v), want true", tid, ok, err)
		}
	}
	e, ok, err := s.TakeState(ctx, "codes", "t1", "same")
	if err != nil || !ok || !sameJSON(e.Value, `{"tenant":"t1"}`) {
		t.Fatalf("take in t1: %+v %v %v", e, ok, err)
	}
	if e, ok, err := s.TakeState(ctx, "codes", "t1", "same"); ok || e != nil || err != nil {
		t.Fatalf("second take in t1: %+v %v %v", e, ok, err)
	}
	got, err := s.GetState(ctx, "codes", "t2", "same")
	if err != nil || !sameJSON(got.Value, `{"tenant":"t2"}`) {
		t.Fatalf("t2's value after t1's was taken: %+v (%v)", got, err)
	}
	if _, err := s.GetState(ctx, "codes", "", "same"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the system-level key sees a tenant's value: %v", err)
	}
	if list, err := s.ListState(ctx, "codes", "t1"); err != nil || len(list) != 0 {
		t.Fatalf("t1's list after its value was taken: %+v (%v)", list, err)
	}
	if list, err := s.ListState(ctx, "codes", "t2"); err != nil || len(list) != 1 {
		t.Fatalf("t2's list: %+v (%v)", list, err)
	}
	mustUpdate(t, s, func(ctx context.Context, tx store.Tx) error { _, err := tx.DeleteTenant(ctx, "t2"); return err })
	if e, ok, err := s.TakeState(ctx, "codes", "t2", "same"); ok || e != nil || err != nil {
		t.Fatalf("take of a deleted tenant's value: %+v %v %v", e, ok, err)
	}
	if n, err := s.SweepExpiredState(ctx, 100); err != nil || n != 0 {
		t.Fatalf("sweep after a tenant's expiring value went with the tenant: %d (%v), want 0", n, err)
	}
}

func testSweepExpiredState(t *testing.T, h Harness) {
	s := open(t, h)
	ctx := ctxT(t)
	const short = 150 * time.Millisecond
	type key struct{ kind, tenant, id string }
	expiring := []key{{"codes", "t1", "a"}, {"codes", "t1", "b"}, {"codes", "t2", "a"}, {"sessions", "t1", "a"}, {"codes", "", "sys"}}
	kept := []key{{"codes", "t1", "long"}, {"sessions", "t2", "long"}, {"codes", "t1", "forever"}, {"codes", "t1", "renewed"}}
	for _, k := range append(append([]key{}, expiring...), key{"codes", "t1", "renewed"}) {
		if err := s.PutStateTTL(ctx, k.kind, k.tenant, k.id, json.RawMessage(`{"short":true}`), short); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range kept[:2] {
		if err := s.PutStateTTL(ctx, k.kind, k.tenant, k.id, json.RawMessage(`{"long":true}`), time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.PutState(ctx, "codes", "t1", "forever", json.RawMessage(`{"forever":true}`)); err != nil {
		t.Fatal(err)
	}
	for _, k := range expiring {
		waitExpired(t, s, k.kind, k.tenant, k.id)
	}
	waitExpired(t, s, "codes", "t1", "renewed")
	// Renewed after it expired, before any sweep: it must survive the sweep.
	if err := s.PutStateTTL(ctx, "codes", "t1", "renewed", json.RawMessage(`{"renewed":true}`), time.Hour); err != nil {
		t.Fatal(err)
	}
	if n, err := s.SweepExpiredState(ctx, 0); !errors.Is(err, store.ErrInvalid) || n != 0 {
		t.Fatalf("a sweep without a limit: %d %v", n, err)
	}
	var got []int
	total := 0
	for range 10 {
		n, err := s.SweepExpiredState(ctx, 2)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, n)
		total += n
		if n < 2 {
			break
		}
	}
	if total != len(expiring) || got[0] != 2 || got[1] != 2 || got[2] != 1 {
		t.Fatalf("sweeps of 2 removed %v, want [2 2 1] (%d expired values)", got, len(expiring))
	}
	if n, err := s.SweepExpiredState(ctx, 100); err != nil || n != 0 {
		t.Fatalf("a sweep with nothing expired: %d (%v)", n, err)
	}
	for _, k := range kept {
		if _, err := s.GetState(ctx, k.kind, k.tenant, k.id); err != nil {
			t.Fatalf("a value that had not expired (%v) was swept: %v", k, err)
		}
	}
	if e, _ := s.GetState(ctx, "codes", "t1", "renewed"); e == nil || !sameJSON(e.Value, `{"renewed":true}`) {
		t.Fatalf("the renewed value: %+v", e)
	}
	// A swept key is free again.
	if ok, err := s.PutStateIfAbsent(ctx, "codes", "t1", "a", json.RawMessage(`{}`), 0); err != nil || !ok {
		t.Fatalf("put-if-absent on a swept key: %v %v", ok, err)
	}
	sw := &store.StateSweeper{Runtime: s, Batch: 1, MaxBatches: 2}
	for _, id := range []string{"s1", "s2", "s3"} {
		if err := s.PutStateTTL(ctx, "codes", "t3", id, json.RawMessage(`{}`), short); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"s1", "s2", "s3"} {
		waitExpired(t, s, "codes", "t3", id)
	}
	if n, err := sw.SweepOnce(ctx); err != nil || n != 2 {
		t.Fatalf("a sweeper round of at most 2 batches of 1: %d (%v), want 2", n, err)
	}
	if n, err := sw.SweepOnce(ctx); err != nil || n != 1 {
		t.Fatalf("the next round: %d (%v), want 1", n, err)
	}
}

func testStateOutsideRevision(t *testing.T, h Harness) {
	s := open(t, h)
	ctx := ctxT(t)
	before, err := s.Revision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	watch, err := s.Watch(ctx, before)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.PutStateTTL(ctx, "codes", "t1", "a", json.RawMessage(`{}`), 50*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutStateIfAbsent(ctx, "codes", "t1", "b", json.RawMessage(`{}`), time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.TakeState(ctx, "codes", "t1", "b"); err != nil {
		t.Fatal(err)
	}
	waitExpired(t, s, "codes", "t1", "a")
	if _, err := s.SweepExpiredState(ctx, 10); err != nil {
		t.Fatal(err)
	}
	if after, _ := s.Revision(ctx); after != before {
		t.Fatalf("runtime state calls moved the revision from %d to %d", before, after)
	}
	// The first change the feed reports is this configuration write: the
	// state calls before it entered nothing.
	rev := create(t, s, obj("services", "t1", "svc", "", widget{Color: "red"}))
	select {
	case ev := <-watch:
		if ev.Err != nil || ev.Revision != rev || len(ev.Changes) != 1 || ev.Changes[0].ID != "svc" {
			t.Fatalf("first change feed event after runtime state calls: %+v, want the create at %d", ev, rev)
		}
	case <-ctx.Done():
		t.Fatal("no change feed event for the configuration write")
	}
}

// sameJSON reports whether got is the JSON value want (backends may
// respace it: PostgreSQL's jsonb does).
func sameJSON(got json.RawMessage, want string) bool {
	var a, b any
	if json.Unmarshal(got, &a) != nil || json.Unmarshal([]byte(want), &b) != nil {
		return false
	}
	return reflect.DeepEqual(a, b)
}
