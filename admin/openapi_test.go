package admin_test

import (
	"context"
	"regexp"
	"sort"
	"testing"

	"github.com/gatehouse-dev/gatehouse/admin"
)

var ginParam = regexp.MustCompile(`:([A-Za-z_]+)`)

// TestOpenAPIMatchesRoutes: every registered route is documented and
// nothing is documented that is not routed.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	e := newEnv(t)
	doc, err := admin.OpenAPI(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			documented[method+" "+path] = true
		}
	}
	routed := map[string]bool{}
	for _, r := range e.api.Routes() {
		routed[r.Method+" "+ginParam.ReplaceAllString(r.Path, "{$1}")] = true
	}
	var missing, extra []string
	for k := range routed {
		if !documented[k] {
			missing = append(missing, k)
		}
	}
	for k := range documented {
		if !routed[k] {
			extra = append(extra, k)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	if len(missing) > 0 {
		t.Errorf("routes missing from openapi.yaml: %v", missing)
	}
	if len(extra) > 0 {
		t.Errorf("documented but not routed: %v", extra)
	}
	if len(routed) < 10 {
		t.Fatalf("suspiciously few routes: %d", len(routed))
	}
	// The served document is the same one.
	served := e.expect(e.do("GET", "/api/openapi.json", "", nil), 200).json(t)
	if served["openapi"] != "3.0.3" || len(served["paths"].(map[string]any)) != len(doc.Paths.Map()) {
		t.Fatalf("served document differs: %v", served["openapi"])
	}
}
