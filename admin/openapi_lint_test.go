package admin_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/admin"
)

// The rules of `npx @redocly/cli lint` (recommended configuration) that
// the served document once broke, asserted here since CI cannot reach
// npm: servers are present (no-empty-servers), every tag an operation
// uses is declared with a description (tag-description,
// operation-tag-defined), and nullable never goes without a type
// (nullable-type-sibling). Run the linter itself with
//
//	curl -s http://127.0.0.1:8080/api/openapi.json > openapi.json   # make run
//	npx @redocly/cli@latest lint openapi.json
func TestOpenAPILintRules(t *testing.T) {
	doc, err := admin.OpenAPI(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Run("no-empty-servers", func(t *testing.T) {
		if len(doc.Servers) == 0 {
			t.Fatal("the document has no servers")
		}
		for i, s := range doc.Servers {
			if strings.TrimSpace(s.URL) == "" || strings.TrimSpace(s.Description) == "" {
				t.Errorf("servers[%d] %+v: a URL and a description are needed", i, s)
			}
		}
	})
	declared := map[string]bool{}
	t.Run("tag-description", func(t *testing.T) {
		for _, tag := range doc.Tags {
			if declared[tag.Name] {
				t.Errorf("tag %q is declared twice", tag.Name)
			}
			declared[tag.Name] = true
			if strings.TrimSpace(tag.Description) == "" {
				t.Errorf("tag %q has no description", tag.Name)
			}
		}
	})
	t.Run("operation-tag-defined", func(t *testing.T) {
		var undeclared []string
		for path, item := range doc.Paths.Map() {
			for method, op := range item.Operations() {
				if len(op.Tags) == 0 {
					undeclared = append(undeclared, fmt.Sprintf("%s %s: no tag", method, path))
				}
				for _, tag := range op.Tags {
					if !declared[tag] {
						undeclared = append(undeclared, fmt.Sprintf("%s %s: tag %q", method, path, tag))
					}
				}
			}
		}
		sort.Strings(undeclared)
		for _, u := range undeclared {
			t.Errorf("operation tag not declared in base.yaml's tags: %s", u)
		}
	})
	t.Run("nullable-type-sibling", func(t *testing.T) {
		raw, err := json.Marshal(doc)
		if err != nil {
			t.Fatal(err)
		}
		var v any
		if err := json.Unmarshal(raw, &v); err != nil {
			t.Fatal(err)
		}
		var walk func(at string, v any)
		walk = func(at string, v any) {
			switch x := v.(type) {
			case map[string]any:
				if x["nullable"] == true && x["type"] == nil {
					t.Errorf("%s: nullable without a type", at)
				}
				for k, e := range x {
					walk(at+"/"+k, e)
				}
			case []any:
				for i, e := range x {
					walk(fmt.Sprintf("%s/%d", at, i), e)
				}
			}
		}
		walk("#", v)
	})
}
