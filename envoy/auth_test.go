package envoy

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	clusterservice "github.com/envoyproxy/go-control-plane/envoy/service/cluster/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	"github.com/gatehouse-dev/gatehouse/model"
)

// authFixture is tenant acme with gateways edge and side, and tenant beta
// with a gateway edge, served by a running control plane.
type authFixture struct {
	f  *fixture
	cp *controlPlane
	// tokens: acme/edge, acme/side, beta/edge and a revoked one of acme/edge.
	edge, side, beta, revoked string
}

func newAuthFixture(t *testing.T) *authFixture {
	t.Helper()
	f := newFixture(t)
	seedShop(f, "acme")
	f.gateway("acme", "edge", model.GatewaySpec{Type: model.GatewayEnvoy})
	f.gateway("acme", "side", model.GatewaySpec{Type: model.GatewayEnvoy})
	seedShop(f, "beta")
	f.gateway("beta", "edge", model.GatewaySpec{Type: model.GatewayEnvoy})
	cp := f.start()
	a := &authFixture{f: f, cp: cp, edge: cp.token("acme", "edge"), side: cp.token("acme", "side"),
		beta: cp.token("beta", "edge"), revoked: cp.token("acme", "edge")}
	cp.creds.revoke(a.revoked)
	return a
}

// refusedCases are the credentials a client claiming node acme/edge may not
// use, and the code it is refused with.
func (a *authFixture) refusedCases() []struct {
	name, token string
	want        codes.Code
} {
	return []struct {
		name, token string
		want        codes.Code
	}{
		{"no credential", "", codes.Unauthenticated},
		{"unknown credential", "ghg_acme.nope.nope", codes.Unauthenticated},
		{"revoked credential", a.revoked, codes.Unauthenticated},
		{"another gateway's credential", a.side, codes.PermissionDenied},
		{"another tenant's credential", a.beta, codes.PermissionDenied},
	}
}

// assertUntouched fails if anything was recorded for gateway tid/gw: a
// connected node, an ACK or a NACK.
func (a *authFixture) assertUntouched(t *testing.T, tid, gw string) {
	t.Helper()
	st := a.cp.xds.Status(tid, gw)
	if len(st.Nodes) != 0 || st.LastNack != nil {
		t.Fatalf("%s/%s: refused streams were recorded: nodes %+v, last NACK %+v", tid, gw, st.Nodes, st.LastNack)
	}
}

// An Envoy-like ADS client claiming node acme/edge gets nothing without
// that gateway's credential, and its NACK is not recorded.
func TestADSRefusesForeignCredentials(t *testing.T) {
	a := newAuthFixture(t)
	for _, tc := range a.refusedCases() {
		t.Run(tc.name, func(t *testing.T) {
			c := dialADS(t, a.cp.addr, NodeID("acme", "edge"), tc.token)
			sendOK(t, c.subscribe(resource.ListenerType, nil))
			r, err := c.next(resource.ListenerType, step)
			if status.Code(err) != tc.want {
				t.Fatalf("got %v (response %v), want %v", err, r, tc.want)
			}
			// A NACK of a guessed response on the same stream goes nowhere.
			_ = c.nack(&discoverygrpc.DiscoveryResponse{TypeUrl: resource.ListenerType, Nonce: "1", VersionInfo: "1"}, "forged")
		})
	}
	a.assertUntouched(t, "acme", "edge")

	// The gateway's own credential works, and only it shows in the status.
	c := dialADS(t, a.cp.addr, NodeID("acme", "edge"), a.edge)
	subscribeLikeEnvoy(t, c)
	testkit.Eventually(t, waitBound, a.cp.statusWhere("acme", "edge", nil, func(st XDSStatus) bool { return len(st.Nodes) == 1 }),
		"the node in the status")
	if st := a.cp.xds.Status("acme", "edge"); st.LastNack != nil {
		t.Fatalf("last NACK %+v", st.LastNack)
	}
	a.assertUntouched(t, "acme", "side")
	a.assertUntouched(t, "beta", "edge")
}

