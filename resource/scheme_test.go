package resource_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	"github.com/gatehouse-dev/gatehouse/resource"
	"github.com/gatehouse-dev/gatehouse/store"
)

// A small world: shelves hold books (cascade), readers borrow books
// (restrict).
func parentOf(o *store.Object) ([]string, error) { return []string{o.ParentID}, nil }

func specField(name string) func(o *store.Object) ([]string, error) {
	return func(o *store.Object) ([]string, error) {
		var m map[string]string
		if err := json.Unmarshal(o.Spec, &m); err != nil {
			return nil, err
		}
		return []string{m[name]}, nil
	}
}

func world(t *testing.T) *resource.Scheme {
	t.Helper()
	sch := resource.NewScheme()
	// Registered referrers first: the order must still put what is
	// referenced first.
	sch.MustRegister(&resource.Kind{Name: "readers", Singular: "reader", Exported: true, Canonical: resource.SpecCodec[map[string]string],
		Refs: []resource.Ref{{Field: "book_id", Kind: "books", OnDelete: resource.Restrict, IDs: specField("book_id")}}})
	sch.MustRegister(&resource.Kind{Name: "books", Singular: "book", Exported: true, Bundled: true, Canonical: resource.SpecCodec[map[string]string],
		Refs: []resource.Ref{{Field: "shelf_id", Kind: "shelves", OnDelete: resource.Cascade, IDs: parentOf}}})
	sch.MustRegister(&resource.Kind{Name: "shelves", Singular: "shelf", Exported: true, Canonical: resource.SpecCodec[map[string]string]})
	if err := sch.Complete(); err != nil {
		t.Fatal(err)
	}
	return sch
}

func TestSchemeOrdersReferencedKindsFirst(t *testing.T) {
	sch := world(t)
	var names []string
	for _, k := range sch.Kinds() {
		names = append(names, k.Name)
	}
	if got := names; len(got) != 3 || got[0] != "shelves" || got[1] != "books" || got[2] != "readers" {
		t.Fatalf("order %v, want [shelves books readers]", got)
	}
	if b := sch.Bundled(); len(b) != 1 || b[0] != "books" {
		t.Errorf("bundled %v", b)
	}
	if r := sch.Referrers("books"); len(r) != 1 || r[0].Kind.Name != "readers" {
		t.Errorf("referrers of books: %v", r)
	}
}

func TestSchemeRefusesBadDeclarations(t *testing.T) {
	for name, kinds := range map[string][]*resource.Kind{
		"unregistered reference": {{Name: "a", Singular: "a", Refs: []resource.Ref{{Field: "b_id", Kind: "b", IDs: parentOf}}}},
		"cycle": {
			{Name: "a", Singular: "a", Refs: []resource.Ref{{Field: "b_id", Kind: "b", IDs: parentOf}}},
			{Name: "b", Singular: "b", Refs: []resource.Ref{{Field: "a_id", Kind: "a", IDs: parentOf}}},
		},
		"exported kind naming an unexported one": {
			{Name: "a", Singular: "a", Exported: true, Canonical: resource.SpecCodec[struct{}], Refs: []resource.Ref{{Field: "b_id", Kind: "b", IDs: parentOf}}},
			{Name: "b", Singular: "b"},
		},
	} {
		sch := resource.NewScheme()
		for _, k := range kinds {
			if err := sch.Register(k); err != nil {
				t.Fatalf("%s: register: %v", name, err)
			}
		}
		if err := sch.Complete(); err == nil {
			t.Errorf("%s: Complete accepted it", name)
		}
	}
	sch := resource.NewScheme()
	sch.MustRegister(&resource.Kind{Name: "a", Singular: "a"})
	if err := sch.Register(&resource.Kind{Name: "a", Singular: "a"}); err == nil {
		t.Error("a kind registered twice was accepted")
	}
	if err := sch.Register(&resource.Kind{Name: "c", Singular: "c", Exported: true}); err == nil {
		t.Error("an exported kind without Canonical was accepted")
	}
}

func put(t *testing.T, st store.Store, o *store.Object) {
	t.Helper()
	if _, err := st.Update(context.Background(), func(ctx context.Context, tx store.Tx) error { return tx.Create(ctx, o) }); err != nil {
		t.Fatal(err)
	}
}

func TestDeleteRestrictsAndCascades(t *testing.T) {
	sch := world(t)
	st := testkit.Store(t)
	ctx := context.Background()
	put(t, st, &store.Object{Kind: "shelves", TenantID: "t", ID: "s1", Spec: json.RawMessage(`{}`)})
	put(t, st, &store.Object{Kind: "books", TenantID: "t", ID: "b1", ParentID: "s1", Spec: json.RawMessage(`{}`)})
	put(t, st, &store.Object{Kind: "books", TenantID: "t", ID: "b2", ParentID: "s1", Spec: json.RawMessage(`{}`)})
	put(t, st, &store.Object{Kind: "readers", TenantID: "t", ID: "r1", Spec: json.RawMessage(`{"book_id":"b2"}`)})

	// A reader refers to a book that does not exist: named by field.
	var missing store.Object = store.Object{Kind: "readers", TenantID: "t", ID: "r2", Spec: json.RawMessage(`{"book_id":"nope"}`)}
	errs, err := sch.CheckReferences(ctx, st, &missing)
	if err != nil || len(errs) != 1 || errs[0].Field != "book_id" {
		t.Fatalf("CheckReferences = %v, %v", errs, err)
	}

	// The shelf's book b2 is borrowed: deleting the shelf is refused, and
	// nothing is deleted.
	_, err = st.Update(ctx, func(ctx context.Context, tx store.Tx) error {
		_, err := sch.Delete(ctx, tx, "shelves", "t", "s1", 0, nil)
		return err
	})
	var inUse *resource.InUseError
	if !errors.As(err, &inUse) || inUse.Kind.Name != "books" || len(inUse.UsedBy["readers"]) != 1 {
		t.Fatalf("delete of a shelf with a borrowed book: %v", err)
	}
	if _, err := st.Get(ctx, "books", "t", "b1"); err != nil {
		t.Fatalf("a refused delete removed a book: %v", err)
	}

	// Once returned, the shelf goes and takes its books, children first.
	put(t, st, &store.Object{Kind: "shelves", TenantID: "t", ID: "s2", Spec: json.RawMessage(`{}`)})
	_, _ = st.Update(ctx, func(ctx context.Context, tx store.Tx) error {
		_, err := tx.Delete(ctx, "readers", "t", "r1", 0, false)
		return err
	})
	var order []string
	_, err = st.Update(ctx, func(ctx context.Context, tx store.Tx) error {
		_, err := sch.Delete(ctx, tx, "shelves", "t", "s1", 0, func(_ context.Context, k *resource.Kind, o *store.Object) error {
			order = append(order, k.Name+"/"+o.ID)
			return nil
		})
		return err
	})
	if err != nil || len(order) != 3 || order[2] != "shelves/s1" {
		t.Fatalf("cascade: %v, deleted %v", err, order)
	}
	if _, err := st.Get(ctx, "books", "t", "b2"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a cascaded book survived: %v", err)
	}
	if _, err := st.Get(ctx, "shelves", "t", "s2"); err != nil {
		t.Fatalf("another shelf went too: %v", err)
	}
}
