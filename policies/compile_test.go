package policies

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/model"
)

const petsPolicy = `package policy

import data.gatehouse.config

# Callers must send the pet key; admins may delete.
default allow := false

allow if {
	input.attributes.request.http.headers["x-pet-key"] == "s3cret"
	input.attributes.request.http.method != "DELETE"
}

allow if {
	input.attributes.request.http.method == "DELETE"
	"admin" in input.gatehouse.token.claims.roles
}

reason := sprintf("pet %s of tenant %s", [input.gatehouse.path_params.id, config.tenant.id]) if allow

http_status := 401 if not input.attributes.request.http.headers["x-pet-key"]

headers := {"x-pet": input.gatehouse.path_params.id} if allow
`

func testConfig() *Config {
	return &Config{
		Revision: 42,
		Tenant:   Object[model.TenantSpec]{ID: "acme", Spec: model.TenantSpec{Name: "Acme", Status: model.TenantAvailable}},
		Services: []Object[model.ServiceSpec]{
			{ID: "pets", Name: "pets", Spec: model.ServiceSpec{URL: "http://pets.internal:8080"}},
			{ID: "admin", Name: "admin", Spec: model.ServiceSpec{URL: "https://admin.internal", Hosts: []string{"admin.example.com"}}},
		},
		APIs: []Object[model.APISpec]{
			{ID: "get-pet", Spec: model.APISpec{ServiceID: "pets", Method: "GET", Path: "/pets/{id}", PolicyID: "pets-rego"}},
			{ID: "del-pet", Spec: model.APISpec{ServiceID: "pets", Method: "DELETE", Path: "/pets/{id}", PolicyID: "pets-rego"}},
			{ID: "list-pets", Spec: model.APISpec{ServiceID: "pets", Method: "GET", Path: "/pets", PolicyID: "by-validators"}},
			{ID: "health", Spec: model.APISpec{ServiceID: "pets", Method: "*", Path: "/healthz", Public: true}},
			{ID: "admin-all", Spec: model.APISpec{ServiceID: "admin", Method: "*", Path: "/{rest...}", PolicyID: "deny-all"}},
		},
		Policies: []Object[model.PolicySpec]{
			{ID: "pets-rego", Name: "pets", Spec: model.PolicySpec{Language: model.LanguageRego, Definition: petsPolicy}},
			{ID: "by-validators", Name: "validators", Spec: model.PolicySpec{Language: model.LanguageValidators, Validators: []model.ValidatorConfig{
				{Name: "header", Conf: map[string]any{"name": "X-Tenant", "comparator": "one_of", "values": []any{"acme", "acme-eu"}}},
				{Name: "query", Conf: map[string]any{"name": "page", "comparator": "regex", "value": "^[0-9]+$"}},
			}}},
			{ID: "deny-all", Name: "deny", Spec: model.PolicySpec{Language: model.LanguageValidators, Validators: []model.ValidatorConfig{{Name: "false"}}}},
		},
		Scopes:   []Object[model.ScopeSpec]{{ID: "s1", Name: "pets:read"}},
		Gateways: []Object[model.GatewaySpec]{{ID: "edge", Name: "edge", Spec: model.GatewaySpec{Type: model.GatewayEnvoy}}, {ID: "pets-only", Name: "pets-only", Spec: model.GatewaySpec{Type: model.GatewayEnvoy, ServiceIDs: []string{"pets"}}}},
	}
}

func input(method, host, path string, headers map[string]any, claims map[string]any) map[string]any {
	in := map[string]any{"attributes": map[string]any{"request": map[string]any{"http": map[string]any{
		"method": method, "host": host, "path": path, "headers": headers}}}}
	_ = claims
	return in
}

func mustBuild(t *testing.T, cfg *Config, gw string, key *SigningKey) (*Compiled, []byte) {
	t.Helper()
	c, err := Compile(cfg, gw)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Skipped) > 0 {
		t.Fatalf("policies skipped: %v", c.Skipped)
	}
	raw, err := Build(c, cfg.Revision, key)
	if err != nil {
		t.Fatal(err)
	}
	return c, raw
}

