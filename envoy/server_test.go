package envoy

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/store"
)

const step = 5 * time.Second

// subscribeLikeEnvoy runs Envoy's initial ADS exchange: wildcard CDS, EDS
// for the EDS clusters, wildcard LDS, RDS for the route configurations the
// listeners name, ACKing each response.
func subscribeLikeEnvoy(t testing.TB, c *adsClient) (clusters []*clusterv3.Cluster, listeners []*listenerv3.Listener, routes []*routev3.RouteConfiguration) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(c.subscribe(resource.ClusterType, nil))
	cds, err := c.next(resource.ClusterType, step)
	must(err)
	clusters, err = unpack(cds, func() *clusterv3.Cluster { return &clusterv3.Cluster{} })
	must(err)
	must(c.ack(cds))
	var eds []string
	for _, cl := range clusters {
		if cl.GetType() == clusterv3.Cluster_EDS {
			eds = append(eds, cl.GetName())
		}
	}
	if len(eds) > 0 {
		must(c.subscribe(resource.EndpointType, eds))
		r, err := c.next(resource.EndpointType, step)
		must(err)
		must(c.ack(r))
	}
	must(c.subscribe(resource.ListenerType, nil))
	lds, err := c.next(resource.ListenerType, step)
	must(err)
	listeners, err = unpack(lds, func() *listenerv3.Listener { return &listenerv3.Listener{} })
	must(err)
	must(c.ack(lds))
	var rds []string
	for _, l := range listeners {
		hcm, _ := listenerHCM(t, l)
		rds = append(rds, hcm.GetRds().GetRouteConfigName())
	}
	must(c.subscribe(resource.RouteType, rds))
	rr, err := c.next(resource.RouteType, step)
	must(err)
	routes, err = unpack(rr, func() *routev3.RouteConfiguration { return &routev3.RouteConfiguration{} })
	must(err)
	must(c.ack(rr))
	return clusters, listeners, routes
}

