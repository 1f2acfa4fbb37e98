package envoy

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"time"

	mutationrulesv3 "github.com/envoyproxy/go-control-plane/envoy/config/common/mutation_rules/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	headermutationv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/header_mutation/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/policies"
	"github.com/gatehouse-dev/gatehouse/routing"
)

// Context extension keys set on every API route; the authorizer reads them
// to skip its own route matching.
const (
	ExtTenant  = "tenant"
	ExtService = "service"
	ExtAPI     = "api"
	// ExtGateway names the gateway, so one authorizer (gatehouse serve's
	// in-process one) can serve several gateways' bundles.
	ExtGateway = "gateway"
)

// Defaults of TranslateOptions.
const (
	DefaultAuthorizerTimeout      = 500 * time.Millisecond
	DefaultUpstreamCAFile         = "/etc/ssl/certs/ca-certificates.crt"
	DefaultConnectTimeout         = 5 * time.Second
	defaultAuthorizerConnectLimit = 1 * time.Second
)

// TranslateOptions are the deployment facts the configuration does not hold.
type TranslateOptions struct {
	// AuthorizerAddress is the authorizer's ext_authz gRPC server as Envoy
	// reaches it, "host:port". Required for envoy gateways.
	AuthorizerAddress string
	// AuthorizerTimeout bounds each ext_authz check (default 500ms).
	AuthorizerTimeout time.Duration
	// AuthorizerConnectTimeout is the authorizer cluster's connect timeout
	// (default 1s).
	AuthorizerConnectTimeout time.Duration
	// AuthorizerTLS, when set, makes Envoy call the authorizer over TLS:
	// the certificate verified against its CA bundle (default
	// DefaultUpstreamCAFile) and ServerName (default the host of
	// AuthorizerAddress), ALPN h2, and the client certificate (mTLS) when
	// CertFile and KeyFile are set (files on the Envoy host, read when
	// Envoy loads the cluster). nil: plaintext HTTP/2.
	AuthorizerTLS *TLSClient
	// UpstreamConnectTimeout is the service clusters' connect timeout
	// (default 5s).
	UpstreamConnectTimeout time.Duration
	// UpstreamCAFile is the CA bundle, on the Envoy host, that https
	// upstream certificates are verified with (default
	// /etc/ssl/certs/ca-certificates.crt).
	UpstreamCAFile string
}

func (o TranslateOptions) withDefaults() TranslateOptions {
	if o.AuthorizerTimeout <= 0 {
		o.AuthorizerTimeout = DefaultAuthorizerTimeout
	}
	if o.AuthorizerConnectTimeout <= 0 {
		o.AuthorizerConnectTimeout = defaultAuthorizerConnectLimit
	}
	if o.UpstreamConnectTimeout <= 0 {
		o.UpstreamConnectTimeout = DefaultConnectTimeout
	}
	if o.UpstreamCAFile == "" {
		o.UpstreamCAFile = DefaultUpstreamCAFile
	}
	return o
}

// Resources is a gateway's xDS resources by type URL.
type Resources = map[resource.Type][]types.Resource

// Translate turns a gateway's compiled configuration into xDS resources:
// for an envoy gateway a listener, its RouteConfiguration (served by RDS)
// and clusters; for a grpc gateway the proxyless resources (see the package
// documentation). The result is deterministic, and ValidateDeep accepts it.
func Translate(c *policies.Compiled, opts TranslateOptions) (Resources, error) {
	if c == nil || c.Routes == nil {
		return nil, errNoCompiled
	}
	opts = opts.withDefaults()
	switch c.Gateway.Spec.Type {
	case model.GatewayEnvoy, "":
		return translateEnvoy(c, &opts)
	case model.GatewayGRPC:
		return translateGRPC(c, &opts)
	default:
		return nil, fmt.Errorf("gateway %s: unsupported type %q", c.GatewayID, c.Gateway.Spec.Type)
	}
}

