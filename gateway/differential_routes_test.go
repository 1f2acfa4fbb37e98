package gateway

import (
	"context"
	"encoding/json"
	"math/rand"
	"reflect"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/policies"
	"github.com/gatehouse-dev/gatehouse/routing"
)

// withHeadAndPatterns rewrites a generated configuration so that it holds
// the route forms of issue 18: explicit HEAD APIs (some on the path of a
// GET API of the same service, with another policy), and pattern segments
// ("{id}.json", "v{ver}", "x.{id}").
func withHeadAndPatterns(rng *rand.Rand, cfg *policies.Config) {
	var extra []policies.Object[model.APISpec]
	for i := range cfg.APIs {
		a := &cfg.APIs[i].Spec
		switch rng.Intn(4) {
		case 0:
			a.Path = strings.Replace(a.Path, "{id}", []string{"{id}.json", "v{id}", "x.{id}", "{id}.y"}[rng.Intn(4)], 1)
		case 1:
			a.Path = strings.Replace(a.Path, "/a", "/v{ver}", 1)
		}
		if a.Method == "GET" && rng.Intn(3) == 0 {
			head := *a
			head.Method = "HEAD"
			head.PolicyID = diffPolicies[rng.Intn(len(diffPolicies))].ID
			head.Public = false
			extra = append(extra, policies.Object[model.APISpec]{ID: cfg.APIs[i].ID + "-head", Spec: head})
		}
		if a.Method == "POST" && rng.Intn(4) == 0 {
			a.Method = "HEAD"
		}
	}
	cfg.APIs = append(cfg.APIs, extra...)
}

// patternPathFor instantiates a template, pattern segments included.
func patternPathFor(rng *rand.Rand, tpl string) string {
	t, err := routing.ParseTemplate(tpl)
	if err != nil {
		return tpl
	}
	var b strings.Builder
	for _, s := range t.Segments {
		switch s.Kind {
		case routing.Literal:
			b.WriteString("/" + s.Value)
		case routing.Param:
			b.WriteString("/" + []string{"ok7", "nope", "x.y", "mine", "a.json"}[rng.Intn(5)])
		case routing.Pattern:
			v := []string{"ok7", "nope", "x.y", "", "%C3%A9", "a%2"}[rng.Intn(6)]
			b.WriteString("/" + s.Prefix + v + s.Suffix)
		case routing.CatchAll:
			for i := 0; i < rng.Intn(3); i++ {
				b.WriteString("/" + diffWords[rng.Intn(len(diffWords))])
			}
		}
	}
	if b.Len() == 0 {
		return "/"
	}
	return b.String()
}

// TestFastPathAgreesWithRegoOnHeadAndPatterns is the differential test of
// the fast path and the pure-Rego entrypoint on configurations with HEAD
// APIs and pattern segments, and requests that are often HEAD: HEAD follows
// GET's API (and its policy) unless a HEAD API of the path exists, and
// pattern segments match alike in Go and Rego.
func TestFastPathAgreesWithRegoOnHeadAndPatterns(t *testing.T) {
	ctx := context.Background()
	rng := rand.New(rand.NewSource(18))
	const configs, requestsPer = 30, 120
	headOnGet, headOnHead, onPattern, allowed := 0, 0, 0, 0
	for ci := 0; ci < configs; ci++ {
		cfg := randomConfig(t, rng)
		withHeadAndPatterns(rng, cfg)
		eng, _ := randomEngine(t, cfg)
		byID := map[string]model.APISpec{}
		for _, a := range cfg.APIs {
			byID[a.ID] = a.Spec
		}
		for ri := 0; ri < requestsPer; ri++ {
			check := randomRequest(t, rng, cfg)
			h := check.Attributes.Request.Http
			if rng.Intn(2) == 0 {
				h.Method = "HEAD"
			}
			if rng.Intn(2) == 0 && len(cfg.APIs) > 0 {
				a := cfg.APIs[rng.Intn(len(cfg.APIs))]
				h.Path = patternPathFor(rng, a.Spec.Path)
				for _, s := range cfg.Services {
					if s.ID == a.Spec.ServiceID && len(s.Spec.Hosts) > 0 {
						h.Host = strings.Replace(s.Spec.Hosts[0], "*", "x", 1)
					}
				}
			}
			want, err := eng.rego.Decision(ctx, RequestFromCheck(check).Document())
			if err != nil {
				t.Fatalf("config %d request %d: rego: %v", ci, ri, err)
			}
			got, err := eng.Decide(ctx, RequestFromCheck(check))
			if err != nil {
				t.Fatalf("config %d request %d: fast path: %v", ci, ri, err)
			}
			if g, w := normalize(t, got.Document()), normalize(t, want); !reflect.DeepEqual(g, w) {
				in, _ := json.Marshal(RequestFromCheck(check).Document())
				apis, _ := json.Marshal(cfg.APIs)
				t.Fatalf("config %d request %d disagree\ninput: %s\napis: %s\nfast: %v\nrego: %v", ci, ri, in, apis, g, w)
			}
			if got.Allowed {
				allowed++
			}
			if api, ok := byID[got.APIID]; ok {
				if h.Method == "HEAD" && api.Method == "GET" {
					headOnGet++
				}
				if h.Method == "HEAD" && api.Method == "HEAD" {
					headOnHead++
				}
				if tpl, err := routing.ParseTemplate(api.Path); err == nil {
					for _, s := range tpl.Segments {
						if s.Kind == routing.Pattern {
							onPattern++
							break
						}
					}
				}
			}
		}
	}
	t.Logf("%d requests: %d HEAD on a GET API, %d HEAD on a HEAD API, %d on a pattern route, %d allowed",
		configs*requestsPer, headOnGet, headOnHead, onPattern, allowed)
	if headOnGet < 100 || headOnHead < 50 || onPattern < 100 || allowed < 100 {
		t.Fatalf("the corpus is too one-sided: %d HEAD on GET, %d HEAD on HEAD, %d pattern, %d allowed", headOnGet, headOnHead, onPattern, allowed)
	}
}
