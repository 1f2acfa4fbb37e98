package tests

import (
	"context"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/code"

	"github.com/gatehouse-dev/gatehouse/internal/testkit"
)

// TestPolicyTestAgreesWithTheGateway: the policy test endpoint, given a
// whole HTTP request, decides it as serve's in-process authorizer does —
// a real OAuth token of the tenant's own server, the route's path
// parameters, token failures — for every request of the table, and says
// why at each stage.
func TestPolicyTestAgreesWithTheGateway(t *testing.T) {
	f := newRPFixture(t, backends()[0].options(t))
	c := f.c
	c.must(201, "POST", "/api/admin/acme/policies", map[string]any{"id": "readers", "policy_name": "readers", "definition": `package policy

default allow := false

allow if {
	"pets:read" in input.gatehouse.token.scopes
	to_number(input.gatehouse.path_params.id) < 100
}
`})
	c.must(201, "POST", "/api/admin/acme/services", map[string]any{"id": "pets", "name": "pets", "url": "http://127.0.0.1:1", "hosts": []string{"pets.example.com"}})
	c.must(201, "POST", "/api/admin/acme/apis", map[string]any{"id": "get-pet", "service_id": "pets", "method": "GET", "path": "/pets/{id}", "policy_id": "readers"})
	c.must(201, "POST", "/api/admin/acme/apis", map[string]any{"id": "health", "service_id": "pets", "method": "GET", "path": "/healthz", "public": true})
	c.must(201, "POST", "/api/admin/acme/gateways", map[string]any{"id": "edge", "name": "edge", "policy_timeout_ms": 1000})
	authz := authzClient(t, f.cp.waitLog(t, "ext_authz listening", "addr"))
	tok, err := f.machine.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	tampered := tamperedSignature(t, tok.AccessToken)

	check := func(method, path, authorization string) (allowed bool, status int) {
		headers := map[string]string{}
		if authorization != "" {
			headers["authorization"] = authorization
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		res, err := authz.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			ContextExtensions: map[string]string{"tenant": "acme", "gateway": "edge"},
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Method: method, Path: path, Host: "pets.example.com", Headers: headers}}}})
		if err != nil {
			t.Fatalf("check: %v", err)
		}
		if code.Code(res.Status.Code) == code.Code_OK {
			return true, 200
		}
		return false, int(res.GetDeniedResponse().GetStatus().GetCode())
	}
	// The in-process authorizer has the bundle once the token is allowed.
	testkit.Eventually(t, 20*time.Second, func() error {
		ok, st := check("GET", "/pets/1", "Bearer "+tok.AccessToken)
		return testkit.Check(ok, "the gateway decides %d for a good token", st)
	}, "serve's authorizer has the bundle")

	for _, tc := range []struct {
		name, method, path, authorization string
		tokenReason, routeAPI             string
	}{
		{"allowed", "GET", "/pets/7", "Bearer " + tok.AccessToken, "", "get-pet"},
		{"denied by the policy", "GET", "/pets/700", "Bearer " + tok.AccessToken, "", "get-pet"},
		{"no token", "GET", "/pets/7", "", "", "get-pet"},
		{"tampered token", "GET", "/pets/7", "Bearer " + tampered, "signature_invalid", "get-pet"},
		{"malformed token", "GET", "/pets/7", "Bearer abc", "malformed", "get-pet"},
		{"no route", "DELETE", "/pets/7", "Bearer " + tok.AccessToken, "", ""},
		{"refused path", "GET", "/pets/%2e%2e/x", "Bearer " + tok.AccessToken, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			allowed, status := check(tc.method, tc.path, tc.authorization)
			headers := map[string]any{"host": "pets.example.com"}
			if tc.authorization != "" {
				headers["Authorization"] = tc.authorization
			}
			res := c.must(200, "POST", "/api/admin/acme/policies/readers/test", map[string]any{"gateway_id": "edge",
				"request": map[string]any{"method": tc.method, "path": tc.path, "headers": headers}}).JSON(t)
			if res["allowed"] != allowed || int(res["http_status"].(float64)) != status {
				t.Fatalf("gateway: allowed=%v %d; test endpoint: allowed=%v %v (%v)", allowed, status, res["allowed"], res["http_status"], res["reason"])
			}
			stages := res["stages"].(map[string]any)
			if r := stages["token"].(map[string]any)["reason"]; tc.tokenReason != "" && r != tc.tokenReason {
				t.Fatalf("token reason %v, want %s", r, tc.tokenReason)
			}
			route := stages["route"].(map[string]any)
			if got, _ := route["api_id"].(string); got != tc.routeAPI {
				t.Fatalf("route %v, want %q", route, tc.routeAPI)
			}
			if tc.routeAPI == "" && route["reason"] == "" {
				t.Fatalf("no reason for the missing route: %v", route)
			}
		})
	}

	// On a public API, the gateway asks no policy; the test endpoint shows
	// what the tested one would decide there, and says so.
	if ok, _ := check("GET", "/healthz", ""); !ok {
		t.Fatal("the gateway denies the public API")
	}
	res := c.must(200, "POST", "/api/admin/acme/policies/readers/test", map[string]any{"gateway_id": "edge",
		"request": map[string]any{"method": "GET", "path": "/healthz", "headers": map[string]any{"host": "pets.example.com"}}}).JSON(t)
	stages := res["stages"].(map[string]any)
	if note, _ := stages["policy"].(map[string]any)["note"].(string); stages["route"].(map[string]any)["public"] != true || !strings.Contains(note, "public without a policy") {
		t.Fatalf("public API: %v", stages)
	}
}

// tamperedSignature is tok with one character of its signature changed.
func tamperedSignature(t *testing.T, tok string) string {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 || len(parts[2]) < 20 {
		t.Fatalf("not a JWT: %q", tok)
	}
	sig := []byte(parts[2])
	if sig[10] == 'A' {
		sig[10] = 'B'
	} else {
		sig[10] = 'A'
	}
	return parts[0] + "." + parts[1] + "." + string(sig)
}