// services indexes the gateway's services and parses their URLs.
func services(c *policies.Compiled) (map[string]upstream, error) {
	out := make(map[string]upstream, len(c.Services))
	for _, s := range c.Services {
		up, err := parseUpstream(s.Spec.URL)
		if err != nil {
			return nil, fmt.Errorf("service %s: %w", s.ID, err)
		}
		out[s.ID] = up
	}
	return out, nil
}

func mustPack(m proto.Message) *anypb.Any {
	a := &anypb.Any{}
	if err := anypb.MarshalFrom(a, m, proto.MarshalOptions{Deterministic: true}); err != nil {
		// anypb.New fails only when m cannot be marshalled, which no
		// message built here can.
		panic(fmt.Sprintf("envoy: pack %T: %v", m, err))
	}
	return a
}

func translateEnvoy(c *policies.Compiled, opts *TranslateOptions) (Resources, error) {
	if opts.AuthorizerAddress == "" {
		return nil, fmt.Errorf("gateway %s: no authorizer address", c.GatewayID)
	}
	ups, err := services(c)
	if err != nil {
		return nil, fmt.Errorf("gateway %s: %w", c.GatewayID, err)
	}
	var clusters []types.Resource
	for _, s := range c.Services {
		cl, err := serviceCluster(s.ID, ups[s.ID], opts)
		if err != nil {
			return nil, fmt.Errorf("gateway %s: service %s: %w", c.GatewayID, s.ID, err)
		}
		clusters = append(clusters, cl)
	}
	authz, err := authorizerCluster(opts)
	if err != nil {
		return nil, fmt.Errorf("gateway %s: %w", c.GatewayID, err)
	}
	clusters = append(clusters, authz)

	rc, err := envoyRoutes(c, ups)
	if err != nil {
		return nil, fmt.Errorf("gateway %s: %w", c.GatewayID, err)
	}
	lis, err := envoyListener(c, opts)
	if err != nil {
		return nil, fmt.Errorf("gateway %s: %w", c.GatewayID, err)
	}
	return Resources{
		resource.ClusterType:  clusters,
		resource.ListenerType: {lis},
		resource.RouteType:    {rc},
	}, nil
}

// envoyListener is the gateway's listener: an HTTP connection manager with
// ext_authz then the router, routes from RDS.
func envoyListener(c *policies.Compiled, opts *TranslateOptions) (*listenerv3.Listener, error) {
	gw := c.Gateway.Spec
	addr := gw.ListenerAddress
	if addr == "" {
		addr = model.DefaultListenerAddress
	}
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return nil, fmt.Errorf("listener address %q is not an IP address", addr)
	}
	addr = ip.String()
	port := gw.ListenerPort
	if port == 0 {
		port = model.DefaultListenerPort
	}
	if port < 1 || port > 65535 {
		return nil, fmt.Errorf("listener port %d out of range", port)
	}
	authz := &extauthzv3.ExtAuthz{
		Services: &extauthzv3.ExtAuthz_GrpcService{GrpcService: &corev3.GrpcService{
			TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: AuthorizerClusterName}},
			Timeout:         durationpb.New(opts.AuthorizerTimeout),
		}},
		TransportApiVersion:    corev3.ApiVersion_V3,
		FailureModeAllow:       false,
		IncludePeerCertificate: false,
	}
	if b := gw.RequestBody; b != nil && b.MaxRequestBytes > 0 {
		authz.WithRequestBody = &extauthzv3.BufferSettings{
			MaxRequestBytes:     b.MaxRequestBytes,
			AllowPartialMessage: b.AllowPartialMessage,
			PackAsBytes:         true,
		}
	}
	hcm := &hcmv3.HttpConnectionManager{
		CodecType:  hcmv3.HttpConnectionManager_AUTO,
		StatPrefix: ListenerName(c.GatewayID),
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			ConfigSource: adsConfigSource(), RouteConfigName: RouteConfigName(c.GatewayID)}},
		HttpFilters: httpFilters(
			ownedHeadersFilter(c.OwnedHeaders),
			// CORS preflights are answered before any authorization.
			corsFilter(c),
			&hcmv3.HttpFilter{Name: wellknown.HTTPExternalAuthorization, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustPack(authz)}},
			&hcmv3.HttpFilter{Name: wellknown.Router, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustPack(&routerv3.Router{})}},
		),
		// Route on the host without its port, and on a normalised path
		// (RFC 3986 dot segments resolved, unreserved escapes decoded,
		// repeated slashes merged; escaped slashes refused), which is also
		// what the authorizer sees: a path can never mean one thing to
		// routing and authorization and another to the upstream (a public
		// /static/{p...} must not reach /admin through /static/../admin).
		StripPortMode: &hcmv3.HttpConnectionManager_StripAnyHostPort{StripAnyHostPort: true},
		// A header name with '_' is refused, as the authorizer refuses it:
		// CGI-style upstreams read "X_User" as "X-User" (a forged owned
		// header).
		CommonHttpProtocolOptions: &corev3.HttpProtocolOptions{
			HeadersWithUnderscoresAction: corev3.HttpProtocolOptions_REJECT_REQUEST},
		NormalizePath:                wrapperspb.Bool(true),
		MergeSlashes:                 true,
		PathWithEscapedSlashesAction: hcmv3.HttpConnectionManager_REJECT_REQUEST,
	}
	return &listenerv3.Listener{
		Name:    ListenerName(c.GatewayID),
		Address: socketAddress(addr, uint32(port)),
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{
			Name:       wellknown.HTTPConnectionManager,
			ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustPack(hcm)},
		}}}},
	}, nil
}

