// Package simulate runs one HTTP request through a gateway's pipeline, as
// the authorizer would decide it, and explains each stage: the canonical
// request, the route matched (API and path parameters) or why none, the
// bearer token's validation against the tenant's issuers with its precise
// reason, and the policy's decision with, for a denial, its first failing
// expression and the values of its operands.
//
// It is what the admin API's policy test endpoints and `gatehouse policy
// eval` run: the configuration is compiled into the gateway's bundle (the
// tested policy in place of its saved version), activated by the
// authorizer's own gateway.Activator and decided by gateway.Server.Decide,
// so the answer is the live gateway's, not an imitation of it.
package simulate

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"

	"github.com/gatehouse-dev/gatehouse/gateway"
	"github.com/gatehouse-dev/gatehouse/gateway/token"
	"github.com/gatehouse-dev/gatehouse/internal/field"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/policies"
	"github.com/gatehouse-dev/gatehouse/routing"
)

// Limits of a simulated request.
const (
	MaxBodyBytes   = 1 << 20
	MaxHeaders     = 128
	MaxHeaderBytes = 64 << 10
	MaxTargetBytes = 16 << 10
)

// AllServicesGateway is the gateway a request is simulated on when none
// is named: an Envoy gateway over every service of the tenant. Its id is
// none a tenant can give a gateway (ids start with a letter or digit).
const AllServicesGateway = "_all-services"

// Request is an HTTP request as a client sends it to the gateway.
type Request struct {
	Method string `json:"method"`
	// Path is the request target's path, as sent (it may carry a query
	// after '?', which Query then extends).
	Path string `json:"path"`
	// Query is a JSON string or object (see ParseQuery).
	Query json.RawMessage `json:"query,omitempty"`
	// Headers are the request's headers (names case-insensitive); Host
	// (or :authority) picks the service. Authorization carries the token.
	Headers map[string]string `json:"headers,omitempty"`
	Body    string            `json:"body,omitempty"`
}

// ParseQuery reads a request's query: a JSON string ("a=1&b=2", kept as
// it is, a leading '?' dropped) or an object of names to a string or a
// list of strings (encoded in name order). Empty or null is no query.
func ParseQuery(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return strings.TrimPrefix(s, "?"), nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		return "", fmt.Errorf("want a string or an object of strings or lists of strings")
	}
	v := url.Values{}
	for name, x := range obj {
		var one string
		if json.Unmarshal(x, &one) == nil {
			v.Add(name, one)
			continue
		}
		var many []string
		if err := json.Unmarshal(x, &many); err != nil {
			return "", fmt.Errorf("parameter %q: want a string or a list of strings", name)
		}
		for _, y := range many {
			v.Add(name, y)
		}
	}
	return v.Encode(), nil
}

// QueryString is a query for Request.Query.
func QueryString(q string) json.RawMessage {
	b, _ := json.Marshal(q)
	return b
}

