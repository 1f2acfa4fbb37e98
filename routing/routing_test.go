package routing

import (
	"errors"
	"fmt"
	"math/rand"
	"regexp"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/routing/pathcorpus"
)

func TestParseTemplate(t *testing.T) {
	good := map[string]string{
		"/":                     "/",
		"/pets":                 "/pets",
		"/pets/":                "/pets/",
		"/pets/{id}":            "/pets/{}",
		"/pets/{id}/toys/{toy}": "/pets/{}/toys/{}",
		"/files/{path...}":      "/files/{...}",
		"/{all...}":             "/{...}",
		"/v1/a:b@c,d=f~g.h_i-j": "/v1/a:b@c,d=f~g.h_i-j",
		"/%61dmin/%7euser":      "/admin/~user",
		"/caf%c3%a9s":           "/caf%C3%A9s",
		"/caf%C3%A9":            "/caf%C3%A9",
		"/files/{name}.json":    "/files/{}.json",
		"/api/v{version}/pets":  "/api/v{}/pets",
		"/img-{id}.png":         "/img-{}.png",
		"/a.{x}":                "/a.{}",
		"/%7e{u}%c3%a9":         "/~{}%C3%A9",
	}
	for raw, shape := range good {
		tpl, err := ParseTemplate(raw)
		if err != nil {
			t.Errorf("ParseTemplate(%q): %v", raw, err)
			continue
		}
		if got := tpl.Shape(); got != shape {
			t.Errorf("Shape(%q) = %q, want %q", raw, got, shape)
		}
	}
	bad := []string{
		"", "pets", "/pets//x", "/pets/{id", "/pets/id}", "/pets/{}", "/pets/{1id}", "/pets/{id}.{ext}", "/pets/{id}-{x}.json",
		"/pets/{p...}.json", "/x{p...}", "/{id}.", "/{id}..", "/{id}%2F", "/{id}.json/{id}", "/a{}b", "/a{1x}", "/a b{x}",
		"/pets/{id}/{id}", "/files/{p...}/x", "/pets/{a-b}", "/sp ace", "/q?x=1", "/frag#x", "/%zz",
		"/" + strings.Repeat("a/", MaxSegments+1), "/" + strings.Repeat("a", MaxTemplateLength),
		"/a/../b", "/./a", "/a%2Fb", "/%2e%2e", "/a;b", "/a%3Bb", "/a./b", "/a/b.", "/a%00",
	}
	for _, raw := range bad {
		if _, err := ParseTemplate(raw); err == nil {
			t.Errorf("ParseTemplate(%q) accepted an invalid template", raw)
		}
	}
}

func TestTemplateMatch(t *testing.T) {
	cases := []struct {
		tpl, path string
		want      string // "" = no match, else params
	}{
		{"/pets", "/pets", "map[]"},
		{"/pets", "/pets/", ""},
		{"/pets/", "/pets/", "map[]"},
		{"/pets/{id}", "/pets/7", "map[id:7]"},
		{"/pets/{id}", "/pets/", ""},
		{"/pets/{id}", "/pets/7/x", ""},
		{"/files/{p...}", "/files", "map[p:]"},
		{"/files/{p...}", "/files/", "map[p:]"},
		{"/files/{p...}", "/files/a/b/c", "map[p:a/b/c]"},
		{"/files/{p...}", "/filesx", ""},
		{"/", "/", "map[]"},
		{"/", "/x", ""},
		{"/{all...}", "/", "map[all:]"},
		{"/a/{x}/c/{rest...}", "/a/b/c/d/e", "map[rest:d/e x:b]"},
	}
	for _, c := range cases {
		tpl, err := ParseTemplate(c.tpl)
		if err != nil {
			t.Fatal(err)
		}
		params, ok := tpl.Match(SplitPath(c.path))
		got := ""
		if ok {
			if params == nil {
				params = map[string]string{}
			}
			got = fmt.Sprint(params)
		}
		if got != c.want {
			t.Errorf("%s ~ %s: got %q, want %q", c.tpl, c.path, got, c.want)
		}
	}
}

