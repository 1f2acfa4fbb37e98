package admin_test

import (
	"context"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/admin"
	"github.com/gatehouse-dev/gatehouse/internal/httpapi"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/store"
)

const goodRego = `package policy

default allow := false

allow if input.attributes.request.http.headers["x-key"] == "open-sesame"

reason := "no key" if not allow
`

func TestPoliciesCRUDAndValidation(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	base := "/api/admin/acme/policies"
	p := e.expect(e.do("POST", base, rootToken, map[string]any{"id": "keyed", "policy_name": "keyed", "definition": goodRego}), 201).json(t)
	if p["language"] != "rego" || p["type"] != "api" || p["definition"] != goodRego {
		t.Fatalf("created: %v", p)
	}
	v := e.expect(e.do("POST", base, rootToken, map[string]any{"policy_name": "v", "validators": []any{
		map[string]any{"name": "header", "conf": map[string]any{"name": "x-key", "value": "k"}}}}), 201).json(t)
	if v["language"] != "validators" {
		t.Fatalf("validators policy: %v", v)
	}
	e.expect(e.do("POST", base, rootToken, map[string]any{"policy_name": "keyed", "definition": goodRego}), 409)

	// A Rego error is a 400 with line, column and message; nothing is stored.
	before := e.snapshot()
	r := e.do("POST", base, rootToken, map[string]any{"policy_name": "broken", "definition": "package policy\n\nallow if {\n\tx == 1\n}\n"})
	if r.status != 400 || r.errorCode(t) != admin.CodeInvalidPolicy {
		t.Fatalf("broken policy: %d %s", r.status, r.body)
	}
	details := r.json(t)["details"].(map[string]any)
	first := details["errors"].([]any)[0].(map[string]any)
	if details["field"] != "definition" || first["line"] != float64(4) || first["column"] != float64(2) || !strings.Contains(first["message"].(string), "unsafe") {
		t.Fatalf("error details: %v", details)
	}
	e.requireUnchanged(t, before, "a rejected policy changed the store")
	for _, bad := range []struct {
		body  map[string]any
		field string
	}{
		{map[string]any{"policy_name": "x", "definition": "package other\nallow := true\n"}, "definition"},
		{map[string]any{"policy_name": "x", "validators": []any{map[string]any{"name": "telepathy"}}}, "validators[0].name"},
		{map[string]any{"policy_name": "x", "validators": []any{}}, "validators"},
		{map[string]any{"policy_name": "x", "language": "cue", "definition": "x"}, "language"},
		{map[string]any{"policy_name": "x", "definition": goodRego, "validators": []any{map[string]any{"name": "true"}}}, "language"},
		{map[string]any{"definition": goodRego}, "policy_name"},
	} {
		r := e.do("POST", base, rootToken, bad.body)
		if r.status != 400 || r.json(t)["details"].(map[string]any)["field"] != bad.field {
			t.Errorf("%v: %d %s", bad.body, r.status, r.body)
		}
	}

	// Update with If-Match, then a policy bound to an API cannot be deleted.
	etag := e.expect(e.do("GET", base+"/keyed", rootToken, nil), 200).header.Get("ETag")
	e.expect(e.do("PUT", base+"/keyed", rootToken, map[string]any{"policy_name": "keyed", "definition": goodRego, "dry_run": true}, "If-Match", etag), 200)
	e.expect(e.do("PUT", base+"/keyed", rootToken, map[string]any{"policy_name": "keyed", "definition": goodRego}, "If-Match", etag), 412)
	if _, err := e.store.Update(context.Background(), func(ctx context.Context, tx store.Tx) error {
		return tx.Create(ctx, &store.Object{Kind: model.KindAPI, TenantID: "acme", ID: "a1", Spec: []byte(`{"service_id":"s","method":"GET","path":"/","policy_id":"keyed"}`)})
	}); err != nil {
		t.Fatal(err)
	}
	r = e.do("DELETE", base+"/keyed", rootToken, nil)
	if r.status != 409 || r.errorCode(t) != httpapi.CodeInUse {
		t.Fatalf("delete in use: %d %s", r.status, r.body)
	}
	e.expect(e.do("DELETE", "/api/admin/acme/policies/"+v["id"].(string), rootToken, nil), 204)
	if l := e.expect(e.do("GET", base, rootToken, nil), 200).json(t); l["total"] != float64(1) {
		t.Fatalf("list: %v", l)
	}
}

func TestPolicyTestEndpoints(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	e.expect(e.do("POST", "/api/admin/acme/policies", rootToken, map[string]any{"id": "keyed", "policy_name": "keyed", "definition": goodRego}), 201)
	in := func(key string) map[string]any {
		return map[string]any{"attributes": map[string]any{"request": map[string]any{"http": map[string]any{
			"method": "GET", "path": "/x", "headers": map[string]any{"x-key": key}}}}}
	}
	ok := e.expect(e.do("POST", "/api/admin/acme/policies/keyed/test", rootToken, map[string]any{"input": in("open-sesame")}), 200).json(t)
	if ok["allowed"] != true || ok["result"].(map[string]any)["allow"] != true {
		t.Fatalf("allowed input: %v", ok)
	}
	no := e.expect(e.do("POST", "/api/admin/acme/policies/keyed/test", rootToken, map[string]any{"input": in("wrong")}), 200).json(t)
	expl := no["explanation"].(map[string]any)
	if no["allowed"] != false || no["result"].(map[string]any)["reason"] != "no key" {
		t.Fatalf("denied input: %v", no)
	}
	failed := expl["failed_expressions"].([]any)
	if len(failed) == 0 || !strings.Contains(failed[0].(string), `input.attributes.request.http.headers["x-key"] == "open-sesame"`) {
		t.Fatalf("explanation: %v", expl)
	}
	// Unsaved validators policy: per-validator outcome.
	res := e.expect(e.do("POST", "/api/admin/acme/policies/test", rootToken, map[string]any{
		"input": in("k"),
		"policy": map[string]any{"validators": []any{
			map[string]any{"name": "header", "conf": map[string]any{"name": "x-key", "value": "k"}},
			map[string]any{"name": "method", "conf": map[string]any{"value": "POST"}},
		}},
	}), 200).json(t)
	vals := res["explanation"].(map[string]any)["validators"].([]any)
	if res["allowed"] != false || len(vals) != 2 || vals[0].(map[string]any)["passed"] != true || vals[1].(map[string]any)["passed"] != false {
		t.Fatalf("validators explanation: %v", res)
	}
	if !strings.Contains(res["explanation"].(map[string]any)["module"].(string), "v.method(\"equals\", \"POST\")") {
		t.Fatalf("module: %v", res["explanation"])
	}
	r := e.do("POST", "/api/admin/acme/policies/test", rootToken, map[string]any{"input": in("k"), "policy": map[string]any{"definition": "package policy\nallow if {"}})
	if r.status != 400 || r.errorCode(t) != admin.CodeInvalidPolicy {
		t.Fatalf("invalid unsaved policy: %d %s", r.status, r.body)
	}
	e.expect(e.do("POST", "/api/admin/acme/policies/test", rootToken, map[string]any{"input": in("k")}), 400)
	e.expect(e.do("POST", "/api/admin/acme/policies/ghost/test", rootToken, map[string]any{"input": in("k")}), 404)
}
