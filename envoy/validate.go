package envoy

import (
	"errors"
	"fmt"
	"sort"
	"strings"

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
	v := newDeepValidator()
	for _, typ := range sortedTypes(resources) {
		for _, r := range resources[typ] {
			if r == nil {
				errs = append(errs, fmt.Errorf("%s: nil resource", typ))
				continue
			}
			if err := v.validate(r); err != nil {
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
	return newDeepValidator().validate(m)
}

// deepValidator validates messages and the Anys inside them. It remembers,
// per message type, which fields can lead to an Any, so that the walk skips
// the (many) fields that cannot, and it builds the path of a field only
// when reporting an error there.
type deepValidator struct {
	// paths: per analysed message type, its Any-reaching fields.
	paths map[protoreflect.FullName][]protoreflect.FieldDescriptor
	// at is the path from the resource to the message being walked.
	at []pathStep
}

// pathStep is one step of a field path: a field, and an index or a map key.
type pathStep struct {
	field protoreflect.Name
	index int // -1 when none
	key   *protoreflect.MapKey
}

func newDeepValidator() *deepValidator {
	return &deepValidator{paths: map[protoreflect.FullName][]protoreflect.FieldDescriptor{}}
}

func (v *deepValidator) path() string {
	var b strings.Builder
	for i, st := range v.at {
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(string(st.field))
		switch {
		case st.key != nil:
			fmt.Fprintf(&b, "[%q]", st.key.String())
		case st.index >= 0:
			fmt.Fprintf(&b, "[%d]", st.index)
		}
	}
	return b.String()
}

func (v *deepValidator) validate(m proto.Message) error {
	if va, ok := m.(validatorAll); ok {
		if err := va.ValidateAll(); err != nil {
			return err
		}
	}
	var errs []error
	outer := v.at
	v.at = nil
	v.walk(m.ProtoReflect(), func(a *anypb.Any) {
		if len(errs) >= maxReported {
			return
		}
		inner, err := a.UnmarshalNew()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: unpack %s: %w", v.path(), a.GetTypeUrl(), err))
			return
		}
		if err := v.validate(inner); err != nil {
			errs = append(errs, fmt.Errorf("%s (%s): %w", v.path(), a.GetTypeUrl(), err))
		}
	})
	v.at = outer
	return errors.Join(errs...)
}

var anyName = (&anypb.Any{}).ProtoReflect().Descriptor().FullName()

// messageField returns the message type a field holds (its map value's for
// a map), or nil.
func messageField(fd protoreflect.FieldDescriptor) protoreflect.MessageDescriptor {
	if fd.IsMap() {
		fd = fd.MapValue()
	}
	if k := fd.Kind(); k != protoreflect.MessageKind && k != protoreflect.GroupKind {
		return nil
	}
	return fd.Message()
}

// anyFields returns the fields of md through which an Any can be reached.
// A new type is analysed with every type reachable from it, to a fixed
// point (message types may be recursive).
func (v *deepValidator) anyFields(md protoreflect.MessageDescriptor) []protoreflect.FieldDescriptor {
	if fs, ok := v.paths[md.FullName()]; ok {
		return fs
	}
	var todo []protoreflect.MessageDescriptor
	seen := map[protoreflect.FullName]bool{}
	var collect func(protoreflect.MessageDescriptor)
	collect = func(d protoreflect.MessageDescriptor) {
		name := d.FullName()
		if _, done := v.paths[name]; done || name == anyName || seen[name] {
			return
		}
		seen[name] = true
		todo = append(todo, d)
		fields := d.Fields()
		for i := 0; i < fields.Len(); i++ {
			if c := messageField(fields.Get(i)); c != nil {
				collect(c)
			}
		}
	}
	collect(md)
	reach := map[protoreflect.FullName]bool{}
	reaches := func(d protoreflect.MessageDescriptor) bool {
		name := d.FullName()
		if name == anyName {
			return true
		}
		if fs, done := v.paths[name]; done {
			return len(fs) > 0
		}
		return reach[name]
	}
	for changed := true; changed; {
		changed = false
		for _, d := range todo {
			if reach[d.FullName()] {
				continue
			}
			fields := d.Fields()
			for i := 0; i < fields.Len(); i++ {
				if c := messageField(fields.Get(i)); c != nil && reaches(c) {
					reach[d.FullName()], changed = true, true
					break
				}
			}
		}
	}
	for _, d := range todo {
		fs := []protoreflect.FieldDescriptor{}
		fields := d.Fields()
		for i := 0; i < fields.Len(); i++ {
			if c := messageField(fields.Get(i)); c != nil && reaches(c) {
				fs = append(fs, fields.Get(i))
			}
		}
		v.paths[d.FullName()] = fs
	}
	return v.paths[md.FullName()]
}

// walk calls fn for every Any reachable from m without crossing another
// Any (fn recurses into those itself), with v.at naming its place.
func (v *deepValidator) walk(m protoreflect.Message, fn func(*anypb.Any)) {
	for _, fd := range v.anyFields(m.Descriptor()) {
		if !m.Has(fd) {
			continue
		}
		val := m.Get(fd)
		switch {
		case fd.IsList():
			l := val.List()
			for i := 0; i < l.Len(); i++ {
				v.visit(pathStep{field: fd.Name(), index: i}, l.Get(i).Message(), fn)
			}
		case fd.IsMap():
			val.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				v.visit(pathStep{field: fd.Name(), index: -1, key: &k}, mv.Message(), fn)
				return true
			})
		default:
			v.visit(pathStep{field: fd.Name(), index: -1}, val.Message(), fn)
		}
	}
}

func (v *deepValidator) visit(st pathStep, m protoreflect.Message, fn func(*anypb.Any)) {
	v.at = append(v.at, st)
	if m.Descriptor().FullName() == anyName {
		fn(m.Interface().(*anypb.Any))
	} else {
		v.walk(m, fn)
	}
	v.at = v.at[:len(v.at)-1]
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
