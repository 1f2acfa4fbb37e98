package envoy

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/xds"

	_ "github.com/gatehouse-dev/gatehouse/envoy/xdscreds"
	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	"github.com/gatehouse-dev/gatehouse/model"
)

// TestProxylessGRPC has grpc-go's own xDS client (the xds:/// resolver)
// consume a grpc gateway's resources and make real RPCs to a gRPC server on
// loopback through them.
func TestProxylessGRPC(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	up := grpc.NewServer()
	healthpb.RegisterHealthServer(up, health.NewServer())
	go func() { _ = up.Serve(lis) }()
	defer up.Stop()

	f := newFixture(t)
	f.tenant("acme")
	f.service("acme", "greeter", "http://"+lis.Addr().String(), "greeter.internal")
	f.service("acme", "plain", "http://"+lis.Addr().String())
	f.apis("acme",
		api{id: "check", service: "greeter", method: "POST", path: "/grpc.health.v1.Health/Check"},
		api{id: "plain-health", service: "plain", method: "*", path: "/grpc.health.v1.Health/{method}"},
	)
	f.gateway("acme", "mesh", model.GatewaySpec{Type: model.GatewayGRPC})
	cp := f.start()

	// The bootstrap a gateway package holds: the gateway credential in
	// channel credentials of type "gatehouse" (registered by xdscreds).
	boot, err := GRPCBootstrap(GRPCBootstrapOptions{NodeID: NodeID("acme", "mesh"), XDSAddress: cp.addr, Cluster: "test",
		Credential: cp.token("acme", "mesh")})
	if err != nil {
		t.Fatal(err)
	}
	dial := grpcDialer(t, boot)

	check := checkHealth
	greeter, plain := dial("xds:///greeter.internal"), dial("xds:///plain")
	if !t.Run("RPCs go through the listener named after the service's host and the one of a service without hosts", func(t *testing.T) {
		if err := check(greeter); err != nil {
			t.Fatalf("Check via xds:///greeter.internal: %v", err)
		}
		if err := check(plain); err != nil {
			t.Fatalf("Check via xds:///plain: %v", err)
		}
	}) {
		return
	}
	if !t.Run("a method without an API has no route: the client fails it without reaching the server", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		ws, err := greeter.Watch(ctx, &healthpb.HealthCheckRequest{})
		if err == nil {
			_, err = ws.Recv()
		}
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("Watch without an API: %v, want Unavailable (no route)", err)
		}
	}) {
		return
	}

	defer func() {
		if t.Failed() {
			js, _ := json.MarshalIndent(cp.xds.Status("acme", "mesh"), "", "  ")
			t.Logf("status: %s", js)
		}
	}()
	// One xDS stream per channel here; the route configuration is inline
	// in the listeners.
	if !t.Run("the control plane sees the gRPC nodes and their ACKs", func(t *testing.T) {
		var st XDSStatus
		testkit.Eventually(t, waitBound, cp.statusWhere("acme", "mesh", &st, func(st XDSStatus) bool {
			if len(st.Nodes) == 0 {
				return false
			}
			for _, n := range st.Nodes {
				for _, typ := range []string{resource.ListenerType, resource.ClusterType, resource.EndpointType} {
					if r := n.Resources[typ]; r == nil || r.AckedVersion != st.Version {
						return false
					}
				}
			}
			return true
		}), "the gRPC node's ACKs")
		if st.LastNack != nil {
			t.Fatalf("grpc-go rejected the resources: %+v", st.LastNack)
		}
	}) {
		return
	}

	t.Run("an admin change reaches the client: Check loses its route, the other listener keeps working", func(t *testing.T) {
		f.on(t).setAPIPath("acme", "check", "/grpc.health.v1.Health/Other")
		testkit.Eventually(t, waitBound, func() error {
			err := check(greeter)
			return testkit.Check(status.Code(err) == codes.Unavailable, "Check: %v", err)
		}, "the route change to reach the gRPC client")
		if err := check(plain); err != nil {
			t.Fatalf("the other listener broke: %v", err)
		}
		if st := cp.xds.Status("acme", "mesh"); st.LastNack != nil {
			t.Fatalf("grpc-go rejected the update: %+v", st.LastNack)
		}
	})
}

