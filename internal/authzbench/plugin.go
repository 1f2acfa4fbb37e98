package authzbench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/google/uuid"
	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/logging"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/topdown"
	"github.com/open-policy-agent/opa/v1/topdown/builtins"
	"github.com/open-policy-agent/opa/v1/topdown/cache"
	"github.com/open-policy-agent/opa/v1/topdown/print"
	"github.com/open-policy-agent/opa/v1/util"
	"github.com/open-policy-agent/opa/v1/version"
	"google.golang.org/genproto/googleapis/rpc/code"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/policies"
)

// PluginPolicy is the fixture's policy as an opa-envoy-plugin user would
// write it: the route table is data (data.authz.routes: method → first
// path segment, "*" for templates starting with a parameter → routes, each
// with its path template split into segments, "*" standing for one
// non-empty segment and rest for a trailing {name...}, and the roles,
// scope and tenant it requires), matched by splitting and comparing
// segments; the bearer token is verified in Rego with io.jwt.decode_verify
// against the issuer's key set (data.authz.jwks); the entrypoint is the
// plugin's default, data.envoy.authz.allow. It decides as Policy does
// behind Gatehouse's routing and token validation. The table is keyed by
// method and first segment, not scanned whole: a linear scan of the 200
// routes costs more than everything else together (about 1.1 ms a Check),
// which would make a strawman of the baseline.
const PluginPolicy = `package envoy.authz

default allow := false

bearer := t if {
	h := input.attributes.request.http.headers.authorization
	startswith(h, "Bearer ")
	t := substring(h, 7, -1)
}

claims := c if {
	[valid, _, c] := io.jwt.decode_verify(bearer, {
		"cert": data.authz.jwks,
		"iss": data.authz.issuer,
		"aud": data.authz.audience,
	})
	valid
}

scopes := split(claims.scope, " ")

allow if {
	some first in [input.parsed_path[0], "*"]
	some route in data.authz.routes[input.attributes.request.http.method][first]
	path_matches(route)
	route.scope in scopes
	some role in claims.roles
	role in route.roles
	tenant_matches(route)
}

path_matches(route) if {
	not route.rest
	count(route.segments) == count(input.parsed_path)
	every i, s in route.segments {
		segment_matches(s, input.parsed_path[i])
	}
}

path_matches(route) if {
	route.rest
	count(input.parsed_path) >= count(route.segments)
	every i, s in route.segments {
		segment_matches(s, input.parsed_path[i])
	}
}

segment_matches("*", v) if v != ""

segment_matches(s, v) if {
	s != "*"
	s == v
}

tenant_matches(route) if not route.tenant

tenant_matches(route) if route.tenant == claims.tenant
`

// PluginQuery is what opa-envoy-plugin evaluates by default (its path
// "envoy/authz/allow" as a data reference).
const PluginQuery = "data.envoy.authz.allow"

// PluginData is the data document of the opa-envoy-plugin bundle (its
// data.json): the issuer and the route table of apis, with the roles and
// scopes Policy requires per method.
func PluginData(jwks string, apis []policies.Object[model.APISpec]) ([]byte, error) {
	type route struct {
		Segments []string `json:"segments"`
		Rest     bool     `json:"rest,omitempty"`
		Roles    []string `json:"roles"`
		Scope    string   `json:"scope"`
		Tenant   string   `json:"tenant,omitempty"`
	}
	routes := map[string]map[string][]route{}
	for _, api := range apis {
		r := route{Roles: []string{"editor", "admin"}, Scope: "pets:write", Tenant: "acme"}
		if m := api.Spec.Method; m == "GET" || m == "HEAD" {
			r = route{Roles: []string{"viewer", "editor", "admin"}, Scope: "pets:read"}
		}
		for _, s := range strings.Split(strings.TrimLeft(api.Spec.Path, "/"), "/") {
			switch {
			case strings.HasPrefix(s, "{") && strings.HasSuffix(s, "...}"):
				r.Rest = true
			case strings.HasPrefix(s, "{") && strings.HasSuffix(s, "}"):
				r.Segments = append(r.Segments, "*")
			default:
				r.Segments = append(r.Segments, s)
			}
		}
		first := "*"
		if len(r.Segments) > 0 {
			first = r.Segments[0]
		}
		if routes[api.Spec.Method] == nil {
			routes[api.Spec.Method] = map[string][]route{}
		}
		routes[api.Spec.Method][first] = append(routes[api.Spec.Method][first], r)
	}
	// HEAD follows GET's API, as in Gatehouse, unless HEAD has its own
	// on the same template.
	for first, gets := range routes["GET"] {
		for _, g := range gets {
			if !slices.ContainsFunc(routes["HEAD"][first], func(h route) bool {
				return h.Rest == g.Rest && slices.Equal(h.Segments, g.Segments)
			}) {
				if routes["HEAD"] == nil {
					routes["HEAD"] = map[string][]route{}
				}
				routes["HEAD"][first] = append(routes["HEAD"][first], g)
			}
		}
	}
	return json.Marshal(map[string]any{"authz": map[string]any{
		"issuer": Issuer, "audience": Audience, "jwks": jwks, "routes": routes,
	}})
}