// httpFilters lists the filters that are not nil.
func httpFilters(fs ...*hcmv3.HttpFilter) []*hcmv3.HttpFilter {
	out := make([]*hcmv3.HttpFilter, 0, len(fs))
	for _, f := range fs {
		if f != nil {
			out = append(out, f)
		}
	}
	return out
}

// HeaderMutationFilterName is the header_mutation HTTP filter's name.
const HeaderMutationFilterName = "envoy.filters.http.header_mutation"

// ownedHeadersFilter removes, ahead of ext_authz and on every route (public
// ones included, where ext_authz does not run), whatever the client sent
// under a header name the gateway owns (policies.OwnedHeaderPrefix and the
// bundle's owned names): those headers are only ever set by the gateway.
func ownedHeadersFilter(owned []string) *hcmv3.HttpFilter {
	m := &headermutationv3.Mutations{}
	for _, h := range owned {
		m.RequestMutations = append(m.RequestMutations, &mutationrulesv3.HeaderMutation{
			Action: &mutationrulesv3.HeaderMutation_Remove{Remove: h}})
	}
	m.RequestMutations = append(m.RequestMutations, &mutationrulesv3.HeaderMutation{
		Action: &mutationrulesv3.HeaderMutation_RemoveOnMatch_{RemoveOnMatch: &mutationrulesv3.HeaderMutation_RemoveOnMatch{
			KeyMatcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: policies.OwnedHeaderPrefix}, IgnoreCase: true}}}})
	return &hcmv3.HttpFilter{Name: HeaderMutationFilterName, ConfigType: &hcmv3.HttpFilter_TypedConfig{
		TypedConfig: mustPack(&headermutationv3.HeaderMutation{Mutations: m})}}
}

// nonCanonicalPaths are RE2 patterns (full match, on the path Envoy routes
// after normalize_path and merge_slashes) for the paths routing.CanonicalPath
// refuses that Envoy's own normalisation lets through: raw characters
// outside pchar (';' and '\' among them), encoded control characters, '/',
// '\', '.' and ';', invalid escapes, and segments ending with '.'. Each
// vhost answers them 400 before any API route, as the authorizer would.
var nonCanonicalPaths = []string{
	`.*[^A-Za-z0-9._~!$&'()*+,=:@/%-].*`,
	`.*%(?:[01][0-9A-Fa-f]|7[Ff]|2[EeFf]|5[Cc]|3[Bb]).*`,
	`.*%(?:[^0-9A-Fa-f]|[0-9A-Fa-f][^0-9A-Fa-f]|[0-9A-Fa-f]?$).*`,
	`.*[.](?:/.*)?`,
}

