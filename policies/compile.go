package policies

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/util"

	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/routing"
)

// Paths and names inside every bundle.
const (
	// Root is the one bundle root: all data and packages live under it.
	Root = "gatehouse"
	// DecisionQuery is the entrypoint for a stock OPA / opa-envoy-plugin.
	DecisionQuery = "data.gatehouse.authz.decision"
	// PolicyPackagePrefix is where user policies are packaged.
	PolicyPackagePrefix = "data.gatehouse.policies."
)

// Module is one Rego file of a bundle.
type Module struct {
	Path   string
	Source string
}

// Compiled is a gateway's bundle content before it is given a revision and
// signed: the data document and the Rego modules.
type Compiled struct {
	TenantID  string
	GatewayID string
	// Data is data.gatehouse.config, JSON-typed (as util.UnmarshalJSON
	// returns it), so that OPA hashes it the way it will read it back.
	Data map[string]any
	// Modules are the library and the policies, sorted by path.
	Modules []Module
	// Hash identifies the content: equal hashes mean identical bundles.
	Hash string
	// Skipped lists policies left out because they do not compile; the
	// APIs bound to them are denied.
	Skipped map[string]string
	// Routes is the gateway's routing table (for the fast path and xDS).
	Routes *routing.Table
	// Gateway, Services (the gateway's, by id), APIs (of those services, by
	// id) and Issuers are the typed configuration the content came from.
	Gateway  Object[model.GatewaySpec]
	Services []Object[model.ServiceSpec]
	APIs     map[string]Object[model.APISpec]
	Issuers  []Object[model.IssuerSpec]
	// OwnedHeaders are the request headers the gateway owns besides
	// OwnedHeaderPrefix (the bundle's request_headers.owned).
	OwnedHeaders []string
}

