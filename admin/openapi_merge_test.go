package admin

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"
)

const testOpenAPIBase = `openapi: 3.0.3
info: {title: t, version: "1"}
paths: {}
components:
  schemas:
    Error: {type: object}
`

func pathFragment(path, schema string) string {
	return `paths:
  ` + path + `:
    get:
      responses:
        "200": {description: ok, content: {application/json: {schema: {$ref: "#/components/schemas/` + schema + `"}}}}
`
}

// TestOpenAPIFragmentsMerge: the fragments' paths and components end up in
// one document that validates.
func TestOpenAPIFragmentsMerge(t *testing.T) {
	fsys := fstest.MapFS{
		"openapi/base.yaml": {Data: []byte(testOpenAPIBase)},
		"openapi/a.yaml": {Data: []byte(pathFragment("/a", "A") + `components:
  schemas:
    A: {type: object}
  parameters:
    p: {name: p, in: query, schema: {type: string}}
`)},
		"openapi/b.yaml": {Data: []byte(pathFragment("/b", "Error"))},
	}
	doc, err := loadOpenAPI(context.Background(), fsys)
	if err != nil {
		t.Fatal(err)
	}
	if doc.Paths.Value("/a") == nil || doc.Paths.Value("/b") == nil || doc.Paths.Len() != 2 {
		t.Errorf("paths: %v", doc.Paths.InMatchingOrder())
	}
	if doc.Components.Schemas["A"] == nil || doc.Components.Schemas["Error"] == nil || doc.Components.Parameters["p"] == nil {
		t.Errorf("components: schemas %v, parameters %v", doc.Components.Schemas, doc.Components.Parameters)
	}
}

// TestOpenAPIFragmentsDuplicates: a path or a component defined twice, by
// two fragments or by a fragment and the base, is an error naming both
// fragments; so is a fragment key other than paths and components.
func TestOpenAPIFragmentsDuplicates(t *testing.T) {
	for _, tc := range []struct {
		name      string
		fragments map[string]string
		want      []string
	}{
		{"path in two fragments", map[string]string{
			"openapi/a.yaml": pathFragment("/x", "Error"),
			"openapi/b.yaml": pathFragment("/x", "Error"),
		}, []string{"openapi/b.yaml", `paths "/x"`, "openapi/a.yaml"}},
		{"schema in two fragments", map[string]string{
			"openapi/a.yaml": "components:\n  schemas:\n    Thing: {type: object}\n",
			"openapi/b.yaml": "components:\n  schemas:\n    Thing: {type: string}\n",
		}, []string{"openapi/b.yaml", `components.schemas "Thing"`, "openapi/a.yaml"}},
		{"schema of the base", map[string]string{
			"openapi/a.yaml": "components:\n  schemas:\n    Error: {type: string}\n",
		}, []string{"openapi/a.yaml", `components.schemas "Error"`, "openapi/base.yaml"}},
		{"path of the base", map[string]string{
			"openapi/base.yaml": strings.Replace(testOpenAPIBase, "paths: {}", strings.TrimSuffix(pathFragment("/x", "Error"), "\n"), 1),
			"openapi/a.yaml":    pathFragment("/x", "Error"),
		}, []string{"openapi/a.yaml", `paths "/x"`, "openapi/base.yaml"}},
		{"key other than paths and components", map[string]string{
			"openapi/a.yaml": "info: {title: other}\n",
		}, []string{"openapi/a.yaml", `"info"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fsys := fstest.MapFS{"openapi/base.yaml": {Data: []byte(testOpenAPIBase)}}
			for name, text := range tc.fragments {
				fsys[name] = &fstest.MapFile{Data: []byte(text)}
			}
			_, err := loadOpenAPI(context.Background(), fsys)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %s", err, w)
				}
			}
		})
	}
}

// TestOpenAPIEmbeddedFragments: the embedded fragments assemble without a
// duplicate and every fragment contributes (none is silently dropped).
func TestOpenAPIEmbeddedFragments(t *testing.T) {
	raw, err := mergeOpenAPI(openAPIFragments)
	if err != nil {
		t.Fatal(err)
	}
	var merged struct {
		Paths map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(raw, &merged); err != nil {
		t.Fatal(err)
	}
	names, err := openAPIFragments.ReadDir("openapi")
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, e := range names {
		frag, err := readFragment(openAPIFragments, "openapi/"+e.Name())
		if err != nil {
			t.Fatal(err)
		}
		paths, _ := frag["paths"].(map[string]any)
		total += len(paths)
	}
	if total == 0 || len(merged.Paths) != total {
		t.Errorf("merged document has %d paths, the fragments %d", len(merged.Paths), total)
	}
}

// TestOpenAPIDocumentsCrossCuttingStatuses: the statuses the middleware
// and the shared plumbing answer on every route of a kind are documented
// on each operation, so a new fragment cannot forget them: 503 wherever
// the store is read (authentication reads it for tenant credentials),
// 507 wherever it is written, 400 for an invalid {tid}, 413 and 415 for a
// JSON body (the gateway's status and decision log uploads do not check
// the Content-Type).
func TestOpenAPIDocumentsCrossCuttingStatuses(t *testing.T) {
	doc, err := OpenAPI(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	noStore := map[string]bool{"healthz": true, "openapi": true}
	noWrite := map[string]bool{"testUnsavedPolicy": true, "testPolicy": true, "checkPolicy": true}
	writingGets := map[string]bool{"getGatewayPackage": true} // every download mints a credential
	noContentTypeCheck := map[string]bool{"postStatus": true, "postDecisionLogs": true}
	checked := 0
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			checked++
			want := map[string]bool{}
			if !noStore[op.OperationID] {
				want["503"] = true
			}
			switch method {
			case "POST", "PUT", "PATCH", "DELETE":
				want["507"] = !noWrite[op.OperationID]
			default:
				want["507"] = writingGets[op.OperationID]
			}
			if strings.Contains(path, "{tid}") {
				want["400"] = true
			}
			if op.RequestBody != nil && op.RequestBody.Value != nil {
				content := op.RequestBody.Value.Content
				if content.Get("application/json") != nil || content.Get("application/merge-patch+json") != nil {
					want["413"] = true
					want["415"] = !noContentTypeCheck[op.OperationID]
				}
			}
			for code, w := range want {
				if w && op.Responses.Status(mustAtoi(t, code)) == nil {
					t.Errorf("%s %s (%s) does not document %s", method, path, op.OperationID, code)
				}
			}
		}
	}
	if checked < 50 {
		t.Fatalf("only %d operations checked", checked)
	}
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
