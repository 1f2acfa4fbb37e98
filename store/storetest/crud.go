package storetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/store"
)

// objectTests: objects are created, read, updated and deleted in
// transactions that are all or nothing.
func objectTests() []test {
	return []test{
		{name: "objects are created, read, updated and deleted", fn: testCRUD},
		{name: "a write with a stale revision conflicts and changes nothing", fn: testConflict},
		{name: "a transaction is all or nothing and one revision", fn: testAtomicity},
		{name: "a cancelled context writes nothing", fn: testCancelled},
	}
}

func testCRUD(t *testing.T, h Harness) {
	s := open(t, h)
	ctx := ctxT(t)
	o := obj("widgets", "t1", "w1", "first", widget{Color: "red", Count: 1})
	var rev int64
	if !t.Run("create fills in the envelope", func(t *testing.T) {
		rev = create(t, s, o)
		if rev <= 0 || o.Revision != rev || o.CreateRevision != rev {
			t.Fatalf("create: revision %d, object revision %d/%d", rev, o.Revision, o.CreateRevision)
		}
		if o.UID == "" || o.CreatedAt.IsZero() || o.UpdatedAt.IsZero() {
			t.Fatalf("create did not fill the envelope: %+v", o)
		}
	}) {
		return
	}
	if !t.Run("get and get by name return it, within its tenant and kind only", func(t *testing.T) {
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
	}) {
		return
	}
	if !t.Run("update moves the revision, keeps the creation and renames", func(t *testing.T) {
		time.Sleep(2 * time.Millisecond) // UpdatedAt must move past CreatedAt
		upd := obj("widgets", "t1", "w1", "renamed", widget{Color: "blue", Count: 2})
		upd.UpdatedBy = "editor"
		rev2 := mustUpdate(t, s, func(ctx context.Context, tx store.Tx) error { return tx.Update(ctx, upd, rev) })
		if rev2 <= rev {
			t.Fatalf("update revision %d not after %d", rev2, rev)
		}
		got, err := s.Get(ctx, "widgets", "t1", "w1")
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
	}) {
		return
	}
	if !t.Run("a hard delete returns the object and removes it for good", func(t *testing.T) {
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
	}) {
		return
	}
	t.Run("writes to a missing object and a create without id fail", func(t *testing.T) {
		_, err := s.Update(ctx, func(ctx context.Context, tx store.Tx) error {
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
	})
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

func testAtomicity(t *testing.T, h Harness) {
	s := open(t, h)
	ctx := ctxT(t)
	create(t, s, obj("widgets", "t1", "keep", "", widget{Count: 1}))
	before, _ := s.Revision(ctx)
	if !t.Run("a failed transaction leaves none of its writes", func(t *testing.T) {
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
	}) {
		return
	}
	var rev int64
	if !t.Run("all writes of one transaction share one revision", func(t *testing.T) {
		var a, b *store.Object
		rev = mustUpdate(t, s, func(ctx context.Context, tx store.Tx) error {
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
	}) {
		return
	}
	t.Run("a transaction that writes nothing does not move the revision", func(t *testing.T) {
		if r := mustUpdate(t, s, func(ctx context.Context, tx store.Tx) error { return nil }); r != 0 {
			t.Fatalf("empty transaction returned revision %d", r)
		}
		if cur, _ := s.Revision(ctx); cur != rev {
			t.Fatalf("empty transaction moved the revision to %d", cur)
		}
	})
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
