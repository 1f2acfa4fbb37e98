package bundles

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/secretbox"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/policies"
	"github.com/gatehouse-dev/gatehouse/store"
	"github.com/gatehouse-dev/gatehouse/store/embedded"
)

type fixture struct {
	t     *testing.T
	store store.Store
	keys  *KeyStore
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	st, err := embedded.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	box, err := secretbox.New(bytes.Repeat([]byte{7}, secretbox.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, store: st, keys: NewKeyStore(st, box)}
}

func (f *fixture) write(fn func(ctx context.Context, tx store.Tx) error) {
	f.t.Helper()
	if _, err := f.store.Update(context.Background(), fn); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) tenant(tid string, services ...string) {
	f.write(func(ctx context.Context, tx store.Tx) error {
		if err := tenantRepo.Create(ctx, tx, &store.Typed[model.TenantSpec]{Meta: store.Object{ID: tid}, Spec: model.TenantSpec{Name: tid, Status: model.TenantAvailable}}); err != nil {
			return err
		}
		if err := policyRepo.Create(ctx, tx, &store.Typed[model.PolicySpec]{Meta: store.Object{TenantID: tid, ID: "allow", Name: "allow"},
			Spec: model.PolicySpec{Language: model.LanguageValidators, Validators: []model.ValidatorConfig{{Name: "true"}}}}); err != nil {
			return err
		}
		for _, s := range services {
			if err := serviceRepo.Create(ctx, tx, &store.Typed[model.ServiceSpec]{Meta: store.Object{TenantID: tid, ID: s, Name: s},
				Spec: model.ServiceSpec{URL: "http://" + s + ".internal"}}); err != nil {
				return err
			}
			if err := apiRepo.Create(ctx, tx, &store.Typed[model.APISpec]{Meta: store.Object{TenantID: tid, ID: s + "-get", ParentID: s},
				Spec: model.APISpec{ServiceID: s, Method: "GET", Path: "/" + s, PolicyID: "allow"}}); err != nil {
				return err
			}
		}
		return nil
	})
}

func (f *fixture) gateway(tid, id string, services ...string) {
	f.write(func(ctx context.Context, tx store.Tx) error {
		return gatewayRepo.Create(ctx, tx, &store.Typed[model.GatewaySpec]{Meta: store.Object{TenantID: tid, ID: id, Name: id},
			Spec: model.GatewaySpec{Type: model.GatewayEnvoy, ServiceIDs: services}})
	})
}

func (f *fixture) start() (*Manager, context.CancelFunc) {
	f.t.Helper()
	m := NewManager(f.store, f.keys, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = m.Run(ctx); close(done) }()
	f.t.Cleanup(func() { cancel(); <-done })
	select {
	case <-m.Ready():
	case <-time.After(20 * time.Second):
		f.t.Fatal("manager not ready")
	}
	return m, cancel
}

// eventually polls cond for up to 5s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestManagerBuildsAndFollowsChanges(t *testing.T) {
	f := newFixture(t)
	f.tenant("acme", "pets", "admin")
	f.gateway("acme", "all")
	f.gateway("acme", "pets-gw", "pets")
	f.tenant("other", "x")
	f.gateway("other", "gw")
	m, _ := f.start()

	all, pets, other := m.Get("acme", "all"), m.Get("acme", "pets-gw"), m.Get("other", "gw")
	if all == nil || pets == nil || other == nil {
		t.Fatal("bundles missing after start")
	}
	key, err := f.keys.Key(context.Background(), "acme")
	if err != nil {
		t.Fatal(err)
	}
	b, err := policies.ReadBundle(all.Raw, policies.VerificationConfig(key.KeyID, key.PublicKeyPEM))
	if err != nil {
		t.Fatalf("bundle does not verify with the tenant key: %v", err)
	}
	if b.Manifest.Revision != all.ETag()[1:len(all.ETag())-1] {
		t.Fatalf("manifest revision %s vs etag %s", b.Manifest.Revision, all.ETag())
	}
	builds := m.Builds()

	// A change to the admin service's API rebuilds only the gateway that
	// includes it.
	f.write(func(ctx context.Context, tx store.Tx) error {
		a, err := apiRepo.Get(ctx, tx, "acme", "admin-get")
		if err != nil {
			return err
		}
		a.Spec.Path = "/admin/{id}"
		return apiRepo.Update(ctx, tx, a, 0)
	})
	eventually(t, "the all gateway to be rebuilt", func() bool { return m.Get("acme", "all").Revision > all.Revision })
	time.Sleep(100 * time.Millisecond)
	if got := m.Get("acme", "pets-gw"); got != pets {
		t.Fatal("a gateway whose inputs did not change was rebuilt")
	}
	if got := m.Get("other", "gw"); got != other {
		t.Fatal("another tenant's gateway was rebuilt")
	}
	if n := m.Builds() - builds; n != 1 {
		t.Fatalf("%d builds for one change, want 1", n)
	}

	// A write that changes no bundle input (a signing key lookup, a runtime
	// state) rebuilds nothing.
	builds = m.Builds()
	f.write(func(ctx context.Context, tx store.Tx) error {
		return tx.Create(ctx, &store.Object{Kind: "unrelated", TenantID: "acme", ID: "x"})
	})
	time.Sleep(100 * time.Millisecond)
	if m.Builds() != builds {
		t.Fatal("an unrelated write rebuilt bundles")
	}

	// Gateway and tenant deletion drop bundles.
	f.write(func(ctx context.Context, tx store.Tx) error {
		_, err := gatewayRepo.Delete(ctx, tx, "acme", "pets-gw", 0)
		return err
	})
	eventually(t, "the deleted gateway's bundle to go", func() bool { return m.Get("acme", "pets-gw") == nil })
	f.write(func(ctx context.Context, tx store.Tx) error {
		if _, err := tx.DeleteTenant(ctx, "other"); err != nil {
			return err
		}
		_, err := tx.Delete(ctx, model.KindTenant, "", "other", 0, true)
		return err
	})
	eventually(t, "the deleted tenant's bundles to go", func() bool { return m.Get("other", "gw") == nil })
}

