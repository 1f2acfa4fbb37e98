package gateway

import (
	"context"
	"fmt"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/policies"
	"github.com/gatehouse-dev/gatehouse/routing/pathcorpus"
)

// TestTemplateCorpusInGoAndRego: for every corpus case, a gateway with the
// case's template as a public GET API (beside a denying "* /{p...}") routes
// the path — as GET and as HEAD — to that API with the corpus's parameters,
// both on the fast path and in the pure-Rego entrypoint, or to the
// catch-all when the corpus says the template does not match.
func TestTemplateCorpusInGoAndRego(t *testing.T) {
	ctx := context.Background()
	for _, c := range pathcorpus.TemplateCases() {
		cfg := &policies.Config{
			Revision: 1,
			Tenant:   policies.Object[model.TenantSpec]{ID: "acme", Spec: model.TenantSpec{Name: "Acme"}},
			Policies: diffPolicies,
			Gateways: []policies.Object[model.GatewaySpec]{{ID: "gw", Name: "gw", Spec: model.GatewaySpec{Type: model.GatewayEnvoy, PolicyTimeoutMS: model.MaxPolicyTimeoutMS}}},
			Services: []policies.Object[model.ServiceSpec]{{ID: "s", Name: "s", Spec: model.ServiceSpec{URL: "http://s"}}},
			APIs: []policies.Object[model.APISpec]{
				{ID: "tpl", Spec: model.APISpec{ServiceID: "s", Method: "GET", Path: c.Template, PolicyID: "by-header", CanHavePolicy: true}},
				{ID: "rest", Spec: model.APISpec{ServiceID: "s", Method: "*", Path: "/{p...}", PolicyID: "deny", CanHavePolicy: true}},
			},
		}
		eng, _ := randomEngine(t, cfg)
		for _, method := range []string{"GET", "HEAD"} {
			check := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
				Http: &authv3.AttributeContext_HttpRequest{Method: method, Host: "h", Path: c.Path,
					Headers: map[string]string{"x-key": "good"}}}}}
			got, err := eng.Decide(ctx, RequestFromCheck(check))
			if err != nil {
				t.Fatal(err)
			}
			want, err := eng.rego.Decision(ctx, RequestFromCheck(check).Document())
			if err != nil {
				t.Fatal(err)
			}
			if g, w := normalize(t, got.Document()), normalize(t, want); fmt.Sprint(g) != fmt.Sprint(w) {
				t.Fatalf("%s %s ~ %s: fast %v, rego %v", method, c.Template, c.Path, g, w)
			}
			wantAPI := "rest"
			if c.Params != nil {
				wantAPI = "tpl"
			}
			if got.APIID != wantAPI {
				t.Errorf("%s %s ~ %s: API %q, want %q", method, c.Template, c.Path, got.APIID, wantAPI)
				continue
			}
			if c.Params != nil {
				gh, _ := got.InputDocument()["gatehouse"].(map[string]any)
				if fmt.Sprint(gh["path_params"]) != fmt.Sprint(c.Params) {
					t.Errorf("%s %s ~ %s: params %v, want %v", method, c.Template, c.Path, gh["path_params"], c.Params)
				}
			}
		}
	}
}
