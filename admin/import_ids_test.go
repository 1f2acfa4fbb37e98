package admin_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/google/uuid"

	"github.com/gatehouse-dev/gatehouse/admin"
	"github.com/gatehouse-dev/gatehouse/bundles"
	"github.com/gatehouse-dev/gatehouse/gateway"
	"github.com/gatehouse-dev/gatehouse/internal/httpapi"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/policies"
)

// importDoc is an OpenAPI 3.0 document: top is top-level YAML ("" for
// none), each operation is "METHOD path operationId [x-gatehouse-policy]"
// ("-" for no operationId), paths in order of first appearance.
func importDoc(top string, ops ...string) []byte {
	type o struct{ method, operationID, policy string }
	var paths []string
	byPath := map[string][]o{}
	for _, s := range ops {
		f := strings.Fields(s)
		m := o{method: strings.ToLower(f[0]), operationID: f[2]}
		if len(f) > 3 {
			m.policy = f[3]
		}
		if _, ok := byPath[f[1]]; !ok {
			paths = append(paths, f[1])
		}
		byPath[f[1]] = append(byPath[f[1]], m)
	}
	var b strings.Builder
	b.WriteString("openapi: 3.0.3\ninfo: {title: t, version: '1'}\n" + top + "paths:\n")
	for _, p := range paths {
		fmt.Fprintf(&b, "  %s:\n", p)
		for _, m := range byPath[p] {
			fmt.Fprintf(&b, "    %s:\n", m.method)
			if m.operationID != "-" {
				fmt.Fprintf(&b, "      operationId: %q\n", strings.ReplaceAll(m.operationID, "_", " "))
			}
			if m.policy != "" {
				fmt.Fprintf(&b, "      x-gatehouse-policy: %s\n", m.policy)
			}
			if strings.Contains(p, "{") {
				name := p[strings.Index(p, "{")+1 : strings.Index(p, "}")]
				fmt.Fprintf(&b, "      parameters: [{name: %s, in: path, required: true, schema: {type: string}}]\n", name)
			}
			b.WriteString("      responses: {'200': {description: ok}}\n")
		}
	}
	return []byte(b.String())
}

// envelope is an API's id, uid, created_at and revision, by GET.
func (e *env) envelope(tok, id string) string {
	e.t.Helper()
	m := e.expect(e.do("GET", "/api/admin/acme/apis/"+id, tok, nil), 200).json(e.t)
	md := m["metadata"].(map[string]any)
	return fmt.Sprint(m["id"], " ", md["uid"], " ", md["created_at"])
}

func isUUID(v any) bool {
	s, _ := v.(string)
	_, err := uuid.Parse(s)
	return err == nil
}

// TestReimportKeepsIDsAndObjects: imported APIs are named by their
// operationIds, and re-importing the same document updates the same
// objects (same id, uid and created_at) instead of recreating them; after
// the specification is removed, importing it again gives the same ids.
func TestReimportKeepsIDsAndObjects(t *testing.T) {
	e, tok := importEnv(t)
	first := e.expect(e.importText(tok, fixture(t, "petstore-3.0.yaml"), "application/yaml"), 200).json(t)
	want := "[createPet listPets getPet deletePet getPhoto]"
	if got := fmt.Sprint(ids(items(t, first, "created_apis"))); got != want {
		t.Fatalf("ids: %s, want %s", got, want)
	}
	envelopes := map[string]string{}
	revisions := map[string]float64{}
	for _, a := range items(t, first, "created_apis") {
		id := a["id"].(string)
		envelopes[id] = e.envelope(tok, id)
		revisions[id] = a["metadata"].(map[string]any)["revision"].(float64)
	}

	body, ct := multipartForm(t, "file", "petstore.yaml", fixture(t, "petstore-3.0.yaml"))
	before := e.snapshot()
	again := e.expect(e.do("POST", importBase+"file", tok, body, "Content-Type", ct), 200).json(t)
	if n := e.transactionsSince(before); n != 1 {
		t.Fatalf("the re-import took %d transactions", n)
	}
	if got := fmt.Sprint(ids(items(t, again, "updated_apis"))); got != want ||
		len(items(t, again, "created_apis")) != 0 || len(items(t, again, "removed_apis")) != 0 {
		t.Fatalf("re-import: %v", again)
	}
	for _, a := range items(t, again, "updated_apis") {
		id := a["id"].(string)
		if got := e.envelope(tok, id); got != envelopes[id] {
			t.Fatalf("API %s was recreated: %s, was %s", id, got, envelopes[id])
		}
		if rev := a["metadata"].(map[string]any)["revision"].(float64); rev <= revisions[id] {
			t.Fatalf("API %s was not updated: revision %v, was %v", id, rev, revisions[id])
		}
	}
	evs := items(t, e.expect(e.do("GET", "/api/admin/acme/events?kind=apis&action=create", tok, nil), 200).json(t), "events")
	if len(evs) != 5 {
		t.Fatalf("create events: %d (the re-import created APIs)", len(evs))
	}

	// The ids are the document's, not the store's history.
	svcTag := e.expect(e.do("GET", "/api/admin/acme/services/pets", tok, nil), 200).header.Get("ETag")
	e.expect(e.do("DELETE", "/api/admin/acme/services/pets/apis", tok, nil, "If-Match", svcTag), 200)
	fresh := e.expect(e.importText(tok, fixture(t, "petstore-3.0.yaml"), "application/yaml"), 200).json(t)
	if got := fmt.Sprint(ids(items(t, fresh, "created_apis"))); got != want {
		t.Fatalf("ids after removing the specification: %s", got)
	}
	if got := e.envelope(tok, "getPet"); got == envelopes["getPet"] {
		t.Fatalf("a removed API came back with its uid: %s", got)
	}

	// An operation that moves keeps its API (matched by operationId).
	moved := e.expect(e.importText(tok, importDoc("", "GET /v2/pets/{pid} getPet"), "application/yaml"), 200).json(t)
	up := items(t, moved, "updated_apis")
	if len(up) != 1 || up[0]["id"] != "getPet" || up[0]["path"] != "/v2/pets/{pid}" || len(items(t, moved, "removed_apis")) != 4 {
		t.Fatalf("moved operation: %v", moved)
	}
}

