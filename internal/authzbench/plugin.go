package authzbench

import (
	"context"
	"fmt"
	"net/url"
	"strings"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/util"
	"google.golang.org/genproto/googleapis/rpc/code"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/gatehouse-dev/gatehouse/policies"
)

// pluginEntry is the same policy as Policy written the way an
// opa-envoy-plugin user would: one entrypoint, the JWT verified in Rego with
// io.jwt.decode_verify, routing in Rego (the bundle's library).
const pluginEntry = `package envoy.authz

import data.gatehouse.lib.route

default allow := false

bearer := t if {
	h := input.attributes.request.http.headers.authorization
	startswith(h, "Bearer ")
	t := substring(h, 7, -1)
}

claims := c if {
	[valid, _, c] := io.jwt.decode_verify(bearer, {
		"cert": data.gatehouse.config.issuers[0].jwks,
		"iss": "` + Issuer + `",
		"aud": "` + Audience + `",
	})
	valid
}

scopes := split(claims.scope, " ")

read_methods := {"GET", "HEAD"}

allow if {
	route.found
	input.attributes.request.http.method in read_methods
	some r in claims.roles
	r in {"viewer", "editor", "admin"}
	"pets:read" in scopes
}

allow if {
	route.found
	not input.attributes.request.http.method in read_methods
	some r in claims.roles
	r in {"editor", "admin"}
	"pets:write" in scopes
	claims.tenant == "acme"
}
`

// PluginStyle evaluates checks as opa-envoy-plugin does: the CheckRequest
// converted to generic JSON (protojson), parsed_path and parsed_query
// added, one prepared entrypoint evaluated per request.
type PluginStyle struct {
	authv3.UnimplementedAuthorizationServer
	pq rego.PreparedEvalQuery
}

// NewPluginStyle prepares data.envoy.authz.allow over the fixture's bundle.
func (f *Fixture) NewPluginStyle(ctx context.Context) (*PluginStyle, error) {
	modules := append([]policies.Module{}, f.Compiled.Modules...)
	modules = append(modules, policies.Module{Path: "envoy/authz.rego", Source: pluginEntry})
	eng, err := policies.NewEngine(ctx, modules, f.Compiled.Data)
	if err != nil {
		return nil, err
	}
	pq, err := eng.Prepare(ctx, "data.envoy.authz.allow")
	if err != nil {
		return nil, err
	}
	return &PluginStyle{pq: pq}, nil
}

// Decide evaluates one request.
func (p *PluginStyle) Decide(ctx context.Context, req *authv3.CheckRequest) (bool, error) {
	raw, err := protojson.Marshal(req)
	if err != nil {
		return false, err
	}
	var input map[string]any
	if err := util.UnmarshalJSON(raw, &input); err != nil {
		return false, err
	}
	path, rawQuery, _ := strings.Cut(req.GetAttributes().GetRequest().GetHttp().GetPath(), "?")
	parts := strings.Split(strings.TrimLeft(path, "/"), "/")
	pp := make([]any, len(parts))
	for i, s := range parts {
		pp[i] = s
	}
	input["parsed_path"] = pp
	q, _ := url.ParseQuery(rawQuery)
	pq := map[string]any{}
	for k, vs := range q {
		l := make([]any, len(vs))
		for i, v := range vs {
			l[i] = v
		}
		pq[k] = l
	}
	input["parsed_query"] = pq
	v, err := ast.InterfaceToValue(input)
	if err != nil {
		return false, err
	}
	rs, err := p.pq.Eval(ctx, rego.EvalParsedInput(v))
	if err != nil {
		return false, err
	}
	if len(rs) != 1 {
		return false, fmt.Errorf("undefined decision")
	}
	allowed, _ := rs[0].Expressions[0].Value.(bool)
	return allowed, nil
}

// Check implements ext_authz the way the plugin answers a boolean decision.
func (p *PluginStyle) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	ok, err := p.Decide(ctx, req)
	if err != nil {
		return nil, err
	}
	c := code.Code_PERMISSION_DENIED
	if ok {
		c = code.Code_OK
	}
	return &authv3.CheckResponse{Status: &rpcstatus.Status{Code: int32(c)}}, nil
}
