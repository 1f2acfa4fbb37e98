package envoy

import (
	"testing"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	"github.com/gatehouse-dev/gatehouse/model"
)

func TestXDSMetrics(t *testing.T) {
	f := newFixture(t)
	seedShop(f, "acme")
	f.gateway("acme", "edge", model.GatewaySpec{Type: model.GatewayEnvoy})
	cp := f.start()
	reg := prometheus.NewRegistry()
	if err := cp.xds.RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}
	if err := cp.xds.RegisterMetrics(reg); err == nil {
		t.Fatal("registering twice on one registry was accepted")
	}
	// value is a gauge's value, or a counter's with label type=typ (0 when
	// the series does not exist yet).
	value := func(name, typ string) float64 {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != name {
				continue
			}
			for _, m := range mf.GetMetric() {
				if typ == "" {
					return m.GetGauge().GetValue()
				}
				if len(m.GetLabel()) == 1 && m.GetLabel()[0].GetValue() == typ {
					return m.GetCounter().GetValue()
				}
			}
		}
		return 0
	}
	gauge := func(name string) float64 { return value(name, "") }
	c := dialADS(t, cp.addr, NodeID("acme", "edge"), cp.token("acme", "edge"))
	if err := c.subscribe(resource.ListenerType, nil); err != nil {
		t.Fatal(err)
	}
	lds, err := c.next(resource.ListenerType, step)
	if err != nil {
		t.Fatal(err)
	}
	if got := value("gatehouse_xds_pushes_total", "Listener"); got < 1 {
		t.Fatalf("pushes{Listener} = %v after a listener response", got)
	}
	if s, n := gauge("gatehouse_xds_streams"), gauge("gatehouse_xds_connected_nodes"); s != 1 || n != 1 {
		t.Fatalf("streams %v, nodes %v; want 1 and 1", s, n)
	}
	if err := c.nack(lds, "no thanks"); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, waitBound, func() error {
		return testkit.Check(value("gatehouse_xds_nacks_total", "Listener") == 1, "nacks{Listener} = %v",
			value("gatehouse_xds_nacks_total", "Listener"))
	}, "the NACK counted")
	f.on(t).setAPIPath("acme", "order", "/orders/{id}")
	r, err := c.next(resource.ListenerType, step)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.ack(r); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, waitBound, func() error {
		return testkit.Check(value("gatehouse_xds_acks_total", "Listener") == 1, "acks{Listener} = %v",
			value("gatehouse_xds_acks_total", "Listener"))
	}, "the ACK counted")
	c.close()
	testkit.Eventually(t, waitBound, func() error {
		return testkit.Check(gauge("gatehouse_xds_streams") == 0 && gauge("gatehouse_xds_connected_nodes") == 0, "streams still open")
	}, "the stream gone from the gauges")
}

func TestTypeName(t *testing.T) {
	for in, want := range map[string]string{resource.ClusterType: "Cluster", resource.ListenerType: "Listener",
		resource.RouteType: "RouteConfiguration", resource.EndpointType: "ClusterLoadAssignment", "type.googleapis.com/x.Evil": "other", "": "other"} {
		if got := typeName(in); got != want {
			t.Errorf("typeName(%q) = %q, want %q", in, got, want)
		}
	}
}
