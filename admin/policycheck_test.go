package admin_test

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-dev/gatehouse/admin"
	"github.com/gatehouse-dev/gatehouse/bundles"
	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	serverkeys "github.com/gatehouse-dev/gatehouse/oauth/keys"
	"github.com/gatehouse-dev/gatehouse/store/embedded"
)

// keyTests are goodRego's tests: one per outcome of the key.
const keyTests = `package policy_test

import data.policy

test_key_opens if policy.allow with input as {"attributes": {"request": {"http": {"headers": {"x-key": "open-sesame"}}}}}

test_no_key if not policy.allow with input as {"attributes": {"request": {"http": {"headers": {}}}}}
`

// usesKeyed refers to the policy "key-d" by id (not a Rego name).
const usesKeyed = `package policy

import data.gatehouse.policies["key-d"] as keyed

default allow := false

allow if keyed.allow
`

// problemAt is the single problem of a 400 policy answer: its field, code,
// line and message.
func problemAt(t *testing.T, r resp) (fieldName, code string, line float64, msg string) {
	t.Helper()
	if r.status != http.StatusBadRequest {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	details := r.json(t)["details"].(map[string]any)
	first := details["errors"].([]any)[0].(map[string]any)
	line, _ = first["line"].(float64)
	code, _ = first["code"].(string)
	return details["field"].(string), code, line, first["message"].(string)
}

func TestPolicySaveHoldsTheAuthoringRules(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	e.createTenant("beta")
	base := "/api/admin/acme/policies"
	post := func(body map[string]any) resp { return e.do("POST", base, rootToken, body) }
	e.expect(post(map[string]any{"id": "key-d", "policy_name": "key-d", "definition": goodRego, "tests": keyTests}), 201)
	got := e.expect(e.do("GET", base+"/key-d", rootToken, nil), 200).json(t)
	if got["tests"] != keyTests {
		t.Fatalf("tests not kept: %v", got)
	}
	e.expect(post(map[string]any{"id": "uses", "policy_name": "uses", "definition": usesKeyed}), 201)
	// The policy test endpoint evaluates the reference by id as gateways do.
	for key, want := range map[string]bool{"open-sesame": true, "nope": false} {
		res := e.expect(e.do("POST", base+"/uses/test", rootToken, map[string]any{"input": map[string]any{"attributes": map[string]any{
			"request": map[string]any{"http": map[string]any{"method": "GET", "path": "/x", "headers": map[string]any{"x-key": key}}}}}}), 200).json(t)
		if res["allowed"] != want {
			t.Errorf("test of uses with key %s: %v", key, res)
		}
	}

	before := e.snapshot()
	for _, c := range []struct {
		name              string
		body              map[string]any
		field, code, want string
		line              float64
		errorCode         string
	}{
		{"allow is a string", map[string]any{"policy_name": "s", "definition": "package policy\n\nallow := \"yes\"\n"},
			"definition", "rego_result_type", "allow must be a boolean", 3, admin.CodeInvalidPolicy},
		{"allow of unknown type", map[string]any{"policy_name": "s", "definition": "package policy\n\nallow := input.ok\n"},
			"definition", "rego_result_type", "it can be any", 3, admin.CodeInvalidPolicy},
		{"http_status is a string", map[string]any{"policy_name": "s", "definition": "package policy\n\nallow := false\nhttp_status := \"401\"\n"},
			"definition", "rego_result_type", "http_status must be a number", 4, admin.CodeInvalidPolicy},
		{"an unknown policy id", map[string]any{"policy_name": "s", "definition": "package policy\n\nallow if data.gatehouse.policies[\"key\"].allow\n"},
			"definition", "rego_policy_unknown", `no policy "key"`, 3, admin.CodeInvalidPolicy},
		{"a failing test", map[string]any{"policy_name": "s", "definition": goodRego,
			"tests": "package policy\n\ntest_ok if true\n\ntest_open if allow with input as {}\n"},
			"tests", "test_failed", "test_open failed", 5, admin.CodeTestFailed},
		{"an erroring test", map[string]any{"policy_name": "s", "definition": goodRego,
			"tests": "package policy_test\n\nx := 1 if input.a\nx := 2 if input.a\n\ntest_conflict if data.policy_test.x with input as {\"a\": true}\n"},
			"tests", "test_error", "test_conflict errored", 6, admin.CodeTestFailed},
		{"tests that do not compile", map[string]any{"policy_name": "s", "definition": goodRego, "tests": "package policy_test\n\ntest_x if nope\n"},
			"tests", "rego_unsafe_var_error", "nope", 3, admin.CodeInvalidPolicy},
		{"tests over the limit", map[string]any{"policy_name": "s", "definition": goodRego, "tests": strings.Repeat("#", 64<<10+1)},
			"tests", "", "at most 64 KiB", 0, admin.CodeLimitExceeded},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := post(c.body)
			if code := r.errorCode(t); code != c.errorCode {
				t.Fatalf("error_code %s: %s", code, r.body)
			}
			if c.errorCode == admin.CodeLimitExceeded {
				if d := r.json(t)["details"].(map[string]any); d["field"] != c.field || !strings.Contains(r.json(t)["error"].(string), c.want) {
					t.Fatalf("%s", r.body)
				}
				return
			}
			f, code, line, msg := problemAt(t, r)
			if f != c.field || code != c.code || line != c.line || !strings.Contains(msg, c.want) {
				t.Errorf("%s %s %v %q: %s", f, code, line, msg, r.body)
			}
		})
	}
	e.requireUnchanged(t, before, "a refused policy was written")

	// A cycle: key-d may not come to use "uses", which uses it.
	r := e.do("PUT", base+"/key-d", rootToken, map[string]any{"policy_name": "key-d",
		"definition": "package policy\n\ndefault allow := false\n\nallow if data.gatehouse.policies[\"uses\"].allow\n"})
	if f, code, line, msg := problemAt(t, r); f != "definition" || code != "rego_policy_cycle" || line != 5 || !strings.Contains(msg, "key-d → uses → key-d") {
		t.Errorf("cycle: %s %s %v %s", f, code, line, msg)
	}
	// PATCH runs the tests too: a patch that breaks them is refused.
	r = e.do("PATCH", base+"/key-d", rootToken, map[string]any{"definition": strings.Replace(goodRego, "open-sesame", "changed", 1)},
		"Content-Type", "application/merge-patch+json")
	if f, code, _, msg := problemAt(t, r); f != "tests" || code != "test_failed" || !strings.Contains(msg, "test_key_opens") {
		t.Errorf("patch: %s %s %s", f, code, msg)
	}

	// Tenant isolation: beta cannot reach acme's policies by id.
	r = e.do("POST", "/api/admin/beta/policies", rootToken, map[string]any{"policy_name": "spy", "definition": usesKeyed})
	if f, code, _, _ := problemAt(t, r); f != "definition" || code != "rego_policy_unknown" {
		t.Errorf("cross-tenant reference: %s %s", f, code)
	}
	// A policy another uses cannot be deleted (TestPolicyUsedByIDCannotBeDeleted),
	// and a save that names an id the tenant does not have is refused at
	// its line.
	e.expect(e.do("DELETE", base+"/key-d", rootToken, nil), 409)
	r = e.do("PUT", base+"/uses", rootToken, map[string]any{"policy_name": "uses",
		"definition": strings.ReplaceAll(usesKeyed, `"key-d"`, `"key-gone"`)})
	if _, code, line, _ := problemAt(t, r); code != "rego_policy_unknown" || line != 3 {
		t.Errorf("an unknown id: %s %v", code, line)
	}
}

