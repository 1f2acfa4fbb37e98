// Package storetest is the conformance suite every store backend runs: the
// same behaviour, asserted the same way, whatever the storage underneath.
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/store"
)

// Harness gives the suite access to one backend instance. Run calls
// newHarness once per subtest, so every subtest starts from an empty store.
type Harness struct {
	// Open returns a new handle on the same underlying data (a new pool, a
	// reopened file). For single-handle backends the suite closes the
	// previous handle before calling Open again.
	Open func(t *testing.T) store.Store
	// MultiHandle says several handles may be open at once (separate
	// connections or processes sharing the data), as with PostgreSQL.
	MultiHandle bool
}

// Run runs the whole suite. newHarness must return a harness on fresh, empty
// storage each time it is called.
func Run(t *testing.T, newHarness func(t *testing.T) Harness) {
	tests := []struct {
		name            string
		fn              func(t *testing.T, h Harness)
		multiHandleOnly bool
	}{
		{"CRUD", testCRUD, false},
		{"UniqueIDAndName", testUnique, false},
		{"RevisionConflict", testConflict, false},
		{"SoftDeleteFreesIDAndName", testSoftDelete, false},
		{"TransactionAtomicity", testAtomicity, false},
		{"CancelledContextWritesNothing", testCancelled, false},
		{"Pagination", testPagination, false},
		{"PaginationStableUnderInserts", testPaginationStable, false},
		{"WatchOrderAndResume", testWatch, false},
		{"WatchWaitsForFutureRevisions", testWatchFuture, false},
		{"ConcurrentWritersNoLostUpdate", testConcurrentWriters, false},
		{"ReadModifyWriteInsideTransaction", testReadModifyWriteInTx, false},
		{"ReopenKeepsEverything", testReopen, false},
		{"WatchFromSecondHandle", testSecondHandle, true},
		{"DeleteTenant", testDeleteTenant, false},
		{"AuditEvents", testEvents, false},
		{"AuditEventsPagination", testEventsPagination, false},
		{"RuntimeState", testRuntimeState, false},
		{"RuntimeLogs", testRuntimeLogs, false},
		{"RuntimeLogBatchAppend", testRuntimeLogBatch, false},
		{"BundleRevisionClaims", testBundleRevisionClaims, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			if tc.multiHandleOnly && !h.MultiHandle {
				// Single-handle backends (embedded) lock their data to one
				// process by design; TestSecondProcessIsLockedOut covers that.
				return
			}
			tc.fn(t, h)
		})
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func open(t *testing.T, h Harness) store.Store {
	t.Helper()
	s := h.Open(t)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

type widget struct {
	Color string `json:"color"`
	Count int    `json:"count"`
}

func obj(kind, tenant, id, name string, spec widget) *store.Object {
	b, _ := json.Marshal(spec)
	return &store.Object{Kind: kind, TenantID: tenant, ID: id, Name: name, Spec: b, CreatedBy: "tester",
		Description: "d-" + id, Labels: map[string]string{"env": "test"}}
}

func specOf(t *testing.T, o *store.Object) widget {
	t.Helper()
	var w widget
	if err := json.Unmarshal(o.Spec, &w); err != nil {
		t.Fatalf("decode spec of %s: %v", o.ID, err)
	}
	return w
}

func mustUpdate(t *testing.T, s store.Store, fn func(ctx context.Context, tx store.Tx) error) int64 {
	t.Helper()
	rev, err := s.Update(ctxT(t), fn)
	if err != nil {
		t.Fatalf("update: %v", err)
	}
	return rev
}

func create(t *testing.T, s store.Store, objs ...*store.Object) int64 {
	t.Helper()
	return mustUpdate(t, s, func(ctx context.Context, tx store.Tx) error {
		for _, o := range objs {
			if err := tx.Create(ctx, o); err != nil {
				return err
			}
		}
		return nil
	})
}

func testCRUD(t *testing.T, h Harness) {
	s := open(t, h)
	ctx := ctxT(t)
	o := obj("widgets", "t1", "w1", "first", widget{Color: "red", Count: 1})
	rev := create(t, s, o)
	if rev <= 0 || o.Revision != rev || o.CreateRevision != rev {
		t.Fatalf("create: revision %d, object revision %d/%d", rev, o.Revision, o.CreateRevision)
	}
	if o.UID == "" || o.CreatedAt.IsZero() || o.UpdatedAt.IsZero() {
		t.Fatalf("create did not fill the envelope: %+v", o)
	}
	got, err := s.Get(ctx, "widgets", "t1", "w1")
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if got.UID != o.UID || got.Name != "first" || got.Description != "d-w1" || got.Labels["env"] != "test" ||
		got.Revision != rev || got.CreatedBy != "tester" || !got.CreatedAt.Equal(o.CreatedAt) {
		t.Fatalf("get returned %+v, created %+v", got, o)
	}
	if w := specOf(t, got); w.Color != "red" || w.Count != 1 {
		t.Fatalf("spec round trip: %+v", w)
	}
	byName, err := s.GetByName(ctx, "widgets", "t1", "first")
	if err != nil || byName.ID != "w1" {
		t.Fatalf("get by name: %v %+v", err, byName)
	}
	if _, err := s.Get(ctx, "widgets", "t2", "w1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("get from another tenant: want ErrNotFound, got %v", err)
	}
	if _, err := s.Get(ctx, "gadgets", "t1", "w1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("get another kind: want ErrNotFound, got %v", err)
	}

	time.Sleep(2 * time.Millisecond)
	upd := obj("widgets", "t1", "w1", "renamed", widget{Color: "blue", Count: 2})
	upd.UpdatedBy = "editor"
	rev2 := mustUpdate(t, s, func(ctx context.Context, tx store.Tx) error { return tx.Update(ctx, upd, rev) })
	if rev2 <= rev {
		t.Fatalf("update revision %d not after %d", rev2, rev)
	}
	got, err = s.Get(ctx, "widgets", "t1", "w1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Revision != rev2 || got.CreateRevision != rev || got.UID != o.UID || !got.CreatedAt.Equal(o.CreatedAt) ||
		got.CreatedBy != "tester" || got.UpdatedBy != "editor" || !got.UpdatedAt.After(o.UpdatedAt) {
		t.Fatalf("update envelope wrong: %+v", got)
	}
	if w := specOf(t, got); w.Color != "blue" {
		t.Fatalf("update spec: %+v", w)
	}
	if _, err := s.GetByName(ctx, "widgets", "t1", "first"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("old name still resolves: %v", err)
	}
	if _, err := s.GetByName(ctx, "widgets", "t1", "renamed"); err != nil {
		t.Fatalf("new name does not resolve: %v", err)
	}
	if cur, _ := s.Revision(ctx); cur != rev2 {
		t.Fatalf("store revision %d, want %d", cur, rev2)
	}

	var deleted *store.Object
	mustUpdate(t, s, func(ctx context.Context, tx store.Tx) error {
		var err error
		deleted, err = tx.Delete(ctx, "widgets", "t1", "w1", 0, false)
		return err
	})
	if deleted.ID != "w1" || specOf(t, deleted).Color != "blue" {
		t.Fatalf("delete returned %+v", deleted)
	}
	if _, err := s.Get(ctx, "widgets", "t1", "w1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("get after delete: %v", err)
	}
	page, err := s.List(ctx, store.Query{Kind: "widgets", TenantID: "t1", IncludeDeleted: true})
	if err != nil || len(page.Items) != 0 {
		t.Fatalf("hard-deleted object still listed: %v %+v", err, page)
	}
	_, err = s.Update(ctx, func(ctx context.Context, tx store.Tx) error {
		_, err := tx.Delete(ctx, "widgets", "t1", "w1", 0, false)
		return err
	})
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second delete: want ErrNotFound, got %v", err)
	}
	_, err = s.Update(ctx, func(ctx context.Context, tx store.Tx) error {
		return tx.Update(ctx, obj("widgets", "t1", "nope", "", widget{}), 0)
	})
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("update of missing object: want ErrNotFound, got %v", err)
	}
	_, err = s.Update(ctx, func(ctx context.Context, tx store.Tx) error {
		return tx.Create(ctx, &store.Object{Kind: "widgets", TenantID: "t1"})
	})
	if !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("create without id: want ErrInvalid, got %v", err)
	}
}

