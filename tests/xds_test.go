package tests

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3" // in envoy.yaml's xDS cluster
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	yaml "go.yaml.in/yaml/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/gatehouse-dev/gatehouse/internal/testkit"
)

// TestServeXDS subscribes to a running gatehouse serve's xDS server as an
// Envoy node of a gateway would (CDS, LDS, then RDS, ACKing each) with the
// credential its package's envoy.yaml sends, checks the gateway's routes
// and sees an admin change arrive as a new version.
func TestServeXDS(t *testing.T) {
	cp := startServe(t, serveOptions{DataDir: t.TempDir(), Token: testToken})
	c := newClient(t, cp.URL, testToken)
	setupGateway(t, c, "http://127.0.0.1:9")
	xdsAddr := cp.waitLog(t, "xDS listening", "addr")
	authorization, _ := packageADSMetadata(t, c, "acme", "edge")

	cc, err := grpc.NewClient(xdsAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", authorization)
	stream, err := discoverygrpc.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	node := &corev3.Node{Id: "acme/edge", Cluster: "test", UserAgentName: "envoy"}
	send := func(t *testing.T, typeURL string, names []string, prev *discoverygrpc.DiscoveryResponse) {
		t.Helper()
		req := &discoverygrpc.DiscoveryRequest{Node: node, TypeUrl: typeURL, ResourceNames: names}
		if prev != nil {
			req.VersionInfo, req.ResponseNonce = prev.VersionInfo, prev.Nonce
		}
		if err := stream.Send(req); err != nil {
			t.Fatal(err)
		}
	}
	recv := func(t *testing.T, typeURL string) *discoverygrpc.DiscoveryResponse {
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
	routes := func(t *testing.T, r *discoverygrpc.DiscoveryResponse) string {
		t.Helper()
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

	var rdsName string
	if !t.Run("an ADS client gets the gateway's clusters and its listener with ext_authz", func(t *testing.T) {
		send(t, resource.ClusterType, nil, nil)
		clusters := recv(t, resource.ClusterType)
		send(t, resource.ClusterType, nil, clusters)
		send(t, resource.ListenerType, nil, nil)
		lds := recv(t, resource.ListenerType)
		send(t, resource.ListenerType, nil, lds)
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
		if hcm.HttpFilters[1].Name != "envoy.filters.http.ext_authz" || l.Address.GetSocketAddress().GetPortValue() != 10000 {
			t.Fatalf("listener: %v", &l)
		}
		rdsName = hcm.GetRds().GetRouteConfigName()
	}) {
		return
	}
	var rds *discoverygrpc.DiscoveryResponse
	if !t.Run("it gets the routes the listener names", func(t *testing.T) {
		send(t, resource.RouteType, []string{rdsName}, nil)
		rds = recv(t, resource.RouteType)
		send(t, resource.RouteType, []string{rdsName}, rds)
		if got := routes(t, rds); !strings.Contains(got, "healthz") || !strings.Contains(got, "pets") {
			t.Fatalf("routes: %s", got)
		}
	}) {
		return
	}
	if !t.Run("an admin change reaches it within 500ms as a new version", func(t *testing.T) {
		start := time.Now()
		c.on(t).must(201, "POST", "/api/admin/acme/apis", map[string]any{"id": "list-cats", "service_id": "pets", "method": "GET", "path": "/cats", "policy_id": "keyed"})
		next := recv(t, resource.RouteType)
		took := time.Since(start)
		send(t, resource.RouteType, []string{rdsName}, next)
		if next.VersionInfo == rds.VersionInfo || !strings.Contains(routes(t, next), "cats") {
			t.Fatalf("update: version %s -> %s, routes %s", rds.VersionInfo, next.VersionInfo, routes(t, next))
		}
		if took > 500*time.Millisecond {
			t.Fatalf("the change took %v to reach the xDS client", took)
		}
		t.Logf("admin change reached the xDS client after %v", took)
	}) {
		return
	}
	t.Run("the node shows up in the gateway's status", func(t *testing.T) {
		xds := c.on(t).must(200, "GET", "/api/admin/acme/gateways/edge", nil).JSON(t)["status"].(map[string]any)["xds"]
		if !strings.Contains(toJSON(t, xds), "acme/edge") {
			t.Fatalf("status.xds: %v", xds)
		}
	})
}

func toJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// packageADSMetadata downloads a gateway's package and returns the
// authorization value its envoy.yaml sends on the ADS stream
// (initial_metadata) and the id of the credential the download minted.
func packageADSMetadata(t *testing.T, c *client, tid, gw string) (authorization, credentialID string) {
	t.Helper()
	pkg := c.must(200, "GET", "/api/admin/"+tid+"/gateways/"+gw+"/package", nil)
	zr, err := zip.NewReader(bytes.NewReader(pkg.Body), int64(len(pkg.Body)))
	if err != nil {
		t.Fatal(err)
	}
	f, err := zr.Open("envoy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(f)
	f.Close()
	var doc any
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	js, _ := json.Marshal(doc)
	var boot bootstrapv3.Bootstrap
	if err := protojson.Unmarshal(js, &boot); err != nil {
		t.Fatal(err)
	}
	md := boot.GetDynamicResources().GetAdsConfig().GetGrpcServices()[0].GetInitialMetadata()
	if len(md) != 1 || md[0].GetKey() != "authorization" || !strings.HasPrefix(md[0].GetValue(), "Bearer ghg_"+tid+".") {
		t.Fatalf("envoy.yaml ADS initial_metadata: %v", md)
	}
	return md[0].GetValue(), pkg.Header.Get("X-Gateway-Credential-Id")
}

// TestServeXDSAuthentication: a client claiming node acme/edge is refused
// without a credential of that gateway — none, another gateway's, another
// tenant's, a revoked one — on SotW and delta ADS streams, and its NACK
// reaches nobody's status; revoking the credential of a connected node
// ends its stream.
func TestServeXDSAuthentication(t *testing.T) {
	cp := startServe(t, serveOptions{DataDir: t.TempDir(), Token: testToken})
	c := newClient(t, cp.URL, testToken)
	setupGateway(t, c, "http://127.0.0.1:9")
	xdsAddr := cp.waitLog(t, "xDS listening", "addr")
	gatewayToken := func(tid, gw string) string {
		t.Helper()
		return "Bearer " + c.must(201, "POST", "/api/admin/"+tid+"/gateways", map[string]any{"id": gw, "name": gw}).
			JSON(t)["credential"].(map[string]any)["token"].(string)
	}
	side := gatewayToken("acme", "side")
	c.must(201, "POST", "/api/system/tenants", map[string]any{"id": "beta", "name": "Beta"})
	beta := gatewayToken("beta", "edge")
	revoked, revokedID := packageADSMetadata(t, c, "acme", "edge")
	c.must(204, "DELETE", "/api/admin/acme/gateways/edge/credentials/"+revokedID, nil)
	good, goodID := packageADSMetadata(t, c, "acme", "edge")

	cc, err := grpc.NewClient(xdsAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ads := discoverygrpc.NewAggregatedDiscoveryServiceClient(cc)
	streamCtx := func(authorization string) context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		t.Cleanup(cancel)
		if authorization != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "authorization", authorization)
		}
		return ctx
	}
	node := &corev3.Node{Id: "acme/edge", Cluster: "test", UserAgentName: "envoy"}
	xdsStatus := func(t *testing.T) map[string]any {
		return c.on(t).must(200, "GET", "/api/admin/acme/gateways/edge", nil).JSON(t)["status"].(map[string]any)["xds"].(map[string]any)
	}
	if !t.Run("a stream is refused", func(t *testing.T) {
		for _, tc := range []struct {
			name, authorization string
			want                codes.Code
		}{
			{"no credential", "", codes.Unauthenticated},
			{"revoked credential", revoked, codes.Unauthenticated},
			{"another gateway's credential", side, codes.PermissionDenied},
			{"another tenant's credential", beta, codes.PermissionDenied},
		} {
			t.Run("with "+tc.name, func(t *testing.T) {
				s, err := ads.StreamAggregatedResources(streamCtx(tc.authorization))
				if err != nil {
					t.Fatal(err)
				}
				// A stream refused at once may end before the send (io.EOF); the
				// refusal comes with the receive.
				if err := s.Send(&discoverygrpc.DiscoveryRequest{Node: node, TypeUrl: resource.ListenerType}); err != nil && !errors.Is(err, io.EOF) {
					t.Fatal(err)
				}
				if r, err := s.Recv(); status.Code(err) != tc.want {
					t.Fatalf("%s: got %v (response %v), want %v", tc.name, err, r, tc.want)
				}
				_ = s.Send(&discoverygrpc.DiscoveryRequest{TypeUrl: resource.ListenerType, ResponseNonce: "1", VersionInfo: "1",
					ErrorDetail: &rpcstatus.Status{Code: int32(codes.InvalidArgument), Message: "forged"}})
				d, err := ads.DeltaAggregatedResources(streamCtx(tc.authorization))
				if err != nil {
					t.Fatal(err)
				}
				if err := d.Send(&discoverygrpc.DeltaDiscoveryRequest{Node: node, TypeUrl: resource.ClusterType}); err != nil && !errors.Is(err, io.EOF) {
					t.Fatal(err)
				}
				if r, err := d.Recv(); status.Code(err) != tc.want {
					t.Fatalf("%s (delta): got %v (response %v), want %v", tc.name, err, r, tc.want)
				}
			})
		}
	}) {
		return
	}
	if !t.Run("refused streams leave no trace in status.xds", func(t *testing.T) {
		if st := xdsStatus(t); len(st["nodes"].([]any)) != 0 || st["last_nack"] != nil {
			t.Fatalf("refused streams in status.xds: %v", st)
		}
	}) {
		return
	}

	s, err := ads.StreamAggregatedResources(streamCtx(good))
	if err != nil {
		t.Fatal(err)
	}
	if !t.Run("the package's own credential is served and its node shows in status.xds", func(t *testing.T) {
		if err := s.Send(&discoverygrpc.DiscoveryRequest{Node: node, TypeUrl: resource.ClusterType}); err != nil {
			t.Fatal(err)
		}
		cds, err := s.Recv()
		if err != nil || len(cds.GetResources()) < 2 {
			t.Fatalf("own credential: %v %v", cds, err)
		}
		if err := s.Send(&discoverygrpc.DiscoveryRequest{TypeUrl: resource.ClusterType, VersionInfo: cds.GetVersionInfo(),
			ResponseNonce: cds.GetNonce()}); err != nil {
			t.Fatal(err)
		}
		testkit.Eventually(t, 5*time.Second, nodes(t, xdsStatus, 1), "the node in status.xds")
	}) {
		return
	}
	t.Run("revoking the credential ends the stream and the node leaves status.xds", func(t *testing.T) {
		c.on(t).must(204, "DELETE", "/api/admin/acme/gateways/edge/credentials/"+goodID, nil)
		if _, err := s.Recv(); status.Code(err) != codes.Unauthenticated {
			t.Fatalf("after revocation: %v, want Unauthenticated", err)
		}
		testkit.Eventually(t, 5*time.Second, nodes(t, xdsStatus, 0), "the node to leave status.xds")
	})
}

// nodes is a condition: status.xds lists n nodes.
func nodes(t *testing.T, xdsStatus func(t *testing.T) map[string]any, n int) func() error {
	return func() error {
		st := xdsStatus(t)
		return testkit.Check(len(st["nodes"].([]any)) == n, "status.xds %v", st)
	}
}
