package admin_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/httpapi"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/routing/pathcorpus"
)

// TestPublicAPIWithAPolicyIsRefused: public and policy_id together would
// mean no authorizer call in Envoy but a policy in the authorizer; every way
// of writing an API refuses the combination with a 400 naming both fields,
// and writes nothing.
func TestPublicAPIWithAPolicyIsRefused(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	tok := e.credential("acme")
	e.expect(e.do("POST", "/api/admin/acme/services", tok, map[string]any{"id": "pets", "name": "Pets", "url": "http://pets"}), 201)
	e.expect(e.do("POST", "/api/admin/acme/policies", tok, map[string]any{"id": "block", "policy_name": "block", "definition": goodRego}), 201)
	e.expect(e.do("POST", "/api/admin/acme/apis", tok, map[string]any{"id": "get-pet", "service_id": "pets", "method": "GET", "path": "/pets/{id}", "policy_id": "block"}), 201)
	e.expect(e.do("POST", "/api/admin/acme/apis", tok, map[string]any{"id": "health", "service_id": "pets", "method": "GET", "path": "/healthz", "public": true}), 201)

	before := e.snapshot()
	refused := func(what string, r resp) {
		t.Helper()
		m := r.json(t)
		details, _ := m["details"].(map[string]any)
		if r.status != 400 || r.errorCode(t) != httpapi.CodeInvalidField || details["field"] != "public" ||
			fmt.Sprint(details["fields"]) != "[public policy_id]" || !contains(m["error"], "public", "policy_id") {
			t.Fatalf("%s: %d %s", what, r.status, r.body)
		}
	}
	refused("create", e.do("POST", "/api/admin/acme/apis", tok, map[string]any{"service_id": "pets", "method": "GET", "path": "/x", "public": true, "policy_id": "block"}))
	refused("make a protected API public", e.do("PUT", "/api/admin/acme/apis/get-pet", tok, map[string]any{"policy_id": "block", "public": true}))
	refused("bind a policy to a public API", e.do("PUT", "/api/admin/acme/apis/health", tok, map[string]any{"policy_id": "block", "public": true}))
	doc := e.expect(e.do("GET", "/api/system/configuration?tid=acme", rootToken, nil), 200).json(t)
	apis, _ := doc["apis"].([]any)
	for _, a := range apis {
		if m := a.(map[string]any); m["id"] == "get-pet" {
			m["public"] = true
		}
	}
	r := e.do("PUT", "/api/system/configuration?tid=acme", rootToken, doc)
	if r.status != 400 || !contains(r.json(t)["error"], "public", "policy_id") {
		t.Fatalf("configuration import: %d %s", r.status, r.body)
	}
	e.requireUnchanged(t, before, "a refused public+policy write changed the store")
}

