package gateway

import (
	"context"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/policies"
)

// A policy that uses another by its id (data.gatehouse.policies["<id>"],
// an id whose package name is hashed) decides alike on the fast path and
// in the bundle's Rego entrypoint.
func TestPoliciesUsingOthersByID(t *testing.T) {
	const keyCheck = "package policy\n\ndefault allow := false\n\nallow if input.attributes.request.http.headers[\"x-key\"] == \"k1\"\n\nreason := \"no key\" if not allow\n"
	const delegates = "package policy\n\nimport data.gatehouse.policies[\"key-check\"] as kc\n\ndefault allow := false\n\n" +
		"allow if kc.allow\n\nreason := kc.reason if not allow\n"
	c := testCompiled(t, func(cfg *policies.Config) {
		cfg.Policies = append(cfg.Policies,
			policies.Object[model.PolicySpec]{ID: "key-check", Name: "key-check", Spec: model.PolicySpec{Language: model.LanguageRego, Definition: keyCheck}},
			policies.Object[model.PolicySpec]{ID: "delegates", Name: "delegates", Spec: model.PolicySpec{Language: model.LanguageRego, Definition: delegates}})
		cfg.APIs = append(cfg.APIs, policies.Object[model.APISpec]{ID: "owners", Spec: model.APISpec{ServiceID: "pets", Method: "GET",
			Path: "/owners/{id}", PolicyID: "delegates"}})
	})
	if len(c.Skipped) > 0 {
		t.Fatalf("skipped: %v", c.Skipped)
	}
	src, err := SourceFromCompiled(c, "1")
	if err != nil {
		t.Fatal(err)
	}
	eng, err := NewEngine(context.Background(), src, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		key     string
		allowed bool
		reason  string
	}{{"k1", true, "allowed by policy delegates"}, {"nope", false, "no key"}} {
		check := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
			Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/owners/7", Headers: map[string]string{"x-key": tc.key}}}}}
		d, err := eng.Decide(context.Background(), RequestFromCheck(check))
		if err != nil {
			t.Fatal(err)
		}
		if d.Allowed != tc.allowed || d.Reason != tc.reason || d.PolicyID != "delegates" {
			t.Errorf("%s: fast path %+v", tc.key, d.Document())
		}
		want, err := eng.rego.Decision(context.Background(), RequestFromCheck(check).Document())
		if err != nil {
			t.Fatal(err)
		}
		if want["allowed"] != tc.allowed || want["reason"] != tc.reason {
			t.Errorf("%s: entrypoint %v", tc.key, want)
		}
	}
}