// The data model of data.gatehouse.config. Field names are the bundle's
// public contract (docs/bundles.md); readers of a bundle (the authorizer)
// parse it back with ParseBundleConfig.
type (
	// TenantData is the tenant.
	TenantData struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	}
	// GatewayData is the gateway and its settings.
	GatewayData struct {
		ID                   string `json:"id"`
		Name                 string `json:"name"`
		Type                 string `json:"type"`
		DryRun               bool   `json:"dry_run"`
		AllowUnmatchedRoutes bool   `json:"allow_unmatched_routes"`
		// ExposeTokenErrors: a 401 for an invalid token says why
		// (error_description, gatehouse.lib.token.reason).
		ExposeTokenErrors bool                       `json:"expose_token_errors"`
		ListenerAddress   string                     `json:"listener_address"`
		ListenerPort      int                        `json:"listener_port"`
		RequestBody       *model.RequestBodySettings `json:"request_body"`
		// PolicyTimeoutMS bounds one policy evaluation in the authorizer.
		PolicyTimeoutMS int `json:"policy_timeout_ms"`
		// DecisionLogs is which decisions the authorizer logs: on, off,
		// denied or sample:N (model.ParseDecisionLogMode).
		DecisionLogs string `json:"decision_logs"`
		// DecisionLogMode is DecisionLogs parsed, set by
		// ParseBundleConfig: on when the bundle has none (it was built
		// before the setting existed) or one this authorizer does not
		// know (a newer control plane's), so that nothing goes unlogged
		// for a setting it cannot read.
		DecisionLogMode model.DecisionLogMode `json:"-"`
	}
	// IssuerData is a trusted token issuer; JWKS is the inline key set as a JSON string ("" when remote).
	IssuerData struct {
		ID        string   `json:"id"`
		Name      string   `json:"name"`
		Issuer    string   `json:"issuer"`
		Audiences []string `json:"audiences"`
		JWKS      string   `json:"jwks"`
		JWKSURI   string   `json:"jwks_uri"`
		Discovery bool     `json:"discovery"`
	}
	// RevocationsData is data.gatehouse.config.revocations: the tokens
	// the gateway refuses although they verify. Every key is a claim of the
	// token itself, so the Go verifier and the Rego library look them up
	// alike; nested objects rather than joined keys, since a sub may hold
	// any character. Times are Unix seconds.
	//
	//   - JTI: iss → jti → exp. A token whose iss and jti (a string) are
	//     listed is revoked while the entry lasts, that is while
	//     now < exp + Leeway (the token's own exp rule, so an entry made
	//     with the token's exp lasts as long as the token could be valid).
	//   - NotBefore: iss → sub → t. A token of that iss and sub (a string)
	//     is revoked unless it has an iat (a number) with floor(iat) >= t.
	//   - ClientNotBefore: iss → sub → client id → t. The same for the
	//     tokens of that iss and sub whose client_id or azp (a string)
	//     is that client id (either claim suffices).
	//
	// The maps are never nil in a compiled bundle.
	RevocationsData struct {
		JTI             map[string]map[string]int64            `json:"jti"`
		NotBefore       map[string]map[string]int64            `json:"not_before"`
		ClientNotBefore map[string]map[string]map[string]int64 `json:"client_not_before"`
	}
	// ServiceData is a service (upstream).
	ServiceData struct {
		ID    string   `json:"id"`
		Name  string   `json:"name"`
		URL   string   `json:"url"`
		Hosts []string `json:"hosts"`
		// CORS is the service's cors settings (absent when none).
		CORS *model.CORSSettings `json:"cors,omitempty"`
	}
	// APIData is an API of one of the gateway's services.
	APIData struct {
		ID                  string            `json:"id"`
		ServiceID           string            `json:"service_id"`
		Method              string            `json:"method"`
		Path                string            `json:"path"`
		PolicyID            string            `json:"policy_id"`
		Public              bool              `json:"public"`
		DataClassifications []string          `json:"data_classifications"`
		ClaimsToHeaders     map[string]string `json:"claims_to_headers"`
	}
	// RequestHeadersData: Owned are the lower-cased names the gateway owns
	// besides those starting with OwnedPrefix (see ownedHeaders); what
	// clients send under these names is removed on every route.
	RequestHeadersData struct {
		Owned       []string `json:"owned"`
		OwnedPrefix string   `json:"owned_prefix"`
	}
	// PolicyData names a policy and its Rego package.
	PolicyData struct {
		ID       string `json:"id"`
		Name     string `json:"name"`
		Package  string `json:"package"`
		Language string `json:"language"`
		DryRun   bool   `json:"dry_run"`
	}
	// ScopeData is an OAuth scope.
	ScopeData struct {
		ID          string `json:"id"`
		Name        string `json:"name"`
		DisplayName string `json:"display_name"`
		Description string `json:"description"`
		ServiceID   string `json:"service_id"`
	}
	// SegmentData is one path template segment: kind literal, param,
	// pattern (a parameter with literal text around it in the segment:
	// Prefix + {Value} + Suffix) or catch_all.
	SegmentData struct {
		Kind   string `json:"kind"` // literal, param, pattern, catch_all
		Value  string `json:"value"`
		Prefix string `json:"prefix,omitempty"`
		Suffix string `json:"suffix,omitempty"`
	}
	// RouteData is one route, in priority order within its vhost.
	RouteData struct {
		APIID     string        `json:"api_id"`
		ServiceID string        `json:"service_id"`
		Method    string        `json:"method"`
		CatchAll  bool          `json:"catch_all"`
		Segments  []SegmentData `json:"segments"`
	}
	// VHostData is a virtual host: its domains and routes.
	VHostData struct {
		Name    string      `json:"name"`
		Domains []string    `json:"domains"`
		Routes  []RouteData `json:"routes"`
	}
	// WildcardData maps a "*.suffix" domain to a vhost.
	WildcardData struct {
		Suffix string `json:"suffix"`
		VHost  int    `json:"vhost"`
	}
	// RouteRefData locates an API's route.
	RouteRefData struct {
		VHost int `json:"vhost"`
		Index int `json:"index"`
	}
	// RoutingData is the gateway's routing table.
	RoutingData struct {
		Exact     map[string]int          `json:"exact"`
		Wildcards []WildcardData          `json:"wildcards"`
		Default   int                     `json:"default"`
		ByAPI     map[string]RouteRefData `json:"by_api"`
		VHosts    []VHostData             `json:"vhosts"`
	}
	// BundleConfig is data.gatehouse.config.
	BundleConfig struct {
		Tenant   TenantData             `json:"tenant"`
		Gateway  GatewayData            `json:"gateway"`
		Services map[string]ServiceData `json:"services"`
		APIs     map[string]APIData     `json:"apis"`
		Policies map[string]PolicyData  `json:"policies"`
		Scopes   map[string]ScopeData   `json:"scopes"`
		Issuers  []IssuerData           `json:"issuers"`
		Routing  RoutingData            `json:"routing"`
		// AllowedBuiltins are the denied built-ins the control plane lets
		// policies call (sorted; usually none).
		AllowedBuiltins []string `json:"allowed_builtins"`
		// RequestHeaders are the request headers the gateway owns.
		RequestHeaders RequestHeadersData `json:"request_headers"`
		// Revocations are the tenant's token revocations.
		Revocations RevocationsData `json:"revocations"`
	}
)

