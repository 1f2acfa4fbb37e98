package embedded

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/gatehouse-dev/gatehouse/store"
)

// BenchmarkListChildren lists one parent's 100 children among 100,000
// objects of the kind in the tenant (1,000 parents): by the children
// index, and by the scan a listing with deleted objects still does.
func BenchmarkListChildren(b *testing.B) {
	ctx := context.Background()
	s, err := Open(ctx, b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	const parents, per = 1000, 100
	for p := 0; p < parents; p += 100 {
		_, err := s.Update(ctx, func(ctx context.Context, tx store.Tx) error {
			for q := p; q < p+100; q++ {
				for c := range per {
					o := &store.Object{Kind: "members", TenantID: "t1", ID: fmt.Sprintf("m%04d-%03d", q, c),
						ParentID: fmt.Sprintf("g%04d", q), Spec: json.RawMessage(`{}`)}
					if err := tx.Create(ctx, o); err != nil {
						return err
					}
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	for _, c := range []struct {
		name           string
		includeDeleted bool
	}{{"index", false}, {"scan", true}} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				page, err := s.List(ctx, store.Query{Kind: "members", TenantID: "t1", ParentID: "g0500", Limit: 100, IncludeDeleted: c.includeDeleted})
				if err != nil || len(page.Items) != per {
					b.Fatalf("%d children, %v", len(page.Items), err)
				}
			}
		})
	}
}
