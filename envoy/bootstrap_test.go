package envoy

import (
	"encoding/json"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/gatehouse-dev/gatehouse/envoy/xdscreds"
)

func TestBootstrap(t *testing.T) {
	const cred = "ghg_acme.c1.s3cr3t-_x"
	raw, err := Bootstrap(BootstrapOptions{NodeID: NodeID("acme", "edge"), XDSAddress: "control-plane.internal:18000", Credential: cred})
	if err != nil {
		t.Fatal(err)
	}
	// YAML → JSON → the Bootstrap proto, as Envoy reads it.
	var doc any
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("not YAML: %v\n%s", err, raw)
	}
	js, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	b := &bootstrapv3.Bootstrap{}
	if err := protojson.Unmarshal(js, b); err != nil {
		t.Fatalf("not a Bootstrap: %v\n%s", err, raw)
	}
	if err := b.ValidateAll(); err != nil {
		t.Fatal(err)
	}
	if err := validateMessage(b); err != nil {
		t.Fatal(err)
	}
	if b.GetNode().GetId() != "acme/edge" || b.GetNode().GetCluster() != DefaultNodeCluster {
		t.Fatalf("node %v", b.GetNode())
	}
	ads := b.GetDynamicResources().GetAdsConfig()
	if ads.GetApiType().String() != "GRPC" || ads.GetTransportApiVersion().String() != "V3" ||
		ads.GetGrpcServices()[0].GetEnvoyGrpc().GetClusterName() != XDSClusterName {
		t.Fatalf("ads_config %v", ads)
	}
	// The ADS stream carries the gateway credential.
	if md := ads.GetGrpcServices()[0].GetInitialMetadata(); len(md) != 1 || md[0].GetKey() != "authorization" ||
		md[0].GetValue() != "Bearer "+cred {
		t.Fatalf("ads initial_metadata %v", md)
	}
	if b.GetDynamicResources().GetCdsConfig().GetAds() == nil || b.GetDynamicResources().GetLdsConfig().GetAds() == nil {
		t.Fatal("CDS and LDS must come from ADS")
	}
	xds := b.GetStaticResources().GetClusters()[0]
	sa := xds.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
	if xds.GetName() != XDSClusterName || sa.GetAddress() != "control-plane.internal" || sa.GetPortValue() != 18000 || xds.GetType().String() != "STRICT_DNS" {
		t.Fatalf("xds cluster %v", xds)
	}
	po := &upstreamhttpv3.HttpProtocolOptions{}
	if err := xds.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"].UnmarshalTo(po); err != nil ||
		po.GetExplicitHttpConfig().GetHttp2ProtocolOptions() == nil {
		t.Fatal("the xds cluster must speak HTTP/2")
	}
	if a := b.GetAdmin().GetAddress().GetSocketAddress(); a.GetAddress() != "127.0.0.1" || a.GetPortValue() != 9901 {
		t.Fatalf("admin %v", a)
	}
	rt := b.GetLayeredRuntime().GetLayers()[0].GetStaticLayer().GetFields()["re2.max_program_size.error_level"]
	if rt.GetNumberValue() != RegexProgramSizeLimit {
		t.Fatalf("runtime layer %v", b.GetLayeredRuntime())
	}
	if !strings.HasPrefix(string(raw), "# Envoy bootstrap") || strings.Contains(strings.ReplaceAll(string(raw), "{}", ""), "{") {
		t.Fatalf("want a commented, block-style YAML document:\n%s", raw)
	}

	for _, bad := range []BootstrapOptions{
		{NodeID: "edge", XDSAddress: "cp:18000", Credential: cred},
		{NodeID: "acme/edge", Credential: cred},
		{NodeID: "acme/edge", XDSAddress: "cp:18000", AdminAddress: "0.0.0.0:9901", Credential: cred},
		{NodeID: "acme/edge", XDSAddress: "cp:18000", AdminAddress: "localhost:9901", Credential: cred},
		{NodeID: "acme/edge", XDSAddress: "cp:18000"},
		{NodeID: "acme/edge", XDSAddress: "cp:18000", Credential: "two words"},
		{NodeID: "acme/edge", XDSAddress: "cp:18000", Credential: "line\nbreak"},
	} {
		if _, err := Bootstrap(bad); err == nil {
			t.Errorf("Bootstrap(%+v) accepted", bad)
		}
	}
	if raw, err := Bootstrap(BootstrapOptions{NodeID: "acme/edge", XDSAddress: "10.1.2.3:18000", AdminAddress: "[::1]:9000", Cluster: "eu",
		Credential: cred}); err != nil ||
		!strings.Contains(string(raw), "STATIC") || !strings.Contains(string(raw), "cluster: eu") {
		t.Fatalf("IP literal address: %v\n%s", err, raw)
	}
}

func TestGRPCBootstrap(t *testing.T) {
	raw, err := GRPCBootstrap(GRPCBootstrapOptions{NodeID: NodeID("acme", "mesh"), XDSAddress: "cp.internal:18000", Credential: "ghg_acme.c1.s"})
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		XDSServers []struct {
			ServerURI    string `json:"server_uri"`
			ChannelCreds []struct {
				Type   string            `json:"type"`
				Config map[string]string `json:"config"`
			} `json:"channel_creds"`
			ServerFeatures []string `json:"server_features"`
		} `json:"xds_servers"`
		Node     struct{ ID, Cluster string } `json:"node"`
		Template string                       `json:"server_listener_resource_name_template"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, raw)
	}
	s := doc.XDSServers[0]
	if len(doc.XDSServers) != 1 || s.ServerURI != "cp.internal:18000" || len(s.ChannelCreds) != 1 ||
		s.ChannelCreds[0].Type != xdscreds.Type || s.ChannelCreds[0].Config["credential"] != "ghg_acme.c1.s" ||
		doc.Node.ID != "acme/mesh" || doc.Node.Cluster != DefaultNodeCluster ||
		doc.Template != "grpc/server?xds.resource.listening_address=%s" {
		t.Fatalf("bootstrap:\n%s", raw)
	}
	if GRPCCredentialsType != xdscreds.Type {
		t.Fatalf("channel_creds type %q, xdscreds registers %q", GRPCCredentialsType, xdscreds.Type)
	}
	for _, bad := range []GRPCBootstrapOptions{
		{NodeID: "mesh", XDSAddress: "cp:18000", Credential: "c"},
		{NodeID: "acme/mesh", Credential: "c"},
		{NodeID: "acme/mesh", XDSAddress: "cp:18000"},
	} {
		if _, err := GRPCBootstrap(bad); err == nil {
			t.Errorf("GRPCBootstrap(%+v) accepted", bad)
		}
	}
}
