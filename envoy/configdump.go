package envoy

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// ErrNotBuilt: the gateway has no xDS snapshot yet (its bundle is not
// built, or the server has not translated it yet).
var ErrNotBuilt = errors.New("no xDS snapshot has been built for this gateway yet")

// TranslationError: the gateway's configuration could not be translated
// into xDS resources, and no earlier snapshot is served.
type TranslationError struct{ Reason string }

func (e *TranslationError) Error() string {
	return "the gateway's configuration does not translate into xDS resources: " + e.Reason
}

// GatewayConfig is what the control plane serves a gateway's xDS nodes:
// its snapshot, rendered as Envoy's admin /config_dump renders what it
// loaded.
type GatewayConfig struct {
	NodeID string `json:"node_id"`
	// Version is the snapshot's version (the version_info of its
	// responses); BundleRevision the bundle it was translated from.
	Version        string     `json:"version"`
	BundleRevision int64      `json:"bundle_revision,omitempty"`
	UpdatedAt      *time.Time `json:"updated_at,omitempty"`
	// Error is why the latest configuration could not be served: the
	// snapshot shown is then the previous one, which is still served.
	Error string `json:"error,omitempty"`
	// ConfigDump is an envoy.admin.v3.ConfigDump in protojson with the
	// proto field names (as Envoy's /config_dump): clusters, endpoints
	// (grpc gateways), listeners and route configurations, each resource
	// sorted by name. Secrets are never in it: the resources name files
	// for private keys, and any inline key material would be redacted.
	ConfigDump RawJSON `json:"config_dump"`
}

// RawJSON is JSON text rendered as it is.
type RawJSON []byte

// MarshalJSON returns the text.
func (r RawJSON) MarshalJSON() ([]byte, error) {
	if len(r) == 0 {
		return []byte("null"), nil
	}
	return r, nil
}

// Redacted replaces inline secret material in a config dump.
const Redacted = "[redacted]"

// GatewayConfig returns the snapshot served to a gateway's nodes: an
// ErrNotBuilt error before the first one, a *TranslationError when its
// configuration never translated. A deleted gateway has none.
func (s *Server) GatewayConfig(tenantID, gatewayID string) (*GatewayConfig, error) {
	id := NodeID(tenantID, gatewayID)
	s.mu.Lock()
	g := s.gateways[id]
	s.mu.Unlock()
	switch {
	case g == nil || g.deleted:
		return nil, ErrNotBuilt
	case !g.set && g.err != "":
		return nil, &TranslationError{Reason: g.err}
	case !g.set:
		return nil, ErrNotBuilt
	}
	snap, err := s.adsCache.GetSnapshot(id)
	if err != nil {
		return nil, ErrNotBuilt
	}
	out := &GatewayConfig{NodeID: id, Version: g.version, BundleRevision: g.revision, Error: g.err}
	at := g.updatedAt
	out.UpdatedAt = &at
	dump, err := configDump(snap, at)
	if err != nil {
		return nil, fmt.Errorf("render the xDS snapshot of %s: %w", id, err)
	}
	out.ConfigDump = dump
	return out, nil
}

