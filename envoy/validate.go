package envoy

import (
	"errors"
	"fmt"
	"sort"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"

	// The typed configs Translate packs into Any, linked so that
	// ValidateDeep can unpack them (protoregistry.GlobalTypes).
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
)

// maxReported caps the errors ValidateDeep reports (a broken template can
// break thousands of routes the same way).
const maxReported = 10

// typeOrder is the order resource types are checked and hashed in.
var typeOrder = []resource.Type{resource.ClusterType, resource.EndpointType, resource.ListenerType, resource.RouteType,
	resource.SecretType, resource.RuntimeType, resource.ExtensionConfigType, resource.VirtualHostType, resource.ScopedRouteType}

// ValidateDeep validates every resource the way Envoy's protoc-gen-validate
// rules do (ValidateAll), and every google.protobuf.Any inside it, at any
// depth, unpacked and validated the same way (ValidateAll does not look
// inside Any). An Any whose type is not linked into the binary is an error.
func ValidateDeep(resources Resources) error {
	var errs []error
	more := 0
	for _, typ := range sortedTypes(resources) {
		for _, r := range resources[typ] {
			if r == nil {
				errs = append(errs, fmt.Errorf("%s: nil resource", typ))
				continue
			}
			if err := validateMessage(r); err != nil {
				if len(errs) >= maxReported {
					more++
					continue
				}
				errs = append(errs, fmt.Errorf("%s %q: %w", shortType(typ), cache.GetResourceName(r), err))
			}
		}
	}
	if more > 0 {
		errs = append(errs, fmt.Errorf("and %d more invalid resources", more))
	}
	return errors.Join(errs...)
}

func sortedTypes(resources Resources) []resource.Type {
	known := map[resource.Type]bool{}
	var out []resource.Type
	for _, t := range typeOrder {
		if _, ok := resources[t]; ok {
			out = append(out, t)
			known[t] = true
		}
	}
	var rest []resource.Type
	for t := range resources {
		if !known[t] {
			rest = append(rest, t)
		}
	}
	sort.Strings(rest)
	return append(out, rest...)
}

type validatorAll interface{ ValidateAll() error }

// validateMessage is ValidateAll on m, then on every Any inside it.
func validateMessage(m proto.Message) error {
	if v, ok := m.(validatorAll); ok {
		if err := v.ValidateAll(); err != nil {
			return err
		}
	}
	var errs []error
	walkAnys(m.ProtoReflect(), "", func(path string, a *anypb.Any) {
		if len(errs) >= maxReported {
			return
		}
		inner, err := a.UnmarshalNew()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: unpack %s: %w", path, a.GetTypeUrl(), err))
			return
		}
		if err := validateMessage(inner); err != nil {
			errs = append(errs, fmt.Errorf("%s (%s): %w", path, a.GetTypeUrl(), err))
		}
	})
	return errors.Join(errs...)
}

var anyName = (&anypb.Any{}).ProtoReflect().Descriptor().FullName()

// walkAnys calls fn for every Any reachable from m without crossing another
// Any (fn recurses into those itself).
func walkAnys(m protoreflect.Message, prefix string, fn func(string, *anypb.Any)) {
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		valueFD := fd
		if fd.IsMap() {
			valueFD = fd.MapValue()
		}
		if k := valueFD.Kind(); k != protoreflect.MessageKind && k != protoreflect.GroupKind {
			return true
		}
		visit := func(path string, mv protoreflect.Message) {
			if mv.Descriptor().FullName() == anyName {
				fn(path, mv.Interface().(*anypb.Any))
				return
			}
			walkAnys(mv, path+".", fn)
		}
		name := prefix + string(fd.Name())
		switch {
		case fd.IsList():
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				visit(fmt.Sprintf("%s[%d]", name, i), l.Get(i).Message())
			}
		case fd.IsMap():
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				visit(fmt.Sprintf("%s[%q]", name, k.String()), mv.Message())
				return true
			})
		default:
			visit(name, v.Message())
		}
		return true
	})
}

