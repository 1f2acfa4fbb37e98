package admin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/admin"
	"github.com/gatehouse-dev/gatehouse/bundles"
	"github.com/gatehouse-dev/gatehouse/internal/pgtest"
	"github.com/gatehouse-dev/gatehouse/internal/secretbox"
	"github.com/gatehouse-dev/gatehouse/store"
	"github.com/gatehouse-dev/gatehouse/store/embedded"
	"github.com/gatehouse-dev/gatehouse/store/postgres"
)

// newEnvOn is newEnv on st, with a gateway credential verifier that
// follows the change feed (as gatehouse serve runs it), returned too.
func newEnvOn(t *testing.T, st store.Store) (*env, *admin.GatewayCredentials) {
	t.Helper()
	box, err := secretbox.New(bytes.Repeat([]byte{42}, secretbox.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	keys := bundles.NewKeyStore(st, box)
	mgr := bundles.NewManager(st, keys, log)
	creds := admin.NewGatewayCredentials(st, log)
	ctx, cancel := context.WithCancel(context.Background())
	mgrDone, credsDone := make(chan struct{}), make(chan struct{})
	go func() { _ = mgr.Run(ctx); close(mgrDone) }()
	go func() { _ = creds.FollowRevocations(ctx, 0, func(context.Context) {}); close(credsDone) }()
	t.Cleanup(func() { cancel(); <-mgrDone; <-credsDone; st.Close() })
	api, err := admin.New(admin.Options{Store: st, BootstrapToken: rootToken, PublicURL: "https://gh.example",
		Logger: log, Bundles: mgr, Keys: keys, GatewayCredentials: creds})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.Handler())
	t.Cleanup(srv.Close)
	return &env{t: t, srv: srv, api: api, store: st, bundles: mgr, keys: keys}, creds
}

// within runs call and fails the test when it takes longer than limit.
func within(t *testing.T, what string, limit time.Duration, call func() resp) resp {
	t.Helper()
	start := time.Now()
	r := call()
	if d := time.Since(start); d > limit {
		t.Errorf("%s took %s (limit %s)", what, d, limit)
	}
	return r
}

// expectStoreUnavailable asserts a 503 store_unavailable with Retry-After.
func expectStoreUnavailable(t *testing.T, what string, r resp) {
	t.Helper()
	if r.status != 503 || r.errorCode(t) != admin.CodeStoreUnavailable || r.header.Get("Retry-After") != fmt.Sprint(admin.StoreRetryAfter) {
		t.Errorf("%s: %d Retry-After %q %s; want 503 store_unavailable with Retry-After", what, r.status, r.header.Get("Retry-After"), r.body)
	}
}

// TestHungDatabase: with PostgreSQL hung (every server process stopped),
// admin requests and readyz answer 503 store_unavailable within a bound;
// the bundle service keeps serving a gateway it served before the hang
// from memory (200, 304, long polls), refuses an unknown credential with
// 503 (not 401, not a hang) and status uploads with 503; everything works
// again once the database resumes; and a revoked credential is not served
// from the cache in the next hang.
func TestHungDatabase(t *testing.T) {
	const deadline = 500 * time.Millisecond
	const bound = 3 * deadline
	srv := pgtest.NewServer(t)
	url := srv.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	raw, err := postgres.OpenWith(ctx, url, postgres.Options{Timeout: deadline})
	if err != nil {
		t.Fatal(err)
	}
	e, creds := newEnvOn(t, store.WithDeadline(raw, deadline))

	e.createTenant("acme")
	e.expect(e.do("POST", "/api/admin/acme/policies", rootToken, map[string]any{"id": "keyed", "policy_name": "keyed", "definition": goodRego}), 201)
	e.seedService("acme", "pets", "/pets/{id}", "keyed")
	edgeCred, edge := e.createGateway("acme", "edge")
	_, side := e.createGateway("acme", "side")
	// The bundle service remembers edge's credential once it served it
	// with the store answering (and the feed is followed).
	var first resp
	waitUntil(t, "edge's bundle served and its credential remembered", func() bool {
		first = e.fetchBundle(bundlePath, edge)
		return first.status == 200 && creds.CachedCredentials() == 1
	})
	etag := first.header.Get("ETag")

	pause := func() {
		t.Helper()
		if err := srv.Pause(); err != nil {
			t.Fatal(err)
		}
	}
	resume := func() {
		t.Helper()
		if err := srv.Resume(); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, "readyz after the database resumed", func() bool { return e.do("GET", "/readyz", "", nil).status == 200 })
	}
	t.Cleanup(func() { _ = srv.Resume() })

	pause()
	expectStoreUnavailable(t, "admin read", within(t, "admin read", bound, func() resp {
		return e.do("GET", "/api/admin/acme/gateways", rootToken, nil)
	}))
	expectStoreUnavailable(t, "admin write", within(t, "admin write", bound, func() resp {
		return e.do("POST", "/api/admin/acme/scopes", rootToken, map[string]any{"id": "read", "name": "read"})
	}))
	expectStoreUnavailable(t, "readyz", within(t, "readyz", bound, func() resp { return e.do("GET", "/readyz", "", nil) }))

	r := within(t, "bundle from memory", bound, func() resp { return e.fetchBundle(bundlePath, edge) })
	if r.status != 200 || !bytes.Equal(r.body, first.body) || r.header.Get("ETag") != etag {
		t.Errorf("bundle while the database hangs: %d %q, want 200 with the bundle served before", r.status, r.header.Get("ETag"))
	}
	if r := within(t, "304 from memory", bound, func() resp { return e.fetchBundle(bundlePath, edge, "If-None-Match", etag) }); r.status != 304 {
		t.Errorf("conditional bundle request while the database hangs: %d %s, want 304", r.status, r.body)
	}
	if r := within(t, "long poll", bound+time.Second, func() resp {
		return e.fetchBundle(bundlePath, edge, "If-None-Match", etag, "Prefer", "wait=1")
	}); r.status != 304 {
		t.Errorf("long poll while the database hangs: %d %s, want 304 after the wait", r.status, r.body)
	}
	expectStoreUnavailable(t, "never-served credential", within(t, "never-served credential", bound, func() resp {
		return e.fetchBundle("/api/system/acme/gateways/side/opa/bundle", side)
	}))
	expectStoreUnavailable(t, "unknown credential", within(t, "unknown credential", bound, func() resp {
		return e.fetchBundle(bundlePath, "ghg_acme.nope.c2VjcmV0")
	}))
	expectStoreUnavailable(t, "status upload", within(t, "status upload", bound, func() resp {
		return e.do("POST", "/api/system/acme/gateways/edge/opa/status", edge, map[string]any{"labels": map[string]string{"id": "a"}})
	}))

	resume()
	e.expect(e.do("GET", "/api/admin/acme/gateways/edge", rootToken, nil), 200)
	e.expect(e.fetchBundle(bundlePath, edge, "If-None-Match", etag), 304)
	e.expect(e.do("POST", "/api/admin/acme/scopes", rootToken, map[string]any{"id": "write", "name": "write"}), 201)

	// A revocation seen on the change feed leaves the cache: in the next
	// hang, the revoked credential is refused, not served.
	e.expect(e.do("DELETE", "/api/admin/acme/gateways/edge/credentials/"+edgeCred, rootToken, nil), 204)
	waitUntil(t, "the revocation to leave the cache", func() bool { return creds.CachedCredentials() == 0 })
	pause()
	expectStoreUnavailable(t, "revoked credential", within(t, "revoked credential", bound, func() resp {
		return e.fetchBundle(bundlePath, edge)
	}))
	resume()
	if r := e.fetchBundle(bundlePath, edge); r.status != 401 {
		t.Errorf("revoked credential once the store answers: %d %s, want 401", r.status, r.body)
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// diskFull wraps a store whose writes fail, while full is set, as the
// embedded store fails them on a full disk (ENOSPC, after the
// transaction's own function ran: nothing is kept).
type diskFull struct {
	store.Store
	full *atomic.Bool
}

func (d diskFull) fault() error {
	return fmt.Errorf("commit: %w: %w", store.ErrStorageFull, &os.PathError{Op: "write", Path: "gatehouse.db", Err: syscall.ENOSPC})
}

func (d diskFull) Update(ctx context.Context, fn func(ctx context.Context, tx store.Tx) error) (int64, error) {
	return d.Store.Update(ctx, func(ctx context.Context, tx store.Tx) error {
		if err := fn(ctx, tx); err != nil {
			return err
		}
		if d.full.Load() {
			return d.fault()
		}
		return nil
	})
}

func (d diskFull) PutState(ctx context.Context, kind, tenantID, id string, value json.RawMessage) error {
	if d.full.Load() {
		return d.fault()
	}
	return d.Store.PutState(ctx, kind, tenantID, id, value)
}

// TestStorageFull: a write on a full disk is 507 insufficient_storage
// and keeps nothing, readyz says 503 insufficient_storage until space is
// back, and then writes work again.
func TestStorageFull(t *testing.T) {
	base, err := embedded.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var full atomic.Bool
	e, _ := newEnvOn(t, store.WithDeadline(diskFull{Store: base, full: &full}, 5*time.Second))
	e.createTenant("acme")
	full.Store(true)
	r := e.do("POST", "/api/admin/acme/scopes", rootToken, map[string]any{"id": "read", "name": "read"})
	if r.status != 507 || r.errorCode(t) != admin.CodeInsufficientStorage {
		t.Fatalf("write on a full disk: %d %s, want 507 insufficient_storage", r.status, r.body)
	}
	e.expect(e.do("GET", "/api/admin/acme/scopes/read", rootToken, nil), 404)
	if r := e.do("POST", "/api/admin/acme/scopes", rootToken, map[string]any{"id": "bad id!"}); r.status != 400 {
		t.Fatalf("a bad request on a full disk: %d %s, want 400 (validation comes first)", r.status, r.body)
	}
	for range 2 {
		if r := e.do("GET", "/readyz", "", nil); r.status != 503 || r.errorCode(t) != admin.CodeInsufficientStorage {
			t.Fatalf("readyz on a full disk: %d %s, want 503 insufficient_storage", r.status, r.body)
		}
	}
	e.expect(e.do("GET", "/api/admin/acme/tenant", rootToken, nil), 200) // reads still work
	full.Store(false)
	e.expect(e.do("GET", "/readyz", "", nil), 200)
	e.expect(e.do("POST", "/api/admin/acme/scopes", rootToken, map[string]any{"id": "read", "name": "read"}), 201)
}