// The same holds for incremental (delta) ADS streams, including a first
// request that names no node.
func TestDeltaRefusesForeignCredentials(t *testing.T) {
	a := newAuthFixture(t)
	cc, err := grpc.NewClient(a.cp.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	open := func(t *testing.T, token string) discoverygrpc.AggregatedDiscoveryService_DeltaAggregatedResourcesClient {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		t.Cleanup(cancel)
		s, err := discoverygrpc.NewAggregatedDiscoveryServiceClient(cc).DeltaAggregatedResources(withCredential(ctx, token))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	node := &corev3.Node{Id: NodeID("acme", "edge"), UserAgentName: "envoy"}
	cases := a.refusedCases()
	cases = append(cases, struct {
		name, token string
		want        codes.Code
	}{"the gateway's credential but no node", a.edge, codes.PermissionDenied})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t, tc.token)
			req := &discoverygrpc.DeltaDiscoveryRequest{Node: node, TypeUrl: resource.ClusterType}
			if tc.name == "the gateway's credential but no node" {
				req.Node = nil
			}
			sendOK(t, s.Send(req))
			r, err := s.Recv()
			if status.Code(err) != tc.want {
				t.Fatalf("got %v (response %v), want %v", err, r, tc.want)
			}
			_ = s.Send(&discoverygrpc.DeltaDiscoveryRequest{TypeUrl: resource.ClusterType, ResponseNonce: "1",
				ErrorDetail: &rpcstatus.Status{Code: int32(codes.InvalidArgument), Message: "forged"}})
		})
	}
	a.assertUntouched(t, "acme", "edge")
	s := open(t, a.edge)
	if err := s.Send(&discoverygrpc.DeltaDiscoveryRequest{Node: node, TypeUrl: resource.ClusterType}); err != nil {
		t.Fatal(err)
	}
	if r, err := s.Recv(); err != nil || len(r.GetResources()) == 0 {
		t.Fatalf("own credential: %v %v", r, err)
	}
}