// configDump renders a snapshot as an envoy.admin.v3.ConfigDump, in the
// order Envoy lists its dynamic resources.
func configDump(snap cache.ResourceSnapshot, at time.Time) ([]byte, error) {
	updated := timestamppb.New(at)
	var dump adminv3.ConfigDump
	add := func(m proto.Message) error {
		a, err := anypb.New(m)
		if err != nil {
			return err
		}
		dump.Configs = append(dump.Configs, a)
		return nil
	}
	type packed struct {
		version string
		names   []string
		items   []*anypb.Any
	}
	of := func(typeURL string) (packed, error) {
		p := packed{version: snap.GetVersion(typeURL)}
		res := snap.GetResources(typeURL)
		p.names = slicesSorted(res)
		for _, name := range p.names {
			m := proto.Clone(res[name])
			redactSecrets(m.ProtoReflect())
			a, err := anypb.New(m)
			if err != nil {
				return p, fmt.Errorf("pack %s %q: %w", shortType(typeURL), name, err)
			}
			p.items = append(p.items, a)
		}
		return p, nil
	}
	clusters, err := of(resource.ClusterType)
	if err != nil {
		return nil, err
	}
	cd := &adminv3.ClustersConfigDump{VersionInfo: clusters.version}
	for _, a := range clusters.items {
		cd.DynamicActiveClusters = append(cd.DynamicActiveClusters,
			&adminv3.ClustersConfigDump_DynamicCluster{VersionInfo: clusters.version, Cluster: a, LastUpdated: updated})
	}
	if err := add(cd); err != nil {
		return nil, err
	}
	endpoints, err := of(resource.EndpointType)
	if err != nil {
		return nil, err
	}
	if len(endpoints.items) > 0 {
		ed := &adminv3.EndpointsConfigDump{}
		for _, a := range endpoints.items {
			ed.DynamicEndpointConfigs = append(ed.DynamicEndpointConfigs,
				&adminv3.EndpointsConfigDump_DynamicEndpointConfig{VersionInfo: endpoints.version, EndpointConfig: a, LastUpdated: updated})
		}
		if err := add(ed); err != nil {
			return nil, err
		}
	}
	listeners, err := of(resource.ListenerType)
	if err != nil {
		return nil, err
	}
	ld := &adminv3.ListenersConfigDump{VersionInfo: listeners.version}
	for i, a := range listeners.items {
		ld.DynamicListeners = append(ld.DynamicListeners, &adminv3.ListenersConfigDump_DynamicListener{
			Name:        listeners.names[i],
			ActiveState: &adminv3.ListenersConfigDump_DynamicListenerState{VersionInfo: listeners.version, Listener: a, LastUpdated: updated},
		})
	}
	if err := add(ld); err != nil {
		return nil, err
	}
	routes, err := of(resource.RouteType)
	if err != nil {
		return nil, err
	}
	rd := &adminv3.RoutesConfigDump{}
	for _, a := range routes.items {
		rd.DynamicRouteConfigs = append(rd.DynamicRouteConfigs,
			&adminv3.RoutesConfigDump_DynamicRouteConfig{VersionInfo: routes.version, RouteConfig: a, LastUpdated: updated})
	}
	if err := add(rd); err != nil {
		return nil, err
	}
	return protojson.MarshalOptions{UseProtoNames: true}.Marshal(&dump)
}

func slicesSorted(m map[string]types.Resource) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// secretFields are the names of the DataSource fields of Envoy's API that
// hold secrets (TlsCertificate's private_key and password, a generic
// secret, session ticket keys, an HMAC secret…).
func secretField(name protoreflect.Name) bool {
	n := string(name)
	return strings.Contains(n, "private_key") || strings.Contains(n, "password") || strings.Contains(n, "secret") || n == "keys"
}

var dataSourceName = (&corev3.DataSource{}).ProtoReflect().Descriptor().FullName()

// redactSecrets replaces, in m and every message under it (inside Any
// fields too), the inline content of secret DataSources with Redacted.
// A file name or an environment variable stays: it names the secret
// without holding it. It reports whether it changed anything.
func redactSecrets(m protoreflect.Message) bool {
	if a, ok := m.Interface().(*anypb.Any); ok {
		inner, err := a.UnmarshalNew()
		if err != nil {
			return false // a type this binary does not know: left as it is
		}
		if !redactSecrets(inner.ProtoReflect()) {
			return false
		}
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(inner)
		if err != nil {
			return false
		}
		a.Value = b
		return true
	}
	changed := false
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Message() == nil {
			return true
		}
		redactOne := func(sub protoreflect.Message) {
			if fd.Message().FullName() == dataSourceName && secretField(fd.Name()) {
				if ds, ok := sub.Interface().(*corev3.DataSource); ok && redactDataSource(ds) {
					changed = true
				}
				return
			}
			if redactSecrets(sub) {
				changed = true
			}
		}
		switch {
		case fd.IsList():
			l := v.List()
			for i := range l.Len() {
				redactOne(l.Get(i).Message())
			}
		case fd.IsMap():
			if fd.MapValue().Message() == nil {
				return true
			}
			v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
				if redactSecrets(mv.Message()) {
					changed = true
				}
				return true
			})
		default:
			redactOne(v.Message())
		}
		return true
	})
	return changed
}

// redactDataSource replaces inline content; it reports whether there was
// any.
func redactDataSource(ds *corev3.DataSource) bool {
	switch ds.GetSpecifier().(type) {
	case *corev3.DataSource_InlineBytes, *corev3.DataSource_InlineString:
		ds.Specifier = &corev3.DataSource_InlineString{InlineString: Redacted}
		return true
	}
	return false
}
