package envoy

import (
	"fmt"
	"regexp"
	"regexp/syntax"
	"strconv"
	"strings"
	"testing"
	"unicode"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/proto"

	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/routing"
)

// envoyPathMatches is how Envoy applies a route's path specifier to a
// request path (query already removed): exact, prefix, path-separated
// prefix, or an RE2 full match.
func envoyPathMatches(t *testing.T, m *routev3.RouteMatch, path string) bool {
	switch p := m.GetPathSpecifier().(type) {
	case *routev3.RouteMatch_Path:
		return path == p.Path
	case *routev3.RouteMatch_Prefix:
		return strings.HasPrefix(path, p.Prefix)
	case *routev3.RouteMatch_PathSeparatedPrefix:
		return path == p.PathSeparatedPrefix || strings.HasPrefix(path, p.PathSeparatedPrefix+"/")
	case *routev3.RouteMatch_SafeRegex:
		return regexp.MustCompile(`^(?:` + p.SafeRegex.GetRegex() + `)$`).MatchString(path)
	}
	t.Fatalf("unexpected path specifier %T", m.GetPathSpecifier())
	return false
}

// envoyNormalized approximates what Envoy's normalize_path and
// merge_slashes leave of a path Gatehouse accepts: unreserved escapes
// decoded, other escapes in the case they were sent, slashes merged.
func envoyNormalized(p string) string {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		switch {
		case p[i] == '/' && strings.HasSuffix(b.String(), "/"):
		case p[i] == '%' && i+2 < len(p):
			if v, err := strconv.ParseUint(p[i+1:i+3], 16, 8); err == nil &&
				(v >= 'a' && v <= 'z' || v >= 'A' && v <= 'Z' || v >= '0' && v <= '9' || v == '-' || v == '_' || v == '~') {
				b.WriteByte(byte(v))
				i += 2
				continue
			}
			b.WriteByte('%')
		default:
			b.WriteByte(p[i])
		}
	}
	return b.String()
}

func upperEscapes(p string) string {
	b := []byte(p)
	for i := 0; i+2 < len(b); i++ {
		if b[i] == '%' {
			b[i+1], b[i+2] = byte(unicode.ToUpper(rune(b[i+1]))), byte(unicode.ToUpper(rune(b[i+2])))
		}
	}
	return string(b)
}

// grpcPathMatches is grpc-go's rule: a regex is applied with MatchString
// (not anchored by grpc-go), exact paths and prefixes as Envoy does.
func grpcPathMatches(t *testing.T, m *routev3.RouteMatch, path string) bool {
	if p, ok := m.GetPathSpecifier().(*routev3.RouteMatch_SafeRegex); ok {
		return regexp.MustCompile(p.SafeRegex.GetRegex()).MatchString(path)
	}
	if _, ok := m.GetPathSpecifier().(*routev3.RouteMatch_PathSeparatedPrefix); ok {
		t.Fatal("grpc-go does not support path_separated_prefix")
	}
	return envoyPathMatches(t, m, path)
}

