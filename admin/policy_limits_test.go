package admin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/admin"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/policies"
	"github.com/gatehouse-dev/gatehouse/store"
)

// heavyRego runs for hours and takes terabytes unless its evaluation is
// cancelled.
const heavyRego = `package policy

default allow := false

allow if count([x | some x in numbers.range(1, 1000000000000)]) > 0
`

func errDetails(t *testing.T, r resp) map[string]any {
	t.Helper()
	return r.json(t)["details"].(map[string]any)
}

// seedPolicies stores n validators policies of tenant tid directly.
func (e *env) seedPolicies(tid string, n int) {
	e.t.Helper()
	if _, err := e.store.Update(context.Background(), func(ctx context.Context, tx store.Tx) error {
		for i := range n {
			id := fmt.Sprintf("seed-%03d", i)
			if err := tx.Create(ctx, &store.Object{Kind: model.KindPolicy, TenantID: tid, ID: id, Name: id,
				Spec: []byte(`{"language":"validators","validators":[{"name":"true"}]}`)}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		e.t.Fatal(err)
	}
}

func TestPolicyLimitsAtSave(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	base := "/api/admin/acme/policies"
	before := e.snapshot()
	trueValidators := func(n int) []any {
		vs := make([]any, n)
		for i := range vs {
			vs[i] = map[string]any{"name": "true"}
		}
		return vs
	}
	for _, c := range []struct {
		name  string
		body  map[string]any
		code  string
		field string
	}{
		{"definition over 64 KiB", map[string]any{"policy_name": "big", "definition": goodRego + strings.Repeat("#", policies.MaxDefinitionBytes)},
			admin.CodeLimitExceeded, "definition"},
		{"too many validators", map[string]any{"policy_name": "many", "validators": trueValidators(policies.MaxValidators + 1)},
			admin.CodeLimitExceeded, "validators"},
		{"http.send", map[string]any{"policy_name": "net", "definition": "package policy\n\nallow if {\n\thttp.send({\"method\": \"get\", \"url\": \"http://x\"}).status_code == 200\n}\n"},
			admin.CodeInvalidPolicy, "definition"},
		{"opa.runtime", map[string]any{"policy_name": "env", "definition": "package policy\n\nallow if opa.runtime().env.X == \"1\"\n"},
			admin.CodeInvalidPolicy, "definition"},
	} {
		r := e.do("POST", base, rootToken, c.body)
		if r.status != 400 || r.errorCode(t) != c.code || errDetails(t, r)["field"] != c.field {
			t.Errorf("%s: %d %s", c.name, r.status, r.body)
		}
		if c.code == admin.CodeInvalidPolicy {
			p := errDetails(t, r)["errors"].([]any)[0].(map[string]any)
			if p["code"] != "rego_builtin_denied" || p["line"] == nil || p["column"] == nil {
				t.Errorf("%s: problem %v", c.name, p)
			}
		}
	}
	// The same limits on the unsaved-policy test endpoint.
	r := e.do("POST", base+"/test", rootToken, map[string]any{"input": map[string]any{}, "policy": map[string]any{"validators": trueValidators(policies.MaxValidators + 1)}})
	if r.status != 400 || r.errorCode(t) != admin.CodeLimitExceeded || errDetails(t, r)["field"] != "policy.validators" {
		t.Errorf("test endpoint: %d %s", r.status, r.body)
	}
	e.requireUnchanged(t, before, "a refused policy changed the store")
	e.expect(e.do("POST", base, rootToken, map[string]any{"policy_name": "max", "validators": trueValidators(policies.MaxValidators)}), 201)

	// Policies per tenant: creating one more than the limit is refused.
	e.seedPolicies("acme", policies.MaxPoliciesPerTenant-1)
	before = e.snapshot()
	r = e.do("POST", base, rootToken, map[string]any{"id": "one-too-many", "policy_name": "one too many", "definition": goodRego})
	if r.status != 400 || r.errorCode(t) != admin.CodeLimitExceeded || errDetails(t, r)["field"] != "policies" ||
		errDetails(t, r)["limit"] != float64(policies.MaxPoliciesPerTenant) {
		t.Fatalf("policy over the tenant limit: %d %s", r.status, r.body)
	}
	e.requireUnchanged(t, before, "a refused policy changed the store")
	e.expect(e.do("GET", base+"/one-too-many", rootToken, nil), 404)
	// Other tenants are not affected; freeing one makes room.
	e.createTenant("other")
	e.expect(e.do("POST", "/api/admin/other/policies", rootToken, map[string]any{"policy_name": "p", "definition": goodRego}), 201)
	e.expect(e.do("DELETE", base+"/seed-000", rootToken, nil), 204)
	e.expect(e.do("POST", base, rootToken, map[string]any{"id": "one-too-many", "policy_name": "one too many", "definition": goodRego}), 201)

	// A configuration import is held to the same limit: a merge counts
	// the stored policies it keeps; a document alone may not exceed it.
	var doc map[string]any
	if err := json.Unmarshal(e.exportConfig("acme"), &doc); err != nil {
		t.Fatal(err)
	}
	before = e.snapshot()
	doc["policies"] = []any{map[string]any{"id": "imported", "policy_name": "imported", "language": "rego", "definition": goodRego}}
	r = e.importConfig("acme", "merge", doc)
	if r.status != 400 || r.errorCode(t) != admin.CodeLimitExceeded || errDetails(t, r)["field"] != "policies" {
		t.Fatalf("merge over the limit: %d %s", r.status, r.body)
	}
	many := make([]any, policies.MaxPoliciesPerTenant+1)
	for i := range many {
		many[i] = map[string]any{"id": fmt.Sprintf("p%d", i), "policy_name": fmt.Sprintf("p%d", i), "validators": []any{map[string]any{"name": "true"}}}
	}
	doc["policies"] = many
	r = e.importConfig("acme", "", doc)
	if r.status != 400 || r.errorCode(t) != admin.CodeLimitExceeded || errDetails(t, r)["field"] != "policies" {
		t.Fatalf("replace over the limit: %d %s", r.status, r.body)
	}
	e.requireUnchanged(t, before, "refused imports changed the store")
}

func TestGatewayPolicyTimeout(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	base := "/api/admin/acme/gateways"
	gw := e.expect(e.do("POST", base, rootToken, map[string]any{"id": "edge", "name": "edge"}), 201).json(t)
	if gw["policy_timeout_ms"] != float64(model.DefaultPolicyTimeoutMS) {
		t.Fatalf("default policy_timeout_ms: %v", gw["policy_timeout_ms"])
	}
	for _, bad := range []any{-1, model.MaxPolicyTimeoutMS + 1, "50ms"} {
		r := e.do("POST", base, rootToken, map[string]any{"id": "bad", "name": "bad", "policy_timeout_ms": bad})
		if r.status != 400 || errDetails(t, r)["field"] != "policy_timeout_ms" {
			t.Errorf("policy_timeout_ms %v: %d %s", bad, r.status, r.body)
		}
	}
	etag := e.expect(e.do("GET", base+"/edge", rootToken, nil), 200).header.Get("ETag")
	up := e.expect(e.do("PUT", base+"/edge", rootToken, map[string]any{"name": "edge", "policy_timeout_ms": 120}, "If-Match", etag), 200).json(t)
	if up["policy_timeout_ms"] != float64(120) {
		t.Fatalf("updated policy_timeout_ms: %v", up["policy_timeout_ms"])
	}
	// The authorizer reads it from the bundle.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if b := e.bundles.Get("acme", "edge"); b != nil {
			cfg, err := policies.ParseBundleConfig(b.Compiled.Data)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Gateway.PolicyTimeoutMS == 120 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the bundle never carried policy_timeout_ms 120")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// And the configuration document carries it.
	if !strings.Contains(string(e.exportConfig("acme")), `"policy_timeout_ms":120`) {
		t.Fatal("export lacks policy_timeout_ms")
	}
}

func TestPolicyTestDeadlineAndBoundedExplanation(t *testing.T) {
	e := newEnvWith(t, func(o *admin.Options) { o.PolicyTestTimeout = 100 * time.Millisecond })
	e.createTenant("acme")
	e.expect(e.do("POST", "/api/admin/acme/policies", rootToken, map[string]any{"id": "heavy", "policy_name": "heavy", "definition": heavyRego}), 201)
	for _, path := range []string{"/api/admin/acme/policies/heavy/test", "/api/admin/acme/policies/test"} {
		body := map[string]any{"input": map[string]any{}}
		if strings.HasSuffix(path, "/policies/test") {
			body["policy"] = map[string]any{"definition": heavyRego}
		}
		r := e.do("POST", path, rootToken, body)
		if r.status != 400 || r.errorCode(t) != admin.CodeEvaluationTimeout {
			t.Fatalf("%s: %d %s", path, r.status, r.body)
		}
		d := errDetails(t, r)
		if d["field"] != "definition" || d["timeout_ms"] != float64(100) || !strings.Contains(r.json(t)["error"].(string), "did not finish evaluating within 100ms") {
			t.Fatalf("%s: %s", path, r.body)
		}
	}

	// Many failing expressions: the explanation stops at its bound, marked.
	var b strings.Builder
	b.WriteString("package policy\n\ndefault allow := false\n\n")
	for i := range 3 * policies.MaxExplainLines {
		fmt.Fprintf(&b, "allow if input.n == %d\n", i)
	}
	res := e.expect(e.do("POST", "/api/admin/acme/policies/test", rootToken, map[string]any{
		"input": map[string]any{"n": -1}, "policy": map[string]any{"definition": b.String()}}), 200).json(t)
	expl := res["explanation"].(map[string]any)
	if res["allowed"] != false || expl["truncated"] != true || len(expl["failed_expressions"].([]any)) != policies.MaxExplainLines {
		t.Fatalf("explanation: truncated %v, %d lines", expl["truncated"], len(expl["failed_expressions"].([]any)))
	}
	small := e.expect(e.do("POST", "/api/admin/acme/policies/test", rootToken, map[string]any{
		"input": map[string]any{}, "policy": map[string]any{"definition": goodRego}}), 200).json(t)
	if small["explanation"].(map[string]any)["truncated"] != false {
		t.Fatalf("small explanation: %v", small["explanation"])
	}
}

func TestControlPlaneServesOtherTenantsDuringAHeavyPolicyTest(t *testing.T) {
	e := newEnv(t) // the default test deadline (2 s)
	e.createTenant("heavy")
	e.createTenant("light")
	heavyTok, lightTok := e.credential("heavy"), e.credential("light")

	heavyDone := make(chan resp, 1)
	body, _ := json.Marshal(map[string]any{"input": map[string]any{}, "policy": map[string]any{"definition": heavyRego}})
	go func() { // no t.Fatal off the test goroutine: failures come back as status 0
		req, _ := http.NewRequest("POST", e.srv.URL+"/api/admin/heavy/policies/test", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+heavyTok)
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			heavyDone <- resp{body: []byte(err.Error())}
			return
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		heavyDone <- resp{status: res.StatusCode, header: res.Header, body: b}
	}()
	// Wait until the heavy test holds its slot: it is being evaluated.
	deadline := time.Now().Add(20 * time.Second)
	for e.api.PolicyTestsRunning() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the heavy policy test never started")
		}
		time.Sleep(time.Millisecond)
	}

	// Meanwhile the other tenant configures a gateway, tests a policy and
	// gets its bundle rebuilt.
	lb := "/api/admin/light"
	e.expect(e.do("POST", lb+"/policies", lightTok, map[string]any{"id": "keyed", "policy_name": "keyed", "definition": goodRego}), 201)
	e.expect(e.do("POST", lb+"/services", lightTok, map[string]any{"id": "pets", "name": "pets", "url": "http://pets.internal"}), 201)
	e.expect(e.do("POST", lb+"/apis", lightTok, map[string]any{"id": "get", "service_id": "pets", "method": "GET", "path": "/pets", "policy_id": "keyed"}), 201)
	e.expect(e.do("POST", lb+"/gateways", lightTok, map[string]any{"id": "edge", "name": "edge"}), 201)
	tested := e.expect(e.do("POST", lb+"/policies/keyed/test", lightTok, map[string]any{"input": map[string]any{
		"attributes": map[string]any{"request": map[string]any{"http": map[string]any{"headers": map[string]any{"x-key": "open-sesame"}}}}}}), 200).json(t)
	if tested["allowed"] != true {
		t.Fatalf("the light tenant's policy test: %v", tested)
	}
	e.waitBundles("light", "edge")
	if b := e.bundles.Get("light", "edge"); b.Compiled.APIs["get"].Spec.PolicyID != "keyed" {
		t.Fatalf("light bundle: %+v", b.Compiled.APIs)
	}
	select {
	case <-heavyDone:
		t.Log("the heavy test finished before the light tenant's work did")
	default:
		t.Log("the light tenant's work finished while the heavy test ran")
	}

	// The heavy test ends at its deadline with a clear error.
	var r resp
	select {
	case r = <-heavyDone:
	case <-time.After(60 * time.Second):
		t.Fatal("the heavy policy test was not stopped at its deadline")
	}
	if r.status != 400 || r.errorCode(t) != admin.CodeEvaluationTimeout || errDetails(t, r)["timeout_ms"] != float64(policies.DefaultTestTimeout.Milliseconds()) {
		t.Fatalf("heavy test: %d %s", r.status, r.body)
	}
	// And the server still serves the heavy tenant afterwards.
	e.expect(e.do("GET", "/api/admin/heavy/policies", heavyTok, nil), 200)
}

func TestPolicyTestCompilesWhatThePolicyNeeds(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	e.expect(e.do("POST", "/api/admin/acme/policies", rootToken, map[string]any{"id": "base", "policy_name": "base", "definition": goodRego}), 201)
	// A stored policy that OPA cannot compile (it was never checked): it
	// is not the one tested, nor referred to, so it is not compiled.
	if _, err := e.store.Update(context.Background(), func(ctx context.Context, tx store.Tx) error {
		spec, _ := json.Marshal(model.PolicySpec{Language: model.LanguageRego, Definition: "package policy\n\nallow if not_a_function(1)\n"})
		return tx.Create(ctx, &store.Object{Kind: model.KindPolicy, TenantID: "acme", ID: "broken", Name: "broken", Spec: spec})
	}); err != nil {
		t.Fatal(err)
	}
	calling := "package policy\n\ndefault allow := false\n\nallow if data.gatehouse.policies." + policies.PolicyPackage("base") + ".allow\n"
	in := map[string]any{"attributes": map[string]any{"request": map[string]any{"http": map[string]any{"headers": map[string]any{"x-key": "open-sesame"}}}}}
	res := e.expect(e.do("POST", "/api/admin/acme/policies/test", rootToken, map[string]any{"input": in, "policy": map[string]any{"definition": calling}}), 200).json(t)
	if res["allowed"] != true {
		t.Fatalf("a policy calling another: %v", res)
	}
	e.expect(e.do("POST", "/api/admin/acme/policies/base/test", rootToken, map[string]any{"input": in}), 200)
}
