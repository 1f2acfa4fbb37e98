package envoy

import (
	"context"
	"fmt"
	"math/rand"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	corsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"

	"github.com/gatehouse-dev/gatehouse/gateway"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/policies"
	"github.com/gatehouse-dev/gatehouse/routing"
)

// envoyCORSOutcome is what Envoy does with a request, by first match over
// a vhost's routes and the CORS filter's rules (cors_filter.cc): whether
// the filter answers it as a preflight, with which headers, and the
// Access-Control-Allow-Origin an actual response gets.
type envoyCORSOutcome struct {
	route    string
	answered bool
	headers  http.Header // of the preflight answer
	origin   string      // Access-Control-Allow-Origin of an actual response
}

func envoyCORS(t *testing.T, routes []*routev3.Route, method, path string, h map[string]string) envoyCORSOutcome {
	t.Helper()
	var out envoyCORSOutcome
	var r *routev3.Route
	for _, er := range routes {
		if envoyRouteMatches(t, er.GetMatch(), method, path, h) {
			r = er
			break
		}
	}
	if r == nil {
		t.Fatalf("%s %s: no route (the vhost ends with a catch-all)", method, path)
	}
	out.route = r.GetName()
	cfg, ok := r.GetTypedPerFilterConfig()[CORSFilterName]
	if !ok || r.GetDirectResponse() != nil { // a direct response has no route entry: the filter passes
		return out
	}
	p := &corsv3.CorsPolicy{}
	if err := cfg.UnmarshalTo(p); err != nil {
		t.Fatal(err)
	}
	origin := h["origin"]
	if origin == "" {
		return out
	}
	allowed := slices.ContainsFunc(p.GetAllowOriginStringMatch(), func(m *matcherv3.StringMatcher) bool {
		return m.GetExact() == "*" || m.GetExact() == origin
	})
	if method == "OPTIONS" && h["access-control-request-method"] != "" {
		forward := p.GetForwardNotMatchingPreflights() == nil || p.GetForwardNotMatchingPreflights().GetValue()
		if !allowed && forward {
			return out
		}
		out.answered = true
		out.headers = http.Header{}
		if allowed {
			out.headers.Set("Access-Control-Allow-Origin", origin)
		}
		if p.GetAllowCredentials().GetValue() {
			out.headers.Set("Access-Control-Allow-Credentials", "true")
		}
		if m := p.GetAllowMethods(); m == "*" {
			out.headers.Set("Access-Control-Allow-Methods", h["access-control-request-method"])
		} else if m != "" {
			out.headers.Set("Access-Control-Allow-Methods", m)
		}
		if m := p.GetAllowHeaders(); m == "*" {
			out.headers.Set("Access-Control-Allow-Headers", h["access-control-request-headers"])
		} else if m != "" {
			out.headers.Set("Access-Control-Allow-Headers", m)
		}
		if p.GetMaxAge() != "" {
			out.headers.Set("Access-Control-Max-Age", p.GetMaxAge())
		}
		return out
	}
	if allowed {
		out.origin = origin
	}
	return out
}

var (
	corsOrigins  = []string{"", "https://a.example", "https://b.example", "https://c.example", "HTTPS://A.EXAMPLE"}
	corsSettings = []*model.CORSSettings{
		nil,
		{AllowedOrigins: []string{"*"}, AllowedMethods: []string{"*"}, AllowedHeaders: []string{"*"}},
		{AllowedOrigins: []string{"https://a.example", "https://b.example"}, AllowedMethods: []string{"GET", "POST"},
			AllowedHeaders: []string{"Authorization"}, ExposedHeaders: []string{"X-Request-Id"}, MaxAge: 600, AllowCredentials: true},
		{AllowedOrigins: []string{"https://b.example"}},
	}
)

