package admin_test

import (
	"strings"
	"testing"
)

// A tenant's advertised url answers: GET it with the tenant's credential.
func TestTenantURLAnswers(t *testing.T) {
	e := newEnv(t)
	created := e.createTenant("acme")
	e.createTenant("beta")
	url, _ := created["url"].(string)
	path, ok := strings.CutPrefix(url, "https://gh.example")
	if !ok || path == "" {
		t.Fatalf("tenant url %q is not under the public URL", url)
	}
	got := e.expect(e.do("GET", path, e.credential("acme"), nil), 200).json(t)
	if got["id"] != "acme" || got["url"] != url {
		t.Fatalf("GET %s: %v", path, got)
	}
	// The same url in every rendering; another tenant's credential is refused.
	listed := e.expect(e.do("GET", "/api/system/tenants/acme", rootToken, nil), 200).json(t)
	if listed["url"] != url {
		t.Fatalf("url differs: %v vs %v", listed["url"], url)
	}
	e.expect(e.do("GET", path, e.credential("beta"), nil), 403)
}
