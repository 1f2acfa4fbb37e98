package admin_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/admin"
	"github.com/gatehouse-dev/gatehouse/internal/httpapi"
	"github.com/gatehouse-dev/gatehouse/internal/pgtest"
	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	"github.com/gatehouse-dev/gatehouse/store"
	"github.com/gatehouse-dev/gatehouse/store/embedded"
	"github.com/gatehouse-dev/gatehouse/store/postgres"
)

// newEnvOn is newEnvWith without changes, on st.
func newEnvOn(t *testing.T, st store.Store) *env {
	t.Helper()
	return newEnvOnWith(t, st, nil)
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
	if r.status != 503 || r.errorCode(t) != httpapi.CodeStoreUnavailable || r.header.Get("Retry-After") != fmt.Sprint(admin.StoreRetryAfter) {
		t.Errorf("%s: %d Retry-After %q %s; want 503 store_unavailable with Retry-After", what, r.status, r.header.Get("Retry-After"), r.body)
	}
}

// TestHungDatabase: with PostgreSQL hung (every server process stopped),
// admin requests and readyz answer 503 store_unavailable within a bound,
// and everything works again once the database resumes. (The bundle
// service's side, serving remembered gateways from memory, is
// bundleservice's TestHungDatabase.)
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
	e := newEnvOn(t, store.WithDeadline(raw, deadline))

	e.createTenant("acme")
	e.expect(e.do("POST", "/api/admin/acme/policies", rootToken, map[string]any{"id": "keyed", "policy_name": "keyed", "definition": goodRego}), 201)
	e.seedService("acme", "pets", "/pets/{id}", "keyed")
	e.expect(e.do("POST", "/api/admin/acme/gateways", rootToken, map[string]any{"id": "edge", "name": "edge"}), 201)

	if err := srv.Pause(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Resume() })
	expectStoreUnavailable(t, "admin read", within(t, "admin read", bound, func() resp {
		return e.do("GET", "/api/admin/acme/gateways", rootToken, nil)
	}))
	expectStoreUnavailable(t, "admin write", within(t, "admin write", bound, func() resp {
		return e.do("POST", "/api/admin/acme/scopes", rootToken, map[string]any{"id": "read", "name": "read"})
	}))
	expectStoreUnavailable(t, "readyz", within(t, "readyz", bound, func() resp { return e.do("GET", "/readyz", "", nil) }))

	if err := srv.Resume(); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 30*time.Second, func() error {
		return testkit.Check(e.do("GET", "/readyz", "", nil).status == 200, "readyz is not 200 yet")
	}, "readyz after the database resumed")
	e.expect(e.do("GET", "/api/admin/acme/gateways/edge", rootToken, nil), 200)
	e.expect(e.do("POST", "/api/admin/acme/scopes", rootToken, map[string]any{"id": "write", "name": "write"}), 201)
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
	e := newEnvOn(t, store.WithDeadline(diskFull{Store: base, full: &full}, 5*time.Second))
	e.createTenant("acme")
	full.Store(true)
	r := e.do("POST", "/api/admin/acme/scopes", rootToken, map[string]any{"id": "read", "name": "read"})
	if r.status != 507 || r.errorCode(t) != httpapi.CodeInsufficientStorage {
		t.Fatalf("write on a full disk: %d %s, want 507 insufficient_storage", r.status, r.body)
	}
	e.expect(e.do("GET", "/api/admin/acme/scopes/read", rootToken, nil), 404)
	if r := e.do("POST", "/api/admin/acme/scopes", rootToken, map[string]any{"id": "bad id!"}); r.status != 400 {
		t.Fatalf("a bad request on a full disk: %d %s, want 400 (validation comes first)", r.status, r.body)
	}
	for range 2 {
		if r := e.do("GET", "/readyz", "", nil); r.status != 503 || r.errorCode(t) != httpapi.CodeInsufficientStorage {
			t.Fatalf("readyz on a full disk: %d %s, want 503 insufficient_storage", r.status, r.body)
		}
	}
	e.expect(e.do("GET", "/api/admin/acme/tenant", rootToken, nil), 200) // reads still work
	full.Store(false)
	e.expect(e.do("GET", "/readyz", "", nil), 200)
	e.expect(e.do("POST", "/api/admin/acme/scopes", rootToken, map[string]any{"id": "read", "name": "read"}), 201)
}
