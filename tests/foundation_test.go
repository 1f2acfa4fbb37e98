package tests

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/pgtest"
)

func TestServeTenantsLifecycle(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			opts := b.options(t)
			p := startServe(t, opts)
			c := newClient(t, p.URL, opts.Token)

			if !t.Run("health and readiness answer", func(t *testing.T) {
				c := c.on(t)
				c.must(200, "GET", "/healthz", nil)
				c.must(200, "GET", "/readyz", nil)
			}) {
				return
			}
			if !t.Run("tenants are created, updated under If-Match, disabled, re-enabled and deleted", func(t *testing.T) {
				c := c.on(t)
				created := c.must(201, "POST", "/api/system/tenants", map[string]any{"id": "acme", "name": "Acme", "description": "d"}).JSON(t)
				if created["status"] != "AVAILABLE" || created["url"] != p.URL+"/api/admin/acme/tenant" {
					t.Fatalf("created: %v", created)
				}
				// The advertised url answers.
				c.must(200, "GET", strings.TrimPrefix(created["url"].(string), p.URL), nil)
				for i := 0; i < 3; i++ {
					c.must(201, "POST", "/api/system/tenants", map[string]any{"id": fmt.Sprintf("t-%d", i), "name": "T"})
				}
				etag := c.must(200, "GET", "/api/system/tenants/acme", nil).Header.Get("ETag")
				c.must(200, "PUT", "/api/system/tenants/acme", map[string]any{"name": "Acme Corp", "status": "DISABLED"}, "If-Match", etag)
				c.must(412, "PUT", "/api/system/tenants/acme", map[string]any{"name": "stale"}, "If-Match", etag)
				c.must(403, "GET", "/api/admin/acme/events", nil)
				c.must(200, "PUT", "/api/admin/acme/tenant", map[string]any{"name": "Acme Corp", "status": "AVAILABLE"})
				c.must(204, "DELETE", "/api/system/tenants/t-2", nil)
				c.must(404, "GET", "/api/system/tenants/t-2", nil)
			}) {
				return
			}
			if !t.Run("bad input gets the documented error shape, never a 5xx", func(t *testing.T) {
				c := c.on(t)
				for _, bad := range []struct {
					method, path string
					body         any
					status       int
					code         string
				}{
					{"POST", "/api/system/tenants", `{"name":"x","bogus":1}`, 400, "unknown_field"},
					{"POST", "/api/system/tenants", `{"name":true}`, 400, "invalid_field"},
					{"POST", "/api/system/tenants", `{"id":"UPPER","name":"x"}`, 400, "invalid_field"},
					{"POST", "/api/system/tenants", `{"id":"acme","name":"dup"}`, 409, "already_exists"},
					{"POST", "/api/system/tenants", `{"name":"` + strings.Repeat("a", 2<<20) + `"}`, 413, "body_too_large"},
					{"GET", "/api/admin/ghost/tenant", nil, 404, "not_found"},
					{"GET", "/api/system/tenants?limit=-1", nil, 400, "invalid_field"},
				} {
					r := c.do(bad.method, bad.path, bad.body)
					if r.Status != bad.status {
						t.Fatalf("%s %s: %d, want %d: %.200s", bad.method, bad.path, r.Status, bad.status, r.Body)
					}
					m := r.JSON(t)
					if m["error_code"] != bad.code || m["status_code"] != float64(bad.status) || m["error"] == "" || m["details"] == nil {
						t.Fatalf("%s %s: error body %v", bad.method, bad.path, m)
					}
				}
				if r := newClient(t, p.URL, "wrong-token").do("GET", "/api/system/tenants", nil); r.Status != 401 || r.Header.Get("WWW-Authenticate") == "" {
					t.Fatalf("wrong token: %d %v", r.Status, r.Header)
				}
			}) {
				return
			}
			t.Run("a graceful restart keeps every tenant and audit event", func(t *testing.T) {
				c := c.on(t)
				before := c.must(200, "GET", "/api/system/tenants", nil).JSON(t)
				events := c.must(200, "GET", "/api/admin/acme/events", nil).JSON(t)["events"].([]any)
				p.on(t).stop()
				p2 := startServe(t, opts)
				c2 := newClient(t, p2.URL, opts.Token)
				after := c2.must(200, "GET", "/api/system/tenants", nil).JSON(t)
				// The url follows the listen address, which changes across restarts.
				for _, list := range []map[string]any{before, after} {
					for _, x := range list["tenants"].([]any) {
						delete(x.(map[string]any), "url")
					}
				}
				if fmt.Sprint(before["tenants"]) != fmt.Sprint(after["tenants"]) || after["total"] != float64(4) { // three, and the reserved tenant system
					t.Fatalf("tenants changed across restart:\nbefore %v\nafter  %v", before, after)
				}
				events2 := c2.must(200, "GET", "/api/admin/acme/events", nil).JSON(t)["events"].([]any)
				if fmt.Sprint(events) != fmt.Sprint(events2) || len(events2) != 3 { // create, disable, re-enable
					t.Fatalf("audit events changed across restart (%d -> %d)", len(events), len(events2))
				}
				got := c2.must(200, "GET", "/api/system/tenants/acme", nil).JSON(t)
				if got["name"] != "Acme Corp" || got["status"] != "AVAILABLE" {
					t.Fatalf("acme after restart: %v", got)
				}
				p2.stop()
			})
		})
	}
}