// TestRouteTakeoverAcrossServicesIsRefused: an API whose route is
// equivalent to (same path shape, overlapping method) an API of another
// service that the same gateway serves on a shared host is a 409 naming
// the existing API — whether the overlap comes from writing the API,
// changing a service's hosts, or changing which services a gateway serves.
func TestRouteTakeoverAcrossServicesIsRefused(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	tok := e.credential("acme")
	for _, s := range []map[string]any{
		{"id": "pets", "name": "Pets", "url": "http://pets"},
		{"id": "shop", "name": "Shop", "url": "http://shop"},
		{"id": "web", "name": "Web", "url": "http://web", "hosts": []string{"web.example.com"}},
		{"id": "lab", "name": "Lab", "url": "http://lab"},
	} {
		e.expect(e.do("POST", "/api/admin/acme/services", tok, s), 201)
	}
	storeObject(e, model.KindPolicy, "acme", "block", model.PolicySpec{Language: model.LanguageRego})
	api := func(id, sid, method, path string) map[string]any {
		return map[string]any{"id": id, "service_id": sid, "method": method, "path": path, "policy_id": "block"}
	}
	e.expect(e.do("POST", "/api/admin/acme/apis", tok, api("get-pet", "pets", "GET", "/pets/{id}")), 201)
	// lab is served by no gateway yet: its equivalent route takes nothing over.
	e.expect(e.do("POST", "/api/admin/acme/apis", tok, api("lab-pet", "lab", "GET", "/pets/{key}")), 201)
	e.expect(e.do("POST", "/api/admin/acme/gateways", rootToken, map[string]any{"id": "edge", "name": "edge",
		"service_ids": []string{"pets", "shop", "web"}}), 201)

	takeover := func(what string, r resp, existing string) {
		t.Helper()
		m := r.json(t)
		details, _ := m["details"].(map[string]any)
		if r.status != 409 || r.errorCode(t) != httpapi.CodeConflict || details["id"] != existing || !contains(m["error"], fmt.Sprintf("%q", existing)) {
			t.Fatalf("%s: %d %s, want 409 naming %s", what, r.status, r.body, existing)
		}
	}
	before := e.snapshot()
	takeover("same method, same shape", e.do("POST", "/api/admin/acme/apis", tok, api("", "shop", "GET", "/pets/{x}")), "get-pet")
	takeover("any method over GET", e.do("POST", "/api/admin/acme/apis", tok, api("", "shop", "*", "/pets/{x}")), "get-pet")
	e.requireUnchanged(t, before, "a refused takeover changed the store")

	// Another host is no way out: pets (no hosts) serves web.example.com
	// too until web claims it (TestRouteTakeoverAcrossVirtualHostsIsRefused).
	takeover("another host, covered by the default vhost", e.do("POST", "/api/admin/acme/apis", tok, api("web-pet", "web", "GET", "/pets/{x}")), "get-pet")
	e.requireUnchanged(t, before, "a refused takeover changed the store")

	// Not takeovers: another method, another shape.
	e.expect(e.do("POST", "/api/admin/acme/apis", tok, api("shop-post", "shop", "POST", "/pets/{x}")), 201)
	e.expect(e.do("POST", "/api/admin/acme/apis", tok, api("shop-mine", "shop", "GET", "/pets/mine")), 201)
	// Moving an API onto a taken route.
	before = e.snapshot()
	takeover("PUT onto a taken route", e.do("PUT", "/api/admin/acme/apis/shop-post", tok, map[string]any{"method": "GET", "path": "/pets/{y}", "policy_id": "block"}), "get-pet")
	// Service host changes: TestRouteTakeoverAcrossVirtualHostsIsRefused.
	// A gateway that starts serving a service with an equivalent route.
	takeover("gateway service_ids change", e.do("PUT", "/api/admin/acme/gateways/edge", rootToken, map[string]any{"name": "edge", "type": "envoy",
		"service_ids": []string{"pets", "shop", "web", "lab"}}), "get-pet")
	takeover("new gateway serving every service", e.do("POST", "/api/admin/acme/gateways", rootToken, map[string]any{"id": "all", "name": "all"}), "get-pet")
	e.requireUnchanged(t, before, "a refused takeover changed the store")

	// An OpenAPI import into a service of the gateway is checked too.
	spec := "openapi: 3.0.3\ninfo: {title: t, version: '1'}\npaths:\n  /pets/{petId}:\n    get:\n      operationId: getPet\n      parameters: [{name: petId, in: path, required: true, schema: {type: string}}]\n      responses: {'200': {description: ok}}\n"
	r := e.do("POST", "/api/admin/acme/services/shop/apis/import/text", tok, spec, "Content-Type", "application/yaml")
	if r.status == 404 {
		t.Fatalf("import route: %d %s", r.status, r.body)
	}
	takeover("OpenAPI import", r, "get-pet")
}

// TestPolicyTestEndpointSeesTheCanonicalRequest runs every path class of
// routing/pathcorpus through POST /policies/test: the policy sees the
// canonical path (and the query as sent), never an owned header, and a
// refused path never reaches the policy — as in the authorizer.
func TestPolicyTestEndpointSeesTheCanonicalRequest(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	tok := e.credential("acme")
	policy := map[string]any{"policy_name": "echo", "language": "rego", "definition": `package policy

default allow := false

allow if not input.attributes.request.http.headers["x-gatehouse-user"]

reason := input.attributes.request.http.path

headers := {"x-seen": concat("/", input.parsed_path)}
`}
	for _, c := range pathcorpus.Cases() {
		t.Run(c.Class, func(t *testing.T) {
			input := map[string]any{"attributes": map[string]any{"request": map[string]any{"http": map[string]any{
				"method": "GET", "path": c.Target, "headers": map[string]any{"x-gatehouse-user": "root", "X-Seen": "forged"}}}}}
			r := e.do("POST", "/api/admin/acme/policies/test", tok, map[string]any{"policy": policy, "input": input})
			if r.status != 200 {
				t.Fatalf("%d %s", r.status, r.body)
			}
			m := r.json(t)
			result, _ := m["result"].(map[string]any)
			req, _ := m["request"].(map[string]any)
			if c.Status != 0 {
				if m["allowed"] != false || result["http_status"] != float64(c.Status) || req["refused_status"] != float64(c.Status) {
					t.Fatalf("refused path %.80q: %v", c.Target, m)
				}
				return
			}
			want := c.Canonical
			if _, q, ok := strings.Cut(c.Target, "?"); ok {
				want += "?" + q
			}
			if m["allowed"] != true || result["reason"] != want || req["path"] != c.Canonical ||
				fmt.Sprint(req["removed_headers"]) != "[x-gatehouse-user x-seen]" {
				t.Fatalf("%.80q: allowed %v, policy saw %.100v, request %.200v", c.Target, m["allowed"], result["reason"], req)
			}
		})
	}
}

