package envoy

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	"github.com/gatehouse-dev/gatehouse/model"
)

// dumpOf decodes a GatewayConfig's config dump the way a reader of Envoy's
// /config_dump would, and returns its resources.
func dumpOf(t *testing.T, gc *GatewayConfig) (clusters []*clusterv3.Cluster, listeners []*listenerv3.Listener, routes []*routev3.RouteConfiguration, endpoints []*endpointv3.ClusterLoadAssignment) {
	t.Helper()
	var dump adminv3.ConfigDump
	if err := protojson.Unmarshal(gc.ConfigDump, &dump); err != nil {
		t.Fatalf("the config dump is not an envoy.admin.v3.ConfigDump: %v\n%s", err, gc.ConfigDump)
	}
	unpackAny := func(a *anypb.Any, m proto.Message) {
		t.Helper()
		if err := a.UnmarshalTo(m); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range dump.GetConfigs() {
		m, err := c.UnmarshalNew()
		if err != nil {
			t.Fatal(err)
		}
		switch d := m.(type) {
		case *adminv3.ClustersConfigDump:
			for _, dc := range d.GetDynamicActiveClusters() {
				cl := &clusterv3.Cluster{}
				unpackAny(dc.GetCluster(), cl)
				clusters = append(clusters, cl)
				if dc.GetVersionInfo() != gc.Version {
					t.Errorf("cluster %s: version %q, want %q", cl.GetName(), dc.GetVersionInfo(), gc.Version)
				}
			}
		case *adminv3.ListenersConfigDump:
			for _, dl := range d.GetDynamicListeners() {
				l := &listenerv3.Listener{}
				unpackAny(dl.GetActiveState().GetListener(), l)
				if l.GetName() != dl.GetName() {
					t.Errorf("listener %q shown under the name %q", l.GetName(), dl.GetName())
				}
				listeners = append(listeners, l)
			}
		case *adminv3.RoutesConfigDump:
			for _, dr := range d.GetDynamicRouteConfigs() {
				rc := &routev3.RouteConfiguration{}
				unpackAny(dr.GetRouteConfig(), rc)
				routes = append(routes, rc)
			}
		case *adminv3.EndpointsConfigDump:
			for _, de := range d.GetDynamicEndpointConfigs() {
				la := &endpointv3.ClusterLoadAssignment{}
				unpackAny(de.GetEndpointConfig(), la)
				endpoints = append(endpoints, la)
			}
		default:
			t.Fatalf("unexpected config %T", m)
		}
	}
	return clusters, listeners, routes, endpoints
}

func sameResources[T proto.Message](t *testing.T, what string, got, want []T, name func(T) string) {
	t.Helper()
	byName := map[string]T{}
	for _, w := range want {
		byName[name(w)] = w
	}
	if len(got) != len(want) {
		t.Fatalf("%s: the dump has %d, the ADS stream served %d", what, len(got), len(want))
	}
	for _, g := range got {
		w, ok := byName[name(g)]
		if !ok || !proto.Equal(g, w) {
			t.Fatalf("%s %q differs from what the ADS stream served:\ndump: %v\nserved: %v", what, name(g), g, w)
		}
	}
}

// The config dump is the snapshot the gateway's Envoy is served, resource
// for resource, at its version; the authorizer's client key is a file
// name, never key material.
func TestGatewayConfigIsWhatEnvoyIsServed(t *testing.T) {
	certs := newDevCerts(t)
	f := newFixture(t)
	seedShop(f, "acme")
	f.gateway("acme", "edge", model.GatewaySpec{Type: model.GatewayEnvoy, ListenerPort: 10001})
	const keyFile = "/etc/envoy/authz-client-key.pem"
	cp := f.start(func(o *Options) {
		o.AuthorizerTLS = &TLSClient{CAPEM: certs.caPEM, CertFile: "/etc/envoy/authz-client.pem", KeyFile: keyFile}
	})
	c := dialADS(t, cp.addr, NodeID("acme", "edge"), cp.token("acme", "edge"))
	servedClusters, servedListeners, servedRoutes := subscribeLikeEnvoy(t, c)

	gc, err := cp.xds.GatewayConfig("acme", "edge")
	if err != nil {
		t.Fatal(err)
	}
	st := cp.xds.Status("acme", "edge")
	if gc.NodeID != "acme/edge" || gc.Version == "" || gc.Version != st.Version || gc.BundleRevision != st.BundleRevision || gc.UpdatedAt == nil {
		t.Fatalf("config %+v, status %s", gc, statusJSON(st))
	}
	clusters, listeners, routes, endpoints := dumpOf(t, gc)
	sameResources(t, "cluster", clusters, servedClusters, func(c *clusterv3.Cluster) string { return c.GetName() })
	sameResources(t, "listener", listeners, servedListeners, func(l *listenerv3.Listener) string { return l.GetName() })
	sameResources(t, "route configuration", routes, servedRoutes, func(r *routev3.RouteConfiguration) string { return r.GetName() })
	if len(endpoints) != 0 {
		t.Fatalf("an envoy gateway has no EDS resources: %v", endpoints)
	}
	text := string(gc.ConfigDump)
	for _, want := range []string{`"version_info"`, wellknown.HTTPExternalAuthorization, keyFile, `"context_extensions"`} {
		if !strings.Contains(text, want) {
			t.Errorf("the dump lacks %s", want)
		}
	}
	if strings.Contains(text, "PRIVATE KEY") || strings.Contains(text, Redacted) {
		t.Fatalf("the dump carries key material (or had some to redact):\n%s", text)
	}
	if out, err := json.Marshal(gc); err != nil || !json.Valid(out) || !strings.Contains(string(out), `"config_dump":{"configs":[`) {
		t.Fatalf("JSON rendering: %v %.200s", err, out)
	}
}

// A grpc (proxyless) gateway's dump lists its EDS resources too.
func TestGatewayConfigOfAGRPCGateway(t *testing.T) {
	f := newFixture(t)
	seedShop(f, "acme")
	f.gateway("acme", "mesh", model.GatewaySpec{Type: model.GatewayGRPC})
	cp := f.start()
	var gc *GatewayConfig
	testkit.Eventually(t, waitBound, func() (err error) { gc, err = cp.xds.GatewayConfig("acme", "mesh"); return err }, "the snapshot of acme/mesh")
	clusters, listeners, _, endpoints := dumpOf(t, gc)
	if len(clusters) == 0 || len(listeners) == 0 || len(endpoints) != len(clusters) {
		t.Fatalf("clusters %d, listeners %d, endpoints %d", len(clusters), len(listeners), len(endpoints))
	}
}

// No snapshot yet, an unknown gateway and a configuration that does not
// translate are told apart.
func TestGatewayConfigWithoutASnapshot(t *testing.T) {
	f := newFixture(t)
	f.tenant("acme")
	f.service("acme", "bad", "ftp://files.internal")
	f.gateway("acme", "edge", model.GatewaySpec{Type: model.GatewayEnvoy})
	cp := f.start()
	if _, err := cp.xds.GatewayConfig("acme", "nope"); !errors.Is(err, ErrNotBuilt) {
		t.Fatalf("an unknown gateway: %v", err)
	}
	var te *TranslationError
	testkit.Eventually(t, waitBound, func() error {
		_, err := cp.xds.GatewayConfig("acme", "edge")
		if errors.As(err, &te) {
			return nil
		}
		return fmt.Errorf("got %v", err)
	}, "a translation error for acme/edge")
	if !strings.Contains(te.Error(), "ftp://files.internal") {
		t.Fatalf("the reason does not name the bad URL: %v", te)
	}
}

// Inline key material anywhere in a resource, inside Any fields too, is
// redacted; file names and the trusted CA stay.
func TestRedactSecrets(t *testing.T) {
	inline := func(s string) *corev3.DataSource {
		return &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: s}}
	}
	file := &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: "/etc/envoy/key.pem"}}
	tlsCtx := &tlsv3.UpstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
		TlsCertificates: []*tlsv3.TlsCertificate{
			{CertificateChain: inline("-----BEGIN CERTIFICATE-----"), PrivateKey: inline("-----BEGIN PRIVATE KEY-----"), Password: inline("hunter2")},
			{CertificateChain: file, PrivateKey: file},
		},
		ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			TrustedCa: inline("-----BEGIN CERTIFICATE----- CA")}},
	}}
	cl := &clusterv3.Cluster{Name: "c", TransportSocket: &corev3.TransportSocket{Name: wellknown.TransportSocketTLS,
		ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustPack(tlsCtx)}}}
	if !redactSecrets(cl.ProtoReflect()) {
		t.Fatal("nothing redacted")
	}
	var got tlsv3.UpstreamTlsContext
	if err := cl.GetTransportSocket().GetTypedConfig().UnmarshalTo(&got); err != nil {
		t.Fatal(err)
	}
	certs := got.GetCommonTlsContext().GetTlsCertificates()
	switch {
	case certs[0].GetPrivateKey().GetInlineString() != Redacted, certs[0].GetPassword().GetInlineString() != Redacted:
		t.Fatalf("inline key or password kept: %v", certs[0])
	case certs[0].GetCertificateChain().GetInlineString() != "-----BEGIN CERTIFICATE-----":
		t.Fatalf("the certificate (public) was redacted: %v", certs[0])
	case certs[1].GetPrivateKey().GetFilename() != "/etc/envoy/key.pem":
		t.Fatalf("a key file name was redacted: %v", certs[1])
	case got.GetCommonTlsContext().GetValidationContext().GetTrustedCa().GetInlineString() != "-----BEGIN CERTIFICATE----- CA":
		t.Fatalf("the trusted CA was redacted: %v", got.GetCommonTlsContext())
	}
	plain := &clusterv3.Cluster{Name: "plain"}
	if redactSecrets(plain.ProtoReflect()) {
		t.Fatal("a cluster without secrets reported a redaction")
	}
}
