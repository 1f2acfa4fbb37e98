package admin_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/admin"
	"github.com/gatehouse-dev/gatehouse/internal/httpapi"
	"github.com/gatehouse-dev/gatehouse/model"
)

func TestAPIs(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	e.createTenant("other")
	tok := e.credential("acme")
	base := "/api/admin/acme/apis"
	e.expect(e.do("POST", "/api/admin/acme/services", tok, map[string]any{"id": "pets", "name": "Pets", "url": "http://pets"}), 201)
	e.expect(e.do("POST", "/api/admin/acme/services", tok, map[string]any{"id": "shop", "name": "Shop", "url": "http://shop"}), 201)
	storeObject(e, model.KindPolicy, "acme", "block", model.PolicySpec{Language: model.LanguageRego})

	a := e.expect(e.do("POST", base, tok, map[string]any{
		"id": "get-pet", "service_id": "pets", "method": "get", "path": "/pets/{id}", "policy_id": "block",
		"data_classifications": []string{"pii", "gdpr"}, "public": false, "position": 2, "labels": map[string]string{"x": "y"},
		"operation_id": "ignored", "imported": true, "tenant_id": "acme", "metadata": map[string]any{},
	}), 201).json(t)
	if a["method"] != "GET" || a["path"] != "/pets/{id}" || a["policy_id"] != "block" || a["can_have_policy"] != true ||
		a["position"] != float64(2) || a["imported"] != false || a["operation_id"] != nil || a["service_id"] != "pets" {
		t.Fatalf("created: %v", a)
	}
	gen := e.expect(e.do("POST", base, tok, map[string]any{"service_id": "pets", "method": "*", "path": "/files/{path...}", "can_have_policy": false}), 201).json(t)
	if gen["id"] == "" || gen["can_have_policy"] != false || fmt.Sprint(gen["data_classifications"]) != "[]" {
		t.Fatalf("generated: %v", gen)
	}
	// The same method and an equivalent path in the same service conflict;
	// another method or another service do not.
	r := e.do("POST", base, tok, map[string]any{"service_id": "pets", "method": "GET", "path": "/pets/{petId}"})
	if r.status != 409 || r.errorCode(t) != httpapi.CodeAlreadyExists || !contains(r.json(t)["error"], `"get-pet"`, "method GET and path /pets/{id}") {
		t.Fatalf("equivalent path: %d %s", r.status, r.body)
	}
	e.expect(e.do("POST", base, tok, map[string]any{"id": "put-pet", "service_id": "pets", "method": "PUT", "path": "/pets/{petId}"}), 201)
	e.expect(e.do("POST", base, tok, map[string]any{"id": "shop-pet", "service_id": "shop", "method": "GET", "path": "/pets/{id}", "data_classifications": []string{"pii"}}), 201)
	e.expect(e.do("POST", base, tok, map[string]any{"id": "get-pet", "service_id": "shop", "method": "GET", "path": "/other"}), 409)

	before := e.snapshot()
	for _, bad := range []struct {
		body  map[string]any
		field string
	}{
		{map[string]any{"method": "GET", "path": "/a"}, "service_id"},
		{map[string]any{"service_id": "ghost", "method": "GET", "path": "/a"}, "service_id"},
		{map[string]any{"service_id": "bad id", "method": "GET", "path": "/a"}, "service_id"},
		{map[string]any{"service_id": "pets", "path": "/a"}, "method"},
		{map[string]any{"service_id": "pets", "method": "FETCH", "path": "/a"}, "method"},
		{map[string]any{"service_id": "pets", "method": "GET"}, "path"},
		{map[string]any{"service_id": "pets", "method": "GET", "path": "a"}, "path"},
		{map[string]any{"service_id": "pets", "method": "GET", "path": "/files/{name}.{ext}"}, "path"},
		{map[string]any{"service_id": "pets", "method": "GET", "path": "/a/{rest...}/b"}, "path"},
		{map[string]any{"service_id": "pets", "method": "GET", "path": "/a", "policy_id": "ghost"}, "policy_id"},
		{map[string]any{"service_id": "pets", "method": "GET", "path": "/a", "policy_id": "block", "can_have_policy": false}, "policy_id"},
		{map[string]any{"service_id": "pets", "method": "GET", "path": "/a", "data_classifications": []string{""}}, "data_classifications[0]"},
		{map[string]any{"service_id": "pets", "method": "GET", "path": "/a", "data_classifications": []string{"a", "a"}}, "data_classifications[1]"},
		{map[string]any{"service_id": "pets", "method": "GET", "path": "/a", "data_classifications": []string{strings.Repeat("x", 129)}}, "data_classifications[0]"},
		{map[string]any{"service_id": "pets", "method": "GET", "path": "/a", "position": -1}, "position"},
		{map[string]any{"service_id": "pets", "method": "GET", "path": "/a", "position": "first"}, "position"},
		{map[string]any{"service_id": "pets", "method": "GET", "path": "/a", "public": "yes"}, "public"},
		{map[string]any{"service_id": "pets", "method": "GET", "path": "/a", "tenant_id": "other"}, "tenant_id"},
		{map[string]any{"service_id": "pets", "method": "GET", "path": "/a", "id": "no/slash"}, "id"},
		{map[string]any{"service_id": "pets", "method": "GET", "path": "/a", "server_id": "s"}, "server_id"},
	} {
		e.expectFieldError(e.do("POST", base, tok, bad.body), bad.field)
	}
	e.requireUnchanged(t, before, "a rejected request changed the store")

	// PATCH: the seed's {policy_id, data_classifications} update keeps the
	// route. PUT replaces the whole API: a partial body is a 400 naming
	// the missing field, never a silent reset of the others.
	e.expectFieldError(e.do("PUT", base+"/get-pet", tok, map[string]any{"public": false}), "method")
	got := e.expect(e.do("GET", base+"/get-pet", tok, nil), 200)
	etag := got.header.Get("ETag")
	prev := got.json(t)
	upd := e.expect(e.do("PATCH", base+"/get-pet", tok, map[string]any{"data_classifications": []string{"pii"}}, "If-Match", etag, "Content-Type", admin.MergePatchType), 200).json(t)
	if upd["method"] != "GET" || upd["path"] != "/pets/{id}" || upd["position"] != float64(2) || upd["policy_id"] != prev["policy_id"] ||
		fmt.Sprint(upd["labels"]) != fmt.Sprint(prev["labels"]) || fmt.Sprint(upd["data_classifications"]) != "[pii]" {
		t.Fatalf("update: %v", upd)
	}
	e.expect(e.do("PATCH", base+"/get-pet", tok, map[string]any{"policy_id": "block"}, "If-Match", etag, "Content-Type", admin.MergePatchType), 412)
	// Moving onto another API's route conflicts; a route change is allowed.
	if r := e.do("PATCH", base+"/get-pet", tok, map[string]any{"method": "PUT", "path": "/pets/{x}"}, "Content-Type", admin.MergePatchType); r.status != 409 || !contains(r.json(t)["error"], `"put-pet"`) {
		t.Fatalf("route conflict on update: %d %s", r.status, r.body)
	}
	moved := e.expect(e.do("PATCH", base+"/get-pet", tok, map[string]any{"path": "/pets/{petId}", "policy_id": "block", "data_classifications": []string{"pii"}}, "Content-Type", admin.MergePatchType), 200).json(t)
	if moved["path"] != "/pets/{petId}" || moved["policy_id"] != "block" {
		t.Fatalf("moved: %v", moved)
	}
	before = e.snapshot()
	e.expectFieldError(e.do("PATCH", base+"/get-pet", tok, map[string]any{"service_id": "shop"}, "Content-Type", admin.MergePatchType), "service_id")
	e.expectFieldError(e.do("PATCH", base+"/get-pet", tok, map[string]any{"policy_id": "ghost"}, "Content-Type", admin.MergePatchType), "policy_id")
	e.expectFieldError(e.do("PATCH", base+"/get-pet", tok, map[string]any{"path": "nope"}, "Content-Type", admin.MergePatchType), "path")
	e.expectFieldError(e.do("PATCH", base+"/get-pet", tok, map[string]any{"id": "other"}, "Content-Type", admin.MergePatchType), "id")
	e.expectFieldError(e.do("PATCH", base+"/"+gen["id"].(string), tok, map[string]any{"policy_id": "block"}, "Content-Type", admin.MergePatchType), "policy_id")
	e.requireUnchanged(t, before, "a rejected update changed the store")
	e.expect(e.do("PUT", base+"/ghost", tok, map[string]any{"policy_id": "block"}), 404)

	// Lists: tenant-wide with filters, per service with data classification filters.
	list := func(path string) []string {
		t.Helper()
		return ids(items(t, e.expect(e.do("GET", path, tok, nil), 200).json(t), "apis"))
	}
	for _, c := range []struct{ query, want string }{
		{"", "[put-pet " + gen["id"].(string) + " get-pet shop-pet]"},
		{"?service_id=shop", "[shop-pet]"},
		{"?policy_id=block", "[get-pet]"},
		{"?data_classification=pii", "[get-pet shop-pet]"},
		{"?without_data_classifications=true", "[put-pet " + gen["id"].(string) + "]"},
		{"?service_id=pets&data_classification=pii", "[get-pet]"},
	} {
		if got := fmt.Sprint(list(base + c.query)); got != c.want {
			t.Errorf("GET apis%s: %s, want %s", c.query, got, c.want)
		}
	}
	e.expect(e.do("PATCH", base+"/shop-pet", tok, map[string]any{"data_classifications": []string{"pii", "gdpr"}}, "Content-Type", admin.MergePatchType), 200)
	for _, q := range []string{"?data_classification=pii&data_classification=gdpr", "?data_classification=gdpr,pii"} {
		if got := fmt.Sprint(list("/api/admin/acme/services/shop/apis" + q)); got != "[shop-pet]" {
			t.Errorf("all classifications %s: %s", q, got)
		}
		if got := fmt.Sprint(list("/api/admin/acme/services/pets/apis" + q)); got != "[]" {
			t.Errorf("all classifications %s: %s", q, got)
		}
	}
	e.expectFieldError(e.do("GET", base+"?without_data_classifications=maybe", tok, nil), "without_data_classifications")
	e.expectFieldError(e.do("GET", base+"?without_data_classifications=true&data_classification=pii", tok, nil), "without_data_classifications")
	e.expectFieldError(e.do("GET", base+"?service_id=bad%20id", tok, nil), "service_id")
	e.expectFieldError(e.do("GET", base+"?after=garbage", tok, nil), "after")
	e.expect(e.do("GET", "/api/admin/acme/services/ghost/apis", tok, nil), 404)

	// Paging walks the same order.
	var walked []string
	next := ""
	for pages := 0; ; pages++ {
		m := e.expect(e.do("GET", base+"?limit=3&after="+next, tok, nil), 200).json(t)
		if m["total"] != float64(4) || pages > 3 {
			t.Fatalf("page: %v", m)
		}
		walked = append(walked, ids(items(t, m, "apis"))...)
		if next = m["next"].(string); next == "" {
			break
		}
	}
	if fmt.Sprint(walked) != fmt.Sprint(list(base)) {
		t.Fatalf("paged walk %v differs from %v", walked, list(base))
	}

	// Tenant isolation.
	e.expect(e.do("GET", "/api/admin/other/apis/get-pet", rootToken, nil), 404)
	if r := e.do("GET", "/api/admin/other/apis", tok, nil); r.status != 403 {
		t.Fatalf("acme token on other tenant: %d", r.status)
	}
	e.expectFieldError(e.do("POST", "/api/admin/other/apis", rootToken, map[string]any{"service_id": "pets", "method": "GET", "path": "/a"}), "service_id")

	e.expect(e.do("DELETE", base+"/get-pet", tok, nil, "If-Match", `"1"`), 412)
	e.expect(e.do("DELETE", base+"/get-pet", tok, nil), 204)
	e.expect(e.do("GET", base+"/get-pet", tok, nil), 404)
	e.expect(e.do("DELETE", base+"/get-pet", tok, nil), 404)
	// The freed route can be taken again.
	e.expect(e.do("POST", base, tok, map[string]any{"service_id": "pets", "method": "GET", "path": "/pets/{id}"}), 201)
}