func TestConfigurationImportChecksPolicyReferences(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	doc := func(policies ...map[string]any) map[string]any {
		return map[string]any{"version": 1, "tenant": map[string]any{"name": "acme"}, "policies": policies}
	}
	keyed := map[string]any{"id": "key-d", "policy_name": "key-d", "definition": goodRego, "tests": keyTests}
	uses := map[string]any{"id": "uses", "policy_name": "uses", "definition": usesKeyed}
	// The document's policies refer to each other, in either order.
	e.expect(e.importConfig("acme", "", doc(uses, keyed)), 200)
	exported := map[string]any{}
	if err := json.Unmarshal(e.exportConfig("acme"), &exported); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(exported["policies"]) == "" || !strings.Contains(string(e.exportConfig("acme")), `"tests":`) {
		t.Fatalf("export lacks the tests: %s", e.exportConfig("acme"))
	}
	// Without key-d, uses names an unknown policy (replace mode).
	r := e.importConfig("acme", "", doc(uses))
	if f, code, line, _ := problemAt(t, r); f != "policies[0].definition" || code != "rego_policy_unknown" || line != 3 {
		t.Errorf("unknown: %s %s %v %s", f, code, line, r.body)
	}
	// In merge mode the stored key-d counts.
	e.expect(e.importConfig("acme", "merge", doc(uses)), 200)
	// A cycle within the document.
	loop := map[string]any{"id": "key-d", "policy_name": "key-d", "definition": "package policy\n\nallow if data.gatehouse.policies.uses.allow\n"}
	r = e.importConfig("acme", "", doc(uses, loop))
	if f, code, _, _ := problemAt(t, r); !strings.HasPrefix(f, "policies[") || code != "rego_policy_cycle" {
		t.Errorf("cycle: %s %s %s", f, code, r.body)
	}
}

