package tests

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// TestServeXDS subscribes to a running gatehouse serve's xDS server as an
// Envoy node of a gateway would (CDS, LDS, then RDS, ACKing each), checks
// the gateway's routes and sees an admin change arrive as a new version.
func TestServeXDS(t *testing.T) {
	cp := startServe(t, serveOptions{DataDir: t.TempDir(), Token: testToken})
	c := newClient(t, cp.URL, testToken)
	setupGateway(t, c, "http://127.0.0.1:9")
	xdsAddr := cp.waitLog(t, "xDS listening", "addr")

	cc, err := grpc.NewClient(xdsAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := discoverygrpc.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	node := &corev3.Node{Id: "acme/edge", Cluster: "test", UserAgentName: "envoy"}
	send := func(typeURL string, names []string, prev *discoverygrpc.DiscoveryResponse) {
		t.Helper()
		req := &discoverygrpc.DiscoveryRequest{Node: node, TypeUrl: typeURL, ResourceNames: names}
		if prev != nil {
			req.VersionInfo, req.ResponseNonce = prev.VersionInfo, prev.Nonce
		}
		if err := stream.Send(req); err != nil {
			t.Fatal(err)
		}
	}
	recv := func(typeURL string) *discoverygrpc.DiscoveryResponse {
		t.Helper()
		for {
			res, err := stream.Recv()
			if err != nil {
				t.Fatalf("recv: %v", err)
			}
			if res.TypeUrl == typeURL {
				return res
			}
		}
	}
	send(resource.ClusterType, nil, nil)
	clusters := recv(resource.ClusterType)
	send(resource.ClusterType, nil, clusters)
	send(resource.ListenerType, nil, nil)
	lds := recv(resource.ListenerType)
	send(resource.ListenerType, nil, lds)
	if len(lds.Resources) != 1 || len(clusters.Resources) < 2 {
		t.Fatalf("listeners %d, clusters %d", len(lds.Resources), len(clusters.Resources))
	}
	var l listenerv3.Listener
	if err := lds.Resources[0].UnmarshalTo(&l); err != nil {
		t.Fatal(err)
	}
	var hcm hcmv3.HttpConnectionManager
	if err := l.FilterChains[0].Filters[0].GetTypedConfig().UnmarshalTo(&hcm); err != nil {
		t.Fatal(err)
	}
	if hcm.HttpFilters[0].Name != "envoy.filters.http.ext_authz" || l.Address.GetSocketAddress().GetPortValue() != 10000 {
		t.Fatalf("listener: %v", &l)
	}
	rdsName := hcm.GetRds().GetRouteConfigName()
	send(resource.RouteType, []string{rdsName}, nil)
	rds := recv(resource.RouteType)
	send(resource.RouteType, []string{rdsName}, rds)
	routes := func(r *discoverygrpc.DiscoveryResponse) string {
		var rc routev3.RouteConfiguration
		if err := r.Resources[0].UnmarshalTo(&rc); err != nil {
			t.Fatal(err)
		}
		var all []string
		for _, vh := range rc.VirtualHosts {
			for _, rt := range vh.Routes {
				all = append(all, rt.GetMatch().String())
			}
		}
		return strings.Join(all, "\n")
	}
	if got := routes(rds); !strings.Contains(got, "healthz") || !strings.Contains(got, "pets") {
		t.Fatalf("routes: %s", got)
	}

	start := time.Now()
	c.must(201, "POST", "/api/admin/acme/apis", map[string]any{"id": "list-cats", "service_id": "pets", "method": "GET", "path": "/cats", "policy_id": "keyed"})
	next := recv(resource.RouteType)
	took := time.Since(start)
	send(resource.RouteType, []string{rdsName}, next)
	if next.VersionInfo == rds.VersionInfo || !strings.Contains(routes(next), "cats") {
		t.Fatalf("update: version %s -> %s, routes %s", rds.VersionInfo, next.VersionInfo, routes(next))
	}
	if took > 500*time.Millisecond {
		t.Fatalf("the change took %v to reach the xDS client", took)
	}
	t.Logf("admin change reached the xDS client after %v", took)
	// The node shows up in the gateway's status.
	xds := c.must(200, "GET", "/api/admin/acme/gateways/edge", nil).JSON(t)["status"].(map[string]any)["xds"]
	if !strings.Contains(toJSON(t, xds), "acme/edge") {
		t.Fatalf("status.xds: %v", xds)
	}
}

func toJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
