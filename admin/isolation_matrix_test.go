package admin_test

import (
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/admin"
	"github.com/gatehouse-dev/gatehouse/internal/httpapi"
)

// routeParam is a path parameter of a gin route (":uid", "*rest").
var routeParam = regexp.MustCompile(`[:*][A-Za-z_]+`)

// tenantRoute is a route of the tenant-scoped admin API with its tenant
// and every other parameter filled in.
func tenantRoute(path, tid string) string {
	path = strings.Replace(path, ":tid", tid, 1)
	return routeParam.ReplaceAllStringFunc(path, func(string) string { return "x1" })
}

// TestTenantIsolationMatrix walks every route of /api/admin/{tid}/… the
// server registers, whatever kind or feature added it: another tenant's
// credential gets 403 forbidden and changes nothing, and an unknown
// tenant is 404 not_found even for the system-wide token. A route added
// later is covered without touching this test.
func TestTenantIsolationMatrix(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	e.createTenant("other")
	otherTok := e.credential("other")
	var n int
	before := e.snapshot()
	for _, rt := range e.api.Routes() {
		if !strings.HasPrefix(rt.Path, "/api/admin/:tid/") && rt.Path != "/api/admin/:tid" {
			continue
		}
		n++
		ct := "application/json"
		if rt.Method == http.MethodPatch {
			ct = admin.MergePatchType
		}
		path := tenantRoute(rt.Path, "acme")
		if r := e.do(rt.Method, path, otherTok, map[string]any{"name": "x"}, "Content-Type", ct); r.status != http.StatusForbidden || r.errorCode(t) != httpapi.CodeForbidden {
			t.Errorf("%s %s with tenant other's credential: %d %s", rt.Method, path, r.status, r.body)
		}
		unknown := tenantRoute(rt.Path, "no-such-tenant")
		if r := e.do(rt.Method, unknown, rootToken, map[string]any{"name": "x"}, "Content-Type", ct); r.status != http.StatusNotFound || r.errorCode(t) != httpapi.CodeNotFound {
			t.Errorf("%s %s (unknown tenant) with the system token: %d %s", rt.Method, unknown, r.status, r.body)
		}
	}
	if n < 80 {
		t.Fatalf("only %d tenant routes were found: the walk is broken", n)
	}
	e.requireUnchanged(t, before, "requests another tenant's credential (or an unknown tenant) sent changed the store")
}