func TestPolicyCheckEndpoint(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	e.createTenant("beta")
	e.expect(e.do("POST", "/api/admin/acme/policies", rootToken, map[string]any{"id": "key-d", "policy_name": "key-d", "definition": goodRego}), 201)
	check := func(tid string, body map[string]any) map[string]any {
		t.Helper()
		return e.expect(e.do("POST", "/api/admin/"+tid+"/policies/check", rootToken, body), 200).json(t)
	}
	problems := func(res map[string]any) []map[string]any {
		var out []map[string]any
		for _, p := range res["problems"].([]any) {
			out = append(out, p.(map[string]any))
		}
		return out
	}
	before := e.snapshot()

	// A good policy with passing tests: no problem, each test's outcome.
	res := check("acme", map[string]any{"definition": usesKeyed,
		"tests": "package policy\n\ntest_open if allow with input as {\"attributes\": {\"request\": {\"http\": {\"headers\": {\"x-key\": \"open-sesame\"}}}}}\n"})
	if len(problems(res)) != 0 || len(res["tests"].([]any)) != 1 || res["tests"].([]any)[0].(map[string]any)["outcome"] != "pass" {
		t.Fatalf("good policy: %v", res)
	}
	for _, c := range []struct {
		name, tid string
		body      map[string]any
		field     string
		line      any
		code      string
	}{
		{"syntax error", "acme", map[string]any{"definition": "package policy\n\nallow if {\n\tinput.x ==\n}\n"}, "definition", float64(5), "rego_parse_error"},
		{"allow of a string", "acme", map[string]any{"definition": "package policy\n\nallow := \"yes\"\n"}, "definition", float64(3), "rego_result_type"},
		{"unknown policy", "acme", map[string]any{"definition": "package policy\n\nallow if data.gatehouse.policies[\"nope\"].allow\n"}, "definition", float64(3), "rego_policy_unknown"},
		{"another tenant's policy", "beta", map[string]any{"definition": usesKeyed}, "definition", float64(3), "rego_policy_unknown"},
		{"a failing test", "acme", map[string]any{"definition": goodRego, "tests": "package policy\n\n\ntest_x if allow\n"}, "tests", float64(4), "test_failed"},
		{"a bad validator", "acme", map[string]any{"validators": []any{map[string]any{"name": "telepathy"}}}, "validators[0].name", nil, "invalid_validator"},
		{"a bad field", "acme", map[string]any{"definition": goodRego, "language": "cue"}, "language", nil, "invalid_field"},
		{"a bad id", "acme", map[string]any{"id": "no spaces", "definition": goodRego}, "id", nil, "invalid_field"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ps := problems(check(c.tid, c.body))
			if len(ps) == 0 {
				t.Fatal("no problem")
			}
			p := ps[0]
			if p["field"] != c.field || p["line"] != c.line || p["code"] != c.code || p["message"] == "" {
				t.Errorf("%v", ps)
			}
			for _, k := range []string{"field", "line", "column", "code", "message"} {
				if _, ok := p[k]; !ok {
					t.Errorf("problem lacks %s: %v", k, p)
				}
			}
		})
	}
	// An id names the policy the body would be: key-d replaced by a body
	// that refers to itself is a cycle.
	ps := problems(check("acme", map[string]any{"id": "key-d", "definition": "package policy\n\nallow := true\n\nr := data.gatehouse.policies[\"key-d\"].reason\n"}))
	if len(ps) == 0 || ps[0]["code"] != "rego_policy_cycle" {
		t.Errorf("self reference: %v", ps)
	}
	e.requireUnchanged(t, before, "the check wrote")

	// Bodies it cannot decode are 400s, like a save's.
	e.expect(e.do("POST", "/api/admin/acme/policies/check", rootToken, map[string]any{"definition": goodRego, "nope": 1}), 400)
	// A tenant's credential cannot check in another tenant.
	e.expect(e.do("POST", "/api/admin/beta/policies/check", e.credential("acme"), map[string]any{"definition": goodRego}), 403)
}

