package tests

import (
	"archive/zip"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	yaml "go.yaml.in/yaml/v3"

	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	"github.com/gatehouse-dev/gatehouse/model"
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
	cp := startServe(t, serveOptions{DataDir: t.TempDir(), Token: testToken, Command: "control-plane"})
	c := newClient(t, cp.URL, testToken)
	setupGateway(t, c, upstream.URL)

	pkg := c.must(200, "GET", "/api/admin/acme/gateways/edge/package", nil)
	if pkg.Header.Get("Content-Type") != "application/zip" || !strings.Contains(pkg.Header.Get("Content-Disposition"), ".zip") {
		t.Fatalf("package headers: %v", pkg.Header)
	}
	// The package says the authorizer listens where docs/envoy.md and the
	// generated Envoy configuration expect it. The test does not bind
	// those fixed ports (anything, make run say, may hold them): it gives
	// the authorizer a copy of the package whose addresses are free ports,
	// so the authorizer is still seen to take its addresses from the
	// package (ignoring them, it would listen on its defaults).
	addrs := packageAddresses(t, pkg.Body)
	if addrs["authz_addr"] != "127.0.0.1:9191" || addrs["http_addr"] != "127.0.0.1:9192" {
		t.Fatalf("the package's authorizer addresses: %v", addrs)
	}
	zipPath := filepath.Join(t.TempDir(), "gateway.zip")
	if err := os.WriteFile(zipPath, withAuthorizerAddresses(t, pkg.Body, "127.0.0.1:0"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Nothing but the package is given (and, for the reverse-proxy mode,
	// its address); everything else comes from the package or defaults.
	p := start(t, []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, "authorizer", "--package", zipPath,
		"--proxy-addr", "127.0.0.1:0")
	for msg, fixed := range map[string]string{"ext_authz listening": "127.0.0.1:9191", "authorizer health listening": "127.0.0.1:9192"} {
		if addr := p.waitLog(t, msg, "addr"); addr == fixed || !strings.HasPrefix(addr, "127.0.0.1:") || strings.HasSuffix(addr, ":0") {
			t.Fatalf("%s on %s: the package's address (a free port) was not used", msg, addr)
		}
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
	allows := func(key string) func() error {
		return func() error {
			st, body := get(key)
			return testkit.Check(st == 200, "GET /pets/9 with key %s: %d %s", key, st, body)
		}
	}
	testkit.Eventually(t, 20*time.Second, allows("k1"), "the packaged authorizer to allow k1")
	if st, body := get("k1"); body != "pets upstream: /pets/9" {
		t.Fatalf("allowed request: %d %q", st, body)
	}
	if st, _ := get("k2"); st != 401 {
		t.Fatalf("wrong key: %d", st)
	}
	c.must(200, "PUT", "/api/admin/acme/policies/keyed", map[string]any{"policy_name": "keyed", "definition": fmt.Sprintf(interopPolicy, "k2")})
	testkit.Eventually(t, 2*time.Second, allows("k2"), "the policy change at the packaged authorizer")
	if st, _ := get("k1"); st != 401 {
		t.Fatalf("old key after the change: %d", st)
	}
	// The package's credential shows up among the gateway's credentials,
	// and the authorizer's status reports reach the gateway's status.
	creds := c.must(200, "GET", "/api/admin/acme/gateways/edge/credentials", nil).JSON(t)["credentials"].([]any)
	if len(creds) != 2 {
		t.Fatalf("credentials: %v", creds)
	}
	testkit.Eventually(t, 10*time.Second, func() error {
		st := c.must(200, "GET", "/api/admin/acme/gateways/edge", nil).JSON(t)["status"].(map[string]any)
		return testkit.Check(st["opa"].(map[string]any)["active_revision"] == fmt.Sprint(st["bundle"].(map[string]any)["revision"]), "gateway status %v", st)
	}, "the authorizer's status report")
}

// packageAddresses reads authz_addr and http_addr from a gateway package's
// gatehouse-authorizer.yaml.
func packageAddresses(t *testing.T, zipped []byte) map[string]string {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(zipped), int64(len(zipped)))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := fs.ReadFile(zr, model.PackageAuthorizer)
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	return map[string]string{"authz_addr": fmt.Sprint(cfg["authz_addr"]), "http_addr": fmt.Sprint(cfg["http_addr"])}
}

// withAuthorizerAddresses copies a gateway package with authz_addr and
// http_addr of its gatehouse-authorizer.yaml set to addr.
func withAuthorizerAddresses(t *testing.T, zipped []byte, addr string) []byte {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(zipped), int64(len(zipped)))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, f := range zr.File {
		raw, err := fs.ReadFile(zr, f.Name)
		if err != nil {
			t.Fatal(err)
		}
		if f.Name == model.PackageAuthorizer {
			raw = regexp.MustCompile(`(?m)^(authz_addr|http_addr): .*$`).ReplaceAll(raw, []byte("$1: "+addr))
		}
		h := f.FileHeader
		w, err := zw.CreateHeader(&h)
		if err == nil {
			_, err = w.Write(raw)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	out := buf.Bytes()
	if got := packageAddresses(t, out); got["authz_addr"] != addr || got["http_addr"] != addr {
		t.Fatalf("rewritten package addresses: %v", got)
	}
	return out
}