func TestBundleIsSignedVerifiedAndDecides(t *testing.T) {
	ctx := context.Background()
	key, err := GenerateSigningKey("acme")
	if err != nil {
		t.Fatal(err)
	}
	_, raw := mustBuild(t, testConfig(), "edge", key)
	b, err := ReadBundle(raw, VerificationConfig(key.KeyID, key.PublicKeyPEM))
	if err != nil {
		t.Fatalf("read and verify: %v", err)
	}
	if b.Manifest.Revision != "42" || len(*b.Manifest.Roots) != 1 || (*b.Manifest.Roots)[0] != "gatehouse" ||
		b.Manifest.Metadata["tenant"] != "acme" || b.Manifest.Metadata["gateway"] != "edge" {
		t.Fatalf("manifest: %+v", b.Manifest)
	}
	if len(b.Signatures.Signatures) != 1 {
		t.Fatalf("signatures: %+v", b.Signatures)
	}
	eng, err := NewEngineFromModules(ctx, b.ParsedModules("gatehouse"), b.Data)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name                 string
		in                   map[string]any
		allowed              bool
		status               float64
		api, policy, reasonP string
	}{
		{"rego allows with key", input("GET", "pets.example.com", "/pets/7", map[string]any{"x-pet-key": "s3cret"}, nil), true, 200, "get-pet", "pets-rego", "pet 7 of tenant acme"},
		{"rego denies without key (401 from policy)", input("GET", "pets.example.com", "/pets/7", map[string]any{}, nil), false, 401, "get-pet", "pets-rego", "denied by policy pets-rego"},
		{"rego denies wrong key (401: no token)", input("GET", "x", "/pets/7", map[string]any{"x-pet-key": "no"}, nil), false, 401, "get-pet", "pets-rego", "denied by policy"},
		{"validators allow", input("GET", "x", "/pets?page=2", map[string]any{"x-tenant": "acme-eu"}, nil), true, 200, "list-pets", "by-validators", "allowed by policy"},
		{"validators deny on the first failing", input("GET", "x", "/pets?page=2", map[string]any{"x-tenant": "evil"}, nil), false, 401, "list-pets", "by-validators", "validator 1 of 2 (header X-Tenant one_of) failed"},
		{"validators deny on the second", input("GET", "x", "/pets?page=two", map[string]any{"x-tenant": "acme"}, nil), false, 401, "list-pets", "by-validators", "validator 2 of 2 (query page regex) failed"},
		{"public API", input("POST", "x", "/healthz", map[string]any{}, nil), true, 200, "health", "", "public API"},
		{"host-bound service", input("GET", "admin.example.com:443", "/pets/7", map[string]any{"x-pet-key": "s3cret"}, nil), false, 401, "admin-all", "deny-all", "validator 1 of 1 (false) failed"},
		{"unknown route", input("GET", "x", "/cats", map[string]any{}, nil), false, 404, "", "", "no API matches GET /cats"},
	}
	for _, c := range cases {
		d, err := eng.Decision(ctx, c.in)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		status, _ := d["http_status"].(json.Number).Float64()
		if d["allowed"] != c.allowed || status != c.status || d["api_id"] != c.api || d["policy_id"] != c.policy ||
			!strings.HasPrefix(d["reason"].(string), c.reasonP) {
			t.Errorf("%s: decision %v", c.name, d)
		}
	}
	d, _ := eng.Decision(ctx, input("GET", "x", "/pets/9", map[string]any{"x-pet-key": "s3cret"}, nil))
	if h := d["headers"].(map[string]any); h["x-pet"] != "9" {
		t.Errorf("policy headers not passed upstream: %v", d)
	}
}

func TestBundlesAreDeterministicAndPerGateway(t *testing.T) {
	key, _ := GenerateSigningKey("acme")
	c1, raw1 := mustBuild(t, testConfig(), "edge", key)
	c2, raw2 := mustBuild(t, testConfig(), "edge", key)
	if c1.Hash != c2.Hash || !bytes.Equal(raw1, raw2) {
		t.Fatal("the same configuration gave different bundles")
	}
	p1, _ := mustBuild(t, testConfig(), "pets-only", key)
	if p1.Hash == c1.Hash {
		t.Fatal("gateways with different services share a hash")
	}
	if _, ok := p1.Data["gatehouse"].(map[string]any)["config"].(map[string]any)["apis"].(map[string]any)["admin-all"]; ok {
		t.Fatal("a gateway bound to one service got another service's API")
	}
	// A change to the admin service leaves the pets-only gateway unchanged.
	cfg := testConfig()
	cfg.APIs[4].Spec.Path = "/admin/{rest...}"
	cfg.Revision = 43
	p2, _ := mustBuild(t, cfg, "pets-only", key)
	e2, _ := mustBuild(t, cfg, "edge", key)
	if p2.Hash != p1.Hash {
		t.Fatal("an unrelated change changed the pets-only gateway's content")
	}
	if e2.Hash == c1.Hash {
		t.Fatal("a change to one of its APIs did not change the edge gateway's content")
	}
	// Input order does not matter.
	cfg = testConfig()
	cfg.APIs[0], cfg.APIs[3] = cfg.APIs[3], cfg.APIs[0]
	cfg.Policies[0], cfg.Policies[2] = cfg.Policies[2], cfg.Policies[0]
	if c3, _ := mustBuild(t, cfg, "edge", key); c3.Hash != c1.Hash {
		t.Fatal("reordering the configuration changed the bundle")
	}
}

