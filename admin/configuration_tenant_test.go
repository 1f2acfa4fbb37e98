package admin_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// A tenant's own admins export and import its configuration through
// /api/admin/{tid}/configuration — the same document and the same import
// as the system routes — and no other tenant's.
func TestTenantConfigurationRoutes(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	e.buildRichTenant("acme")
	e.createTenant("globex")
	cred := e.credential("acme")

	own := e.expect(e.do("GET", "/api/admin/acme/configuration", cred, nil), 200)
	if sys := e.exportConfig("acme"); !bytes.Equal(own.body, sys) {
		t.Fatal("the tenant route exports another document than the system route")
	}
	if own.header.Get("ETag") == "" {
		t.Fatal("no ETag")
	}

	// A plan (dry run) and an import with If-Match, as config apply does.
	var doc map[string]any
	if err := json.Unmarshal(own.body, &doc); err != nil {
		t.Fatal(err)
	}
	doc["scopes"] = []any{}
	plan := e.expect(e.do("PUT", "/api/admin/acme/configuration?dry_run=true", cred, doc), 200).json(t)
	if plan["dry_run"] != true || plan["base_etag"] != own.header.Get("ETag") {
		t.Fatalf("plan: %v", plan)
	}
	before := e.snapshot()
	e.expect(e.do("PUT", "/api/admin/acme/configuration", cred, doc, "If-Match", `"cfg-00000000000000000000000000000000"`), 412)
	e.requireUnchanged(t, before, "a refused import changed the store")
	e.expect(e.do("PUT", "/api/admin/acme/configuration", cred, doc, "If-Match", plan["base_etag"].(string)), 200)
	after := e.expect(e.do("GET", "/api/admin/acme/configuration", cred, nil), 200).json(t)
	if s, _ := after["scopes"].([]any); len(s) != 0 {
		t.Fatalf("scopes after the import: %v", after["scopes"])
	}

	// Isolation: acme's credential reaches neither globex's configuration
	// nor the system routes; the path names the tenant.
	e.expect(e.do("GET", "/api/admin/globex/configuration", cred, nil), 403)
	e.expect(e.do("PUT", "/api/admin/globex/configuration", cred, doc), 403)
	e.expect(e.do("GET", "/api/system/configuration?tid=acme", cred, nil), 403)
	r := e.do("GET", "/api/admin/acme/configuration?tid=globex", cred, nil)
	if r.status != 400 || !strings.Contains(string(r.body), "tid") {
		t.Fatalf("a tid query on the tenant route: %d %s", r.status, r.body)
	}
}
