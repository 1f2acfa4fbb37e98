package admin_test

import (
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/httpapi"
)

func TestScopes(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	e.createTenant("other")
	tok := e.credential("acme")
	base := "/api/admin/acme/scopes"
	s := e.expect(e.do("POST", base, tok, map[string]any{"id": "read", "name": "pets:read", "display_name": "Read pets"}), 201).json(t)
	if s["name"] != "pets:read" || s["tenant_id"] != "acme" || s["with_service"] != false {
		t.Fatalf("created: %v", s)
	}
	gen := e.expect(e.do("POST", base, tok, map[string]any{"name": "pets:write"}), 201).json(t)
	if gen["id"] == "" {
		t.Fatal("no generated id")
	}
	if r := e.do("POST", base, tok, map[string]any{"name": "pets:read"}); r.status != 409 || r.errorCode(t) != httpapi.CodeAlreadyExists {
		t.Fatalf("duplicate name: %d %s", r.status, r.body)
	}
	for _, bad := range []struct {
		body  map[string]any
		field string
	}{
		{map[string]any{"name": "has space"}, "name"},
		{map[string]any{}, "name"},
		{map[string]any{"name": "x", "service_id": "ghost"}, "service_id"},
		{map[string]any{"name": "x", "id": "bad id"}, "id"},
		{map[string]any{"name": "x", "tenant_id": "other"}, "tenant_id"},
	} {
		r := e.do("POST", base, tok, bad.body)
		if r.status != 400 || r.json(t)["details"].(map[string]any)["field"] != bad.field {
			t.Errorf("%v: %d %s", bad.body, r.status, r.body)
		}
	}
	got := e.expect(e.do("GET", base+"/read", tok, nil), 200)
	etag := got.header.Get("ETag")
	upd := e.expect(e.do("PUT", base+"/read", tok, map[string]any{"name": "pets:read", "description": "d"}, "If-Match", etag), 200).json(t)
	if upd["description"] != "d" || upd["display_name"] != "" {
		t.Fatalf("update replaces the object: %v", upd)
	}
	e.expect(e.do("PUT", base+"/read", tok, map[string]any{"name": "pets:read"}, "If-Match", etag), 412)
	e.expect(e.do("PUT", base+"/read", tok, map[string]any{"name": "pets:write"}), 409)
	list := e.expect(e.do("GET", base+"?limit=1", tok, nil), 200).json(t)
	if list["total"] != float64(2) || len(list["scopes"].([]any)) != 1 || list["next"] == "" {
		t.Fatalf("list: %v", list)
	}
	// Tenant isolation: another tenant sees none of them.
	if l := e.expect(e.do("GET", "/api/admin/other/scopes", rootToken, nil), 200).json(t); l["total"] != float64(0) {
		t.Fatalf("other tenant: %v", l)
	}
	e.expect(e.do("GET", "/api/admin/other/scopes/read", rootToken, nil), 404)
	e.expect(e.do("DELETE", base+"/read", tok, nil), 204)
	e.expect(e.do("GET", base+"/read", tok, nil), 404)
	evs := e.expect(e.do("GET", "/api/admin/acme/events?kind=scopes", tok, nil), 200).json(t)["events"].([]any)
	if len(evs) != 4 { // create, create, update, delete
		t.Fatalf("scope events: %v", evs)
	}
}
