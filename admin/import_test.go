package admin_test

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/admin"
	"github.com/gatehouse-dev/gatehouse/internal/httpapi"
	"github.com/gatehouse-dev/gatehouse/model"
)

func fixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/openapi/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// multipartForm builds a multipart/form-data body with one part.
func multipartForm(t *testing.T, field, filename string, content []byte) ([]byte, string) {
	t.Helper()
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	var (
		part io.Writer
		err  error
	)
	if filename != "" {
		part, err = w.CreateFormFile(field, filename)
	} else {
		part, err = w.CreateFormField(field)
	}
	if err == nil {
		_, err = part.Write(content)
	}
	if err == nil {
		err = w.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), w.FormDataContentType()
}

// importEnv is a tenant "acme" with a service "pets".
func importEnv(t *testing.T) (*env, string) {
	e := newEnv(t)
	e.createTenant("acme")
	tok := e.credential("acme")
	e.expect(e.do("POST", "/api/admin/acme/services", tok, map[string]any{"id": "pets", "name": "Pets", "url": "http://pets"}), 201)
	return e, tok
}

const importBase = "/api/admin/acme/services/pets/apis/import/"

func (e *env) importText(tok string, doc []byte, contentType string) resp {
	e.t.Helper()
	return e.do("POST", importBase+"text", tok, doc, "Content-Type", contentType)
}

// routes renders APIs as "METHOD path operation_id position".
func routes(list []map[string]any) []string {
	out := make([]string, 0, len(list))
	for _, a := range list {
		out = append(out, fmt.Sprint(a["method"], " ", a["path"], " ", a["operation_id"], " ", a["position"]))
	}
	return out
}

