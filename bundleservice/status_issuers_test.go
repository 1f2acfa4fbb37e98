package bundleservice_test

import (
	"fmt"
	"strings"
	"testing"
)

// TestStatusShowsTokenIssuerKeyProblems: an authorizer's report of token
// issuers whose keys it cannot fetch shows in the gateway's status, bounded.
func TestStatusShowsTokenIssuerKeyProblems(t *testing.T) {
	s := newSite(t, siteOptions{})
	token := s.bundleGateway()
	report := `{"labels":{"id":"authz-1"},"bundles":{"gatehouse":{"active_revision":"3"}},
		"token_issuers":{"idp":{"code":"keys_unavailable","message":"GET https://idp.example/jwks: HTTP 503","since":"2026-12-02T10:00:00Z","has_keys":false},
		"corp":{"code":"keys_unavailable","message":"` + strings.Repeat("x", 2000) + `","has_keys":true}}}`
	s.expect(s.do("POST", "/api/system/acme/gateways/edge/opa/status", token, report), 204)
	inst := s.opaStatus("acme", "edge")["instances"].([]any)[0].(map[string]any)
	errs := fmt.Sprint(inst["errors"])
	for _, want := range []string{
		"token issuer idp: GET https://idp.example/jwks: HTTP 503 (since 2026-12-02T10:00:00Z); its tokens are refused",
		"token issuer corp: xxx", "…; tokens are verified with the keys fetched before",
	} {
		if !strings.Contains(errs, want) {
			t.Errorf("errors %s lack %q", errs, want)
		}
	}
	if len(errs) > 1500 {
		t.Errorf("an issuer's message was kept unbounded (%d bytes)", len(errs))
	}

	// Many issuers: a bounded list and a count of the rest.
	var b strings.Builder
	for i := range 40 {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `"is-%02d":{"code":"keys_unavailable","message":"down"}`, i)
	}
	s.expect(s.do("POST", "/api/system/acme/gateways/edge/opa/status", token, `{"labels":{"id":"authz-1"},"token_issuers":{`+b.String()+`}}`), 204)
	inst = s.opaStatus("acme", "edge")["instances"].([]any)[0].(map[string]any)
	list := inst["errors"].([]any)
	if len(list) != 33 || !strings.Contains(fmt.Sprint(list[32]), "8 more cannot fetch their keys") {
		t.Fatalf("errors of 40 failing issuers: %d, last %v", len(list), list[len(list)-1])
	}
}