// grpcDialer returns a function dialing xds:/// targets with grpc-go's xDS
// resolver configured by bootstrap.
func grpcDialer(t *testing.T, bootstrap []byte) func(target string) healthpb.HealthClient {
	t.Helper()
	rb, err := xds.NewXDSResolverWithConfigForTesting(bootstrap)
	if err != nil {
		t.Fatal(err)
	}
	return func(target string) healthpb.HealthClient {
		cc, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithResolvers(rb))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		return healthpb.NewHealthClient(cc)
	}
}

// checkHealth makes a Health.Check RPC, waiting up to 5s for the channel.
func checkHealth(c healthpb.HealthClient) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := c.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true))
	if err == nil && r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("status %v", r.GetStatus())
	}
	return err
}

// grpc-go's xDS client gets nothing for node acme/mesh without that
// gateway's credential: its RPCs fail, and nothing is recorded for the
// gateway.
func TestProxylessGRPCNeedsTheGatewaysCredential(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	up := grpc.NewServer()
	healthpb.RegisterHealthServer(up, health.NewServer())
	go func() { _ = up.Serve(lis) }()
	defer up.Stop()

	f := newFixture(t)
	for _, tid := range []string{"acme", "beta"} {
		f.tenant(tid)
		f.service(tid, "greeter", "http://"+lis.Addr().String(), "greeter.internal")
		f.apis(tid, api{id: "check", service: "greeter", method: "POST", path: "/grpc.health.v1.Health/Check"})
		f.gateway(tid, "mesh", model.GatewaySpec{Type: model.GatewayGRPC})
	}
	f.gateway("acme", "edge", model.GatewaySpec{Type: model.GatewayEnvoy})
	cp := f.start()
	revoked := cp.token("acme", "mesh")
	cp.creds.revoke(revoked)

	bootstrapWith := func(token string) []byte {
		if token == "" { // what a bootstrap without the credential says
			return []byte(fmt.Sprintf(`{
				"xds_servers": [{"server_uri": %q, "channel_creds": [{"type": "insecure"}], "server_features": ["xds_v3"]}],
				"node": {"id": "acme/mesh", "cluster": "test"}
			}`, cp.addr))
		}
		b, err := GRPCBootstrap(GRPCBootstrapOptions{NodeID: NodeID("acme", "mesh"), XDSAddress: cp.addr, Credential: token})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, tc := range []struct {
		name, token string
		want        codes.Code
	}{
		{"no credential", "", codes.Unauthenticated},
		{"revoked credential", revoked, codes.Unauthenticated},
		{"another gateway's credential", cp.token("acme", "edge"), codes.PermissionDenied},
		{"another tenant's credential", cp.token("beta", "mesh"), codes.PermissionDenied},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := grpcDialer(t, bootstrapWith(tc.token))("xds:///greeter.internal")
			// The client fails RPCs, soon with the xDS stream's error inside
			// (before it has heard from the control plane, with another).
			want := "xDS stream: rpc error: code = " + tc.want.String()
			testkit.Eventually(t, 5*time.Second, func() error {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				_, err := c.Check(ctx, &healthpb.HealthCheckRequest{})
				cancel()
				if err == nil {
					t.Fatal("the RPC went through")
				}
				return testkit.Check(status.Code(err) == codes.Unavailable && strings.Contains(err.Error(), want), "RPC error %v", err)
			}, "the RPC to fail Unavailable from %q", want)
		})
	}
	st := cp.xds.Status("acme", "mesh")
	if len(st.Nodes) != 0 || st.LastNack != nil {
		t.Fatalf("refused gRPC clients were recorded: %+v", st)
	}
	// With its own credential the same client works.
	ok := grpcDialer(t, bootstrapWith(cp.token("acme", "mesh")))("xds:///greeter.internal")
	if err := checkHealth(ok); err != nil {
		t.Fatalf("own credential: %v", err)
	}
}
