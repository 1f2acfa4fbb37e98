package admin_test

import (
	"fmt"
	"testing"
)

// TestServiceCORS: a service's cors settings are stored, returned, kept
// by PUT and PATCH, and validated field by field (credentials with the "*"
// origin, unknown fields, bad origins) with the field named.
func TestServiceCORS(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	tok := e.credential("acme")
	base := "/api/admin/acme/services"
	cors := map[string]any{"allowed_origins": []string{"https://app.example.com", "http://localhost:3000"},
		"allowed_methods": []string{"GET", "POST"}, "allowed_headers": []string{"Authorization", "Content-Type"},
		"exposed_headers": []string{"X-Request-Id"}, "max_age": 600, "allow_credentials": true}
	svc := e.expect(e.do("POST", base, tok, map[string]any{"id": "pets", "name": "Pets", "url": "http://pets", "cors": cors}), 201).json(t)
	got, _ := svc["cors"].(map[string]any)
	if fmt.Sprint(got["allowed_origins"]) != "[https://app.example.com http://localhost:3000]" || got["max_age"] != float64(600) || got["allow_credentials"] != true {
		t.Fatalf("created: %v", svc)
	}
	r := e.expect(e.do("GET", base+"/pets", tok, nil), 200)
	if fmt.Sprint(r.json(t)["cors"]) != fmt.Sprint(svc["cors"]) {
		t.Fatalf("GET: %s", r.body)
	}
	patched := e.expect(e.do("PATCH", base+"/pets", tok, map[string]any{"cors": map[string]any{"max_age": 60}},
		"Content-Type", "application/merge-patch+json"), 200).json(t)
	if c, _ := patched["cors"].(map[string]any); c["max_age"] != float64(60) || c["allow_credentials"] != true {
		t.Fatalf("PATCH: %v", patched)
	}
	cleared := e.expect(e.do("PATCH", base+"/pets", tok, map[string]any{"cors": nil}, "Content-Type", "application/merge-patch+json"), 200).json(t)
	if _, ok := cleared["cors"]; ok {
		t.Fatalf("cors not cleared: %v", cleared)
	}

	for _, bad := range []struct {
		cors  any
		field string
	}{
		{map[string]any{"allowed_origins": []string{"*"}, "allow_credentials": true}, "cors.allow_credentials"},
		// The shared strict decoder names an unknown field by its own name.
		{map[string]any{"allowed_origins": []string{"*"}, "allow_anything": true}, "allow_anything"},
		{map[string]any{}, "cors.allowed_origins"},
		{map[string]any{"allowed_origins": []string{"https://app.example.com/path"}}, "cors.allowed_origins[0]"},
		{map[string]any{"allowed_origins": []string{"https://a.example", "HTTPS://B.example"}}, "cors.allowed_origins[1]"},
		{map[string]any{"allowed_origins": []string{"a.example"}}, "cors.allowed_origins[0]"},
		{map[string]any{"allowed_origins": []string{"https://a.example", "*"}}, "cors.allowed_origins[1]"},
		{map[string]any{"allowed_origins": []string{"https://a.example"}, "allowed_methods": []string{"FETCH"}}, "cors.allowed_methods[0]"},
		{map[string]any{"allowed_origins": []string{"https://a.example"}, "allowed_headers": []string{"bad header"}}, "cors.allowed_headers[0]"},
		{map[string]any{"allowed_origins": []string{"https://a.example"}, "max_age": -1}, "cors.max_age"},
		{map[string]any{"allowed_origins": []string{"https://a.example"}, "max_age": 86401}, "cors.max_age"},
	} {
		r := e.do("POST", base, tok, map[string]any{"name": "x", "url": "http://x", "cors": bad.cors})
		if r.status != 400 {
			t.Fatalf("%v: want 400, got %d: %s", bad.cors, r.status, r.body)
		}
		d, _ := r.json(t)["details"].(map[string]any)
		if d["field"] != bad.field {
			t.Fatalf("%v: want an error naming %q: %s", bad.cors, bad.field, r.body)
		}
	}
}
