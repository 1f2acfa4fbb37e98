package admin_test

import (
	"context"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/admin"
	"github.com/gatehouse-dev/gatehouse/internal/httpapi"
)

// TestNullBodyIsRefused: on every route that takes a JSON body, the body
// null is a 400 invalid_json (decoding it would give the zero value, as if
// {} had been sent), and nothing is written.
func TestNullBodyIsRefused(t *testing.T) {
	e := newEnv(t)
	// As gatehouse serve does: /api/system/identity-providers are its.
	if err := admin.EnsureSystemTenant(context.Background(), e.store); err != nil {
		t.Fatal(err)
	}
	e.createTenant("acme")
	post := func(kind string, body map[string]any) map[string]any {
		t.Helper()
		return e.expect(e.do("POST", "/api/admin/acme/"+kind, rootToken, body), 201).json(t)
	}
	post("services", map[string]any{"id": "pets", "name": "Pets", "url": "http://pets"})
	post("apis", map[string]any{"id": "get-pet", "service_id": "pets", "method": "GET", "path": "/pets/{id}"})
	post("policies", map[string]any{"id": "keyed", "policy_name": "keyed", "definition": goodRego})
	post("scopes", map[string]any{"id": "read", "name": "pets:read"})
	post("issuers", map[string]any{"id": "idp", "name": "IdP", "issuer": "https://idp.example.com", "audiences": []string{"a"}, "discovery": true})
	gwToken := post("gateways", map[string]any{"id": "edge", "name": "edge"})["credential"].(map[string]any)["token"].(string)
	post("clients", map[string]any{"client_id": "web", "authorization_server_id": "default", "grant_types": []string{"client_credentials"}})
	post("claims", map[string]any{"id": "mail", "authorization_server_id": "default", "name": "email", "mapping": "email", "type": "id_token"})
	post("users", map[string]any{"id": "alice", "email": "alice@example.com"})

	params := map[string]string{"tid": "acme", "sid": "pets", "api": "get-pet", "pid": "keyed", "scp": "read", "iid": "idp", "gw": "edge",
		"aid": "default", "cid": "web", "claim": "mail", "uid": "alice", "said": "robot", "gid": "team",
		"idp": "corp", "invitation": "inv", "login": "l1"}
	notJSON := map[string]bool{ // bodies that are not a JSON object
		"/api/admin/:tid/services/:sid/apis/import/file":               true, // multipart/form-data
		"/api/admin/:tid/services/:sid/apis/import/text":               true, // an OpenAPI document, JSON or YAML
		"/api/admin/:tid/gateways/:gw/credentials":                     true, // no body
		"/api/admin/:tid/projects/:pid/members/users/:uid":             true, // no body
		"/api/admin/:tid/projects/:pid/members/service-accounts/:said": true, // no body
	}
	checked := 0
	for _, rt := range e.api.Routes() {
		if (rt.Method != "POST" && rt.Method != "PUT" && rt.Method != "PATCH") || notJSON[rt.Path] {
			continue
		}
		segs := strings.Split(rt.Path, "/")
		for i, s := range segs {
			if name, ok := strings.CutPrefix(s, ":"); ok {
				v, known := params[name]
				if !known {
					t.Fatalf("%s %s: no value for the path parameter %s", rt.Method, rt.Path, s)
				}
				segs[i] = v
			}
		}
		path := strings.Join(segs, "/")
		if rt.Path == "/api/system/configuration" {
			path += "?tid=acme"
		}
		token := rootToken
		if strings.HasPrefix(rt.Path, "/api/system/:tid/gateways/:gw/opa/") {
			token = gwToken
		}
		before := e.snapshot()
		for _, body := range []string{"null", " null\n"} {
			var r resp
			if rt.Method == "PATCH" {
				r = e.do(rt.Method, path, token, body, "Content-Type", admin.MergePatchType)
			} else {
				r = e.do(rt.Method, path, token, body)
			}
			if r.status != 400 || r.errorCode(t) != httpapi.CodeInvalidJSON {
				t.Errorf("%s %s with the body %q: %d %s", rt.Method, rt.Path, body, r.status, r.body)
			}
		}
		e.requireUnchanged(t, before, rt.Method+" "+rt.Path+" with a null body wrote to the store")
		checked++
	}
	if checked < 20 {
		t.Fatalf("only %d routes checked", checked)
	}
	// {} is still decoded (and validated) as an object.
	if r := e.do("POST", "/api/admin/acme/services", rootToken, "{}"); r.status != 400 || r.errorCode(t) != httpapi.CodeMissingField {
		t.Fatalf("{}: %d %s", r.status, r.body)
	}
}
