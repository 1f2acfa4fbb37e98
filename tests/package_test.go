package tests

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestGatewayPackageRunsTheAuthorizer downloads a gateway package from a
// running control plane, starts `gatehouse authorizer --package` from it in
// reverse-proxy mode in front of a real upstream, and sees allow/deny follow
// policy changes made through the admin API.
func TestGatewayPackageRunsTheAuthorizer(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "pets upstream: %s", r.URL.Path)
	}))
	defer upstream.Close()
	// The control plane runs no authorizer, so the packaged one can take
	// its default address, as in docs/envoy.md.
	cp := startServe(t, serveOptions{DataDir: t.TempDir(), Token: testToken, Command: "control-plane"})
	c := newClient(t, cp.URL, testToken)
	setupGateway(t, c, upstream.URL)

	pkg := c.must(200, "GET", "/api/admin/acme/gateways/edge/package", nil)
	if pkg.Header.Get("Content-Type") != "application/zip" || !strings.Contains(pkg.Header.Get("Content-Disposition"), ".zip") {
		t.Fatalf("package headers: %v", pkg.Header)
	}
	zipPath := filepath.Join(t.TempDir(), "gateway.zip")
	if err := os.WriteFile(zipPath, pkg.Body, 0o600); err != nil {
		t.Fatal(err)
	}
	// Nothing but the package is given (and, for the reverse-proxy mode,
	// its address); everything else comes from the package or defaults.
	p := start(t, []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, "authorizer", "--package", zipPath,
		"--proxy-addr", "127.0.0.1:0")
	if addr := p.waitLog(t, "ext_authz listening", "addr"); addr != "127.0.0.1:9191" {
		t.Fatalf("the packaged authorizer listens on %s", addr)
	}
	proxy := "http://" + p.waitLog(t, "reverse proxy listening", "addr")
	get := func(key string) (int, string) {
		req, _ := http.NewRequest("GET", proxy+"/pets/9", nil)
		req.Header.Set("X-Api-Key", key)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	waitFor(t, 20*time.Second, "the packaged authorizer to allow k1", func() bool { st, _ := get("k1"); return st == 200 })
	if st, body := get("k1"); body != "pets upstream: /pets/9" {
		t.Fatalf("allowed request: %d %q", st, body)
	}
	if st, _ := get("k2"); st != 401 {
		t.Fatalf("wrong key: %d", st)
	}
	c.must(200, "PUT", "/api/admin/acme/policies/keyed", map[string]any{"policy_name": "keyed", "definition": fmt.Sprintf(interopPolicy, "k2")})
	waitFor(t, 2*time.Second, "the policy change at the packaged authorizer", func() bool { st, _ := get("k2"); return st == 200 })
	if st, _ := get("k1"); st != 401 {
		t.Fatalf("old key after the change: %d", st)
	}
	// The package's credential shows up among the gateway's credentials,
	// and the authorizer's status reports reach the gateway's status.
	creds := c.must(200, "GET", "/api/admin/acme/gateways/edge/credentials", nil).JSON(t)["credentials"].([]any)
	if len(creds) != 2 {
		t.Fatalf("credentials: %v", creds)
	}
	waitFor(t, 10*time.Second, "the authorizer's status report", func() bool {
		st := c.must(200, "GET", "/api/admin/acme/gateways/edge", nil).JSON(t)["status"].(map[string]any)
		return st["opa"].(map[string]any)["active_revision"] == fmt.Sprint(st["bundle"].(map[string]any)["revision"])
	})
}
