package bundles

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/policies"
	"github.com/gatehouse-dev/gatehouse/store"
)

// waitBound is how long the tests wait for the manager to catch up.
const waitBound = 5 * time.Second

// fixture is an embedded store, its signing keys and the tenants and
// gateways a test seeds.
type fixture struct {
	t     testing.TB
	store store.Store
	keys  *KeyStore
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	st := testkit.Store(t)
	return &fixture{t: t, store: st, keys: NewKeyStore(st, testkit.SecretBox(t))}
}

// on is f for a step of the test: its helpers fail t.
func (f *fixture) on(t testing.TB) *fixture {
	c := *f
	c.t = t
	return &c
}

func (f *fixture) write(fn func(ctx context.Context, tx store.Tx) error) int64 {
	f.t.Helper()
	return testkit.Write(f.t, f.store, fn)
}

// tenant stores an available tenant with an allow-all validators policy
// "allow" and, per service s, the service and its API "s-get" (GET /s).
func (f *fixture) tenant(tid string, services ...string) {
	f.t.Helper()
	objs := []*store.Object{testkit.Tenant(tid), testkit.Policy(tid, "allow", testkit.Validators(testkit.AllowAll()))}
	for _, s := range services {
		objs = append(objs, testkit.Service(tid, s, "http://"+s+".internal"),
			testkit.API(tid, s+"-get", model.APISpec{ServiceID: s, Method: "GET", Path: "/" + s, PolicyID: "allow"}))
	}
	testkit.Create(f.t, f.store, objs...)
}

// gateway stores an Envoy gateway of the services (none: all of them).
func (f *fixture) gateway(tid, id string, services ...string) {
	f.t.Helper()
	testkit.Create(f.t, f.store, testkit.Gateway(tid, id, model.GatewaySpec{Type: model.GatewayEnvoy, ServiceIDs: services}))
}

func (f *fixture) start() (*Manager, context.CancelFunc) {
	f.t.Helper()
	m := NewManager(f.store, f.keys, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = m.Run(ctx); close(done) }()
	f.t.Cleanup(func() { cancel(); <-done })
	testkit.Receive(f.t, m.Ready(), 20*time.Second, "the manager to be ready")
	return m, cancel
}

// caughtUp is a condition: m has followed the feed to rev and built
// every change up to it.
func caughtUp(m *Manager, rev int64) func() error {
	return func() error {
		return testkit.Check(m.position() >= rev, "built up to revision %d of %d (lag %d)", m.position(), rev, m.Lag())
	}
}

// gone is a condition: m serves no bundle of tid/gw.
func gone(m *Manager, tid, gw string) func() error {
	return func() error {
		if b := m.Get(tid, gw); b != nil {
			return fmt.Errorf("%s/%s still served at revision %d", tid, gw, b.Revision)
		}
		return nil
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

	var all, pets, other *Bundle
	if !t.Run("every gateway's bundle is built at start, signed with its tenant's key", func(t *testing.T) {
		all, pets, other = m.Get("acme", "all"), m.Get("acme", "pets-gw"), m.Get("other", "gw")
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
	}) {
		return
	}
	if !t.Run("a change to an API rebuilds only the gateway that includes it", func(t *testing.T) {
		builds := m.Builds()
		changed := testkit.Edit(t, f.store, model.KindAPI, "acme", "admin-get", func(a *model.APISpec) { a.Path = "/admin/{id}" })
		testkit.Eventually(t, waitBound, func() error {
			got := m.Get("acme", "all").Revision
			return testkit.Check(got > all.Revision, "revision %d, was %d", got, all.Revision)
		}, "the all gateway to be rebuilt")
		testkit.Eventually(t, waitBound, caughtUp(m, changed), "the manager to build the change")
		if got := m.Get("acme", "pets-gw"); got != pets {
			t.Fatal("a gateway whose inputs did not change was rebuilt")
		}
		if got := m.Get("other", "gw"); got != other {
			t.Fatal("another tenant's gateway was rebuilt")
		}
		if n := m.Builds() - builds; n != 1 {
			t.Fatalf("%d builds for one change, want 1", n)
		}
	}) {
		return
	}
	if !t.Run("a write that changes no bundle input rebuilds nothing", func(t *testing.T) {
		builds := m.Builds()
		unrelated := testkit.Create(t, f.store, &store.Object{Kind: "unrelated", TenantID: "acme", ID: "x"})
		testkit.Eventually(t, waitBound, caughtUp(m, unrelated), "the manager to follow the unrelated write")
		if m.Builds() != builds {
			t.Fatal("an unrelated write rebuilt bundles")
		}
	}) {
		return
	}
	if !t.Run("deleting a gateway drops its bundle", func(t *testing.T) {
		testkit.Write(t, f.store, func(ctx context.Context, tx store.Tx) error {
			_, err := gatewayRepo.Delete(ctx, tx, "acme", "pets-gw", 0)
			return err
		})
		testkit.Eventually(t, waitBound, gone(m, "acme", "pets-gw"), "the deleted gateway's bundle to go")
	}) {
		return
	}
	t.Run("deleting a tenant drops its bundles", func(t *testing.T) {
		testkit.Write(t, f.store, func(ctx context.Context, tx store.Tx) error {
			if _, err := tx.DeleteTenant(ctx, "other"); err != nil {
				return err
			}
			_, err := tx.Delete(ctx, model.KindTenant, "", "other", 0, true)
			return err
		})
		testkit.Eventually(t, waitBound, gone(m, "other", "gw"), "the deleted tenant's bundles to go")
	})
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
	testkit.Edit(t, f.store, model.KindPolicy, "acme", "allow", func(p *model.PolicySpec) {
		p.Validators = []model.ValidatorConfig{{Name: "false"}}
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