func TestImportOpenAPI30(t *testing.T) {
	e, tok := importEnv(t)
	e.expect(e.do("POST", "/api/admin/acme/apis", tok, map[string]any{"id": "manual", "service_id": "pets", "method": "GET", "path": "/old"}), 201)
	e.expect(e.do("POST", "/api/admin/acme/scopes", tok, map[string]any{"id": "pets-read", "name": "pets:read"}), 201)
	storeObject(e, model.KindPolicy, "acme", "block", model.PolicySpec{Language: model.LanguageRego})

	before := e.snapshot()
	res := e.expect(e.importText(tok, fixture(t, "petstore-3.0.yaml"), "application/yaml"), 200).json(t)
	if n := e.transactionsSince(before); n != 1 {
		t.Fatalf("the import took %d transactions", n)
	}
	created := items(t, res, "created_apis")
	want := []string{
		"POST /api/v1/pets createPet 0",
		"GET /api/v1/pets listPets 1",
		"GET /api/v1/pets/{pet_id} getPet 2",
		"DELETE /api/v1/pets/{pet_id} deletePet 3",
		"GET /api/v1/pets/{pet_id}/photos/{_1st} getPhoto 4",
	}
	if fmt.Sprint(routes(created)) != fmt.Sprint(want) {
		t.Fatalf("created:\n%v\nwant\n%v", routes(created), want)
	}
	for _, a := range created {
		if a["imported"] != true || a["service_id"] != "pets" || a["can_have_policy"] != true {
			t.Fatalf("imported API: %v", a)
		}
	}
	if fmt.Sprint(ids(items(t, res, "removed_apis"))) != "[manual]" || len(items(t, res, "updated_apis")) != 0 {
		t.Fatalf("removed/updated: %v", res)
	}
	ignored := items(t, res, "ignored_apis")
	if len(ignored) != 2 ||
		ignored[0]["path"] != "/api/v1/files;{name}" || !contains(ignored[0]["reason"], "never matches a canonical request path") || ignored[0]["operation_id"] != "getFile" ||
		ignored[1]["operation_id"] != "listPetsAgain" || !contains(ignored[1]["reason"], "duplicates GET /api/v1/pets") {
		t.Fatalf("ignored: %v", ignored)
	}
	cs := items(t, res, "created_scopes")
	if len(cs) != 1 || cs[0]["name"] != "pets:write" || cs[0]["service_id"] != "pets" || cs[0]["description"] != "Write pets" {
		t.Fatalf("created scopes: %v", cs)
	}
	is := items(t, res, "ignored_scopes")
	if len(is) != 2 || is[0]["name"] != "bad scope" || is[1]["name"] != "pets:read" || is[1]["scope_id"] != "pets-read" {
		t.Fatalf("ignored scopes: %v", is)
	}
	for _, k := range []string{"created_policies", "removed_policies", "not_removed_policies"} {
		if l, ok := res[k].([]any); !ok || len(l) != 0 {
			t.Fatalf("%s: %v", k, res[k])
		}
	}
	svc := e.expect(e.do("GET", "/api/admin/acme/services/pets", tok, nil), 200).json(t)
	if svc["with_specification"] != true || len(items(t, svc, "scopes")) != 1 {
		t.Fatalf("service: %v", svc)
	}
	listed := items(t, e.expect(e.do("GET", "/api/admin/acme/services/pets/apis", tok, nil), 200).json(t), "apis")
	if fmt.Sprint(routes(listed)) != fmt.Sprint(want) {
		t.Fatalf("listed in position order: %v", routes(listed))
	}

	// The service's APIs now belong to the specification.
	if r := e.do("POST", "/api/admin/acme/apis", tok, map[string]any{"service_id": "pets", "method": "GET", "path": "/new"}); r.status != 409 ||
		r.errorCode(t) != httpapi.CodeConflict || !contains(r.json(t)["error"], "re-import", "remove") {
		t.Fatalf("create on an imported service: %d %s", r.status, r.body)
	}
	getPet := "/api/admin/acme/apis/" + created[2]["id"].(string)
	if r := e.do("DELETE", getPet, tok, nil); r.status != 409 || r.errorCode(t) != httpapi.CodeConflict {
		t.Fatalf("delete an imported API: %d %s", r.status, r.body)
	}
	e.expectFieldError(e.do("PATCH", getPet, tok, map[string]any{"method": "PUT"}, "Content-Type", admin.MergePatchType), "method")
	e.expectFieldError(e.do("PATCH", getPet, tok, map[string]any{"path": "/api/v1/pets/{x}"}, "Content-Type", admin.MergePatchType), "path")
	e.expectFieldError(e.do("PATCH", getPet, tok, map[string]any{"position": 0}, "Content-Type", admin.MergePatchType), "position")
	upd := e.expect(e.do("PUT", getPet, tok, map[string]any{
		"method": "get", "path": "/api/v1/pets/{pet_id}", "position": 2, "policy_id": "block",
		"data_classifications": []string{"pii"}, "public": false, "labels": map[string]string{"k": "v"},
	}), 200).json(t)
	if upd["policy_id"] != "block" || upd["public"] != false || upd["imported"] != true || upd["operation_id"] != "getPet" {
		t.Fatalf("update of an imported API: %v", upd)
	}
}

