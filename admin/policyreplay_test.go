package admin_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/httpapi"
	"github.com/gatehouse-dev/gatehouse/internal/pgtest"
	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	"github.com/gatehouse-dev/gatehouse/internal/testkit/authzkit"
	"github.com/gatehouse-dev/gatehouse/policies"
	"github.com/gatehouse-dev/gatehouse/store"
)

// The replay endpoint on a real store, with decisions logged by the
// gateway's own authorizer (authzkit) into the store's decision log, as
// gatehouse serve's in-process authorizer writes them.

// replayKeyed is the saved policy: requests with the key are allowed.
const replayKeyed = `package policy

default allow := false

allow if input.attributes.request.http.headers["x-key"] == "open-sesame"

reason := "no key" if not allow
`

// replayDraft also takes a second key and refuses DELETE.
const replayDraft = `package policy

default allow := false

allow if {
	input.attributes.request.http.headers["x-key"] in {"open-sesame", "new-key"}
	input.attributes.request.http.method != "DELETE"
}
`

// replayTenant makes a tenant with the pets service (get-pet and
// del-pet bound to keyed), the toys service (get-toy bound to open) and
// the gateways, and returns the tenant's credential.
func (e *env) replayTenant(tid string, gateways ...string) string {
	e.t.Helper()
	e.createTenant(tid)
	tok := e.credential(tid)
	base := "/api/admin/" + tid
	e.expect(e.do("POST", base+"/policies", tok, map[string]any{"id": "keyed", "policy_name": "keyed", "definition": replayKeyed}), 201)
	e.expect(e.do("POST", base+"/policies", tok, map[string]any{"id": "open", "policy_name": "open", "definition": "package policy\n\nallow := true\n"}), 201)
	e.expect(e.do("POST", base+"/services", tok, map[string]any{"id": "pets", "name": "pets", "url": "http://pets", "hosts": []string{"pets.example.com"}}), 201)
	e.expect(e.do("POST", base+"/services", tok, map[string]any{"id": "toys", "name": "toys", "url": "http://toys", "hosts": []string{"toys.example.com"}}), 201)
	for _, a := range []map[string]any{
		{"id": "get-pet", "service_id": "pets", "method": "GET", "path": "/pets/{id}", "policy_id": "keyed"},
		{"id": "del-pet", "service_id": "pets", "method": "DELETE", "path": "/pets/{id}", "policy_id": "keyed"},
		{"id": "get-toy", "service_id": "toys", "method": "GET", "path": "/toys/{id}", "policy_id": "open"},
	} {
		e.expect(e.do("POST", base+"/apis", tok, a), 201)
	}
	for _, gw := range gateways {
		e.expect(e.do("POST", base+"/gateways", rootToken, map[string]any{"id": gw, "name": gw}), 201)
	}
	return tok
}

// authorizer is an in-process authorizer of the gateway's current bundle
// (once it binds the pets APIs to keyed) logging into the store.
func (e *env) authorizer(tid, gw string) *authzkit.Authorizer {
	e.t.Helper()
	var compiled *policies.Compiled
	testkit.Eventually(e.t, 10*time.Second, func() error {
		b := e.bundles.Get(tid, gw)
		if b == nil {
			return testkit.Check(false, "no bundle yet")
		}
		cfg, err := policies.ParseBundleConfig(b.Compiled.Data)
		if err != nil {
			return err
		}
		compiled = b.Compiled
		return testkit.Check(cfg.APIs["del-pet"].PolicyID == "keyed" && cfg.APIs["get-toy"].PolicyID == "open", "the bundle lacks the APIs")
	}, "the bundle of "+tid+"/"+gw)
	return authzkit.New(e.t, compiled, authzkit.Tokens{"alice": {"pets:read"}}, authzkit.StoreSink{Store: e.store})
}

func petsReq(method, path, key string) authzkit.Request {
	h := map[string]string{}
	if key != "" {
		h["x-key"] = key
	}
	return authzkit.Request{Method: method, Host: "pets.example.com", Path: path, Headers: h}
}

// replay posts a replay and returns its answer.
func (e *env) replay(tid, tok, pid string, body map[string]any) map[string]any {
	e.t.Helper()
	return e.expect(e.do("POST", "/api/admin/"+tid+"/policies/"+pid+"/replay", tok, body), 200).json(e.t)
}

func TestPolicyReplay(t *testing.T) { testPolicyReplay(t, newEnv(t)) }

