package authzbench_test

import (
	"context"
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/authzbench"
)

// The opa-envoy-plugin-style baseline decides every corpus and edge
// request as the Gatehouse fast path does, with the plugin's defaults and
// with each benchmark variant.
func TestPluginStyleAgreesWithGatehouse(t *testing.T) {
	ctx := context.Background()
	f, err := authzbench.NewFixture()
	if err != nil {
		t.Fatal(err)
	}
	fast, err := f.FastPath(ctx)
	if err != nil {
		t.Fatal(err)
	}
	edge, err := f.EdgeRequests()
	if err != nil {
		t.Fatal(err)
	}
	for _, opts := range []authzbench.PluginOptions{{}, {ReadASTValuesFromStore: true, ValueCache: true}} {
		p, err := f.NewPluginStyleWith(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		allowed, err := authzbench.Agree(ctx, fast, p, "gatehouse", "plugin-style", f.Requests)
		if err != nil {
			t.Fatalf("%+v: %v", opts, err)
		}
		// Reads are allowed for every token, writes for editors and admins
		// only: neither all nor none.
		if allowed == 0 || allowed == len(f.Requests) {
			t.Fatalf("%+v: %d of %d corpus requests allowed", opts, allowed, len(f.Requests))
		}
		edgeAllowed, err := authzbench.Agree(ctx, fast, p, "gatehouse", "plugin-style", edge)
		if err != nil {
			t.Fatalf("%+v: edge: %v", opts, err)
		}
		if edgeAllowed == 0 || edgeAllowed == len(edge) {
			t.Fatalf("%+v: %d of %d edge requests allowed", opts, edgeAllowed, len(edge))
		}
	}
}