func TestReimportKeepsBindings(t *testing.T) {
	e, tok := importEnv(t)
	storeObject(e, model.KindPolicy, "acme", "block", model.PolicySpec{Language: model.LanguageRego})
	first := e.expect(e.importText(tok, fixture(t, "petstore-3.0.yaml"), "application/yaml"), 200).json(t)
	byOp := map[string]string{}
	for _, a := range items(t, first, "created_apis") {
		byOp[a["operation_id"].(string)] = a["id"].(string)
	}
	e.expect(e.do("PATCH", "/api/admin/acme/apis/"+byOp["getPet"], tok, map[string]any{
		"policy_id": "block", "data_classifications": []string{"pii"}, "can_have_policy": true, "labels": map[string]string{"k": "v"},
	}, "Content-Type", admin.MergePatchType), 200)
	e.expect(e.do("PATCH", "/api/admin/acme/apis/"+byOp["listPets"], tok, map[string]any{"can_have_policy": false, "public": true}, "Content-Type", admin.MergePatchType), 200)

	body, ct := multipartForm(t, "file", "petstore.yaml", fixture(t, "petstore-3.0-v2.yaml"))
	before := e.snapshot()
	res := e.expect(e.do("POST", importBase+"file", tok, body, "Content-Type", ct), 200).json(t)
	if n := e.transactionsSince(before); n != 1 {
		t.Fatalf("the re-import took %d transactions", n)
	}
	updated := items(t, res, "updated_apis")
	if fmt.Sprint(routes(updated)) != "[GET /api/v1/pets/{petId} showPet 0 GET /api/v1/pets listPets 2 POST /api/v1/pets createPet 3]" {
		t.Fatalf("updated: %v", routes(updated))
	}
	kept := updated[0]
	if kept["id"] != byOp["getPet"] || kept["policy_id"] != "block" || fmt.Sprint(kept["data_classifications"]) != "[pii]" ||
		kept["public"] != false || fmt.Sprint(kept["labels"]) != "map[k:v]" {
		t.Fatalf("the re-import lost the binding: %v", kept)
	}
	if updated[1]["id"] != byOp["listPets"] || updated[1]["can_have_policy"] != false || updated[1]["public"] != true {
		t.Fatalf("listPets: %v", updated[1])
	}
	if fmt.Sprint(routes(items(t, res, "created_apis"))) != "[PUT /api/v1/pets/{petId} replacePet 1]" {
		t.Fatalf("created: %v", res["created_apis"])
	}
	removed := items(t, res, "removed_apis")
	if len(removed) != 2 || !strings.Contains(fmt.Sprint(ids(removed)), byOp["deletePet"]) || !strings.Contains(fmt.Sprint(ids(removed)), byOp["getPhoto"]) {
		t.Fatalf("removed: %v", routes(removed))
	}
	e.expect(e.do("GET", "/api/admin/acme/apis/"+byOp["deletePet"], tok, nil), 404)
	if l := items(t, e.expect(e.do("GET", "/api/admin/acme/apis?policy_id=block", tok, nil), 200).json(t), "apis"); len(l) != 1 || l[0]["id"] != byOp["getPet"] {
		t.Fatalf("policy binding: %v", l)
	}
	// The scopes exist by now.
	if is := items(t, res, "ignored_scopes"); len(is) != 0 {
		t.Fatalf("v2 declares no scopes: %v", is)
	}
}

func TestImportOpenAPI31AndSwagger20(t *testing.T) {
	e, tok := importEnv(t)
	res := e.expect(e.importText(tok, fixture(t, "petstore-3.1.json"), "application/json"), 200).json(t)
	if got := fmt.Sprint(routes(items(t, res, "created_apis"))); got != "[GET /v2/owners/{owner_id}/pets/{petId} getOwnedPet 0 PATCH /v2/owners/{owner_id}/pets/{petId} patchOwnedPet 1 GET /v2/health health 2]" {
		t.Fatalf("3.1: %s", got)
	}

	e.expect(e.do("POST", "/api/admin/acme/services", tok, map[string]any{"id": "legacy", "name": "Legacy", "url": "http://legacy"}), 201)
	res = e.expect(e.do("POST", "/api/admin/acme/services/legacy/apis/import/text", tok, fixture(t, "petstore-2.0.yaml"), "Content-Type", "text/plain"), 200).json(t)
	if got := fmt.Sprint(routes(items(t, res, "created_apis"))); got != "[GET /v3/pets listPets 0 POST /v3/pets createPet 1 GET /v3/pets/{petId} getPet 2]" {
		t.Fatalf("2.0: %s", got)
	}
	if cs := items(t, res, "created_scopes"); len(cs) != 1 || cs[0]["name"] != "pets:admin" || cs[0]["service_id"] != "legacy" {
		t.Fatalf("2.0 scopes: %v", cs)
	}
	// A YAML upload without a content type and with x-yaml also works.
	e.expect(e.importText(tok, fixture(t, "petstore-3.0-v2.yaml"), "application/x-yaml"), 200)
}