// TestKill9KeepsAcknowledgedWrites kills the server with SIGKILL in the
// middle of a burst of writes: every write it acknowledged must be there
// after a restart, with its audit event.
func TestKill9KeepsAcknowledgedWrites(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			opts := b.options(t)
			p := startServe(t, opts)
			c := newClient(t, p.URL, opts.Token)
			c.http.Timeout = 5 * time.Second

			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var (
				mu    sync.Mutex
				acked []string
				n     atomic.Int64
				wg    sync.WaitGroup
			)
			for w := 0; w < 4; w++ {
				wg.Add(1)
				go func(w int) {
					defer wg.Done()
					for i := 0; ctx.Err() == nil; i++ {
						id := fmt.Sprintf("burst-%d-%d", w, i)
						r, err := c.try(ctx, "POST", "/api/system/tenants", map[string]any{"id": id, "name": id})
						if err != nil {
							continue // the server is gone; this write was not acknowledged
						}
						if r.Status == 201 {
							mu.Lock()
							acked = append(acked, id)
							mu.Unlock()
							n.Add(1)
						}
					}
				}(w)
			}
			deadline := time.Now().Add(30 * time.Second)
			for n.Load() < 40 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			p.kill() // SIGKILL while writers are mid-flight
			time.Sleep(100 * time.Millisecond)
			cancel()
			wg.Wait()
			if len(acked) < 40 {
				t.Fatalf("only %d writes were acknowledged before the kill", len(acked))
			}

			p2 := startServe(t, opts)
			c2 := newClient(t, p2.URL, opts.Token)
			for _, id := range acked {
				c2.must(200, "GET", "/api/system/tenants/"+id, nil)
				evs := c2.must(200, "GET", "/api/admin/"+id+"/events", nil).JSON(t)["events"].([]any)
				if len(evs) != 1 {
					t.Fatalf("tenant %s: %d audit events after the crash, want 1", id, len(evs))
				}
			}
			t.Logf("%d acknowledged writes all survived SIGKILL", len(acked))
			p2.stop()
		})
	}
}

// TestGeneratedBootstrapToken: with GATEHOUSE_ADMIN_TOKEN unset, the first
// start generates a token into the data dir (0600), says where it is, and the
// same token is used after a restart.
func TestGeneratedBootstrapToken(t *testing.T) {
	dir := t.TempDir()
	p := startServe(t, serveOptions{DataDir: dir})
	path := filepath.Join(dir, "admin-token")
	info, err := os.Stat(path)
	if err != nil {
		t.Fatalf("no generated token file: %v", err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode %v, want 0600", info.Mode().Perm())
	}
	raw, _ := os.ReadFile(path)
	token := strings.TrimSpace(string(raw))
	if out := p.stdout.String(); !strings.Contains(out, path) || strings.Contains(out, token) {
		t.Fatalf("the banner must name the token file and not print the token:\n%s", out)
	}
	if strings.Contains(p.stderr.String(), token) {
		t.Fatal("the token was logged")
	}
	newClient(t, p.URL, token).must(200, "GET", "/api/system/tenants", nil)
	newClient(t, p.URL, token+"x").must(401, "GET", "/api/system/tenants", nil)
	p.stop()
	p2 := startServe(t, serveOptions{DataDir: dir})
	newClient(t, p2.URL, token).must(200, "GET", "/api/system/tenants", nil)
	p2.stop()
}

// TestServeHelpDocumentsConfiguration checks flags and their environment
// variables are documented in --help.
func TestServeHelpDocumentsConfiguration(t *testing.T) {
	out, err := exec.Command(gatehouseBin, "serve", "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("serve --help: %v\n%s", err, out)
	}
	for _, want := range []string{"--http-addr", "GATEHOUSE_HTTP_ADDR", "127.0.0.1:8080", "--data-dir", "GATEHOUSE_DATA_DIR",
		"./gatehouse-data", "--database-url", "GATEHOUSE_DATABASE_URL", "GATEHOUSE_ADMIN_TOKEN",
		"--authz-addr", "GATEHOUSE_AUTHZ_ADDR", "--xds-addr", "GATEHOUSE_XDS_ADDR", "--xds-public-addr", "GATEHOUSE_XDS_PUBLIC_ADDR",
		"--authorizer-address", "GATEHOUSE_AUTHORIZER_ADDRESS", "--authz-default-gateway", "GATEHOUSE_AUTHZ_DEFAULT_GATEWAY",
		"--jwks-allow-private-urls", "GATEHOUSE_JWKS_ALLOW_PRIVATE_URLS", "--master-key-file", "GATEHOUSE_MASTER_KEY_FILE",
		"--metrics-addr", "GATEHOUSE_METRICS_ADDR"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("serve --help does not mention %s", want)
		}
	}
}

