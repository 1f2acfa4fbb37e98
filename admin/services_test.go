package admin_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/httpapi"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/store"
)

// storeObject writes an object straight through the store, for kinds whose
// admin API is not under test (policies, gateways).
func storeObject[S any](e *env, kind, tid, id string, spec S) {
	e.t.Helper()
	repo := store.Repo[S]{Kind: kind}
	if _, err := e.store.Update(context.Background(), func(ctx context.Context, tx store.Tx) error {
		return repo.Create(ctx, tx, &store.Typed[S]{Meta: store.Object{TenantID: tid, ID: id, Name: id}, Spec: spec})
	}); err != nil {
		e.t.Fatal(err)
	}
}

// expectFieldError asserts a 400 naming field.
func (e *env) expectFieldError(r resp, field string) {
	e.t.Helper()
	if r.status != 400 {
		e.t.Fatalf("want 400 on %s, got %d: %s", field, r.status, r.body)
	}
	d, _ := r.json(e.t)["details"].(map[string]any)
	if d["field"] != field {
		e.t.Fatalf("want an error naming %q: %s", field, r.body)
	}
}

// items returns the list under key of a JSON response.
func items(t *testing.T, m map[string]any, key string) []map[string]any {
	t.Helper()
	raw, ok := m[key].([]any)
	if !ok {
		t.Fatalf("no %q list in %v", key, m)
	}
	out := make([]map[string]any, 0, len(raw))
	for _, x := range raw {
		out = append(out, x.(map[string]any))
	}
	return out
}

func ids(list []map[string]any) []string {
	out := make([]string, 0, len(list))
	for _, m := range list {
		out = append(out, fmt.Sprint(m["id"]))
	}
	return out
}