func TestImportRejectsInvalidDocuments(t *testing.T) {
	e, tok := importEnv(t)
	e.expect(e.importText(tok, fixture(t, "petstore-3.0.yaml"), "application/yaml"), 200)
	apisBefore := e.expect(e.do("GET", "/api/admin/acme/apis", tok, nil), 200).body
	before := e.snapshot()
	for _, c := range []struct {
		name    string
		doc     string
		minErrs int
		want    string
	}{
		{"yaml syntax", string(fixture(t, "invalid-syntax.yaml")), 1, "YAML syntax error"},
		{"json syntax", "{\n  \"openapi\": \"3.1.0\",\n  \"info\": {,}\n}", 1, "line 3"},
		{"semantic", string(fixture(t, "invalid-semantic.yaml")), 3, "conflicting paths"},
		{"not openapi", `{"hello": "world"}`, 1, "not an OpenAPI document"},
		{"old swagger", `{"swagger": "1.2"}`, 1, "unsupported version"},
		{"openapi 4", "openapi: 4.0.0\n", 1, "unsupported version"},
		{"empty", "  \n", 1, "empty"},
		{"scalar", "just text", 1, "object"},
		{"external ref", "openapi: 3.0.3\ninfo: {title: x, version: '1'}\npaths:\n  /a:\n    $ref: 'https://example.com/paths.yaml'\n", 1, "external reference"},
	} {
		r := e.importText(tok, []byte(c.doc), "text/plain")
		if r.status != 400 || r.errorCode(t) != admin.CodeInvalidSpecification {
			t.Errorf("%s: %d %s", c.name, r.status, r.body)
			continue
		}
		errs, _ := r.json(t)["details"].(map[string]any)["errors"].([]any)
		if len(errs) < c.minErrs || !strings.Contains(fmt.Sprint(errs), c.want) {
			t.Errorf("%s: want at least %d errors mentioning %q: %s", c.name, c.minErrs, c.want, r.body)
		}
	}

	// Request problems.
	if r := e.importText(tok, []byte("openapi: 3.0.3"), "application/xml"); r.status != 415 {
		t.Errorf("xml: %d %s", r.status, r.body)
	}
	big := append([]byte("openapi: 3.0.3\n#"), bytes.Repeat([]byte("x"), 10<<20)...)
	if r := e.importText(tok, big, "application/yaml"); r.status != 413 || r.errorCode(t) != httpapi.CodeBodyTooLarge {
		t.Errorf("oversize text: %d %s", r.status, r.body)
	}
	body, ct := multipartForm(t, "file", "big.yaml", big)
	if r := e.do("POST", importBase+"file", tok, body, "Content-Type", ct); r.status != 413 {
		t.Errorf("oversize file: %d %s", r.status, r.body)
	}
	body, ct = multipartForm(t, "document", "spec.yaml", fixture(t, "petstore-3.0.yaml"))
	if r := e.do("POST", importBase+"file", tok, body, "Content-Type", ct); r.status != 400 || r.errorCode(t) != httpapi.CodeMissingField {
		t.Errorf("no file part: %d %s", r.status, r.body)
	}
	if r := e.do("POST", importBase+"file", tok, fixture(t, "petstore-3.0.yaml"), "Content-Type", "application/yaml"); r.status != 415 {
		t.Errorf("file without multipart: %d %s", r.status, r.body)
	}
	if r := e.do("POST", "/api/admin/acme/services/ghost/apis/import/text", tok, fixture(t, "petstore-3.0.yaml"), "Content-Type", "text/plain"); r.status != 404 {
		t.Errorf("unknown service: %d %s", r.status, r.body)
	}
	if r := e.do("POST", importBase+"text", tok, fixture(t, "petstore-3.0.yaml"), "Content-Type", "text/plain", "If-Match", `"1"`); r.status != 412 {
		t.Errorf("stale If-Match: %d %s", r.status, r.body)
	}

	e.requireUnchanged(t, before, "a rejected import changed the store")
	if after := e.expect(e.do("GET", "/api/admin/acme/apis", tok, nil), 200).body; !bytes.Equal(after, apisBefore) {
		t.Fatalf("the APIs changed:\n%s\n%s", apisBefore, after)
	}
}