// TestEnvironmentConfiguresServe: GATEHOUSE_HTTP_ADDR and GATEHOUSE_DATA_DIR
// work like their flags.
func TestEnvironmentConfiguresServe(t *testing.T) {
	dir := t.TempDir()
	env := []string{"GATEHOUSE_HTTP_ADDR=127.0.0.1:0", "GATEHOUSE_DATA_DIR=" + dir, "GATEHOUSE_ADMIN_TOKEN=" + testToken,
		"GATEHOUSE_AUTHZ_ADDR=127.0.0.1:0", "GATEHOUSE_XDS_ADDR=127.0.0.1:0", "PATH=" + os.Getenv("PATH")}
	p := start(t, env, "serve")
	p.URL = "http://" + p.waitLog(t, "admin API listening", "addr")
	for msg, port := range map[string]string{"ext_authz listening": ":9191", "xDS listening": ":18000"} {
		if addr := p.waitLog(t, msg, "addr"); strings.HasSuffix(addr, port) {
			t.Fatalf("%s on %s: the environment was ignored", msg, addr)
		}
	}
	newClient(t, p.URL, testToken).must(200, "GET", "/api/system/tenants", nil)
	if _, err := os.Stat(filepath.Join(dir, "gatehouse.db")); err != nil {
		t.Fatalf("GATEHOUSE_DATA_DIR was not used: %v", err)
	}
	p.stop()
}

// TestMigrateCommand: `gatehouse migrate` prepares a fresh PostgreSQL
// database (idempotently) and serve then starts on it.
func TestMigrateCommand(t *testing.T) {
	url := pgtest.NewDatabase(t)
	for i := 0; i < 2; i++ {
		out, err := exec.Command(gatehouseBin, "migrate", "--database-url", url).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "migrations applied") {
			t.Fatalf("migrate run %d: %v\n%s", i+1, err, out)
		}
	}
	if out, err := exec.Command(gatehouseBin, "migrate").CombinedOutput(); err == nil || !strings.Contains(string(out), "--database-url") {
		t.Fatalf("migrate without a URL must fail naming --database-url: %v\n%s", err, out)
	}
	p := startServe(t, serveOptions{DataDir: t.TempDir(), DatabaseURL: url, Token: testToken})
	newClient(t, p.URL, testToken).must(201, "POST", "/api/system/tenants", map[string]any{"id": "after-migrate", "name": "x"})
	p.stop()
}

// TestAuthorizerHelpDocumentsConfiguration: the authorizer's flags and
// their environment variables are in --help.
func TestAuthorizerHelpDocumentsConfiguration(t *testing.T) {
	out, err := exec.Command(gatehouseBin, "authorizer", "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("authorizer --help: %v\n%s", err, out)
	}
	for _, want := range []string{"--control-plane-url", "GATEHOUSE_CONTROL_PLANE_URL", "--credential", "GATEHOUSE_GATEWAY_CREDENTIAL",
		"--authz-addr", "127.0.0.1:9191", "--proxy-addr", "--cache-dir", "GATEHOUSE_CACHE_DIR", "--package", "--config",
		"--key-id", "--public-key-file", "--http-addr", "--long-poll"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("authorizer --help does not mention %s", want)
		}
	}
}
