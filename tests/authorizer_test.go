package tests

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/gatehouse-dev/gatehouse/internal/testkit"
)

// gatewaySetup is a tenant with one service behind a gateway, created over
// the admin API.
type gatewaySetup struct {
	token, kid, keyFile string
}

func setupGateway(t *testing.T, c *client, upstream string) gatewaySetup {
	t.Helper()
	c.must(201, "POST", "/api/system/tenants", map[string]any{"id": "acme", "name": "Acme"})
	c.must(201, "POST", "/api/admin/acme/policies", map[string]any{"id": "keyed", "policy_name": "keyed", "definition": fmt.Sprintf(interopPolicy, "k1")})
	c.must(201, "POST", "/api/admin/acme/services", map[string]any{"id": "pets", "name": "pets", "url": upstream})
	c.must(201, "POST", "/api/admin/acme/apis", map[string]any{"id": "get-pet", "service_id": "pets", "method": "GET", "path": "/pets/{id}", "policy_id": "keyed"})
	c.must(201, "POST", "/api/admin/acme/apis", map[string]any{"id": "health", "service_id": "pets", "method": "GET", "path": "/healthz", "public": true})
	// The longest policy deadline: the machine running the tests may be
	// loaded, and no test here is about deadlines.
	gw := c.must(201, "POST", "/api/admin/acme/gateways", map[string]any{"id": "edge", "name": "edge", "policy_timeout_ms": 1000}).JSON(t)
	key := c.must(200, "GET", "/api/admin/acme/gateways/edge/keys", nil).JSON(t)["keys"].([]any)[0].(map[string]any)
	keyFile := filepath.Join(t.TempDir(), "bundle-key.pem")
	if err := os.WriteFile(keyFile, []byte(key["public_key_pem"].(string)), 0o600); err != nil {
		t.Fatal(err)
	}
	return gatewaySetup{token: gw["credential"].(map[string]any)["token"].(string), kid: key["kid"].(string), keyFile: keyFile}
}

// startAuthorizer runs `gatehouse authorizer` for acme/edge.
func startAuthorizer(t *testing.T, cpURL string, g gatewaySetup, cacheDir string, extra ...string) (*process, string) {
	t.Helper()
	args := append([]string{"authorizer", "--control-plane-url", cpURL, "--tenant", "acme", "--gateway", "edge",
		"--key-id", g.kid, "--public-key-file", g.keyFile, "--cache-dir", cacheDir, "--authz-addr", "127.0.0.1:0",
		"--http-addr", "127.0.0.1:0", "--long-poll", "20s"}, extra...)
	p := start(t, []string{"PATH=" + os.Getenv("PATH"), "GATEHOUSE_GATEWAY_CREDENTIAL=" + g.token}, args...)
	return p, p.waitLog(t, "ext_authz listening", "addr")
}

func authzClient(t *testing.T, addr string) authv3.AuthorizationClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return authv3.NewAuthorizationClient(conn)
}

// decides is a condition: checkKey answers want.
func decides(t *testing.T, c authv3.AuthorizationClient, key string, ext map[string]string, want code.Code) func() error {
	return func() error {
		got := checkKey(t, c, key, ext)
		return testkit.Check(got == want, "a check with key %s: %v", key, got)
	}
}

func checkKey(t *testing.T, c authv3.AuthorizationClient, key string, ext map[string]string) code.Code {
	t.Helper()
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		ContextExtensions: ext,
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Path: "/pets/1", Host: "pets.example.com", Headers: map[string]string{"x-api-key": key}}}}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := c.Check(ctx, req)
	if err != nil {
		t.Fatalf("check: %v", err)
	}
	return code.Code(res.Status.Code)
}