// Validate checks the request; the field paths are under at.
func (r *Request) Validate(at *field.Path) field.ErrorList {
	var errs field.ErrorList
	switch {
	case r.Method == "":
		errs = append(errs, field.Required(at.Child("method")))
	case !isToken(r.Method):
		errs = append(errs, field.Invalid(at.Child("method"), "%q is not an HTTP method token", r.Method))
	}
	switch {
	case r.Path == "":
		errs = append(errs, field.Required(at.Child("path")))
	case !strings.HasPrefix(r.Path, "/"):
		errs = append(errs, field.Invalid(at.Child("path"), "must start with /"))
	case len(r.Path)+len(r.Query) > MaxTargetBytes:
		errs = append(errs, field.Invalid(at.Child("path"), "path and query are over %d bytes", MaxTargetBytes))
	case strings.ContainsAny(r.Path, " \t\r\n\x00"):
		errs = append(errs, field.Invalid(at.Child("path"), "contains a space or a control character; percent-encode it"))
	}
	if q, err := ParseQuery(r.Query); err != nil {
		errs = append(errs, field.Invalid(at.Child("query"), "%s", err.Error()))
	} else if strings.ContainsAny(q, " \t\r\n\x00") {
		errs = append(errs, field.Invalid(at.Child("query"), "contains a space or a control character; percent-encode it"))
	}
	if len(r.Headers) > MaxHeaders {
		errs = append(errs, field.Invalid(at.Child("headers"), "%d headers; at most %d", len(r.Headers), MaxHeaders))
	}
	size := 0
	seen := map[string]string{}
	for _, name := range slices.Sorted(maps.Keys(r.Headers)) {
		value := r.Headers[name]
		p := at.Child("headers", name)
		size += len(name) + len(value)
		lower := strings.ToLower(name)
		switch {
		case !isToken(strings.TrimPrefix(name, ":")):
			errs = append(errs, field.Invalid(p, "%q is not a header name", name))
		case strings.HasPrefix(name, ":") && lower != ":authority":
			errs = append(errs, field.Invalid(p, "pseudo-headers are set from method and path; only :authority may be given"))
		case strings.ContainsAny(value, "\r\n\x00"):
			errs = append(errs, field.Invalid(p, "the value contains CR, LF or NUL"))
		case seen[lower] != "":
			errs = append(errs, field.Invalid(p, "the same header as %q (names are case-insensitive)", seen[lower]))
		}
		seen[lower] = name
	}
	if seen["host"] != "" && seen[":authority"] != "" {
		errs = append(errs, field.Invalid(at.Child("headers", seen[":authority"]), "give host or :authority, not both"))
	}
	if size > MaxHeaderBytes {
		errs = append(errs, field.Invalid(at.Child("headers"), "over %d bytes of names and values", MaxHeaderBytes))
	}
	if len(r.Body) > MaxBodyBytes {
		errs = append(errs, field.Invalid(at.Child("body"), "over %d bytes", MaxBodyBytes))
	}
	return errs
}

// isToken: an RFC 9110 token.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := range len(s) {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// httpRequest is the request as the gateway's reverse proxy receives it.
func (r *Request) httpRequest(ctx context.Context) *http.Request {
	target := r.Path
	if q, _ := ParseQuery(r.Query); q != "" {
		if strings.Contains(target, "?") {
			target += "&" + q
		} else {
			target += "?" + q
		}
	}
	hr := &http.Request{Method: r.Method, RequestURI: target, Header: http.Header{}, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1}
	hr.URL, _ = url.ParseRequestURI(target)
	if hr.URL == nil {
		hr.URL = &url.URL{Path: r.Path}
	}
	for name, value := range r.Headers {
		switch strings.ToLower(name) {
		case "host", ":authority":
			hr.Host = value
		default:
			hr.Header.Add(name, value)
		}
	}
	hr.Body, hr.ContentLength = http.NoBody, 0
	if r.Body != "" {
		hr.Body, hr.ContentLength = io.NopCloser(strings.NewReader(r.Body)), int64(len(r.Body))
	}
	return hr.WithContext(ctx)
}

// Options are what a simulation runs with.
type Options struct {
	// Config is the tenant's configuration; Run changes it.
	Config *policies.Config
	// PolicyID and Policy, when Policy is set, put that version of the
	// policy in place of the saved one (or add it: an unsaved policy).
	PolicyID string
	Policy   *model.PolicySpec
	// EvaluateWith, when set, is the policy the matched API is decided
	// with, as if it were bound to it (the policy under test); otherwise
	// the API's own policy decides.
	EvaluateWith string
	// GatewayID is the gateway whose bundle decides ("" is
	// AllServicesGateway).
	GatewayID string
	// AllowedBuiltins are the denied built-ins the control plane allows.
	AllowedBuiltins []string
	// Checker, when set, checks Policy first (a refusal is a
	// *policies.CheckError), as saving it would.
	Checker *policies.Checker
	// Tokens configures the token verifier (HTTP client, private
	// networks, clock); its cache is off.
	Tokens token.Options
	// Timeout bounds the evaluations (the decision, then the explanation).
	Timeout time.Duration
	// Logger receives what the authorizer would log (default: discarded).
	Logger *slog.Logger
}

// Result is a simulated request's decision, stage by stage.
type Result struct {
	Allowed    bool   `json:"allowed"`
	HTTPStatus int    `json:"http_status"`
	Reason     string `json:"reason"`
	Stages     Stages `json:"stages"`
	// Decision is the decision document (data.gatehouse.authz.decision's
	// shape): what Envoy is told.
	Decision map[string]any `json:"decision"`
	// Input is the input document the policy saw (or would have seen).
	Input map[string]any `json:"input,omitempty"`
}