// TestRouteTakeoverAcrossVirtualHostsIsRefused: a host served by one
// service's vhost is no longer served by another that covers it (routing
// never falls back from an exact host to a wildcard or to the default
// vhost), so an equivalent route there is a takeover: an exact host under
// the default vhost, an exact host under a wildcard, a service whose hosts
// change to cover another's. Each is a 409 naming the API that was there,
// and writes nothing.
func TestRouteTakeoverAcrossVirtualHostsIsRefused(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	tok := e.credential("acme")
	storeObject(e, model.KindPolicy, "acme", "block", model.PolicySpec{Language: model.LanguageRego})
	api := func(id, sid, method, path string) map[string]any {
		return map[string]any{"id": id, "service_id": sid, "method": method, "path": path, "policy_id": "block"}
	}
	takeover := func(what string, r resp, existing, host string) {
		t.Helper()
		m := r.json(t)
		details, _ := m["details"].(map[string]any)
		if r.status != 409 || r.errorCode(t) != httpapi.CodeConflict || details["id"] != existing || details["host"] != host ||
			!contains(m["error"], fmt.Sprintf("%q", existing), host) {
			t.Fatalf("%s: %d %s, want 409 naming %s on host %s", what, r.status, r.body, existing, host)
		}
	}
	e.expect(e.do("POST", "/api/admin/acme/services", tok, map[string]any{"id": "a", "name": "A", "url": "http://a"}), 201)
	e.expect(e.do("POST", "/api/admin/acme/apis", tok, api("a-admin", "a", "GET", "/admin")), 201)
	e.expect(e.do("POST", "/api/admin/acme/gateways", rootToken, map[string]any{"id": "edge", "name": "edge"}), 201)
	// A service on an exact host, without APIs, takes nothing over.
	e.expect(e.do("POST", "/api/admin/acme/services", tok, map[string]any{"id": "b", "name": "B", "url": "http://b",
		"hosts": []string{"api.example.com"}}), 201)

	before := e.snapshot()
	takeover("exact host over the default vhost", e.do("POST", "/api/admin/acme/apis", tok,
		map[string]any{"service_id": "b", "method": "GET", "path": "/admin", "public": true}), "a-admin", "api.example.com")
	takeover("any method over GET", e.do("POST", "/api/admin/acme/apis", tok, api("", "b", "*", "/admin")), "a-admin", "api.example.com")
	e.requireUnchanged(t, before, "a refused takeover changed the store")
	// Another method or another shape is no takeover.
	e.expect(e.do("POST", "/api/admin/acme/apis", tok, api("b-post", "b", "POST", "/admin")), 201)
	e.expect(e.do("POST", "/api/admin/acme/apis", tok, api("b-item", "b", "GET", "/items/{id}")), 201)

	// A wildcard of another suffix does not cover b's host; moving it onto
	// b's suffix (or into the default vhost) would take b-item over on it.
	e.expect(e.do("POST", "/api/admin/acme/services", tok, map[string]any{"id": "c", "name": "C", "url": "http://c",
		"hosts": []string{"*.example.org"}}), 201)
	e.expect(e.do("POST", "/api/admin/acme/apis", tok, api("c-item", "c", "GET", "/items/{key}")), 201)
	before = e.snapshot()
	takeover("hosts changed to a covering wildcard", e.do("PUT", "/api/admin/acme/services/c", tok,
		map[string]any{"name": "C", "url": "http://c", "hosts": []string{"*.example.com"}}), "b-item", "api.example.com")
	takeover("hosts removed (the default vhost)", e.do("PUT", "/api/admin/acme/services/c", tok,
		map[string]any{"name": "C", "url": "http://c"}), "b-item", "api.example.com")
	e.requireUnchanged(t, before, "a refused takeover changed the store")
}
