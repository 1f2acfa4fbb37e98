package envoy

import (
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	"github.com/gatehouse-dev/gatehouse/model"
)

// Every input Translate reads changes the key; what it does not read (a
// policy) does not.
func TestTranslationKey(t *testing.T) {
	f := newFixture(t)
	seedShop(f, "acme")
	f.gateway("acme", "edge", model.GatewaySpec{Type: model.GatewayEnvoy})
	opts := TranslateOptions{AuthorizerAddress: "authz:9191"}
	key := func() [32]byte { return translationKey(f.compile("acme", "edge"), opts) }
	prev := key()
	changes := []struct {
		what string
		fn   func()
	}{
		{"a policy", func() {
			testkit.Create(t, f.store, testkit.Policy("acme", "p", testkit.Validators(testkit.AllowAll())))
		}},
	}
	for _, c := range changes {
		c.fn()
		if k := key(); k != prev {
			t.Fatalf("%s changed the key", c.what)
		}
	}
	updateService := func(fn func(*model.ServiceSpec)) func() {
		return func() { testkit.Edit(t, f.store, model.KindService, "acme", "store", fn) }
	}
	updateAPI := func(fn func(*model.APISpec)) func() {
		return func() { testkit.Edit(t, f.store, model.KindAPI, "acme", "order", fn) }
	}
	updateGateway := func(fn func(*model.GatewaySpec)) func() {
		return func() { testkit.Edit(t, f.store, model.KindGateway, "acme", "edge", fn) }
	}
	for _, c := range []struct {
		what string
		fn   func()
	}{
		{"a service URL", updateService(func(s *model.ServiceSpec) { s.URL = "https://store.example.com/v2" })},
		{"a service host", updateService(func(s *model.ServiceSpec) { s.Hosts = []string{"store.example"} })},
		{"an API path", updateAPI(func(a *model.APISpec) { a.Path = "/orders/{id}" })},
		{"an API method", updateAPI(func(a *model.APISpec) { a.Method = "PUT" })},
		{"an API made public", updateAPI(func(a *model.APISpec) { a.Public = true })},
		{"the listener port", updateGateway(func(g *model.GatewaySpec) { g.ListenerPort = 8080 })},
		{"the listener address", updateGateway(func(g *model.GatewaySpec) { g.ListenerAddress = "127.0.0.1" })},
		{"request body forwarding", updateGateway(func(g *model.GatewaySpec) {
			g.RequestBody = &model.RequestBodySettings{MaxRequestBytes: 100}
		})},
		{"request body size", updateGateway(func(g *model.GatewaySpec) { g.RequestBody.MaxRequestBytes = 200 })},
		{"unmatched routes", updateGateway(func(g *model.GatewaySpec) { g.AllowUnmatchedRoutes = true })},
		{"the gateway's services", updateGateway(func(g *model.GatewaySpec) { g.ServiceIDs = []string{"pets"} })},
	} {
		c.fn()
		k := key()
		if k == prev {
			t.Fatalf("%s did not change the key", c.what)
		}
		prev = k
	}
	c := f.compile("acme", "edge")
	base := translationKey(c, opts)
	for _, o := range []TranslateOptions{
		{AuthorizerAddress: "other:9191"},
		{AuthorizerAddress: "authz:9191", AuthorizerTimeout: 1},
		{AuthorizerAddress: "authz:9191", UpstreamCAFile: "/ca.pem"},
		{AuthorizerAddress: "authz:9191", UpstreamConnectTimeout: 1},
		{AuthorizerAddress: "authz:9191", AuthorizerConnectTimeout: 1},
	} {
		if translationKey(c, o) == base {
			t.Fatalf("options %+v did not change the key", o)
		}
	}
}
