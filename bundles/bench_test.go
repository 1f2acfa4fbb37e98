package bundles

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/store"
)

// BenchmarkIncrementalRebuild measures, with 1,000 tenants of 50 APIs in the
// embedded store and the manager following the change feed, the time from
// committing a change to one policy to the new bundle being served.
func BenchmarkIncrementalRebuild(b *testing.B) {
	for _, c := range []struct{ tenants, apis int }{{1000, 50}, {1, 1000}} {
		b.Run(fmt.Sprintf("tenants=%d/apis=%d", c.tenants, c.apis), func(b *testing.B) {
			f := newFixture(&testing.T{})
			defer f.store.Close()
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
		_, err := st.Update(context.Background(), func(ctx context.Context, tx store.Tx) error {
			if err := tenantRepo.Create(ctx, tx, &store.Typed[model.TenantSpec]{Meta: store.Object{ID: tid}, Spec: model.TenantSpec{Name: tid, Status: model.TenantAvailable}}); err != nil {
				return err
			}
			for p := 0; p < 5; p++ {
				if err := policyRepo.Create(ctx, tx, &store.Typed[model.PolicySpec]{Meta: store.Object{TenantID: tid, ID: fmt.Sprintf("policy-%d", p), Name: fmt.Sprintf("policy-%d", p)},
					Spec: model.PolicySpec{Language: model.LanguageValidators, Validators: []model.ValidatorConfig{
						{Name: "header", Conf: map[string]any{"name": "x-tenant", "value": tid}},
						{Name: "scope", Conf: map[string]any{"scope": fmt.Sprintf("scope-%d", p)}}}}}); err != nil {
					return err
				}
			}
			for s := 0; s < (apis+9)/10; s++ {
				sid := fmt.Sprintf("svc-%03d", s)
				if err := serviceRepo.Create(ctx, tx, &store.Typed[model.ServiceSpec]{Meta: store.Object{TenantID: tid, ID: sid, Name: sid}, Spec: model.ServiceSpec{URL: "http://" + sid}}); err != nil {
					return err
				}
			}
			for a := 0; a < apis; a++ {
				sid := fmt.Sprintf("svc-%03d", a/10)
				path := fmt.Sprintf("/r%d/{id}", a)
				if err := apiRepo.Create(ctx, tx, &store.Typed[model.APISpec]{Meta: store.Object{TenantID: tid, ID: fmt.Sprintf("api-%05d", a), ParentID: sid},
					Spec: model.APISpec{ServiceID: sid, Method: "GET", Path: path, PolicyID: fmt.Sprintf("policy-%d", a%5)}}); err != nil {
					return err
				}
			}
			return gatewayRepo.Create(ctx, tx, &store.Typed[model.GatewaySpec]{Meta: store.Object{TenantID: tid, ID: "edge", Name: "edge"}, Spec: model.GatewaySpec{Type: model.GatewayEnvoy}})
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}
