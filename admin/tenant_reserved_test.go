package admin_test

import (
	"context"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/admin"
	"github.com/gatehouse-dev/gatehouse/model"
)

// TestReservedTenantIDsAreRefused: the first path segments the process
// serves itself (beside the authorization servers at /{tid}/{aid}/…) can
// never be a tenant's id: 400 naming id, and no tenant is created.
func TestReservedTenantIDsAreRefused(t *testing.T) {
	e := newEnv(t)
	for _, id := range model.ReservedTenantIDs() {
		r := e.do("POST", "/api/system/tenants", rootToken, map[string]any{"id": id, "name": id})
		if r.status != 400 || !strings.Contains(string(r.body), `"id"`) || !strings.Contains(string(r.body), "reserved") {
			t.Errorf("tenant %q: %d %s, want 400 naming id", id, r.status, r.body)
		}
		e.expect(e.do("GET", "/api/system/tenants/"+id, rootToken, nil), 404)
	}
	// A tenant whose id only starts like a reserved one is fine.
	e.expect(e.do("POST", "/api/system/tenants", rootToken, map[string]any{"id": "api-team", "name": "API team"}), 201)
}

// TestSystemTenantIsSystemWideOnly: the system tenant (whose server's
// tokens act system-wide) takes no tenant-bound credential, and only
// system-wide principals use its admin routes.
func TestSystemTenantIsSystemWideOnly(t *testing.T) {
	e := newEnv(t)
	if err := admin.EnsureSystemTenant(context.Background(), e.store); err != nil {
		t.Fatal(err)
	}
	e.expect(e.do("GET", "/api/admin/system/servers/system", rootToken, nil), 200)
	r := e.do("POST", "/api/system/tenants/system/credentials", rootToken, map[string]any{"name": "x"})
	if r.status != 400 || !strings.Contains(string(r.body), "system-wide") {
		t.Fatalf("a credential bound to tenant system: %d %s, want 400", r.status, r.body)
	}
	e.expect(e.do("POST", "/api/system/tenants", rootToken, map[string]any{"id": "acme", "name": "Acme"}), 201)
	cred := e.do("POST", "/api/system/tenants/acme/credentials", rootToken, map[string]any{"name": "ci"})
	e.expect(cred, 201)
	tok := cred.json(t)["token"].(string)
	e.expect(e.do("GET", "/api/admin/system/clients", tok, nil), 403)
	e.expect(e.do("GET", "/api/admin/acme/clients", tok, nil), 200)
}