func TestRevisionsSurviveRestarts(t *testing.T) {
	f := newFixture(t)
	f.tenant("acme", "pets")
	f.gateway("acme", "gw")
	m1, stop := f.start()
	first := m1.Get("acme", "gw")
	stop()
	// Unrelated writes move the store revision on.
	f.tenant("later", "x")
	m2, _ := f.start()
	second := m2.Get("acme", "gw")
	if second.Revision != first.Revision || !bytes.Equal(second.Raw, first.Raw) {
		t.Fatalf("unchanged content got revision %d after a restart (was %d) or different bytes", second.Revision, first.Revision)
	}
}

func TestWaitLongPolls(t *testing.T) {
	f := newFixture(t)
	f.tenant("acme", "pets")
	f.gateway("acme", "gw")
	m, _ := f.start()
	cur := m.Get("acme", "gw")
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	start := time.Now()
	if b := m.Wait(ctx, "acme", "gw", cur.ETag()); b != cur || time.Since(start) < 100*time.Millisecond {
		t.Fatal("Wait on the current ETag must hold until the timeout and return the same bundle")
	}
	if b := m.Wait(context.Background(), "acme", "gw", `"0"`); b != cur {
		t.Fatal("Wait on an old ETag must return at once")
	}
	got := make(chan *Bundle, 1)
	go func() { got <- m.Wait(context.Background(), "acme", "gw", cur.ETag()) }()
	time.Sleep(50 * time.Millisecond)
	f.write(func(ctx context.Context, tx store.Tx) error {
		p, err := policyRepo.Get(ctx, tx, "acme", "allow")
		if err != nil {
			return err
		}
		p.Spec.Validators = []model.ValidatorConfig{{Name: "false"}}
		return policyRepo.Update(ctx, tx, p, 0)
	})
	select {
	case b := <-got:
		if b == nil || b.Revision <= cur.Revision {
			t.Fatalf("Wait returned %+v", b)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Wait did not return after a change")
	}
	if b := m.Wait(context.Background(), "acme", "nope", ""); b != nil {
		t.Fatal("Wait for an unknown gateway must return nil")
	}
}
