package simulate_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"

	"github.com/gatehouse-dev/gatehouse/gateway/simulate"
	"github.com/gatehouse-dev/gatehouse/gateway/token"
	"github.com/gatehouse-dev/gatehouse/internal/field"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/policies"
)

// ownerPolicy lets a token's subject read its own pet: line 5 is the
// comparison a denial should point at.
const ownerPolicy = `package policy

default allow := false

allow if {
	input.gatehouse.token.subject == input.gatehouse.path_params.id
	"pets:read" in input.gatehouse.token.scopes
}
`

const (
	issuerURL = "https://idp.example.com"
	audience  = "pets-api"
)

type fixture struct {
	key     *ecdsa.PrivateKey
	jwksURL string       // a JWK Set endpoint that fails (500)
	fetches atomic.Int64 // requests it got
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{key: key}
	broken := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.fetches.Add(1)
		http.Error(w, "down", http.StatusInternalServerError)
	}))
	t.Cleanup(broken.Close)
	f.jwksURL = broken.URL + "/jwks"
	return f
}

// config is a tenant with one service (pets.example.com): GET
// /pets/{id} bound to "owner", POST /pets bound to "nobody", GET /health
// public; issuers: the fixture's key inline, and one whose JWK Set
// endpoint fails.
func (f *fixture) config(t *testing.T) *policies.Config {
	t.Helper()
	set, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &f.key.PublicKey, KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
	if err != nil {
		t.Fatal(err)
	}
	return &policies.Config{
		Revision: 7,
		Tenant:   policies.Object[model.TenantSpec]{ID: "acme", Spec: model.TenantSpec{Name: "Acme", Status: model.TenantAvailable}},
		Services: []policies.Object[model.ServiceSpec]{{ID: "pets", Name: "pets", Spec: model.ServiceSpec{URL: "http://127.0.0.1:1", Hosts: []string{"pets.example.com"}}}},
		APIs: []policies.Object[model.APISpec]{
			{ID: "get-pet", Spec: model.APISpec{ServiceID: "pets", Method: "GET", Path: "/pets/{id}", PolicyID: "owner", CanHavePolicy: true}},
			{ID: "add-pet", Spec: model.APISpec{ServiceID: "pets", Method: "POST", Path: "/pets", PolicyID: "nobody", CanHavePolicy: true}},
			{ID: "health", Spec: model.APISpec{ServiceID: "pets", Method: "GET", Path: "/health", Public: true, CanHavePolicy: true}},
		},
		Policies: []policies.Object[model.PolicySpec]{
			{ID: "owner", Name: "owner", Spec: model.PolicySpec{Language: model.LanguageRego, Definition: ownerPolicy, Type: "api"}},
			{ID: "nobody", Name: "nobody", Spec: model.PolicySpec{Language: model.LanguageRego, Definition: "package policy\n\nallow := false\n", Type: "api"}},
		},
		Gateways: []policies.Object[model.GatewaySpec]{{ID: "edge", Spec: model.GatewaySpec{Type: model.GatewayEnvoy, ServiceIDs: []string{"pets"}}}},
		Issuers: []policies.Object[model.IssuerSpec]{
			{ID: "idp", Spec: model.IssuerSpec{Issuer: issuerURL, Audiences: []string{audience}, JWKS: set}},
			{ID: "flaky", Spec: model.IssuerSpec{Issuer: "https://flaky.example.com", Audiences: []string{audience}, JWKSURI: f.jwksURL}},
		},
	}
}

