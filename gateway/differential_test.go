package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/gatehouse-dev/gatehouse/gateway/token"
	"github.com/gatehouse-dev/gatehouse/internal/testkit/jwtkit"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/policies"
	"github.com/gatehouse-dev/gatehouse/routing"
)

// Policies the generator binds to APIs: Rego reading headers, path
// parameters, the query, the method and the body, and validators.
var diffPolicies = []policies.Object[model.PolicySpec]{
	{ID: "by-header", Name: "by-header", Spec: model.PolicySpec{Language: model.LanguageRego, Definition: `package policy

default allow := false

allow if input.attributes.request.http.headers["x-key"] == "good"

reason := "header key accepted" if allow

headers := {"x-api": input.gatehouse.api_id, "x-params": concat(",", [v | some v in input.gatehouse.path_params])} if allow

http_status := 418 if input.attributes.request.http.headers["x-key"] == "teapot"

# A policy's own 401 asks for a bearer token unless it names its own
# challenge, in any letter case.
http_status := 401 if input.attributes.request.http.headers["x-key"] in {"unauth", "basic"}

headers := {"WWW-Authenticate": "Basic realm=\"pets\""} if input.attributes.request.http.headers["x-key"] == "basic"

body := "go away" if not allow
`}},
	{ID: "by-param", Name: "by-param", Spec: model.PolicySpec{Language: model.LanguageRego, Definition: `package policy

default allow := false

allow if startswith(input.gatehouse.path_params.id, "ok")

allow if input.parsed_query.debug[0] == "1"

allow if input.parsed_body.role == "admin"

request_headers_to_remove := ["x-key"] if allow

response_headers_to_add := {"x-decided-by": "by-param"}

dynamic_metadata := {"api": input.gatehouse.api_id, "tenant": input.gatehouse.tenant}
`}},
	{ID: "methods", Name: "methods", Spec: model.PolicySpec{Language: model.LanguageValidators, Validators: []model.ValidatorConfig{
		{Name: "method", Conf: map[string]any{"comparator": "one_of", "values": []any{"GET", "HEAD"}}},
		{Name: "header", Conf: map[string]any{"name": "x-tenant", "comparator": "absent"}},
	}}},
	{ID: "query-validators", Name: "query-validators", Spec: model.PolicySpec{Language: model.LanguageValidators, DryRun: true, Validators: []model.ValidatorConfig{
		{Name: "query", Conf: map[string]any{"name": "page", "comparator": "regex", "value": "^[0-9]+$"}},
	}}},
	{ID: "deny", Name: "deny", Spec: model.PolicySpec{Language: model.LanguageValidators, Validators: []model.ValidatorConfig{{Name: "false"}}}},
	{ID: "roles", Name: "roles", Spec: model.PolicySpec{Language: model.LanguageRego, Definition: roleRego}},
	{ID: "token-validators", Name: "token-validators", Spec: model.PolicySpec{Language: model.LanguageValidators, Validators: []model.ValidatorConfig{
		{Name: "claim", Conf: map[string]any{"claim": "org.tier", "comparator": "one_of", "values": []any{"gold", "silver"}}},
		{Name: "scope", Conf: map[string]any{"scopes": []any{"pets:read", "pets:write"}, "match": "any"}},
	}}},
}

var (
	diffWords   = []string{"pets", "files", "a", "b", "mine", "v1", "ok1", "x.y", ""}
	diffMethods = []string{"GET", "POST", "PUT", "DELETE", "HEAD", "PATCH"}
	diffHosts   = []string{"api.example.com", "web.example.com", "a.eu.example.com", "other.org", "API.example.com:443", "[::1]:8080", ""}
)

func randomTemplate(rng *rand.Rand) string {
	n := 1 + rng.Intn(3)
	var b strings.Builder
	for i := 0; i < n; i++ {
		b.WriteByte('/')
		switch k := rng.Intn(7); {
		case k == 0 && i == n-1:
			b.WriteString("{rest...}")
		case k <= 2:
			if i == n-1 || rng.Intn(2) == 0 {
				b.WriteString("{id}")
			} else {
				fmt.Fprintf(&b, "{p%d}", i)
			}
		default:
			b.WriteString(diffWords[rng.Intn(len(diffWords)-2)])
		}
	}
	return b.String()
}

// diffSigner signs the corpus's tokens; its key set is the bundle's inline
// JWKS, so the pure-Rego entrypoint can verify them too.
var diffSigner struct {
	once sync.Once
	s    *jwtkit.Signer
}

func diffKey(t testing.TB) *jwtkit.Signer {
	diffSigner.once.Do(func() { diffSigner.s = jwtkit.NewSigner(t, "diff") })
	return diffSigner.s
}