func TestPathMatchEqualsTemplateMatch(t *testing.T) {
	templates := []string{
		"/", "/a/", "/pets", "/pets/{id}", "/pets/{id}/", "/pets/{id}/toys/{toy}",
		"/files/{p...}", "/{all...}", "/a/{x}/{rest...}", "/v1.0/a+b/(x)", "/a.b/{id}", "/$x'/(y)/{id}",
		"/a:b/{z...}", "/%20/{id}", "/caf%C3%A9/{id}", "/x%3A/y", "/pets/mine", "/a*b/{p...}", "/{x}",
		"/files/{name}.json", "/api/v{version}/pets", "/img-{id}.png", "/{x}C3", "/{x}%C3%A9", "/%C3{x}", "/a+{x}(y)/{rest...}",
	}
	paths := []string{
		"", "/", "//", "/a", "/a/", "/a//", "/pets", "/pets/", "/pets/1", "/pets/1/", "/pets//", "/pets/1/toys/2",
		"/pets/1/toys/", "/pets/mine", "/pets/mine/x", "/petsx", "/files", "/files/", "/files/a", "/files/a/b",
		"/files//x", "/filesx", "/filesx/a", "/a/x", "/a/x/", "/a/x/y/z", "/a//y", "/v1.0/a+b/(x)", "/v1x0/a+b/(x)",
		"/v1.0/aab/(x)", "/v1.0/a+b/x", "/a.b/1", "/aXb/1", "/$x'/(y)/1", "/$x'/y/1", "/x/y/1", "/a:b", "/a:b/c/d", "/caf%C3%A9/1", "/caf%c3%a9/1", "/x%3A/y", "/x%3a/y", "/x:/y", "/aab/c", "/a",
		"/b", "/%2F/1", "/%20/1", "//1", "/q?x", "/q", "/a*b", "/a*b/1/2", "/aab/1", "/x\ny", "/files/a\nb",
		"/files/a.json", "/files/.json", "/files/a.b.json", "/files/a.jsonx", "/files/a.json/", "/api/v2/pets", "/api/v/pets",
		"/api/x2/pets", "/img-7.png", "/img-.png", "/a%C3", "/ab%C3C3", "/ab%c3C3", "/caf%C3%A9", "/caf%c3%a9", "/%C3%A9",
		"/%c3%A9", "/a+1(y)", "/a+1(y)/b/c", "/aa1(y)",
	}
	positives := 0
	for _, raw := range templates {
		tpl, err := routing.ParseTemplate(raw)
		if err != nil {
			t.Fatalf("%s: %v", raw, err)
		}
		for _, grpc := range []bool{false, true} {
			m := &routev3.RouteMatch{}
			pathMatch(m, tpl, grpc)
			if err := m.ValidateAll(); err != nil {
				t.Fatalf("%s (grpc=%v): invalid match: %v", raw, grpc, err)
			}
			for _, p := range paths {
				_, want := tpl.Match(routing.SplitPath(p))
				if p == "" {
					want = false // Envoy never sees an empty path
				}
				var got bool
				if grpc {
					// Escapes match in either case, as in Envoy.
					_, want = tpl.Match(routing.SplitPath(upperEscapes(p)))
					want = want && p != ""
					got = grpcPathMatches(t, m, p)
				} else {
					// Envoy routes the path after its own normalisation;
					// the authorizer matches the canonical path. Paths
					// the canonicalisation refuses never reach an API
					// route (TestNonCanonicalRoutes).
					canon, err := routing.CanonicalPath(p)
					if err != nil {
						continue
					}
					_, want = tpl.Match(routing.SplitPath(canon))
					got = envoyPathMatches(t, m, envoyNormalized(p))
				}
				if p == "" {
					got = false
				}
				if got != want {
					t.Errorf("template %q (grpc=%v, %v) on %q: Envoy %v, Gatehouse %v", raw, grpc, m.GetPathSpecifier(), p, got, want)
				}
				if want {
					positives++
				}
			}
		}
	}
	if positives < 50 {
		t.Fatalf("only %d matching pairs: the table tests little", positives)
	}
}

func TestPathMatchKinds(t *testing.T) {
	for raw, want := range map[string]string{
		"/pets/mine":    "path",
		"/":             "path",
		"/files/{p...}": "path_separated_prefix",
		"/{p...}":       "prefix",
		"/pets/{id}":    "safe_regex",
	} {
		tpl, _ := routing.ParseTemplate(raw)
		m := &routev3.RouteMatch{}
		pathMatch(m, tpl, false)
		got := ""
		switch m.GetPathSpecifier().(type) {
		case *routev3.RouteMatch_Path:
			got = "path"
		case *routev3.RouteMatch_Prefix:
			got = "prefix"
		case *routev3.RouteMatch_PathSeparatedPrefix:
			got = "path_separated_prefix"
		case *routev3.RouteMatch_SafeRegex:
			got = "safe_regex"
		}
		if got != want {
			t.Errorf("%s: %s, want %s", raw, got, want)
		}
	}
}

