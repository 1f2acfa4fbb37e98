package authzbench_test

import (
	"context"
	"sync/atomic"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/gatehouse-dev/gatehouse/gateway"
	"github.com/gatehouse-dev/gatehouse/internal/authzbench"
)

// BenchmarkCheck measures one ext_authz Check in process (no network) over
// the fixture's request corpus: the Gatehouse fast path (gateway.Server,
// decision logs off) and the same decisions along opa-envoy-plugin's code
// path (PluginStyle) as the plugin ships, then with the two departures a
// plugin user cannot or would not normally make (AST store reads, an
// inter-query value cache caching io.jwt.decode_verify). Run with
// -benchmem for bytes and allocations per Check.
func BenchmarkCheck(b *testing.B) {
	ctx := context.Background()
	f, err := authzbench.NewFixture()
	if err != nil {
		b.Fatal(err)
	}
	fast, err := f.FastPath(ctx)
	if err != nil {
		b.Fatal(err)
	}
	impls := []struct {
		name string
		srv  authv3.AuthorizationServer
	}{{"gatehouse", fast}}
	for _, v := range []struct {
		name string
		opts authzbench.PluginOptions
	}{
		{"opa-envoy-plugin", authzbench.PluginOptions{}},
		{"opa-envoy-plugin+ast-store", authzbench.PluginOptions{ReadASTValuesFromStore: true}},
		{"opa-envoy-plugin+ast-store+jwt-cache", authzbench.PluginOptions{ReadASTValuesFromStore: true, ValueCache: true}},
	} {
		p, err := f.NewPluginStyleWith(ctx, v.opts)
		if err != nil {
			b.Fatal(err)
		}
		defer p.Close()
		if _, err := authzbench.Agree(ctx, fast, p, "gatehouse", v.name, f.Requests); err != nil {
			b.Fatal(err)
		}
		impls = append(impls, struct {
			name string
			srv  authv3.AuthorizationServer
		}{v.name, p})
	}
	for _, impl := range impls {
		b.Run(impl.name, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				res, err := impl.srv.Check(ctx, f.Requests[i%len(f.Requests)])
				if err != nil || res.GetStatus() == nil {
					b.Fatal(res, err)
				}
				i++
			}
		})
	}
}

// discardSink takes every batch and counts its events.
type discardSink struct{ events atomic.Int64 }

func (s *discardSink) Send(_ context.Context, b *gateway.LogBatch) error {
	s.events.Add(int64(b.Events))
	return nil
}

// BenchmarkCheckDecisionLogs is BenchmarkCheck's gatehouse case with every
// decision logged: masked, encoded, batched and gzipped by the decision
// logger's own goroutines, delivered to a sink that discards it. Run it
// with -cpu 1 so that the logger's work is in the time per Check (as on a
// one-core authorizer); the figure next to BenchmarkCheck/gatehouse is the
// cost of decision logging.
func BenchmarkCheckDecisionLogs(b *testing.B) {
	ctx := context.Background()
	f, err := authzbench.NewFixture()
	if err != nil {
		b.Fatal(err)
	}
	sink := &discardSink{}
	logs := gateway.NewDecisionLogger(gateway.DecisionLogOptions{Sink: sink})
	fast, err := f.FastPathLogging(ctx, logs)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if _, err := fast.Check(ctx, f.Requests[i%len(f.Requests)]); err != nil {
			b.Fatal(err)
		}
	}
	logs.Close(ctx) // what is still queued is encoded within the timing
	b.StopTimer()
	st := logs.Status()
	if st.DroppedTotal() > 0 || sink.events.Load() != int64(st.Events) {
		b.Fatalf("events made %d, delivered %d, dropped %d", st.Events, sink.events.Load(), st.DroppedTotal())
	}
}