func randomConfig(t testing.TB, rng *rand.Rand) *policies.Config {
	cfg := &policies.Config{
		Revision: 1,
		Tenant:   policies.Object[model.TenantSpec]{ID: "acme", Spec: model.TenantSpec{Name: "Acme"}},
		Policies: diffPolicies,
		Gateways: []policies.Object[model.GatewaySpec]{{ID: "gw", Name: "gw", Spec: model.GatewaySpec{Type: model.GatewayEnvoy,
			PolicyTimeoutMS: model.MaxPolicyTimeoutMS, DryRun: rng.Intn(8) == 0, AllowUnmatchedRoutes: rng.Intn(4) == 0,
			ExposeTokenErrors: rng.Intn(2) == 0}}},
		Issuers: []policies.Object[model.IssuerSpec]{{ID: "idp", Name: "idp", Spec: model.IssuerSpec{Issuer: issuerURL,
			Audiences: []string{"pets-api"}, JWKS: jwtkit.JWKS(t, diffKey(t))}}},
	}
	if rng.Intn(3) > 0 {
		cfg.Revocations = diffRevocations(time.Now())
	}
	hostSets := [][]string{nil, nil, {"api.example.com"}, {"*.example.com"}, {"*.eu.example.com", "other.org"}}
	for s := 0; s < 1+rng.Intn(4); s++ {
		sid := fmt.Sprintf("s%d", s)
		cfg.Services = append(cfg.Services, policies.Object[model.ServiceSpec]{ID: sid, Name: sid,
			Spec: model.ServiceSpec{URL: "http://" + sid, Hosts: hostSets[rng.Intn(len(hostSets))]}})
		seen := map[string]bool{}
		for a := 0; a < 2+rng.Intn(10); a++ {
			method := append(diffMethods[:3:3], "*")[rng.Intn(4)]
			path := randomTemplate(rng)
			tpl, err := routingParse(path)
			if err != nil || seen[method+tpl] {
				continue
			}
			seen[method+tpl] = true
			api := model.APISpec{ServiceID: sid, Method: method, Path: path, CanHavePolicy: true}
			switch k := rng.Intn(8); {
			case k == 0:
				api.Public = true
			case k == 1:
			default:
				api.PolicyID = diffPolicies[rng.Intn(len(diffPolicies))].ID
			}
			if rng.Intn(3) == 0 {
				api.ClaimsToHeaders = map[string]string{"sub": "x-user", "roles": "x-roles", "org.tier": "x-tier", "exp": "x-exp"}
			}
			cfg.APIs = append(cfg.APIs, policies.Object[model.APISpec]{ID: fmt.Sprintf("%s-api%d", sid, a), Spec: api})
		}
	}
	return cfg
}

// diffRevocations revoke, around now, some of the tokens
// randomAuthorization makes: the jti "revoked" (the entry of "lapsed" is
// over), the tokens of bob and those of carol by client app1 issued over
// half an hour ago.
func diffRevocations(now time.Time) *policies.RevocationsData {
	nb := now.Add(-30 * time.Minute).Unix()
	return &policies.RevocationsData{
		JTI:             map[string]map[string]int64{issuerURL: {"revoked": now.Add(time.Hour).Unix(), "lapsed": now.Add(-time.Hour).Unix()}},
		NotBefore:       map[string]map[string]int64{issuerURL: {"bob": nb}},
		ClientNotBefore: map[string]map[string]map[string]int64{issuerURL: {"carol": {"app1": nb}}},
	}
}

// randomAuthorization is no header, a valid token with random claims, or
// an invalid one.
func randomAuthorization(t testing.TB, rng *rand.Rand) string {
	good := map[string]any{}
	if rng.Intn(2) == 0 {
		good["roles"] = []any{[]string{"admin", "ops", "viewer"}[rng.Intn(3)]}
	}
	switch rng.Intn(3) {
	case 0:
		good["scope"] = []string{"pets:read", "pets:write", "pets:read pets:write"}[rng.Intn(3)]
	case 1:
		good["scp"] = []any{"pets:write"}
	}
	if rng.Intn(2) == 0 {
		good["org"] = map[string]any{"tier": []string{"gold", "free"}[rng.Intn(2)]}
	}
	// Claims the revocations of diffRevocations look at.
	switch rng.Intn(4) {
	case 0:
		good["jti"] = []string{"revoked", "lapsed", "fresh"}[rng.Intn(3)]
	case 1:
		good["sub"] = []string{"bob", "carol"}[rng.Intn(2)]
	case 2:
		good["sub"] = "carol"
		good[[]string{"client_id", "azp"}[rng.Intn(2)]] = []string{"app1", "app2"}[rng.Intn(2)]
	}
	if rng.Intn(3) == 0 {
		good["iat"] = time.Now().Add(-2 * time.Hour).Unix()
	}
	k := diffKey(t)
	switch rng.Intn(8) {
	case 0, 1:
		return ""
	case 2:
		return "Bearer " + k.Token(t, claims("pets-api", -time.Hour, good))
	case 3:
		return "Bearer " + k.Token(t, claims("other", time.Hour, good))
	case 4:
		return []string{"Bearer garbage", "Basic dXNlcjpwdw==", "Bearer "}[rng.Intn(3)]
	default:
		return "Bearer " + k.Token(t, claims("pets-api", time.Hour, good))
	}
}