func testUnique(t *testing.T, h Harness) {
	s := open(t, h)
	ctx := ctxT(t)
	create(t, s, obj("widgets", "t1", "a", "alpha", widget{}), obj("widgets", "t1", "b", "", widget{}), obj("widgets", "t1", "c", "", widget{}))
	cases := []struct {
		name string
		o    *store.Object
		want error
	}{
		{"same id", obj("widgets", "t1", "a", "other", widget{}), store.ErrAlreadyExists},
		{"same name", obj("widgets", "t1", "z", "alpha", widget{}), store.ErrAlreadyExists},
		{"same id other tenant", obj("widgets", "t2", "a", "alpha", widget{}), nil},
		{"same id other kind", obj("gadgets", "t1", "a", "alpha", widget{}), nil},
		{"same id system level", obj("widgets", "", "a", "alpha", widget{}), nil},
	}
	for _, c := range cases {
		_, err := s.Update(ctx, func(ctx context.Context, tx store.Tx) error { return tx.Create(ctx, c.o) })
		if c.want == nil && err != nil || c.want != nil && !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
	}
	// Renaming onto a taken name fails and changes nothing.
	_, err := s.Update(ctx, func(ctx context.Context, tx store.Tx) error {
		return tx.Update(ctx, obj("widgets", "t1", "b", "alpha", widget{Color: "x"}), 0)
	})
	if !errors.Is(err, store.ErrAlreadyExists) {
		t.Fatalf("rename onto taken name: %v", err)
	}
	if b, _ := s.Get(ctx, "widgets", "t1", "b"); b == nil || b.Name != "" || specOf(t, b).Color != "" {
		t.Fatalf("failed rename changed the object: %+v", b)
	}
	// Freed names can be taken.
	mustUpdate(t, s, func(ctx context.Context, tx store.Tx) error {
		if err := tx.Update(ctx, obj("widgets", "t1", "a", "beta", widget{}), 0); err != nil {
			return err
		}
		return tx.Update(ctx, obj("widgets", "t1", "b", "alpha", widget{}), 0)
	})
	if o, err := s.GetByName(ctx, "widgets", "t1", "alpha"); err != nil || o.ID != "b" {
		t.Fatalf("name alpha now: %v %+v", err, o)
	}
}

