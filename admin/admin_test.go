package admin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-dev/gatehouse/admin"
	"github.com/gatehouse-dev/gatehouse/bundles"
	"github.com/gatehouse-dev/gatehouse/bundleservice"
	"github.com/gatehouse-dev/gatehouse/internal/httpapi"
	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	"github.com/gatehouse-dev/gatehouse/internal/testkit/openapicheck"
	serverkeys "github.com/gatehouse-dev/gatehouse/oauth/keys"
	"github.com/gatehouse-dev/gatehouse/store"
	"github.com/gatehouse-dev/gatehouse/store/embedded"
)

const rootToken = "test-bootstrap-token-0123456789"

type env struct {
	t       *testing.T
	srv     *httptest.Server
	api     *admin.Server
	store   store.Store
	bundles *bundles.Manager
	keys    *bundles.KeyStore
	// bundleService is mounted on the admin API's engine, as gatehouse
	// serve mounts it.
	bundleService *bundleservice.Service
	// testKinds: the server's scheme has kinds only tests register, which
	// the OpenAPI document does not describe (their routes and their lists
	// in the configuration document are not checked against it).
	testKinds bool
}

func newEnv(t *testing.T) *env {
	t.Helper()
	return newEnvWith(t, func(o *admin.Options) { o.XDSPublicAddress = "xds.example.com:18000" })
}

// newEnvWith is newEnv with changes to the server's options.
func newEnvWith(t *testing.T, edit func(*admin.Options)) *env {
	t.Helper()
	st, err := embedded.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return newEnvOnWith(t, st, edit)
}

// newEnvOnWith is newEnvWith on st (closed when the test ends), composed
// as gatehouse serve composes it: the bundle service mounted on the admin
// API's engine (Options.Mount), sharing its registry.
func newEnvOnWith(t *testing.T, st store.Store, edit func(*admin.Options)) *env {
	t.Helper()
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	box := testkit.SecretBox(t)
	keys := bundles.NewKeyStore(st, box)
	mgr := bundles.NewManager(st, keys, log, bundles.WithPublicURL("https://gh.example"))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = mgr.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done; st.Close() })
	reg := prometheus.NewRegistry()
	bsvc, err := bundleservice.New(bundleservice.Options{Store: st, Bundles: mgr, Registry: reg, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	opts := admin.Options{Store: st, BootstrapToken: rootToken, PublicURL: "https://gh.example",
		Logger: log, Registry: reg, Bundles: mgr, Keys: keys, Mount: bsvc.Register, ServerKeys: serverkeys.NewManager(st, box),
		SecretBox: box}
	if edit != nil {
		edit(&opts)
	}
	api, err := admin.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.Handler())
	t.Cleanup(srv.Close)
	return &env{t: t, srv: srv, api: api, store: st, bundles: mgr, keys: keys, bundleService: bsvc, testKinds: opts.Scheme != nil}
}

type resp struct {
	status int
	header http.Header
	body   []byte
}

func (r resp) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("response is not a JSON object (%d): %s", r.status, r.body)
	}
	return m
}

// errorCode asserts the standard error shape and returns error_code.
func (r resp) errorCode(t *testing.T) string {
	t.Helper()
	m := r.json(t)
	for _, k := range []string{"status_code", "error", "error_code", "details"} {
		if _, ok := m[k]; !ok {
			t.Fatalf("error response lacks %q: %s", k, r.body)
		}
	}
	if int(m["status_code"].(float64)) != r.status {
		t.Fatalf("status_code %v differs from HTTP status %d", m["status_code"], r.status)
	}
	return m["error_code"].(string)
}

func (e *env) do(method, path, token string, body any, headers ...string) resp {
	e.t.Helper()
	r, err := testkit.NewHTTPClient(e.srv.URL, token).Send(context.Background(), method, path, body, headers...)
	if err != nil {
		e.t.Fatal(err)
	}
	e.checkDocumented(method, path, r)
	return resp{status: r.Status, header: r.Header, body: r.Body}
}

// served is the checker of the OpenAPI document the server serves, built
// once for the package's tests.
var served = sync.OnceValues(func() (*openapicheck.Checker, error) {
	doc, err := admin.OpenAPI(context.Background())
	if err != nil {
		return nil, err
	}
	return openapicheck.New(doc)
})

