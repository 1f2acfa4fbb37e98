package envoy

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/bundles"
	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/policies"
	"github.com/gatehouse-dev/gatehouse/store"
)

// fixture is an embedded store seeded with the objects the admin API
// writes, and the bundle manager that compiles it.
type fixture struct {
	t     testing.TB
	store store.Store
	keys  *bundles.KeyStore
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	st := testkit.Store(t)
	return &fixture{t: t, store: st, keys: bundles.NewKeyStore(st, testkit.SecretBox(t))}
}

// on is f for a step of the test: its helpers fail t.
func (f *fixture) on(t testing.TB) *fixture {
	c := *f
	c.t = t
	return &c
}

func (f *fixture) write(fn func(ctx context.Context, tx store.Tx) error) {
	f.t.Helper()
	testkit.Write(f.t, f.store, fn)
}

func (f *fixture) tenant(tid string) {
	f.t.Helper()
	testkit.Create(f.t, f.store, testkit.Tenant(tid))
}

func (f *fixture) service(tid, id, url string, hosts ...string) {
	f.t.Helper()
	testkit.Create(f.t, f.store, testkit.Service(tid, id, url, hosts...))
}

// api is an API of a service; public APIs get ext_authz disabled.
type api struct {
	id, service, method, path string
	public                    bool
}

// object is the API as the store keeps it, named as the admin API names
// it (unique per service, method and id).
func (a api) object(tid string) *store.Object {
	o := testkit.API(tid, a.id, model.APISpec{ServiceID: a.service, Method: a.method, Path: a.path, Public: a.public})
	o.Name = model.APIName(a.service, a.method, a.id)
	return o
}

func (f *fixture) apis(tid string, apis ...api) {
	f.t.Helper()
	objs := make([]*store.Object, len(apis))
	for i, a := range apis {
		objs[i] = a.object(tid)
	}
	testkit.Create(f.t, f.store, objs...)
}

func (f *fixture) setAPIPath(tid, id, path string) {
	f.t.Helper()
	testkit.Edit(f.t, f.store, model.KindAPI, tid, id, func(a *model.APISpec) { a.Path = path })
}

func (f *fixture) gateway(tid, id string, spec model.GatewaySpec) {
	f.t.Helper()
	testkit.Create(f.t, f.store, testkit.Gateway(tid, id, spec))
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
// the test ends; edits change the server's options.
func (f *fixture) start(edits ...func(*Options)) *controlPlane {
	f.t.Helper()
	m := bundles.NewManager(f.store, f.keys, quietLogger())
	creds := &testCredentials{tokens: map[string]GatewayIdentity{}}
	opts := Options{Bundles: m, AuthorizerAddress: "authorizer.internal:9191", Logger: quietLogger(), Credentials: creds}
	for _, edit := range edits {
		edit(&opts)
	}
	srv, err := New(opts)
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
	testkit.Receive(f.t, srv.Ready(), 20*time.Second, "the xDS server to be ready")
	return &controlPlane{bundles: m, xds: srv, addr: lis.Addr().String(), creds: creds}
}

// waitBound is how long the tests wait for the control plane to catch up.
const waitBound = 5 * time.Second

// eventually is testkit.Eventually for a condition that reports no state.
//
// Deprecated: write a testkit.Eventually condition that says what it saw.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	testkit.Eventually(t, waitBound, func() error { return testkit.Check(cond(), "not yet") }, "%s", what)
}

// statusJSON shows an xDS status in failure messages.
func statusJSON(st XDSStatus) string {
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Sprintf("%+v", st)
	}
	return string(b)
}

// statusWhere is a condition on gateway tid/gw's xDS status: ok holds
// for it. The status is stored in *last (when last is not nil) for the
// assertions that follow, and reported when the wait times out.
func (cp *controlPlane) statusWhere(tid, gw string, last *XDSStatus, ok func(st XDSStatus) bool) func() error {
	return statusOf(cp.xds, tid, gw, last, ok)
}

// noNodes holds for a status without connected nodes.
func noNodes(st XDSStatus) bool { return len(st.Nodes) == 0 }

func statusOf(srv *Server, tid, gw string, last *XDSStatus, ok func(st XDSStatus) bool) func() error {
	return func() error {
		st := srv.Status(tid, gw)
		if last != nil {
			*last = st
		}
		return testkit.Check(ok(st), "status of %s/%s: %s", tid, gw, statusJSON(st))
	}
}