// TestAuthorizerFollowsTheControlPlane runs gatehouse serve and a separate
// gatehouse authorizer: a policy change reaches the authorizer within 1 s;
// with the control plane killed decisions are unchanged; an authorizer
// restarted while the control plane is down decides the same from its disk
// cache; the reverse proxy enforces the same decisions in front of a real
// upstream.
func TestAuthorizerFollowsTheControlPlane(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "upstream saw %s %s", r.Method, r.URL.Path)
	}))
	defer upstream.Close()
	data := t.TempDir()
	cp := startServe(t, serveOptions{DataDir: data, Token: testToken, Args: []string{"--authz-addr", "127.0.0.1:0"}})
	c := newClient(t, cp.URL, testToken)
	g := setupGateway(t, c, upstream.URL)
	testkit.Eventually(t, 10*time.Second, func() error {
		return testkit.Check(strings.Contains(cp.stdout.String(), "TLS       : off"), "no TLS line in the banner")
	}, "the banner says the listeners are plaintext")
	cache := t.TempDir()
	authz, addr := startAuthorizer(t, cp.URL, g, cache, "--proxy-addr", "127.0.0.1:0")
	proxyAddr := authz.waitLog(t, "reverse proxy listening", "addr")
	ac := authzClient(t, addr)
	if !t.Run("the authorizer gets its first bundle and decides by it", func(t *testing.T) {
		testkit.Eventually(t, 20*time.Second, decides(t, ac, "k1", nil, code.Code_OK), "the authorizer's first bundle")
		if got := checkKey(t, ac, "k2", nil); got != code.Code_UNAUTHENTICATED {
			t.Fatalf("wrong key: %v", got)
		}
	}) {
		return
	}

	if !t.Run("the in-process authorizer of serve decides the same for this gateway", func(t *testing.T) {
		inproc := authzClient(t, cp.waitLog(t, "ext_authz listening", "addr"))
		testkit.Eventually(t, 10*time.Second, decides(t, inproc, "k1", map[string]string{"tenant": "acme", "gateway": "edge"}, code.Code_OK),
			"the in-process authorizer")
		if got := checkKey(t, inproc, "k1", map[string]string{"tenant": "acme", "gateway": "nope"}); got != code.Code_PERMISSION_DENIED {
			t.Fatalf("in-process check for an unknown gateway: %v", got)
		}
	}) {
		return
	}

	if !t.Run("a policy change reaches the authorizer within 1 s", func(t *testing.T) {
		c.on(t).must(200, "PUT", "/api/admin/acme/policies/keyed", map[string]any{"policy_name": "keyed", "definition": fmt.Sprintf(interopPolicy, "k2")})
		took := testkit.Eventually(t, time.Second, decides(t, ac, "k2", nil, code.Code_OK), "the policy change at the authorizer")
		t.Logf("policy change enforced by the authorizer after %v", took)
		if checkKey(t, ac, "k1", nil) == code.Code_OK {
			t.Fatal("the old key still works")
		}
	}) {
		return
	}

	if !t.Run("its decision logs reach the control plane without the key header; its readyz says ready", func(t *testing.T) {
		c := c.on(t)
		testkit.Eventually(t, 10*time.Second, func() error {
			ds := c.must(200, "GET", "/api/admin/acme/gateways/edge/decisions?limit=500", nil).JSON(t)["decisions"].([]any)
			for _, d := range ds {
				ev := d.(map[string]any)["event"].(map[string]any)
				if ev["labels"].(map[string]any)["app"] == "gatehouse-authorizer" && ev["result"].(map[string]any)["allowed"] == true {
					if strings.Contains(toJSON(t, ev["input"]), "x-api-key") {
						t.Fatalf("the masked header was logged: %v", ev["input"])
					}
					return nil
				}
			}
			return fmt.Errorf("%d decisions, no allowed one of the authorizer", len(ds))
		}, "the authorizer's decision logs")
		health := "http://" + authz.waitLog(t, "authorizer health listening", "addr")
		if res, err := http.Get(health + "/readyz"); err != nil || res.StatusCode != 200 {
			t.Fatalf("readyz with a bundle: %v %v", res, err)
		}
		if res, err := http.Get(health + "/debug/pprof/cmdline"); err != nil || res.StatusCode != 404 {
			t.Fatalf("profiles served without --pprof: %v %v", res, err)
		}
	}) {
		return
	}

	if !t.Run("its reverse proxy lets allowed requests reach the upstream", func(t *testing.T) {
		get := func(path, key string) (int, string) {
			req, _ := http.NewRequest("GET", "http://"+proxyAddr+path, nil)
			req.Header.Set("X-Api-Key", key)
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			b, _ := io.ReadAll(res.Body)
			return res.StatusCode, string(b)
		}
		if st, body := get("/pets/3", "k2"); st != 200 || body != "upstream saw GET /pets/3" {
			t.Fatalf("proxy allowed: %d %q", st, body)
		}
		if st, body := get("/pets/3", "k1"); st != 401 || strings.Contains(body, "upstream") {
			t.Fatalf("proxy denied: %d %q", st, body)
		}
		if st, _ := get("/healthz", ""); st != 200 {
			t.Fatalf("proxy public API: %d", st)
		}
	}) {
		return
	}

	if !t.Run("with the control plane killed its decisions are unchanged", func(t *testing.T) {
		cp.kill()
		for i := 0; i < 5; i++ {
			if checkKey(t, ac, "k2", nil) != code.Code_OK || checkKey(t, ac, "k1", nil) == code.Code_OK {
				t.Fatal("decisions changed while the control plane is down")
			}
			time.Sleep(100 * time.Millisecond)
		}
	}) {
		return
	}

	if !t.Run("restarted while the control plane is down it decides the same from its disk cache", func(t *testing.T) {
		authz.on(t).stop()
		_, addr2 := startAuthorizer(t, cp.URL, g, cache)
		ac2 := authzClient(t, addr2)
		testkit.Eventually(t, 10*time.Second, decides(t, ac2, "k2", nil, code.Code_OK), "decisions from the disk cache")
		if checkKey(t, ac2, "k1", nil) == code.Code_OK {
			t.Fatal("the restarted authorizer did not enforce the cached bundle")
		}
	}) {
		return
	}

	t.Run("with neither control plane nor cache it denies everything and is not ready", func(t *testing.T) {
		authz3, addr3 := startAuthorizer(t, cp.URL, g, t.TempDir(), "--pprof")
		ac3 := authzClient(t, addr3)
		time.Sleep(300 * time.Millisecond)
		if got := checkKey(t, ac3, "k2", nil); got != code.Code_PERMISSION_DENIED {
			t.Fatalf("no bundle at all: %v", got)
		}
		health3 := "http://" + authz3.waitLog(t, "authorizer health listening", "addr")
		if res, err := http.Get(health3 + "/readyz"); err != nil || res.StatusCode != 503 {
			t.Fatalf("readyz without a bundle: %v %v", res, err)
		}
		if res, err := http.Get(health3 + "/debug/pprof/cmdline"); err != nil || res.StatusCode != 200 {
			t.Fatalf("profiles with --pprof: %v %v", res, err)
		}
	})
}
