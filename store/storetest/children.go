package storetest

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/gatehouse-dev/gatehouse/store"
)

// childrenTests: the live children of an object (Query.ParentID) — what
// memberships and mappings are found by — follow every write: creates,
// moves to another parent, soft and hard deletes, tenant deletion, and a
// reopen; they come in id order and pages like any listing, tenant by
// tenant.
func childrenTests() []test {
	return []test{
		{name: "children are listed by parent in id order and pages, per tenant", fn: testChildrenListed},
		{name: "children follow moves, deletes and tenant deletion", fn: testChildrenFollowWrites},
		{name: "children survive a reopen", fn: testChildrenSurviveReopen},
	}
}

func children(t *testing.T, s store.Store, tenant, kind, parent string, limit int) []string {
	t.Helper()
	return ids(listAll(t, s, store.Query{Kind: kind, TenantID: tenant, ParentID: parent, Limit: limit}))
}

func testChildrenListed(t *testing.T, h Harness) {
	s := open(t, h)
	var objs []*store.Object
	var wantG1, wantG2 []string
	for i := range 30 {
		id := fmt.Sprintf("m%02d", (i*11)%30) // out of order
		o := obj("members", "t1", id, "", widget{Count: i})
		switch i % 3 {
		case 0:
			o.ParentID = "g1"
			wantG1 = append(wantG1, id)
		case 1:
			o.ParentID = "g2"
			wantG2 = append(wantG2, id)
		}
		objs = append(objs, o)
	}
	// The same parent id in another tenant and another kind: never listed.
	other := obj("members", "t2", "m00", "", widget{})
	other.ParentID = "g1"
	otherKind := obj("admins", "t1", "a1", "", widget{})
	otherKind.ParentID = "g1"
	create(t, s, append(objs, other, otherKind)...)
	slices.Sort(wantG1)
	slices.Sort(wantG2)
	for _, limit := range []int{0, 1, 4, 100} {
		if got := children(t, s, "t1", "members", "g1", limit); !slices.Equal(got, wantG1) {
			t.Fatalf("g1 by pages of %d: %v, want %v", limit, got, wantG1)
		}
	}
	if got := children(t, s, "t1", "members", "g2", 3); !slices.Equal(got, wantG2) {
		t.Fatalf("g2: %v, want %v", got, wantG2)
	}
	page, err := s.List(ctxT(t), store.Query{Kind: "members", TenantID: "t1", ParentID: "g1", Limit: 2})
	if err != nil || page.Total != len(wantG1) || len(page.Items) != 2 || page.Next == "" {
		t.Fatalf("first page: %+v %v, want total %d", page, err, len(wantG1))
	}
	if got := children(t, s, "t2", "members", "g1", 0); !slices.Equal(got, []string{"m00"}) {
		t.Fatalf("t2: %v", got)
	}
	if got := children(t, s, "t1", "members", "nobody", 0); len(got) != 0 {
		t.Fatalf("an unknown parent: %v", got)
	}
}

func testChildrenFollowWrites(t *testing.T, h Harness) {
	s := open(t, h)
	var objs []*store.Object
	for _, id := range []string{"a", "b", "c", "d"} {
		o := obj("members", "t1", id, "", widget{})
		o.ParentID = "g1"
		objs = append(objs, o)
	}
	t2 := obj("members", "t2", "x", "", widget{})
	t2.ParentID = "g1"
	create(t, s, append(objs, t2)...)
	mustUpdate(t, s, func(ctx context.Context, tx store.Tx) error {
		b, err := tx.Get(ctx, "members", "t1", "b")
		if err != nil {
			return err
		}
		b.ParentID = "g2" // moved
		if err := tx.Update(ctx, b, 0); err != nil {
			return err
		}
		if _, err := tx.Delete(ctx, "members", "t1", "c", 0, true); err != nil { // soft
			return err
		}
		_, err = tx.Delete(ctx, "members", "t1", "d", 0, false) // hard
		return err
	})
	if got := children(t, s, "t1", "members", "g1", 0); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("g1 after the writes: %v, want [a]", got)
	}
	if got := children(t, s, "t1", "members", "g2", 0); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("g2 after the move: %v, want [b]", got)
	}
	// A soft-deleted child is still a child when deleted ones are asked for.
	deleted := ids(listAll(t, s, store.Query{Kind: "members", TenantID: "t1", ParentID: "g1", IncludeDeleted: true}))
	if !slices.Equal(deleted, []string{"a", "c"}) {
		t.Fatalf("g1 with deleted: %v, want [a c]", deleted)
	}
	// A new child with the id of the soft-deleted one.
	again := obj("members", "t1", "c", "", widget{Count: 2})
	again.ParentID = "g1"
	create(t, s, again)
	if got := children(t, s, "t1", "members", "g1", 0); !slices.Equal(got, []string{"a", "c"}) {
		t.Fatalf("g1 after re-creating c: %v", got)
	}
	mustUpdate(t, s, func(ctx context.Context, tx store.Tx) error {
		_, err := tx.DeleteTenant(ctx, "t1")
		return err
	})
	if got := children(t, s, "t1", "members", "g1", 0); len(got) != 0 {
		t.Fatalf("g1 after deleting the tenant: %v", got)
	}
	if got := children(t, s, "t2", "members", "g1", 0); !slices.Equal(got, []string{"x"}) {
		t.Fatalf("t2 after deleting t1: %v", got)
	}
}

func testChildrenSurviveReopen(t *testing.T, h Harness) {
	s := h.Open(t)
	o := obj("members", "t1", "a", "", widget{})
	o.ParentID = "g1"
	create(t, s, o)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, h)
	if got := children(t, s, "t1", "members", "g1", 0); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("after a reopen: %v", got)
	}
}