// The longest template there can be stays well within the RE2 program size
// the bootstrap allows (Go's program size is close to RE2's: one
// instruction per literal byte).
func TestRegexProgramSizeWithinBootstrapLimit(t *testing.T) {
	var b strings.Builder
	for i := 0; i < routing.MaxSegments/2; i++ {
		fmt.Fprintf(&b, "/{p%02d}/%s", i, strings.Repeat(".x", 27))
	}
	raw := b.String()
	if len(raw) > routing.MaxTemplateLength {
		raw = raw[:strings.LastIndex(raw[:routing.MaxTemplateLength], "/")]
	}
	tpl, err := routing.ParseTemplate(raw)
	if err != nil {
		t.Fatal(err)
	}
	re, err := syntax.Parse(templateRegex(tpl), syntax.Perl)
	if err != nil {
		t.Fatal(err)
	}
	prog, err := syntax.Compile(re.Simplify())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("template of %d characters: Go program size %d", len(raw), len(prog.Inst))
	if n := len(prog.Inst); n > RegexProgramSizeLimit/4 {
		t.Fatalf("program size %d for a %d-character template; the bootstrap allows %d", n, len(raw), RegexProgramSizeLimit)
	}
}

// seedShop is a tenant with several services and APIs.
func seedShop(f *fixture, tid string) {
	f.tenant(tid)
	f.service(tid, "pets", "http://pets.internal:8080", "api.pets.example", "*.pets.example")
	f.service(tid, "store", "https://store.example.com/base/v1/")
	f.service(tid, "admin", "http://10.0.0.7", "admin.example")
	f.service(tid, "files", "http://[::1]:9000", "admin.example")
	f.apis(tid,
		api{id: "list-pets", service: "pets", method: "GET", path: "/pets"},
		api{id: "get-pet", service: "pets", method: "GET", path: "/pets/{id}"},
		api{id: "mine", service: "pets", method: "GET", path: "/pets/mine"},
		api{id: "any-pet", service: "pets", method: "*", path: "/pets/{id}"},
		api{id: "health", service: "pets", method: "GET", path: "/healthz", public: true},
		api{id: "order", service: "store", method: "POST", path: "/orders/{id}/items/{item}"},
		api{id: "catalog", service: "store", method: "GET", path: "/catalog/{path...}"},
		api{id: "admin-users", service: "admin", method: "DELETE", path: "/users/{id}"},
		api{id: "file-get", service: "files", method: "GET", path: "/files/{p...}"},
	)
}

func byName[T interface{ GetName() string }](items []T) map[string]T {
	out := map[string]T{}
	for _, it := range items {
		out[it.GetName()] = it
	}
	return out
}

func resourcesOf[T proto.Message](t *testing.T, res Resources, typ resource.Type) []T {
	t.Helper()
	var out []T
	for _, r := range res[typ] {
		v, ok := r.(T)
		if !ok {
			t.Fatalf("%s resource is a %T", typ, r)
		}
		out = append(out, v)
	}
	return out
}