// A stream cannot switch to another node id after its first request: the
// request is refused before anything is recorded for that node.
func TestNodeIDCannotChangeMidStream(t *testing.T) {
	a := newAuthFixture(t)
	c := dialADS(t, a.cp.addr, NodeID("acme", "edge"), a.edge)
	if err := c.subscribe(resource.ClusterType, nil); err != nil {
		t.Fatal(err)
	}
	cds, err := c.next(resource.ClusterType, step)
	if err != nil {
		t.Fatal(err)
	}
	// Now claim beta/edge and NACK in its name.
	if err := c.stream.Send(&discoverygrpc.DiscoveryRequest{Node: &corev3.Node{Id: NodeID("beta", "edge"), UserAgentName: "envoy"},
		TypeUrl: resource.ClusterType, ResponseNonce: cds.GetNonce(),
		ErrorDetail: &rpcstatus.Status{Code: int32(codes.InvalidArgument), Message: "forged"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.next(resource.ListenerType, step); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("got %v, want PermissionDenied", err)
	}
	a.assertUntouched(t, "beta", "edge")
	testkit.Eventually(t, waitBound, a.cp.statusWhere("acme", "edge", nil, noNodes), "the stream to close")
	if st := a.cp.xds.Status("acme", "edge"); st.LastNack != nil {
		t.Fatalf("the forged NACK was recorded for acme/edge: %+v", st.LastNack)
	}
}

// go-control-plane numbers SotW and delta streams separately; the first of
// each (both id 1) are still told apart: each keeps its identity and its
// status.
func TestSotwAndDeltaStreamsAreKeptApart(t *testing.T) {
	a := newAuthFixture(t)
	c := dialADS(t, a.cp.addr, NodeID("acme", "edge"), a.edge)
	if err := c.subscribe(resource.ClusterType, nil); err != nil {
		t.Fatal(err)
	}
	cds, err := c.next(resource.ClusterType, step)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.ack(cds); err != nil {
		t.Fatal(err)
	}
	cc, err := grpc.NewClient(a.cp.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d, err := discoverygrpc.NewAggregatedDiscoveryServiceClient(cc).DeltaAggregatedResources(withCredential(ctx, a.beta))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Send(&discoverygrpc.DeltaDiscoveryRequest{Node: &corev3.Node{Id: NodeID("beta", "edge"), UserAgentName: "envoy"},
		TypeUrl: resource.ClusterType}); err != nil {
		t.Fatal(err)
	}
	dr, err := d.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Send(&discoverygrpc.DeltaDiscoveryRequest{TypeUrl: resource.ClusterType, ResponseNonce: dr.GetNonce()}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, waitBound, a.cp.statusWhere("acme", "edge", nil, func(e XDSStatus) bool {
		return len(e.Nodes) == 1 && !e.Nodes[0].Delta && e.Nodes[0].Resources[resource.ClusterType].AckedAt != nil
	}), "the SotW node with its ACK")
	testkit.Eventually(t, waitBound, a.cp.statusWhere("beta", "edge", nil, func(b XDSStatus) bool {
		return len(b.Nodes) == 1 && b.Nodes[0].Delta && b.Nodes[0].Resources[resource.ClusterType].AckedAt != nil
	}), "the delta node with its ACK")
	// The SotW stream still may not speak for beta/edge.
	if err := c.stream.Send(&discoverygrpc.DiscoveryRequest{Node: &corev3.Node{Id: NodeID("beta", "edge")},
		TypeUrl: resource.ListenerType}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.next(resource.ListenerType, step); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("got %v, want PermissionDenied", err)
	}
}

// The unary Fetch RPCs are authenticated and checked the same way.
func TestFetchNeedsTheGatewaysCredential(t *testing.T) {
	a := newAuthFixture(t)
	cc, err := grpc.NewClient(a.cp.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	cds := clusterservice.NewClusterDiscoveryServiceClient(cc)
	fetch := func(md ...string) (*discoverygrpc.DiscoveryResponse, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return cds.FetchClusters(metadata.AppendToOutgoingContext(ctx, md...),
			&discoverygrpc.DiscoveryRequest{Node: &corev3.Node{Id: NodeID("acme", "edge")}})
	}
	for _, tc := range a.refusedCases() {
		md := []string{}
		if tc.token != "" {
			md = append(md, "authorization", "Bearer "+tc.token)
		}
		if _, err := fetch(md...); status.Code(err) != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
	}
	for _, md := range [][]string{
		{"authorization", "Basic " + a.edge},
		{"authorization", "Bearer"},
		{"authorization", a.edge},
		{"authorization", "Bearer " + a.edge, "authorization", "Bearer " + a.edge},
	} {
		if _, err := fetch(md...); status.Code(err) != codes.Unauthenticated {
			t.Errorf("metadata %q: got %v, want Unauthenticated", md, err)
		}
	}
	r, err := fetch("authorization", "Bearer "+a.edge)
	if err != nil || len(r.GetResources()) != 5 {
		t.Fatalf("own credential: %v, %d clusters", err, len(r.GetResources()))
	}
	// A lowercase scheme is still a bearer credential.
	if _, err := fetch("authorization", "bearer "+a.edge); err != nil {
		t.Fatalf("lowercase scheme: %v", err)
	}
}

// Revoking a credential ends the streams opened with it (UNAUTHENTICATED)
// once Reverify runs; other gateways' streams carry on; a credential that
// cannot be checked (a verifier fault) refuses new streams with
// UNAVAILABLE and leaves open ones alone.
func TestRevocationEndsOpenStreams(t *testing.T) {
	a := newAuthFixture(t)
	edge := dialADS(t, a.cp.addr, NodeID("acme", "edge"), a.edge)
	subscribeLikeEnvoy(t, edge)
	side := dialADS(t, a.cp.addr, NodeID("acme", "side"), a.side)
	subscribeLikeEnvoy(t, side)
	for _, gw := range []string{"edge", "side"} {
		testkit.Eventually(t, waitBound, a.cp.statusWhere("acme", gw, nil, func(st XDSStatus) bool { return len(st.Nodes) == 1 }),
			"the node of acme/%s", gw)
	}

	ctx := context.Background()
	if n := a.cp.xds.Reverify(ctx); n != 0 {
		t.Fatalf("Reverify ended %d streams with valid credentials", n)
	}
	a.cp.creds.setFault(errors.New("store unreachable"))
	if n := a.cp.xds.Reverify(ctx); n != 0 {
		t.Fatalf("Reverify ended %d streams on a verifier fault", n)
	}
	c := dialADS(t, a.cp.addr, NodeID("acme", "side"), a.side)
	sendOK(t, c.subscribe(resource.ClusterType, nil))
	if _, err := c.next(resource.ClusterType, step); status.Code(err) != codes.Unavailable {
		t.Fatalf("new stream during a verifier fault: %v, want Unavailable", err)
	}
	a.cp.creds.setFault(nil)

	a.cp.creds.revoke(a.edge)
	if n := a.cp.xds.Reverify(ctx); n != 1 {
		t.Fatalf("Reverify ended %d streams, want 1", n)
	}
	if _, err := edge.next(resource.RouteType, step); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("the revoked stream: %v, want Unauthenticated", err)
	}
	testkit.Eventually(t, waitBound, a.cp.statusWhere("acme", "edge", nil, noNodes), "the revoked node to disconnect")
	again := dialADS(t, a.cp.addr, NodeID("acme", "edge"), a.edge)
	sendOK(t, again.subscribe(resource.ClusterType, nil))
	if _, err := again.next(resource.ClusterType, step); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("a new stream with the revoked credential: %v, want Unauthenticated", err)
	}
	// The other gateway's stream is still served.
	before := a.cp.xds.Status("acme", "side").Version
	a.f.setAPIPath("acme", "order", "/orders/{id}")
	for {
		r, err := side.next(resource.RouteType, step)
		if err != nil {
			t.Fatalf("the other gateway's stream: %v", err)
		}
		if r.GetVersionInfo() != before {
			break
		}
	}
}

// A gRPC server the xDS services were registered on without the server's
// interceptors refuses everything.
func TestWithoutInterceptorsEverythingIsRefused(t *testing.T) {
	a := newAuthFixture(t)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	a.cp.xds.Register(gs)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	c := dialADS(t, lis.Addr().String(), NodeID("acme", "edge"), a.edge)
	sendOK(t, c.subscribe(resource.ClusterType, nil))
	if _, err := c.next(resource.ClusterType, step); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("got %v, want Unauthenticated", err)
	}
	a.assertUntouched(t, "acme", "edge")
}

// sendOK fails on a send error other than io.EOF: a stream the server
// refused at once may end before the first send, whose error is then EOF
// (the refusal's status comes from the next receive).
func sendOK(t *testing.T, err error) {
	t.Helper()
	if err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
}
