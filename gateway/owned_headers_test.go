package gateway

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/code"

	"github.com/gatehouse-dev/gatehouse/internal/testkit/jwtkit"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/policies"
)

// A policy that sets x-role only for some requests, and fails when it sees
// a forged owned header.
const ownedRego = `package policy

default allow := false

allow if not input.attributes.request.http.headers["x-role"]

headers["x-role"] := "reader" if input.attributes.request.http.headers["x-give-role"] == "yes"
`

// TestGatewayOwnedHeadersCannotBeForged: every header name the gateway may
// set — claims_to_headers targets, a policy's literal header names, the
// x-gatehouse- prefix — and the method/URL override headers are removed
// from what the client sent, on every route (public ones too), before the
// policy sees the request; an allowed ext_authz response lists them in
// headers_to_remove; the reverse proxy forwards only the gateway's values,
// and a Connection header can neither hide nor remove them.
func TestGatewayOwnedHeadersCannotBeForged(t *testing.T) {
	ctx := context.Background()
	signer := jwtkit.NewSigner(t, "k1")
	up := &recorder{}
	upstream := httptest.NewServer(up)
	defer upstream.Close()
	engines := NewEngines(model.GatewayRef{TenantID: "acme", GatewayID: "edge"})
	a := &Activator{Engines: engines, Tokens: tokenFactoryForTest}
	defer a.Close()
	c := testCompiled(t, func(cfg *policies.Config) {
		cfg.Services[0].Spec.URL = upstream.URL
		cfg.Policies = append(cfg.Policies, policies.Object[model.PolicySpec]{ID: "owned", Name: "owned",
			Spec: model.PolicySpec{Language: model.LanguageRego, Definition: ownedRego}})
		cfg.APIs = append(cfg.APIs,
			policies.Object[model.APISpec]{ID: "me", Spec: model.APISpec{ServiceID: "pets", Method: "GET", Path: "/me",
				PolicyID: "owned", ClaimsToHeaders: map[string]string{"sub": "X-User", "org.tier": "x-tier"}}},
			policies.Object[model.APISpec]{ID: "open", Spec: model.APISpec{ServiceID: "pets", Method: "GET", Path: "/open/{p...}", Public: true}})
		cfg.Issuers = []policies.Object[model.IssuerSpec]{{ID: "idp", Name: "idp", Spec: model.IssuerSpec{Issuer: issuerURL,
			Audiences: []string{"pets-api"}, JWKS: jwtkit.JWKS(t, signer)}}}
	})
	src, _ := SourceFromCompiled(c, "1")
	eng, err := a.Activate(ctx, src, "test")
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"x-user", "x-tier", "x-role", "x-pet-id", "x-http-method-override", "x-original-url", "x-rewrite-url"} {
		if !slices.Contains(eng.Config().RequestHeaders.Owned, h) {
			t.Errorf("the bundle does not own %q: %v", h, eng.Config().RequestHeaders.Owned)
		}
	}
	bearer := "Bearer " + signer.Token(t, claims("pets-api", time.Hour, nil)) // sub alice, no org.tier
	forged := map[string]string{"x-user": "root", "X-Tier": "gold", "x-role": "admin", "x-gatehouse-tenant": "beta",
		"X-Gatehouse-Api": "other", "x-http-method-override": "DELETE", "x-original-url": "/admin", "x-rewrite-url": "/admin"}

	// ext_authz: the policy never sees the forged x-role (it would deny),
	// and the allowed response removes every forged owned header it does
	// not set itself.
	client := authv3.NewAuthorizationClient(startGRPC(t, NewServer(ServerOptions{Engines: engines})))
	for _, tc := range []struct {
		path, auth string
		set        map[string]string // headers the response sets
	}{
		{"/me", bearer, map[string]string{"x-user": "alice"}},
		{"/open/page", "", nil},
	} {
		h := map[string]string{}
		for k, v := range forged {
			h[strings.ToLower(k)] = v // Envoy lower-cases header names
		}
		if tc.auth != "" {
			h["authorization"] = tc.auth
		}
		res, err := client.Check(ctx, check("GET", tc.path, h))
		if err != nil {
			t.Fatal(err)
		}
		if res.Status.Code != int32(code.Code_OK) {
			t.Fatalf("%s: denied (%s): the policy saw a forged owned header", tc.path, res.Status.Message)
		}
		ok := res.GetOkResponse()
		set := map[string]string{}
		for _, hv := range ok.GetHeaders() {
			set[hv.GetHeader().GetKey()] = hv.GetHeader().GetValue()
		}
		for k, v := range tc.set {
			if set[k] != v {
				t.Errorf("%s: header %s = %q, want %q", tc.path, k, set[k], v)
			}
		}
		for k := range forged {
			name := strings.ToLower(k)
			if _, isSet := set[name]; isSet {
				continue
			}
			if !slices.Contains(ok.GetHeadersToRemove(), name) {
				t.Errorf("%s: forged %s is neither overwritten nor in headers_to_remove %v", tc.path, name, ok.GetHeadersToRemove())
			}
		}
	}

	// The reverse proxy: the upstream sees the gateway's values only.
	proxy := httptest.NewServer(NewProxy(NewServer(ServerOptions{Engines: engines}), nil))
	defer proxy.Close()
	for _, tc := range []struct {
		name, path, auth, connection string
		want                         map[string]string // "" = must be absent
	}{
		{"claims header from the token", "/me", bearer, "", map[string]string{"X-User": "alice", "X-Tier": "", "X-Role": ""}},
		{"Connection cannot remove gateway headers", "/me", bearer, "x-user, x-role", map[string]string{"X-User": "alice"}},
		{"policy header only when the policy sets it", "/me?x=1", bearer, "", map[string]string{"X-Role": ""}},
		{"public route", "/open/page", "", "", map[string]string{"X-User": "", "X-Tier": "", "X-Role": ""}},
		{"public route with Connection", "/open/page", "", "x-gatehouse-tenant", map[string]string{"X-User": ""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", proxy.URL+tc.path, nil)
			for k, v := range forged {
				req.Header.Set(k, v)
			}
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			if tc.connection != "" {
				req.Header.Set("Connection", tc.connection)
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != 200 {
				t.Fatalf("status %d", res.StatusCode)
			}
			_, got, _ := up.last()
			for k, v := range tc.want {
				if g := got.Get(k); g != v {
					t.Errorf("upstream saw %s = %q, want %q", k, g, v)
				}
			}
			for name := range got {
				if l := strings.ToLower(name); strings.HasPrefix(l, "x-gatehouse-") || l == "x-http-method-override" ||
					l == "x-original-url" || l == "x-rewrite-url" {
					t.Errorf("upstream saw %s = %q", name, got.Get(name))
				}
			}
		})
	}
	// And a policy header the policy does set reaches the upstream with the
	// policy's value, not the client's.
	req, _ := http.NewRequest("GET", proxy.URL+"/me", nil)
	req.Header.Set("Authorization", bearer)
	req.Header.Set("X-Give-Role", "yes")
	req.Header.Set("X-Role", "admin")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if _, got, _ := up.last(); res.StatusCode != 200 || got.Get("X-Role") != "reader" {
		t.Fatalf("status %d, upstream x-role %q, want 200 and the policy's value", res.StatusCode, got.Get("X-Role"))
	}
}