func TestTranslateEnvoy(t *testing.T) {
	f := newFixture(t)
	seedShop(f, "acme")
	f.gateway("acme", "edge", model.GatewaySpec{Type: model.GatewayEnvoy, ListenerAddress: "127.0.0.1", ListenerPort: 10001,
		RequestBody: &model.RequestBodySettings{MaxRequestBytes: 4096, AllowPartialMessage: true}})
	c := f.compile("acme", "edge")
	res, err := Translate(c, TranslateOptions{AuthorizerAddress: "authz.internal:9191"})
	if err != nil {
		t.Fatal(err)
	}
	if err := ValidateDeep(res); err != nil {
		t.Fatalf("ValidateDeep: %v", err)
	}
	if _, err := newSnapshot("1", res); err != nil {
		t.Fatal(err)
	}
	rcs := resourcesOf[*routev3.RouteConfiguration](t, res, resource.RouteType)
	if len(rcs) != 1 {
		t.Fatalf("%d route configurations, want 1", len(rcs))
	}

	t.Run("the listener has the address, a normalising HCM, header_mutation, ext_authz and the router", func(t *testing.T) {
		lis := resourcesOf[*listenerv3.Listener](t, res, resource.ListenerType)
		if len(lis) != 1 || lis[0].GetName() != ListenerName("edge") {
			t.Fatalf("listeners %v", lis)
		}
		sa := lis[0].GetAddress().GetSocketAddress()
		if sa.GetAddress() != "127.0.0.1" || sa.GetPortValue() != 10001 {
			t.Fatalf("listener address %v", sa)
		}
		hcm, authz := listenerHCM(t, lis[0])
		if hcm.GetRds().GetRouteConfigName() != RouteConfigName("edge") || hcm.GetRds().GetConfigSource().GetAds() == nil {
			t.Fatalf("RDS %v", hcm.GetRds())
		}
		if !hcm.GetStripAnyHostPort() || !hcm.GetNormalizePath().GetValue() || !hcm.GetMergeSlashes() ||
			hcm.GetPathWithEscapedSlashesAction() != hcmv3.HttpConnectionManager_REJECT_REQUEST {
			t.Fatal("the HCM must strip host ports, normalise paths, merge slashes and refuse escaped slashes")
		}
		if hcm.GetCommonHttpProtocolOptions().GetHeadersWithUnderscoresAction() != corev3.HttpProtocolOptions_REJECT_REQUEST {
			t.Fatal("the HCM must refuse header names with '_' (the authorizer refuses them)")
		}
		if n := len(hcm.GetHttpFilters()); n != 3 || hcm.GetHttpFilters()[0].GetName() != HeaderMutationFilterName ||
			hcm.GetHttpFilters()[1].GetName() != wellknown.HTTPExternalAuthorization || hcm.GetHttpFilters()[2].GetName() != wellknown.Router {
			t.Fatalf("filters %v: want header_mutation, ext_authz, router", hcm.GetHttpFilters())
		}
		if authz.GetGrpcService().GetEnvoyGrpc().GetClusterName() != AuthorizerClusterName || authz.GetTransportApiVersion().String() != "V3" ||
			authz.GetFailureModeAllow() || authz.GetIncludePeerCertificate() {
			t.Fatalf("ext_authz %v", authz)
		}
		if b := authz.GetWithRequestBody(); b.GetMaxRequestBytes() != 4096 || !b.GetAllowPartialMessage() {
			t.Fatalf("with_request_body %v", b)
		}
	})
	t.Run("the routes follow the routing table: non-canonical refusals, one route per API, a 404 last", func(t *testing.T) {
		if len(rcs) != 1 || len(rcs[0].GetVirtualHosts()) != len(c.Routes.VHosts) {
			t.Fatalf("route configurations %d, vhosts %d", len(rcs), len(rcs[0].GetVirtualHosts()))
		}
		for i, vh := range c.Routes.VHosts {
			ev := rcs[0].GetVirtualHosts()[i]
			if ev.GetName() != vh.Name || strings.Join(ev.GetDomains(), ",") != strings.Join(vh.Domains, ",") {
				t.Fatalf("vhost %d: %s %v, want %s %v", i, ev.GetName(), ev.GetDomains(), vh.Name, vh.Domains)
			}
			nc := len(nonCanonicalPaths)
			if len(ev.GetRoutes()) != nc+len(vh.Routes)+1 {
				t.Fatalf("vhost %s: %d routes for %d APIs", vh.Name, len(ev.GetRoutes()), len(vh.Routes))
			}
			for j := range nc {
				if er := ev.GetRoutes()[j]; er.GetDirectResponse().GetStatus() != 400 || !perRoute(t, er).GetDisabled() {
					t.Fatalf("vhost %s: route %d should refuse non-canonical paths: %v", vh.Name, j, er)
				}
			}
			for j, r := range vh.Routes {
				er := ev.GetRoutes()[nc+j]
				if er.GetName() != r.APIID {
					t.Fatalf("vhost %s route %d is %s, want %s", vh.Name, j, er.GetName(), r.APIID)
				}
				if got := er.GetRoute().GetCluster(); got != ServiceClusterName(r.ServiceID) {
					t.Fatalf("route %s to %s", r.APIID, got)
				}
				per := perRoute(t, er)
				if c.APIs[r.APIID].Spec.Public {
					if !per.GetDisabled() {
						t.Fatalf("public API %s must have ext_authz disabled", r.APIID)
					}
					continue
				}
				want := map[string]string{"tenant": "acme", "gateway": c.GatewayID, "service": r.ServiceID, "api": r.APIID}
				if got := per.GetCheckSettings().GetContextExtensions(); !mapsEqual(got, want) {
					t.Fatalf("route %s context extensions %v", r.APIID, got)
				}
				hm := er.GetMatch().GetHeaders()
				if r.Method == "*" && len(hm) != 0 || r.Method != "*" && (len(hm) != 1 || hm[0].GetName() != ":method" ||
					!envoyHeadersMatch(t, hm, map[string]string{":method": r.Method}) ||
					envoyHeadersMatch(t, hm, map[string]string{":method": "HEAD"}) != (r.Method == "GET" || r.Method == "HEAD") ||
					envoyHeadersMatch(t, hm, map[string]string{":method": "POSTX"})) {
					t.Fatalf("route %s method match %v", r.APIID, hm)
				}
			}
			last := ev.GetRoutes()[len(ev.GetRoutes())-1]
			if last.GetDirectResponse().GetStatus() != 404 || last.GetMatch().GetPrefix() != "/" || !perRoute(t, last).GetDisabled() {
				t.Fatalf("vhost %s: last route %v", vh.Name, last)
			}
		}
	})
	t.Run("routes rewrite the host and the path prefix of their service", func(t *testing.T) {
		routes := map[string]*routev3.Route{}
		for _, vh := range rcs[0].GetVirtualHosts() {
			for _, r := range vh.GetRoutes() {
				routes[r.GetName()] = r
			}
		}
		if a := routes["order"].GetRoute(); a.GetHostRewriteLiteral() != "store.example.com" ||
			a.GetRegexRewrite().GetPattern().GetRegex() != "^/" || a.GetRegexRewrite().GetSubstitution() != "/base/v1/" {
			t.Fatalf("store route action %v", a)
		}
		if a := routes["get-pet"].GetRoute(); a.GetHostRewriteLiteral() != "pets.internal:8080" || a.GetRegexRewrite() != nil {
			t.Fatalf("pets route action %v", a)
		}
	})
	t.Run("a more specific route comes first", func(t *testing.T) {
		order := rcs[0].GetVirtualHosts()
		for _, vh := range order {
			idx := map[string]int{}
			for i, r := range vh.GetRoutes() {
				idx[r.GetName()] = i
			}
			if m, ok := idx["mine"]; ok && m > idx["get-pet"] {
				t.Fatal("/pets/mine must precede /pets/{id}")
			}
		}
	})
	t.Run("clusters resolve services by DNS or statically, speak TLS with SNI to https and HTTP2 to the authorizer", func(t *testing.T) {
		clusters := byName(resourcesOf[*clusterv3.Cluster](t, res, resource.ClusterType))
		if len(clusters) != 5 {
			t.Fatalf("%d clusters", len(clusters))
		}
		pets := clusters[ServiceClusterName("pets")]
		if pets.GetType() != clusterv3.Cluster_STRICT_DNS || endpointAddr(pets.GetLoadAssignment()) != "pets.internal:8080" || pets.GetTransportSocket() != nil {
			t.Fatalf("pets cluster %v", pets)
		}
		if a := clusters[ServiceClusterName("admin")]; a.GetType() != clusterv3.Cluster_STATIC || endpointAddr(a.GetLoadAssignment()) != "10.0.0.7:80" {
			t.Fatalf("admin cluster %v", a)
		}
		if a := clusters[ServiceClusterName("files")]; a.GetType() != clusterv3.Cluster_STATIC || endpointAddr(a.GetLoadAssignment()) != "::1:9000" {
			t.Fatalf("files cluster %v", a)
		}
		st := clusters[ServiceClusterName("store")]
		if endpointAddr(st.GetLoadAssignment()) != "store.example.com:443" {
			t.Fatalf("store endpoint %s", endpointAddr(st.GetLoadAssignment()))
		}
		tlsCtx := &tlsv3.UpstreamTlsContext{}
		if err := st.GetTransportSocket().GetTypedConfig().UnmarshalTo(tlsCtx); err != nil {
			t.Fatalf("store TLS: %v", err)
		}
		vc := tlsCtx.GetCommonTlsContext().GetValidationContext()
		if tlsCtx.GetSni() != "store.example.com" || vc.GetTrustedCa().GetFilename() != DefaultUpstreamCAFile ||
			vc.GetMatchTypedSubjectAltNames()[0].GetMatcher().GetExact() != "store.example.com" {
			t.Fatalf("store TLS %v", tlsCtx)
		}
		az := clusters[AuthorizerClusterName]
		if endpointAddr(az.GetLoadAssignment()) != "authz.internal:9191" {
			t.Fatalf("authorizer endpoint %s", endpointAddr(az.GetLoadAssignment()))
		}
		po := &upstreamhttpv3.HttpProtocolOptions{}
		if err := az.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"].UnmarshalTo(po); err != nil ||
			po.GetExplicitHttpConfig().GetHttp2ProtocolOptions() == nil {
			t.Fatalf("authorizer cluster must speak HTTP/2: %v %v", po, err)
		}
	})
	t.Run("the same input translates to the same bytes", func(t *testing.T) {
		again, _ := Translate(c, TranslateOptions{AuthorizerAddress: "authz.internal:9191"})
		for typ, rs := range res {
			for i, r := range rs {
				a, _ := proto.MarshalOptions{Deterministic: true}.Marshal(r)
				b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(again[typ][i])
				if string(a) != string(b) {
					t.Fatalf("Translate is not deterministic (%s %d)", typ, i)
				}
			}
		}
	})
}