func TestAPIListOrder(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	tok := e.credential("acme")
	e.expect(e.do("POST", "/api/admin/acme/services", tok, map[string]any{"id": "pets", "name": "Pets", "url": "http://pets"}), 201)
	for _, a := range []struct {
		id, method, path string
		position         int
	}{
		{"a", "GET", "/{rest...}", 0},
		{"b", "*", "/pets/{id}", 0},
		{"c", "GET", "/pets/{id}", 0},
		{"d", "GET", "/pets/mine", 0},
		{"e", "GET", "/", 1},
	} {
		e.expect(e.do("POST", "/api/admin/acme/apis", tok, map[string]any{"id": a.id, "service_id": "pets", "method": a.method, "path": a.path, "position": a.position}), 201)
	}
	got := ids(items(t, e.expect(e.do("GET", "/api/admin/acme/services/pets/apis", tok, nil), 200).json(t), "apis"))
	// position first, then the more specific path, then an exact method before "*"
	if fmt.Sprint(got) != "[d c b a e]" {
		t.Fatalf("order: %v", got)
	}
}

// contains reports whether v is a string holding every part.
func contains(v any, parts ...string) bool {
	s, ok := v.(string)
	for _, p := range parts {
		ok = ok && strings.Contains(s, p)
	}
	return ok
}
