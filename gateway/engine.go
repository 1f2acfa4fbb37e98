// Package gateway is the authorizer: an Envoy ext_authz gRPC service (and an
// optional reverse proxy) deciding in-process with OPA. Each bundle revision
// is activated once into an Engine — routing index, one prepared query per
// policy, token validation — and swapped in atomically; a Check routes in Go
// (or takes Envoy's context extensions), validates the bearer token in Go and
// evaluates only the bound policy. The decision is the same document the
// bundle's pure-Rego entrypoint computes (data.gatehouse.authz.decision).
package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"sort"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/topdown"

	"github.com/gatehouse-dev/gatehouse/gateway/token"
	"github.com/gatehouse-dev/gatehouse/policies"
	"github.com/gatehouse-dev/gatehouse/routing"
)

// TokenInfo is what policies see as input.gatehouse.token.
type TokenInfo = token.Info

// TokenValidator validates bearer tokens on the fast path.
type TokenValidator interface {
	// Info returns the token information for an Authorization header value.
	Info(ctx context.Context, authorization string) TokenInfo
	// Close releases background work (key refresh).
	Close()
}

// Source is one bundle revision's content.
type Source struct {
	TenantID  string
	GatewayID string
	Revision  string
	Modules   map[string]*ast.Module
	Data      map[string]any
}

// SourceFromCompiled adapts the compiler's output (in-process serving).
func SourceFromCompiled(c *policies.Compiled, revision string) (*Source, error) {
	mods := make(map[string]*ast.Module, len(c.Modules))
	for _, m := range c.Modules {
		pm, err := ast.ParseModuleWithOpts(m.Path, m.Source, ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", m.Path, err)
		}
		mods[m.Path] = pm
	}
	return &Source{TenantID: c.TenantID, GatewayID: c.GatewayID, Revision: revision, Modules: mods, Data: c.Data}, nil
}

// Engine is one activated bundle revision: read-only once built, shared by
// concurrent checks.
type Engine struct {
	TenantID  string
	GatewayID string
	Revision  string

	cfg      *policies.BundleConfig
	table    *routing.Table
	rego     *policies.Engine
	policies map[string]rego.PreparedEvalQuery // by policy id
	tokens   TokenValidator
	owned    map[string]bool // owned request header names
	terms    engineTerms
}

// NewEngine activates a bundle: it parses the configuration, builds the
// routing index and prepares one query per policy. tokens may be nil (no
// token is then ever valid); it is given the bundle's revocations (see
// RevocationEnforcer). The engine keeps src.Data so that it can
// also evaluate the bundle's pure-Rego entrypoint (tests compare the two);
// the follower's activations do not (newEngine).
func NewEngine(ctx context.Context, src *Source, tokens TokenValidator) (*Engine, error) {
	cfg, err := policies.ParseEngineConfig(src.Data)
	if err != nil {
		return nil, err
	}
	if err := checkRevocations(cfg, tokens); err != nil {
		return nil, err
	}
	e, err := newEngine(ctx, src, cfg, tokens, true)
	if err != nil {
		return nil, err
	}
	setRevocations(cfg, tokens)
	return e, nil
}

// newEngine is NewEngine for the configuration parsed from src.Data
// (policies.ParseEngineConfig: its Routing is empty). The policies'
// store holds only the data they can read (policies.NewEngineForQueries);
// keepData keeps src.Data for the pure-Rego entrypoint, which is
// otherwise unavailable.
func newEngine(ctx context.Context, src *Source, cfg *policies.BundleConfig, tokens TokenValidator, keepData bool) (*Engine, error) {
	table, err := routingTable(cfg)
	if err != nil {
		return nil, err
	}
	queries := make([]string, 0, len(cfg.Policies))
	for _, p := range cfg.Policies {
		queries = append(queries, policies.PolicyPackagePrefix+p.Package)
	}
	re, err := policies.NewEngineForQueries(ctx, src.Modules, src.Data, queries, keepData)
	if err != nil {
		return nil, err
	}
	e := &Engine{TenantID: cfg.Tenant.ID, GatewayID: cfg.Gateway.ID, Revision: src.Revision,
		cfg: cfg, table: table, rego: re, policies: make(map[string]rego.PreparedEvalQuery, len(cfg.Policies)), tokens: tokens,
		owned: cfg.OwnedHeaders()}
	e.terms = newEngineTerms(cfg, readsParsedBody(src.Modules))
	for id, p := range cfg.Policies {
		pq, err := re.PrepareTerm(ctx, policies.PolicyPackagePrefix+p.Package)
		if err != nil {
			return nil, fmt.Errorf("policy %s: %w", id, err)
		}
		e.policies[id] = pq
	}
	return e, nil
}