// token signs claims (iss, aud, exp defaulted) with key under kid k1.
func (f *fixture) token(t *testing.T, key *ecdsa.PrivateKey, claims jwt.MapClaims) string {
	t.Helper()
	full := jwt.MapClaims{"iss": issuerURL, "aud": audience, "exp": time.Now().Add(time.Hour).Unix(), "sub": "7", "scope": "pets:read"}
	for k, v := range claims {
		if v == nil {
			delete(full, k)
			continue
		}
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

func (f *fixture) run(t *testing.T, opts simulate.Options, req simulate.Request) *simulate.Result {
	t.Helper()
	if opts.Config == nil {
		opts.Config = f.config(t)
	}
	opts.Tokens = token.Options{AllowPrivateNetworks: true, FetchTimeout: 2 * time.Second}
	if opts.Timeout == 0 {
		opts.Timeout = 5 * time.Second
	}
	if errs := req.Validate(field.NewPath("request")); len(errs) > 0 {
		t.Fatalf("request refused: %v", errs)
	}
	res, err := simulate.Run(context.Background(), opts, &req)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func get(path, authorization string) simulate.Request {
	h := map[string]string{"Host": "pets.example.com"}
	if authorization != "" {
		h["Authorization"] = authorization
	}
	return simulate.Request{Method: "GET", Path: path, Headers: h}
}

func TestAllowedRequestShowsEveryStage(t *testing.T) {
	f := newFixture(t)
	res := f.run(t, simulate.Options{PolicyID: "owner", EvaluateWith: "owner"}, get("/pets/7", "Bearer "+f.token(t, f.key, nil)))
	if !res.Allowed || res.HTTPStatus != 200 {
		t.Fatalf("want allowed 200, got %v %d (%s)", res.Allowed, res.HTTPStatus, res.Reason)
	}
	r := res.Stages.Route
	if !r.Matched || r.APIID != "get-pet" || r.Path != "/pets/{id}" || r.Params["id"] != "7" || r.BoundPolicyID != "owner" {
		t.Fatalf("route stage: %+v", r)
	}
	tk := res.Stages.Token
	if !tk.Present || !tk.Valid || tk.Reason != "" || tk.Subject != "7" || tk.Issuer != issuerURL {
		t.Fatalf("token stage: %+v", tk)
	}
	p := res.Stages.Policy
	if !p.Ran || !p.Allowed || p.PolicyID != "owner" || p.Result["allow"] != true || p.FailedExpression != nil {
		t.Fatalf("policy stage: %+v", p)
	}
	if res.Stages.Request.Path != "/pets/7" || res.Stages.Request.Host != "pets.example.com" {
		t.Fatalf("request stage: %+v", res.Stages.Request)
	}
}

// A test fetches the keys of its token's issuer only: the other issuers'
// key sets (remote ones included) are never asked for.
func TestOnlyTheTokensIssuerIsFetched(t *testing.T) {
	f := newFixture(t)
	for _, auth := range []string{"Bearer " + f.token(t, f.key, nil), "", "Bearer x.y.z"} {
		f.run(t, simulate.Options{PolicyID: "owner", EvaluateWith: "owner"}, get("/pets/7", auth))
	}
	if n := f.fetches.Load(); n != 0 {
		t.Fatalf("the other issuer's key set was fetched %d times", n)
	}
	f.run(t, simulate.Options{PolicyID: "owner", EvaluateWith: "owner"}, get("/pets/7", "Bearer "+f.token(t, f.key, jwt.MapClaims{"iss": "https://flaky.example.com"})))
	if f.fetches.Load() == 0 {
		t.Fatal("the token's own issuer's key set was not fetched")
	}
}

func TestDenialPointsAtTheFailingExpressionWithItsOperands(t *testing.T) {
	f := newFixture(t)
	res := f.run(t, simulate.Options{PolicyID: "owner", EvaluateWith: "owner"}, get("/pets/8", "Bearer "+f.token(t, f.key, nil)))
	if res.Allowed || res.HTTPStatus != 403 {
		t.Fatalf("want denied 403, got %v %d", res.Allowed, res.HTTPStatus)
	}
	fe := res.Stages.Policy.FailedExpression
	if fe == nil {
		t.Fatalf("no failed expression: %+v", res.Stages.Policy)
	}
	if fe.Line != 6 || !strings.Contains(fe.Text, "input.gatehouse.token.subject == input.gatehouse.path_params.id") {
		t.Fatalf("failed expression: %+v", fe)
	}
	if len(fe.Operands) != 2 || fe.Operands[0].Value != "7" || fe.Operands[1].Value != "8" || !fe.Operands[0].Resolved {
		t.Fatalf("operands: %+v", fe.Operands)
	}
	for _, x := range res.Stages.Policy.FailedExpressions {
		if !strings.HasPrefix(x.File, policies.Root+"/policies/") {
			t.Errorf("an expression outside the user's policies is shown: %+v", x)
		}
	}

	// Without the scope, the first failure is the scope check, and the
	// missing member is undefined.
	res = f.run(t, simulate.Options{PolicyID: "owner", EvaluateWith: "owner"}, get("/pets/7", "Bearer "+f.token(t, f.key, jwt.MapClaims{"scope": "other"})))
	fe = res.Stages.Policy.FailedExpression
	if res.Allowed || fe == nil || fe.Line != 7 {
		t.Fatalf("scope denial: allowed=%v %+v", res.Allowed, fe)
	}
}

func TestTokenReasons(t *testing.T) {
	f := newFixture(t)
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for _, tc := range []struct {
		name, authorization, reason string
	}{
		{"expired", "Bearer " + f.token(t, f.key, jwt.MapClaims{"exp": now.Add(-time.Hour).Unix()}), token.ReasonExpired},
		{"not yet valid", "Bearer " + f.token(t, f.key, jwt.MapClaims{"nbf": now.Add(time.Hour).Unix()}), token.ReasonNotYetValid},
		{"audience", "Bearer " + f.token(t, f.key, jwt.MapClaims{"aud": "someone-else"}), token.ReasonAudienceMismatch},
		{"issuer", "Bearer " + f.token(t, f.key, jwt.MapClaims{"iss": "https://evil.example.com"}), token.ReasonIssuerUnknown},
		{"signature", "Bearer " + f.token(t, other, nil), token.ReasonSignatureInvalid},
		{"malformed", "Bearer not-a-jwt", token.ReasonMalformed},
		{"no exp", "Bearer " + f.token(t, f.key, jwt.MapClaims{"exp": nil}), token.ReasonMalformed},
		{"jwks unavailable", "Bearer " + f.token(t, f.key, jwt.MapClaims{"iss": "https://flaky.example.com"}), token.ReasonJWKSUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := f.run(t, simulate.Options{PolicyID: "owner", EvaluateWith: "owner"}, get("/pets/7", tc.authorization))
			tk := res.Stages.Token
			if res.Allowed || res.HTTPStatus != 401 || !tk.Present || tk.Valid || tk.Reason != tc.reason || tk.Detail == "" {
				t.Fatalf("want 401 for %s, got allowed=%v %d token=%+v", tc.reason, res.Allowed, res.HTTPStatus, tk)
			}
			if tc.reason == token.ReasonJWKSUnavailable && strings.Contains(tk.Detail, "127.0.0.1") {
				t.Fatalf("the fetch error reaches the tenant: %s", tk.Detail)
			}
			if tk.Claims != nil || tk.Subject != "" {
				t.Fatalf("an invalid token's claims are shown: %+v", tk)
			}
			if res.Stages.Policy.Ran || !strings.Contains(res.Stages.Policy.Note, tc.reason) {
				t.Fatalf("policy stage: %+v", res.Stages.Policy)
			}
			// What the client gets says nothing of the reason.
			if h, _ := res.Decision["headers"].(map[string]any); h["www-authenticate"] != `Bearer error="invalid_token"` {
				t.Fatalf("challenge: %v", res.Decision["headers"])
			}
		})
	}
}

// A tenant's own gateway named like the test gateway of other systems
// is never taken for the gateway over every service.
func TestTheAllServicesGatewayIsNotATenantsGateway(t *testing.T) {
	f := newFixture(t)
	cfg := f.config(t)
	cfg.Gateways = append(cfg.Gateways, policies.Object[model.GatewaySpec]{ID: "policy-test", Spec: model.GatewaySpec{Type: model.GatewayEnvoy, ServiceIDs: []string{"nothing"}}})
	res := f.run(t, simulate.Options{Config: cfg, PolicyID: "owner", EvaluateWith: "owner"}, get("/pets/7", "Bearer "+f.token(t, f.key, nil)))
	if !res.Allowed || res.Stages.Route.GatewayID != simulate.AllServicesGateway {
		t.Fatalf("%+v", res.Stages.Route)
	}
}

func TestNoRouteSaysWhy(t *testing.T) {
	f := newFixture(t)
	res := f.run(t, simulate.Options{PolicyID: "owner", EvaluateWith: "owner"}, simulate.Request{Method: "DELETE", Path: "/pets/7", Headers: map[string]string{"host": "pets.example.com"}})
	if res.Allowed || res.HTTPStatus != 404 || res.Stages.Route.Matched || !strings.Contains(res.Stages.Route.Reason, "methods GET") {
		t.Fatalf("method mismatch: %d %+v", res.HTTPStatus, res.Stages.Route)
	}
	res = f.run(t, simulate.Options{GatewayID: "edge"}, simulate.Request{Method: "GET", Path: "/pets/7", Headers: map[string]string{"host": "other.example.com"}})
	if res.HTTPStatus != 404 || !strings.Contains(res.Stages.Route.Reason, `host "other.example.com"`) || res.Stages.Route.GatewayID != "edge" {
		t.Fatalf("host mismatch: %d %+v", res.HTTPStatus, res.Stages.Route)
	}
	res = f.run(t, simulate.Options{}, simulate.Request{Method: "GET", Path: "/pets/%2e%2e/admin", Headers: map[string]string{"host": "pets.example.com"}})
	if res.Allowed || res.Stages.Request.RefusedStatus == 0 || res.Stages.Route.Matched || res.Stages.Policy.Ran {
		t.Fatalf("refused path: %d %+v", res.HTTPStatus, res.Stages)
	}
}

func TestPublicAPIAndBoundPolicies(t *testing.T) {
	f := newFixture(t)
	// A public API without policy is allowed, whatever the token.
	res := f.run(t, simulate.Options{}, get("/health", "Bearer garbage"))
	if !res.Allowed || !res.Stages.Route.Public || res.Stages.Policy.Ran {
		t.Fatalf("public: %+v", res)
	}
	// The tested policy decides in place of the bound one, and says so.
	res = f.run(t, simulate.Options{PolicyID: "owner", EvaluateWith: "owner"}, simulate.Request{Method: "POST", Path: "/pets",
		Headers: map[string]string{"host": "pets.example.com", "authorization": "Bearer " + f.token(t, f.key, nil)}})
	if res.Stages.Route.BoundPolicyID != "nobody" || res.Stages.Policy.PolicyID != "owner" || !strings.Contains(res.Stages.Policy.Note, "bound to policy nobody") {
		t.Fatalf("evaluate with: %+v %+v", res.Stages.Route, res.Stages.Policy)
	}
	// Without EvaluateWith the bound policy decides, as the gateway does.
	res = f.run(t, simulate.Options{}, simulate.Request{Method: "POST", Path: "/pets",
		Headers: map[string]string{"host": "pets.example.com", "authorization": "Bearer " + f.token(t, f.key, nil)}})
	if res.Allowed || res.Stages.Policy.PolicyID != "nobody" || !res.Stages.Policy.Ran {
		t.Fatalf("bound policy: %+v", res.Stages.Policy)
	}
}

func TestDraftReplacesTheSavedPolicy(t *testing.T) {
	f := newFixture(t)
	draft := model.PolicySpec{Language: model.LanguageRego, Definition: "package policy\n\nallow := true\n"}
	res := f.run(t, simulate.Options{PolicyID: "owner", Policy: &draft, EvaluateWith: "owner"}, get("/pets/8", "Bearer "+f.token(t, f.key, nil)))
	if !res.Allowed {
		t.Fatalf("the draft should allow: %+v", res.Stages.Policy)
	}
	bad := model.PolicySpec{Language: model.LanguageRego, Definition: "package policy\n\nallow if { x }\n"}
	checker, err := policies.NewChecker()
	if err != nil {
		t.Fatal(err)
	}
	_, err = simulate.Run(context.Background(), simulate.Options{Config: f.config(t), Checker: checker, PolicyID: "owner", Policy: &bad, EvaluateWith: "owner", Timeout: time.Second}, &simulate.Request{Method: "GET", Path: "/"})
	var invalid *policies.CheckError
	if !asError(err, &invalid) || invalid.Field != "definition" || invalid.Problems[0].Line != 3 {
		t.Fatalf("want a CheckError on definition line 3, got %v", err)
	}
	_, err = simulate.Run(context.Background(), simulate.Options{Config: f.config(t), GatewayID: "nowhere", Timeout: time.Second}, &simulate.Request{Method: "GET", Path: "/"})
	var unknown *simulate.UnknownGatewayError
	if !asError(err, &unknown) {
		t.Fatalf("want an UnknownGatewayError, got %v", err)
	}
}

// Only the deciding policy and those it uses are compiled: another
// policy of the tenant, even one OPA would not compile, changes nothing.
func TestOnlyTheDecidingPoliciesAreCompiled(t *testing.T) {
	f := newFixture(t)
	cfg := f.config(t)
	cfg.Policies = append(cfg.Policies, policies.Object[model.PolicySpec]{ID: "broken", Name: "broken",
		Spec: model.PolicySpec{Language: model.LanguageRego, Definition: "package policy\n\nallow if { x }\n"}})
	res := f.run(t, simulate.Options{Config: cfg, PolicyID: "owner", EvaluateWith: "owner"}, get("/pets/7", "Bearer "+f.token(t, f.key, nil)))
	if !res.Allowed {
		t.Fatalf("%+v", res.Stages.Policy)
	}
}

func TestValidatorsPolicyShowsValidatorsNotInternalRules(t *testing.T) {
	f := newFixture(t)
	cfg := f.config(t)
	v := model.PolicySpec{Language: model.LanguageValidators, Type: "api", Validators: []model.ValidatorConfig{
		{Name: "header", Conf: map[string]any{"name": "x-key", "value": "open"}},
		{Name: "true"},
	}}
	res := f.run(t, simulate.Options{Config: cfg, PolicyID: "keyed", Policy: &v, EvaluateWith: "keyed"}, get("/pets/7", ""))
	p := res.Stages.Policy
	if res.Allowed || len(p.Validators) != 2 || p.Validators[0].Passed || !p.Validators[1].Passed {
		t.Fatalf("validators: %+v", p)
	}
	for k := range p.Result {
		if strings.HasPrefix(k, "check_") {
			t.Fatalf("internal rule %s shown: %v", k, p.Result)
		}
	}
}

func TestRequestValidation(t *testing.T) {
	for _, tc := range []struct {
		req   simulate.Request
		field string
	}{
		{simulate.Request{Path: "/"}, "request.method"},
		{simulate.Request{Method: "G ET", Path: "/"}, "request.method"},
		{simulate.Request{Method: "GET"}, "request.path"},
		{simulate.Request{Method: "GET", Path: "pets"}, "request.path"},
		{simulate.Request{Method: "GET", Path: "/", Headers: map[string]string{"bad name": "x"}}, "request.headers.bad name"},
		{simulate.Request{Method: "GET", Path: "/", Headers: map[string]string{"x": "a\r\nb"}}, "request.headers.x"},
		{simulate.Request{Method: "GET", Path: "/", Headers: map[string]string{":path": "/x"}}, "request.headers.:path"},
		{simulate.Request{Method: "GET", Path: "/", Body: strings.Repeat("x", simulate.MaxBodyBytes+1)}, "request.body"},
	} {
		errs := tc.req.Validate(field.NewPath("request"))
		if len(errs) == 0 || errs[0].Field != tc.field {
			t.Errorf("%+v: want an error on %s, got %v", tc.req.Headers, tc.field, errs)
		}
	}
}

func TestQueryForms(t *testing.T) {
	for raw, want := range map[string]string{
		`{"b":["2","3"],"a":"1"}`: "a=1&b=2&b=3",
		`"?x=1&y"`:                "x=1&y",
		`null`:                    "",
	} {
		got, err := simulate.ParseQuery(json.RawMessage(raw))
		if err != nil || got != want {
			t.Errorf("%s: got %q %v, want %q", raw, got, err, want)
		}
	}
	for _, bad := range []string{`{"a":1}`, `5`, `["a"]`} {
		r := simulate.Request{Method: "GET", Path: "/", Query: json.RawMessage(bad)}
		if errs := r.Validate(field.NewPath("request")); len(errs) == 0 || errs[0].Field != "request.query" {
			t.Errorf("%s: want an error on request.query, got %v", bad, errs)
		}
	}
	f := newFixture(t)
	res := f.run(t, simulate.Options{}, simulate.Request{Method: "GET", Path: "/health?z=0", Query: simulate.QueryString("a=1"), Headers: map[string]string{"host": "pets.example.com"}})
	if res.Stages.Request.Query != "z=0&a=1" {
		t.Fatalf("query stage: %+v", res.Stages.Request)
	}
}

func asError[T error](err error, target *T) bool { return errors.As(err, target) }
