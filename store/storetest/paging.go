package storetest

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"testing"

	"github.com/gatehouse-dev/gatehouse/store"
)

// pagingTests: listings come in pages, in id order, with cursors that stay
// stable while the data changes.
func pagingTests() []test {
	return []test{
		{name: "listings come in pages in id order with a total and a cursor", fn: testPagination},
		{name: "a cursor stays stable under inserts and deletes", fn: testPaginationStable},
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

	t.Run("the first page has the limit, the total and a cursor", func(t *testing.T) {
		first, err := s.List(ctx, store.Query{Kind: "widgets", TenantID: "t1", Limit: 7})
		if err != nil {
			t.Fatal(err)
		}
		if len(first.Items) != 7 || first.Total != 25 || first.Next == "" {
			t.Fatalf("first page: %d items, total %d, next %q", len(first.Items), first.Total, first.Next)
		}
	})
	t.Run("following the cursors lists the tenant's objects of the kind in id order", func(t *testing.T) {
		got := ids(listAll(t, s, store.Query{Kind: "widgets", TenantID: "t1", Limit: 7}))
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("paged listing\n got %v\nwant %v", got, want)
		}
		whole := ids(listAll(t, s, store.Query{Kind: "widgets", TenantID: "t1"}))
		if fmt.Sprint(whole) != fmt.Sprint(want) {
			t.Fatalf("unpaged listing %v", whole)
		}
	})
	t.Run("the parent filter pages too", func(t *testing.T) {
		children := listAll(t, s, store.Query{Kind: "widgets", TenantID: "t1", ParentID: "p1", Limit: 4})
		if len(children) != 13 {
			t.Fatalf("parent filter: %d items, want 13", len(children))
		}
		for _, c := range children {
			if c.ParentID != "p1" {
				t.Fatalf("parent filter returned %+v", c)
			}
		}
	})
	t.Run("a cursor that is not one is invalid", func(t *testing.T) {
		if _, err := s.List(ctx, store.Query{Kind: "widgets", TenantID: "t1", After: "!!not-a-cursor"}); !errors.Is(err, store.ErrInvalid) {
			t.Fatalf("bad cursor: want ErrInvalid, got %v", err)
		}
	})
	t.Run("a page of exactly the rest has no next cursor", func(t *testing.T) {
		last, err := s.List(ctx, store.Query{Kind: "widgets", TenantID: "t1", Limit: 25})
		if err != nil || len(last.Items) != 25 || last.Next != "" {
			t.Fatalf("exact-size page must not have a next cursor: %v %d %q", err, len(last.Items), last.Next)
		}
	})
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
