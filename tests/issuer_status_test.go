package tests

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	"github.com/gatehouse-dev/gatehouse/internal/testkit/jwtkit"
)

// TestFailingIssuerKeysShowInTheGatewayStatus: when an authorizer cannot
// fetch a token issuer's keys, the gateway's status on the control plane
// says so (not only the authorizer's log), and stops saying so once the
// keys can be fetched again.
func TestFailingIssuerKeysShowInTheGatewayStatus(t *testing.T) {
	var failing atomic.Bool
	failing.Store(true)
	keys := jwtkit.JWKS(t, jwtkit.NewSigner(t, "k1"))
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if failing.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(keys)
	}))
	defer idp.Close()
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer upstream.Close()
	cp := startServe(t, serveOptions{DataDir: t.TempDir(), Token: testToken, Args: []string{"--jwks-allow-private-urls"}})
	c := newClient(t, cp.URL, testToken)
	g := setupGateway(t, c, upstream.URL)
	c.must(201, "POST", "/api/admin/acme/issuers", map[string]any{"id": "idp", "name": "idp", "issuer": "https://idp.example",
		"audiences": []string{"pets"}, "jwks_uri": idp.URL + "/jwks"})
	startAuthorizer(t, cp.URL, g, t.TempDir(), "--jwks-allow-private-urls")
	instanceErrors := func() string {
		st := c.must(200, "GET", "/api/admin/acme/gateways/edge", nil).JSON(t)["status"].(map[string]any)
		opa, _ := st["opa"].(map[string]any)
		insts, _ := opa["instances"].([]any)
		var errs []string
		for _, i := range insts {
			list, _ := i.(map[string]any)["errors"].([]any) // absent without errors
			for _, e := range list {
				errs = append(errs, fmt.Sprint(e))
			}
		}
		return strings.Join(errs, "\n")
	}
	// serve's own in-process authorizer shows its view too.
	inProcessIssuers := func() string {
		st := c.must(200, "GET", "/api/admin/acme/gateways/edge", nil).JSON(t)["status"].(map[string]any)
		ip, _ := st["in_process_authorizer"].(map[string]any)
		return fmt.Sprint(ip["token_issuers"])
	}
	testkit.Eventually(t, 60*time.Second, func() error {
		errs, ip := instanceErrors(), inProcessIssuers()
		return testkit.Check(strings.Contains(errs, "token issuer idp:") && strings.Contains(errs, "HTTP 503") &&
			strings.Contains(ip, "issuer_id:idp") && strings.Contains(ip, "HTTP 503"), "status errors: %q; in-process: %s", errs, ip)
	}, "the failing key fetch in the gateway status")
	failing.Store(false)
	testkit.Eventually(t, 60*time.Second, func() error {
		errs, ip := instanceErrors(), inProcessIssuers()
		return testkit.Check(!strings.Contains(errs, "token issuer idp:") && !strings.Contains(ip, "idp"), "status errors: %q; in-process: %s", errs, ip)
	}, "the problem gone once the keys are fetched")
}
