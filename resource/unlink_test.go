package resource_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	"github.com/gatehouse-dev/gatehouse/resource"
	"github.com/gatehouse-dev/gatehouse/store"
)

// TestUnlinkOrdersButLeavesDeletesAlone: an Unlink reference puts the
// referenced kind first, yet the scheme neither refuses nor cascades the
// referenced object's delete (the referrer stays, as it was), and
// CheckReferences leaves it to the referring kind.
func TestUnlinkOrdersButLeavesDeletesAlone(t *testing.T) {
	sch := resource.NewScheme()
	sch.MustRegister(&resource.Kind{Name: "clubs", Singular: "club", Exported: true, Canonical: resource.SpecCodec[map[string]string],
		Refs: []resource.Ref{{Field: "member_id", Kind: "people", OnDelete: resource.Unlink, IDs: specField("member_id")}}})
	sch.MustRegister(&resource.Kind{Name: "people", Singular: "person", Exported: true, Canonical: resource.SpecCodec[map[string]string]})
	if err := sch.Complete(); err != nil {
		t.Fatal(err)
	}
	if k := sch.Kinds(); len(k) != 2 || k[0].Name != "people" || k[1].Name != "clubs" {
		t.Fatalf("order: %v, %v", k[0].Name, k[1].Name)
	}
	st := testkit.Store(t)
	ctx := context.Background()
	put(t, st, &store.Object{Kind: "people", TenantID: "t", ID: "p1", Spec: json.RawMessage(`{}`)})
	put(t, st, &store.Object{Kind: "clubs", TenantID: "t", ID: "c1", Spec: json.RawMessage(`{"member_id":"p1"}`)})
	dangling := &store.Object{Kind: "clubs", TenantID: "t", ID: "c2", Spec: json.RawMessage(`{"member_id":"nobody"}`)}
	if errs, err := sch.CheckReferences(ctx, st, dangling); err != nil || len(errs) != 0 {
		t.Fatalf("CheckReferences of an Unlink reference: %v, %v", errs, err)
	}
	var deleted []string
	if _, err := st.Update(ctx, func(ctx context.Context, tx store.Tx) error {
		_, err := sch.Delete(ctx, tx, "people", "t", "p1", 0, func(_ context.Context, k *resource.Kind, o *store.Object) error {
			deleted = append(deleted, k.Name+"/"+o.ID)
			return nil
		})
		return err
	}); err != nil {
		t.Fatalf("delete of a person a club names through Unlink: %v", err)
	}
	if len(deleted) != 1 || deleted[0] != "people/p1" {
		t.Fatalf("deleted %v, want only people/p1", deleted)
	}
	if _, err := st.Get(ctx, "clubs", "t", "c1"); err != nil {
		t.Fatalf("the club went with its member: %v", err)
	}
}
