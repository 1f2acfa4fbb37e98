package envoy

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/bundles"
	"github.com/gatehouse-dev/gatehouse/internal/secretbox"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/policies"
	"github.com/gatehouse-dev/gatehouse/store"
	"github.com/gatehouse-dev/gatehouse/store/embedded"
)

var (
	tenantRepo  = store.Repo[model.TenantSpec]{Kind: model.KindTenant}
	serviceRepo = store.Repo[model.ServiceSpec]{Kind: model.KindService}
	apiRepo     = store.Repo[model.APISpec]{Kind: model.KindAPI}
	gatewayRepo = store.Repo[model.GatewaySpec]{Kind: model.KindGateway}
)

// fixture is an embedded store seeded through its repositories, the way
// the admin API writes, and the bundle manager that compiles it.
type fixture struct {
	t     testing.TB
	store store.Store
	keys  *bundles.KeyStore
}

func newFixture(t testing.TB) *fixture {
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
	return &fixture{t: t, store: st, keys: bundles.NewKeyStore(st, box)}
}

func (f *fixture) write(fn func(ctx context.Context, tx store.Tx) error) {
	f.t.Helper()
	if _, err := f.store.Update(context.Background(), fn); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) tenant(tid string) {
	f.t.Helper()
	f.write(func(ctx context.Context, tx store.Tx) error {
		return tenantRepo.Create(ctx, tx, &store.Typed[model.TenantSpec]{Meta: store.Object{ID: tid},
			Spec: model.TenantSpec{Name: tid, Status: model.TenantAvailable}})
	})
}

func (f *fixture) service(tid, id, url string, hosts ...string) {
	f.t.Helper()
	f.write(func(ctx context.Context, tx store.Tx) error {
		return serviceRepo.Create(ctx, tx, &store.Typed[model.ServiceSpec]{Meta: store.Object{TenantID: tid, ID: id, Name: id},
			Spec: model.ServiceSpec{URL: url, Hosts: hosts}})
	})
}

// api is an API of a service; public APIs get ext_authz disabled.
type api struct {
	id, service, method, path string
	public                    bool
}

func (f *fixture) apis(tid string, apis ...api) {
	f.t.Helper()
	f.write(func(ctx context.Context, tx store.Tx) error {
		for _, a := range apis {
			if err := apiRepo.Create(ctx, tx, &store.Typed[model.APISpec]{
				Meta: store.Object{TenantID: tid, ID: a.id, ParentID: a.service, Name: model.APIName(a.service, a.method, a.id)},
				Spec: model.APISpec{ServiceID: a.service, Method: a.method, Path: a.path, Public: a.public}}); err != nil {
				return err
			}
		}
		return nil
	})
}

// update changes an object's spec through its repository.
func update[S any](f *fixture, repo store.Repo[S], tid, id string, fn func(*S)) {
	f.t.Helper()
	f.write(func(ctx context.Context, tx store.Tx) error {
		o, err := repo.Get(ctx, tx, tid, id)
		if err != nil {
			return err
		}
		fn(&o.Spec)
		return repo.Update(ctx, tx, o, 0)
	})
}

func (f *fixture) setAPIPath(tid, id, path string) {
	f.t.Helper()
	update(f, apiRepo, tid, id, func(a *model.APISpec) { a.Path = path })
}

func (f *fixture) gateway(tid, id string, spec model.GatewaySpec) {
	f.t.Helper()
	f.write(func(ctx context.Context, tx store.Tx) error {
		return gatewayRepo.Create(ctx, tx, &store.Typed[model.GatewaySpec]{Meta: store.Object{TenantID: tid, ID: id, Name: id}, Spec: spec})
	})
}

// compile compiles a gateway straight from the store (no bundle manager).
func (f *fixture) compile(tid, gw string) *policies.Compiled {
	f.t.Helper()
	var cfg *policies.Config
	err := f.store.View(context.Background(), func(ctx context.Context, r store.Reader) error {
		var err error
		cfg, err = bundles.LoadConfig(ctx, r, tid)
		return err
	})
	if err != nil {
		f.t.Fatal(err)
	}
	c, err := policies.Compile(cfg, gw)
	if err != nil {
		f.t.Fatal(err)
	}
	return c
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// controlPlane is a running bundle manager and xDS server on loopback.
type controlPlane struct {
	bundles *bundles.Manager
	xds     *Server
	addr    string
	creds   *testCredentials
}

// testCredentials is a CredentialVerifier over minted tokens, as the
// control plane's is over the store's gateway credentials.
type testCredentials struct {
	mu     sync.Mutex
	n      int
	tokens map[string]GatewayIdentity
	// fault, when set, is what VerifyGateway returns for every token.
	fault error
}

func (c *testCredentials) VerifyGateway(_ context.Context, token string) (GatewayIdentity, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fault != nil {
		return GatewayIdentity{}, c.fault
	}
	id, ok := c.tokens[token]
	if !ok {
		return GatewayIdentity{}, fmt.Errorf("token %.8s…: %w", token, ErrInvalidCredential)
	}
	return id, nil
}

// mint returns a new credential of a gateway.
func (c *testCredentials) mint(tid, gw string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n++
	token := fmt.Sprintf("ghg_%s.cred%d.secret%d", tid, c.n, c.n)
	c.tokens[token] = GatewayIdentity{TenantID: tid, GatewayID: gw, CredentialID: fmt.Sprintf("cred%d", c.n)}
	return token
}

func (c *testCredentials) revoke(token string) {
	c.mu.Lock()
	delete(c.tokens, token)
	c.mu.Unlock()
}

func (c *testCredentials) setFault(err error) {
	c.mu.Lock()
	c.fault = err
	c.mu.Unlock()
}

// token mints a credential of a gateway.
func (cp *controlPlane) token(tid, gw string) string { return cp.creds.mint(tid, gw) }

// start runs the bundle manager and an xDS server on a loopback port until
// the test ends.
func (f *fixture) start() *controlPlane {
	f.t.Helper()
	m := bundles.NewManager(f.store, f.keys, quietLogger())
	creds := &testCredentials{tokens: map[string]GatewayIdentity{}}
	srv, err := New(Options{Bundles: m, AuthorizerAddress: "authorizer.internal:9191", Logger: quietLogger(), Credentials: creds})
	if err != nil {
		f.t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.t.Fatal(err)
	}
	gs := srv.NewGRPCServer()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 3)
	go func() { _ = m.Run(ctx); done <- struct{}{} }()
	go func() { _ = srv.Run(ctx); done <- struct{}{} }()
	go func() { _ = gs.Serve(lis); done <- struct{}{} }()
	f.t.Cleanup(func() {
		cancel()
		gs.Stop()
		for range 3 {
			<-done
		}
	})
	select {
	case <-srv.Ready():
	case <-time.After(20 * time.Second):
		f.t.Fatal("xds server not ready")
	}
	return &controlPlane{bundles: m, xds: srv, addr: lis.Addr().String(), creds: creds}
}

// eventually polls cond for up to 5s.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
