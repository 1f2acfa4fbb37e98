package envoy

import (
	"fmt"
	"strings"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"

	"github.com/gatehouse-dev/gatehouse/policies"
	"github.com/gatehouse-dev/gatehouse/routing"
)

// grpcListener is one api_listener of a grpc gateway: the name clients dial
// (xds:///name) and its routes in priority order.
type grpcListener struct {
	name   string
	routes []routing.Route
	// sole is the service, when the listener serves exactly one (the
	// target of unmatched RPCs under AllowUnmatchedRoutes).
	sole string
}

// translateGRPC builds a proxyless gRPC gateway's resources:
//
//   - a Listener with an api_listener per exact service host (the routes of
//     that host's vhost), and per service without an exact host (named by
//     the service id, with that service's routes). The HCM carries its
//     RouteConfiguration inline: go-control-plane's Snapshot.Consistent does
//     not follow RDS references from api_listeners, and the snapshot must
//     pass it;
//   - routes for the APIs whose method is POST or "*" (every gRPC call is a
//     POST; grpc-go matches no :method header), paths matched by exact path,
//     prefix "/" or an anchored safe_regex, in routing order; no ext_authz
//     per-route config (grpc-go rejects it), no catch-all (grpc-go fails
//     RPCs no route matches) unless AllowUnmatchedRoutes and the listener
//     serves one service;
//   - an EDS cluster per service and its ClusterLoadAssignment: one
//     locality of weight 1 with the URL's host and port. TLS to the
//     upstream is the client's own transport credentials' business.
func translateGRPC(c *policies.Compiled, _ *TranslateOptions) (Resources, error) {
	ups, err := services(c)
	if err != nil {
		return nil, fmt.Errorf("gateway %s: %w", c.GatewayID, err)
	}
	out := Resources{}
	for _, s := range c.Services {
		name := ServiceClusterName(s.ID)
		out[resource.ClusterType] = append(out[resource.ClusterType], edsCluster(name, DefaultConnectTimeout))
		out[resource.EndpointType] = append(out[resource.EndpointType], loadAssignment(name, ups[s.ID]))
	}
	for _, l := range grpcListeners(c) {
		out[resource.ListenerType] = append(out[resource.ListenerType], grpcAPIListener(c, l))
	}
	return out, nil
}

// grpcListeners lists the listeners of a grpc gateway in a stable order:
// exact hosts in vhost order, then service ids in service order. A service
// id equal to a host already listed is skipped.
func grpcListeners(c *policies.Compiled) []grpcListener {
	var out []grpcListener
	taken := map[string]bool{}
	withHost := map[string]bool{}
	for _, vh := range c.Routes.VHosts {
		sole, hasSole := soleService(c, vh)
		for _, d := range vh.Domains {
			if d == "*" || strings.HasPrefix(d, "*.") {
				continue
			}
			l := grpcListener{name: d, routes: vh.Routes}
			if hasSole {
				l.sole = sole
			}
			out = append(out, l)
			taken[d] = true
		}
	}
	for _, s := range c.Services {
		for _, h := range s.Spec.Hosts {
			if d, err := routing.ValidateDomain(h); err == nil && !strings.HasPrefix(d, "*.") {
				withHost[s.ID] = true
			}
		}
	}
	for _, s := range c.Services {
		if withHost[s.ID] || taken[s.ID] {
			continue
		}
		l := grpcListener{name: s.ID, sole: s.ID}
		seen := map[string]bool{}
		for _, vh := range c.Routes.VHosts {
			for _, r := range vh.Routes {
				if r.ServiceID == s.ID && !seen[r.APIID] {
					seen[r.APIID] = true
					l.routes = append(l.routes, r)
				}
			}
		}
		taken[s.ID] = true
		out = append(out, l)
	}
	return out
}

func grpcAPIListener(c *policies.Compiled, l grpcListener) *listenerv3.Listener {
	rc := &routev3.RouteConfiguration{Name: grpcRoutePrefix + l.name}
	v := &routev3.VirtualHost{Name: l.name, Domains: []string{"*"}}
	for _, r := range l.routes {
		if r.Method != "POST" && r.Method != "*" {
			continue
		}
		m := &routev3.RouteMatch{}
		pathMatch(m, r.Template, true)
		v.Routes = append(v.Routes, &routev3.Route{
			Name:  r.APIID,
			Match: m,
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{
				ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: ServiceClusterName(r.ServiceID)}}},
		})
	}
	if c.Gateway.Spec.AllowUnmatchedRoutes && l.sole != "" {
		v.Routes = append(v.Routes, &routev3.Route{
			Name:  "unmatched",
			Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{
				ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: ServiceClusterName(l.sole)}}},
		})
	}
	rc.VirtualHosts = []*routev3.VirtualHost{v}
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix:     grpcRoutePrefix + l.name,
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: rc},
		HttpFilters: []*hcmv3.HttpFilter{{Name: wellknown.Router,
			ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustPack(&routerv3.Router{})}}},
	}
	return &listenerv3.Listener{Name: l.name, ApiListener: &listenerv3.ApiListener{ApiListener: mustPack(hcm)}}
}