// routingTable rebuilds the gateway's routing table from the bundle's
// services and APIs with the compiler's own function, so the order is the
// one the bundle's Rego and the Envoy routes use.
func routingTable(cfg *policies.BundleConfig) (*routing.Table, error) {
	byService := map[string]*routing.ServiceRoutes{}
	var services []routing.ServiceRoutes
	for _, id := range sortedKeys(cfg.Services) {
		s := cfg.Services[id]
		services = append(services, routing.ServiceRoutes{ServiceID: s.ID, Hosts: s.Hosts})
	}
	for i := range services {
		byService[services[i].ServiceID] = &services[i]
	}
	for _, id := range sortedKeys(cfg.APIs) {
		a := cfg.APIs[id]
		if sr := byService[a.ServiceID]; sr != nil {
			sr.APIs = append(sr.APIs, routing.APIRoute{APIID: a.ID, Method: a.Method, Path: a.Path})
		}
	}
	return routing.Build(services)
}

// Config is the bundle's configuration (read-only). Its Routing is empty:
// Routes is the routing index built from its services and APIs.
func (e *Engine) Config() *policies.BundleConfig { return e.cfg }

// KeyProblems lists the engine's token issuers whose keys cannot be had
// now (a token validator that reports them, such as *token.Verifier);
// nil otherwise.
func (e *Engine) KeyProblems() []token.KeyProblem {
	if r, ok := e.tokens.(interface{ KeyProblems() []token.KeyProblem }); ok {
		return r.KeyProblems()
	}
	return nil
}

// PolicyQuery is the prepared query of a policy of the bundle (its whole
// package document), as checks evaluate it.
func (e *Engine) PolicyQuery(policyID string) (rego.PreparedEvalQuery, bool) {
	pq, ok := e.policies[policyID]
	return pq, ok
}

// Routes is the bundle's routing table (read-only).
func (e *Engine) Routes() *routing.Table { return e.table }

// Decision is the outcome of one check: the decision document of
// data.gatehouse.authz.decision.
type Decision struct {
	Allowed                bool
	HTTPStatus             int
	Headers                map[string]any
	ResponseHeadersToAdd   map[string]any
	RequestHeadersToRemove []any
	Body                   string
	DynamicMetadata        map[string]any
	Reason                 string
	APIID                  string
	ServiceID              string
	PolicyID               string
	DryRun                 bool
	PolicyAllowed          bool
	// Unauthenticated is true when the denial is for a missing or invalid
	// token (HTTP 401).
	Unauthenticated bool
	// Token is the request's bearer token as the policy saw it
	// (input.gatehouse.token); TokenError says why a present token is
	// invalid (nil otherwise) and TokenReason is its token.Reason. They
	// go into decision logs, never to the client.
	Token       TokenInfo
	TokenError  error
	TokenReason string
	// RouteParams are the path parameters of the matched API's template.
	RouteParams map[string]string
	// BoundPolicyID is the policy the matched API is bound to; PolicyID
	// differs from it only for a request evaluated with another policy
	// (Request.EvaluateWith).
	BoundPolicyID string
	// req is the request decided (its Input is what the policy saw).
	req *Request
}

// Input is the input document the policy saw (or would have seen: it is
// built on first use when no policy ran), as an OPA value; nil for a
// decision made without a request.
func (d *Decision) Input() ast.Value {
	if d.req == nil {
		return nil
	}
	return d.req.Input()
}

// InputDocument is Input with JSON types (nil without a request).
func (d *Decision) InputDocument() map[string]any {
	return jsonObject(d.Input())
}

// Document is the decision as the Rego entrypoint returns it.
func (d *Decision) Document() map[string]any {
	return map[string]any{
		"allowed": d.Allowed, "http_status": d.HTTPStatus, "headers": d.Headers,
		"response_headers_to_add": d.ResponseHeadersToAdd, "request_headers_to_remove": d.RequestHeadersToRemove,
		"body": d.Body, "dynamic_metadata": d.DynamicMetadata, "reason": d.Reason,
		"api_id": d.APIID, "service_id": d.ServiceID, "policy_id": d.PolicyID,
		"dry_run": d.DryRun, "policy_allowed": d.PolicyAllowed,
	}
}

