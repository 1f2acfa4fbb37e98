package storetest

import (
	"context"
	"testing"

	"github.com/gatehouse-dev/gatehouse/store"
)

// tenantTests: deleting a tenant removes everything of that tenant, and
// nothing else, in one transaction.
func tenantTests() []test {
	return []test{
		{name: "deleting a tenant removes its objects only, as one recorded transaction", fn: testDeleteTenant},
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