// PolicyTimeout is the gateway's deadline for one policy evaluation
// (model.DefaultPolicyTimeoutMS when the bundle does not say).
func (g GatewayData) PolicyTimeout() time.Duration {
	ms := g.PolicyTimeoutMS
	if ms <= 0 {
		ms = model.DefaultPolicyTimeoutMS
	}
	return time.Duration(ms) * time.Millisecond
}

var packageUnsafe = regexp.MustCompile(`[^A-Za-z0-9_]`)

// PolicyPackage is the Rego package segment of a policy id: "p_" + the id
// with non-identifier characters replaced, plus a short hash of the id when
// anything was replaced (so "a-b" and "a_b" stay distinct).
func PolicyPackage(policyID string) string {
	safe := packageUnsafe.ReplaceAllString(policyID, "_")
	if safe == policyID {
		return "p_" + safe
	}
	sum := sha256.Sum256([]byte(policyID))
	return "p_" + safe + "_" + hex.EncodeToString(sum[:4])
}

// Compile turns a tenant's configuration into the content of one gateway's
// bundle. The result depends only on the configuration: the same
// configuration always gives the same Hash and, once built, the same bytes.
func Compile(cfg *Config, gatewayID string) (*Compiled, error) {
	gw := cfg.Gateway(gatewayID)
	if gw == nil {
		return nil, fmt.Errorf("gateway %q not found in tenant %s", gatewayID, cfg.Tenant.ID)
	}
	services := cfg.servicesOf(gw)
	d := BundleConfig{
		Tenant: TenantData{ID: cfg.Tenant.ID, Name: cfg.Tenant.Spec.Name},
		Gateway: GatewayData{ID: gw.ID, Name: gw.Name, Type: gw.Spec.Type, DryRun: gw.Spec.DryRun,
			AllowUnmatchedRoutes: gw.Spec.AllowUnmatchedRoutes, ExposeTokenErrors: gw.Spec.ExposeTokenErrors, ListenerAddress: gw.Spec.ListenerAddress,
			ListenerPort: gw.Spec.ListenerPort, RequestBody: gw.Spec.RequestBody, PolicyTimeoutMS: gw.Spec.PolicyTimeoutMS,
			DecisionLogs: gw.Spec.DecisionLogs},
		Services: map[string]ServiceData{},
		APIs:     map[string]APIData{},
		Policies: map[string]PolicyData{},
		Scopes:   map[string]ScopeData{},
		Issuers:  []IssuerData{},
	}
	d.Revocations = cfg.Revocations.compiled()
	allowed, err := NormalizeAllowedBuiltins(cfg.AllowedBuiltins)
	if err != nil {
		return nil, err
	}
	d.AllowedBuiltins = allowed
	allowSet := map[string]bool{}
	for _, n := range allowed {
		allowSet[n] = true
	}
	if d.Gateway.PolicyTimeoutMS <= 0 {
		d.Gateway.PolicyTimeoutMS = model.DefaultPolicyTimeoutMS
	}
	if d.Gateway.ListenerAddress == "" {
		d.Gateway.ListenerAddress = model.DefaultListenerAddress
	}
	if d.Gateway.DecisionLogs == "" {
		d.Gateway.DecisionLogs = model.DefaultDecisionLogs
	}
	if d.Gateway.ListenerPort == 0 {
		d.Gateway.ListenerPort = model.DefaultListenerPort
	}
	out := &Compiled{TenantID: cfg.Tenant.ID, GatewayID: gatewayID, Gateway: *gw, Services: services,
		APIs: map[string]Object[model.APISpec]{}}
	inGateway := map[string]*routing.ServiceRoutes{}
	var routeInput []routing.ServiceRoutes
	for _, s := range services {
		d.Services[s.ID] = ServiceData{ID: s.ID, Name: s.Name, URL: s.Spec.URL, Hosts: nonNil(s.Spec.Hosts), CORS: s.Spec.CORS}
		routeInput = append(routeInput, routing.ServiceRoutes{ServiceID: s.ID, Hosts: s.Spec.Hosts})
	}
	for i := range routeInput {
		inGateway[routeInput[i].ServiceID] = &routeInput[i]
	}
	apis := append([]Object[model.APISpec](nil), cfg.APIs...)
	sort.Slice(apis, func(i, j int) bool { return apis[i].ID < apis[j].ID })
	for _, a := range apis {
		sr := inGateway[a.Spec.ServiceID]
		if sr == nil {
			continue
		}
		d.APIs[a.ID] = APIData{ID: a.ID, ServiceID: a.Spec.ServiceID, Method: a.Spec.Method, Path: a.Spec.Path,
			PolicyID: a.Spec.PolicyID, Public: a.Spec.Public, DataClassifications: nonNil(a.Spec.DataClassifications),
			ClaimsToHeaders: lowerValues(a.Spec.ClaimsToHeaders)}
		out.APIs[a.ID] = a
		sr.APIs = append(sr.APIs, routing.APIRoute{APIID: a.ID, Method: a.Spec.Method, Path: a.Spec.Path})
	}
	table, err := routing.Build(routeInput)
	if err != nil {
		return nil, fmt.Errorf("gateway %s: %w", gatewayID, err)
	}
	d.Routing = routingData(table)

	out.Skipped, out.Routes = map[string]string{}, table
	lib, err := Library(false)
	if err != nil {
		return nil, err
	}
	for _, f := range lib {
		out.Modules = append(out.Modules, Module{Path: f.Path, Source: f.Source})
	}
	policyModules := map[string]*ast.Module{}
	names := namesOf(cfg.Policies)
	for _, p := range cfg.Policies {
		pkg := PolicyPackage(p.ID)
		src, parsed, err := policyModule(p.ID, &p.Spec, names)
		if err != nil {
			out.Skipped[p.ID] = err.Error()
			continue
		}
		// A policy saved while a built-in was allowed, kept after the
		// allow-list changed, is left out rather than failing the bundle.
		if parsed != nil {
			if denied := deniedCalls(parsed, allowSet); len(denied) > 0 {
				out.Skipped[p.ID] = (&ProblemsError{Problems: denied}).Error()
				continue
			}
		}
		d.Policies[p.ID] = PolicyData{ID: p.ID, Name: p.Name, Package: pkg, Language: p.Spec.Language, DryRun: p.Spec.DryRun}
		if parsed != nil {
			policyModules[p.ID] = parsed
		}
		out.Modules = append(out.Modules, Module{Path: Root + "/policies/" + pkg + ".rego", Source: src})
	}
	sort.Slice(out.Modules, func(i, j int) bool { return out.Modules[i].Path < out.Modules[j].Path })
	issuers := append([]Object[model.IssuerSpec](nil), cfg.Issuers...)
	servers, err := cfg.ServerIssuers()
	if err != nil {
		return nil, err
	}
	issuers = append(issuers, servers...)
	sort.Slice(issuers, func(i, j int) bool { return issuers[i].ID < issuers[j].ID })
	out.Issuers = issuers
	for _, is := range issuers {
		d.Issuers = append(d.Issuers, IssuerData{ID: is.ID, Name: is.Name, Issuer: is.Spec.Issuer,
			Audiences: nonNil(is.Spec.Audiences), JWKS: string(is.Spec.JWKS), JWKSURI: is.Spec.JWKSURI, Discovery: is.Spec.Discovery})
	}
	for _, s := range cfg.Scopes {
		d.Scopes[s.Name] = ScopeData{ID: s.ID, Name: s.Name, DisplayName: s.Spec.DisplayName,
			Description: s.Description, ServiceID: s.Spec.ServiceID}
	}

	d.RequestHeaders = RequestHeadersData{Owned: ownedHeaders(d.APIs, policyModules), OwnedPrefix: OwnedHeaderPrefix}
	out.OwnedHeaders = d.RequestHeaders.Owned

	raw, err := json.Marshal(map[string]any{"gatehouse": map[string]any{"config": d}})
	if err != nil {
		return nil, fmt.Errorf("encode bundle data: %w", err)
	}
	if err := util.UnmarshalJSON(raw, &out.Data); err != nil {
		return nil, fmt.Errorf("decode bundle data: %w", err)
	}
	h := sha256.New()
	h.Write(raw)
	for _, m := range out.Modules {
		fmt.Fprintf(h, "\x00%s\x00%d\x00%s", m.Path, len(m.Source), m.Source)
	}
	out.Hash = hex.EncodeToString(h.Sum(nil))
	return out, nil
}