// PluginOptions departs from opa-envoy-plugin's defaults (the zero value
// is the plugin as shipped); only for comparison benchmarks.
type PluginOptions struct {
	// ReadASTValuesFromStore is opa run --storage-read-ast-values-from-store
	// (off by default): data is kept as AST in the store, not converted on
	// every read.
	ReadASTValuesFromStore bool
	// ValueCache gives the evaluation an inter-query value cache, which
	// holds io.jwt.decode_verify's parsed keys and verified tokens. The
	// plugin never sets one (its InterQueryBuiltinValueCache is nil), so
	// as shipped every Check parses the key set and verifies the signature.
	ValueCache bool
}

// PluginStyle answers ext_authz Checks along opa-envoy-plugin's own code
// path (envoyauth and internal/internal.go, reimplemented step by step,
// decision logs off, dry-run off, body parsing on): a metrics object, a
// decision id (UUID) and a read transaction on the in-memory store per
// Check; the CheckRequest converted to a map by protobuf reflection with
// JSON field names, plus version, parsed_path, parsed_query, parsed_body
// and truncated_body; ast.InterfaceToValue; one query prepared once with
// the plugin's options and evaluated with its options (parsed input,
// transaction, metrics, inter-query builtin cache from OPA's default
// caching configuration, print hook, ND builtin cache off, evaluated-rule
// tracker); the boolean decision as OK or PERMISSION_DENIED, with the
// decision id in the dynamic metadata.
type PluginStyle struct {
	authv3.UnimplementedAuthorizationServer
	store      storage.Store
	compiler   *ast.Compiler
	query      ast.Body
	runtime    *ast.Term
	logger     logging.Logger
	interQuery cache.InterQueryCache
	valueCache cache.InterQueryValueCache
	stopCache  context.CancelFunc

	once    sync.Once
	pq      rego.PreparedEvalQuery
	prepErr error
}

// NewPluginStyle builds the plugin-style service over the fixture's issuer
// and APIs, with the plugin's defaults.
func (f *Fixture) NewPluginStyle(ctx context.Context) (*PluginStyle, error) {
	return f.NewPluginStyleWith(ctx, PluginOptions{})
}

// NewPluginStyleWith is NewPluginStyle with opts.
func (f *Fixture) NewPluginStyleWith(ctx context.Context, opts PluginOptions) (*PluginStyle, error) {
	data, err := PluginData(f.jwks, f.Config.APIs)
	if err != nil {
		return nil, err
	}
	return NewPluginStyle(ctx, data, opts)
}

// NewPluginStyle loads PluginPolicy and the data document data (JSON) as
// the plugin's bundle activation would: the module compiled, the data
// written to an in-memory store configured as opa run configures it.
// Close releases it.
func NewPluginStyle(ctx context.Context, data []byte, opts PluginOptions) (*PluginStyle, error) {
	var doc map[string]any
	if err := util.UnmarshalJSON(data, &doc); err != nil {
		return nil, fmt.Errorf("plugin data: %w", err)
	}
	store := inmem.NewFromObjectWithOpts(doc, inmem.OptRoundTripOnWrite(false), inmem.OptReturnASTValuesOnRead(opts.ReadASTValuesFromStore))
	mod, err := ast.ParseModuleWithOpts("envoy/authz.rego", PluginPolicy, ast.ParserOptions{ProcessAnnotation: true})
	if err != nil {
		return nil, fmt.Errorf("plugin policy: %w", err)
	}
	compiler := ast.NewCompiler().WithEnablePrintStatements(true)
	if compiler.Compile(map[string]*ast.Module{"envoy/authz.rego": mod}); compiler.Failed() {
		return nil, fmt.Errorf("plugin policy: %w", compiler.Errors)
	}
	query, err := ast.ParseBody(PluginQuery)
	if err != nil {
		return nil, err
	}
	// OPA's runtime caching configuration when none is given.
	cfg, err := cache.ParseCachingConfig(nil)
	if err != nil {
		return nil, err
	}
	cctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	p := &PluginStyle{
		store: store, compiler: compiler, query: query, logger: logging.New(),
		runtime:    ast.ObjectTerm(ast.Item(ast.StringTerm("version"), ast.StringTerm(version.Version)), ast.Item(ast.StringTerm("env"), ast.ObjectTerm()), ast.Item(ast.StringTerm("config"), ast.ObjectTerm())),
		interQuery: cache.NewInterQueryCacheWithContext(cctx, cfg),
		stopCache:  stop,
	}
	if opts.ValueCache {
		p.valueCache = cache.NewInterQueryValueCache(cctx, cfg)
	}
	return p, nil
}