func TestADSClientLikeEnvoy(t *testing.T) {
	f := newFixture(t)
	seedShop(f, "acme")
	f.gateway("acme", "edge", model.GatewaySpec{Type: model.GatewayEnvoy, ListenerPort: 10001})
	f.tenant("other")
	f.service("other", "x", "http://x.internal")
	f.apis("other", api{id: "x-get", service: "x", method: "GET", path: "/x"})
	f.gateway("other", "gw", model.GatewaySpec{Type: model.GatewayEnvoy})
	cp := f.start()

	c := dialADS(t, cp.addr, NodeID("acme", "edge"), cp.token("acme", "edge"))
	if !t.Run("Envoy's first exchange gets the gateway's listener, ext_authz, clusters and routes, nothing of another tenant", func(t *testing.T) {
		clusters, listeners, routes := subscribeLikeEnvoy(t, c)
		if len(listeners) != 1 || listeners[0].GetAddress().GetSocketAddress().GetPortValue() != 10001 {
			t.Fatalf("listeners %v", listeners)
		}
		_, authz := listenerHCM(t, listeners[0])
		if authz.GetGrpcService().GetEnvoyGrpc().GetClusterName() != AuthorizerClusterName || authz.GetFailureModeAllow() ||
			authz.GetTransportApiVersion().String() != "V3" || authz.GetWithRequestBody() != nil {
			t.Fatalf("ext_authz %v", authz)
		}
		names := map[string]bool{}
		for _, cl := range clusters {
			names[cl.GetName()] = true
		}
		for _, want := range []string{"service_pets", "service_store", "service_admin", "service_files", AuthorizerClusterName} {
			if !names[want] {
				t.Fatalf("cluster %s missing from %v", want, names)
			}
		}
		if names["service_x"] {
			t.Fatal("another tenant's cluster leaked into the snapshot")
		}
		apis := map[string]string{} // api -> vhost
		for _, vh := range routes[0].GetVirtualHosts() {
			for _, r := range vh.GetRoutes() {
				apis[r.GetName()] = vh.GetName()
			}
		}
		for _, id := range []string{"list-pets", "get-pet", "mine", "any-pet", "health", "order", "catalog", "admin-users", "file-get"} {
			if apis[id] == "" {
				t.Fatalf("route for API %s missing: %v", id, apis)
			}
		}
		if apis["admin-users"] != "admin.example" || apis["order"] != "default" {
			t.Fatalf("vhosts %v", apis)
		}
	}) {
		return
	}

	var st, other XDSStatus
	if !t.Run("the status shows the node and its ACKs", func(t *testing.T) {
		testkit.Eventually(t, waitBound, cp.statusWhere("acme", "edge", &st, func(st XDSStatus) bool {
			return len(st.Nodes) == 1 && st.Nodes[0].Resources[resource.RouteType] != nil &&
				st.Nodes[0].Resources[resource.RouteType].AckedVersion == st.Version
		}), "the ACKs to be recorded")
		for _, typ := range []string{resource.ClusterType, resource.ListenerType, resource.RouteType} {
			r := st.Nodes[0].Resources[typ]
			if r == nil || r.AckedVersion != st.Version || r.AckedAt == nil || r.LastNack != nil {
				t.Fatalf("%s status %+v (version %s)", typ, r, st.Version)
			}
		}
		if st.Nodes[0].UserAgent != "envoy" || st.Nodes[0].Cluster != "test" || !strings.HasPrefix(st.Nodes[0].Peer, "127.0.0.1:") {
			t.Fatalf("node %+v", st.Nodes[0])
		}
		if _, err := json.Marshal(cp.xds.GatewayStatus("acme", "edge")); err != nil {
			t.Fatal(err)
		}
		other = cp.xds.Status("other", "gw")
		if other.Version == "" || len(other.Nodes) != 0 {
			t.Fatalf("other gateway %+v", other)
		}
	}) {
		return
	}

	t.Run("an admin change reaches the client within 500ms as a new version; other gateways keep theirs", func(t *testing.T) {
		before := st.Version
		start := time.Now()
		f.on(t).setAPIPath("acme", "order", "/orders/{id}")
		var got *routev3.RouteConfiguration
		for got == nil {
			r, err := c.next(resource.RouteType, step)
			if err != nil {
				t.Fatal(err)
			}
			if r.GetVersionInfo() == before {
				continue
			}
			elapsed := time.Since(start)
			if elapsed > 500*time.Millisecond {
				t.Errorf("the change took %s to arrive", elapsed)
			}
			rcs, err := unpack(r, func() *routev3.RouteConfiguration { return &routev3.RouteConfiguration{} })
			if err != nil {
				t.Fatal(err)
			}
			got = rcs[0]
			t.Logf("change arrived in %s as version %s", elapsed, r.GetVersionInfo())
			if err := c.ack(r); err != nil {
				t.Fatal(err)
			}
		}
		found := false
		for _, vh := range got.GetVirtualHosts() {
			for _, r := range vh.GetRoutes() {
				if r.GetName() == "order" {
					found = r.GetMatch().GetSafeRegex().GetRegex() == `^/orders/[^/]+$`
				}
			}
		}
		if !found {
			t.Fatal("the updated route is not in the new RouteConfiguration")
		}
		if cp.xds.Status("other", "gw").Version != other.Version {
			t.Fatal("an unaffected gateway got a new version")
		}
	})
}

