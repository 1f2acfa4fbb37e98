package tests

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/code"
)

// TestAuthorizerFailsClosedWhenItsGatewayIsDeleted runs gatehouse serve and
// a separate gatehouse authorizer, then deletes the gateway over the admin
// API: the authorizer logs it, denies every request and its /readyz answers
// 503 naming the deletion; restarted on the same cache with the control
// plane gone, it enforces nothing either.
func TestAuthorizerFailsClosedWhenItsGatewayIsDeleted(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "upstream saw %s %s", r.Method, r.URL.Path)
	}))
	defer upstream.Close()
	cp := startServe(t, serveOptions{DataDir: t.TempDir(), Token: testToken})
	c := newClient(t, cp.URL, testToken)
	g := setupGateway(t, c, upstream.URL)
	cache := t.TempDir()
	authz, addr := startAuthorizer(t, cp.URL, g, cache)
	ac := authzClient(t, addr)
	waitFor(t, 20*time.Second, "the authorizer's first bundle", func() bool { return checkKey(t, ac, "k1", nil) == code.Code_OK })
	readyz := func(p *process) (int, string) {
		res, err := http.Get("http://" + p.waitLog(t, "authorizer health listening", "addr") + "/readyz")
		if err != nil {
			t.Fatalf("readyz: %v", err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	if st, body := readyz(authz); st != 200 {
		t.Fatalf("readyz with a bundle: %d %s", st, body)
	}

	c.must(204, "DELETE", "/api/admin/acme/gateways/edge", nil)
	deleted := func(p *process) func() bool {
		return func() bool {
			st, body := readyz(p)
			return st == 503 && strings.Contains(body, "the gateway was deleted on the control plane")
		}
	}
	waitFor(t, 20*time.Second, "the authorizer to fail closed", deleted(authz))
	if got := checkKey(t, ac, "k1", nil); got != code.Code_PERMISSION_DENIED {
		t.Fatalf("a check after the deletion: %v", got)
	}
	if gw := authz.waitLog(t, "the gateway was deleted on the control plane; every request is denied", "gateway"); gw != "edge" {
		t.Fatalf("the deletion was logged for gateway %q", gw)
	}

	// Restarted on the same cache while the control plane is down: the
	// deleted gateway's bundle does not come back.
	authz.stop()
	cp.kill()
	authz2, addr2 := startAuthorizer(t, cp.URL, g, cache)
	waitFor(t, 20*time.Second, "the restarted authorizer to report the deletion", deleted(authz2))
	authz2.waitLog(t, "the gateway was deleted on the control plane; not using the cache, every request is denied", "gateway")
	if got := checkKey(t, authzClient(t, addr2), "k1", nil); got != code.Code_PERMISSION_DENIED {
		t.Fatalf("a check after the restart: %v", got)
	}
}