func TestServices(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	e.createTenant("other")
	tok := e.credential("acme")
	base := "/api/admin/acme/services"
	svc := e.expect(e.do("POST", base, tok, map[string]any{
		"id": "pets", "name": "Pets", "url": "https://pets.internal:8443/base", "hosts": []string{"API.Example.com", "*.pets.example.com"},
		"server_id": "default", "with_specification": true, "labels": map[string]string{"team": "a"}, "tenant_id": "acme",
		"metadata": map[string]any{"revision": 99},
	}), 201).json(t)
	if svc["id"] != "pets" || svc["tenant_id"] != "acme" || svc["with_specification"] != false || svc["server_id"] != "default" ||
		fmt.Sprint(svc["hosts"]) != "[api.example.com *.pets.example.com]" {
		t.Fatalf("created: %v", svc)
	}
	gen := e.expect(e.do("POST", base, tok, map[string]any{"name": "Other", "url": "http://10.0.0.1"}), 201).json(t)
	if gen["id"] == "" || fmt.Sprint(gen["hosts"]) != "[]" {
		t.Fatalf("generated: %v", gen)
	}
	if r := e.do("POST", base, tok, map[string]any{"name": "Pets", "url": "http://x"}); r.status != 409 || r.errorCode(t) != httpapi.CodeAlreadyExists {
		t.Fatalf("duplicate name: %d %s", r.status, r.body)
	}

	before := e.snapshot()
	for _, bad := range []struct {
		body  map[string]any
		field string
	}{
		{map[string]any{"url": "http://x"}, "name"},
		{map[string]any{"name": "  ", "url": "http://x"}, "name"},
		{map[string]any{"name": "x"}, "url"},
		{map[string]any{"name": "x", "url": "ftp://files.example.com"}, "url"},
		{map[string]any{"name": "x", "url": "/relative/path"}, "url"},
		{map[string]any{"name": "x", "url": "https://"}, "url"},
		{map[string]any{"name": "x", "url": "https://user:pw@pets.internal"}, "url"},
		{map[string]any{"name": "x", "url": "https://pets.internal/?a=1"}, "url"},
		{map[string]any{"name": "x", "url": "https://pets.internal/#top"}, "url"},
		{map[string]any{"name": "x", "url": "https://pets.internal:99999"}, "url"},
		{map[string]any{"name": "x", "url": "http://x", "hosts": []string{"ok.example.com", "bad_host"}}, "hosts[1]"},
		{map[string]any{"name": "x", "url": "http://x", "hosts": []string{"*"}}, "hosts[0]"},
		{map[string]any{"name": "x", "url": "http://x", "hosts": []string{"a.example.com", "A.example.com"}}, "hosts[1]"},
		{map[string]any{"name": "x", "url": "http://x", "id": "bad id"}, "id"},
		{map[string]any{"name": "x", "url": "http://x", "tenant_id": "other"}, "tenant_id"},
		{map[string]any{"name": "x", "url": "http://x", "labels": map[string]string{"-bad": "v"}}, "labels.-bad"},
		{map[string]any{"name": "x", "url": "http://x", "unknown": 1}, "unknown"},
		{map[string]any{"name": "x", "url": "http://x", "hosts": "a.example.com"}, "hosts"},
	} {
		e.expectFieldError(e.do("POST", base, tok, bad.body), bad.field)
	}
	e.requireUnchanged(t, before, "a rejected request changed the store")

	// GET returns the bound scopes too.
	e.expect(e.do("POST", "/api/admin/acme/scopes", tok, map[string]any{"id": "pets-read", "name": "pets:read", "service_id": "pets"}), 201)
	got := e.expect(e.do("GET", base+"/pets", tok, nil), 200)
	scopes := items(t, got.json(t), "scopes")
	if len(scopes) != 1 || scopes[0]["id"] != "pets-read" {
		t.Fatalf("scopes: %s", got.body)
	}
	etag := got.header.Get("ETag")
	e.expect(e.do("GET", base+"/pets", tok, nil, "If-None-Match", etag), 304)

	// PUT replaces; with_specification stays read-only: sent changed it is
	// a 400 naming it, sent as stored (or left out) it is accepted.
	e.expectFieldError(e.do("PUT", base+"/pets", tok, map[string]any{"name": "Pets 2", "url": "http://pets", "with_specification": true}, "If-Match", etag), "with_specification")
	upd := e.expect(e.do("PUT", base+"/pets", tok, map[string]any{"name": "Pets 2", "url": "http://pets", "with_specification": false}, "If-Match", etag), 200).json(t)
	if upd["name"] != "Pets 2" || fmt.Sprint(upd["hosts"]) != "[]" || upd["server_id"] != nil || upd["with_specification"] != false || fmt.Sprint(upd["labels"]) != "map[]" {
		t.Fatalf("update: %v", upd)
	}
	e.expect(e.do("PUT", base+"/pets", tok, map[string]any{"name": "Pets 3", "url": "http://pets"}, "If-Match", etag), 412)
	e.expect(e.do("PUT", base+"/pets", tok, map[string]any{"name": "Other", "url": "http://pets"}), 409)
	e.expectFieldError(e.do("PUT", base+"/pets", tok, map[string]any{"id": "other-id", "name": "Pets", "url": "http://pets"}), "id")
	e.expectFieldError(e.do("PUT", base+"/pets", tok, map[string]any{"name": "Pets"}), "url")
	e.expect(e.do("PUT", base+"/ghost", tok, map[string]any{"name": "Ghost", "url": "http://pets"}), 404)

	// Paging.
	page1 := e.expect(e.do("GET", base+"?limit=1", tok, nil), 200).json(t)
	if page1["total"] != float64(2) || len(items(t, page1, "services")) != 1 || page1["next"] == "" {
		t.Fatalf("page 1: %v", page1)
	}
	page2 := e.expect(e.do("GET", base+"?limit=1&after="+page1["next"].(string), tok, nil), 200).json(t)
	if len(items(t, page2, "services")) != 1 || page2["next"] != "" {
		t.Fatalf("page 2: %v", page2)
	}
	e.expectFieldError(e.do("GET", base+"?limit=0", tok, nil), "limit")

	// Tenant isolation.
	if l := e.expect(e.do("GET", "/api/admin/other/services", rootToken, nil), 200).json(t); l["total"] != float64(0) {
		t.Fatalf("other tenant: %v", l)
	}
	e.expect(e.do("GET", "/api/admin/other/services/pets", rootToken, nil), 404)
	e.expect(e.do("DELETE", "/api/admin/other/services/pets", rootToken, nil), 404)
	for _, m := range []string{"GET", "DELETE"} {
		if r := e.do(m, "/api/admin/other/services/pets", tok, nil); r.status != 403 {
			t.Fatalf("acme token on other tenant: %d %s", r.status, r.body)
		}
	}

	evs := items(t, e.expect(e.do("GET", "/api/admin/acme/events?kind=services", tok, nil), 200).json(t), "events")
	if len(evs) != 3 { // create, create, update
		t.Fatalf("service events: %v", evs)
	}
}