// checkDocumented holds every answer to the OpenAPI document: status,
// content type, body and headers.
func (e *env) checkDocumented(method, path string, r testkit.Response) {
	e.t.Helper()
	if e.testKinds && (strings.Contains(path, "/notes") || strings.HasPrefix(path, "/api/system/configuration")) {
		return
	}
	c, err := served()
	if err != nil {
		e.t.Fatalf("the OpenAPI document: %v", err)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	c.Expect(e.t, openapicheck.Exchange{Request: req, Status: r.Status, Header: r.Header, Body: r.Body})
}

func (e *env) expect(r resp, status int) resp {
	e.t.Helper()
	if r.status != status {
		e.t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
	return r
}

func (e *env) createTenant(id string) map[string]any {
	e.t.Helper()
	return e.expect(e.do("POST", "/api/system/tenants", rootToken, map[string]any{"id": id, "name": "Tenant " + id}), 201).json(e.t)
}

func (e *env) credential(tid string) string {
	e.t.Helper()
	m := e.expect(e.do("POST", "/api/system/tenants/"+tid+"/credentials", rootToken, map[string]any{"name": "ci"}), 201).json(e.t)
	return m["token"].(string)
}

func (e *env) revision() int64 {
	e.t.Helper()
	r, err := e.store.Revision(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return r
}

func TestAuthentication(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	cases := []struct {
		name, header string
	}{
		{"no header", ""},
		{"wrong token", "Bearer not-the-token-at-all"},
		{"wrong scheme", "Basic " + rootToken},
		{"empty bearer", "Bearer "},
		{"forged credential", "Bearer ghc_acme.abc.def"},
	}
	for _, path := range []string{"/api/system/tenants", "/api/admin/acme/tenant", "/api/admin/acme/events", "/api/admin/nope/tenant"} {
		for _, c := range cases {
			var r resp
			if c.header == "" {
				r = e.do("GET", path, "", nil)
			} else {
				r = e.do("GET", path, "", nil, "Authorization", c.header)
			}
			if r.status != 401 || r.errorCode(t) != httpapi.CodeUnauthorized {
				t.Errorf("%s %s: status %d %s", path, c.name, r.status, r.body)
			}
			if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("%s %s: no WWW-Authenticate header", path, c.name)
			}
		}
	}
	// Unauthenticated operational routes; /metrics is not one of them.
	for _, p := range []string{"/healthz", "/readyz", "/api/openapi.json"} {
		e.expect(e.do("GET", p, "", nil), 200)
	}
}

func TestTenantIsolation(t *testing.T) {
	e := newEnv(t)
	e.createTenant("tenant-a")
	e.createTenant("tenant-b")
	tokA := e.credential("tenant-a")
	if !strings.HasPrefix(tokA, "ghc_tenant-a.") {
		t.Fatalf("unexpected token format %q", tokA)
	}
	e.expect(e.do("GET", "/api/admin/tenant-a/tenant", tokA, nil), 200)
	e.expect(e.do("GET", "/api/admin/tenant-a/events", tokA, nil), 200)
	for _, c := range []struct{ method, path string }{
		{"GET", "/api/admin/tenant-b/tenant"},
		{"PUT", "/api/admin/tenant-b/tenant"},
		{"GET", "/api/admin/tenant-b/events"},
		{"GET", "/api/admin/no-such-tenant/tenant"}, // no existence oracle
		{"GET", "/api/system/tenants"},
		{"POST", "/api/system/tenants"},
		{"DELETE", "/api/system/tenants/tenant-a"},
		{"POST", "/api/system/tenants/tenant-a/credentials"},
	} {
		r := e.do(c.method, c.path, tokA, map[string]any{"name": "x"})
		if r.status != 403 || r.errorCode(t) != httpapi.CodeForbidden {
			t.Errorf("tenant-a token on %s %s: %d %s", c.method, c.path, r.status, r.body)
		}
	}
	// The bootstrap token is system-wide.
	e.expect(e.do("GET", "/api/admin/tenant-b/tenant", rootToken, nil), 200)
	// Unknown tenant: 404 for the system token.
	if r := e.do("GET", "/api/admin/no-such-tenant/events", rootToken, nil); r.status != 404 || r.errorCode(t) != httpapi.CodeNotFound {
		t.Fatalf("unknown tenant: %d %s", r.status, r.body)
	}
	// Credentials are listed without secrets, and revoking one locks it out.
	list := e.expect(e.do("GET", "/api/system/tenants/tenant-a/credentials", rootToken, nil), 200)
	if bytes.Contains(list.body, []byte(strings.Split(tokA, ".")[2])) || bytes.Contains(list.body, []byte("secret")) {
		t.Fatalf("credential listing leaks the secret: %s", list.body)
	}
	creds := list.json(t)["credentials"].([]any)
	if len(creds) != 1 {
		t.Fatalf("credentials: %s", list.body)
	}
	id := creds[0].(map[string]any)["id"].(string)
	e.expect(e.do("DELETE", "/api/system/tenants/tenant-a/credentials/"+id, rootToken, nil), 204)
	e.expect(e.do("GET", "/api/admin/tenant-a/tenant", tokA, nil), 401)
	// A wrong secret for a real credential id is a 401 too.
	tok2 := e.credential("tenant-a")
	parts := strings.Split(tok2, ".")
	e.expect(e.do("GET", "/api/admin/tenant-a/tenant", tok2[:len(tok2)-len(parts[2])]+"AAAA", nil), 401)
	e.expect(e.do("GET", "/api/admin/tenant-a/tenant", tok2, nil), 200)
	// Deleting the tenant removes its credentials.
	e.expect(e.do("DELETE", "/api/system/tenants/tenant-a", rootToken, nil), 204)
	e.expect(e.do("GET", "/api/admin/tenant-a/tenant", tok2, nil), 401)
}

func TestTenantCRUD(t *testing.T) {
	e := newEnv(t)
	created := e.expect(e.do("POST", "/api/system/tenants", rootToken, map[string]any{
		"id": "acme", "name": "Acme", "description": "first", "labels": map[string]string{"tier": "gold"},
	}, "X-Request-Id", "req-create-1"), 201)
	m := created.json(t)
	if m["id"] != "acme" || m["name"] != "Acme" || m["status"] != "AVAILABLE" || m["url"] != "https://gh.example/api/admin/acme/tenant" ||
		m["created"] == nil || m["labels"].(map[string]any)["tier"] != "gold" {
		t.Fatalf("created tenant: %s", created.body)
	}
	meta := m["metadata"].(map[string]any)
	if meta["created_by"] != "bootstrap-admin" || meta["revision"].(float64) <= 0 {
		t.Fatalf("metadata: %v", meta)
	}
	if created.header.Get("ETag") != fmt.Sprintf(`"%d"`, int64(meta["revision"].(float64))) {
		t.Fatalf("ETag %q vs revision %v", created.header.Get("ETag"), meta["revision"])
	}
	if created.header.Get("Location") != "/api/system/tenants/acme" || created.header.Get("X-Request-Id") != "req-create-1" {
		t.Fatalf("headers: %v", created.header)
	}
	e.expect(e.do("POST", "/api/system/tenants", rootToken, map[string]any{"id": "acme", "name": "Again"}), 409)

	got := e.expect(e.do("GET", "/api/system/tenants/acme", rootToken, nil), 200)
	etag := got.header.Get("ETag")
	e.expect(e.do("GET", "/api/system/tenants/acme", rootToken, nil, "If-None-Match", etag), 304)

	// Generated id.
	gen := e.expect(e.do("POST", "/api/system/tenants", rootToken, map[string]any{"name": "No id"}), 201).json(t)
	if id, _ := gen["id"].(string); len(id) < 8 {
		t.Fatalf("generated id %q", id)
	}

	// PUT a GET response back (read-only fields are accepted), with If-Match.
	var body map[string]any
	_ = json.Unmarshal(got.body, &body)
	body["name"] = "Acme Corp"
	upd := e.expect(e.do("PUT", "/api/system/tenants/acme", rootToken, body, "If-Match", etag), 200)
	if upd.json(t)["name"] != "Acme Corp" || upd.header.Get("ETag") == etag {
		t.Fatalf("update: %s", upd.body)
	}
	// Stale If-Match: 412, nothing changes.
	body["name"] = "Lost update"
	before := e.snapshot()
	if r := e.do("PUT", "/api/system/tenants/acme", rootToken, body, "If-Match", etag); r.status != 412 || r.errorCode(t) != httpapi.CodePreconditionFailed {
		t.Fatalf("stale If-Match: %d %s", r.status, r.body)
	}
	if r := e.do("DELETE", "/api/system/tenants/acme", rootToken, nil, "If-Match", etag); r.status != 412 {
		t.Fatalf("stale If-Match on delete: %d %s", r.status, r.body)
	}
	e.requireUnchanged(t, before, "a refused write changed the store")
	if r := e.do("PUT", "/api/system/tenants/acme", rootToken, body, "If-Match", "W/\"3\""); r.status != 400 || r.errorCode(t) != httpapi.CodeInvalidHeader {
		t.Fatalf("weak If-Match: %d %s", r.status, r.body)
	}

	// Admin route view of the same tenant.
	adm := e.expect(e.do("GET", "/api/admin/acme/tenant", rootToken, nil), 200).json(t)
	if adm["name"] != "Acme Corp" {
		t.Fatalf("admin tenant: %v", adm)
	}

	// List with paging.
	for i := 0; i < 5; i++ {
		e.createTenant(fmt.Sprintf("page-%d", i))
	}
	var ids []string
	after := ""
	for i := 0; i < 10; i++ {
		l := e.expect(e.do("GET", "/api/system/tenants?limit=3&after="+after, rootToken, nil), 200).json(t)
		if l["total"].(float64) != 7 {
			t.Fatalf("total %v", l["total"])
		}
		for _, x := range l["tenants"].([]any) {
			ids = append(ids, x.(map[string]any)["id"].(string))
		}
		if after = l["next"].(string); after == "" {
			break
		}
	}
	if len(ids) != 7 || !sort.StringsAreSorted(ids) || ids[len(ids)-1] != "page-4" {
		t.Fatalf("paged tenant ids: %v", ids)
	}

	// Delete frees the id; the old one is listed with include_deleted.
	e.expect(e.do("DELETE", "/api/system/tenants/acme", rootToken, nil), 204)
	e.expect(e.do("GET", "/api/system/tenants/acme", rootToken, nil), 404)
	e.expect(e.do("GET", "/api/admin/acme/tenant", rootToken, nil), 404)
	e.expect(e.do("DELETE", "/api/system/tenants/acme", rootToken, nil), 404)
	all := e.expect(e.do("GET", "/api/system/tenants?include_deleted=true", rootToken, nil), 200).json(t)
	var deletedStatus string
	for _, x := range all["tenants"].([]any) {
		if x.(map[string]any)["id"] == "acme" {
			deletedStatus = x.(map[string]any)["status"].(string)
		}
	}
	if deletedStatus != "DELETED" {
		t.Fatalf("deleted tenant listed with status %q", deletedStatus)
	}
	again := e.expect(e.do("POST", "/api/system/tenants", rootToken, map[string]any{"id": "acme", "name": "Reborn"}), 201).json(t)
	if again["name"] != "Reborn" {
		t.Fatalf("re-created: %v", again)
	}
	// The new tenant does not inherit the old one's audit history.
	evs := e.expect(e.do("GET", "/api/admin/acme/events", rootToken, nil), 200).json(t)["events"].([]any)
	if len(evs) != 1 || evs[0].(map[string]any)["action"] != "create" {
		t.Fatalf("events of the re-created tenant: %v", evs)
	}
}

func TestTenantStatusLifecycle(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	tok := e.credential("acme")
	put := func(path, token, status string) resp {
		return e.do("PUT", path, token, map[string]any{"name": "Acme", "status": status})
	}
	// Only AVAILABLE <-> DISABLED can be requested.
	for _, s := range []string{"CREATING", "UPDATING", "DELETED"} {
		r := put("/api/system/tenants/acme", rootToken, s)
		if r.status != 409 || r.errorCode(t) != httpapi.CodeInvalidTransition {
			t.Errorf("status %s: %d %s", s, r.status, r.body)
		}
	}
	if r := put("/api/system/tenants/acme", rootToken, "SLEEPING"); r.status != 400 || r.json(t)["details"].(map[string]any)["field"] != "status" {
		t.Errorf("unknown status: %d %s", r.status, r.body)
	}
	if r := e.do("POST", "/api/system/tenants", rootToken, map[string]any{"id": "x1", "name": "x", "status": "CREATING"}); r.status != 400 {
		t.Errorf("create with CREATING: %d %s", r.status, r.body)
	}
	e.expect(put("/api/admin/acme/tenant", tok, "DISABLED"), 200)
	// Disabled: reading works, everything else is 403 tenant_disabled.
	if m := e.expect(e.do("GET", "/api/admin/acme/tenant", tok, nil), 200).json(t); m["status"] != "DISABLED" {
		t.Fatalf("status after disabling: %v", m["status"])
	}
	for _, r := range []resp{
		e.do("GET", "/api/admin/acme/events", tok, nil),
		e.do("PUT", "/api/admin/acme/tenant", tok, map[string]any{"name": "Renamed while disabled", "status": "DISABLED"}),
		e.do("PUT", "/api/admin/acme/tenant", tok, map[string]any{"name": "Renamed while disabled"}),
	} {
		if r.status != 403 || r.errorCode(t) != httpapi.CodeTenantDisabled {
			t.Errorf("disabled tenant: %d %s", r.status, r.body)
		}
	}
	// Re-enabling through the tenant's own route works.
	e.expect(put("/api/admin/acme/tenant", tok, "AVAILABLE"), 200)
	e.expect(e.do("GET", "/api/admin/acme/events", tok, nil), 200)
	// The system route can disable and rename regardless.
	e.expect(put("/api/system/tenants/acme", rootToken, "DISABLED"), 200)
	e.expect(e.do("PUT", "/api/system/tenants/acme", rootToken, map[string]any{"name": "Renamed"}), 200)
}

func TestBadInputIsRejectedWithTheErrorShape(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	big := `{"name":"` + strings.Repeat("x", admin.DefaultBodyLimit) + `"}`
	cases := []struct {
		name, method, path string
		body               any
		headers            []string
		status             int
		code, field        string
	}{
		{"unknown field", "POST", "/api/system/tenants", `{"name":"a","colour":"red"}`, nil, 400, httpapi.CodeUnknownField, "colour"},
		{"wrong type", "POST", "/api/system/tenants", `{"name":42}`, nil, 400, httpapi.CodeInvalidField, "name"},
		{"wrong nested type", "POST", "/api/system/tenants", `{"name":"a","labels":{"k":1}}`, nil, 400, httpapi.CodeInvalidField, "labels"},
		{"malformed JSON", "POST", "/api/system/tenants", `{"name":`, nil, 400, httpapi.CodeInvalidJSON, ""},
		{"not an object", "POST", "/api/system/tenants", `[1,2]`, nil, 400, httpapi.CodeInvalidJSON, ""},
		{"trailing data", "POST", "/api/system/tenants", `{"name":"a"} {"name":"b"}`, nil, 400, httpapi.CodeInvalidJSON, ""},
		{"empty body", "POST", "/api/system/tenants", ``, nil, 400, httpapi.CodeInvalidJSON, ""},
		{"oversize body", "POST", "/api/system/tenants", big, nil, 413, httpapi.CodeBodyTooLarge, ""},
		{"missing name", "POST", "/api/system/tenants", `{"id":"abc"}`, nil, 400, httpapi.CodeMissingField, "name"},
		{"blank name", "POST", "/api/system/tenants", `{"id":"abc","name":"  "}`, nil, 400, httpapi.CodeMissingField, "name"},
		{"bad id", "POST", "/api/system/tenants", `{"id":"Not_Valid","name":"a"}`, nil, 400, httpapi.CodeInvalidField, "id"},
		{"long id", "POST", "/api/system/tenants", `{"id":"` + strings.Repeat("a", 64) + `","name":"a"}`, nil, 400, httpapi.CodeInvalidField, "id"},
		{"bad label", "POST", "/api/system/tenants", `{"name":"a","labels":{"-bad-":"v"}}`, nil, 400, httpapi.CodeInvalidField, "labels.-bad-"},
		{"wrong content type", "POST", "/api/system/tenants", `name=a`, []string{"Content-Type", "application/x-www-form-urlencoded"}, 415, httpapi.CodeUnsupportedMedia, ""},
		{"bad tid in path", "GET", "/api/system/tenants/UPPER", nil, nil, 400, httpapi.CodeInvalidField, "tid"},
		{"bad tid in admin path", "GET", "/api/admin/bad_tid/tenant", nil, nil, 400, httpapi.CodeInvalidField, "tid"},
		{"id mismatch", "PUT", "/api/system/tenants/acme", `{"id":"other","name":"a"}`, nil, 400, httpapi.CodeInvalidField, "id"},
		{"bad limit", "GET", "/api/system/tenants?limit=0", nil, nil, 400, httpapi.CodeInvalidField, "limit"},
		{"huge limit", "GET", "/api/system/tenants?limit=100000", nil, nil, 400, httpapi.CodeInvalidField, "limit"},
		{"bad cursor", "GET", "/api/system/tenants?after=zzz", nil, nil, 400, httpapi.CodeInvalidField, "after"},
		{"bad event cursor", "GET", "/api/admin/acme/events?after=zzz", nil, nil, 400, httpapi.CodeInvalidField, "after"},
		{"bad bool", "GET", "/api/system/tenants?include_deleted=maybe", nil, nil, 400, httpapi.CodeInvalidField, "include_deleted"},
		{"bad from", "GET", "/api/admin/acme/events?from=yesterday", nil, nil, 400, httpapi.CodeInvalidField, "from"},
		{"to before from", "GET", "/api/admin/acme/events?from=2000&to=1000", nil, nil, 400, httpapi.CodeInvalidField, "to"},
		{"bad credential id", "DELETE", "/api/system/tenants/acme/credentials/a%20b", nil, nil, 400, httpapi.CodeInvalidField, "cid"},
		{"unknown route", "GET", "/api/nothing-here", nil, nil, 404, httpapi.CodeNotFound, ""},
		{"wrong method", "PATCH", "/api/system/tenants", nil, nil, 405, httpapi.CodeMethodNotAllowed, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := e.snapshot()
			r := e.do(c.method, c.path, rootToken, c.body, c.headers...)
			if r.status != c.status {
				t.Fatalf("status %d, want %d: %.300s", r.status, c.status, r.body)
			}
			if code := r.errorCode(t); code != c.code {
				t.Fatalf("error_code %q, want %q: %.300s", code, c.code, r.body)
			}
			if c.field != "" {
				m := r.json(t)
				if f, _ := m["details"].(map[string]any)["field"].(string); f != c.field {
					t.Fatalf("details.field %q, want %q: %s", f, c.field, r.body)
				}
				if !strings.Contains(m["error"].(string), c.field) {
					t.Fatalf("message does not name the field %q: %s", c.field, m["error"])
				}
			}
			e.requireUnchanged(t, before, "a rejected request changed the store")
		})
	}
}

func TestAuditEvents(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	e.createTenant("other")
	tok := e.credential("acme")
	e.expect(e.do("PUT", "/api/admin/acme/tenant", tok, map[string]any{"name": "A2"}, "X-Request-Id", "rid-42"), 200)
	e.expect(e.do("PUT", "/api/system/tenants/acme", rootToken, map[string]any{"name": "A3"}), 200)
	list := func(q string) []map[string]any {
		t.Helper()
		r := e.expect(e.do("GET", "/api/admin/acme/events"+q, rootToken, nil), 200).json(t)
		var out []map[string]any
		for _, x := range r["events"].([]any) {
			out = append(out, x.(map[string]any))
		}
		return out
	}
	all := list("")
	// newest first: update by root, update by credential, credential created, tenant created
	if len(all) != 4 {
		t.Fatalf("events: %v", all)
	}
	want := []struct{ action, kind string }{{"update", "tenants"}, {"update", "tenants"}, {"create", "admin-credentials"}, {"create", "tenants"}}
	for i, w := range want {
		if all[i]["action"] != w.action || all[i]["kind"] != w.kind || all[i]["tenant_id"] != "acme" {
			t.Fatalf("event %d: %v", i, all[i])
		}
	}
	if all[1]["request_id"] != "rid-42" || !strings.HasPrefix(all[1]["actor"].(string), "credential:") || all[0]["actor"] != "bootstrap-admin" {
		t.Fatalf("actor/request id: %v / %v", all[0], all[1])
	}
	if all[0]["revision"].(float64) <= all[1]["revision"].(float64) {
		t.Fatalf("revisions not descending: %v", all)
	}
	if got := list("?kind=admin-credentials"); len(got) != 1 {
		t.Fatalf("kind filter: %v", got)
	}
	if got := list("?action=update&actor=bootstrap-admin"); len(got) != 1 || got[0]["action"] != "update" {
		t.Fatalf("action+actor filter: %v", got)
	}
	if got := list("?from=2999-01-01T00:00:00Z"); len(got) != 0 {
		t.Fatalf("from filter: %v", got)
	}
	if got := list("?to=946684800"); len(got) != 0 {
		t.Fatalf("to filter: %v", got)
	}
	// Paging.
	first := e.expect(e.do("GET", "/api/admin/acme/events?limit=3", rootToken, nil), 200).json(t)
	if len(first["events"].([]any)) != 3 || first["next"] == "" {
		t.Fatalf("first page: %v", first)
	}
	second := e.expect(e.do("GET", "/api/admin/acme/events?limit=3&after="+first["next"].(string), rootToken, nil), 200).json(t)
	if evs := second["events"].([]any); len(evs) != 1 || evs[0].(map[string]any)["action"] != "create" || second["next"] != "" {
		t.Fatalf("second page: %v", second)
	}
	// The other tenant's events stay apart.
	other := e.expect(e.do("GET", "/api/admin/other/events", rootToken, nil), 200).json(t)["events"].([]any)
	if len(other) != 1 {
		t.Fatalf("other tenant events: %v", other)
	}
}

// TestMetricsNeedASystemToken: the metrics name every tenant and gateway,
// so /metrics of the admin API needs a system-wide token.
func TestMetricsNeedASystemToken(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	e.expect(e.do("POST", "/api/admin/acme/gateways", rootToken, map[string]any{"id": "edge", "name": "edge"}), 201)
	for _, tok := range []string{"", "not-the-token-at-all"} {
		r := e.do("GET", "/metrics", tok, nil)
		if r.status != 401 || r.errorCode(t) != httpapi.CodeUnauthorized || strings.Contains(string(r.body), "acme") {
			t.Fatalf("/metrics with token %q: %d %s", tok, r.status, r.body)
		}
	}
	if r := e.do("GET", "/metrics", e.credential("acme"), nil); r.status != 403 || r.errorCode(t) != httpapi.CodeForbidden {
		t.Fatalf("/metrics with a tenant token: %d %s", r.status, r.body)
	}
	if m := e.expect(e.do("GET", "/metrics", rootToken, nil), 200); !strings.Contains(string(m.body), "gatehouse_http_requests_total") {
		t.Fatalf("/metrics with the bootstrap token: %.300s", m.body)
	}
}

func TestMetricsAndReadiness(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	e.do("GET", "/api/system/tenants/acme", rootToken, nil)
	e.do("GET", "/api/system/tenants/nope", rootToken, nil)
	m := string(e.expect(e.do("GET", "/metrics", rootToken, nil), 200).body)
	for _, want := range []string{
		`gatehouse_http_requests_total{code="201",method="POST",route="/api/system/tenants"} 1`,
		`gatehouse_http_requests_total{code="404",method="GET",route="/api/system/tenants/:tid"} 1`,
		`gatehouse_http_request_duration_seconds_count{method="GET",route="/api/system/tenants/:tid"} 2`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	// The same metrics, for a listener of their own (--metrics-addr).
	rec := httptest.NewRecorder()
	e.api.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `gatehouse_http_requests_total{code="201",method="POST",route="/api/system/tenants"} 1`) {
		t.Fatalf("MetricsHandler: %d %.300s", rec.Code, rec.Body)
	}
	e.expect(e.do("GET", "/readyz", "", nil), 200)
	e.store.Close()
	if r := e.do("GET", "/readyz", "", nil); r.status != 503 || r.errorCode(t) != httpapi.CodeStoreUnavailable || r.header.Get("Retry-After") == "" {
		t.Fatalf("readyz with a closed store: %d %s", r.status, r.body)
	}
	e.expect(e.do("GET", "/healthz", "", nil), 200)
}