// TestPolicyReplayOnPostgres is TestPolicyReplay on the PostgreSQL store
// (GATEHOUSE_TEST_DATABASE_URL, or a throwaway server; skipped when
// PostgreSQL is not installed).
func TestPolicyReplayOnPostgres(t *testing.T) {
	var url string
	if os.Getenv(pgtest.EnvDatabaseURL) != "" {
		url = pgtest.NewDatabase(t)
	} else {
		url = pgtest.NewServer(t).NewDatabase(t)
	}
	testPolicyReplay(t, newEnvOn(t, testkit.OpenPostgres(t, url)))
}

func testPolicyReplay(t *testing.T, e *env) {
	tok := e.replayTenant("acme", "edge", "edge2")
	// Another tenant with the same ids everywhere, whose decisions the
	// draft would flip the other way: none may be counted for acme.
	betaTok := e.replayTenant("beta", "edge")

	edge, edge2, beta := e.authorizer("acme", "edge"), e.authorizer("acme", "edge2"), e.authorizer("beta", "edge")
	for _, r := range []authzkit.Request{
		petsReq("GET", "/pets/1", "open-sesame"),                   // allowed, stays
		petsReq("DELETE", "/pets/2", "open-sesame"),                // allowed → denied
		petsReq("GET", "/pets/3", "new-key"),                       // denied → allowed
		petsReq("GET", "/pets/4", "wrong"),                         // denied, stays
		{Method: "GET", Host: "toys.example.com", Path: "/toys/1"}, // another policy's API
		{Method: "GET", Host: "pets.example.com", Path: "/pets/5", Headers: map[string]string{"authorization": "Bearer mallory"}}, // invalid token: no policy ran
	} {
		edge.Check(t, r)
	}
	edge2.Check(t, petsReq("GET", "/pets/20", "new-key")) // denied → allowed, on edge2
	for i := range 5 {
		beta.Check(t, petsReq("DELETE", fmt.Sprintf("/beta/%d", i), "open-sesame"))
		beta.Check(t, petsReq("DELETE", fmt.Sprintf("/pets/%d", 100+i), "open-sesame"))
	}
	edge.Flush()
	edge2.Flush()
	beta.Flush()

	draft := map[string]any{"definition": replayDraft}
	t.Run("flips both ways over every gateway of the tenant", func(t *testing.T) {
		res := e.replay("acme", tok, "keyed", map[string]any{"policy": draft})
		if res["policy_id"] != "keyed" || res["limit"] != float64(policies.DefaultReplayLimit) || res["scanned"] != float64(7) ||
			res["matched"] != float64(6) || res["evaluated"] != float64(5) || res["complete"] != true {
			t.Fatalf("counts: %v", res)
		}
		if fmt.Sprint(res["flips"]) != "map[allow_to_deny:1 deny_to_allow:2]" ||
			fmt.Sprint(res["unchanged"]) != "map[allowed:1 denied:1 status_changed:0]" ||
			fmt.Sprint(res["skipped"]) != "map[token_invalid:1 unreadable:0]" {
			t.Fatalf("flips %v, unchanged %v, skipped %v", res["flips"], res["unchanged"], res["skipped"])
		}
		if got := fmt.Sprint(res["apis"]); got != "[map[allow_to_deny:1 api_id:del-pet deny_to_allow:0 evaluated:1] map[allow_to_deny:0 api_id:get-pet deny_to_allow:2 evaluated:4]]" {
			t.Fatalf("apis: %s", got)
		}
		examples := res["examples"].([]any)
		byPath := map[string]map[string]any{}
		for _, x := range examples {
			ex := x.(map[string]any)
			byPath[ex["path"].(string)] = ex
			if strings.HasPrefix(ex["path"].(string), "/beta/") || ex["decision_id"] == "" {
				t.Errorf("example %v", ex)
			}
		}
		if len(examples) != 3 || byPath["/pets/20"]["gateway_id"] != "edge2" || byPath["/pets/3"]["gateway_id"] != "edge" {
			t.Fatalf("examples: %v", examples)
		}
		down := byPath["/pets/2"]
		if down["flip"] != "allow_to_deny" || down["method"] != "DELETE" || down["api_id"] != "del-pet" ||
			fmt.Sprint(down["old"]) != "map[allowed:true http_status:200 policy_id:keyed reason:allowed by policy keyed]" ||
			fmt.Sprint(down["new"]) != "map[allowed:false http_status:401 reason:denied by policy keyed]" {
			t.Fatalf("allow → deny example: %v", down)
		}
		if _, err := time.Parse(time.RFC3339Nano, down["time"].(string)); err != nil {
			t.Errorf("time: %v", err)
		}
	})

	t.Run("tenant isolation", func(t *testing.T) {
		res := e.replay("beta", betaTok, "keyed", map[string]any{"policy": draft})
		if res["evaluated"] != float64(5) || fmt.Sprint(res["flips"]) != "map[allow_to_deny:5 deny_to_allow:0]" {
			t.Fatalf("beta: %v", res)
		}
		r := e.do("POST", "/api/admin/beta/policies/keyed/replay", tok, map[string]any{"policy": draft})
		if r.status != 403 {
			t.Fatalf("acme's credential on beta: %d %s", r.status, r.body)
		}
	})

	t.Run("one gateway, and the limit", func(t *testing.T) {
		res := e.replay("acme", tok, "keyed", map[string]any{"policy": draft, "gateway_id": "edge2"})
		if res["scanned"] != float64(1) || res["evaluated"] != float64(1) || fmt.Sprint(res["flips"]) != "map[allow_to_deny:0 deny_to_allow:1]" {
			t.Fatalf("edge2: %v", res)
		}
		res = e.replay("acme", tok, "keyed", map[string]any{"policy": draft, "gateway_id": "edge", "limit": 2})
		// The two newest of edge's decisions of keyed's APIs: the invalid
		// token (skipped) and GET /pets/4.
		if res["limit"] != float64(2) || res["matched"] != float64(2) || res["evaluated"] != float64(1) ||
			fmt.Sprint(res["unchanged"]) != "map[allowed:0 denied:1 status_changed:0]" {
			t.Fatalf("limit 2: %v", res)
		}
	})

	t.Run("the saved policy replayed changes nothing, and nothing is saved", func(t *testing.T) {
		before := e.snapshot()
		res := e.replay("acme", tok, "keyed", map[string]any{"policy": map[string]any{"definition": replayKeyed}})
		if fmt.Sprint(res["flips"]) != "map[allow_to_deny:0 deny_to_allow:0]" || len(res["examples"].([]any)) != 0 {
			t.Fatalf("saved policy: %v", res)
		}
		e.replay("acme", tok, "keyed", map[string]any{"policy": draft})
		e.requireUnchanged(t, before, "a replay changed the store")
	})

	t.Run("a validators draft", func(t *testing.T) {
		res := e.replay("acme", tok, "keyed", map[string]any{"policy": map[string]any{"validators": []any{
			map[string]any{"name": "header", "conf": map[string]any{"name": "X-Key", "comparator": "equals", "value": "new-key"}}}}})
		if fmt.Sprint(res["flips"]) != "map[allow_to_deny:2 deny_to_allow:2]" {
			t.Fatalf("validators: %v", res)
		}
	})

	t.Run("an API no gateway decided yet, and a policy bound to none", func(t *testing.T) {
		e.expect(e.do("POST", "/api/admin/acme/policies", tok, map[string]any{"id": "unused", "policy_name": "unused", "definition": replayKeyed}), 201)
		res := e.replay("acme", tok, "unused", map[string]any{"policy": draft})
		if res["scanned"] != float64(0) || res["evaluated"] != float64(0) || len(res["apis"].([]any)) != 0 || res["complete"] != true {
			t.Fatalf("unbound policy: %v", res)
		}
	})
}