// Stages are the gateway's steps, in order.
type Stages struct {
	Request RequestStage `json:"request"`
	Route   RouteStage   `json:"route"`
	Token   TokenStage   `json:"token"`
	Policy  PolicyStage  `json:"policy"`
}

// RequestStage is the canonical request the gateway decides on, or why it
// refuses it before routing.
type RequestStage struct {
	Method         string   `json:"method"`
	Host           string   `json:"host"`
	Path           string   `json:"path"`
	Query          string   `json:"query"`
	RemovedHeaders []string `json:"removed_headers"`
	RefusedStatus  int      `json:"refused_status,omitempty"`
	RefusedReason  string   `json:"refused_reason,omitempty"`
}

// RouteStage is the API the request matched, or why none did.
type RouteStage struct {
	Matched   bool              `json:"matched"`
	GatewayID string            `json:"gateway_id"`
	APIID     string            `json:"api_id,omitempty"`
	ServiceID string            `json:"service_id,omitempty"`
	Method    string            `json:"method,omitempty"`
	Path      string            `json:"path,omitempty"`
	Params    map[string]string `json:"params,omitempty"`
	Public    bool              `json:"public,omitempty"`
	// BoundPolicyID is the policy the API is bound to (what the live
	// gateway runs).
	BoundPolicyID string `json:"bound_policy_id,omitempty"`
	Reason        string `json:"reason,omitempty"`
}

// TokenStage is the bearer token's validation.
type TokenStage struct {
	Present bool `json:"present"`
	Valid   bool `json:"valid"`
	// Reason is token.Reason of the failure (expired, not_yet_valid,
	// audience_mismatch, issuer_unknown, signature_invalid, malformed,
	// jwks_unavailable, unsupported_algorithm, revoked); Detail its
	// message.
	Reason  string         `json:"reason,omitempty"`
	Detail  string         `json:"detail,omitempty"`
	Issuer  string         `json:"issuer,omitempty"`
	Subject string         `json:"subject,omitempty"`
	Scopes  []string       `json:"scopes,omitempty"`
	Claims  map[string]any `json:"claims,omitempty"`
}

// PolicyStage is the policy's evaluation.
type PolicyStage struct {
	PolicyID string `json:"policy_id,omitempty"`
	// Ran says the policy was evaluated; Note says why not, or what to
	// know about the result.
	Ran     bool   `json:"ran"`
	Note    string `json:"note,omitempty"`
	Allowed bool   `json:"allowed"`
	DryRun  bool   `json:"dry_run,omitempty"`
	// Result is the policy's document (its rules' values; the internal
	// rules of a validators policy are left out: see Validators).
	Result     map[string]any              `json:"result,omitempty"`
	Validators []policies.ValidatorOutcome `json:"validators,omitempty"`
	// FailedExpression is, for a denial, the first expression of the
	// policy's own source that evaluated false, with its operands'
	// values; FailedExpressions are all of them (bounded: Truncated).
	FailedExpression  *policies.Failure  `json:"failed_expression,omitempty"`
	FailedExpressions []policies.Failure `json:"failed_expressions,omitempty"`
	Truncated         bool               `json:"truncated,omitempty"`
}

// InvalidPolicyError is a policy the compiler leaves out of the bundle
// (Why says why).
type InvalidPolicyError struct {
	PolicyID string
	Why      string
}

func (e *InvalidPolicyError) Error() string {
	return fmt.Sprintf("policy %s does not compile: %s", e.PolicyID, e.Why)
}

// UnknownGatewayError: Options.GatewayID names no gateway of the tenant.
type UnknownGatewayError struct{ GatewayID string }

func (e *UnknownGatewayError) Error() string {
	return fmt.Sprintf("gateway %q does not exist in this tenant", e.GatewayID)
}