func TestRemoveSpecification(t *testing.T) {
	e, tok := importEnv(t)
	imported := items(t, e.expect(e.importText(tok, fixture(t, "petstore-3.0.yaml"), "application/yaml"), 200).json(t), "created_apis")
	svcTag := e.expect(e.do("GET", "/api/admin/acme/services/pets", tok, nil), 200).header.Get("ETag")
	e.expect(e.do("DELETE", "/api/admin/acme/services/pets/apis", tok, nil, "If-Match", `"1"`), 412)
	before := e.snapshot()
	res := e.expect(e.do("DELETE", "/api/admin/acme/services/pets/apis", tok, nil, "If-Match", svcTag), 200).json(t)
	if n := e.transactionsSince(before); n != 1 {
		t.Fatalf("removal took %d transactions", n)
	}
	if len(items(t, res, "removed_apis")) != len(imported) || len(items(t, res, "removed_policies")) != 0 || len(items(t, res, "not_removed_policies")) != 0 {
		t.Fatalf("removed: %v", res)
	}
	if svc := e.expect(e.do("GET", "/api/admin/acme/services/pets", tok, nil), 200).json(t); svc["with_specification"] != false {
		t.Fatalf("service: %v", svc)
	}
	if l := e.expect(e.do("GET", "/api/admin/acme/services/pets/apis", tok, nil), 200).json(t); l["total"] != float64(0) {
		t.Fatalf("APIs left: %v", l)
	}
	// APIs can be managed by hand again.
	e.expect(e.do("POST", "/api/admin/acme/apis", tok, map[string]any{"service_id": "pets", "method": "GET", "path": "/by-hand"}), 201)
	evs := items(t, e.expect(e.do("GET", "/api/admin/acme/events?kind=apis&action=delete", tok, nil), 200).json(t), "events")
	if len(evs) != len(imported) {
		t.Fatalf("delete events: %d", len(evs))
	}
	e.expect(e.do("DELETE", "/api/admin/acme/services/ghost/apis", tok, nil), 404)
}