func table(t *testing.T, services ...ServiceRoutes) *Table {
	t.Helper()
	tb, err := Build(services)
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

func TestMostSpecificWins(t *testing.T) {
	tb := table(t,
		ServiceRoutes{ServiceID: "s1", APIs: []APIRoute{
			{"any-pet", "*", "/pets/{id}"},
			{"get-pet", "GET", "/pets/{id}"},
			{"mine", "GET", "/pets/mine"},
			{"files", "GET", "/files/{p...}"},
			{"files-root", "GET", "/files"},
			{"files-a", "GET", "/files/a/{x}"},
			{"deep", "GET", "/a/{x}/{rest...}"},
			{"shallow", "GET", "/a/{x}"},
			{"lit", "GET", "/a/b"},
			{"root-all", "*", "/{all...}"},
		}},
		ServiceRoutes{ServiceID: "s0", APIs: []APIRoute{{"s0-pet", "GET", "/pets/{petId}"}}},
	)
	cases := []struct{ method, path, want, params string }{
		{"GET", "/pets/mine", "mine", "map[]"},
		{"GET", "/pets/7", "s0-pet", "map[petId:7]"}, // tie on shape+method: service id s0 < s1
		{"DELETE", "/pets/7", "any-pet", "map[id:7]"},
		{"GET", "/files", "files-root", "map[]"},
		{"GET", "/files/a/b", "files-a", "map[x:b]"},
		{"GET", "/files/z/b", "files", "map[p:z/b]"},
		{"GET", "/a/b", "lit", "map[]"},
		{"GET", "/a/c", "shallow", "map[x:c]"},
		{"GET", "/a/c/d", "deep", "map[rest:d x:c]"},
		{"POST", "/a/c", "root-all", "map[all:a/c]"},
		{"GET", "/pets/7?x=1#f", "s0-pet", "map[petId:7]"},
	}
	for _, c := range cases {
		r, params, ok := tb.Match(c.method, "example.com", c.path)
		if !ok {
			t.Errorf("%s %s: no match, want %s", c.method, c.path, c.want)
			continue
		}
		if params == nil {
			params = map[string]string{}
		}
		if r.APIID != c.want || fmt.Sprint(params) != c.params {
			t.Errorf("%s %s: got %s %v, want %s %s", c.method, c.path, r.APIID, params, c.want, c.params)
		}
	}
}

func TestVirtualHosts(t *testing.T) {
	tb := table(t,
		ServiceRoutes{ServiceID: "exact", Hosts: []string{"API.example.com"}, APIs: []APIRoute{{"exact-api", "GET", "/x"}}},
		ServiceRoutes{ServiceID: "wild", Hosts: []string{"*.example.com"}, APIs: []APIRoute{{"wild-api", "GET", "/x"}}},
		ServiceRoutes{ServiceID: "deeper", Hosts: []string{"*.eu.example.com"}, APIs: []APIRoute{{"deeper-api", "GET", "/x"}}},
		ServiceRoutes{ServiceID: "any", APIs: []APIRoute{{"any-api", "GET", "/x"}, {"only-any", "GET", "/y"}}},
	)
	cases := []struct{ host, path, want string }{
		{"api.example.com", "/x", "exact-api"},
		{"API.EXAMPLE.COM:8443", "/x", "exact-api"},
		{"web.example.com", "/x", "wild-api"},
		{"a.eu.example.com", "/x", "deeper-api"},
		{"example.com", "/x", "any-api"},
		{"other.org", "/x", "any-api"},
		{"127.0.0.1:8000", "/x", "any-api"},
		{"[::1]:8000", "/x", "any-api"},
		{"api.example.com", "/y", ""}, // a vhost never falls back to another
	}
	for _, c := range cases {
		r, _, ok := tb.Match("GET", c.host, c.path)
		got := ""
		if ok {
			got = r.APIID
		}
		if got != c.want {
			t.Errorf("%s %s: got %q, want %q", c.host, c.path, got, c.want)
		}
	}
	noDefault := table(t, ServiceRoutes{ServiceID: "s", Hosts: []string{"a.example"}, APIs: []APIRoute{{"a", "GET", "/"}}})
	if _, _, ok := noDefault.Match("GET", "b.example", "/"); ok {
		t.Error("a host no service lists must not match when there is no default vhost")
	}
	if r, ok := tb.Route("only-any"); !ok || r.ServiceID != "any" {
		t.Errorf("Route(only-any) = %v %v", r, ok)
	}
}

func TestNormalizeHostAndDomains(t *testing.T) {
	for in, want := range map[string]string{"Example.COM:80": "example.com", "example.com": "example.com",
		"[::1]:8080": "[::1]", "[::1]": "[::1]", "10.0.0.1:9": "10.0.0.1", "host:": "host"} {
		if got := NormalizeHost(in); got != want {
			t.Errorf("NormalizeHost(%q) = %q, want %q", in, got, want)
		}
	}
	for _, d := range []string{"", "*", "a..b", "-a.com", "a.*.com", "exa mple.com", "*", "**.a.com"} {
		if _, err := ValidateDomain(d); err == nil {
			t.Errorf("ValidateDomain(%q) accepted", d)
		}
	}
	for _, d := range []string{"a.com", "*.a.com", "localhost", "10.0.0.1", "[::1]"} {
		if _, err := ValidateDomain(d); err != nil {
			t.Errorf("ValidateDomain(%q): %v", d, err)
		}
	}
}

// TestIndexAgreesWithLinearScan compares the trie with the definition (the
// first route in priority order that matches) on random tables and paths.
func TestIndexAgreesWithLinearScan(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	words := []string{"a", "b", "c", "pets", ""}
	methods := []string{"GET", "POST", "*"}
	randTemplate := func() string {
		n := 1 + rng.Intn(4)
		var b strings.Builder
		for i := 0; i < n; i++ {
			b.WriteByte('/')
			switch k := rng.Intn(6); {
			case k == 0 && i == n-1:
				fmt.Fprintf(&b, "{r%d...}", i)
			case k <= 2:
				fmt.Fprintf(&b, "{p%d}", i)
			default:
				b.WriteString(words[rng.Intn(len(words)-1)])
			}
		}
		return b.String()
	}
	for round := 0; round < 200; round++ {
		var apis []APIRoute
		for i := 0; i < 1+rng.Intn(25); i++ {
			apis = append(apis, APIRoute{APIID: fmt.Sprintf("api%02d", i), Method: methods[rng.Intn(3)], Path: randTemplate()})
		}
		tb := table(t, ServiceRoutes{ServiceID: "s", APIs: apis})
		routes := tb.VHosts[0].Routes
		for q := 0; q < 50; q++ {
			var p strings.Builder
			for i := 0; i < rng.Intn(5); i++ {
				p.WriteByte('/')
				p.WriteString(words[rng.Intn(len(words))])
			}
			path := p.String()
			if path == "" {
				path = "/"
			}
			method := []string{"GET", "POST", "PUT"}[rng.Intn(3)]
			want := ""
			for _, r := range routes {
				if _, ok := r.Template.Match(SplitPath(path)); ok && methodMatches(r.Method, method) {
					want = r.APIID
					break
				}
			}
			got := ""
			if r, _, ok := tb.Match(method, "h", path); ok {
				got = r.APIID
			}
			if got != want {
				t.Fatalf("round %d: %s %s: index %q, linear %q (routes %v)", round, method, path, got, want, apis)
			}
		}
	}
}

func BenchmarkMatch200Routes(b *testing.B) {
	var apis []APIRoute
	for i := 0; i < 50; i++ {
		apis = append(apis,
			APIRoute{fmt.Sprintf("list%d", i), "GET", fmt.Sprintf("/r%d", i)},
			APIRoute{fmt.Sprintf("get%d", i), "GET", fmt.Sprintf("/r%d/{id}", i)},
			APIRoute{fmt.Sprintf("put%d", i), "PUT", fmt.Sprintf("/r%d/{id}", i)},
			APIRoute{fmt.Sprintf("sub%d", i), "GET", fmt.Sprintf("/r%d/{id}/items/{rest...}", i)})
	}
	tb, err := Build([]ServiceRoutes{{ServiceID: "s", APIs: apis}})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, ok := tb.Match("GET", "api.example.com", "/r42/abc/items/x/y"); !ok {
			b.Fatal("no match")
		}
	}
}

