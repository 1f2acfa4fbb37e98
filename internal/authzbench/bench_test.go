package authzbench_test

import (
	"context"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

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