func testConflict(t *testing.T, h Harness) {
	s := open(t, h)
	ctx := ctxT(t)
	o := obj("widgets", "t1", "w", "", widget{Count: 1})
	rev := create(t, s, o)
	rev2 := mustUpdate(t, s, func(ctx context.Context, tx store.Tx) error {
		return tx.Update(ctx, obj("widgets", "t1", "w", "", widget{Count: 2}), rev)
	})
	_, err := s.Update(ctx, func(ctx context.Context, tx store.Tx) error {
		return tx.Update(ctx, obj("widgets", "t1", "w", "", widget{Count: 99}), rev)
	})
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("stale update: want ErrConflict, got %v", err)
	}
	_, err = s.Update(ctx, func(ctx context.Context, tx store.Tx) error {
		_, err := tx.Delete(ctx, "widgets", "t1", "w", rev, false)
		return err
	})
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("stale delete: want ErrConflict, got %v", err)
	}
	got, err := s.Get(ctx, "widgets", "t1", "w")
	if err != nil || specOf(t, got).Count != 2 || got.Revision != rev2 {
		t.Fatalf("conflicting writes changed the object: %v %+v", err, got)
	}
	if cur, _ := s.Revision(ctx); cur != rev2 {
		t.Fatalf("failed writes moved the revision to %d (want %d)", cur, rev2)
	}
}