// outcome is a decision before dry-run is applied.
type outcome struct {
	allowed                bool
	status                 int
	reason                 string
	headers                map[string]any
	responseHeadersToAdd   map[string]any
	requestHeadersToRemove []any
	body                   string
	dynamicMetadata        map[string]any
}

// Decide evaluates a request. The policy input (the canonical request with
// input.gatehouse) is built once, as an OPA value, and only when the bound
// policy runs (or the decision log asks for it); only the bound policy's
// query runs.
func (e *Engine) Decide(ctx context.Context, req *Request) (*Decision, error) {
	h := req.attrs.GetRequest().GetHttp()
	canon := policies.Canonicalize(h.GetPath(), maps.Keys(h.GetHeaders()), e.owned)
	req.Path, req.RawQuery, req.PathError, req.Refused, req.OwnedHeaders = canon.Path, canon.RawQuery, canon.PathError, canon.Refused, canon.OwnedPresent
	var (
		route  *routing.Route
		params map[string]string
		found  bool
	)
	if req.PathError == nil { // a refused path is never routed
		route, params, found = e.route(req)
	}
	var api policies.APIData
	if found {
		api = e.cfg.APIs[route.APIID]
	}
	boundPolicy := api.PolicyID
	if found && req.policyAs != "" {
		api.PolicyID = req.policyAs
	}
	var (
		tok    TokenInfo
		tokErr error
	)
	switch c, checks := e.tokens.(tokenChecker); {
	case checks:
		tok, tokErr = c.Check(ctx, req.Authorization)
	case e.tokens != nil:
		tok = e.tokens.Info(ctx, req.Authorization)
	default:
		if _, ok := token.Bearer(req.Authorization); ok {
			tok, tokErr = TokenInfo{Present: true}, errNoIssuers
		}
	}
	view := &inputView{canon: canon, owned: e.owned, parseBody: e.terms.parseBody, gatehouse: e.terms.gatehouse}
	if found {
		view.gatehouse = e.terms.routed(route.APIID, params, tok)
	}
	req.view = view

	var o outcome
	policy, hasPolicy := e.cfg.Policies[api.PolicyID]
	switch {
	case req.Refused != nil:
		o = outcome{status: req.Refused.Status, reason: req.Refused.Reason}
	case !found && e.cfg.Gateway.AllowUnmatchedRoutes:
		o = outcome{allowed: true, status: 200, reason: fmt.Sprintf("no API matches %s %s; the gateway allows unmatched routes", req.Method, req.Path)}
	case !found:
		o = outcome{status: 404, reason: fmt.Sprintf("no API matches %s %s", req.Method, req.Path)}
	case api.PolicyID == "" && api.Public:
		// Before the token: Envoy does not call the authorizer on public
		// routes, so a token there must not matter here either.
		o = outcome{allowed: true, status: 200, reason: "public API"}
	case tok.Present && !tok.Valid:
		o = outcome{status: 401, reason: "invalid bearer token", headers: map[string]any{"www-authenticate": e.invalidTokenChallenge(tokErr)}}
	case api.PolicyID == "":
		o = outcome{status: 403, reason: fmt.Sprintf("API %s has no policy", api.ID)}
	case !hasPolicy:
		o = outcome{status: 403, reason: fmt.Sprintf("policy %s is missing from the bundle", api.PolicyID)}
	default:
		var err error
		if o, err = e.evalPolicy(ctx, api, tok, req.Input()); err != nil {
			return nil, err
		}
	}

	// Dry-run never lets a refused request through: there is no canonical
	// request to forward.
	dry := (e.cfg.Gateway.DryRun || (hasPolicy && policy.DryRun)) && req.Refused == nil
	d := &Decision{
		Allowed: dry || o.allowed, Reason: o.reason, DryRun: dry, PolicyAllowed: o.allowed,
		ResponseHeadersToAdd: orEmptyMap(o.responseHeadersToAdd), RequestHeadersToRemove: orEmptyList(o.requestHeadersToRemove),
		DynamicMetadata: orEmptyMap(o.dynamicMetadata), req: req,
		Token: tok, TokenError: tokErr,
	}
	if tok.Present && !tok.Valid {
		d.TokenReason = invalidReason(tokErr)
	}
	if found {
		d.APIID, d.ServiceID, d.PolicyID, d.BoundPolicyID = route.APIID, route.ServiceID, api.PolicyID, boundPolicy
		d.RouteParams = params
	}
	d.HTTPStatus = 200
	if !d.Allowed {
		d.HTTPStatus, d.Body = o.status, o.body
		d.Unauthenticated = o.status == 401
	}
	d.Headers = map[string]any{}
	if o.allowed == d.Allowed {
		d.Headers = orEmptyMap(o.headers)
	}
	if d.Allowed {
		d.RequestHeadersToRemove = append(d.RequestHeadersToRemove,
			policies.OwnedHeadersToRemove(req.OwnedHeaders, d.Headers, d.RequestHeadersToRemove)...)
	}
	return d, nil
}