// TestImportSanitisesOperationIDs: every operationId gives an object id
// (separators become '-', accents are dropped, long ids are cut with a
// hash); one that leaves nothing, or no operationId, gives a generated id,
// kept on re-import.
func TestImportSanitisesOperationIDs(t *testing.T) {
	e, tok := importEnv(t)
	long := strings.Repeat("getEveryPetOfTheStore", 10)
	doc := importDoc("",
		"GET /pets list_pets",
		"POST /pets pets/{id}/create",
		"GET /unicode Café_Ünïcode",
		"GET /long "+long,
		"GET /cjk 日本語",
		"GET /dashes ---",
		"GET /none -",
	)
	res := e.expect(e.importText(tok, doc, "application/yaml"), 200).json(t)
	created := items(t, res, "created_apis")
	byOp := map[string]string{}
	for _, a := range created {
		byOp[fmt.Sprint(a["operation_id"])] = a["id"].(string)
	}
	for op, want := range map[string]string{"list pets": "list-pets", "pets/{id}/create": "pets-id-create", "Café Ünïcode": "Cafe-Unicode"} {
		if byOp[op] != want {
			t.Errorf("operationId %q: id %q, want %q", op, byOp[op], want)
		}
	}
	if id := byOp[long]; len(id) != 128 || !strings.HasPrefix(id, long[:119]+"-") || !model.ValidObjectID(id) {
		t.Errorf("long operationId: id %q", id)
	}
	for _, op := range []string{"日本語", "---", "<nil>"} {
		if !isUUID(byOp[op]) {
			t.Errorf("operationId %q: id %q, want a generated one", op, byOp[op])
		}
	}
	again := e.expect(e.importText(tok, doc, "application/yaml"), 200).json(t)
	if fmt.Sprint(ids(items(t, again, "updated_apis"))) != fmt.Sprint(ids(created)) || len(items(t, again, "created_apis")) != 0 {
		t.Fatalf("re-import changed ids: %v\n%v", ids(created), again)
	}
}

// TestImportRefusesCollidingOperationIDs: two operationIds that give the
// same API id are a 400 naming both operations, and nothing is written.
func TestImportRefusesCollidingOperationIDs(t *testing.T) {
	e, tok := importEnv(t)
	before := e.snapshot()
	r := e.importText(tok, importDoc("", "GET /pets get_pet", "GET /pets/{id} get/pet"), "application/yaml")
	if r.status != 400 || r.errorCode(t) != admin.CodeInvalidSpecification {
		t.Fatalf("collision: %d %s", r.status, r.body)
	}
	msg := r.json(t)["error"]
	if !contains(msg, "cannot be imported", `GET /pets (operationId "get pet")`, `GET /pets/{id} (operationId "get/pet")`, `"get-pet"`) {
		t.Fatalf("the error does not name both operations: %s", r.body)
	}
	if errs, _ := r.json(t)["details"].(map[string]any)["errors"].([]any); len(errs) != 1 {
		t.Fatalf("details.errors: %s", r.body)
	}
	e.requireUnchanged(t, before, "a refused import changed the store")
}