func TestNackIsRecordedAndNotResent(t *testing.T) {
	f := newFixture(t)
	seedShop(f, "acme")
	f.gateway("acme", "edge", model.GatewaySpec{Type: model.GatewayEnvoy})
	cp := f.start()
	c := dialADS(t, cp.addr, NodeID("acme", "edge"), cp.token("acme", "edge"))
	if err := c.subscribe(resource.ListenerType, nil); err != nil {
		t.Fatal(err)
	}
	lds, err := c.next(resource.ListenerType, step)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.nack(lds, "listener rejected: bad filter"); err != nil {
		t.Fatal(err)
	}
	if !t.Run("the NACK is recorded in the gateway's and the node's status", func(t *testing.T) {
		var st XDSStatus
		testkit.Eventually(t, waitBound, cp.statusWhere("acme", "edge", &st, func(st XDSStatus) bool { return st.LastNack != nil }),
			"the NACK in the status")
		if st.LastNack.Error != "listener rejected: bad filter" || st.LastNack.Version != lds.GetVersionInfo() ||
			st.LastNack.TypeURL != resource.ListenerType || st.LastNack.At.IsZero() {
			t.Fatalf("last NACK %+v", st.LastNack)
		}
		if r := st.Nodes[0].Resources[resource.ListenerType]; r.LastNack == nil || r.AckedVersion != "" {
			t.Fatalf("listener status %+v", r)
		}
	}) {
		return
	}
	if !t.Run("the rejected version is not resent", func(t *testing.T) {
		if n := c.quiet(300 * time.Millisecond); n != 0 {
			t.Fatalf("%d responses after a NACK: the rejected version is being resent", n)
		}
	}) {
		return
	}
	if !t.Run("a configuration change still sends a new version", func(t *testing.T) {
		f.on(t).setAPIPath("acme", "order", "/orders/{id}")
		r, err := c.next(resource.ListenerType, step)
		if err != nil {
			t.Fatal(err)
		}
		if r.GetVersionInfo() == lds.GetVersionInfo() {
			t.Fatal("the rejected version was sent again")
		}
		if err := c.ack(r); err != nil {
			t.Fatal(err)
		}
	}) {
		return
	}
	t.Run("the NACK stays in the status once the node is gone", func(t *testing.T) {
		c.close()
		testkit.Eventually(t, waitBound, cp.statusWhere("acme", "edge", nil, noNodes), "the node to disconnect")
		if cp.xds.Status("acme", "edge").LastNack == nil {
			t.Fatal("the last NACK was forgotten")
		}
	})
}

func TestDeletedGatewayIsEmptiedThenDropped(t *testing.T) {
	f := newFixture(t)
	seedShop(f, "acme")
	f.gateway("acme", "edge", model.GatewaySpec{Type: model.GatewayEnvoy})
	f.gateway("acme", "idle", model.GatewaySpec{Type: model.GatewayEnvoy})
	cp := f.start()
	c := dialADS(t, cp.addr, NodeID("acme", "edge"), cp.token("acme", "edge"))
	subscribeLikeEnvoy(t, c)
	f.write(func(ctx context.Context, tx store.Tx) error {
		for _, gw := range []string{"edge", "idle"} {
			if _, err := tx.Delete(ctx, model.KindGateway, "acme", gw, 0, false); err != nil {
				return err
			}
		}
		return nil
	})
	// The connected node is told to remove everything.
	for _, typ := range []string{resource.ClusterType, resource.ListenerType} {
		r, err := c.next(typ, step)
		if err != nil {
			t.Fatal(err)
		}
		if len(r.GetResources()) != 0 {
			t.Fatalf("%s: %d resources after the gateway was deleted", typ, len(r.GetResources()))
		}
	}
	testkit.Eventually(t, waitBound, cp.statusWhere("acme", "idle", nil, func(st XDSStatus) bool { return st.Version == "" }),
		"the idle gateway to be dropped")
	if cp.xds.Status("acme", "edge").Version != "" {
		t.Fatal("a deleted gateway still reports a version")
	}
}

// A bundle change xDS does not see (a new policy) rebuilds the bundle but
// sends nothing: the snapshot keeps its version.
func TestInvisibleChangeKeepsVersion(t *testing.T) {
	f := newFixture(t)
	seedShop(f, "acme")
	f.gateway("acme", "edge", model.GatewaySpec{Type: model.GatewayEnvoy})
	cp := f.start()
	before := cp.xds.Status("acme", "edge")
	rev := cp.bundles.Get("acme", "edge").Revision
	testkit.Create(t, f.store, testkit.Policy("acme", "p", testkit.Validators(testkit.AllowAll())))
	testkit.Eventually(t, waitBound, func() error {
		got := cp.bundles.Get("acme", "edge").Revision
		return testkit.Check(got != rev, "bundle revision still %d", got)
	}, "the bundle rebuild")
	testkit.Eventually(t, waitBound, cp.statusWhere("acme", "edge", nil, func(st XDSStatus) bool {
		return st.BundleRevision == cp.bundles.Get("acme", "edge").Revision
	}), "the xDS server to see it (bundle revision %d)", cp.bundles.Get("acme", "edge").Revision)
	if after := cp.xds.Status("acme", "edge"); after.Version != before.Version || after.Error != "" {
		t.Fatalf("version %s -> %s (error %q)", before.Version, after.Version, after.Error)
	}
}