// rewriteTar returns the bundle with one file's content replaced.
func rewriteTar(t *testing.T, raw []byte, name string, edit func([]byte) []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	tw := tar.NewWriter(zw)
	found := false
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(tr)
		if strings.TrimPrefix(h.Name, "/") == name {
			body, found = edit(body), true
		}
		h.Size = int64(len(body))
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write(body)
	}
	tw.Close()
	zw.Close()
	if !found {
		t.Fatalf("no %s in the bundle", name)
	}
	return out.Bytes()
}

func TestTamperedBundleIsRefused(t *testing.T) {
	key, _ := GenerateSigningKey("acme")
	_, raw := mustBuild(t, testConfig(), "edge", key)
	vc := VerificationConfig(key.KeyID, key.PublicKeyPEM)
	for _, file := range []string{"data.json", "gatehouse/policies/p_deny_all_" + PolicyPackage("deny-all")[len("p_deny_all_"):] + ".rego", ".manifest"} {
		bad := rewriteTar(t, raw, file, func(b []byte) []byte {
			return bytes.Replace(b, []byte(`"acme"`), []byte(`"evil"`), 1)
		})
		if file != ".manifest" && bytes.Equal(bad, raw) {
			continue
		}
		if _, err := ReadBundle(bad, vc); err == nil {
			t.Errorf("a bundle with a modified %s was accepted", file)
		}
	}
	other, _ := GenerateSigningKey("acme")
	if _, err := ReadBundle(raw, VerificationConfig(key.KeyID, other.PublicKeyPEM)); err == nil {
		t.Error("a bundle verified with another key")
	}
	_, unsigned := mustBuild(t, testConfig(), "edge", nil)
	if _, err := ReadBundle(unsigned, vc); err == nil {
		t.Error("an unsigned bundle was accepted where a signature is required")
	}
}

func TestCheckerReportsPositions(t *testing.T) {
	ch, err := NewChecker()
	if err != nil {
		t.Fatal(err)
	}
	rego := func(src string) []Problem {
		return ch.Check("p1", &model.PolicySpec{Language: model.LanguageRego, Definition: src})
	}
	if p := rego(petsPolicy); len(p) != 0 {
		t.Fatalf("a valid policy has problems: %v", p)
	}
	cases := []struct {
		name, src  string
		line, col  int
		code, want string
	}{
		{"syntax", "package policy\n\nallow if {\n  input.x ==\n}\n", 5, 1, "rego_parse_error", ""},
		{"v0 syntax", "package policy\n\nallow { true }\n", 3, 1, "rego_parse_error", "if"},
		{"wrong package", "package authz\n\nallow := true\n", 1, 1, "rego_package_error", "must be \"policy\""},
		{"no allow", "package policy\n\ndeny := true\n", 1, 1, "rego_allow_missing", "allow"},
		{"unsafe variable", "package policy\n\nallow if {\n\tx == 1\n}\n", 4, 2, "rego_unsafe_var_error", "var x is unsafe"},
		{"undefined function", "package policy\n\nallow if {\n\tnot_a_function(1)\n}\n", 4, 2, "rego_type_error", "undefined function"},
		{"network builtin", "package policy\n\nallow if {\n\thttp.send({\"method\": \"get\", \"url\": \"http://x\"}).status_code == 200\n}\n", 4, 2, "rego_builtin_denied", "http.send is not available"},
	}
	for _, c := range cases {
		p := rego(c.src)
		if len(p) == 0 {
			t.Errorf("%s: no problem reported", c.name)
			continue
		}
		if p[0].Line != c.line || p[0].Column != c.col || p[0].Code != c.code || !strings.Contains(p[0].Message, c.want) {
			t.Errorf("%s: got %+v, want %d:%d %s %q", c.name, p[0], c.line, c.col, c.code, c.want)
		}
	}
	vals := func(vs ...model.ValidatorConfig) []Problem {
		return ch.Check("v1", &model.PolicySpec{Language: model.LanguageValidators, Validators: vs})
	}
	vcases := []struct {
		v     model.ValidatorConfig
		field string
	}{
		{model.ValidatorConfig{Name: "nope"}, "validators[0].name"},
		{model.ValidatorConfig{Name: "header", Conf: map[string]any{"comparator": "equals", "value": "x"}}, "validators[0].conf.name"},
		{model.ValidatorConfig{Name: "header", Conf: map[string]any{"name": "bad header", "value": "x"}}, "validators[0].conf.name"},
		{model.ValidatorConfig{Name: "header", Conf: map[string]any{"name": "h", "comparator": "like", "value": "x"}}, "validators[0].conf"},
		{model.ValidatorConfig{Name: "header", Conf: map[string]any{"name": "h", "comparator": "regex", "value": "("}}, "validators[0].conf"},
		{model.ValidatorConfig{Name: "header", Conf: map[string]any{"name": "h", "comparator": "one_of", "value": "x"}}, "validators[0].conf"},
		{model.ValidatorConfig{Name: "scope", Conf: map[string]any{"scopes": []any{}}}, "validators[0].conf.scopes"},
		{model.ValidatorConfig{Name: "true", Conf: map[string]any{"x": 1}}, "validators[0].conf"},
		{model.ValidatorConfig{Name: "method", Conf: map[string]any{"comparator": "present"}}, "validators[0].conf.comparator"},
	}
	for _, c := range vcases {
		p := vals(c.v)
		if len(p) == 0 || p[0].Field != c.field {
			t.Errorf("%+v: got %+v, want field %s", c.v, p, c.field)
		}
	}
	if p := vals(); len(p) != 1 || p[0].Field != "validators" {
		t.Errorf("empty validators: %+v", p)
	}
}

