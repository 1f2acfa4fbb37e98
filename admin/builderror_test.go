package admin_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/admin"
	"github.com/gatehouse-dev/gatehouse/bundles"
	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	"github.com/gatehouse-dev/gatehouse/store"
	"github.com/gatehouse-dev/gatehouse/store/embedded"
)

// buildDownStore is the bundle manager's view of the store: its snapshot
// reads fail while down is set (the admin API's view keeps working).
type buildDownStore struct {
	store.Store
	down atomic.Bool
}

func (s *buildDownStore) View(ctx context.Context, fn func(ctx context.Context, r store.Reader) error) error {
	if s.down.Load() {
		return fmt.Errorf("%w: the test took the bundle manager's store down", store.ErrUnavailable)
	}
	return s.Store.View(ctx, fn)
}

// TestGatewayStatusShowsBuildError: while a gateway's bundle fails to
// build (its tenant's builds fail and are retried), the gateway's status
// has build_error — the error, since when, how many failures, retrying —
// beside the last good bundle, and loses it once a retry succeeds.
func TestGatewayStatusShowsBuildError(t *testing.T) {
	st, err := embedded.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	box := testkit.SecretBox(t)
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	keys := bundles.NewKeyStore(st, box)
	faulty := &buildDownStore{Store: st}
	mgr := bundles.NewManager(faulty, keys, log, bundles.WithPublicURL("https://gh.example"))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = mgr.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done; st.Close() })
	api, err := admin.New(admin.Options{Store: st, BootstrapToken: rootToken, PublicURL: "https://gh.example", Logger: log, Bundles: mgr, Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.Handler())
	t.Cleanup(srv.Close)
	e := &env{t: t, srv: srv, api: api, store: st, bundles: mgr, keys: keys}

	e.createTenant("acme")
	e.expect(e.do("POST", "/api/admin/acme/gateways", rootToken, map[string]any{"id": "edge", "name": "edge"}), 201)
	status := func() map[string]any {
		t.Helper()
		return e.expect(e.do("GET", "/api/admin/acme/gateways/edge", rootToken, nil), 200).json(t)["status"].(map[string]any)
	}
	waitStatus := func(what string, cond func(st map[string]any) bool) map[string]any {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			st := status()
			if cond(st) {
				return st
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s: %v", what, st)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	built := waitStatus("the first bundle", func(st map[string]any) bool { return st["bundle"].(map[string]any)["revision"] != nil })
	if _, ok := built["build_error"]; ok {
		t.Fatalf("build_error on a healthy gateway: %v", built)
	}
	rev := built["bundle"].(map[string]any)["revision"]

	faulty.down.Store(true)
	e.expect(e.do("POST", "/api/admin/acme/scopes", rootToken, map[string]any{"id": "read", "name": "read"}), 201)
	failing := waitStatus("build_error", func(st map[string]any) bool {
		be, ok := st["build_error"].(map[string]any)
		return ok && be["failures"].(float64) >= 2
	})
	be := failing["build_error"].(map[string]any)
	since, err := time.Parse(time.RFC3339Nano, fmt.Sprint(be["since"]))
	if !strings.Contains(fmt.Sprint(be["error"]), "took the bundle manager's store down") || be["retrying"] != true || err != nil || time.Since(since) > time.Minute {
		t.Fatalf("build_error: %v", be)
	}
	if b := failing["bundle"].(map[string]any); b["revision"] != rev || b["error"] != be["error"] {
		t.Fatalf("while failing, bundle must be the last good one and carry the error: %v", b)
	}

	faulty.down.Store(false)
	after := waitStatus("the retry to succeed", func(st map[string]any) bool {
		_, failing := st["build_error"]
		return !failing && st["bundle"].(map[string]any)["revision"] != rev
	})
	if b := after["bundle"].(map[string]any); b["error"] != nil {
		t.Fatalf("bundle error after recovery: %v", b)
	}
}