// nonCanonicalRoutes answer the nonCanonicalPaths with 400, without an
// authorizer call (the authorizer answers them 400 too).
func nonCanonicalRoutes() []*routev3.Route {
	var out []*routev3.Route
	for i, re := range nonCanonicalPaths {
		out = append(out, jsonDirectRoute(fmt.Sprintf("non-canonical-%d", i),
			&routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: re}}},
			400, "invalid_request", routing.ReasonNonCanonicalPath))
	}
	return out
}

// skipsAuthorizer says whether an API's route may skip ext_authz: exactly
// when the authorizer would allow it as public (public and no policy;
// the admin API refuses public with a policy, and should such an API exist
// its policy runs).
func skipsAuthorizer(a model.APISpec) bool { return a.Public && a.PolicyID == "" }

// envoyRoutes is the gateway's RouteConfiguration: one virtual host per
// routing vhost, first the routes refusing non-canonical paths, then its
// API routes in the routing table's priority order (so that Envoy's first
// match is Gatehouse's match), then a catch-all.
func envoyRoutes(c *policies.Compiled, ups map[string]upstream) (*routev3.RouteConfiguration, error) {
	rc := &routev3.RouteConfiguration{Name: RouteConfigName(c.GatewayID)}
	cors := serviceCORS(c)
	for _, vh := range c.Routes.VHosts {
		v := &routev3.VirtualHost{Name: vh.Name, Domains: vh.Domains, Routes: nonCanonicalRoutes()}
		// CORS preflights (envoy/cors.go), ahead of every API route, on a
		// vhost whose services all have the same cors settings
		// (policies.VHostCORS).
		vhostCORS := policies.VHostCORS(vh.Routes, func(id string) *model.CORSSettings { return cors[id] })
		for i := range vh.Routes {
			r := &vh.Routes[i]
			if sc := vhostCORS; sc != nil { // then every route's service has sc
				up, ok := ups[r.ServiceID]
				if !ok {
					return nil, fmt.Errorf("api %s: service %s is not in the gateway", r.APIID, r.ServiceID)
				}
				v.Routes = append(v.Routes, preflightRoute(c, r, sc, up))
			}
		}
		for i := range vh.Routes {
			r := &vh.Routes[i]
			up, ok := ups[r.ServiceID]
			if !ok {
				return nil, fmt.Errorf("api %s: service %s is not in the gateway", r.APIID, r.ServiceID)
			}
			m := &routev3.RouteMatch{Headers: methodMatch(r.Method)}
			pathMatch(m, r.Template, false)
			ext := map[string]string{ExtTenant: c.TenantID, ExtGateway: c.GatewayID, ExtService: r.ServiceID, ExtAPI: r.APIID}
			v.Routes = append(v.Routes, &routev3.Route{
				Name:                 r.APIID,
				Match:                m,
				Action:               forward(r.ServiceID, up),
				TypedPerFilterConfig: withCORS(authzPerRoute(ext, skipsAuthorizer(c.APIs[r.APIID].Spec)), vhostCORS, false),
			})
		}
		v.Routes = append(v.Routes, unmatchedRoute(c, vh))
		rc.VirtualHosts = append(rc.VirtualHosts, v)
	}
	return rc, nil
}

// forward routes to a service's cluster, with the upstream's Host header
// and its base path prefixed.
func forward(serviceID string, up upstream) *routev3.Route_Route {
	a := &routev3.RouteAction{
		ClusterSpecifier:     &routev3.RouteAction_Cluster{Cluster: ServiceClusterName(serviceID)},
		HostRewriteSpecifier: &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: up.authority},
	}
	if up.basePath != "" {
		a.RegexRewrite = &matcherv3.RegexMatchAndSubstitute{
			Pattern:      &matcherv3.RegexMatcher{Regex: "^/"},
			Substitution: up.basePath + "/",
		}
	}
	return &routev3.Route_Route{Route: a}
}