// Run decides req as the gateway would and explains it.
func Run(ctx context.Context, opts Options, req *Request) (*Result, error) {
	cfg := opts.Config
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	gatewayID := opts.GatewayID
	if gatewayID == "" {
		gatewayID = AllServicesGateway
		cfg.Gateways = append(cfg.Gateways, policies.Object[model.GatewaySpec]{ID: gatewayID, Spec: model.GatewaySpec{Type: model.GatewayEnvoy}})
	} else if cfg.Gateway(gatewayID) == nil {
		return nil, &UnknownGatewayError{GatewayID: gatewayID}
	}
	if opts.Policy != nil && opts.Checker != nil {
		if problems := opts.Checker.Check(opts.PolicyID, opts.Policy); len(problems) > 0 {
			name := "definition"
			if opts.Policy.Language == model.LanguageValidators {
				name = "validators"
			}
			if problems[0].Field != "" {
				name = problems[0].Field
			}
			return nil, &policies.CheckError{Field: name, Problems: problems}
		}
	}
	if opts.Policy != nil {
		kept := cfg.Policies[:0]
		for _, p := range cfg.Policies {
			if p.ID != opts.PolicyID {
				kept = append(kept, p)
			}
		}
		cfg.Policies = append(kept, policies.Object[model.PolicySpec]{ID: opts.PolicyID, Name: opts.PolicyID, Spec: *opts.Policy})
	}
	if opts.EvaluateWith != "" {
		// Only the deciding policy and those it uses are compiled and
		// activated (the policy tests' rule): compiling every policy of a
		// large tenant would cost far more than the one that decides.
		need := policies.PolicyClosure(cfg.Policies, opts.EvaluateWith)
		kept := cfg.Policies[:0:0]
		for _, p := range cfg.Policies {
			if need[p.ID] {
				kept = append(kept, p)
			}
		}
		cfg.Policies = kept
	}
	cfg.AllowedBuiltins = opts.AllowedBuiltins
	compiled, err := policies.Compile(cfg, gatewayID)
	if err != nil {
		return nil, fmt.Errorf("simulate: compile: %w", err)
	}
	for _, id := range []string{opts.PolicyID, opts.EvaluateWith} {
		if why, skipped := compiled.Skipped[id]; id != "" && skipped {
			return nil, &InvalidPolicyError{PolicyID: id, Why: why}
		}
	}
	src, err := gateway.SourceFromCompiled(compiled, "simulated")
	if err != nil {
		return nil, fmt.Errorf("simulate: %w", err)
	}
	tokOpts := opts.Tokens
	tokOpts.CacheEntries = -1
	engines := gateway.NewEngines(model.GatewayRef{TenantID: cfg.Tenant.ID, GatewayID: gatewayID})
	// Only the issuers of the token's own iss get a verifier: one made
	// for every issuer would fetch every remote key set, at each test.
	iss := unverifiedIssuer(req)
	act := &gateway.Activator{Engines: engines, Tokens: func(ctx context.Context, issuers []policies.IssuerData) (gateway.TokenValidator, error) {
		var mine []policies.IssuerData
		for _, is := range issuers {
			if iss != "" && is.Issuer == iss {
				mine = append(mine, is)
			}
		}
		return token.New(token.FromBundle(mine), tokOpts)
	}}
	defer act.Close()
	engine, err := act.Activate(ctx, src, "simulated")
	if err != nil {
		return nil, fmt.Errorf("simulate: activate the bundle: %w", err)
	}
	server := gateway.NewServer(gateway.ServerOptions{Engines: engines, Logger: opts.Logger})

	evalCtx, cancel := policies.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	check, err := gateway.CheckRequestFromHTTP(req.httpRequest(evalCtx), engine)
	if err != nil {
		return nil, fmt.Errorf("simulate: read the body: %w", err)
	}
	gr := gateway.RequestFromCheck(check)
	if opts.EvaluateWith != "" {
		gr.EvaluateWith(opts.EvaluateWith)
	}
	d, _ := server.Decide(evalCtx, gr)
	res := &Result{Allowed: d.Allowed, HTTPStatus: d.HTTPStatus, Reason: d.Reason, Decision: d.Document(), Input: d.InputDocument()}
	res.Stages.Request = RequestStage{Method: gr.Method, Host: gr.Host, Path: gr.Path, Query: gr.RawQuery, RemovedHeaders: nonNil(gr.OwnedHeaders)}
	if gr.Refused != nil {
		res.Stages.Request.RefusedStatus, res.Stages.Request.RefusedReason = gr.Refused.Status, gr.Refused.Reason
	}
	res.Stages.Route = routeStage(engine, gr, d, gatewayID)
	res.Stages.Token = tokenStage(d)
	res.Stages.Policy = policyStage(evalCtx, engine, compiled, cfg, gr, d, opts)
	return res, nil
}

