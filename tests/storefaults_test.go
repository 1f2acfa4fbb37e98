package tests

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/pgtest"
	"github.com/gatehouse-dev/gatehouse/internal/testkit"
)

// TestControlPlaneThroughAHungDatabase runs gatehouse control-plane with
// --store-timeout 500ms on a PostgreSQL server of its own and hangs the
// server (every process stopped): admin requests and readyz answer 503
// store_unavailable with Retry-After within three deadlines; the bundle
// service answers a gateway it served before the hang from memory (304,
// and a long poll that waits and answers 304), and an unknown credential
// with 503; once the server resumes, everything answers again.
func TestControlPlaneThroughAHungDatabase(t *testing.T) {
	const deadline = 500 * time.Millisecond
	const bound = 3 * deadline
	srv := pgtest.NewServer(t)
	cp := startServe(t, serveOptions{DataDir: t.TempDir(), DatabaseURL: srv.NewDatabase(t), Token: testToken,
		Command: "control-plane", Args: []string{"--store-timeout", deadline.String()}})
	c := newClient(t, cp.URL, testToken)
	g := setupGateway(t, c, "http://127.0.0.1:9")
	gw := newClient(t, cp.URL, g.token)
	const bundle = "/api/system/acme/gateways/edge/opa/bundle"
	var etag string
	testkit.Eventually(t, 30*time.Second, func() error {
		r := gw.do("GET", bundle, nil)
		etag = r.Header.Get("ETag")
		if r.Status != 200 {
			return fmt.Errorf("GET %s: %d %.200s", bundle, r.Status, r.Body)
		}
		metrics := string(c.must(200, "GET", "/metrics", nil).Body)
		return testkit.Check(strings.Contains(metrics, "\ngatehouse_gateway_credentials_cached 1\n"), "metrics without gatehouse_gateway_credentials_cached 1")
	}, "the gateway's bundle, its credential remembered")

	if err := srv.Pause(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Resume() })
	timed := func(what string, call func() response) response {
		t.Helper()
		start := time.Now()
		r := call()
		if d := time.Since(start); d > bound {
			t.Errorf("%s took %s with --store-timeout %s", what, d, deadline)
		}
		return r
	}
	unavailable := func(what string, r response) {
		t.Helper()
		if r.Status != 503 || r.JSON(t)["error_code"] != "store_unavailable" || r.Header.Get("Retry-After") == "" {
			t.Errorf("%s with the database hung: %d %q %s, want 503 store_unavailable with Retry-After", what, r.Status, r.Header.Get("Retry-After"), r.Body)
		}
	}
	unavailable("admin read", timed("admin read", func() response { return c.do("GET", "/api/admin/acme/tenant", nil) }))
	unavailable("admin write", timed("admin write", func() response {
		return c.do("POST", "/api/admin/acme/scopes", map[string]any{"id": "read", "name": "read"})
	}))
	unavailable("readyz", timed("readyz", func() response { return c.do("GET", "/readyz", nil) }))
	if r := timed("bundle", func() response { return gw.do("GET", bundle, nil, "If-None-Match", etag) }); r.Status != 304 {
		t.Errorf("bundle with the database hung: %d %s, want 304 from memory", r.Status, r.Body)
	}
	start := time.Now()
	if r := gw.do("GET", bundle, nil, "If-None-Match", etag, "Prefer", "wait=1"); r.Status != 304 || time.Since(start) < time.Second {
		t.Errorf("long poll with the database hung: %d after %s %s, want 304 after the wait", r.Status, time.Since(start), r.Body)
	}
	forged := newClient(t, cp.URL, "ghg_acme.nope.c2VjcmV0")
	unavailable("unknown credential", timed("unknown credential", func() response { return forged.do("GET", bundle, nil) }))

	if err := srv.Resume(); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 30*time.Second, func() error {
		r := c.do("GET", "/readyz", nil)
		return testkit.Check(r.Status == 200, "/readyz: %d %s", r.Status, r.Body)
	}, "readyz after the database resumed")
	c.must(200, "GET", "/api/admin/acme/tenant", nil)
	gw.must(304, "GET", bundle, nil, "If-None-Match", etag)
	// The write refused during the hang was not applied (its first
	// statement never got an answer); the scope changes the bundle.
	c.must(201, "POST", "/api/admin/acme/scopes", map[string]any{"id": "read", "name": "read"})
	if r := forged.do("GET", bundle, nil); r.Status != 401 {
		t.Fatalf("unknown credential once the store answers: %d %s, want 401", r.Status, r.Body)
	}
}

// TestStoreTimeoutFlag: --store-timeout and GATEHOUSE_STORE_TIMEOUT are
// documented in --help, and a value that is not positive or above 10m is
// refused naming the flag.
func TestStoreTimeoutFlag(t *testing.T) {
	out, err := exec.Command(gatehouseBin, "serve", "--help").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--store-timeout") || !strings.Contains(string(out), "GATEHOUSE_STORE_TIMEOUT") {
		t.Errorf("serve --help does not document --store-timeout and GATEHOUSE_STORE_TIMEOUT: %v\n%s", err, out)
	}
	for _, bad := range []string{"0s", "-1s", "11m"} {
		out, err := exec.Command(gatehouseBin, "serve", "--data-dir", t.TempDir(), "--http-addr", "127.0.0.1:0", "--store-timeout", bad).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "--store-timeout") {
			t.Errorf("--store-timeout %s: %v\n%s", bad, err, out)
		}
	}
	cmd := exec.Command(gatehouseBin, "serve", "--data-dir", t.TempDir(), "--http-addr", "127.0.0.1:0")
	cmd.Env = []string{"GATEHOUSE_STORE_TIMEOUT=0s", "PATH=" + os.Getenv("PATH")}
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "--store-timeout") {
		t.Errorf("GATEHOUSE_STORE_TIMEOUT=0s: %v\n%s", err, out)
	}
}
