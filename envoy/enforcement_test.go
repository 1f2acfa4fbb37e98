package envoy

import (
	"context"
	"fmt"
	"math/rand"
	"regexp"
	"slices"
	"strings"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	headermutationv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/header_mutation/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/gatehouse-dev/gatehouse/gateway"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/policies"
	"github.com/gatehouse-dev/gatehouse/routing"
	"github.com/gatehouse-dev/gatehouse/routing/pathcorpus"
)

// TestNonCanonicalRoutes: the generated vhost routes that answer 400 catch
// every path class the authorizer refuses and Envoy's own normalisation
// lets through, and no path the authorizer accepts.
func TestNonCanonicalRoutes(t *testing.T) {
	var res []*regexp.Regexp
	for _, r := range nonCanonicalRoutes() {
		res = append(res, regexp.MustCompile(`^(?:`+r.GetMatch().GetSafeRegex().GetRegex()+`)$`))
	}
	refusedByRoutes := func(p string) bool {
		return slices.ContainsFunc(res, func(re *regexp.Regexp) bool { return re.MatchString(p) })
	}
	// What Envoy itself does with a path before routing: escaped slashes
	// are rejected, dot segments resolved (then routed as their target).
	envoyHandles := func(p string) bool {
		lp := strings.ToLower(p)
		if strings.Contains(lp, "%2f") || strings.Contains(lp, "%5c") {
			return true
		}
		return slices.ContainsFunc(routing.SplitPath(p), func(s string) bool { return s == "." || s == ".." })
	}
	paths := []string{}
	for _, c := range pathcorpus.Cases() {
		paths = append(paths, routing.RequestPath(c.Target))
	}
	rng := rand.New(rand.NewSource(3))
	atoms := []string{"/", "a", "Z", "9", ".", "-", "_", "~", ";", `\`, "%", "%2", "%3b", "%3B", "%00", "%1f", "%7F", "%20",
		"%c3%a9", "%25", "%zz", ":", "@", "!", "+", "=", " ", "\t", "{", "|", "\"", "%2e"}
	benign := []string{"a", "Z", "9", "-", "_", "~", "%20", "%c3%a9", "%25", ":", "@", "!", "+", "=", "%41", "x.y", ""}
	for i := 0; i < 5000; i++ {
		set := atoms
		if i%2 == 0 {
			set = benign
		}
		var b strings.Builder
		for n := rng.Intn(6); n >= 0; n-- {
			b.WriteString("/" + set[rng.Intn(len(set))] + set[rng.Intn(len(set))])
		}
		paths = append(paths, b.String())
	}
	refused, accepted := 0, 0
	for _, p := range paths {
		if len(p) > routing.MaxPathLength {
			continue // Envoy's header limits apply (docs/envoy.md)
		}
		_, err := routing.CanonicalPath(p)
		switch {
		case err == nil:
			accepted++
			if refusedByRoutes(envoyNormalized(p)) {
				t.Errorf("%q is canonical but the generated routes refuse it", p)
			}
		case envoyHandles(p):
		default:
			refused++
			if !refusedByRoutes(envoyNormalized(p)) {
				t.Errorf("%q is refused by the authorizer (%v) but would reach an API route in Envoy", p, err)
			}
		}
	}
	if refused < 500 || accepted < 500 {
		t.Fatalf("one-sided corpus: %d refused, %d accepted", refused, accepted)
	}
}

// TestRoutesSkippingExtAuthzAreExactlyThePublicAPIs derives, from the xDS
// resources of generated configurations, which routes skip ext_authz, and
// requires exactly the APIs the authorizer's fast path allows as public —
// whatever the combination of public and policy_id.
func TestRoutesSkippingExtAuthzAreExactlyThePublicAPIs(t *testing.T) {
	ctx := context.Background()
	rng := rand.New(rand.NewSource(11))
	skipped := 0
	for n := 0; n < 40; n++ {
		cfg := &policies.Config{
			Tenant: policies.Object[model.TenantSpec]{ID: "acme", Spec: model.TenantSpec{Name: "Acme"}},
			Policies: []policies.Object[model.PolicySpec]{{ID: "deny", Name: "deny", Spec: model.PolicySpec{
				Language: model.LanguageValidators, Validators: []model.ValidatorConfig{{Name: "false"}}}}},
			Gateways: []policies.Object[model.GatewaySpec]{{ID: "edge", Name: "edge", Spec: model.GatewaySpec{Type: model.GatewayEnvoy, PolicyTimeoutMS: model.MaxPolicyTimeoutMS}}},
			Services: []policies.Object[model.ServiceSpec]{{ID: "s", Name: "s", Spec: model.ServiceSpec{URL: "http://s.internal"}}},
		}
		for i := 0; i < 8; i++ {
			api := model.APISpec{ServiceID: "s", Method: []string{"GET", "POST", "*"}[rng.Intn(3)], Path: fmt.Sprintf("/r%d/{x}", i)}
			api.Public = rng.Intn(2) == 0
			if rng.Intn(2) == 0 {
				api.PolicyID = []string{"deny", "missing"}[rng.Intn(2)]
			}
			cfg.APIs = append(cfg.APIs, policies.Object[model.APISpec]{ID: fmt.Sprintf("a%d", i), Spec: api})
		}
		c, err := policies.Compile(cfg, "edge")
		if err != nil {
			t.Fatal(err)
		}
		res, err := Translate(c, TranslateOptions{AuthorizerAddress: "authz:9191"})
		if err != nil {
			t.Fatal(err)
		}
		src, err := gateway.SourceFromCompiled(c, "1")
		if err != nil {
			t.Fatal(err)
		}
		eng, err := gateway.NewEngine(ctx, src, nil)
		if err != nil {
			t.Fatal(err)
		}
		rc := resourcesOf[*routev3.RouteConfiguration](t, res, resource.RouteType)[0]
		for _, r := range rc.GetVirtualHosts()[0].GetRoutes() {
			api, isAPI := c.APIs[r.GetName()]
			if !isAPI {
				continue
			}
			skips := perRoute(t, r).GetDisabled()
			method := api.Spec.Method
			if method == "*" {
				method = "DELETE"
			}
			d, err := eng.Decide(ctx, gateway.RequestFromCheck(&authv3.CheckRequest{Attributes: &authv3.AttributeContext{
				ContextExtensions: map[string]string{ExtTenant: "acme", ExtAPI: api.ID},
				Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
					Method: method, Host: "s.internal", Path: strings.Replace(api.Spec.Path, "{x}", "v", 1)}}}}))
			if err != nil {
				t.Fatal(err)
			}
			public := d.Allowed && d.PolicyID == "" && d.Reason == "public API"
			if skips != public {
				t.Fatalf("API %s (public %v, policy %q): Envoy skips ext_authz %v, the fast path treats it as public %v (%s)",
					api.ID, api.Spec.Public, api.Spec.PolicyID, skips, public, d.Reason)
			}
			if skips {
				skipped++
			}
		}
	}
	if skipped < 20 {
		t.Fatalf("only %d public routes generated", skipped)
	}
}

// TestOwnedHeadersRemovedAheadOfExtAuthz: the header_mutation filter that
// runs before ext_authz removes every owned header name of the bundle and
// the x-gatehouse- prefix.
func TestOwnedHeadersRemovedAheadOfExtAuthz(t *testing.T) {
	f := newFixture(t)
	seedShop(f, "acme")
	f.gateway("acme", "edge", model.GatewaySpec{Type: model.GatewayEnvoy})
	c := f.compile("acme", "edge")
	c.OwnedHeaders = append(c.OwnedHeaders, "x-user")
	res, err := Translate(c, TranslateOptions{AuthorizerAddress: "authz:9191"})
	if err != nil {
		t.Fatal(err)
	}
	hcm, _ := listenerHCM(t, resourcesOf[*listenerv3.Listener](t, res, resource.ListenerType)[0])
	hm := &headermutationv3.HeaderMutation{}
	if err := hcm.GetHttpFilters()[0].GetTypedConfig().UnmarshalTo(hm); err != nil {
		t.Fatal(err)
	}
	removed, prefix := map[string]bool{}, ""
	for _, m := range hm.GetMutations().GetRequestMutations() {
		if r := m.GetRemove(); r != "" {
			removed[r] = true
		}
		if p := m.GetRemoveOnMatch().GetKeyMatcher().GetPrefix(); p != "" {
			prefix = p
		}
	}
	for _, h := range append([]string{"x-user"}, policies.StrippedRequestHeaders...) {
		if !removed[h] {
			t.Errorf("%s is not removed before ext_authz: %v", h, removed)
		}
	}
	if prefix != policies.OwnedHeaderPrefix {
		t.Errorf("prefix %q is not removed", policies.OwnedHeaderPrefix)
	}
}

// TestRoutePriorityAgreesWithGatehouse generates overlapping templates
// across several services on one host and requires Envoy's first match over
// the generated routes (path specifier and :method header) to pick the API
// that Gatehouse's routing table picks, for every generated request.
func TestRoutePriorityAgreesWithGatehouse(t *testing.T) {
	rng := rand.New(rand.NewSource(5))
	words := []string{"pets", "a", "b", "mine", "x.y"}
	segment := func() string {
		switch rng.Intn(6) {
		case 0:
			return "{p}"
		case 1:
			return []string{"{p}.json", "v{p}", "{p}.y", "x.{p}"}[rng.Intn(4)]
		default:
			return words[rng.Intn(len(words))]
		}
	}
	compared, matched, heads, patterns := 0, 0, 0, 0
	for n := 0; n < 30; n++ {
		cfg := &policies.Config{
			Tenant:   policies.Object[model.TenantSpec]{ID: "acme", Spec: model.TenantSpec{Name: "Acme"}},
			Gateways: []policies.Object[model.GatewaySpec]{{ID: "edge", Name: "edge", Spec: model.GatewaySpec{Type: model.GatewayEnvoy, PolicyTimeoutMS: model.MaxPolicyTimeoutMS}}},
		}
		seen := map[string]bool{}
		for s := 0; s < 3; s++ {
			sid := fmt.Sprintf("s%d", s)
			cfg.Services = append(cfg.Services, policies.Object[model.ServiceSpec]{ID: sid, Name: sid, Spec: model.ServiceSpec{URL: "http://" + sid}})
			for i := 0; i < 6; i++ {
				var b strings.Builder
				for k := rng.Intn(3); k >= 0; k-- {
					b.WriteString("/" + segment())
				}
				if rng.Intn(4) == 0 {
					b.WriteString("/{rest...}")
				}
				path := strings.Replace(b.String(), "{p}", fmt.Sprintf("{p%d}", i), 1)
				path = strings.ReplaceAll(path, "{p}", "{q}")
				if strings.Count(path, "{q}") > 1 {
					continue
				}
				method := []string{"GET", "POST", "HEAD", "*"}[rng.Intn(4)]
				tpl, err := routing.ParseTemplate(path)
				if err != nil || seen[sid+method+tpl.Shape()] {
					continue
				}
				seen[sid+method+tpl.Shape()] = true
				cfg.APIs = append(cfg.APIs, policies.Object[model.APISpec]{ID: fmt.Sprintf("%s-%d", sid, i),
					Spec: model.APISpec{ServiceID: sid, Method: method, Path: path, Public: true}})
			}
		}
		c, err := policies.Compile(cfg, "edge")
		if err != nil {
			t.Fatal(err)
		}
		res, err := Translate(c, TranslateOptions{AuthorizerAddress: "authz:9191"})
		if err != nil {
			t.Fatal(err)
		}
		routes := resourcesOf[*routev3.RouteConfiguration](t, res, resource.RouteType)[0].GetVirtualHosts()[0].GetRoutes()
		for r := 0; r < 200; r++ {
			var b strings.Builder
			for k := rng.Intn(4); k >= 0; k-- {
				b.WriteString("/" + []string{"pets", "a", "b", "mine", "x.y", "7", "", "a.json", "v1", "x.json", "%C3%A9.json"}[rng.Intn(11)])
			}
			path, err := routing.CanonicalPath(b.String())
			if err != nil {
				continue
			}
			method := []string{"GET", "POST", "PUT", "HEAD"}[rng.Intn(4)]
			want := ""
			if rt, _, ok := c.Routes.Match(method, "any.host", path); ok {
				want = rt.APIID
				matched++
				if method == "HEAD" {
					heads++
				}
				if strings.Contains(rt.Template.Shape(), "{}.") || strings.Contains(rt.Template.Shape(), "v{}") || strings.Contains(rt.Template.Shape(), ".{}") {
					patterns++
				}
			}
			got := ""
			for _, er := range routes {
				if !envoyRouteMatches(t, er.GetMatch(), method, path, nil) {
					continue
				}
				if _, isAPI := c.APIs[er.GetName()]; isAPI {
					got = er.GetName()
				}
				break
			}
			if got != want {
				t.Fatalf("%s %s: Envoy's first match %q, Gatehouse %q", method, path, got, want)
			}
			compared++
		}
	}
	if matched < 500 || heads < 100 || patterns < 100 {
		t.Fatalf("only %d of %d requests matched an API (%d HEAD requests, %d by a pattern segment)", matched, compared, heads, patterns)
	}
}