func TestPolicyReplayRefusesBadRequests(t *testing.T) {
	e := newEnv(t)
	tok := e.replayTenant("acme", "edge")
	post := func(pid string, body any) resp {
		return e.do("POST", "/api/admin/acme/policies/"+pid+"/replay", tok, body)
	}
	draft := map[string]any{"definition": replayDraft}
	badField := func(what string, r resp, code, fieldName string) map[string]any {
		t.Helper()
		if r.status != 400 || r.errorCode(t) != code || errDetails(t, r)["field"] != fieldName {
			t.Fatalf("%s: %d %s (want 400 %s naming %s)", what, r.status, r.body, code, fieldName)
		}
		return errDetails(t, r)
	}
	badField("no policy", post("keyed", map[string]any{}), httpapi.CodeMissingField, "policy")
	badField("limit too large", post("keyed", map[string]any{"policy": draft, "limit": policies.MaxReplayLimit + 1}), httpapi.CodeInvalidField, "limit")
	badField("negative limit", post("keyed", map[string]any{"policy": draft, "limit": -1}), httpapi.CodeInvalidField, "limit")
	badField("limit not a number", post("keyed", map[string]any{"policy": draft, "limit": "many"}), httpapi.CodeInvalidField, "limit")
	badField("bad gateway id", post("keyed", map[string]any{"policy": draft, "gateway_id": "Not An Id"}), httpapi.CodeInvalidField, "gateway_id")
	badField("unknown gateway", post("keyed", map[string]any{"policy": draft, "gateway_id": "nope"}), httpapi.CodeInvalidField, "gateway_id")
	badField("another policy's id", post("keyed", map[string]any{"policy": map[string]any{"id": "open", "definition": replayDraft}}), httpapi.CodeInvalidField, "policy.id")
	badField("definition and validators", post("keyed", map[string]any{"policy": map[string]any{"definition": replayDraft, "validators": []any{map[string]any{"name": "true"}}}}),
		httpapi.CodeInvalidField, "policy.language")
	d := badField("a definition that does not parse", post("keyed", map[string]any{"policy": map[string]any{"definition": "package policy\n\nallow if {\n\tinput.x ==\n}\n"}}),
		"invalid_policy", "policy.definition")
	if errs := d["errors"].([]any); len(errs) == 0 || errs[0].(map[string]any)["line"] != float64(5) {
		t.Fatalf("the parse error's line: %v", d)
	}
	// The authoring rules a save applies in the tenant apply to the draft.
	d = badField("allow that is not boolean", post("keyed", map[string]any{"policy": map[string]any{"definition": "package policy\n\nallow := \"yes\"\n"}}),
		"invalid_policy", "policy.definition")
	if errs := d["errors"].([]any); errs[0].(map[string]any)["code"] != "rego_result_type" {
		t.Fatalf("allow := \"yes\": %v", d)
	}
	if r := post("keyed", map[string]any{"policy": draft, "limits": 3}); r.status != 400 || !strings.Contains(string(r.body), "limits") {
		t.Fatalf("unknown field: %d %s", r.status, r.body)
	}
	if r := post("nope", map[string]any{"policy": draft}); r.status != 404 || r.errorCode(t) != httpapi.CodeNotFound {
		t.Fatalf("unknown policy: %d %s", r.status, r.body)
	}
	if r := post("Bad Id", map[string]any{"policy": draft}); r.status != 400 || errDetails(t, r)["field"] != "pid" {
		t.Fatalf("bad policy id: %d %s", r.status, r.body)
	}
}