// specServer serves documents for URL imports.
func specServer(t *testing.T) *httptest.Server {
	t.Helper()
	doc := fixture(t, "petstore-3.0-v2.yaml")
	mux := http.NewServeMux()
	mux.HandleFunc("/spec.yaml", func(w http.ResponseWriter, r *http.Request) { w.Write(doc) })
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/spec.yaml", http.StatusFound) })
	mux.HandleFunc("/to-ftp", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "ftp://files.example.com/spec.yaml", http.StatusFound)
	})
	mux.HandleFunc("/loop", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/loop", http.StatusFound) })
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		w.Write(doc)
		w.Write(bytes.Repeat([]byte("#"), 10<<20))
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func TestImportFromURL(t *testing.T) {
	e, tok := importEnv(t)
	remote := specServer(t)
	importURL := func(u string) resp {
		t.Helper()
		return e.do("POST", importBase+"url", tok, map[string]any{"url": u})
	}
	u, _ := url.Parse(remote.URL)

	// By default loopback is refused, whatever name resolves to it.
	if e.api.AllowsPrivateImportURLs() {
		t.Fatal("private import URLs are allowed by default")
	}
	before := e.snapshot()
	for _, target := range []string{remote.URL + "/spec.yaml", "http://localhost:" + u.Port() + "/spec.yaml"} {
		r := importURL(target)
		e.expectFieldError(r, "url")
		if !contains(r.json(t)["error"], "loopback") {
			t.Fatalf("%s: %s", target, r.body)
		}
	}
	e.expectFieldError(importURL("ftp://files.example.com/spec.yaml"), "url")
	e.expectFieldError(importURL("file:///etc/passwd"), "url")
	e.expectFieldError(importURL("not a url"), "url")
	if r := e.do("POST", importBase+"url", tok, map[string]any{}); r.status != 400 || r.errorCode(t) != httpapi.CodeMissingField {
		t.Fatalf("missing url: %d %s", r.status, r.body)
	}
	e.requireUnchanged(t, before, "a refused URL import changed the store")

	e.api.SetAllowPrivateImportURLs(true)
	res := e.expect(importURL(remote.URL+"/redirect"), 200).json(t)
	if len(items(t, res, "created_apis")) != 4 {
		t.Fatalf("URL import: %v", res)
	}
	// The url field as a form field and as a multipart part.
	form := url.Values{"url": {remote.URL + "/spec.yaml"}}.Encode()
	e.expect(e.do("POST", importBase+"url", tok, form, "Content-Type", "application/x-www-form-urlencoded"), 200)
	body, ct := multipartForm(t, "url", "", []byte(remote.URL+"/spec.yaml"))
	e.expect(e.do("POST", importBase+"url", tok, body, "Content-Type", ct), 200)
	if r := e.do("POST", importBase+"url", tok, remote.URL, "Content-Type", "text/plain"); r.status != 415 {
		t.Fatalf("text/plain url: %d %s", r.status, r.body)
	}

	before = e.snapshot()
	e.expectFieldError(importURL(remote.URL+"/to-ftp"), "url")
	e.expectFieldError(importURL(remote.URL+"/big"), "url")
	for _, path := range []string{"/missing", "/loop"} {
		r := importURL(remote.URL + path)
		if r.status != 400 || r.errorCode(t) != admin.CodeFetchFailed || !contains(r.json(t)["error"], remote.URL+path) {
			t.Fatalf("%s: %d %s", path, r.status, r.body)
		}
	}
	defer admin.SetImportFetchTimeout(300 * time.Millisecond)()
	start := time.Now()
	if r := importURL(remote.URL + "/slow"); r.status != 400 || r.errorCode(t) != admin.CodeFetchFailed {
		t.Fatalf("slow server: %d %s", r.status, r.body)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("the slow fetch took %s", d)
	}
	e.requireUnchanged(t, before, "a failed fetch changed the store")
}

func TestImportURLOption(t *testing.T) {
	e := newEnv(t)
	api, err := admin.New(admin.Options{Store: e.store, BootstrapToken: rootToken, AllowPrivateImportURLs: true,
		Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)), Bundles: e.bundles, Keys: e.keys})
	if err != nil {
		t.Fatal(err)
	}
	if !api.AllowsPrivateImportURLs() {
		t.Fatal("Options.AllowPrivateImportURLs is not applied")
	}
}

// TestImportReportsFallbackTemplates: an operation whose path segment has
// several parameters is imported with the documented fallback and named in
// the answer's warnings; a clean import answers an empty list.
func TestImportReportsFallbackTemplates(t *testing.T) {
	e, tok := importEnv(t)
	doc := `openapi: 3.0.3
info: {title: files, version: "1"}
paths:
  /files/{name}.{ext}:
    get:
      operationId: getFile
      parameters:
        - {name: name, in: path, required: true, schema: {type: string}}
        - {name: ext, in: path, required: true, schema: {type: string}}
      responses: {"200": {description: ok}}
  /files/{name}.json:
    put:
      operationId: putJSON
      parameters:
        - {name: name, in: path, required: true, schema: {type: string}}
      responses: {"200": {description: ok}}
`
	res := e.expect(e.importText(tok, []byte(doc), "application/yaml"), 200).json(t)
	if got := fmt.Sprint(routes(items(t, res, "created_apis"))); !strings.Contains(got, "GET /files/{name_ext} getFile") || !strings.Contains(got, "PUT /files/{name}.json putJSON") {
		t.Fatalf("created: %s", got)
	}
	w := items(t, res, "warnings")
	if len(w) != 1 || w[0]["method"] != "GET" || w[0]["path"] != "/files/{name_ext}" || w[0]["document_path"] != "/files/{name}.{ext}" || w[0]["message"] == "" {
		t.Fatalf("warnings: %v", w)
	}
	res = e.expect(e.importText(tok, fixture(t, "petstore-3.1.json"), "application/json"), 200).json(t)
	if w, ok := res["warnings"].([]any); !ok || len(w) != 0 {
		t.Fatalf("warnings of a clean import: %v", res["warnings"])
	}
}
