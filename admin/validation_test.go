package admin_test

import (
	"slices"
	"testing"
)

// TestA400ListsEveryProblemOfTheBody: a body with several bad fields is
// one 400 naming each of them (details.errors), the first also in the
// message and details.field — for every kind's create and for an item of
// the configuration document — and writes nothing.
func TestA400ListsEveryProblemOfTheBody(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	e.expect(e.do("POST", "/api/admin/acme/services", rootToken, map[string]any{"id": "pets", "name": "Pets", "url": "http://pets"}), 201)
	badLabels := map[string]string{"-x-": "v"}
	for _, tc := range []struct {
		path   string
		body   map[string]any
		fields []string
	}{
		{"/api/admin/acme/services", map[string]any{"url": "ftp://x", "hosts": []string{"bad host"}, "labels": badLabels},
			[]string{"name", "url", "hosts[0]", "labels.-x-"}},
		{"/api/admin/acme/apis", map[string]any{"service_id": "pets", "method": "GET", "position": -1, "labels": badLabels},
			[]string{"path", "position", "labels.-x-"}},
		{"/api/admin/acme/gateways", map[string]any{"name": "", "type": "nginx", "listener_port": 70000, "labels": badLabels},
			[]string{"name", "type", "listener_port", "labels.-x-"}},
		{"/api/admin/acme/scopes", map[string]any{"name": "has space", "display_name": string(make([]byte, 300)), "labels": badLabels},
			[]string{"name", "display_name", "labels.-x-"}},
		{"/api/admin/acme/issuers", map[string]any{"name": "", "issuer": "https://idp.example", "labels": badLabels},
			[]string{"name", "audiences", "labels.-x-"}},
		{"/api/admin/acme/policies", map[string]any{"policy_name": "", "definition": goodRego, "labels": badLabels},
			[]string{"policy_name", "labels.-x-"}},
	} {
		before := e.snapshot()
		r := e.do("POST", tc.path, rootToken, tc.body)
		if r.status != 400 {
			t.Fatalf("POST %s: %d %s", tc.path, r.status, r.body)
		}
		m := r.json(t)
		d, _ := m["details"].(map[string]any)
		list, _ := d["errors"].([]any)
		var got []string
		for _, x := range list {
			got = append(got, x.(map[string]any)["field"].(string))
		}
		for _, f := range tc.fields {
			if !slices.Contains(got, f) {
				t.Errorf("POST %s: details.errors names %v, missing %q: %s", tc.path, got, f, r.body)
			}
		}
		if len(got) == 0 || d["field"] != got[0] || !contains(m["error"], got[0]) {
			t.Errorf("POST %s: the first problem is not the message and details.field: %s", tc.path, r.body)
		}
		e.requireUnchanged(t, before, "a refused create changed the store")
	}

	// In a configuration document, the problems of an item are named at
	// their place in it.
	doc := e.expect(e.do("GET", "/api/system/configuration?tid=acme", rootToken, nil), 200).json(t)
	svcs := doc["services"].([]any)
	svcs[0].(map[string]any)["url"] = "ftp://x"
	svcs[0].(map[string]any)["labels"] = badLabels
	r := e.do("PUT", "/api/system/configuration?tid=acme", rootToken, doc)
	d, _ := r.json(t)["details"].(map[string]any)
	list, _ := d["errors"].([]any)
	var got []string
	for _, x := range list {
		got = append(got, x.(map[string]any)["field"].(string))
	}
	if r.status != 400 || !slices.Contains(got, "services[0].url") || !slices.Contains(got, "services[0].labels.-x-") {
		t.Fatalf("configuration import with two bad fields: %d %v %s", r.status, got, r.body)
	}
}