func testSoftDelete(t *testing.T, h Harness) {
	s := open(t, h)
	ctx := ctxT(t)
	first := obj("tenants", "", "acme", "Acme", widget{Color: "old"})
	create(t, s, first)
	mustUpdate(t, s, func(ctx context.Context, tx store.Tx) error {
		_, err := tx.Delete(ctx, "tenants", "", "acme", 0, true)
		return err
	})
	if _, err := s.Get(ctx, "tenants", "", "acme"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("soft-deleted object still live: %v", err)
	}
	if _, err := s.GetByName(ctx, "tenants", "", "Acme"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("soft-deleted name still resolves: %v", err)
	}
	second := obj("tenants", "", "acme", "Acme", widget{Color: "new"})
	create(t, s, second)
	if second.UID == first.UID {
		t.Fatal("a re-created object must get a new UID")
	}
	got, err := s.Get(ctx, "tenants", "", "acme")
	if err != nil || got.UID != second.UID || specOf(t, got).Color != "new" {
		t.Fatalf("get after re-create: %v %+v", err, got)
	}
	live, err := s.List(ctx, store.Query{Kind: "tenants"})
	if err != nil || len(live.Items) != 1 || live.Total != 1 {
		t.Fatalf("live listing: %v %+v", err, live)
	}
	all, err := s.List(ctx, store.Query{Kind: "tenants", IncludeDeleted: true})
	if err != nil || len(all.Items) != 2 || all.Total != 2 {
		t.Fatalf("listing with deleted: %v %+v", err, all)
	}
	var deletedSeen bool
	for _, o := range all.Items {
		if o.UID == first.UID {
			deletedSeen = o.DeletedAt != nil && specOf(t, o).Color == "old"
		}
	}
	if !deletedSeen {
		t.Fatalf("soft-deleted object not listed with DeletedAt: %+v", all.Items)
	}
}

func testAtomicity(t *testing.T, h Harness) {
	s := open(t, h)
	ctx := ctxT(t)
	create(t, s, obj("widgets", "t1", "keep", "", widget{Count: 1}))
	before, _ := s.Revision(ctx)
	boom := errors.New("boom")
	_, err := s.Update(ctx, func(ctx context.Context, tx store.Tx) error {
		if err := tx.Create(ctx, obj("widgets", "t1", "new", "", widget{})); err != nil {
			return err
		}
		if err := tx.Update(ctx, obj("widgets", "t1", "keep", "", widget{Count: 100}), 0); err != nil {
			return err
		}
		if err := tx.AppendEvent(ctx, &store.Event{TenantID: "t1", Actor: "a", Action: "create", Kind: "widgets", ObjectID: "new"}); err != nil {
			return err
		}
		// Read-your-writes inside the transaction.
		if o, err := tx.Get(ctx, "widgets", "t1", "new"); err != nil || o == nil {
			return fmt.Errorf("read own write: %v", err)
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("want the callback's error back, got %v", err)
	}
	if _, err := s.Get(ctx, "widgets", "t1", "new"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("rolled-back create is visible: %v", err)
	}
	if o, _ := s.Get(ctx, "widgets", "t1", "keep"); specOf(t, o).Count != 1 {
		t.Fatalf("rolled-back update is visible: %+v", o)
	}
	if ev, _ := s.ListEvents(ctx, store.EventQuery{TenantID: "t1"}); len(ev.Items) != 0 {
		t.Fatalf("rolled-back event is visible: %+v", ev.Items)
	}
	if after, _ := s.Revision(ctx); after != before {
		t.Fatalf("rolled-back transaction moved the revision %d -> %d", before, after)
	}
	// All writes of one transaction share one revision.
	var a, b *store.Object
	rev := mustUpdate(t, s, func(ctx context.Context, tx store.Tx) error {
		if tx.WriteRevision() != 0 {
			return errors.New("write revision set before any write")
		}
		a, b = obj("widgets", "t1", "a", "", widget{}), obj("widgets", "t1", "b", "", widget{})
		if err := tx.Create(ctx, a); err != nil {
			return err
		}
		return tx.Create(ctx, b)
	})
	if rev != before+1 || a.Revision != rev || b.Revision != rev {
		t.Fatalf("one transaction, revisions %d/%d/%d, previous %d", rev, a.Revision, b.Revision, before)
	}
	// A transaction that writes nothing does not move the revision.
	if r := mustUpdate(t, s, func(ctx context.Context, tx store.Tx) error { return nil }); r != 0 {
		t.Fatalf("empty transaction returned revision %d", r)
	}
	if cur, _ := s.Revision(ctx); cur != rev {
		t.Fatalf("empty transaction moved the revision to %d", cur)
	}
}

func testCancelled(t *testing.T, h Harness) {
	s := open(t, h)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := s.Update(ctx, func(ctx context.Context, tx store.Tx) error {
		return tx.Create(ctx, obj("widgets", "t1", "x", "", widget{}))
	})
	if err == nil {
		t.Fatal("update with a cancelled context succeeded")
	}
	if _, err := s.Get(ctxT(t), "widgets", "t1", "x"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("cancelled write is visible: %v", err)
	}
}

func listAll(t *testing.T, s store.Store, q store.Query) []*store.Object {
	t.Helper()
	var out []*store.Object
	for i := 0; ; i++ {
		page, err := s.List(ctxT(t), q)
		if err != nil {
			t.Fatalf("list: %v", err)
		}
		out = append(out, page.Items...)
		if page.Next == "" {
			return out
		}
		if i > 1000 {
			t.Fatal("pagination does not terminate")
		}
		q.After = page.Next
	}
}

func ids(objs []*store.Object) []string {
	out := make([]string, len(objs))
	for i, o := range objs {
		out[i] = o.ID
	}
	return out
}

func testPagination(t *testing.T, h Harness) {
	s := open(t, h)
	ctx := ctxT(t)
	var want []string
	var objs []*store.Object
	for i := 0; i < 25; i++ {
		id := fmt.Sprintf("w%02d", (i*7)%25) // inserted out of order
		o := obj("widgets", "t1", id, "", widget{})
		if i%2 == 0 {
			o.ParentID = "p1"
		}
		objs = append(objs, o)
		want = append(want, id)
	}
	create(t, s, objs...)
	create(t, s, obj("widgets", "t2", "other-tenant", "", widget{}), obj("gadgets", "t1", "other-kind", "", widget{}))
	sort.Strings(want)

	first, err := s.List(ctx, store.Query{Kind: "widgets", TenantID: "t1", Limit: 7})
	if err != nil {
		t.Fatal(err)
	}
	if len(first.Items) != 7 || first.Total != 25 || first.Next == "" {
		t.Fatalf("first page: %d items, total %d, next %q", len(first.Items), first.Total, first.Next)
	}
	got := ids(listAll(t, s, store.Query{Kind: "widgets", TenantID: "t1", Limit: 7}))
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("paged listing\n got %v\nwant %v", got, want)
	}
	whole := ids(listAll(t, s, store.Query{Kind: "widgets", TenantID: "t1"}))
	if fmt.Sprint(whole) != fmt.Sprint(want) {
		t.Fatalf("unpaged listing %v", whole)
	}
	children := listAll(t, s, store.Query{Kind: "widgets", TenantID: "t1", ParentID: "p1", Limit: 4})
	if len(children) != 13 {
		t.Fatalf("parent filter: %d items, want 13", len(children))
	}
	for _, c := range children {
		if c.ParentID != "p1" {
			t.Fatalf("parent filter returned %+v", c)
		}
	}
	if _, err := s.List(ctx, store.Query{Kind: "widgets", TenantID: "t1", After: "!!not-a-cursor"}); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("bad cursor: want ErrInvalid, got %v", err)
	}
	last, err := s.List(ctx, store.Query{Kind: "widgets", TenantID: "t1", Limit: 25})
	if err != nil || len(last.Items) != 25 || last.Next != "" {
		t.Fatalf("exact-size page must not have a next cursor: %v %d %q", err, len(last.Items), last.Next)
	}
}