// benchTenant is an admin API over HTTP on the embedded store with tenant
// acme: 20 policies (key-d with a tests module), 10 services on their own
// hosts and 40 APIs; must calls it and wants a status.
func benchTenant(b *testing.B) (must func(method, path string, body any, status int) []byte) {
	ctx := b.Context()
	st, err := embedded.Open(ctx, b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	box := testkit.SecretBox(b)
	keys := bundles.NewKeyStore(st, box)
	mgr := bundles.NewManager(st, keys, log)
	api, err := admin.New(admin.Options{Store: st, BootstrapToken: rootToken, PublicURL: "https://gh.example", Logger: log,
		Registry: prometheus.NewRegistry(), Bundles: mgr, Keys: keys, ServerKeys: serverkeys.NewManager(st, box)})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(api.Handler())
	b.Cleanup(srv.Close)
	client := testkit.NewHTTPClient(srv.URL, rootToken)
	must = func(method, path string, body any, status int) []byte {
		r, err := client.Send(ctx, method, path, body)
		if err != nil || r.Status != status {
			b.Fatalf("%s %s: %v %d %s", method, path, err, r.Status, r.Body)
		}
		return r.Body
	}
	must("POST", "/api/system/tenants", map[string]any{"id": "acme", "name": "acme"}, 201)
	must("POST", "/api/admin/acme/policies", map[string]any{"id": "key-d", "policy_name": "key-d", "definition": goodRego, "tests": keyTests}, 201)
	for i := range 19 {
		must("POST", "/api/admin/acme/policies", map[string]any{"id": fmt.Sprintf("p%d", i), "policy_name": fmt.Sprintf("p%d", i), "definition": goodRego}, 201)
	}
	for i := range 10 {
		must("POST", "/api/admin/acme/services", map[string]any{"id": fmt.Sprintf("s%d", i), "name": fmt.Sprintf("s%d", i),
			"url": "http://127.0.0.1:9", "hosts": []string{fmt.Sprintf("s%d.example.com", i)}}, 201)
		for j := range 4 {
			must("POST", "/api/admin/acme/apis", map[string]any{"id": fmt.Sprintf("a%d-%d", i, j), "service_id": fmt.Sprintf("s%d", i),
				"method": "GET", "path": fmt.Sprintf("/r%d/{id}", j), "policy_id": fmt.Sprintf("p%d", j)}, 201)
		}
	}
	return must
}

// BenchmarkPolicyCheck is the console's "errors as you type" round trip:
// POST …/policies/check over HTTP of a normal policy (one that refers to
// another by id) with its tests, in a tenant of 20 policies, 10 services
// and 40 APIs. Its target is 100 ms a check (docs/bundles.md, "Authoring
// rules").
func BenchmarkPolicyCheck(b *testing.B) {
	must := benchTenant(b)
	body := map[string]any{"id": "uses", "definition": usesKeyed,
		"tests": "package policy\n\ntest_open if allow with input as {\"attributes\": {\"request\": {\"http\": {\"headers\": {\"x-key\": \"open-sesame\"}}}}}\n\n" +
			"test_closed if not allow with input as {}\n"}
	b.ResetTimer()
	for b.Loop() {
		var res struct {
			Problems []any `json:"problems"`
			Tests    []any `json:"tests"`
		}
		if err := json.Unmarshal(must("POST", "/api/admin/acme/policies/check", body, 200), &res); err != nil || len(res.Problems) != 0 || len(res.Tests) != 2 {
			b.Fatalf("%v %+v", err, res)
		}
	}
}

// A policy another uses by id cannot be deleted while it is used: the
// user would stop evaluating it (409 in_use naming the users).
func TestPolicyUsedByIDCannotBeDeleted(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	base := "/api/admin/acme/policies"
	e.expect(e.do("POST", base, rootToken, map[string]any{"id": "key-check", "policy_name": "key-check",
		"definition": "package policy\n\ndefault allow := false\n\nallow if input.attributes.request.http.headers[\"x-key\"] == \"k\"\n"}), 201)
	e.expect(e.do("POST", base, rootToken, map[string]any{"id": "uses-it", "policy_name": "uses-it",
		"definition": "package policy\n\nallow if data.gatehouse.policies[\"key-check\"].allow\n"}), 201)
	before := e.snapshot()
	r := e.do("DELETE", base+"/key-check", rootToken, nil)
	if r.status != 409 || r.errorCode(t) != "in_use" || !strings.Contains(string(r.body), "uses-it") {
		t.Fatalf("deleting a used policy: %d %s", r.status, r.body)
	}
	e.requireUnchanged(t, before, "a refused delete changed the store")
	e.expect(e.do("DELETE", base+"/uses-it", rootToken, nil), 204)
	e.expect(e.do("DELETE", base+"/key-check", rootToken, nil), 204)
}