// TestPolicyReplayReadsTheLogsNewestFirst: a replay reads gateways' logs
// a page at a time and merges them by the time they were received.
func TestPolicyReplayReadsTheLogsNewestFirst(t *testing.T) {
	e := newEnv(t)
	tok := e.replayTenant("acme", "a", "b")
	ctx := context.Background()
	// More events than a page, appended alternately to the two gateways'
	// logs in bursts, so that the newest N span both.
	a, b := e.authorizer("acme", "a"), e.authorizer("acme", "b")
	for i := range 700 {
		a.Check(t, petsReq("GET", fmt.Sprintf("/pets/a%d", i), "new-key"))
	}
	a.Flush()
	for i := range 300 {
		b.Check(t, petsReq("GET", fmt.Sprintf("/pets/b%d", i), "new-key"))
	}
	b.Flush()
	pg, err := e.store.ListLog(ctx, store.LogQuery{Stream: store.LogStream{Name: "decisions", TenantID: "acme", Key: "a"}, Limit: 1})
	if err != nil || len(pg.Items) != 1 {
		t.Fatalf("a's log: %v %v", pg, err)
	}
	res := e.replay("acme", tok, "keyed", map[string]any{"policy": map[string]any{"definition": replayDraft}, "limit": 500})
	if res["evaluated"] != float64(500) || fmt.Sprint(res["apis"]) != "[map[allow_to_deny:0 api_id:del-pet deny_to_allow:0 evaluated:0] map[allow_to_deny:0 api_id:get-pet deny_to_allow:500 evaluated:500]]" {
		t.Fatalf("500 newest: %v", res)
	}
	// b's 300 were received last: they come first, then a's newest.
	examples := res["examples"].([]any)
	if len(examples) != policies.MaxReplayExamples || examples[0].(map[string]any)["path"] != "/pets/b299" {
		t.Fatalf("examples: %v", examples)
	}
	res = e.replay("acme", tok, "keyed", map[string]any{"policy": map[string]any{"definition": replayDraft}, "limit": 1000})
	if res["evaluated"] != float64(1000) || res["scanned"] != float64(1000) || res["complete"] != true {
		t.Fatalf("all: %v", res)
	}
}
