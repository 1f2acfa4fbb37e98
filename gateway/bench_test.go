package gateway_test

import (
	"context"
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/authzbench"
)

// BenchmarkCheck measures one ext_authz Check in-process (no network): the
// Gatehouse fast path and, for comparison, the same policy, requests and
// tokens evaluated the way opa-envoy-plugin does it. Run with -benchmem for
// allocations per Check.
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
	plugin, err := f.NewPluginStyle(ctx)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("gatehouse", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			res, err := fast.Check(ctx, f.Requests[i%len(f.Requests)])
			if err != nil || res.Status == nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("opa-envoy-plugin-style", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, err := plugin.Check(ctx, f.Requests[i%len(f.Requests)]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}