func randomRequest(t testing.TB, rng *rand.Rand, cfg *policies.Config) *authv3.CheckRequest {
	var path strings.Builder
	for i := 0; i < rng.Intn(4); i++ {
		path.WriteByte('/')
		path.WriteString(diffWords[rng.Intn(len(diffWords))])
	}
	p := path.String()
	if p == "" {
		p = "/"
	}
	host := diffHosts[rng.Intn(len(diffHosts))]
	if rng.Intn(12) == 0 {
		p += []string{"/..", "/./x", "/%2e%2E", "/a%2Fb", "/a%5cb", `/a\b`}[rng.Intn(6)]
	}
	if rng.Intn(10) < 6 && len(cfg.APIs) > 0 {
		a := cfg.APIs[rng.Intn(len(cfg.APIs))]
		p = pathFor(rng, a.Spec.Path)
		if rng.Intn(15) == 0 {
			p = strings.Replace(p, "/", "/../", 1)
		}
		for _, s := range cfg.Services {
			if s.ID == a.Spec.ServiceID && len(s.Spec.Hosts) > 0 {
				host = strings.Replace(s.Spec.Hosts[rng.Intn(len(s.Spec.Hosts))], "*", "x", 1)
			}
		}
	}
	if rng.Intn(4) == 0 {
		p = mutatePath(rng, p)
	}
	switch rng.Intn(6) {
	case 4:
		p += []string{"?debug=1;page=2", "?debug=%zz", "?debug=%2"}[rng.Intn(3)]
	case 5:
		p += "?debug=%31&page=%41"
	case 0:
		p += "?debug=1&page=2"
	case 1:
		p += "?page=x"
	}
	headers := map[string]string{}
	if k := rng.Intn(6); k > 0 {
		headers["x-key"] = []string{"good", "bad", "teapot", "unauth", "basic"}[k-1]
	}
	if rng.Intn(5) == 0 {
		headers["x-tenant"] = "someone"
	}
	// Forged gateway-owned headers: claims_to_headers targets, a policy's
	// literal header names, the x-gatehouse- prefix, method overrides.
	for _, h := range []string{"x-user", "x-roles", "x-api", "x-gatehouse-tenant", "X-Gatehouse-Mixed", "x-http-method-override"} {
		if rng.Intn(6) == 0 {
			headers[h] = "forged"
		}
	}
	if rng.Intn(20) == 0 {
		headers["x_key"] = "good" // a header name with '_' is refused
	}
	if auth := randomAuthorization(t, rng); auth != "" {
		headers["authorization"] = auth
	}
	body := ""
	if rng.Intn(4) == 0 {
		headers["content-type"] = "application/json"
		body = []string{`{"role":"admin"}`, `{"role":"user"}`, `not json`}[rng.Intn(3)]
	}
	http := &authv3.AttributeContext_HttpRequest{Method: diffMethods[rng.Intn(len(diffMethods))], Host: host,
		Path: p, Headers: headers, Body: body}
	attrs := &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: http}}
	if rng.Intn(5) == 0 && len(cfg.APIs) > 0 {
		attrs.ContextExtensions = map[string]string{"tenant": []string{"acme", "other"}[rng.Intn(2)],
			"api": []string{cfg.APIs[rng.Intn(len(cfg.APIs))].ID, "ghost"}[rng.Intn(2)]}
	}
	return &authv3.CheckRequest{Attributes: attrs}
}

// randomEngine activates a generated configuration for gateway gw, with a
// token verifier for its issuers.
func randomEngine(t *testing.T, cfg *policies.Config) (*Engine, *token.Verifier) {
	t.Helper()
	compiled, err := policies.Compile(cfg, "gw")
	if err != nil {
		t.Fatal(err)
	}
	src, err := SourceFromCompiled(compiled, "1")
	if err != nil {
		t.Fatal(err)
	}
	cfgData, _ := policies.ParseBundleConfig(compiled.Data)
	tokens, err := token.New(token.FromBundle(cfgData.Issuers), token.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tokens.Close)
	eng, err := NewEngine(context.Background(), src, tokens)
	if err != nil {
		t.Fatal(err)
	}
	return eng, tokens
}