func shortType(t resource.Type) string {
	switch t {
	case resource.ClusterType:
		return "cluster"
	case resource.EndpointType:
		return "endpoints"
	case resource.ListenerType:
		return "listener"
	case resource.RouteType:
		return "route configuration"
	}
	return string(t)
}

// checkReferences completes Snapshot.Consistent, which only matches RDS
// names referenced from filter chains and EDS names with their resources:
// every cluster a route (in an RDS RouteConfiguration or inline in an HCM,
// api_listeners included) or ext_authz names must be in the snapshot too.
func checkReferences(resources Resources) error {
	clusters := map[string]bool{}
	for _, r := range resources[resource.ClusterType] {
		if c, ok := r.(*clusterv3.Cluster); ok {
			clusters[c.GetName()] = true
		}
	}
	var errs []error
	missing := func(where, name string) {
		if !clusters[name] && len(errs) < maxReported {
			errs = append(errs, fmt.Errorf("%s references cluster %q, which is not in the snapshot", where, name))
		}
	}
	routeConfig := func(rc *routev3.RouteConfiguration) {
		for _, vh := range rc.GetVirtualHosts() {
			for _, r := range vh.GetRoutes() {
				where := fmt.Sprintf("route %q of %q", r.GetName(), rc.GetName())
				if c := r.GetRoute().GetCluster(); c != "" {
					missing(where, c)
				}
				for _, w := range r.GetRoute().GetWeightedClusters().GetClusters() {
					missing(where, w.GetName())
				}
			}
		}
	}
	for _, r := range resources[resource.RouteType] {
		if rc, ok := r.(*routev3.RouteConfiguration); ok {
			routeConfig(rc)
		}
	}
	hcm := func(where string, a *anypb.Any) {
		m := &hcmv3.HttpConnectionManager{}
		if a == nil || !a.MessageIs(m) {
			return
		}
		if err := a.UnmarshalTo(m); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", where, err))
			return
		}
		if rc := m.GetRouteConfig(); rc != nil {
			routeConfig(rc)
		}
		for _, f := range m.GetHttpFilters() {
			az := &extauthzv3.ExtAuthz{}
			if tc := f.GetTypedConfig(); tc != nil && tc.MessageIs(az) {
				if err := tc.UnmarshalTo(az); err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", where, err))
					continue
				}
				if c := az.GetGrpcService().GetEnvoyGrpc().GetClusterName(); c != "" {
					missing(where+" ext_authz", c)
				}
			}
		}
	}
	for _, r := range resources[resource.ListenerType] {
		l, ok := r.(*listenerv3.Listener)
		if !ok {
			continue
		}
		where := fmt.Sprintf("listener %q", l.GetName())
		hcm(where, l.GetApiListener().GetApiListener())
		chains := l.GetFilterChains()
		if d := l.GetDefaultFilterChain(); d != nil {
			chains = append(chains[:len(chains):len(chains)], d)
		}
		for _, fc := range chains {
			for _, f := range fc.GetFilters() {
				hcm(where, f.GetTypedConfig())
			}
		}
	}
	return errors.Join(errs...)
}

// newSnapshot validates resources (ValidateDeep), builds a snapshot of
// them at version and checks that it is consistent.
func newSnapshot(version string, resources Resources) (*cache.Snapshot, error) {
	if err := ValidateDeep(resources); err != nil {
		return nil, fmt.Errorf("invalid resources: %w", err)
	}
	snap, err := cache.NewSnapshot(version, resources)
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	if err := snap.Consistent(); err != nil {
		return nil, fmt.Errorf("inconsistent snapshot: %w", err)
	}
	if err := checkReferences(resources); err != nil {
		return nil, fmt.Errorf("inconsistent snapshot: %w", err)
	}
	return snap, nil
}