// invalidTokenChallenge is the WWW-Authenticate of a 401 for an invalid
// token (RFC 6750): error="invalid_token", with the reason
// (token.Reason) as error_description only when the gateway exposes token
// errors to clients (expose_token_errors; the Rego entrypoint answers
// alike).
func (e *Engine) invalidTokenChallenge(err error) string {
	if e.cfg.Gateway.ExposeTokenErrors {
		if reason := invalidReason(err); reason != "" {
			return `Bearer error="invalid_token", error_description="` + reason + `"`
		}
	}
	return `Bearer error="invalid_token"`
}

// invalidReason is token.Reason of a present, invalid token's error
// (ReasonInvalid when the validator gave none).
func invalidReason(err error) string {
	if err == nil {
		return token.ReasonInvalid
	}
	return token.Reason(err)
}

// tokenChecker is a TokenValidator that also says why a token is invalid
// (*token.Verifier).
type tokenChecker interface {
	Check(ctx context.Context, authorization string) (TokenInfo, error)
}

// errNoIssuers: an engine without a token validator trusts no issuer.
var errNoIssuers = fmt.Errorf("%w: the gateway trusts no token issuer", token.ErrIssuer)

// route finds the request's API: the one Envoy's context extensions name
// (when it is in this bundle and the tenant matches), else by matching.
func (e *Engine) route(req *Request) (*routing.Route, map[string]string, bool) {
	if id, ok := req.ContextExtensions["api"]; ok {
		tenant, hasTenant := req.ContextExtensions["tenant"]
		if !hasTenant || tenant == e.cfg.Tenant.ID {
			if r, ok := e.table.Route(id); ok {
				params, _ := r.Template.Match(routing.SplitPath(req.Path))
				return r, params, true
			}
		}
	}
	return e.table.Match(req.Method, req.Host, req.Path)
}

func (e *Engine) evalPolicy(ctx context.Context, api policies.APIData, tok TokenInfo, input ast.Value) (outcome, error) {
	pq := e.policies[api.PolicyID]
	// The gateway's deadline bounds the evaluation; OPA stops at it.
	timeout := e.cfg.Gateway.PolicyTimeout()
	evalCtx, cancel := policies.WithTimeout(ctx, timeout)
	// OPA would otherwise start a goroutine per evaluation to watch the
	// context; a callback on the context cancels it instead.
	stop := topdown.NewCancel()
	unwatch := context.AfterFunc(evalCtx, stop.Cancel)
	rs, err := pq.Eval(evalCtx, rego.EvalParsedInput(input), rego.EvalExternalCancel(stop), rego.EvalMetrics(noMetrics))
	unwatch()
	timedOut := policies.TimedOut(evalCtx)
	cancel()
	if err != nil && timedOut {
		return outcome{}, &policies.TimeoutError{PolicyID: api.PolicyID, APIID: api.ID, ServiceID: api.ServiceID, Timeout: timeout}
	}
	if err != nil {
		return outcome{}, fmt.Errorf("policy %s: %w", api.PolicyID, err)
	}
	var r ast.Object
	if len(rs) == 1 && len(rs[0].Expressions) == 1 {
		if t, ok := rs[0].Expressions[0].Value.(*ast.Term); ok {
			r, _ = t.Value.(ast.Object)
		}
	}
	if r == nil {
		r = ast.NewObject()
	}
	o := outcome{allowed: ast.Boolean(true).Equal(member(r, resultAllow))}
	status, statusSet := number(member(r, resultHTTPStatus))
	switch {
	case statusSet:
		o.status = status
	case o.allowed:
		o.status = 200
	case !tok.Present:
		o.status = 401
	default:
		o.status = 403
	}
	if s, ok := member(r, resultReason).(ast.String); ok {
		o.reason = string(s)
	} else if o.allowed {
		o.reason = "allowed by policy " + api.PolicyID
	} else {
		o.reason = "denied by policy " + api.PolicyID
	}
	policyHeaders, _ := jsonMember(r, resultHeaders).(map[string]any)
	switch {
	case o.allowed:
		o.headers = union(claimHeaders(api.ClaimsToHeaders, tok), policyHeaders)
	case o.status == 401 && !namesChallenge(policyHeaders):
		// A 401, the default one or the policy's, asks for a bearer token
		// (RFC 6750) unless the policy names a challenge of its own.
		o.headers = union(map[string]any{"www-authenticate": "Bearer"}, policyHeaders)
	default:
		o.headers = policyHeaders
	}
	o.responseHeadersToAdd, _ = jsonMember(r, resultResponseHeadersToAdd).(map[string]any)
	o.requestHeadersToRemove, _ = jsonMember(r, resultRequestHeadersToRemove).([]any)
	if s, ok := member(r, resultBody).(ast.String); ok {
		o.body = string(s)
	}
	o.dynamicMetadata, _ = jsonMember(r, resultDynamicMetadata).(map[string]any)
	return o, nil
}

