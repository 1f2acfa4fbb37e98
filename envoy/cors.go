package envoy

import (
	"regexp"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	corsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/policies"
	"github.com/gatehouse-dev/gatehouse/routing"
)

// CORS (a service's cors settings), answered as the authorizer's reverse
// proxy answers it (gateway/cors.go has the rules):
//
//   - The listener gets Envoy's CORS filter between the owned-headers
//     filter and ext_authz (only when a service of the gateway has cors),
//     so that preflights are answered before any authorization.
//   - Each vhost starts, after the non-canonical refusals, with one
//     preflight route per API route of a service with cors, in the routing
//     table's priority order: the API's path, :method OPTIONS, an origin
//     header among the allowed ones ("*": any non-empty one), and
//     access-control-request-method matching the API's method
//     (gateway.PreflightMethodMatches: OPTIONS and "*" any, GET also HEAD).
//     Its CorsPolicy (per-route typed_per_filter_config) never forwards a
//     preflight, so the CORS filter answers whatever matches; should it not
//     (no filter), ext_authz still runs, without an API in the context
//     extensions, so the authorizer routes the OPTIONS request itself.
//     Envoy's first match over these routes is thus the first route in
//     priority order among those whose service allows the origin — the
//     proxy's rule.
//   - The API routes of a service with cors carry its CorsPolicy too
//     (preflights of other origins are forwarded, to ext_authz), so the
//     responses to requests of allowed origins get
//     Access-Control-Allow-Origin — ext_authz's denials included, as the
//     filter runs before it.

// CORSFilterName is the CORS HTTP filter's name.
const CORSFilterName = "envoy.filters.http.cors"

// corsFilter is the listener's CORS filter, or nil when no service of the
// gateway has cors.
func corsFilter(c *policies.Compiled) *hcmv3.HttpFilter {
	for _, s := range c.Services {
		if s.Spec.CORS != nil {
			return &hcmv3.HttpFilter{Name: CORSFilterName, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustPack(&corsv3.Cors{})}}
		}
	}
	return nil
}

// corsPolicy is a service's CorsPolicy; preflight routes never forward a
// preflight.
func corsPolicy(c *model.CORSSettings, preflight bool) *corsv3.CorsPolicy {
	p := &corsv3.CorsPolicy{
		AllowMethods:  c.AllowMethodsValue(),
		AllowHeaders:  c.AllowHeadersValue(),
		ExposeHeaders: c.ExposeHeadersValue(),
		MaxAge:        c.MaxAgeValue(),
	}
	for _, o := range c.AllowedOrigins {
		p.AllowOriginStringMatch = append(p.AllowOriginStringMatch, &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: o}})
	}
	if c.AllowCredentials {
		p.AllowCredentials = wrapperspb.Bool(true)
	}
	if preflight {
		p.ForwardNotMatchingPreflights = wrapperspb.Bool(false)
	}
	return p
}

// withCORS adds a CorsPolicy to a route's per-filter configuration.
func withCORS(per map[string]*anypb.Any, c *model.CORSSettings, preflight bool) map[string]*anypb.Any {
	if c != nil {
		per[CORSFilterName] = mustPack(corsPolicy(c, preflight))
	}
	return per
}

// originMatcher matches the origin header against allowed origins.
func originMatcher(c *model.CORSSettings) *routev3.HeaderMatcher {
	re := ".+"
	if !c.AnyOrigin() {
		quoted := make([]string, len(c.AllowedOrigins))
		for i, o := range c.AllowedOrigins {
			quoted[i] = regexp.QuoteMeta(o)
		}
		re = strings.Join(quoted, "|")
	}
	return &routev3.HeaderMatcher{Name: "origin", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
		MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: re}}}}}
}

// preflightRoute is the route answering the preflights of an API route of
// a service with cors.
func preflightRoute(c *policies.Compiled, r *routing.Route, cors *model.CORSSettings, up upstream) *routev3.Route {
	announced := r.Method
	if announced == "OPTIONS" {
		announced = "*"
	}
	m := &routev3.RouteMatch{Headers: []*routev3.HeaderMatcher{
		methodHeaderMatcher(":method", "OPTIONS"),
		originMatcher(cors),
		methodHeaderMatcher("access-control-request-method", announced),
	}}
	pathMatch(m, r.Template, false)
	ext := map[string]string{ExtTenant: c.TenantID, ExtGateway: c.GatewayID, ExtService: r.ServiceID}
	per := map[string]*anypb.Any{wellknown.HTTPExternalAuthorization: mustPack(&extauthzv3.ExtAuthzPerRoute{
		Override: &extauthzv3.ExtAuthzPerRoute_CheckSettings{CheckSettings: &extauthzv3.CheckSettings{ContextExtensions: ext}}})}
	return &routev3.Route{
		Name:                 PreflightRoutePrefix + r.APIID,
		Match:                m,
		Action:               forward(r.ServiceID, up),
		TypedPerFilterConfig: withCORS(per, cors, true),
	}
}

// PreflightRoutePrefix starts the names of the preflight routes (followed
// by the API id).
const PreflightRoutePrefix = "cors-preflight:"

// serviceCORS indexes the gateway's services' cors settings.
func serviceCORS(c *policies.Compiled) map[string]*model.CORSSettings {
	out := map[string]*model.CORSSettings{}
	for _, s := range c.Services {
		if s.Spec.CORS != nil {
			out[s.ID] = s.Spec.CORS
		}
	}
	return out
}
