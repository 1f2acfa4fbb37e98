package envoy

import (
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/gatehouse-dev/gatehouse/routing"
	"github.com/gatehouse-dev/gatehouse/routing/pathcorpus"
)

// TestTemplateCorpusInEnvoy: the generated path specifier of every corpus
// template matches exactly the corpus paths the template matches, on the
// path as Envoy routes it (and, for proxyless gRPC, on the raw path).
func TestTemplateCorpusInEnvoy(t *testing.T) {
	for _, c := range pathcorpus.TemplateCases() {
		tpl, err := routing.ParseTemplate(c.Template)
		if err != nil {
			t.Fatal(err)
		}
		for _, grpc := range []bool{false, true} {
			m := &routev3.RouteMatch{}
			pathMatch(m, tpl, grpc)
			if err := m.ValidateAll(); err != nil {
				t.Fatal(err)
			}
			var got bool
			if grpc {
				got = grpcPathMatches(t, m, c.Path)
				if c.Path != upperEscapes(c.Path) || c.Path != envoyNormalized(c.Path) {
					continue // gRPC clients send paths as they are
				}
			} else {
				got = envoyPathMatches(t, m, envoyNormalized(c.Path))
			}
			if got != (c.Params != nil) {
				t.Errorf("%s ~ %s (grpc=%v, %v): Envoy %v, corpus %v", c.Template, c.Path, grpc, m.GetPathSpecifier(), got, c.Params)
			}
		}
	}
}