// unverifiedIssuer is the iss claim of the request's bearer token, read
// without verifying anything ("" when there is none to read): which
// issuers the verification needs.
func unverifiedIssuer(req *Request) string {
	var authorization string
	for name, v := range req.Headers {
		if strings.EqualFold(name, "authorization") {
			authorization = v
		}
	}
	raw, ok := token.Bearer(authorization)
	if !ok {
		return ""
	}
	_, rest, ok := strings.Cut(raw, ".")
	payload, _, ok2 := strings.Cut(rest, ".")
	if !ok || !ok2 {
		return ""
	}
	b, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return ""
	}
	var claims struct {
		Iss string `json:"iss"`
	}
	if json.Unmarshal(b, &claims) != nil {
		return ""
	}
	return claims.Iss
}

// routeStage reports the matched API, or why there is none.
func routeStage(e *gateway.Engine, req *gateway.Request, d *gateway.Decision, gatewayID string) RouteStage {
	st := RouteStage{GatewayID: gatewayID}
	if req.Refused != nil {
		st.Reason = "not routed: the gateway refuses the request before routing (" + req.Refused.Reason + ")"
		return st
	}
	if d.APIID == "" {
		st.Reason = whyNoRoute(e, req)
		return st
	}
	st.Matched, st.APIID, st.ServiceID, st.Params, st.BoundPolicyID = true, d.APIID, d.ServiceID, d.RouteParams, d.BoundPolicyID
	if st.Params == nil {
		st.Params = map[string]string{}
	}
	if r, ok := e.Routes().Route(d.APIID); ok {
		st.Method, st.Path = r.Method, r.Template.Raw
	}
	if api, ok := e.Config().APIs[d.APIID]; ok {
		st.Public = api.Public
	}
	return st
}

// whyNoRoute says why a request matched no API: no service for its host,
// an API for its path with other methods, or none for its path.
func whyNoRoute(e *gateway.Engine, req *gateway.Request) string {
	table := e.Routes()
	if len(e.Config().APIs) == 0 {
		return "the gateway has no API (its services have none, or it serves no service)"
	}
	if table.SelectVHost(req.Host) < 0 {
		return fmt.Sprintf("no service of the gateway serves host %q", req.Host)
	}
	var methods []string
	for {
		r, _, ok := table.First(req.Host, req.Path, func(r *routing.Route) bool { return !slices.Contains(methods, r.Method) })
		if !ok {
			break
		}
		methods = append(methods, r.Method)
	}
	if len(methods) > 0 {
		sort.Strings(methods)
		return fmt.Sprintf("no API matches %s %s: the path matches APIs of methods %s", req.Method, req.Path, strings.Join(methods, ", "))
	}
	return fmt.Sprintf("no API matches %s %s on host %q", req.Method, req.Path, req.Host)
}

// tokenStage reports the token's validation.
func tokenStage(d *gateway.Decision) TokenStage {
	t := d.Token
	st := TokenStage{Present: t.Present, Valid: t.Valid, Reason: d.TokenReason}
	if d.TokenError != nil {
		st.Detail = d.TokenError.Error()
		if d.TokenReason == token.ReasonJWKSUnavailable {
			// The fetch error would say what the control plane resolved
			// the issuer's host to (an internal address, say): not for the
			// tenant; the control plane's log has it.
			st.Detail = "the keys of the issuers that would accept the token could not be fetched (see the control plane's log)"
		}
	}
	if t.Valid {
		st.Issuer, st.Subject, st.Scopes, st.Claims = t.Issuer, t.Subject, nonNil(t.Scopes), t.Claims
	}
	return st
}