func normalize(t *testing.T, v any) any {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestFastPathAgreesWithRegoEntrypoint evaluates a generated corpus of
// requests against generated configurations both ways — the fast path
// (Go routing, one prepared policy query) and the bundle's pure-Rego
// entrypoint with OPA — and requires identical decision documents.
func TestFastPathAgreesWithRegoEntrypoint(t *testing.T) {
	ctx := context.Background()
	rng := rand.New(rand.NewSource(20261123))
	const configs, requestsPer = 30, 150
	allowed, denied, matched, withToken, revoked, explained := 0, 0, 0, 0, 0, 0
	for ci := 0; ci < configs; ci++ {
		cfg := randomConfig(t, rng)
		eng, tokens := randomEngine(t, cfg)
		for ri := 0; ri < requestsPer; ri++ {
			check := randomRequest(t, rng, cfg)
			if _, err := tokens.Check(ctx, check.Attributes.Request.Http.Headers["authorization"]); errors.Is(err, token.ErrRevoked) {
				revoked++
			}
			want, err := eng.rego.Decision(ctx, RequestFromCheck(check).Document())
			if err != nil {
				t.Fatalf("config %d request %d: rego: %v", ci, ri, err)
			}
			got, err := eng.Decide(ctx, RequestFromCheck(check))
			if err != nil {
				t.Fatalf("config %d request %d: fast path: %v", ci, ri, err)
			}
			if g, w := normalize(t, got.Document()), normalize(t, want); !reflect.DeepEqual(g, w) {
				in, _ := json.Marshal(RequestFromCheck(check).Document())
				apis, _ := json.Marshal(cfg.APIs)
				t.Fatalf("config %d request %d disagree\ninput: %s\napis: %s\nfast: %v\nrego: %v", ci, ri, in, apis, g, w)
			}
			if got.Allowed {
				allowed++
			} else {
				denied++
			}
			if got.APIID != "" {
				matched++
			}
			if c, _ := got.Headers["www-authenticate"].(string); strings.Contains(c, "error_description") {
				explained++
			}
			if tok, _ := got.InputDocument()["gatehouse"].(map[string]any)["token"].(map[string]any); tok["valid"] == true {
				withToken++
			}
		}
	}
	t.Logf("%d requests: %d allowed, %d denied, %d matched an API, %d carried a valid token, %d a revoked one, %d denials said why the token is invalid",
		configs*requestsPer, allowed, denied, matched, withToken, revoked, explained)
	if allowed < 200 || denied < 200 || matched < 1000 || withToken < 300 || revoked < 100 || explained < 100 {
		t.Fatalf("the corpus is too one-sided to prove anything: %d allowed, %d denied, %d matched", allowed, denied, matched)
	}
}

func routingParse(path string) (string, error) {
	t, err := routing.ParseTemplate(path)
	if err != nil {
		return "", err
	}
	return t.Shape(), nil
}

// pathFor instantiates an API's template with random segment values.
func pathFor(rng *rand.Rand, tpl string) string {
	t, _ := routing.ParseTemplate(tpl)
	var b strings.Builder
	for _, s := range t.Segments {
		switch s.Kind {
		case routing.Literal:
			b.WriteString("/" + s.Value)
		case routing.Param:
			b.WriteString("/" + []string{"ok7", "nope", "x.y", "mine"}[rng.Intn(4)])
		case routing.CatchAll:
			for i := 0; i < rng.Intn(3); i++ {
				b.WriteString("/" + diffWords[rng.Intn(len(diffWords))])
			}
		}
	}
	if b.Len() == 0 {
		return "/"
	}
	return b.String()
}

// mutatePath rewrites a path into another spelling of one of the path
// classes of routing.CanonicalPath: encoded unreserved characters, mixed
// case escapes, empty segments, ';' parameters, trailing dots, encoded
// separators.
func mutatePath(rng *rand.Rand, p string) string {
	switch rng.Intn(8) {
	case 0: // encode one unreserved character
		for i := 0; i < len(p); i++ {
			if c := p[i]; c >= 'a' && c <= 'z' {
				return p[:i] + fmt.Sprintf("%%%02x", c) + p[i+1:]
			}
		}
	case 1:
		return strings.Replace(p, "/", "//", 1+rng.Intn(2))
	case 2:
		return p + "%c3%a9"
	case 3:
		return p + ";jsessionid=1"
	case 4:
		return p + "."
	case 5:
		return strings.Replace(p, "/", "/%2e%2e/", 1)
	case 6:
		return "/" + strings.Repeat("x", 8200)
	case 7:
		return p + "/%zz"
	}
	return p
}
