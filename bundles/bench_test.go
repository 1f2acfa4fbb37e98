package bundles

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/store"
)

// BenchmarkIncrementalRebuild measures, with 1,000 tenants of 50 APIs in the
// embedded store and the manager following the change feed, the time from
// committing a change to one policy to the new bundle being served.
func BenchmarkIncrementalRebuild(b *testing.B) {
	for _, c := range []struct{ tenants, apis int }{{1000, 50}, {1, 1000}} {
		b.Run(fmt.Sprintf("tenants=%d/apis=%d", c.tenants, c.apis), func(b *testing.B) {
			f := newFixture(b)
			seedBench(b, f.store, c.tenants, c.apis)
			m := NewManager(f.store, f.keys, slog.New(slog.NewTextHandler(io.Discard, nil)))
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go func() { _ = m.Run(ctx) }()
			<-m.Ready()
			i := 0
			for b.Loop() {
				tid := fmt.Sprintf("t%04d", i%c.tenants)
				before := m.Get(tid, "edge").Revision
				if _, err := f.store.Update(ctx, func(ctx context.Context, tx store.Tx) error {
					p, err := policyRepo.Get(ctx, tx, tid, "policy-0")
					if err != nil {
						return err
					}
					p.Spec.Validators[0].Conf["value"] = fmt.Sprintf("v%d", i)
					return policyRepo.Update(ctx, tx, p, 0)
				}); err != nil {
					b.Fatal(err)
				}
				for m.Get(tid, "edge").Revision == before {
					select {
					case <-m.Changed():
					case <-time.After(10 * time.Second):
						b.Fatal("no rebuild")
					}
				}
				i++
			}
		})
	}
}

func seedBench(b *testing.B, st store.Store, tenants, apis int) {
	for t := 0; t < tenants; t++ {
		tid := fmt.Sprintf("t%04d", t)
		objs := []*store.Object{testkit.Tenant(tid)}
		for p := 0; p < 5; p++ {
			objs = append(objs, testkit.Policy(tid, fmt.Sprintf("policy-%d", p), testkit.Validators(
				testkit.HeaderEquals("x-tenant", tid),
				model.ValidatorConfig{Name: "scope", Conf: map[string]any{"scope": fmt.Sprintf("scope-%d", p)}})))
		}
		for s := 0; s < (apis+9)/10; s++ {
			sid := fmt.Sprintf("svc-%03d", s)
			objs = append(objs, testkit.Service(tid, sid, "http://"+sid))
		}
		for a := 0; a < apis; a++ {
			sid := fmt.Sprintf("svc-%03d", a/10)
			objs = append(objs, testkit.API(tid, fmt.Sprintf("api-%05d", a),
				model.APISpec{ServiceID: sid, Method: "GET", Path: fmt.Sprintf("/r%d/{id}", a), PolicyID: fmt.Sprintf("policy-%d", a%5)}))
		}
		objs = append(objs, testkit.Gateway(tid, "edge", model.GatewaySpec{Type: model.GatewayEnvoy}))
		testkit.Create(b, st, objs...)
	}
}
