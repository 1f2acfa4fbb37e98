package routing

import (
	"fmt"
	"math/rand"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/routing/pathcorpus"
)

func TestPatternSegments(t *testing.T) {
	cases := []struct {
		tpl, path string
		want      string // "" = no match, else params
	}{
		{"/files/{name}.json", "/files/a.json", "map[name:a]"},
		{"/files/{name}.json", "/files/a.b.json", "map[name:a.b]"},
		{"/files/{name}.json", "/files/.json", ""}, // the parameter is never empty
		{"/files/{name}.json", "/files/a.jso", ""},
		{"/files/{name}.json", "/files/a.json/", ""},
		{"/files/{name}.json", "/files/a.JSON", ""},
		{"/api/v{version}/pets", "/api/v2/pets", "map[version:2]"},
		{"/api/v{version}/pets", "/api/v/pets", ""},
		{"/api/v{version}/pets", "/api/x2/pets", ""},
		{"/img-{id}.png", "/img-7.png", "map[id:7]"},
		{"/img-{id}.png", "/img-.png", ""},
		{"/{x}C3", "/a%C3", ""}, // the parameter would end inside an escape
		{"/{x}3", "/a%C3", ""},  // likewise
		{"/{x}C3", "/ab%C3C3", "map[x:ab%C3]"},
		{"/{x}%C3%A9", "/caf%C3%A9", "map[x:caf]"},
		{"/%C3{x}", "/%C3%A9", "map[x:%A9]"},
	}
	for _, c := range cases {
		tpl, err := ParseTemplate(c.tpl)
		if err != nil {
			t.Fatalf("%s: %v", c.tpl, err)
		}
		params, ok := tpl.Match(SplitPath(c.path))
		got := ""
		if ok {
			got = fmt.Sprint(params)
		}
		if got != c.want {
			t.Errorf("%s ~ %s: got %q, want %q", c.tpl, c.path, got, c.want)
		}
	}
}

func TestPatternPriority(t *testing.T) {
	tb := table(t, ServiceRoutes{ServiceID: "s", APIs: []APIRoute{
		{"param", "GET", "/files/{name}"},
		{"json", "GET", "/files/{name}.json"},
		{"tar-gz", "GET", "/files/{name}.tar.gz"},
		{"gz", "GET", "/files/{name}.gz"},
		{"lit", "GET", "/files/index.json"},
		{"all", "GET", "/files/{p...}"},
	}})
	for path, want := range map[string]string{
		"/files/index.json": "lit",
		"/files/a.json":     "json",
		"/files/a.tar.gz":   "tar-gz",
		"/files/a.gz":       "gz",
		"/files/a":          "param",
		"/files/.json":      "param",
		"/files/a/b":        "all",
	} {
		r, _, ok := tb.Match("GET", "h", path)
		if !ok || r.APIID != want {
			t.Errorf("GET %s: got %v, want %s", path, r, want)
		}
	}
}

func TestHeadFollowsGet(t *testing.T) {
	tb := table(t,
		ServiceRoutes{ServiceID: "a", APIs: []APIRoute{
			{"get-pet", "GET", "/pets/{id}"},
			{"any-pet", "*", "/pets/{id}"},
			{"get-list", "GET", "/pets"},
			{"head-list", "HEAD", "/pets"},
			{"post-toys", "POST", "/toys"},
			{"get-mine", "GET", "/pets/mine"},
			{"head-pet-any", "HEAD", "/{p...}"},
		}},
		ServiceRoutes{ServiceID: "b", APIs: []APIRoute{{"b-get", "GET", "/b/{x}"}}},
	)
	for _, c := range []struct{ method, path, want string }{
		{"HEAD", "/pets/7", "get-pet"},     // HEAD follows GET, before "*"
		{"HEAD", "/pets", "head-list"},     // a HEAD API of the same path wins
		{"GET", "/pets", "get-list"},       // and GET keeps its own
		{"HEAD", "/pets/mine", "get-mine"}, // the most specific path first
		{"HEAD", "/toys", "head-pet-any"},  // POST is not followed
		{"HEAD", "/b/1", "b-get"},
		{"GET", "/toys", ""},
		{"POST", "/pets/7", "any-pet"},
	} {
		got := ""
		if r, _, ok := tb.Match(c.method, "h", c.path); ok {
			got = r.APIID
		}
		if got != c.want {
			t.Errorf("%s %s: got %q, want %q", c.method, c.path, got, c.want)
		}
	}
}

// TestPatternIndexAgreesWithLinearScan: the trie over templates with
// pattern segments picks the first matching route in priority order, for
// every method (HEAD following GET).
func TestPatternIndexAgreesWithLinearScan(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	words := []string{"a", "v1", "a.json", "x.tar.gz", "img-1.png", "v", ".json", "%C3%A9", "ab%C3", ""}
	segs := []string{"a", "v{p}", "{p}.json", "{p}.gz", "{p}.tar.gz", "img-{p}.png", "{p}", "{p}%C3", "%C3{p}", "{p}3"}
	methods := []string{"GET", "HEAD", "POST", "*"}
	for round := 0; round < 300; round++ {
		var apis []APIRoute
		for i := 0; i < 1+rng.Intn(20); i++ {
			n := 1 + rng.Intn(3)
			var b strings.Builder
			for k := 0; k < n; k++ {
				if k == n-1 && rng.Intn(6) == 0 {
					fmt.Fprintf(&b, "/{r%d...}", k)
					continue
				}
				b.WriteString("/" + strings.Replace(segs[rng.Intn(len(segs))], "{p}", fmt.Sprintf("{p%d}", k), 1))
			}
			apis = append(apis, APIRoute{APIID: fmt.Sprintf("api%02d", i), Method: methods[rng.Intn(len(methods))], Path: b.String()})
		}
		tb := table(t, ServiceRoutes{ServiceID: "s", APIs: apis})
		routes := tb.VHosts[0].Routes
		for q := 0; q < 60; q++ {
			var p strings.Builder
			for i := 0; i < 1+rng.Intn(3); i++ {
				p.WriteString("/" + words[rng.Intn(len(words))])
			}
			path := p.String()
			method := []string{"GET", "HEAD", "POST", "PUT"}[rng.Intn(4)]
			want := ""
			for _, r := range routes {
				if _, ok := r.Template.Match(SplitPath(path)); ok && MethodMatches(r.Method, method) {
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

func TestTemplateCorpus(t *testing.T) {
	for _, c := range pathcorpus.TemplateCases() {
		tpl, err := ParseTemplate(c.Template)
		if err != nil {
			t.Fatalf("%s: %v", c.Template, err)
		}
		canon, err := CanonicalPath(c.Path)
		if err != nil {
			t.Fatalf("%s: %v", c.Path, err)
		}
		params, ok := tpl.Match(SplitPath(canon))
		if ok != (c.Params != nil) || ok && fmt.Sprint(params) != fmt.Sprint(c.Params) {
			t.Errorf("%s ~ %s: %v %v, want %v", c.Template, c.Path, ok, params, c.Params)
		}
	}
}