// setAPI changes fields of an API: the object as GET returns it, with
// fields set, written back with PUT.
func (e *env) setAPI(tok, id string, fields map[string]any) {
	e.t.Helper()
	m := e.expect(e.do("GET", "/api/admin/acme/apis/"+id, tok, nil), 200).json(e.t)
	for k, v := range fields {
		m[k] = v
	}
	e.expect(e.do("PUT", "/api/admin/acme/apis/"+id, tok, m), 200)
}

// policiesOf renders the service's APIs as "id=policy_id public".
func (e *env) policiesOf(tok string) string {
	e.t.Helper()
	var out []string
	for _, a := range items(e.t, e.expect(e.do("GET", "/api/admin/acme/services/pets/apis", tok, nil), 200).json(e.t), "apis") {
		s := fmt.Sprint(a["id"], "=", a["policy_id"])
		if a["public"] == true {
			s += "(public)"
		}
		out = append(out, s)
	}
	return strings.Join(out, " ")
}

// TestImportBindsPolicies: an operation's x-gatehouse-policy binds its API;
// the others get the import's default (the policy_id query parameter, else
// the document's top-level x-gatehouse-policy), public APIs excepted; with
// neither, APIs keep the policy they have.
func TestImportBindsPolicies(t *testing.T) {
	e, tok := importEnv(t)
	for _, p := range []string{"readers", "writers", "ops"} {
		storeObject(e, model.KindPolicy, "acme", p, model.PolicySpec{Language: model.LanguageRego})
	}
	doc := func(top string) []byte {
		return importDoc(top, "GET /pets listPets", "POST /pets createPet writers", "GET /health health")
	}
	e.expect(e.importText(tok, doc("x-gatehouse-policy: readers\n"), "application/yaml"), 200)
	if got := e.policiesOf(tok); got != "listPets=readers createPet=writers health=readers" {
		t.Fatalf("document default: %s", got)
	}
	// The request's default wins over the document's.
	e.expect(e.do("POST", importBase+"text?policy_id=ops", tok, doc("x-gatehouse-policy: readers\n"), "Content-Type", "application/yaml"), 200)
	if got := e.policiesOf(tok); got != "listPets=ops createPet=writers health=ops" {
		t.Fatalf("request default: %s", got)
	}
	// A public API is left public by defaults.
	e.setAPI(tok, "health", map[string]any{"public": true, "policy_id": ""})
	e.expect(e.importText(tok, doc("x-gatehouse-policy: readers\n"), "application/yaml"), 200)
	if got := e.policiesOf(tok); got != "listPets=readers createPet=writers health=(public)" {
		t.Fatalf("public API: %s", got)
	}
	// Without any policy in the import, APIs keep theirs (hand-bound too).
	e.setAPI(tok, "listPets", map[string]any{"policy_id": "ops"})
	e.expect(e.importText(tok, importDoc("", "GET /pets listPets", "POST /pets createPet", "GET /health health"), "application/yaml"), 200)
	if got := e.policiesOf(tok); got != "listPets=ops createPet=writers health=(public)" {
		t.Fatalf("no policy named: %s", got)
	}
	// The URL import takes policy_id too.
	remote := specServerWith(t, doc(""))
	e.api.SetAllowPrivateImportURLs(true)
	e.expect(e.do("POST", importBase+"url?policy_id=readers", tok, map[string]any{"url": remote + "/spec.yaml"}), 200)
	if got := e.policiesOf(tok); got != "listPets=readers createPet=writers health=(public)" {
		t.Fatalf("URL import: %s", got)
	}
}