// noMetrics is OPA's no-op metrics: the evaluation's timers are not read.
var noMetrics = metrics.NoOp()

// Members of a policy's result object.
var (
	resultAllow                  = ast.StringTerm("allow")
	resultHTTPStatus             = ast.StringTerm("http_status")
	resultReason                 = ast.StringTerm("reason")
	resultHeaders                = ast.StringTerm("headers")
	resultResponseHeadersToAdd   = ast.StringTerm("response_headers_to_add")
	resultRequestHeadersToRemove = ast.StringTerm("request_headers_to_remove")
	resultBody                   = ast.StringTerm("body")
	resultDynamicMetadata        = ast.StringTerm("dynamic_metadata")
)

// member is an object's member (nil when absent).
func member(obj ast.Object, key *ast.Term) ast.Value {
	if t := obj.Get(key); t != nil {
		return t.Value
	}
	return nil
}

// jsonMember is an object's member with JSON types (nil when absent or
// not representable).
func jsonMember(obj ast.Object, key *ast.Term) any {
	v := member(obj, key)
	if v == nil {
		return nil
	}
	x, err := ast.JSON(v)
	if err != nil {
		return nil
	}
	return x
}

// claimHeaders forwards string claims, and arrays of strings joined with
// ",", as the API's claims_to_headers says.
func claimHeaders(mapping map[string]string, tok TokenInfo) map[string]any {
	if !tok.Valid || len(mapping) == 0 {
		return nil
	}
	out := map[string]any{}
	for claim, header := range mapping {
		var v any = tok.Claims
		for _, part := range strings.Split(claim, ".") {
			m, ok := v.(map[string]any)
			if !ok {
				v = nil
				break
			}
			v = m[part]
		}
		switch x := v.(type) {
		case string:
			out[header] = x
		case []any:
			parts := make([]string, 0, len(x))
			for _, p := range x {
				s, ok := p.(string)
				if !ok {
					parts = nil
					break
				}
				parts = append(parts, s)
			}
			if parts != nil {
				out[header] = strings.Join(parts, ",")
			}
		}
	}
	return out
}

// number reads an OPA number (json.Number) as an HTTP status.
func number(v any) (int, bool) {
	switch n := v.(type) {
	case ast.Number:
		return number(json.Number(n))
	case json.Number:
		if i, err := n.Int64(); err == nil {
			return int(i), true
		}
		if f, err := n.Float64(); err == nil {
			return int(f), true
		}
	case float64:
		return int(n), true
	case int:
		return n, true
	}
	return 0, false
}

func union(a, b map[string]any) map[string]any {
	out := make(map[string]any, len(a)+len(b))
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

func orEmptyMap(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}

func orEmptyList(l []any) []any {
	if l == nil {
		return []any{}
	}
	return l
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// namesChallenge says whether headers has a WWW-Authenticate, in any
// letter case.
func namesChallenge(headers map[string]any) bool {
	for k := range headers {
		if strings.EqualFold(k, "www-authenticate") {
			return true
		}
	}
	return false
}

// skipsAuthorizer says whether the request routes to a public API without a
// policy, on whose route Envoy's generated configuration disables
// ext_authz: Envoy then buffers no body and forwards it whatever its size,
// so the proxy does not answer 413 there either.
func (e *Engine) skipsAuthorizer(req *Request) bool {
	if req.PathError != nil {
		return false
	}
	r, _, ok := e.route(req)
	if !ok {
		return false
	}
	api := e.cfg.APIs[r.APIID]
	return api.Public && api.PolicyID == ""
}