// TestCORSAgreesWithTheProxy generates gateways whose services have
// assorted cors settings and overlapping APIs, and requires, for every
// generated request, that Envoy — first match over the generated routes,
// then the CORS filter's rules — answers a preflight exactly when the
// reverse proxy's CORSPreflight does, with the same headers, and that
// actual responses get the same Access-Control-Allow-Origin
// (gateway.Engine.CORSResponseHeaders).
func TestCORSAgreesWithTheProxy(t *testing.T) {
	rng := rand.New(rand.NewSource(1803))
	templates := []string{"/pets", "/pets/{id}", "/pets/{id}.json", "/pets/mine", "/{p...}", "/files/{p...}", "/v{v}/x"}
	paths := []string{"/pets", "/pets/1", "/pets/1.json", "/pets/mine", "/files/a/b", "/v2/x", "/other", "/pets/a;b"}
	answered, actual, compared := 0, 0, 0
	for n := 0; n < 40; n++ {
		cfg := &policies.Config{
			Tenant:   policies.Object[model.TenantSpec]{ID: "acme", Spec: model.TenantSpec{Name: "Acme"}},
			Gateways: []policies.Object[model.GatewaySpec]{{ID: "edge", Name: "edge", Spec: model.GatewaySpec{Type: model.GatewayEnvoy, PolicyTimeoutMS: model.MaxPolicyTimeoutMS}}},
		}
		// Half the gateways have one cors setting on all their services
		// (CORS applies), half assorted ones (it applies only where they
		// agree: policies.VHostCORS).
		shared := corsSettings[1+rng.Intn(len(corsSettings)-1)]
		uniform := rng.Intn(2) == 0
		for s := 0; s < 1+rng.Intn(3); s++ {
			sid := fmt.Sprintf("s%d", s)
			sc := corsSettings[rng.Intn(len(corsSettings))]
			if uniform {
				sc = shared
			}
			cfg.Services = append(cfg.Services, policies.Object[model.ServiceSpec]{ID: sid, Name: sid,
				Spec: model.ServiceSpec{URL: "http://" + sid, CORS: sc}})
			seen := map[string]bool{}
			for a := 0; a < 2+rng.Intn(5); a++ {
				method := []string{"GET", "POST", "HEAD", "OPTIONS", "*", "PUT"}[rng.Intn(6)]
				path := templates[rng.Intn(len(templates))]
				if seen[method+path] {
					continue
				}
				seen[method+path] = true
				cfg.APIs = append(cfg.APIs, policies.Object[model.APISpec]{ID: fmt.Sprintf("%s-%d", sid, a),
					Spec: model.APISpec{ServiceID: sid, Method: method, Path: path, Public: rng.Intn(2) == 0}})
			}
		}
		res, eng := translated(t, cfg)
		routes := resourcesOf[*routev3.RouteConfiguration](t, res, resource.RouteType)[0].GetVirtualHosts()[0].GetRoutes()
		for q := 0; q < 150; q++ {
			method := []string{"OPTIONS", "OPTIONS", "OPTIONS", "GET", "POST", "HEAD"}[rng.Intn(6)]
			path := paths[rng.Intn(len(paths))]
			h := map[string]string{}
			if o := corsOrigins[rng.Intn(len(corsOrigins))]; o != "" {
				h["origin"] = o
			}
			if m := []string{"", "GET", "HEAD", "POST", "PUT", "OPTIONS", "DELETE"}[rng.Intn(7)]; m != "" {
				h["access-control-request-method"] = m
			}
			if rng.Intn(2) == 0 {
				h["access-control-request-headers"] = "authorization"
			}
			want := envoyCORS(t, routes, method, envoyNormalized(path), h)
			req := httptest.NewRequest(method, path, nil)
			req.Host = "api.example.com"
			for k, v := range h {
				req.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			got := gateway.CORSPreflight(rec, req, eng)
			if got != want.answered {
				t.Fatalf("%s %s %v: proxy answers %v, Envoy %v (route %s)", method, path, h, got, want.answered, want.route)
			}
			compared++
			if got {
				answered++
				rec.Header().Del("Content-Length")
				if fmt.Sprint(rec.Header()) != fmt.Sprint(want.headers) || rec.Code != 200 {
					t.Fatalf("%s %s %v: proxy answers %d %v, Envoy %v", method, path, h, rec.Code, rec.Header(), want.headers)
				}
				continue
			}
			if _, err := routing.CanonicalPath(path); err != nil {
				continue // refused by both before routing
			}
			gotOrigin := eng.CORSResponseHeaders(req).Get("Access-Control-Allow-Origin")
			if gotOrigin != want.origin {
				t.Fatalf("%s %s %v: proxy's Access-Control-Allow-Origin %q, Envoy's %q (route %s)", method, path, h, gotOrigin, want.origin, want.route)
			}
			if gotOrigin != "" {
				actual++
			}
		}
	}
	t.Logf("%d requests: %d preflights answered, %d actual responses with Access-Control-Allow-Origin", compared, answered, actual)
	if answered < 300 || actual < 200 {
		t.Fatalf("one-sided corpus: %d answered, %d actual", answered, actual)
	}
}

// TestCORSFilterPlacement: with a service with cors, the CORS filter sits
// after the owned-headers filter and before ext_authz; without, there is
// none.
func TestCORSFilterPlacement(t *testing.T) {
	for _, withCORS := range []bool{false, true} {
		spec := model.ServiceSpec{URL: "http://s"}
		if withCORS {
			spec.CORS = &model.CORSSettings{AllowedOrigins: []string{"https://a.example"}}
		}
		cfg := &policies.Config{
			Tenant:   policies.Object[model.TenantSpec]{ID: "acme", Spec: model.TenantSpec{Name: "Acme"}},
			Gateways: []policies.Object[model.GatewaySpec]{{ID: "edge", Name: "edge", Spec: model.GatewaySpec{Type: model.GatewayEnvoy}}},
			Services: []policies.Object[model.ServiceSpec]{{ID: "s", Name: "s", Spec: spec}},
			APIs:     []policies.Object[model.APISpec]{{ID: "a", Spec: model.APISpec{ServiceID: "s", Method: "GET", Path: "/a"}}},
		}
		c, err := policies.Compile(cfg, "edge")
		if err != nil {
			t.Fatal(err)
		}
		res, err := Translate(c, TranslateOptions{AuthorizerAddress: "authz:9191"})
		if err != nil {
			t.Fatal(err)
		}
		if err := ValidateDeep(res); err != nil {
			t.Fatal(err)
		}
		l := resourcesOf[*listenerv3.Listener](t, res, resource.ListenerType)[0]
		names, _ := listenerHCMFilters(t, l)
		want := []string{HeaderMutationFilterName, wellknown.HTTPExternalAuthorization, wellknown.Router}
		if withCORS {
			want = []string{HeaderMutationFilterName, CORSFilterName, wellknown.HTTPExternalAuthorization, wellknown.Router}
		}
		if strings.Join(names, ",") != strings.Join(want, ",") {
			t.Fatalf("cors %v: filters %v, want %v", withCORS, names, want)
		}
	}
}

// TestCORSOfOneServiceNeverGrantsAnother: on a host shared by a service
// with cors (and a catch-all API) and one without, a preflight for the
// other service's DELETE is not answered — by Envoy or the proxy — so the
// browser never sends that cross-origin DELETE; on a host whose services
// agree, it is.
func TestCORSOfOneServiceNeverGrantsAnother(t *testing.T) {
	app := &model.CORSSettings{AllowedOrigins: []string{"https://app.example.com"}, AllowedMethods: []string{"*"}, AllowCredentials: true}
	for _, tc := range []struct {
		name      string
		adminCORS *model.CORSSettings
		answered  bool
	}{
		{"the other service has no cors", nil, false},
		{"the other service allows another origin", &model.CORSSettings{AllowedOrigins: []string{"https://else.example.com"}}, false},
		{"both services have the same cors", app, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &policies.Config{
				Tenant:   policies.Object[model.TenantSpec]{ID: "acme", Spec: model.TenantSpec{Name: "Acme"}},
				Gateways: []policies.Object[model.GatewaySpec]{{ID: "edge", Name: "edge", Spec: model.GatewaySpec{Type: model.GatewayEnvoy}}},
				Services: []policies.Object[model.ServiceSpec]{
					{ID: "app", Name: "app", Spec: model.ServiceSpec{URL: "http://app", CORS: app}},
					{ID: "admin", Name: "admin", Spec: model.ServiceSpec{URL: "http://admin", CORS: tc.adminCORS}},
				},
				APIs: []policies.Object[model.APISpec]{
					{ID: "app-any", Spec: model.APISpec{ServiceID: "app", Method: "*", Path: "/{p...}", Public: true}},
					{ID: "admin-delete", Spec: model.APISpec{ServiceID: "admin", Method: "DELETE", Path: "/admin/users/{id}"}},
				},
			}
			res, eng := translated(t, cfg)
			h := map[string]string{"origin": "https://app.example.com", "access-control-request-method": "DELETE"}
			routes := resourcesOf[*routev3.RouteConfiguration](t, res, resource.RouteType)[0].GetVirtualHosts()[0].GetRoutes()
			envoyAnswer := envoyCORS(t, routes, "OPTIONS", "/admin/users/1", h)
			req := httptest.NewRequest("OPTIONS", "/admin/users/1", nil)
			req.Host = "api.example.com"
			for k, v := range h {
				req.Header.Set(k, v)
			}
			proxyAnswer := gateway.CORSPreflight(httptest.NewRecorder(), req, eng)
			if envoyAnswer.answered != tc.answered || proxyAnswer != tc.answered {
				t.Fatalf("preflight for the admin DELETE: Envoy answered %v (route %s), proxy %v; want %v",
					envoyAnswer.answered, envoyAnswer.route, proxyAnswer, tc.answered)
			}
		})
	}
}

// translated compiles cfg for gateway edge, translates it (the result
// validated) and builds the authorizer's engine of the same bundle.
func translated(t *testing.T, cfg *policies.Config) (Resources, *gateway.Engine) {
	t.Helper()
	c, err := policies.Compile(cfg, "edge")
	if err != nil {
		t.Fatal(err)
	}
	res, err := Translate(c, TranslateOptions{AuthorizerAddress: "authz:9191"})
	if err != nil {
		t.Fatal(err)
	}
	if err := ValidateDeep(res); err != nil {
		t.Fatal(err)
	}
	src, err := gateway.SourceFromCompiled(c, "1")
	if err != nil {
		t.Fatal(err)
	}
	eng, err := gateway.NewEngine(context.Background(), src, nil)
	if err != nil {
		t.Fatal(err)
	}
	return res, eng
}