func TestCanonicalPathCorpus(t *testing.T) {
	for _, c := range pathcorpus.Cases() {
		t.Run(c.Class, func(t *testing.T) {
			got, query, err := CanonicalTarget(c.Target)
			if c.Status != 0 {
				var pe *PathError
				if !errors.As(err, &pe) || pe.Status != c.Status {
					t.Fatalf("CanonicalTarget(%q) = %q, %v; want a refusal with status %d", c.Target, got, err, c.Status)
				}
				return
			}
			if err != nil || got != c.Canonical {
				t.Fatalf("CanonicalTarget(%q) = %q, %v; want %q", c.Target, got, err, c.Canonical)
			}
			if _, q, ok := strings.Cut(c.Target, "?"); ok && query != q {
				t.Errorf("query %q, want %q kept as it was", query, q)
			}
			// The canonical form is a fixed point.
			if again, err := CanonicalPath(got); err != nil || again != got {
				t.Errorf("CanonicalPath(%q) = %q, %v; not a fixed point", got, again, err)
			}
		})
	}
}

// TestCanonicalPathProperties checks, over random paths built from every
// byte class, that an accepted path's canonical form is a fixed point, holds
// no refused construct, and that refusals are consistent.
func TestCanonicalPathProperties(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	atoms := []string{"/", "//", "a", "Z", "9", ".", "..", "-", "_", "~", ";", "\\", "%", "%2", "%2f", "%2F", "%2e", "%5c",
		"%41", "%61", "%7e", "%3b", "%00", "%0a", "%7f", "%20", "%c3%a9", "%25", "%zz", ":", "@", "!", "+", "=", " ", "\xff", "{", "}"}
	for i := 0; i < 20000; i++ {
		var b strings.Builder
		b.WriteByte('/')
		for n := rng.Intn(8); n >= 0; n-- {
			b.WriteString(atoms[rng.Intn(len(atoms))])
		}
		raw := b.String()
		got, err := CanonicalPath(raw)
		if err != nil {
			var pe *PathError
			if !errors.As(err, &pe) || pe.Status != 400 || pe.Reason != ReasonNonCanonicalPath {
				t.Fatalf("CanonicalPath(%q): unexpected error %v", raw, err)
			}
			continue
		}
		if again, err := CanonicalPath(got); err != nil || again != got {
			t.Fatalf("CanonicalPath(%q) = %q: not a fixed point (%q, %v)", raw, got, again, err)
		}
		if strings.Contains(got, "//") || strings.ContainsAny(got, ";\\ ") {
			t.Fatalf("CanonicalPath(%q) = %q holds a refused construct", raw, got)
		}
		for _, s := range SplitPath(got) {
			if strings.HasSuffix(s, ".") {
				t.Fatalf("CanonicalPath(%q) = %q has a dot-ended segment", raw, got)
			}
		}
		for j := 0; j+2 < len(got); j++ {
			if got[j] == '%' && (unreservedDecoded(unhex(got[j+1])<<4|unhex(got[j+2])) || got[j+1] != upperHex(got[j+1]) || got[j+2] != upperHex(got[j+2])) {
				t.Fatalf("CanonicalPath(%q) = %q keeps a non-canonical escape", raw, got)
			}
		}
	}
}

// TestNormalizeHostIsTheRegoRule: NormalizeHost is
// regex.replace(lower(host), ":[0-9]*$", "") — the Rego library's rule —
// on hosts of every shape (ports, IPv6, colons and digits anywhere).
func TestNormalizeHostIsTheRegoRule(t *testing.T) {
	rule := regexp.MustCompile(`:[0-9]*$`)
	alphabet := []string{"a", "B", ":", "1", "0", "[", "]", ".", "-", "É"}
	var hosts []string
	var gen func(prefix string, n int)
	gen = func(prefix string, n int) {
		hosts = append(hosts, prefix)
		if n == 0 {
			return
		}
		for _, c := range alphabet {
			gen(prefix+c, n-1)
		}
	}
	gen("", 4)
	hosts = append(hosts, "api.example.com:8080", "[::1]:443", "[::1]", "::", "host:", "host:80:", "HOST:08")
	for _, h := range hosts {
		if got, want := NormalizeHost(h), rule.ReplaceAllString(strings.ToLower(h), ""); got != want {
			t.Fatalf("NormalizeHost(%q) = %q, the Rego rule gives %q", h, got, want)
		}
	}
}