// Close stops the inter-query cache's eviction.
func (p *PluginStyle) Close() { p.stopCache() }

// Decide evaluates one request and returns the decision.
func (p *PluginStyle) Decide(ctx context.Context, req *authv3.CheckRequest) (bool, error) {
	res, err := p.Check(ctx, req)
	if err != nil {
		return false, err
	}
	return res.GetStatus().GetCode() == int32(code.Code_OK), nil
}

// Check implements ext_authz as the plugin's Check does.
func (p *PluginStyle) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	m := metrics.New()
	decisionID := uuid.NewString()
	m.Timer(metrics.ServerHandler).Start()
	defer m.Timer(metrics.ServerHandler).Stop()
	txn, err := p.store.NewTransaction(ctx, storage.TransactionParams{})
	if err != nil {
		return nil, fmt.Errorf("start a storage transaction: %w", err)
	}
	defer p.store.Abort(ctx, txn)
	logger := p.logger.WithFields(map[string]any{"decision-id": decisionID})

	input, err := PluginInput(req)
	if err != nil {
		msg := "request parse error: " + err.Error()
		return &authv3.CheckResponse{
			Status: &rpcstatus.Status{Code: int32(code.Code_PERMISSION_DENIED), Message: msg},
			HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
				Status: &typev3.HttpStatus{Code: typev3.StatusCode_BadRequest}, Body: msg,
			}},
		}, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	value, err := ast.InterfaceToValue(input)
	if err != nil {
		return nil, fmt.Errorf("input: %w", err)
	}
	decision, err := p.eval(ctx, txn, m, logger, decisionID, value)
	if err != nil {
		return nil, err
	}
	var allowed bool
	switch d := decision.(type) {
	case bool:
		allowed = d
	case map[string]any:
		var isBool bool
		if allowed, isBool = d["allowed"].(bool); !isBool {
			return nil, errors.New(`the decision has no boolean "allowed"`)
		}
	default:
		return nil, fmt.Errorf("illegal value for policy evaluation result: %T", decision)
	}
	status := int32(code.Code_PERMISSION_DENIED)
	if allowed {
		status = int32(code.Code_OK)
	}
	resp := &authv3.CheckResponse{Status: &rpcstatus.Status{Code: status}}
	if logger.GetLevel() == logging.Debug {
		logger.WithFields(map[string]any{"query": p.query.String(), "decision": decision, "metrics": m.All()}).Debug("Returning policy decision.")
	}
	resp.DynamicMetadata = &structpb.Struct{Fields: make(map[string]*structpb.Value, 1)}
	resp.DynamicMetadata.Fields["decision_id"] = structpb.NewStringValue(decisionID)
	return resp, nil
}

// eval is envoyauth.Eval: the query prepared once (with the first
// Check's metrics and transaction, as the plugin does), then evaluated.
func (p *PluginStyle) eval(ctx context.Context, txn storage.Transaction, m metrics.Metrics, logger logging.Logger, decisionID string, input ast.Value) (any, error) {
	if logger.GetLevel() == logging.Debug {
		logger.WithFields(map[string]any{"input": input, "query": p.query.String(), "txn": txn.ID()}).Debug("Executing policy query.")
	}
	tracker := &topdown.EvaluatedRuleTracker{}
	p.once.Do(func() {
		p.pq, p.prepErr = rego.New(
			rego.Metrics(m),
			rego.ParsedQuery(p.query),
			rego.Compiler(p.compiler),
			rego.Store(p.store),
			rego.Transaction(txn),
			rego.Runtime(p.runtime),
			rego.EnablePrintStatements(true),
		).PrepareForEval(context.Background())
	})
	if p.prepErr != nil {
		return nil, p.prepErr
	}
	hook := printHook{logger: logger.WithFields(map[string]any{"decision-id": decisionID})}
	var ndb builtins.NDBCache // the nd_builtin_cache setting is off by default
	rs, err := p.pq.Eval(ctx,
		rego.EvalParsedInput(input),
		rego.EvalTransaction(txn),
		rego.EvalMetrics(m),
		rego.EvalInterQueryBuiltinCache(p.interQuery),
		rego.EvalInterQueryBuiltinValueCache(p.valueCache),
		rego.EvalPrintHook(&hook),
		rego.EvalNDBuiltinCache(ndb),
		rego.EvalEvaluatedRuleTracker(tracker),
	)
	switch {
	case err != nil:
		return nil, err
	case len(rs) == 0:
		return nil, errors.New("undefined decision")
	case len(rs) > 1:
		return nil, errors.New("multiple evaluation results")
	}
	return rs[0].Expressions[0].Value, nil
}

// printHook sends print() output to the logger, as the plugin's does.
type printHook struct{ logger logging.Logger }

func (h *printHook) Print(pctx print.Context, msg string) error {
	h.logger.Info("%v: %s", pctx.Location, msg)
	return nil
}