// policyStage evaluates the decisive policy's document again on the
// input it saw, for its result and, on a denial, the failed expressions.
func policyStage(ctx context.Context, e *gateway.Engine, compiled *policies.Compiled, cfg *policies.Config, req *gateway.Request, d *gateway.Decision, opts Options) PolicyStage {
	st := PolicyStage{PolicyID: d.PolicyID}
	api, matched := e.Config().APIs[d.APIID]
	policy, hasPolicy := e.Config().Policies[d.PolicyID]
	switch {
	case req.Refused != nil:
		st.Note = "not evaluated: the request is refused before any policy runs"
		return st
	case d.HTTPStatus == http.StatusRequestEntityTooLarge && d.Reason != "" && strings.HasPrefix(d.Reason, gateway.BodyTooLargeReason):
		st.Note = "not evaluated: the body is over the gateway's max_request_bytes (Envoy answers 413 itself)"
		return st
	case !matched:
		st.Note = "not evaluated: no API matched"
		return st
	case d.PolicyID == "" && api.Public:
		st.Note = "not evaluated: the API is public and has no policy (Envoy does not call the authorizer)"
		return st
	case d.Token.Present && !d.Token.Valid:
		st.Note = fmt.Sprintf("not evaluated: the bearer token is invalid (%s); the gateway answers 401 before any policy runs", d.TokenReason)
		return st
	case d.PolicyID == "":
		st.Note = "not evaluated: the API has no policy, so the gateway denies"
		return st
	case !hasPolicy:
		st.Note = "not evaluated: the policy is not in the bundle"
		return st
	}
	st.Ran, st.Allowed, st.DryRun = true, d.PolicyAllowed, d.DryRun
	if opts.EvaluateWith != "" && d.BoundPolicyID != opts.EvaluateWith {
		switch {
		case d.BoundPolicyID == "" && api.Public:
			st.Note = fmt.Sprintf("API %s is public without a policy: the live gateway allows it without asking any; this is what policy %s would decide if it were bound there", d.APIID, opts.EvaluateWith)
		case d.BoundPolicyID == "":
			st.Note = fmt.Sprintf("API %s has no policy bound (the live gateway denies it); this is what policy %s would decide if it were", d.APIID, opts.EvaluateWith)
		default:
			st.Note = fmt.Sprintf("API %s is bound to policy %s; this is what policy %s would decide in its place", d.APIID, d.BoundPolicyID, opts.EvaluateWith)
		}
	}
	if d.Reason == gateway.PolicyTimeoutReason {
		st.Note = "the policy did not finish within the gateway's policy_timeout_ms: the gateway answers 503"
		return st
	}
	pq, ok := e.PolicyQuery(d.PolicyID)
	input := d.Input()
	if !ok || input == nil {
		return st
	}
	rs, err := pq.Eval(ctx, rego.EvalParsedInput(input))
	if err == nil && len(rs) == 1 && len(rs[0].Expressions) == 1 {
		st.Result = documentOf(rs[0].Expressions[0].Value)
	}
	if policy.Language == model.LanguageValidators {
		st.Validators = validatorOutcomes(cfg, d.PolicyID, st.Result)
		for k := range st.Result {
			if strings.HasPrefix(k, "check_") {
				delete(st.Result, k)
			}
		}
		return st
	}
	if d.PolicyAllowed {
		return st
	}
	sources := map[string]string{}
	for _, m := range compiled.Modules {
		if strings.HasPrefix(m.Path, policies.Root+"/policies/") {
			sources[m.Path] = m.Source
		}
	}
	data, _ := ast.InterfaceToValue(compiled.Data)
	failures, truncated, err := policies.ExplainFailures(ctx, pq, input, data, sources)
	if err != nil && !policies.TimedOut(ctx) {
		st.Note = "explanation unavailable: " + err.Error()
	}
	st.FailedExpressions, st.Truncated = failures, truncated || err != nil
	if len(failures) > 0 {
		first := failures[0]
		st.FailedExpression = &first
	}
	return st
}

// validatorOutcomes says which validators of a validators policy passed
// (its check_<i> rules).
func validatorOutcomes(cfg *policies.Config, policyID string, result map[string]any) []policies.ValidatorOutcome {
	var out []policies.ValidatorOutcome
	for _, p := range cfg.Policies {
		if p.ID != policyID {
			continue
		}
		for i, v := range p.Spec.Validators {
			out = append(out, policies.ValidatorOutcome{Index: i, Name: v.Name, Passed: result[fmt.Sprintf("check_%d", i)] == true})
		}
	}
	return out
}

// documentOf is a policy document as JSON types (the engine's queries
// answer OPA terms).
func documentOf(v any) map[string]any {
	if t, ok := v.(*ast.Term); ok {
		x, err := ast.JSON(t.Value)
		if err != nil {
			return nil
		}
		v = x
	}
	m, _ := v.(map[string]any)
	return m
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
