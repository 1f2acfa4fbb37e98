package gateway

import (
	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/gatehouse-dev/gatehouse/policies"
)

// engineTerms are the parts of input.gatehouse that only depend on the
// bundle, made once per activation.
type engineTerms struct {
	// parseBody: a policy may read input.parsed_body (readsParsedBody).
	parseBody bool
	tenant    *ast.Term
	gateway   *ast.Term
	// gatehouse is input.gatehouse of a request that matched no API.
	gatehouse *ast.Term
	// apis holds each API's service_id and api_id terms.
	apis map[string][2]*ast.Term
}

func newEngineTerms(cfg *policies.BundleConfig, parseBody bool) engineTerms {
	t := engineTerms{parseBody: parseBody, tenant: ast.StringTerm(cfg.Tenant.ID), gateway: ast.StringTerm(cfg.Gateway.ID),
		apis: make(map[string][2]*ast.Term, len(cfg.APIs))}
	t.gatehouse = ast.ObjectTerm(ast.Item(keyTenant, t.tenant), ast.Item(keyGateway, t.gateway))
	for id, a := range cfg.APIs {
		t.apis[id] = [2]*ast.Term{ast.StringTerm(a.ServiceID), ast.StringTerm(a.ID)}
	}
	return t
}

// routed is input.gatehouse of a request routed to an API.
func (t *engineTerms) routed(apiID string, params map[string]string, tok TokenInfo) *ast.Term {
	api, ok := t.apis[apiID]
	if !ok {
		api = [2]*ast.Term{ast.StringTerm(""), ast.StringTerm(apiID)}
	}
	pp := make([][2]*ast.Term, 0, len(params))
	for k, v := range params {
		pp = append(pp, ast.Item(ast.StringTerm(k), ast.StringTerm(v)))
	}
	return ast.ObjectTerm(
		ast.Item(keyTenant, t.tenant), ast.Item(keyGateway, t.gateway),
		ast.Item(keyServiceID, api[0]), ast.Item(keyAPIID, api[1]),
		ast.Item(keyPathParams, ast.NewTerm(ast.NewObject(pp...))),
		ast.Item(keyToken, ast.NewTerm(tok.ASTValue())))
}