// Incremental (delta) xDS streams are served and tracked too.
func TestDeltaStream(t *testing.T) {
	f := newFixture(t)
	seedShop(f, "acme")
	f.gateway("acme", "edge", model.GatewaySpec{Type: model.GatewayEnvoy})
	cp := f.start()
	cc, err := grpc.NewClient(cp.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ctx = withCredential(ctx, cp.token("acme", "edge"))
	s, err := discoverygrpc.NewAggregatedDiscoveryServiceClient(cc).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	node := &corev3.Node{Id: NodeID("acme", "edge"), UserAgentName: "envoy"}
	if err := s.Send(&discoverygrpc.DeltaDiscoveryRequest{Node: node, TypeUrl: resource.ClusterType}); err != nil {
		t.Fatal(err)
	}
	cds, err := s.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if len(cds.GetResources()) != 5 {
		t.Fatalf("%d clusters", len(cds.GetResources()))
	}
	if err := s.Send(&discoverygrpc.DeltaDiscoveryRequest{TypeUrl: resource.ClusterType, ResponseNonce: cds.GetNonce()}); err != nil {
		t.Fatal(err)
	}
	if err := s.Send(&discoverygrpc.DeltaDiscoveryRequest{TypeUrl: resource.ListenerType}); err != nil {
		t.Fatal(err)
	}
	lds, err := s.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(&discoverygrpc.DeltaDiscoveryRequest{TypeUrl: resource.ListenerType, ResponseNonce: lds.GetNonce(),
		ErrorDetail: &rpcstatus.Status{Code: int32(codes.InvalidArgument), Message: "no thanks"}}); err != nil {
		t.Fatal(err)
	}
	var st XDSStatus
	testkit.Eventually(t, waitBound, cp.statusWhere("acme", "edge", &st, func(st XDSStatus) bool {
		return st.LastNack != nil && len(st.Nodes) == 1 && st.Nodes[0].Resources[resource.ClusterType].AckedAt != nil
	}), "the delta ACK and NACK")
	if !st.Nodes[0].Delta || st.LastNack.Error != "no thanks" || st.LastNack.TypeURL != resource.ListenerType ||
		st.Nodes[0].Resources[resource.ClusterType].AckedVersion == "" {
		t.Fatalf("status %+v", st)
	}
}

// A configuration that cannot be translated leaves the previous snapshot
// in place and shows why in the status; fixing it serves a new version.
func TestBadConfigurationKeepsPreviousSnapshot(t *testing.T) {
	f := newFixture(t)
	seedShop(f, "acme")
	f.gateway("acme", "edge", model.GatewaySpec{Type: model.GatewayEnvoy})
	cp := f.start()
	good := cp.xds.Status("acme", "edge").Version
	setURL := func(url string) {
		testkit.Edit(t, f.store, model.KindService, "acme", "store", func(s *model.ServiceSpec) { s.URL = url })
	}
	setURL("ftp://store.example.com")
	var st XDSStatus
	testkit.Eventually(t, waitBound, cp.statusWhere("acme", "edge", &st, func(st XDSStatus) bool { return st.Error != "" }),
		"the error in the status")
	if st.Version != good || !strings.Contains(st.Error, "scheme") {
		t.Fatalf("status %+v", st)
	}
	setURL("https://store.example.com")
	testkit.Eventually(t, waitBound, cp.statusWhere("acme", "edge", &st, func(st XDSStatus) bool {
		return st.Error == "" && st.Version != good
	}), "a new version (the last good one was %s)", good)
}