func TestServiceDelete(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	tok := e.credential("acme")
	base := "/api/admin/acme/services"
	e.expect(e.do("POST", base, tok, map[string]any{"id": "pets", "name": "Pets", "url": "http://pets"}), 201)
	e.expect(e.do("POST", base, tok, map[string]any{"id": "shop", "name": "Shop", "url": "http://shop"}), 201)
	for i, p := range []string{"/pets", "/pets/{id}", "/pets/{id}/photos"} {
		e.expect(e.do("POST", "/api/admin/acme/apis", tok, map[string]any{"id": fmt.Sprint("pets-", i), "service_id": "pets", "method": "GET", "path": p}), 201)
	}
	e.expect(e.do("POST", "/api/admin/acme/apis", tok, map[string]any{"id": "shop-0", "service_id": "shop", "method": "GET", "path": "/cart"}), 201)
	storeObject(e, model.KindGateway, "acme", "gw-1", model.GatewaySpec{Type: model.GatewayEnvoy, ServiceIDs: []string{"shop", "pets"}})
	storeObject(e, model.KindGateway, "acme", "gw-all", model.GatewaySpec{Type: model.GatewayEnvoy})
	e.expect(e.do("POST", "/api/admin/acme/scopes", tok, map[string]any{"id": "pets-read", "name": "pets:read", "service_id": "pets"}), 201)

	before := e.snapshot()
	r := e.do("DELETE", base+"/pets", tok, nil)
	if r.status != 409 || r.errorCode(t) != httpapi.CodeInUse {
		t.Fatalf("delete in use: %d %s", r.status, r.body)
	}
	usedBy := r.json(t)["details"].(map[string]any)["used_by"].(map[string]any)
	if fmt.Sprint(usedBy["gateways"]) != "[gw-1]" || fmt.Sprint(usedBy["scopes"]) != "[pets-read]" {
		t.Fatalf("used_by: %s", r.body)
	}
	e.requireUnchanged(t, before, "a refused delete changed the store")
	// Unbind the gateway and the scope; the service goes with its APIs only.
	if _, err := e.store.Update(context.Background(), func(ctx context.Context, tx store.Tx) error {
		repo := store.Repo[model.GatewaySpec]{Kind: model.KindGateway}
		g, err := repo.Get(ctx, tx, "acme", "gw-1")
		if err != nil {
			return err
		}
		g.Spec.ServiceIDs = []string{"shop"}
		return repo.Update(ctx, tx, g, 0)
	}); err != nil {
		t.Fatal(err)
	}
	if r := e.do("DELETE", base+"/pets", tok, nil); r.status != 409 || fmt.Sprint(r.json(t)["details"].(map[string]any)["used_by"]) != "map[scopes:[pets-read]]" {
		t.Fatalf("scope still bound: %d %s", r.status, r.body)
	}
	e.expect(e.do("DELETE", "/api/admin/acme/scopes/pets-read", tok, nil), 204)
	e.expect(e.do("DELETE", base+"/pets", tok, nil, "If-Match", `"1"`), 412)
	etag := e.expect(e.do("GET", base+"/pets", tok, nil), 200).header.Get("ETag")
	before = e.snapshot()
	e.expect(e.do("DELETE", base+"/pets", tok, nil, "If-Match", etag), 204)
	if n := e.transactionsSince(before); n != 1 {
		t.Fatalf("the cascade took %d transactions", n)
	}
	e.expect(e.do("GET", base+"/pets", tok, nil), 404)
	e.expect(e.do("GET", "/api/admin/acme/apis/pets-0", tok, nil), 404)
	if l := e.expect(e.do("GET", "/api/admin/acme/apis", tok, nil), 200).json(t); fmt.Sprint(ids(items(t, l, "apis"))) != "[shop-0]" {
		t.Fatalf("remaining APIs: %v", l)
	}
	evs := items(t, e.expect(e.do("GET", fmt.Sprintf("/api/admin/acme/events?action=delete&limit=10"), tok, nil), 200).json(t), "events")
	var deleted []string
	for _, ev := range evs {
		deleted = append(deleted, fmt.Sprint(ev["kind"], ":", ev["object_id"]))
	}
	// newest first; the APIs and the service in one revision
	if fmt.Sprint(deleted) != "[services:pets apis:pets-2 apis:pets-1 apis:pets-0 scopes:pets-read]" {
		t.Fatalf("delete events: %v", deleted)
	}
	e.expect(e.do("DELETE", base+"/pets", tok, nil), 404)
}