func TestTranslateUnmatchedRoutes(t *testing.T) {
	f := newFixture(t)
	seedShop(f, "acme")
	f.gateway("acme", "open", model.GatewaySpec{Type: model.GatewayEnvoy, AllowUnmatchedRoutes: true})
	c := f.compile("acme", "open")
	res, err := Translate(c, TranslateOptions{AuthorizerAddress: "127.0.0.1:9191"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := newSnapshot("1", res); err != nil {
		t.Fatal(err)
	}
	rc := resourcesOf[*routev3.RouteConfiguration](t, res, resource.RouteType)[0]
	for _, vh := range rc.GetVirtualHosts() {
		last := vh.GetRoutes()[len(vh.GetRoutes())-1]
		switch vh.GetName() {
		case "admin.example": // two services: no upstream to choose
			if last.GetDirectResponse().GetStatus() != 404 {
				t.Fatalf("%s: last route %v", vh.GetName(), last)
			}
		default:
			ext := perRoute(t, last).GetCheckSettings().GetContextExtensions()
			if last.GetRoute().GetCluster() == "" || ext["service"] == "" || ext["api"] != "" || ext["tenant"] != "acme" {
				t.Fatalf("%s: unmatched route %v", vh.GetName(), last)
			}
		}
	}
}

func TestTranslateGRPC(t *testing.T) {
	f := newFixture(t)
	f.tenant("acme")
	f.service("acme", "greeter", "http://127.0.0.1:50051", "greeter.internal", "*.greeter.internal")
	f.service("acme", "echo", "http://echo.internal:7000")
	f.apis("acme",
		api{id: "hello", service: "greeter", method: "POST", path: "/helloworld.Greeter/SayHello"},
		api{id: "greeter-any", service: "greeter", method: "*", path: "/helloworld.Greeter/{method}"},
		api{id: "rest-only", service: "greeter", method: "GET", path: "/status"},
		api{id: "echo-all", service: "echo", method: "POST", path: "/echo.Echo/{m...}"},
	)
	f.gateway("acme", "mesh", model.GatewaySpec{Type: model.GatewayGRPC})
	res, err := Translate(f.compile("acme", "mesh"), TranslateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := newSnapshot("1", res); err != nil {
		t.Fatal(err)
	}
	lis := byName(resourcesOf[*listenerv3.Listener](t, res, resource.ListenerType))
	if len(lis) != 2 || lis["greeter.internal"] == nil || lis["echo"] == nil {
		t.Fatalf("listeners %v", lis)
	}
	hcm := &hcmv3.HttpConnectionManager{}
	if err := lis["greeter.internal"].GetApiListener().GetApiListener().UnmarshalTo(hcm); err != nil {
		t.Fatal(err)
	}
	routes := hcm.GetRouteConfig().GetVirtualHosts()[0].GetRoutes()
	var names []string
	for _, r := range routes {
		names = append(names, r.GetName())
		if len(r.GetMatch().GetHeaders()) != 0 || len(r.GetTypedPerFilterConfig()) != 0 {
			t.Fatalf("gRPC route %s must match on the path only, without per-filter configs", r.GetName())
		}
		if _, ok := r.GetMatch().GetPathSpecifier().(*routev3.RouteMatch_PathSeparatedPrefix); ok {
			t.Fatalf("gRPC route %s uses path_separated_prefix", r.GetName())
		}
	}
	if strings.Join(names, ",") != "hello,greeter-any" {
		t.Fatalf("greeter routes %v", names)
	}
	clusters := byName(resourcesOf[*clusterv3.Cluster](t, res, resource.ClusterType))
	if c := clusters[ServiceClusterName("greeter")]; c.GetType() != clusterv3.Cluster_EDS || c.GetEdsClusterConfig().GetEdsConfig().GetAds() == nil {
		t.Fatalf("greeter cluster %v", c)
	}
	for _, cla := range resourcesOf[*endpointv3.ClusterLoadAssignment](t, res, resource.EndpointType) {
		if len(cla.GetEndpoints()) != 1 || cla.GetEndpoints()[0].GetLoadBalancingWeight().GetValue() == 0 || cla.GetEndpoints()[0].GetLocality() == nil {
			t.Fatalf("%s: locality weight missing", cla.GetClusterName())
		}
	}
}

func TestValidateDeepLooksInsideAny(t *testing.T) {
	f := newFixture(t)
	seedShop(f, "acme")
	f.gateway("acme", "edge", model.GatewaySpec{Type: model.GatewayEnvoy})
	res, err := Translate(f.compile("acme", "edge"), TranslateOptions{AuthorizerAddress: "authz:9191"})
	if err != nil {
		t.Fatal(err)
	}
	l := res[resource.ListenerType][0].(*listenerv3.Listener)
	hcm, authz := listenerHCM(t, l)
	authz.GetGrpcService().GetEnvoyGrpc().ClusterName = ""
	hcm.HttpFilters[1].ConfigType = &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustPack(authz)}
	l.FilterChains[0].Filters[0].ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: mustPack(hcm)}
	if err := l.ValidateAll(); err != nil {
		t.Fatalf("ValidateAll alone should not see inside Any: %v", err)
	}
	err = ValidateDeep(res)
	if err == nil || !strings.Contains(err.Error(), "ClusterName") {
		t.Fatalf("ValidateDeep: %v", err)
	}

	// A route to a cluster that is not in the snapshot is inconsistent,
	// which Snapshot.Consistent alone does not notice.
	res, _ = Translate(f.compile("acme", "edge"), TranslateOptions{AuthorizerAddress: "authz:9191"})
	var kept []any
	for _, c := range res[resource.ClusterType] {
		if c.(*clusterv3.Cluster).GetName() != ServiceClusterName("pets") {
			kept = append(kept, c)
		}
	}
	res[resource.ClusterType] = res[resource.ClusterType][:0]
	for _, c := range kept {
		res[resource.ClusterType] = append(res[resource.ClusterType], c.(*clusterv3.Cluster))
	}
	if _, err := newSnapshot("1", res); err == nil || !strings.Contains(err.Error(), ServiceClusterName("pets")) {
		t.Fatalf("missing cluster not detected: %v", err)
	}
}

func TestNodeID(t *testing.T) {
	id := NodeID("acme", "edge-1")
	if id != "acme/edge-1" {
		t.Fatal(id)
	}
	if tid, gw, err := ParseNodeID(id); err != nil || tid != "acme" || gw != "edge-1" {
		t.Fatal(tid, gw, err)
	}
	for _, bad := range []string{"", "acme", "/gw", "acme/", "a/b/c"} {
		if _, _, err := ParseNodeID(bad); err == nil {
			t.Errorf("ParseNodeID(%q) accepted", bad)
		}
	}
}

func listenerHCM(t testing.TB, l *listenerv3.Listener) (*hcmv3.HttpConnectionManager, *extauthzv3.ExtAuthz) {
	t.Helper()
	hcm := &hcmv3.HttpConnectionManager{}
	if err := l.GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(hcm); err != nil {
		t.Fatal(err)
	}
	authz := &extauthzv3.ExtAuthz{}
	if err := hcm.GetHttpFilters()[1].GetTypedConfig().UnmarshalTo(authz); err != nil {
		t.Fatal(err)
	}
	return hcm, authz
}

func perRoute(t *testing.T, r *routev3.Route) *extauthzv3.ExtAuthzPerRoute {
	t.Helper()
	per := &extauthzv3.ExtAuthzPerRoute{}
	if err := r.GetTypedPerFilterConfig()[wellknown.HTTPExternalAuthorization].UnmarshalTo(per); err != nil {
		t.Fatalf("route %s: ext_authz per-route config: %v", r.GetName(), err)
	}
	return per
}

func endpointAddr(cla *endpointv3.ClusterLoadAssignment) string {
	sa := cla.GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
	return sa.GetAddress() + ":" + itoa(sa.GetPortValue())
}

func itoa(n uint32) string { return strconv.Itoa(int(n)) }

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