// authzPerRoute is a route's ext_authz override: the context extensions
// naming the API, or ext_authz disabled for a public API.
func authzPerRoute(ext map[string]string, public bool) map[string]*anypb.Any {
	per := &extauthzv3.ExtAuthzPerRoute{Override: &extauthzv3.ExtAuthzPerRoute_CheckSettings{
		CheckSettings: &extauthzv3.CheckSettings{ContextExtensions: ext}}}
	if public {
		per.Override = &extauthzv3.ExtAuthzPerRoute_Disabled{Disabled: true}
	}
	return map[string]*anypb.Any{wellknown.HTTPExternalAuthorization: mustPack(per)}
}

// unmatchedRoute ends a virtual host. Requests no API matches get a 404
// from Envoy without an authorizer call, as the authorizer would answer
// them. With AllowUnmatchedRoutes, a vhost of exactly one service sends them
// to that service through ext_authz (context extensions without an API, so
// the authorizer matches, finds nothing and applies the gateway's rule); a
// vhost of several services has no upstream to choose, so it still answers
// 404.
func unmatchedRoute(c *policies.Compiled, vh routing.VHost) *routev3.Route {
	catchAll := &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}}
	if c.Gateway.Spec.AllowUnmatchedRoutes {
		if sid, ok := soleService(c, vh); ok {
			if up, err := parseUpstream(serviceURL(c, sid)); err == nil {
				return &routev3.Route{
					Name:                 "unmatched",
					Match:                catchAll,
					Action:               forward(sid, up),
					TypedPerFilterConfig: authzPerRoute(map[string]string{ExtTenant: c.TenantID, ExtGateway: c.GatewayID, ExtService: sid}, false),
				}
			}
		}
	}
	return jsonDirectRoute("unmatched", catchAll, 404, "not_found", "no API matches this request")
}

// jsonDirectRoute answers the requests match selects itself, with a JSON
// error body, without an authorizer call.
func jsonDirectRoute(name string, match *routev3.RouteMatch, status uint32, code, description string) *routev3.Route {
	body, _ := json.Marshal(map[string]string{"error": code, "error_description": description})
	return &routev3.Route{
		Name:  name,
		Match: match,
		Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{
			Status: status,
			Body:   &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: string(body) + "\n"}},
		}},
		ResponseHeadersToAdd: []*corev3.HeaderValueOption{{
			Header:       &corev3.HeaderValue{Key: "content-type", Value: "application/json"},
			AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
		}},
		TypedPerFilterConfig: map[string]*anypb.Any{wellknown.HTTPExternalAuthorization: mustPack(
			&extauthzv3.ExtAuthzPerRoute{Override: &extauthzv3.ExtAuthzPerRoute_Disabled{Disabled: true}})},
	}
}

// soleService returns the one service a vhost serves, if it serves one.
func soleService(c *policies.Compiled, vh routing.VHost) (string, bool) {
	in := map[string]bool{}
	for _, s := range c.Services {
		if servesDomains(s.Spec.Hosts, vh.Domains) {
			in[s.ID] = true
		}
	}
	if len(in) != 1 {
		return "", false
	}
	for id := range in {
		return id, true
	}
	return "", false
}

// servesDomains reports whether a service with these hosts belongs to a
// vhost with these domains (vhosts group the domains of identical service
// sets, so one shared domain decides).
func servesDomains(hosts, domains []string) bool {
	if len(hosts) == 0 {
		return len(domains) == 1 && domains[0] == "*"
	}
	for _, h := range hosts {
		d, err := routing.ValidateDomain(h)
		if err != nil {
			continue
		}
		for _, vd := range domains {
			if d == vd {
				return true
			}
		}
	}
	return false
}

func serviceURL(c *policies.Compiled, serviceID string) string {
	for _, s := range c.Services {
		if s.ID == serviceID {
			return s.Spec.URL
		}
	}
	return ""
}
