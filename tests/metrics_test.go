package tests

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestServeMetrics: the admin API's /metrics needs a system-wide token (the
// metrics name every tenant and gateway); --metrics-addr serves them
// without one on a listener of its own, and nothing else there.
func TestServeMetrics(t *testing.T) {
	p := startServe(t, serveOptions{DataDir: t.TempDir(), Token: testToken, Args: []string{"--metrics-addr", "127.0.0.1:0"}})
	c := newClient(t, p.URL, testToken)
	c.must(201, "POST", "/api/system/tenants", map[string]any{"id": "acme", "name": "Acme"})
	c.must(201, "POST", "/api/admin/acme/gateways", map[string]any{"id": "edge", "name": "edge"})

	anon := newClient(t, p.URL, "")
	if r := anon.must(401, "GET", "/metrics", nil); strings.Contains(string(r.Body), "acme") {
		t.Fatalf("an unauthenticated /metrics told: %s", r.Body)
	}
	cred := c.must(201, "POST", "/api/system/tenants/acme/credentials", map[string]any{"name": "ci"}).JSON(t)["token"].(string)
	newClient(t, p.URL, cred).must(403, "GET", "/metrics", nil)
	want := `gatehouse_http_requests_total{code="201",method="POST",route="/api/admin/:tid/gateways"} 1`
	if m := string(c.must(200, "GET", "/metrics", nil).Body); !strings.Contains(m, want) {
		t.Fatalf("/metrics with the admin token lacks %s", want)
	}

	addr := p.waitLog(t, "metrics listening", "addr")
	if !strings.HasPrefix(addr, "127.0.0.1:") || strings.HasSuffix(addr, ":0") {
		t.Fatalf("metrics listen on %q", addr)
	}
	get := func(path string) (int, string) {
		res, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	if st, body := get("/metrics"); st != 200 || !strings.Contains(body, want) {
		t.Fatalf("--metrics-addr /metrics: %d %.500s", st, body)
	}
	for _, path := range []string{"/api/system/tenants", "/healthz", "/api/admin/acme/gateways"} {
		if st, _ := get(path); st != 404 {
			t.Fatalf("--metrics-addr serves %s: %d", path, st)
		}
	}
	if !strings.Contains(p.stdout.String(), "metrics   : http://"+addr+"/metrics") {
		t.Fatalf("the banner does not name the metrics listener:\n%s", p.stdout)
	}
}
