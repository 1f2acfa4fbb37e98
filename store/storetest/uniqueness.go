package storetest

import (
	"context"
	"errors"
	"testing"

	"github.com/gatehouse-dev/gatehouse/store"
)

// uniquenessTests: ids and names are unique per tenant and kind; a soft
// delete frees them.
func uniquenessTests() []test {
	return []test{
		{name: "ids and names are unique per tenant and kind", fn: testUnique},
		{name: "a soft delete frees the id and name and keeps the object listed as deleted", fn: testSoftDelete},
	}
}

func testUnique(t *testing.T, h Harness) {
	s := open(t, h)
	ctx := ctxT(t)
	create(t, s, obj("widgets", "t1", "a", "alpha", widget{}), obj("widgets", "t1", "b", "", widget{}), obj("widgets", "t1", "c", "", widget{}))
	if !t.Run("a taken id or name is refused within the tenant and kind only", func(t *testing.T) {
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
	}) {
		return
	}
	if !t.Run("renaming onto a taken name fails and changes nothing", func(t *testing.T) {
		_, err := s.Update(ctx, func(ctx context.Context, tx store.Tx) error {
			return tx.Update(ctx, obj("widgets", "t1", "b", "alpha", widget{Color: "x"}), 0)
		})
		if !errors.Is(err, store.ErrAlreadyExists) {
			t.Fatalf("rename onto taken name: %v", err)
		}
		if b, _ := s.Get(ctx, "widgets", "t1", "b"); b == nil || b.Name != "" || specOf(t, b).Color != "" {
			t.Fatalf("failed rename changed the object: %+v", b)
		}
	}) {
		return
	}
	if !t.Run("the error names the field that collided", func(t *testing.T) {
		for _, c := range []struct {
			o           *store.Object
			field, name string
		}{
			{obj("widgets", "t1", "a", "fresh", widget{}), "id", "a"},
			{obj("widgets", "t1", "y", "alpha", widget{}), "name", "alpha"},
		} {
			_, err := s.Update(ctx, func(ctx context.Context, tx store.Tx) error { return tx.Create(ctx, c.o) })
			var ae *store.AlreadyExistsError
			if !errors.As(err, &ae) || ae.Field != c.field || ae.Value != c.name || ae.Kind != "widgets" {
				t.Errorf("create %s/%s: got %v (%+v), want an AlreadyExistsError on %s %q", c.o.ID, c.o.Name, err, ae, c.field, c.name)
			}
		}
		_, err := s.Update(ctx, func(ctx context.Context, tx store.Tx) error {
			return tx.Update(ctx, obj("widgets", "t1", "b", "alpha", widget{}), 0)
		})
		var ae *store.AlreadyExistsError
		if !errors.As(err, &ae) || ae.Field != "name" || ae.Value != "alpha" {
			t.Errorf("rename onto a taken name: got %v, want an AlreadyExistsError on name", err)
		}
	}) {
		return
	}
	t.Run("a freed name can be taken in the same transaction", func(t *testing.T) {
		mustUpdate(t, s, func(ctx context.Context, tx store.Tx) error {
			if err := tx.Update(ctx, obj("widgets", "t1", "a", "beta", widget{}), 0); err != nil {
				return err
			}
			return tx.Update(ctx, obj("widgets", "t1", "b", "alpha", widget{}), 0)
		})
		if o, err := s.GetByName(ctx, "widgets", "t1", "alpha"); err != nil || o.ID != "b" {
			t.Fatalf("name alpha now: %v %+v", err, o)
		}
	})
}

func testSoftDelete(t *testing.T, h Harness) {
	s := open(t, h)
	ctx := ctxT(t)
	first := obj("tenants", "", "acme", "Acme", widget{Color: "old"})
	create(t, s, first)
	if !t.Run("a soft-deleted object no longer resolves by id or name", func(t *testing.T) {
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
	}) {
		return
	}
	second := obj("tenants", "", "acme", "Acme", widget{Color: "new"})
	if !t.Run("its id and name are taken again by a new object with a new UID", func(t *testing.T) {
		create(t, s, second)
		if second.UID == first.UID {
			t.Fatal("a re-created object must get a new UID")
		}
		got, err := s.Get(ctx, "tenants", "", "acme")
		if err != nil || got.UID != second.UID || specOf(t, got).Color != "new" {
			t.Fatalf("get after re-create: %v %+v", err, got)
		}
	}) {
		return
	}
	t.Run("listings show the deleted object only when asked, with DeletedAt", func(t *testing.T) {
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
	})
}