// compiled is a copy of r with no nil map (r may be nil).
func (r *RevocationsData) compiled() RevocationsData {
	out := RevocationsData{JTI: map[string]map[string]int64{}, NotBefore: map[string]map[string]int64{},
		ClientNotBefore: map[string]map[string]map[string]int64{}}
	if r == nil {
		return out
	}
	for iss, m := range r.JTI {
		out.JTI[iss] = maps.Clone(m)
	}
	for iss, m := range r.NotBefore {
		out.NotBefore[iss] = maps.Clone(m)
	}
	for iss, subs := range r.ClientNotBefore {
		c := make(map[string]map[string]int64, len(subs))
		for sub, m := range subs {
			c[sub] = maps.Clone(m)
		}
		out.ClientNotBefore[iss] = c
	}
	return out
}

// Empty reports whether r revokes nothing.
func (r *RevocationsData) Empty() bool {
	for _, m := range r.JTI {
		if len(m) > 0 {
			return false
		}
	}
	for _, m := range r.NotBefore {
		if len(m) > 0 {
			return false
		}
	}
	for _, subs := range r.ClientNotBefore {
		for _, m := range subs {
			if len(m) > 0 {
				return false
			}
		}
	}
	return true
}

func routingData(t *routing.Table) RoutingData {
	d := RoutingData{Exact: map[string]int{}, Wildcards: []WildcardData{}, Default: t.Default,
		ByAPI: map[string]RouteRefData{}, VHosts: []VHostData{}}
	for h, v := range t.Exact {
		d.Exact[h] = v
	}
	for _, w := range t.Wildcards {
		d.Wildcards = append(d.Wildcards, WildcardData{Suffix: w.Suffix, VHost: w.VHost})
	}
	for vi, vh := range t.VHosts {
		dv := VHostData{Name: vh.Name, Domains: vh.Domains, Routes: []RouteData{}}
		for ri, r := range vh.Routes {
			dr := RouteData{APIID: r.APIID, ServiceID: r.ServiceID, Method: r.Method, CatchAll: r.Template.HasCatchAll(), Segments: []SegmentData{}}
			for _, s := range r.Template.Segments {
				dr.Segments = append(dr.Segments, SegmentData{Kind: segmentKind(s.Kind), Value: s.Value, Prefix: s.Prefix, Suffix: s.Suffix})
			}
			dv.Routes = append(dv.Routes, dr)
			if _, seen := d.ByAPI[r.APIID]; !seen {
				d.ByAPI[r.APIID] = RouteRefData{VHost: vi, Index: ri}
			}
		}
		d.VHosts = append(d.VHosts, dv)
	}
	return d
}

func segmentKind(k routing.SegmentKind) string {
	switch k {
	case routing.Literal:
		return "literal"
	case routing.Param:
		return "param"
	case routing.Pattern:
		return "pattern"
	default:
		return "catch_all"
	}
}

// lowerValues copies a claims_to_headers mapping with lower-cased header
// names (header names are case-insensitive; owned-header checks compare
// them lower-cased).
func lowerValues(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = strings.ToLower(v)
	}
	return out
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// ParseBundleConfig reads data.gatehouse.config back from a bundle's data
// document (as util.UnmarshalJSON or the bundle reader produce it).
func ParseBundleConfig(data map[string]any) (*BundleConfig, error) {
	gh, _ := data[Root].(map[string]any)
	cfg, ok := gh["config"]
	if !ok {
		return nil, fmt.Errorf("bundle data has no %s.config", Root)
	}
	raw, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("bundle config: %w", err)
	}
	var out BundleConfig
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, fmt.Errorf("bundle config: %w", err)
	}
	if m, err := model.ParseDecisionLogMode(out.Gateway.DecisionLogs); err == nil {
		out.Gateway.DecisionLogMode = m
	}
	return &out, nil
}