func testPaginationStable(t *testing.T, h Harness) {
	s := open(t, h)
	ctx := ctxT(t)
	for i := 0; i < 10; i++ {
		create(t, s, obj("widgets", "t1", fmt.Sprintf("m%02d", i*2), "", widget{}))
	}
	page, err := s.List(ctx, store.Query{Kind: "widgets", TenantID: "t1", Limit: 4})
	if err != nil {
		t.Fatal(err)
	}
	seen := ids(page.Items) // m00 m02 m04 m06
	// Inserts before the cursor must not shift the next page; inserts after
	// it must show up; deletes of seen items must not skip unseen ones.
	create(t, s, obj("widgets", "t1", "a-before", "", widget{}), obj("widgets", "t1", "m07", "", widget{}))
	mustUpdate(t, s, func(ctx context.Context, tx store.Tx) error {
		_, err := tx.Delete(ctx, "widgets", "t1", "m06", 0, false)
		return err
	})
	rest := ids(listAll(t, s, store.Query{Kind: "widgets", TenantID: "t1", Limit: 4, After: page.Next}))
	want := []string{"m07", "m08", "m10", "m12", "m14", "m16", "m18"}
	if fmt.Sprint(rest) != fmt.Sprint(want) {
		t.Fatalf("after %v the listing continued with %v, want %v", seen, rest, want)
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
	r1 := create(t, s, obj("widgets", "t1", "a", "", widget{}), obj("widgets", "t1", "b", "", widget{}))
	r2 := mustUpdate(t, s, func(ctx context.Context, tx store.Tx) error {
		return tx.Update(ctx, obj("widgets", "t1", "a", "", widget{Count: 1}), 0)
	})
	r3 := mustUpdate(t, s, func(ctx context.Context, tx store.Tx) error {
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
	cancel()
	for range live { // the channel must close once the context ends
	}
	// Resume from the middle: only later revisions arrive.
	resumed, err := s.Watch(ctx, r1)
	if err != nil {
		t.Fatal(err)
	}
	evs = collect(t, resumed, 2)
	if evs[0].Revision != r2 || evs[1].Revision != r3 {
		t.Fatalf("resume from %d gave %d %d", r1, evs[0].Revision, evs[1].Revision)
	}
	// From the beginning: the whole history.
	all, err := s.Watch(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if evs = collect(t, all, 3); evs[0].Revision != r1 {
		t.Fatalf("watch from 0 started at %d", evs[0].Revision)
	}
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
	next := create(t, s2, obj("widgets", "t1", "b", "", widget{}))
	if next != last+1 {
		t.Fatalf("revision after reopen continued at %d, want %d", next, last+1)
	}
	ch, err := s2.Watch(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if evs := collect(t, ch, 3); evs[0].Revision != rev || evs[2].Revision != next {
		t.Fatalf("history after reopen: %+v", evs)
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

func testDeleteTenant(t *testing.T, h Harness) {
	s := open(t, h)
	ctx := ctxT(t)
	create(t, s,
		obj("tenants", "", "t1", "", widget{}), obj("tenants", "", "t2", "", widget{}),
		obj("widgets", "t1", "a", "", widget{}), obj("gadgets", "t1", "b", "", widget{}),
		obj("widgets", "t2", "a", "", widget{}))
	var n int
	rev := mustUpdate(t, s, func(ctx context.Context, tx store.Tx) error {
		var err error
		if n, err = tx.DeleteTenant(ctx, "t1"); err != nil {
			return err
		}
		_, err = tx.Delete(ctx, "tenants", "", "t1", 0, true)
		return err
	})
	if n != 2 {
		t.Fatalf("DeleteTenant removed %d objects, want 2", n)
	}
	for _, k := range []string{"widgets", "gadgets"} {
		if p, _ := s.List(ctx, store.Query{Kind: k, TenantID: "t1", IncludeDeleted: true}); len(p.Items) != 0 {
			t.Fatalf("%s of the deleted tenant remain: %+v", k, p.Items)
		}
	}
	if _, err := s.Get(ctx, "widgets", "t2", "a"); err != nil {
		t.Fatalf("another tenant's object was removed: %v", err)
	}
	if _, err := s.Get(ctx, "tenants", "", "t2"); err != nil {
		t.Fatalf("another tenant was removed: %v", err)
	}
	ch, err := s.Watch(ctx, rev-1)
	if err != nil {
		t.Fatal(err)
	}
	ev := collect(t, ch, 1)[0]
	if ev.Revision != rev || len(ev.Changes) != 3 {
		t.Fatalf("tenant deletion changes: %+v", ev)
	}
	for _, c := range ev.Changes {
		if c.Op != store.OpDelete {
			t.Fatalf("tenant deletion recorded %+v", c)
		}
	}
}

func appendEvents(t *testing.T, s store.Store, evs ...*store.Event) int64 {
	t.Helper()
	return mustUpdate(t, s, func(ctx context.Context, tx store.Tx) error {
		for _, e := range evs {
			if err := tx.AppendEvent(ctx, e); err != nil {
				return err
			}
		}
		return nil
	})
}

func testEvents(t *testing.T, h Harness) {
	s := open(t, h)
	ctx := ctxT(t)
	t0 := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	mk := func(tenant, actor, action, kind, id string, at time.Time) *store.Event {
		return &store.Event{TenantID: tenant, Actor: actor, Action: action, Kind: kind, ObjectID: id, Time: at, RequestID: "req-" + id}
	}
	var revs []int64
	var written []*store.Event
	for i, e := range []*store.Event{
		mk("t1", "alice", "create", "services", "s1", t0),
		mk("t1", "bob", "update", "services", "s1", t0.Add(10*time.Minute)),
		mk("t2", "alice", "create", "services", "s9", t0.Add(15*time.Minute)),
		mk("t1", "alice", "delete", "policies", "p1", t0.Add(20*time.Minute)),
	} {
		_ = i
		revs = append(revs, appendEvents(t, s, e))
		written = append(written, e)
	}
	for i, e := range written {
		if e.ID == "" || e.Revision != revs[i] {
			t.Fatalf("event %d: id %q revision %d (transaction revision %d)", i, e.ID, e.Revision, revs[i])
		}
	}
	q := func(eq store.EventQuery) []string {
		t.Helper()
		p, err := s.ListEvents(ctx, eq)
		if err != nil {
			t.Fatalf("list events %+v: %v", eq, err)
		}
		var out []string
		for _, e := range p.Items {
			out = append(out, e.Actor+":"+e.Action+":"+e.ObjectID)
		}
		return out
	}
	cases := []struct {
		name string
		q    store.EventQuery
		want string
	}{
		{"newest first", store.EventQuery{TenantID: "t1"}, "[alice:delete:p1 bob:update:s1 alice:create:s1]"},
		{"tenant isolation", store.EventQuery{TenantID: "t2"}, "[alice:create:s9]"},
		{"by kind", store.EventQuery{TenantID: "t1", Kind: "services"}, "[bob:update:s1 alice:create:s1]"},
		{"by action", store.EventQuery{TenantID: "t1", Action: "create"}, "[alice:create:s1]"},
		{"by actor", store.EventQuery{TenantID: "t1", Actor: "alice"}, "[alice:delete:p1 alice:create:s1]"},
		{"from", store.EventQuery{TenantID: "t1", From: t0.Add(5 * time.Minute)}, "[alice:delete:p1 bob:update:s1]"},
		{"to", store.EventQuery{TenantID: "t1", To: t0.Add(10 * time.Minute)}, "[bob:update:s1 alice:create:s1]"},
		{"min revision", store.EventQuery{TenantID: "t1", MinRevision: revs[1]}, "[alice:delete:p1 bob:update:s1]"},
		{"no match", store.EventQuery{TenantID: "t1", Actor: "mallory"}, "[]"},
		{"unknown tenant", store.EventQuery{TenantID: "t"}, "[]"},
	}
	for _, c := range cases {
		if got := fmt.Sprint(q(c.q)); got != c.want {
			t.Errorf("%s: got %s, want %s", c.name, got, c.want)
		}
	}
	p, _ := s.ListEvents(ctx, store.EventQuery{TenantID: "t1", Limit: 1})
	if len(p.Items) != 1 || p.Items[0].RequestID != "req-p1" || !p.Items[0].Time.Equal(t0.Add(20*time.Minute)) {
		t.Fatalf("event fields did not round trip: %+v", p.Items)
	}
	if _, err := s.ListEvents(ctx, store.EventQuery{TenantID: "t1", After: "x"}); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("bad event cursor: %v", err)
	}
}

func testEventsPagination(t *testing.T, h Harness) {
	s := open(t, h)
	ctx := ctxT(t)
	for i := 0; i < 23; i++ {
		appendEvents(t, s, &store.Event{TenantID: "t1", Actor: "a", Action: "update", Kind: "k", ObjectID: fmt.Sprint(i)},
			&store.Event{TenantID: "t10", Actor: "a", Action: "update", Kind: "k", ObjectID: fmt.Sprint(i)})
	}
	var got []string
	after := ""
	for pages := 0; ; pages++ {
		p, err := s.ListEvents(ctx, store.EventQuery{TenantID: "t1", Limit: 5, After: after})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range p.Items {
			if e.TenantID != "t1" {
				t.Fatalf("event of %s listed for t1", e.TenantID)
			}
			got = append(got, e.ObjectID)
		}
		if p.Next == "" {
			break
		}
		if pages > 10 {
			t.Fatal("event pagination does not terminate")
		}
		after = p.Next
	}
	var want []string
	for i := 22; i >= 0; i-- {
		want = append(want, fmt.Sprint(i))
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("paged events\n got %v\nwant %v", got, want)
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
