package envoy

import (
	"fmt"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/policies"
	"github.com/gatehouse-dev/gatehouse/store"
)

// seedBench writes one tenant "t" with services svc-000… (each with its own
// host), apis APIs spread evenly over them (a mix of literal, parameter
// and catch-all templates and methods), and a gateway "edge" over all.
func seedBench(b *testing.B, f *fixture, services, apis int) {
	b.Helper()
	f.tenant("t")
	methods := []string{"GET", "POST", "PUT", "DELETE", "*"}
	var objs []*store.Object
	for s := 0; s < services; s++ {
		sid := fmt.Sprintf("svc-%03d", s)
		objs = append(objs, testkit.Service("t", sid, fmt.Sprintf("http://%s.internal:8080/api", sid), sid+".example.com"))
	}
	for a := 0; a < apis; a++ {
		sid := fmt.Sprintf("svc-%03d", a%services)
		var path string
		switch a % 4 {
		case 0:
			path = fmt.Sprintf("/r%d", a)
		case 1:
			path = fmt.Sprintf("/r%d/{id}", a)
		case 2:
			path = fmt.Sprintf("/r%d/{id}/items/{item}", a)
		default:
			path = fmt.Sprintf("/r%d/files/{path...}", a)
		}
		m := methods[a%len(methods)]
		o := testkit.API("t", fmt.Sprintf("api-%05d", a), model.APISpec{ServiceID: sid, Method: m, Path: path, Public: a%50 == 0})
		o.Name = model.APIName(sid, m, path)
		objs = append(objs, o)
	}
	objs = append(objs, testkit.Gateway("t", "edge", model.GatewaySpec{Type: model.GatewayEnvoy}))
	testkit.Create(b, f.store, objs...)
}

// BenchmarkSnapshotBuild measures turning one gateway's compiled
// configuration (10,000 APIs across 100 services) into a snapshot ready to
// serve: Translate, ValidateDeep (every resource and every Any inside),
// NewSnapshot, Consistent and the cluster reference check.
func BenchmarkSnapshotBuild(b *testing.B) {
	f := newFixture(b)
	seedBench(b, f, 100, 10000)
	c := f.compile("t", "edge")
	opts := TranslateOptions{AuthorizerAddress: "authorizer:9191"}
	b.Run("translate", func(b *testing.B) {
		for b.Loop() {
			if _, err := Translate(c, opts); err != nil {
				b.Fatal(err)
			}
		}
	})
	res, err := Translate(c, opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("validate", func(b *testing.B) {
		for b.Loop() {
			if _, err := newSnapshot("1", res); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("all", func(b *testing.B) {
		for b.Loop() {
			buildSnapshot(b, c, opts)
		}
	})
}

func buildSnapshot(b *testing.B, c *policies.Compiled, opts TranslateOptions) {
	res, err := Translate(c, opts)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := newSnapshot("1", res); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkWriteToUpdate measures, with an ADS client connected to a
// gateway and ACKing like Envoy, the time from an admin write (a store
// transaction changing one API's path) to the new RouteConfiguration
// version arriving at the client: the change feed, the bundle build
// (compile, sign), the translation, validation and the ADS push. It also
// reports the two halves: write → new bundle, new bundle → client.
func BenchmarkWriteToUpdate(b *testing.B) {
	for _, size := range []struct{ services, apis int }{{10, 100}, {100, 1000}, {100, 10000}} {
		b.Run(fmt.Sprintf("apis=%d", size.apis), func(b *testing.B) {
			f := newFixture(b)
			seedBench(b, f, size.services, size.apis)
			cp := f.start()
			c := dialADS(b, cp.addr, NodeID("t", "edge"), cp.token("t", "edge"))
			subscribeLikeEnvoy(b, c)
			version := cp.xds.Status("t", "edge").Version
			i := 0
			var toBundle, toClient time.Duration
			for b.Loop() {
				i++
				changed, bundled := cp.bundles.Changed(), make(chan time.Time, 1)
				go func() { <-changed; bundled <- time.Now() }()
				start := time.Now()
				f.setAPIPath("t", "api-00001", fmt.Sprintf("/changed%d/{id}", i))
				for {
					r, err := c.next(resource.RouteType, 30*time.Second)
					if err != nil {
						b.Fatal(err)
					}
					if err := c.ack(r); err != nil {
						b.Fatal(err)
					}
					if r.GetVersionInfo() != version {
						version = r.GetVersionInfo()
						break
					}
				}
				arrived := time.Now()
				at := <-bundled
				toBundle += at.Sub(start)
				toClient += arrived.Sub(at)
				// ACK the cluster and listener updates of the same version.
				for _, typ := range []string{resource.ClusterType, resource.ListenerType} {
					for len(c.pending[typ]) > 0 {
						r, _ := c.next(typ, time.Second)
						if err := c.ack(r); err != nil {
							b.Fatal(err)
						}
					}
				}
			}
			b.ReportMetric(float64(toBundle.Milliseconds())/float64(i), "ms-to-bundle/op")
			b.ReportMetric(float64(toClient.Milliseconds())/float64(i), "ms-bundle-to-client/op")
		})
	}
}
