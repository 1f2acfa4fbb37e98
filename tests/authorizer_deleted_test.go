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

	"github.com/gatehouse-dev/gatehouse/internal/testkit"
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
	readyz := func(t *testing.T, p *process) (int, string) {
		t.Helper()
		res, err := http.Get("http://" + p.waitLog(t, "authorizer health listening", "addr") + "/readyz")
		if err != nil {
			t.Fatalf("readyz: %v", err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	deleted := func(t *testing.T, p *process) func() error {
		return func() error {
			st, body := readyz(t, p)
			return testkit.Check(st == 503 && strings.Contains(body, "the gateway was deleted on the control plane"), "/readyz: %d %s", st, body)
		}
	}
	if !t.Run("the authorizer gets its bundle and is ready", func(t *testing.T) {
		testkit.Eventually(t, 20*time.Second, decides(t, ac, "k1", nil, code.Code_OK), "the authorizer's first bundle")
		if st, body := readyz(t, authz); st != 200 {
			t.Fatalf("readyz with a bundle: %d %s", st, body)
		}
	}) {
		return
	}

	if !t.Run("once its gateway is deleted it logs it, denies every request and is not ready", func(t *testing.T) {
		c.on(t).must(204, "DELETE", "/api/admin/acme/gateways/edge", nil)
		testkit.Eventually(t, 20*time.Second, deleted(t, authz), "the authorizer to fail closed")
		if got := checkKey(t, ac, "k1", nil); got != code.Code_PERMISSION_DENIED {
			t.Fatalf("a check after the deletion: %v", got)
		}
		if gw := authz.waitLog(t, "the gateway was deleted on the control plane; every request is denied", "gateway"); gw != "edge" {
			t.Fatalf("the deletion was logged for gateway %q", gw)
		}
	}) {
		return
	}

	t.Run("restarted on the same cache with the control plane down it enforces nothing either", func(t *testing.T) {
		authz.on(t).stop()
		cp.kill()
		authz2, addr2 := startAuthorizer(t, cp.URL, g, cache)
		testkit.Eventually(t, 20*time.Second, deleted(t, authz2), "the restarted authorizer to report the deletion")
		authz2.waitLog(t, "the gateway was deleted on the control plane; not using the cache, every request is denied", "gateway")
		if got := checkKey(t, authzClient(t, addr2), "k1", nil); got != code.Code_PERMISSION_DENIED {
			t.Fatalf("a check after the restart: %v", got)
		}
	})
}
