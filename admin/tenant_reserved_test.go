package admin_test

import (
	"strings"
	"testing"

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