// specServerWith serves doc at /spec.yaml and returns its URL.
func specServerWith(t *testing.T, doc []byte) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(doc) }))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestImportRefusesUnknownPolicies: a policy that does not exist, named by
// the request, the document or an operation, is a 400 naming where it came
// from, and nothing is written; so is an invalid policy_id, and an
// operation's policy on a public API.
func TestImportRefusesUnknownPolicies(t *testing.T) {
	e, tok := importEnv(t)
	storeObject(e, model.KindPolicy, "acme", "readers", model.PolicySpec{Language: model.LanguageRego})
	e.expect(e.importText(tok, importDoc("", "GET /pets listPets", "GET /health health"), "application/yaml"), 200)
	e.setAPI(tok, "health", map[string]any{"public": true})
	before := e.snapshot()
	for _, c := range []struct {
		name, query string
		doc         []byte
		field, want string
	}{
		{"request", "?policy_id=nope", importDoc("", "GET /pets listPets"), "policy_id", `policy "nope" does not exist`},
		{"invalid request", "?policy_id=not%20an%20id", importDoc("", "GET /pets listPets"), "policy_id", "invalid policy id"},
		{"document", "", importDoc("x-gatehouse-policy: nope\n", "GET /pets listPets"), "x-gatehouse-policy", "the document's default policy"},
		{"operation", "", importDoc("x-gatehouse-policy: readers\n", "GET /pets listPets", "POST /pets createPet nope"),
			"paths./pets.post.x-gatehouse-policy", `operation POST /pets (operationId "createPet")`},
		{"public API", "", importDoc("", "GET /pets listPets", "GET /health health readers"), "paths./health.get.x-gatehouse-policy", "is public"},
	} {
		r := e.do("POST", importBase+"text"+c.query, tok, c.doc, "Content-Type", "application/yaml")
		if r.status != 400 || r.errorCode(t) != httpapi.CodeInvalidField || errDetails(t, r)["field"] != c.field || !contains(r.json(t)["error"], c.want) {
			t.Errorf("%s: %d %s", c.name, r.status, r.body)
		}
	}
	// Every problem is listed, the request's first.
	r := e.do("POST", importBase+"text?policy_id=nope", tok, importDoc("x-gatehouse-policy: gone\n", "GET /pets listPets lost"), "Content-Type", "application/yaml")
	errs, _ := errDetails(t, r)["errors"].([]any)
	var fields []string
	for _, x := range errs {
		fields = append(fields, fmt.Sprint(x.(map[string]any)["field"]))
	}
	if r.status != 400 || fmt.Sprint(fields) != "[policy_id x-gatehouse-policy paths./pets.get.x-gatehouse-policy]" {
		t.Fatalf("every unknown policy: %d %s", r.status, r.body)
	}
	e.requireUnchanged(t, before, "a refused import changed the store")
}

// TestImportedPolicyIsEnforced: the policy an import binds reaches the
// gateway's bundle and decides requests to the imported APIs.
func TestImportedPolicyIsEnforced(t *testing.T) {
	e, tok := importEnv(t)
	e.expect(e.do("POST", "/api/admin/acme/policies", tok, map[string]any{"id": "keyed", "policy_name": "keyed", "definition": goodRego}), 201)
	e.expect(e.do("POST", "/api/admin/acme/gateways", rootToken, map[string]any{"id": "edge", "name": "edge", "service_ids": []string{"pets"}, "policy_timeout_ms": model.MaxPolicyTimeoutMS}), 201)
	e.expect(e.importText(tok, importDoc("x-gatehouse-policy: keyed\n", "GET /pets/{id} getPet", "GET /toys -"), "application/yaml"), 200)

	var b *bundles.Bundle
	deadline := time.Now().Add(10 * time.Second)
	for {
		if b = e.bundles.Get("acme", "edge"); b != nil {
			if cfg, err := policies.ParseBundleConfig(b.Compiled.Data); err == nil && cfg.APIs["getPet"].PolicyID == "keyed" {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the imported API's policy did not reach the bundle")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cfg, _ := policies.ParseBundleConfig(b.Compiled.Data)
	if len(cfg.APIs) != 2 {
		t.Fatalf("bundle APIs: %v", cfg.APIs)
	}
	for id, a := range cfg.APIs {
		if a.PolicyID != "keyed" || a.ServiceID != "pets" {
			t.Fatalf("bundle API %s: %+v", id, a)
		}
	}
	src, err := gateway.SourceFromCompiled(b.Compiled, "1")
	if err != nil {
		t.Fatal(err)
	}
	eng, err := gateway.NewEngine(context.Background(), src, nil)
	if err != nil {
		t.Fatal(err)
	}
	decide := func(path string, headers map[string]string) *gateway.Decision {
		t.Helper()
		d, err := eng.Decide(context.Background(), gateway.RequestFromCheck(&authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: path, Host: "pets.example.com", Headers: headers}}}}))
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	if d := decide("/pets/7", map[string]string{"x-key": "open-sesame"}); !d.Allowed || d.APIID != "getPet" || d.PolicyID != "keyed" {
		t.Fatalf("with the key: %+v", d)
	}
	if d := decide("/pets/7", nil); d.Allowed || d.PolicyID != "keyed" || d.Reason != "no key" {
		t.Fatalf("without the key: %+v", d)
	}
}