func TestValidatorsTranslateToWorkingRego(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig()
	vs := []model.ValidatorConfig{
		{Name: "method", Conf: map[string]any{"comparator": "one_of", "values": []any{"GET", "HEAD"}}},
		{Name: "path", Conf: map[string]any{"comparator": "prefix", "value": "/pets"}},
		{Name: "header", Conf: map[string]any{"name": "X-Debug", "comparator": "absent"}},
		{Name: "claim", Conf: map[string]any{"claim": "org.tier", "comparator": "equals", "value": "gold"}},
		{Name: "identity-context", Conf: map[string]any{"field": "age", "comparator": "gte", "value": 18.0}},
		{Name: "scope", Conf: map[string]any{"scopes": []any{"pets:read", "pets:list"}, "match": "any"}},
		{Name: "true"},
	}
	cfg.Policies[1].Spec.Validators = vs
	c, _ := mustBuild(t, cfg, "edge", nil)
	eng, err := NewEngine(ctx, c.Modules, c.Data)
	if err != nil {
		t.Fatal(err)
	}
	pq, err := eng.Prepare(ctx, PolicyPackagePrefix+PolicyPackage("by-validators"))
	if err != nil {
		t.Fatal(err)
	}
	good := func() map[string]any {
		in := input("GET", "x", "/pets", map[string]any{}, nil)
		in["gatehouse"] = map[string]any{"token": map[string]any{
			"claims": map[string]any{"org": map[string]any{"tier": "gold"}, "age": 30},
			"scopes": []any{"pets:list"}}}
		return in
	}
	res, err := EvalObject(ctx, pq, good())
	if err != nil || res["allow"] != true {
		t.Fatalf("all validators pass: %v %v", res, err)
	}
	breakers := []struct {
		name   string
		mutate func(map[string]any)
		reason string
	}{
		{"method", func(in map[string]any) { httpOf(in)["method"] = "POST" }, "validator 1 of 7"},
		{"path", func(in map[string]any) { httpOf(in)["path"] = "/cats" }, "validator 2 of 7"},
		{"header present", func(in map[string]any) { httpOf(in)["headers"] = map[string]any{"x-debug": "1"} }, "validator 3 of 7"},
		{"claim", func(in map[string]any) {
			tokenOf(in)["claims"].(map[string]any)["org"] = map[string]any{"tier": "free"}
		}, "validator 4 of 7"},
		{"missing claim", func(in map[string]any) { delete(tokenOf(in)["claims"].(map[string]any), "org") }, "validator 4 of 7"},
		{"numeric claim", func(in map[string]any) { tokenOf(in)["claims"].(map[string]any)["age"] = 12 }, "validator 5 of 7"},
		{"scopes", func(in map[string]any) { tokenOf(in)["scopes"] = []any{"other"} }, "validator 6 of 7"},
	}
	for _, b := range breakers {
		in := good()
		b.mutate(in)
		res, err := EvalObject(ctx, pq, in)
		if err != nil || res["allow"] != false || !strings.HasPrefix(res["reason"].(string), b.reason) {
			t.Errorf("%s: %v %v", b.name, res, err)
		}
	}
}

func httpOf(in map[string]any) map[string]any {
	return in["attributes"].(map[string]any)["request"].(map[string]any)["http"].(map[string]any)
}

func tokenOf(in map[string]any) map[string]any {
	return in["gatehouse"].(map[string]any)["token"].(map[string]any)
}
