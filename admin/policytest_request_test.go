package admin_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
)

// requestTestTenant is a tenant with a service on pets.example.com, GET
// /pets/{id} bound to policy "owner" (the token's subject reads its own
// pet), and an issuer whose key signs the tokens key makes.
func requestTestTenant(t *testing.T, e *env, tid string) (sign func(claims jwt.MapClaims) string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	set, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
	e.createTenant(tid)
	base := "/api/admin/" + tid
	e.expect(e.do("POST", base+"/issuers", rootToken, map[string]any{"name": "idp", "issuer": "https://idp.example.com",
		"audiences": []string{"pets-api"}, "jwks": json.RawMessage(set)}), 201)
	e.expect(e.do("POST", base+"/policies", rootToken, map[string]any{"id": "owner", "policy_name": "owner", "definition": ownerRego}), 201)
	e.expect(e.do("POST", base+"/services", rootToken, map[string]any{"id": "pets", "name": "pets", "url": "http://pets.internal", "hosts": []string{"pets.example.com"}}), 201)
	e.expect(e.do("POST", base+"/apis", rootToken, map[string]any{"id": "get-pet", "service_id": "pets", "method": "GET", "path": "/pets/{id}", "policy_id": "owner"}), 201)
	return func(claims jwt.MapClaims) string {
		full := jwt.MapClaims{"iss": "https://idp.example.com", "aud": "pets-api", "sub": "7", "exp": time.Now().Add(time.Hour).Unix()}
		for k, v := range claims {
			full[k] = v
		}
		tok := jwt.NewWithClaims(jwt.SigningMethodES256, full)
		tok.Header["kid"] = "k1"
		raw, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
}

const ownerRego = `package policy

default allow := false

allow if {
	input.gatehouse.token.subject == input.gatehouse.path_params.id
}
`

func petRequest(path, tok string) map[string]any {
	return map[string]any{"method": "GET", "path": path, "headers": map[string]string{"Host": "pets.example.com", "Authorization": "Bearer " + tok}}
}

func TestPolicyTestRunsTheGatewayPipeline(t *testing.T) {
	e := newEnv(t)
	sign := requestTestTenant(t, e, "acme")
	path := "/api/admin/acme/policies/owner/test"

	// The token makes it pass: route, params, token and policy stages.
	res := e.expect(e.do("POST", path, rootToken, map[string]any{"request": petRequest("/pets/7", sign(nil))}), 200).json(t)
	stages := res["stages"].(map[string]any)
	route, tok, pol := stages["route"].(map[string]any), stages["token"].(map[string]any), stages["policy"].(map[string]any)
	if res["allowed"] != true || route["api_id"] != "get-pet" || route["params"].(map[string]any)["id"] != "7" || tok["valid"] != true || pol["ran"] != true {
		t.Fatalf("allowed request: %v", res)
	}

	// Another subject: denied, with the failing line and its operands.
	res = e.expect(e.do("POST", path, rootToken, map[string]any{"request": petRequest("/pets/8", sign(nil))}), 200).json(t)
	fe := res["stages"].(map[string]any)["policy"].(map[string]any)["failed_expression"].(map[string]any)
	ops := fe["operands"].([]any)
	if res["allowed"] != false || res["http_status"] != float64(403) || fe["line"] != float64(6) ||
		ops[0].(map[string]any)["value"] != "7" || ops[1].(map[string]any)["value"] != "8" {
		t.Fatalf("denied request: %v", res)
	}

	// An expired token: 401 with the precise reason, and the policy never ran.
	res = e.expect(e.do("POST", path, rootToken, map[string]any{"request": petRequest("/pets/7", sign(jwt.MapClaims{"exp": time.Now().Add(-time.Hour).Unix()}))}), 200).json(t)
	tok = res["stages"].(map[string]any)["token"].(map[string]any)
	if res["http_status"] != float64(401) || tok["reason"] != "expired" || res["stages"].(map[string]any)["policy"].(map[string]any)["ran"] != false {
		t.Fatalf("expired token: %v", res)
	}
	res = e.expect(e.do("POST", path, rootToken, map[string]any{"request": petRequest("/pets/7", sign(jwt.MapClaims{"aud": "shop"}))}), 200).json(t)
	if r := res["stages"].(map[string]any)["token"].(map[string]any)["reason"]; r != "audience_mismatch" {
		t.Fatalf("audience: %v", res)
	}

	// An unsaved draft of the policy (policy.id) replaces the saved one.
	draft := map[string]any{"id": "owner", "definition": "package policy\n\nallow := true\n"}
	res = e.expect(e.do("POST", "/api/admin/acme/policies/test", rootToken, map[string]any{"policy": draft, "request": petRequest("/pets/8", sign(nil))}), 200).json(t)
	if res["allowed"] != true {
		t.Fatalf("draft: %v", res)
	}
	// The raw input form stays.
	e.expect(e.do("POST", path, rootToken, map[string]any{"input": map[string]any{"attributes": map[string]any{}}}), 200)
}

func TestPolicyTestRequestRefusals(t *testing.T) {
	e := newEnv(t)
	sign := requestTestTenant(t, e, "acme")
	requestTestTenant(t, e, "other")
	path := "/api/admin/acme/policies/owner/test"
	before := e.snapshot()
	for _, tc := range []struct {
		body  map[string]any
		field string
	}{
		{map[string]any{}, "request"},
		{map[string]any{"input": map[string]any{}, "request": petRequest("/pets/7", "x")}, "request"},
		{map[string]any{"request": map[string]any{"path": "/pets/7"}}, "request.method"},
		{map[string]any{"request": map[string]any{"method": "GET", "path": "pets"}}, "request.path"},
		{map[string]any{"request": map[string]any{"method": "GET", "path": "/", "headers": map[string]string{"a b": "x"}}}, "request.headers.a b"},
		{map[string]any{"request": map[string]any{"method": "GET", "path": "/", "query": 5}}, "request.query"},
		{map[string]any{"request": petRequest("/pets/7", "x"), "gateway_id": "nowhere"}, "gateway_id"},
		{map[string]any{"request": petRequest("/pets/7", "x"), "gateway_id": "Not An Id!"}, "gateway_id"},
		{map[string]any{"input": map[string]any{}, "gateway_id": "edge"}, "gateway_id"},
		{map[string]any{"request": petRequest("/pets/7", "x"), "bogus": 1}, "bogus"},
	} {
		r := e.do("POST", path, rootToken, tc.body)
		if r.status != 400 || !strings.Contains(string(r.body), tc.field) {
			t.Errorf("%v: want a 400 naming %s, got %d %s", tc.body, tc.field, r.status, r.body)
		}
	}
	r := e.do("POST", "/api/admin/acme/policies/test", rootToken, map[string]any{"policy": map[string]any{"definition": "package policy\n\nallow if {\n\tx\n}\n"}, "request": petRequest("/pets/7", "x")})
	if r.status != 400 || !strings.Contains(string(r.body), "definition") {
		t.Fatalf("broken draft: %d %s", r.status, r.body)
	}
	e.expect(e.do("POST", "/api/admin/acme/policies/missing/test", rootToken, map[string]any{"request": petRequest("/pets/7", "x")}), 404)
	e.requireUnchanged(t, before, "a policy test changed the store")

	// Tenant isolation: acme's credential gets 403 on other's routes, and a
	// token of acme's issuer (the same issuer URL, another key) is refused
	// by other's.
	e.expect(e.do("POST", "/api/admin/other/policies/owner/test", e.credential("acme"), map[string]any{"request": petRequest("/pets/7", sign(nil))}), 403)
	res := e.expect(e.do("POST", "/api/admin/other/policies/owner/test", rootToken, map[string]any{"request": petRequest("/pets/7", sign(nil))}), 200).json(t)
	if r := res["stages"].(map[string]any)["token"].(map[string]any)["reason"]; r != "signature_invalid" || res["allowed"] != false {
		t.Fatalf("acme's token at other: %v", res)
	}
}

// A gateway that exposes token errors says why in the challenge; by
// default the client learns nothing of the reason (decision logs do).
func TestGatewayExposeTokenErrors(t *testing.T) {
	e := newEnv(t)
	sign := requestTestTenant(t, e, "acme")
	gw := e.expect(e.do("POST", "/api/admin/acme/gateways", rootToken, map[string]any{"id": "open", "name": "open", "expose_token_errors": true}), 201).json(t)
	if gw["expose_token_errors"] != true {
		t.Fatalf("created: %v", gw)
	}
	e.expect(e.do("POST", "/api/admin/acme/gateways", rootToken, map[string]any{"id": "quiet", "name": "quiet"}), 201)
	expired := sign(jwt.MapClaims{"exp": time.Now().Add(-time.Hour).Unix()})
	for gw, want := range map[string]string{
		"open":  `Bearer error="invalid_token", error_description="expired"`,
		"quiet": `Bearer error="invalid_token"`,
	} {
		res := e.expect(e.do("POST", "/api/admin/acme/policies/owner/test", rootToken, map[string]any{"gateway_id": gw, "request": petRequest("/pets/7", expired)}), 200).json(t)
		if h := res["decision"].(map[string]any)["headers"].(map[string]any)["www-authenticate"]; h != want {
			t.Errorf("gateway %s: challenge %v, want %s", gw, h, want)
		}
	}
}

// BenchmarkPolicyTestRequest is the console's "test a request": POST
// …/policies/test over HTTP with a draft and a whole request, run through
// the gateway's pipeline (compile, activate, decide, explain a denial), in
// the tenant of BenchmarkPolicyCheck.
func BenchmarkPolicyTestRequest(b *testing.B) {
	must := benchTenant(b)
	body := map[string]any{"policy": map[string]any{"id": "uses", "definition": usesKeyed},
		"request": map[string]any{"method": "GET", "path": "/r1/7", "headers": map[string]string{"Host": "s3.example.com", "x-key": "wrong"}}}
	for b.Loop() {
		var res struct {
			Allowed bool `json:"allowed"`
			Stages  struct {
				Route struct {
					APIID string `json:"api_id"`
				} `json:"route"`
				Policy struct {
					Failed *struct{ Line int } `json:"failed_expression"`
				} `json:"policy"`
			} `json:"stages"`
		}
		if err := json.Unmarshal(must("POST", "/api/admin/acme/policies/test", body, 200), &res); err != nil || res.Allowed ||
			res.Stages.Route.APIID != "a3-1" || res.Stages.Policy.Failed == nil {
			b.Fatalf("%v %+v", err, res)
		}
	}
}
