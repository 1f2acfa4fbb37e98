package admin_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/admin"
	"github.com/gatehouse-dev/gatehouse/internal/passwords"
	"github.com/gatehouse-dev/gatehouse/internal/pgtest"
	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	"github.com/gatehouse-dev/gatehouse/model"
	serverkeys "github.com/gatehouse-dev/gatehouse/oauth/keys"
	"github.com/gatehouse-dev/gatehouse/store"
)

// serverKinds are what the server routes write, beside the audit log.
var serverKinds = []string{model.KindServer, serverkeys.Kind, model.KindClaim, model.KindService, model.KindScope}

// serverState renders every object of serverKinds of tid (id and
// revision) and the number of tid's audit events: what a refused write
// must leave as it was.
func (e *env) serverState(tid string) string {
	e.t.Helper()
	ctx := context.Background()
	var b strings.Builder
	for _, kind := range serverKinds {
		pg, err := e.store.List(ctx, store.Query{Kind: kind, TenantID: tid, IncludeDeleted: true})
		if err != nil {
			e.t.Fatal(err)
		}
		for _, o := range pg.Items {
			fmt.Fprintf(&b, "%s/%s rev=%d\n", kind, o.ID, o.Revision)
		}
	}
	evs, err := e.store.ListEvents(ctx, store.EventQuery{TenantID: tid})
	if err != nil {
		e.t.Fatal(err)
	}
	fmt.Fprintf(&b, "%d events\n", len(evs.Items))
	return b.String()
}

// storedServer reads a server's stored spec.
func (e *env) storedServer(tid, id string) (*store.Object, model.ServerSpec) {
	e.t.Helper()
	o, err := e.store.Get(context.Background(), model.KindServer, tid, id)
	if err != nil {
		e.t.Fatalf("server %s/%s: %v", tid, id, err)
	}
	var spec model.ServerSpec
	if err := json.Unmarshal(o.Spec, &spec); err != nil {
		e.t.Fatal(err)
	}
	return o, spec
}

// exists reports whether kind/tid/id is stored (live).
func (e *env) exists(kind, tid, id string) bool {
	e.t.Helper()
	_, err := e.store.Get(context.Background(), kind, tid, id)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		e.t.Fatal(err)
	}
	return err == nil
}

// put stores an object directly (kinds whose API another file builds).
func (e *env) put(kind, tid, id string, spec any) {
	e.t.Helper()
	raw, err := json.Marshal(spec)
	if err != nil {
		e.t.Fatal(err)
	}
	testkit.Create(e.t, e.store, &store.Object{Kind: kind, TenantID: tid, ID: id, Name: id, Spec: raw})
}

// raw sends a request without holding the answer to the OpenAPI
// document (the configuration document's schema lists the kinds that
// existed before servers).
func (e *env) raw(method, path string, body any, headers ...string) resp {
	e.t.Helper()
	r := testkit.NewHTTPClient(e.srv.URL, rootToken).Do(e.t, method, path, body, headers...)
	return resp{status: r.Status, header: r.Header, body: r.Body}
}

func secretSHA256(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// TestServerDefaults: a server created from {} gets every default of
// WAVE2 §1.1, a generated id (its name) and a 256-bit secret shown once
// and stored as its SHA-256; no signing key is made.
func TestServerDefaults(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	r := e.expect(e.do("POST", "/api/admin/acme/servers", rootToken, map[string]any{}), 201)
	m := r.json(t)
	id, _ := m["id"].(string)
	if id == "" || m["name"] != id || m["tenant_id"] != "acme" || r.header.Get("ETag") == "" {
		t.Fatalf("create: %v %s", r.header, r.body)
	}
	if r.header.Get("Cache-Control") != "no-store" {
		t.Errorf("the answer carrying the secret may be cached: Cache-Control %q", r.header.Get("Cache-Control"))
	}
	want := map[string]any{
		"system": false, "issuer_url": "https://gh.example/acme/" + id, "key_type": "rsa",
		"grant_types":            []any{"authorization_code", "client_credentials", "refresh_token"},
		"authorization_code_ttl": "10m0s", "access_token_ttl": "1h0m0s", "id_token_ttl": "1h0m0s",
		"refresh_token_ttl": "720h0m0s", "cookie_max_age": "1h0m0s", "key_activation_delay": "5m0s",
		"enforce_pkce": false, "profiles": []any{}, "access_token_strategy": "jwt", "single_session_per_client": false,
		"audiences": []any{}, "enable_dynamic_client_registration": false,
		"authentications": map[string]any{"methods": []any{}}, "labels": map[string]any{},
	}
	for k, v := range want {
		if fmt.Sprint(m[k]) != fmt.Sprint(v) {
			t.Errorf("%s = %v, want %v", k, m[k], v)
		}
	}
	secret, _ := m["secret"].(string)
	if len(secret) != 43 { // 32 random bytes, base64url
		t.Fatalf("generated secret %q is not 256 bits", secret)
	}
	o, spec := e.storedServer("acme", id)
	if spec.SecretHash != secretSHA256(secret) || strings.Contains(string(o.Spec), secret) {
		t.Fatalf("stored spec %s: want the secret's SHA-256 only", o.Spec)
	}
	got := e.expect(e.do("GET", "/api/admin/acme/servers/"+id, rootToken, nil), 200)
	if strings.Contains(string(got.body), secret) || strings.Contains(string(got.body), "secret") {
		t.Fatalf("GET shows the secret: %s", got.body)
	}
	delete(m, "secret")
	if !sameExceptVolatile(m, got.json(t)) {
		t.Fatalf("GET differs from create:\n%v\n%v", m, got.json(t))
	}
	if e.exists(serverkeys.Kind, "acme", id) {
		t.Fatal("creating a server generated signing keys")
	}
	list := e.expect(e.do("GET", "/api/admin/acme/servers", rootToken, nil), 200).json(t)
	var ids []string
	for _, s := range items(t, list, "servers") {
		ids = append(ids, s["id"].(string))
		if strings.Contains(fmt.Sprint(s), "secret") {
			t.Fatalf("the list shows a secret: %v", s)
		}
	}
	slices.Sort(ids)
	wantIDs := []string{"admin", "default", "developer", id}
	slices.Sort(wantIDs)
	if !slices.Equal(ids, wantIDs) || list["total"] != float64(4) {
		t.Fatalf("servers %v (total %v), want %v", ids, list["total"], wantIDs)
	}

	// Every field given.
	given := strings.Repeat("s3cr3t-", 6)
	full := map[string]any{
		"id": "full", "name": "Full", "description": "every field", "labels": map[string]string{"tier": "1"}, "secret": given,
		"key_type": "ecdsa", "grant_types": []string{"authorization_code", "implicit"},
		"authorization_code_ttl": "30m", "access_token_ttl": 120, "id_token_ttl": "2h", "refresh_token_ttl": "8760h",
		"cookie_max_age": "90s", "key_activation_delay": "0s", "enforce_pkce": true, "profiles": []string{},
		"logo_uri": "https://cdn.example/logo.png", "access_token_strategy": "opaque", "single_session_per_client": true,
		"audiences": []string{"api://pets", "shop"}, "enable_dynamic_client_registration": false, "user_policy_id": "", "developer_policy_id": "",
		"system": false, "authentications": map[string]any{"methods": []any{}}, "tenant_id": "acme",
	}
	f := e.expect(e.do("POST", "/api/admin/acme/servers", rootToken, full), 201).json(t)
	for k, v := range map[string]any{
		"name": "Full", "description": "every field", "secret": given, "key_type": "ecdsa", "grant_types": []any{"authorization_code", "implicit"},
		"authorization_code_ttl": "30m0s", "access_token_ttl": "2m0s", "id_token_ttl": "2h0m0s", "refresh_token_ttl": "8760h0m0s",
		"cookie_max_age": "1m30s", "key_activation_delay": "0s", "enforce_pkce": true, "logo_uri": "https://cdn.example/logo.png",
		"access_token_strategy": "opaque", "single_session_per_client": true, "audiences": []any{"api://pets", "shop"},
		"labels": map[string]any{"tier": "1"}, "issuer_url": "https://gh.example/acme/full",
	} {
		if fmt.Sprint(f[k]) != fmt.Sprint(v) {
			t.Errorf("full: %s = %v, want %v", k, f[k], v)
		}
	}
	if _, spec := e.storedServer("acme", "full"); spec.SecretHash != secretSHA256(given) {
		t.Fatal("the given secret is not stored as its SHA-256")
	}
	evs := e.eventsOf("acme", model.KindServer)
	if len(evs) != 2 || evs[0]["action"] != "create" || evs[0]["object_id"] != "full" || strings.Contains(fmt.Sprint(evs), given) {
		t.Fatalf("audit events: %v", evs)
	}
}

// TestServerValidation: every bad field is a 400 naming it, and nothing
// is written (no server, no event).
func TestServerValidation(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	many := make([]string, 21)
	for i := range many {
		many[i] = fmt.Sprintf("aud-%d", i)
	}
	cases := []struct {
		body    map[string]any
		field   string
		message string
	}{
		{map[string]any{"id": "bad id"}, "id", ""},
		{map[string]any{"name": strings.Repeat("n", 257)}, "name", ""},
		{map[string]any{"tenant_id": "other"}, "tenant_id", ""},
		{map[string]any{"secret": "too-short"}, "secret", "at least 32"},
		{map[string]any{"secret": strings.Repeat("x", 31) + " "}, "secret", ""},
		{map[string]any{"key_type": "dsa"}, "key_type", ""},
		{map[string]any{"key_type": 5}, "key_type", ""},
		{map[string]any{"grant_types": []string{"password"}}, "grant_types[0]", "not supported (OAuth 2.0 security BCP)"},
		{map[string]any{"grant_types": []string{"authorization_code", "urn:ietf:params:oauth:grant-type:device_code"}}, "grant_types[1]", "not supported"},
		{map[string]any{"grant_types": []string{"urn:ietf:params:oauth:grant-type:token-exchange"}}, "grant_types[0]", "not supported"},
		{map[string]any{"grant_types": []string{"urn:ietf:params:oauth:grant-type:jwt-bearer"}}, "grant_types[0]", "not supported"},
		{map[string]any{"grant_types": []string{"magic"}}, "grant_types[0]", "unknown grant type"},
		{map[string]any{"grant_types": []string{"implicit", "implicit"}}, "grant_types[1]", "twice"},
		{map[string]any{"grant_types": []string{}}, "grant_types", "at least one"},
		{map[string]any{"authorization_code_ttl": "0s"}, "authorization_code_ttl", ""},
		{map[string]any{"authorization_code_ttl": "2h"}, "authorization_code_ttl", "at most 1h"},
		{map[string]any{"authorization_code_ttl": "500ms"}, "authorization_code_ttl", "at least 1s"},
		{map[string]any{"access_token_ttl": "25h"}, "access_token_ttl", ""},
		{map[string]any{"id_token_ttl": "-1h"}, "id_token_ttl", ""},
		{map[string]any{"refresh_token_ttl": "9000h"}, "refresh_token_ttl", ""},
		{map[string]any{"cookie_max_age": "soon"}, "cookie_max_age", "not a duration"},
		{map[string]any{"cookie_max_age": true}, "cookie_max_age", ""},
		{map[string]any{"key_activation_delay": "25h"}, "key_activation_delay", ""},
		{map[string]any{"key_activation_delay": "-1s"}, "key_activation_delay", ""},
		{map[string]any{"profiles": []string{"fapi_rw"}}, "profiles[0]", "not supported"},
		{map[string]any{"profiles": []string{"other"}}, "profiles[0]", "not supported"},
		{map[string]any{"logo_uri": "http://cdn.example/logo.png"}, "logo_uri", "https"},
		{map[string]any{"logo_uri": "logo.png"}, "logo_uri", ""},
		{map[string]any{"access_token_strategy": "paseto"}, "access_token_strategy", ""},
		{map[string]any{"audiences": []string{""}}, "audiences[0]", ""},
		{map[string]any{"audiences": []string{"a", "a"}}, "audiences[1]", "twice"},
		{map[string]any{"audiences": many}, "audiences", "at most 20"},
		{map[string]any{"enable_dynamic_client_registration": true}, "enable_dynamic_client_registration", "not supported yet"},
		{map[string]any{"user_policy_id": "gate"}, "user_policy_id", "not supported yet"},
		{map[string]any{"developer_policy_id": "gate"}, "developer_policy_id", "not supported yet"},
		{map[string]any{"system": true}, "system", "read-only"},
		{map[string]any{"issuer_url": "https://evil.example/acme/x"}, "issuer_url", "read-only"},
		{map[string]any{"authentications": map[string]any{"methods": []any{map[string]any{"id": "m", "method": "static"}}}}, "authentications", ""},
		{map[string]any{"rotated_secrets": []string{"old"}}, "rotated_secrets", ""},
		{map[string]any{"jwks": map[string]any{"keys": []any{}}}, "jwks", ""},
		{map[string]any{"colour": "red"}, "colour", ""},
	}
	before := e.serverState("acme")
	for _, c := range cases {
		body := c.body
		if _, ok := body["id"]; !ok {
			body["id"] = "x"
		}
		r := e.do("POST", "/api/admin/acme/servers", rootToken, body)
		e.expectFieldError(r, c.field)
		if c.message != "" && !strings.Contains(string(r.body), c.message) {
			t.Errorf("%v: message lacks %q: %s", c.body, c.message, r.body)
		}
		// The same rules hold for PUT, of a system server too.
		delete(body, "id")
		if c.field == "system" || c.field == "issuer_url" || c.field == "authentications" || c.field == "id" {
			continue // read-only on PUT too (TestServerUpdate); id is the path's
		}
		e.expectFieldError(e.do("PUT", "/api/admin/acme/servers/default", rootToken, body), c.field)
	}
	if after := e.serverState("acme"); after != before {
		t.Fatalf("refused writes changed the store:\nbefore:\n%safter:\n%s", before, after)
	}
	// Every problem is listed.
	r := e.do("POST", "/api/admin/acme/servers", rootToken, map[string]any{"key_type": "dsa", "grant_types": []string{"password"}, "access_token_ttl": "0s"})
	d, _ := r.json(t)["details"].(map[string]any)
	if errs, _ := d["errors"].([]any); len(errs) != 3 {
		t.Fatalf("want the 3 problems listed: %s", r.body)
	}
}

// TestServerUpdate: PUT replaces the settings and keeps the secret (unless
// a new one is given), the login methods and system-ness; read-only
// fields cannot change; PATCH changes only what it names; If-Match is
// honoured; system servers can be updated.
func TestServerUpdate(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	secret := strings.Repeat("k", 40)
	e.expect(e.do("POST", "/api/admin/acme/servers", rootToken, map[string]any{"id": "s1", "name": "S1", "secret": secret}), 201)
	e.expect(e.do("PUT", "/api/admin/acme/servers/s1/authentications", rootToken, map[string]any{"methods": []any{
		map[string]any{"id": "login", "method": "static", "static": map[string]any{"users": []any{map[string]any{"username": "alice", "password": "alice-password"}}}},
	}}), 200)
	_, before := e.storedServer("acme", "s1")
	g := e.expect(e.do("GET", "/api/admin/acme/servers/s1", rootToken, nil), 200)
	cur, tag := g.json(t), g.header.Get("ETag")

	// GET's body is a valid PUT body, and changes nothing.
	put := e.expect(e.do("PUT", "/api/admin/acme/servers/s1", rootToken, cur, "If-Match", tag), 200)
	if !sameExceptVolatile(cur, put.json(t)) || strings.Contains(string(put.body), "secret\"") {
		t.Fatalf("PUT of GET's body changed the server:\n%v\n%s", cur, put.body)
	}
	e.expect(e.do("PUT", "/api/admin/acme/servers/s1", rootToken, cur, "If-Match", tag), 412)

	// Settings replaced (left out: defaults); secret, methods kept.
	up := e.expect(e.do("PUT", "/api/admin/acme/servers/s1", rootToken, map[string]any{"name": "S1b", "access_token_ttl": "2h", "key_type": "ecdsa"}), 200).json(t)
	if up["name"] != "S1b" || up["access_token_ttl"] != "2h0m0s" || up["key_type"] != "ecdsa" || up["refresh_token_ttl"] != "720h0m0s" {
		t.Fatalf("PUT: %v", up)
	}
	_, after := e.storedServer("acme", "s1")
	if after.SecretHash != before.SecretHash || after.SecretHash != secretSHA256(secret) {
		t.Fatal("PUT without a secret changed the secret")
	}
	if len(after.Authentications) != 1 || after.Authentications[0].Static.Users[0].PasswordHash != before.Authentications[0].Static.Users[0].PasswordHash {
		t.Fatalf("PUT of the server lost its login methods: %+v", after.Authentications)
	}
	// A new secret replaces the hash and is not echoed.
	newSecret := strings.Repeat("n", 33)
	r := e.expect(e.do("PUT", "/api/admin/acme/servers/s1", rootToken, map[string]any{"name": "S1b", "secret": newSecret}), 200)
	if strings.Contains(string(r.body), newSecret) {
		t.Fatal("PUT echoed the secret")
	}
	if _, spec := e.storedServer("acme", "s1"); spec.SecretHash != secretSHA256(newSecret) {
		t.Fatal("PUT with a secret did not replace it")
	}

	// Read-only fields.
	state := e.serverState("acme")
	for f, v := range map[string]any{"system": true, "issuer_url": "https://gh.example/acme/other",
		"authentications": map[string]any{"methods": []any{}}} {
		r := e.do("PUT", "/api/admin/acme/servers/s1", rootToken, map[string]any{"name": "S1b", f: v})
		e.expectFieldError(r, f)
		if r.errorCode(t) != "read_only_field" {
			t.Errorf("%s: %s", f, r.body)
		}
	}
	e.expectFieldError(e.do("PUT", "/api/admin/acme/servers/s1", rootToken, map[string]any{"id": "s2", "name": "x"}), "id")
	e.expectFieldError(e.do("PATCH", "/api/admin/acme/servers/default", rootToken, map[string]any{"system": false},
		"Content-Type", admin.MergePatchType), "system")
	if e.serverState("acme") != state {
		t.Fatal("a refused PUT changed the store")
	}

	// PATCH changes only what it names.
	b := e.expect(e.do("GET", "/api/admin/acme/servers/s1", rootToken, nil), 200).json(t)
	p := e.expect(e.do("PATCH", "/api/admin/acme/servers/s1", rootToken, map[string]any{"id_token_ttl": "3h"},
		"Content-Type", admin.MergePatchType), 200).json(t)
	if p["id_token_ttl"] != "3h0m0s" {
		t.Fatalf("PATCH: %v", p)
	}
	delete(b, "id_token_ttl")
	delete(p, "id_token_ttl")
	if !sameExceptVolatile(b, p) {
		t.Fatalf("PATCH changed other fields:\n%v\n%v", b, p)
	}

	// A system server can be updated and stays one.
	d := e.expect(e.do("PUT", "/api/admin/acme/servers/default", rootToken, map[string]any{"name": "Default", "enforce_pkce": true}), 200).json(t)
	if d["system"] != true || d["enforce_pkce"] != true {
		t.Fatalf("system server update: %v", d)
	}
	e.expect(e.do("PUT", "/api/admin/acme/servers/nosuch", rootToken, map[string]any{"name": "x"}), 404)
}

// TestSystemServers: every tenant gets admin, developer and default
// (system, with the defaults), which cannot be deleted; the system tenant
// and its server come from EnsureSystemTenant, idempotently, and the
// system tenant cannot be deleted.
func TestSystemServers(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	list := e.expect(e.do("GET", "/api/admin/acme/servers", rootToken, nil), 200).json(t)
	names := map[string]string{}
	for _, s := range items(t, list, "servers") {
		if s["system"] != true || s["grant_types"] == nil || s["access_token_ttl"] != "1h0m0s" {
			t.Errorf("system server %v", s)
		}
		names[s["id"].(string)] = s["name"].(string)
	}
	if fmt.Sprint(names) != "map[admin:Admin default:Default developer:Developer]" {
		t.Fatalf("system servers: %v", names)
	}
	for _, id := range []string{"admin", "developer", "default"} {
		if _, spec := e.storedServer("acme", id); spec.SecretHash == "" || !spec.System {
			t.Errorf("%s: stored %+v", id, spec)
		}
	}
	state := e.serverState("acme")
	for _, id := range []string{"admin", "developer", "default"} {
		r := e.do("DELETE", "/api/admin/acme/servers/"+id, rootToken, nil)
		if r.status != 400 || r.errorCode(t) != "in_use" || !strings.Contains(string(r.body), "system server") {
			t.Fatalf("delete %s: %d %s", id, r.status, r.body)
		}
	}
	if e.serverState("acme") != state {
		t.Fatal("a refused delete changed the store")
	}
	// The tenant's deletion takes them along; a new tenant of that id
	// gets new ones.
	e.expect(e.do("DELETE", "/api/system/tenants/acme", rootToken, nil), 204)
	if e.exists(model.KindServer, "acme", "default") {
		t.Fatal("the deleted tenant's servers remain")
	}
	e.createTenant("acme")
	if !e.exists(model.KindServer, "acme", "default") {
		t.Fatal("the re-created tenant has no default server")
	}

	// The system tenant.
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() { errs[i] = admin.EnsureSystemTenant(ctx, e.store) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	sysState := e.serverState(model.SystemTenantID)
	if err := admin.EnsureSystemTenant(ctx, e.store); err != nil {
		t.Fatal(err)
	}
	if e.serverState(model.SystemTenantID) != sysState {
		t.Fatal("EnsureSystemTenant is not idempotent")
	}
	tn := e.expect(e.do("GET", "/api/system/tenants/system", rootToken, nil), 200).json(t)
	if tn["status"] != "AVAILABLE" {
		t.Fatalf("system tenant: %v", tn)
	}
	srv := e.expect(e.do("GET", "/api/admin/system/servers/system", rootToken, nil), 200).json(t)
	if srv["system"] != true || srv["issuer_url"] != "https://gh.example/system/system" {
		t.Fatalf("system server: %v", srv)
	}
	if ss := items(t, e.expect(e.do("GET", "/api/admin/system/servers", rootToken, nil), 200).json(t), "servers"); len(ss) != 1 {
		t.Fatalf("the system tenant has servers %v, want only system", ss)
	}
	if evs := e.eventsOf(model.SystemTenantID, ""); len(evs) != 2 {
		t.Fatalf("system tenant events: %v", evs)
	}
	e.expectFieldError(e.do("DELETE", "/api/system/tenants/system", rootToken, nil), "tid")
	if r := e.do("DELETE", "/api/admin/system/servers/system", rootToken, nil); r.status != 400 || r.errorCode(t) != "in_use" {
		t.Fatalf("delete system/system: %d %s", r.status, r.body)
	}
	e.expectFieldError(e.do("POST", "/api/system/tenants", rootToken, map[string]any{"id": "system", "name": "again"}), "id")
	if e.serverState(model.SystemTenantID) != sysState {
		t.Fatal("refused writes changed the system tenant")
	}
}

// TestServerDeleteInUse: a server named by clients, gateways, services or
// scopes is not deleted (400 in_use listing them); once they are gone it
// is. Services and scopes check server_id (or authorization_server_id).
func TestServerDeleteInUse(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	e.expect(e.do("POST", "/api/admin/acme/servers", rootToken, map[string]any{"id": "s1"}), 201)

	// The references are checked.
	state := e.serverState("acme")
	e.expectFieldError(e.do("POST", "/api/admin/acme/services", rootToken, map[string]any{"id": "svc", "name": "Svc", "url": "http://svc", "server_id": "nosuch"}), "server_id")
	e.expectFieldError(e.do("POST", "/api/admin/acme/scopes", rootToken, map[string]any{"id": "sc", "name": "sc", "authorization_server_id": "nosuch"}), "server_id")
	e.expectFieldError(e.do("POST", "/api/admin/acme/scopes", rootToken, map[string]any{"id": "sc", "name": "sc", "server_id": "s1",
		"authorization_server_id": "default"}), "authorization_server_id")
	e.expectFieldError(e.do("POST", "/api/admin/acme/services", rootToken, map[string]any{"id": "svc", "name": "Svc", "url": "http://svc", "server_id": "bad id"}), "server_id")
	if e.serverState("acme") != state {
		t.Fatal("a refused write changed the store")
	}
	svc := e.expect(e.do("POST", "/api/admin/acme/services", rootToken, map[string]any{"id": "svc", "name": "Svc", "url": "http://svc",
		"authorization_server_id": "s1"}), 201).json(t)
	if svc["server_id"] != "s1" || svc["authorization_server_id"] != nil {
		t.Fatalf("the alias is not stored as server_id: %v", svc)
	}
	e.expect(e.do("POST", "/api/admin/acme/scopes", rootToken, map[string]any{"id": "sc", "name": "sc", "server_id": "s1"}), 201)
	e.put(model.KindGateway, "acme", "gw", model.GatewaySpec{Type: "envoy", ServerID: "s1"})
	e.put(model.KindClient, "acme", "web", model.ClientSpec{ServerID: "s1", GrantTypes: []string{"authorization_code"}})
	e.put(model.KindClient, "acme", "other", model.ClientSpec{ServerID: "default"})

	state = e.serverState("acme")
	r := e.do("DELETE", "/api/admin/acme/servers/s1", rootToken, nil)
	if r.status != 400 || r.errorCode(t) != "in_use" {
		t.Fatalf("delete in use: %d %s", r.status, r.body)
	}
	d, _ := r.json(t)["details"].(map[string]any)
	if fmt.Sprint(d["used_by"]) != "map[clients:[web] gateways:[gw] scopes:[sc] services:[svc]]" {
		t.Fatalf("used_by: %v", d["used_by"])
	}
	if e.serverState("acme") != state || !e.exists(model.KindServer, "acme", "s1") {
		t.Fatal("a refused delete changed the store")
	}
	// Unbind them one by one: still in use until the last is gone.
	e.expect(e.do("PUT", "/api/admin/acme/services/svc", rootToken, map[string]any{"name": "Svc", "url": "http://svc"}), 200)
	e.expect(e.do("DELETE", "/api/admin/acme/scopes/sc", rootToken, nil), 204)
	testkit.Write(t, e.store, func(ctx context.Context, tx store.Tx) error {
		for kind, id := range map[string]string{model.KindGateway: "gw"} {
			if _, err := tx.Delete(ctx, kind, "acme", id, 0, false); err != nil {
				return err
			}
		}
		return nil
	})
	r = e.do("DELETE", "/api/admin/acme/servers/s1", rootToken, nil)
	if d, _ := r.json(t)["details"].(map[string]any); r.status != 400 || fmt.Sprint(d["used_by"]) != "map[clients:[web]]" {
		t.Fatalf("delete with a client left: %d %s", r.status, r.body)
	}
	testkit.Write(t, e.store, func(ctx context.Context, tx store.Tx) error {
		_, err := tx.Delete(ctx, model.KindClient, "acme", "web", 0, false)
		return err
	})
	e.expect(e.do("DELETE", "/api/admin/acme/servers/s1", rootToken, nil), 204)
	e.expect(e.do("GET", "/api/admin/acme/servers/s1", rootToken, nil), 404)
	e.expect(e.do("DELETE", "/api/admin/acme/servers/s1", rootToken, nil), 404)
}

// TestServerDeleteCascades: a server's claims (each with an audit event)
// and its signing keys go with it; another server's stay.
func TestServerDeleteCascades(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	for _, id := range []string{"s1", "s2"} {
		e.expect(e.do("POST", "/api/admin/acme/servers", rootToken, map[string]any{"id": id, "key_type": "ecdsa"}), 201)
		e.expect(e.do("GET", "/api/admin/acme/servers/"+id+"/keys", rootToken, nil), 200)
	}
	e.put(model.KindClaim, "acme", "email", model.ClaimSpec{ServerID: "s1", Name: "email", Mapping: "email", Type: model.ClaimIDToken})
	e.put(model.KindClaim, "acme", "groups", model.ClaimSpec{ServerID: "s1", Name: "groups", Mapping: "groups", Type: model.ClaimAccessToken})
	e.put(model.KindClaim, "acme", "kept", model.ClaimSpec{ServerID: "s2", Name: "kept", Mapping: "kept", Type: model.ClaimIDToken})
	e.expect(e.do("DELETE", "/api/admin/acme/servers/s1", rootToken, nil), 204)
	for kind, ids := range map[string][]string{model.KindClaim: {"email", "groups"}, serverkeys.Kind: {"s1"}, model.KindServer: {"s1"}} {
		for _, id := range ids {
			if e.exists(kind, "acme", id) {
				t.Errorf("%s %s outlived its server", kind, id)
			}
		}
	}
	if !e.exists(model.KindClaim, "acme", "kept") || !e.exists(serverkeys.Kind, "acme", "s2") {
		t.Fatal("another server's claims or keys went too")
	}
	var deleted []string
	for _, ev := range e.eventsOf("acme", model.KindClaim) {
		if ev["action"] == "delete" {
			deleted = append(deleted, ev["object_id"].(string))
		}
	}
	slices.Sort(deleted)
	if fmt.Sprint(deleted) != "[email groups]" {
		t.Fatalf("claim delete events: %v", deleted)
	}
}

// staticMethod is a static login method body.
func staticMethod(id string, users ...map[string]any) map[string]any {
	us := make([]any, 0, len(users))
	for _, u := range users {
		us = append(us, u)
	}
	return map[string]any{"id": id, "name": "Login " + id, "method": "static", "static": map[string]any{"hint": "your name", "users": us}}
}

func user(name, password string) map[string]any {
	u := map[string]any{"username": name}
	if password != "" {
		u["password"] = password
	}
	return u
}

// TestServerAuthentications: PUT …/authentications replaces the login
// methods; passwords are stored argon2id-hashed and never returned; a
// user sent without a password keeps its hash; only static is accepted;
// bounds and If-Match hold; refused writes change nothing.
func TestServerAuthentications(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	e.expect(e.do("POST", "/api/admin/acme/servers", rootToken, map[string]any{"id": "s1"}), 201)
	path := "/api/admin/acme/servers/s1/authentications"
	g := e.expect(e.do("GET", path, rootToken, nil), 200)
	if fmt.Sprint(g.json(t)) != "map[methods:[]]" {
		t.Fatalf("no methods yet: %s", g.body)
	}
	alice := user("alice", "alice-password")
	alice["authentication_context"] = map[string]any{"email": "alice@example.com"}
	body := map[string]any{"methods": []any{map[string]any{
		"id": "login", "name": "Login", "method": "static", "disabled": false,
		"attributes": []any{map[string]any{"name": "email", "description": "e-mail"}},
		"mappings":   []any{map[string]any{"source": "email", "target": "email"}},
		"static":     map[string]any{"hint": "your name", "users": []any{alice, user("bob", "bob-password-1")}},
	}}}
	r := e.expect(e.do("PUT", path, rootToken, body, "If-Match", g.header.Get("ETag")), 200)
	for _, secret := range []string{"alice-password", "bob-password-1", "argon2", "password_hash"} {
		if strings.Contains(string(r.body), secret) {
			t.Fatalf("the answer shows %q: %s", secret, r.body)
		}
	}
	out := r.json(t)
	m0 := out["methods"].([]any)[0].(map[string]any)
	if m0["hint"] != nil || m0["static"].(map[string]any)["hint"] != "your name" || len(m0["static"].(map[string]any)["users"].([]any)) != 2 ||
		fmt.Sprint(m0["mappings"]) != "[map[source:email target:email]]" {
		t.Fatalf("answer: %v", out)
	}
	if got := e.expect(e.do("GET", path, rootToken, nil), 200).json(t); !sameExceptVolatile(got, out) {
		t.Fatalf("GET differs from the PUT's answer:\n%v\n%v", got, out)
	}
	if s := e.expect(e.do("GET", "/api/admin/acme/servers/s1", rootToken, nil), 200); strings.Contains(string(s.body), "alice-password") ||
		strings.Contains(string(s.body), "argon2") || !strings.Contains(string(s.body), `"username":"alice"`) {
		t.Fatalf("GET server: %s", s.body)
	}
	o, spec := e.storedServer("acme", "s1")
	if strings.Contains(string(o.Spec), "alice-password") {
		t.Fatal("a password is stored in clear")
	}
	users := spec.Authentications[0].Static.Users
	aliceHash, bobHash := users[0].PasswordHash, users[1].PasswordHash
	for _, c := range []struct{ hash, password string }{{aliceHash, "alice-password"}, {bobHash, "bob-password-1"}} {
		if ok, err := passwords.Verify(c.hash, c.password); !ok || err != nil || !strings.HasPrefix(c.hash, "$argon2id$") {
			t.Fatalf("stored hash %q does not verify %q: %v", c.hash, c.password, err)
		}
	}
	if users[0].AuthenticationContext["email"] != "alice@example.com" {
		t.Fatalf("authentication context: %+v", users[0])
	}
	evs := e.eventsOf("acme", model.KindServer)
	if evs[0]["action"] != "update" || strings.Contains(fmt.Sprint(evs[0]), "alice-password") || strings.Contains(fmt.Sprint(evs[0]), aliceHash) {
		t.Fatalf("audit event: %v", evs[0])
	}

	// alice without a password keeps hers; bob's is replaced.
	e.expect(e.do("PUT", path, rootToken, map[string]any{"methods": []any{staticMethod("login", user("alice", ""), user("bob", "bob-password-2"))}}), 200)
	_, spec = e.storedServer("acme", "s1")
	users = spec.Authentications[0].Static.Users
	if users[0].PasswordHash != aliceHash || users[1].PasswordHash == bobHash {
		t.Fatal("keep-on-omit: alice's hash changed or bob's did not")
	}
	if ok, _ := passwords.Verify(users[1].PasswordHash, "bob-password-2"); !ok {
		t.Fatal("bob's new password does not verify")
	}

	// Refused: each names its field and changes nothing.
	tooManyUsers := make([]map[string]any, 101)
	for i := range tooManyUsers {
		tooManyUsers[i] = user(fmt.Sprintf("u%d", i), "password-1")
	}
	tooManyMethods := make([]any, 21)
	for i := range tooManyMethods {
		tooManyMethods[i] = staticMethod(fmt.Sprintf("m%d", i))
	}
	withOIDC := staticMethod("login", user("alice", ""))
	withOIDC["oidc"] = map[string]any{"client_id": "x"}
	state := e.serverState("acme")
	cases := []struct {
		methods []any
		field   string
		message string
	}{
		{[]any{staticMethod("login", user("alice", ""), user("carol", ""))}, "methods[0].static.users[1].password", "required"},
		{[]any{staticMethod("other", user("alice", ""))}, "methods[0].static.users[0].password", "required"}, // hashes belong to their method
		{[]any{map[string]any{"id": "idp", "method": "oidc", "oidc": map[string]any{"client_id": "x"}}}, "methods[0].oidc.client_id", "create an identity provider"},
		{[]any{map[string]any{"id": "idp", "method": "oidc", "oidc": map[string]any{}}}, "methods[0].oidc.identity_provider_id", ""},
		{[]any{map[string]any{"id": "idp", "method": "oidc", "oidc": map[string]any{"identity_provider_id": "a b"}}}, "methods[0].oidc.identity_provider_id", "invalid id"},
		{[]any{map[string]any{"id": "idp", "method": "oidc", "oidc": map[string]any{"identity_provider_id": "x"}, "identity_provider_id": "y"}}, "methods[0].identity_provider_id", "differs"},
		{[]any{map[string]any{"id": "p", "method": "password", "password": map[string]any{"hint": 3}}}, "methods[0].password.hint", "string"},
		{[]any{map[string]any{"id": "p", "method": "password", "password": map[string]any{"users": []any{}}}}, "methods[0].password.users", "unknown field"},
		{[]any{map[string]any{"id": "p", "method": "password", "static": map[string]any{"users": []any{}}}}, "methods[0].static", "not a setting of method password"},
		{[]any{map[string]any{"id": "p", "method": "password", "identity_provider_id": "x"}}, "methods[0].identity_provider_id", "not a setting"},
		{[]any{map[string]any{"id": "c", "method": "custom", "custom": map[string]any{"login_url": "http://app.example.com/login"}}}, "methods[0].custom.login_url", "loopback"},
		{[]any{map[string]any{"id": "c", "method": "custom", "custom": map[string]any{"login_url": "https://app.example.com/#x"}}}, "methods[0].custom.login_url", "fragment"},
		{[]any{map[string]any{"id": "c", "method": "custom", "custom": map[string]any{}}}, "methods[0].custom.login_url", ""},
		{[]any{map[string]any{"id": "c", "method": "custom"}}, "methods[0].custom", ""},
		{[]any{map[string]any{"id": "a", "method": "azure"}}, "methods[0].azure.identity_provider_id", ""},
		{[]any{map[string]any{"id": "a", "method": "azure", "azure": map[string]any{"identity_provider_id": "x", "fetch_groups": true}}}, "methods[0].azure.fetch_groups", "not supported"},
		{[]any{map[string]any{"id": "a", "method": "azure", "azure": map[string]any{"identity_provider_id": "x", "only_security_groups": true}}}, "methods[0].azure.only_security_groups", "not supported"},
		{[]any{map[string]any{"id": "a", "method": "azure", "azure": map[string]any{"tenant": "t", "client_id": "c"}}}, "methods[0].azure.client_id", "login.microsoftonline.com"},
		{[]any{map[string]any{"id": "c", "method": "cognito", "cognito": map[string]any{"user_pool_id": "p"}}}, "methods[0].cognito.user_pool_id", "cognito-idp"},
		{[]any{map[string]any{"id": "c", "method": "cognito", "oidc": map[string]any{"identity_provider_id": "x"}}}, "methods[0].oidc", "not a setting of method cognito"},
		{[]any{map[string]any{"id": "s", "method": "saml"}}, "methods[0].method", "unknown"},
		{[]any{map[string]any{"id": "s"}}, "methods[0].method", ""},
		{[]any{map[string]any{"method": "static", "static": map[string]any{"users": []any{}}}}, "methods[0].id", ""},
		{[]any{map[string]any{"id": "s", "method": "static"}}, "methods[0].static", ""},
		{[]any{staticMethod("a"), staticMethod("a")}, "methods[1].id", "unique"},
		{[]any{staticMethod("login", user("alice", "short"))}, "methods[0].static.users[0].password", "8 to 256"},
		{[]any{staticMethod("login", user("alice", strings.Repeat("p", 257)))}, "methods[0].static.users[0].password", "8 to 256"},
		{[]any{staticMethod("login", user("alice", ""), user("alice", "password-1"))}, "methods[0].static.users[1].username", "twice"},
		{[]any{staticMethod("login", user("", "password-1"))}, "methods[0].static.users[0].username", ""},
		{[]any{staticMethod("login", tooManyUsers...)}, "methods[0].static.users", "at most 100"},
		{tooManyMethods, "methods", "at most 20"},
		{[]any{withOIDC}, "methods[0].oidc", ""},
		{[]any{map[string]any{"id": "s", "method": "static", "static": map[string]any{"users": []any{}}, "mappings": []any{map[string]any{"source": "a"}}}}, "methods[0].mappings[0].target", ""},
		{[]any{map[string]any{"id": "s", "method": "static", "static": map[string]any{"users": []any{}}, "colour": "red"}}, "colour", ""},
	}
	for _, c := range cases {
		r := e.do("PUT", path, rootToken, map[string]any{"methods": c.methods})
		e.expectFieldError(r, c.field)
		if !strings.Contains(string(r.body), c.message) {
			t.Errorf("%s: message lacks %q: %s", c.field, c.message, r.body)
		}
	}
	g = e.expect(e.do("GET", path, rootToken, nil), 200)
	e.expect(e.do("PUT", path, rootToken, map[string]any{"methods": []any{}}, "If-Match", `"1"`), 412)
	e.expect(e.do("PUT", "/api/admin/acme/servers/nosuch/authentications", rootToken, map[string]any{"methods": []any{}}), 404)
	if e.serverState("acme") != state {
		t.Fatal("refused writes changed the store")
	}
	// A PUT of the server keeps them; an empty list removes them.
	e.expect(e.do("PUT", "/api/admin/acme/servers/s1", rootToken, map[string]any{"name": "s1"}), 200)
	again := e.expect(e.do("GET", path, rootToken, nil), 200)
	if string(again.body) != string(g.body) {
		t.Fatalf("PUT of the server changed its login methods:\n%s\n%s", g.body, again.body)
	}
	e.expect(e.do("PUT", path, rootToken, map[string]any{"methods": []any{}}, "If-Match", g.header.Get("ETag")), 412)
	e.expect(e.do("PUT", path, rootToken, map[string]any{"methods": []any{}}, "If-Match", again.header.Get("ETag")), 200)
	if _, spec := e.storedServer("acme", "s1"); len(spec.Authentications) != 0 {
		t.Fatal("the empty list did not replace the methods")
	}
}

// keyInfos returns the keys of a keys or rotate answer.
func keyInfos(t *testing.T, m map[string]any) []map[string]any {
	t.Helper()
	return items(t, m, "keys")
}

// TestServerKeysLifecycle: the first key is made by GET …/keys (active);
// rotation adds a key that is active at once with key_activation_delay 0
// (the old one retiring) and pending with 5m; If-Match holds; the rotation
// is audited.
func TestServerKeysLifecycle(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	e.expect(e.do("POST", "/api/admin/acme/servers", rootToken, map[string]any{"id": "now", "key_type": "ecdsa", "key_activation_delay": "0s"}), 201)
	e.expect(e.do("POST", "/api/admin/acme/servers", rootToken, map[string]any{"id": "later", "key_type": "ecdsa"}), 201)

	g := e.expect(e.do("GET", "/api/admin/acme/servers/now/keys", rootToken, nil), 200)
	first := keyInfos(t, g.json(t))
	if len(first) != 1 || first[0]["state"] != "active" || first[0]["alg"] != "ES256" || first[0]["kid"] == "" || g.header.Get("ETag") == "" {
		t.Fatalf("first key: %s", g.body)
	}
	again := e.expect(e.do("GET", "/api/admin/acme/servers/now/keys", rootToken, nil), 200)
	if string(again.body) != string(g.body) || again.header.Get("ETag") != g.header.Get("ETag") {
		t.Fatalf("a second GET made another key:\n%s\n%s", g.body, again.body)
	}
	e.expect(e.do("GET", "/api/admin/acme/servers/now/keys", rootToken, nil, "If-None-Match", g.header.Get("ETag")), 304)

	e.expect(e.do("POST", "/api/admin/acme/servers/now/keys/rotate", rootToken, nil, "If-Match", `"1"`), 412)
	r := e.expect(e.do("POST", "/api/admin/acme/servers/now/keys/rotate", rootToken, nil, "If-Match", g.header.Get("ETag")), 201)
	rot := r.json(t)
	added := rot["key"].(map[string]any)
	ks := keyInfos(t, rot)
	if added["state"] != "active" || len(ks) != 2 || ks[0]["kid"] != first[0]["kid"] || ks[0]["state"] != "retiring" || ks[1]["kid"] != added["kid"] {
		t.Fatalf("rotation with delay 0: %s", r.body)
	}
	if r.header.Get("ETag") == g.header.Get("ETag") {
		t.Fatal("the rotation did not change the key set's ETag")
	}
	if got := e.expect(e.do("GET", "/api/admin/acme/servers/now/keys", rootToken, nil), 200); got.header.Get("ETag") != r.header.Get("ETag") {
		t.Fatalf("GET after rotate: %s", got.body)
	}

	e.expect(e.do("GET", "/api/admin/acme/servers/later/keys", rootToken, nil), 200)
	before := time.Now()
	lr := e.expect(e.do("POST", "/api/admin/acme/servers/later/keys/rotate", rootToken, map[string]any{}), 201).json(t)
	pending := lr["key"].(map[string]any)
	at, err := time.Parse(time.RFC3339Nano, pending["activates_at"].(string))
	if err != nil {
		t.Fatal(err)
	}
	lks := keyInfos(t, lr)
	if pending["state"] != "pending" || at.Before(before.Add(5*time.Minute-time.Second)) || at.After(time.Now().Add(5*time.Minute+time.Second)) ||
		lks[0]["state"] != "active" {
		t.Fatalf("rotation with delay 5m: %v", lr)
	}

	// Bodies: none or {}; anything else is refused.
	state := e.serverState("acme")
	e.expectFieldError(e.do("POST", "/api/admin/acme/servers/later/keys/rotate", rootToken, map[string]any{"kid": "mine"}), "kid")
	if r := e.do("POST", "/api/admin/acme/servers/later/keys/rotate", rootToken, "null"); r.status != 400 {
		t.Fatalf("null body: %d %s", r.status, r.body)
	}
	e.expect(e.do("POST", "/api/admin/acme/servers/nosuch/keys/rotate", rootToken, nil), 404)
	e.expect(e.do("GET", "/api/admin/acme/servers/nosuch/keys", rootToken, nil), 404)
	if e.serverState("acme") != state {
		t.Fatal("refused rotations changed the store")
	}
	var rotations int
	for _, ev := range e.eventsOf("acme", serverkeys.Kind) {
		if ev["action"] == "rotate" {
			rotations++
			if ev["actor"] != "bootstrap-admin" {
				t.Errorf("rotation event %v", ev)
			}
		}
	}
	if rotations != 2 {
		t.Fatalf("%d rotation events, want 2", rotations)
	}
	// rsa servers sign with RS256.
	rs := keyInfos(t, e.expect(e.do("GET", "/api/admin/acme/servers/default/keys", rootToken, nil), 200).json(t))
	if len(rs) != 1 || rs[0]["alg"] != "RS256" {
		t.Fatalf("default server keys: %v", rs)
	}
}

// TestServerListings: the per-server listings show the tenant's objects
// bound to the server, and only those; APIs come by service with their
// filters; clients show no secret; an unknown server is 404.
func TestServerListings(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	post := func(path string, body map[string]any) {
		t.Helper()
		e.expect(e.do("POST", "/api/admin/acme/"+path, rootToken, body), 201)
	}
	post("servers", map[string]any{"id": "s1"})
	post("services", map[string]any{"id": "svc1", "name": "Svc1", "url": "http://svc1", "server_id": "s1"})
	post("services", map[string]any{"id": "svc2", "name": "Svc2", "url": "http://svc2", "server_id": "s1"})
	post("services", map[string]any{"id": "svc3", "name": "Svc3", "url": "http://svc3"})
	post("apis", map[string]any{"id": "a", "service_id": "svc1", "method": "GET", "path": "/a", "data_classifications": []string{"pii"}, "public": true})
	post("apis", map[string]any{"id": "b", "service_id": "svc1", "method": "GET", "path": "/b", "public": true})
	post("apis", map[string]any{"id": "c", "service_id": "svc3", "method": "GET", "path": "/c", "public": true})
	post("scopes", map[string]any{"id": "sc1", "name": "sc1", "server_id": "s1", "service_id": "svc1"})
	post("scopes", map[string]any{"id": "sc2", "name": "sc2", "server_id": "s1"})
	post("scopes", map[string]any{"id": "sc3", "name": "sc3"})
	e.put(model.KindGateway, "acme", "gw1", model.GatewaySpec{Type: "envoy", ServerID: "s1"})
	e.put(model.KindGateway, "acme", "gw2", model.GatewaySpec{Type: "envoy"})
	e.put(model.KindClient, "acme", "web", model.ClientSpec{Name: "Web", ServerID: "s1", SecretHash: secretSHA256("client-secret")})
	e.put(model.KindClient, "acme", "cli", model.ClientSpec{Name: "CLI", ServerID: "default"})
	e.put(model.KindClaim, "acme", "email", model.ClaimSpec{ServerID: "s1", Name: "email", Mapping: "email", Type: model.ClaimIDToken, Scopes: []string{"profile"}})
	e.put(model.KindClaim, "acme", "other", model.ClaimSpec{ServerID: "default", Name: "other", Mapping: "x", Type: model.ClaimIDToken})

	base := "/api/admin/acme/servers/s1/"
	ids := func(kind, key string) []string {
		t.Helper()
		m := e.expect(e.do("GET", base+kind, rootToken, nil), 200).json(t)
		var out []string
		for _, it := range items(t, m, kind) {
			out = append(out, fmt.Sprint(it[key]))
		}
		if m["total"] != float64(len(out)) {
			t.Fatalf("%s: total %v for %v", kind, m["total"], out)
		}
		return out
	}
	for kind, want := range map[string]string{"services": "[svc1 svc2]", "gateways": "[gw1]", "scopes": "[sc1 sc2]", "clients": "[web]", "claims": "[email]"} {
		key := "id"
		if kind == "clients" {
			key = "client_id"
		}
		if got := fmt.Sprint(ids(kind, key)); got != want {
			t.Errorf("%s of s1: %s, want %s", kind, got, want)
		}
	}
	clients := e.expect(e.do("GET", base+"clients", rootToken, nil), 200)
	if strings.Contains(string(clients.body), "secret") || strings.Contains(string(clients.body), secretSHA256("client-secret")) ||
		!strings.Contains(string(clients.body), `"client_name":"Web"`) || !strings.Contains(string(clients.body), `"authorization_server_id":"s1"`) {
		t.Fatalf("clients: %s", clients.body)
	}
	scopes := items(t, e.expect(e.do("GET", base+"scopes", rootToken, nil), 200).json(t), "scopes")
	if svc, _ := scopes[0]["service"].(map[string]any); svc["id"] != "svc1" || scopes[0]["with_service"] != true || scopes[1]["service"] != nil {
		t.Fatalf("scopes with services: %v", scopes)
	}
	claims := items(t, e.expect(e.do("GET", base+"claims", rootToken, nil), 200).json(t), "claims")
	if claims[0]["mapping"] != "email" || fmt.Sprint(claims[0]["scopes"]) != "[profile]" || claims[0]["type"] != "id_token" {
		t.Fatalf("claims: %v", claims)
	}
	// Paging.
	p1 := e.expect(e.do("GET", base+"services?limit=1", rootToken, nil), 200).json(t)
	if ps := items(t, p1, "services"); len(ps) != 1 || ps[0]["id"] != "svc1" || p1["next"] == "" || p1["total"] != float64(2) {
		t.Fatalf("page 1: %v", p1)
	}
	p2 := e.expect(e.do("GET", base+"services?limit=1&after="+p1["next"].(string), rootToken, nil), 200).json(t)
	if ps := items(t, p2, "services"); len(ps) != 1 || ps[0]["id"] != "svc2" || p2["next"] != "" {
		t.Fatalf("page 2: %v", p2)
	}
	// APIs by service, with filters.
	apis := func(q string) string {
		t.Helper()
		m := e.expect(e.do("GET", base+"apis"+q, rootToken, nil), 200).json(t)
		by := m["apis_by_services"].(map[string]any)
		var parts []string
		for _, sid := range []string{"svc1", "svc2", "svc3"} {
			list, ok := by[sid].([]any)
			if !ok {
				continue
			}
			var ids []string
			for _, a := range list {
				ids = append(ids, a.(map[string]any)["id"].(string))
			}
			parts = append(parts, sid+":"+strings.Join(ids, ","))
		}
		return strings.Join(parts, " ")
	}
	for q, want := range map[string]string{"": "svc1:a,b svc2:", "?data_classification=pii": "svc1:a svc2:", "?without_data_classifications=true": "svc1:b svc2:"} {
		if got := apis(q); got != want {
			t.Errorf("apis%s: %q, want %q", q, got, want)
		}
	}
	e.expectFieldError(e.do("GET", base+"apis?without_data_classifications=true&data_classification=pii", rootToken, nil), "without_data_classifications")
	// Dashboards.
	dash := e.expect(e.do("GET", base+"dashboards", rootToken, nil), 200).json(t)
	if fmt.Sprint(dash) != "map[enabled:false links:map[decision_logs:/api/admin/acme/gateways/{gw}/decisions metrics:/metrics]]" {
		t.Fatalf("dashboards: %v", dash)
	}
	for _, sub := range []string{"apis", "claims", "clients", "gateways", "scopes", "services", "dashboards", "keys", "authentications"} {
		e.expect(e.do("GET", "/api/admin/acme/servers/nosuch/"+sub, rootToken, nil), 404)
	}
	e.expectFieldError(e.do("GET", "/api/admin/acme/servers/bad%20id/services", rootToken, nil), "aid")
}

// TestServerTenantIsolation: a tenant's credential gets 403 on every
// server route of another tenant, and one tenant's server does not exist
// for another.
func TestServerTenantIsolation(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	e.createTenant("other")
	tok := e.credential("acme")
	e.expect(e.do("POST", "/api/admin/acme/servers", tok, map[string]any{"id": "s1"}), 201)
	otherTok := e.credential("other")
	state := e.serverState("acme")
	for _, rt := range e.api.Routes() {
		if !strings.HasPrefix(rt.Path, "/api/admin/:tid/servers") {
			continue
		}
		path := strings.ReplaceAll(strings.ReplaceAll(rt.Path, ":tid", "acme"), ":aid", "s1")
		ct := "application/json"
		if rt.Method == "PATCH" {
			ct = admin.MergePatchType
		}
		if r := e.do(rt.Method, path, otherTok, map[string]any{"name": "x"}, "Content-Type", ct); r.status != 403 {
			t.Errorf("%s %s with tenant other's credential: %d %s", rt.Method, path, r.status, r.body)
		}
	}
	if e.serverState("acme") != state {
		t.Fatal("another tenant's credential changed acme's servers")
	}
	e.expect(e.do("GET", "/api/admin/other/servers/s1", otherTok, nil), 404)
	e.expect(e.do("GET", "/api/admin/acme/servers/s1", tok, nil), 200)
}

// TestServerConfiguration: servers are in the configuration document
// with their secret's hash and their users' password hashes (no keys);
// an import into another tenant copies them (system servers stay system,
// none becomes one); a replace import that lacks the system servers keeps
// them.
func TestServerConfiguration(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	e.createTenant("copy")
	e.expect(e.do("POST", "/api/admin/acme/servers", rootToken, map[string]any{"id": "s1", "key_type": "ecdsa", "access_token_ttl": "2h"}), 201)
	e.expect(e.do("PUT", "/api/admin/acme/servers/s1/authentications", rootToken, map[string]any{"methods": []any{staticMethod("login", user("alice", "alice-password"))}}), 200)
	e.expect(e.do("GET", "/api/admin/acme/servers/s1/keys", rootToken, nil), 200)
	exp := e.expect(e.raw("GET", "/api/system/configuration?tid=acme", nil), 200)
	if strings.Contains(string(exp.body), "alice-password") || strings.Contains(string(exp.body), "sealed") || strings.Contains(string(exp.body), "private") {
		t.Fatalf("the export shows secrets: %s", exp.body)
	}
	var doc map[string]any
	if err := json.Unmarshal(exp.body, &doc); err != nil {
		t.Fatal(err)
	}
	servers, _ := doc["servers"].([]any)
	if len(servers) != 4 {
		t.Fatalf("exported servers: %v", doc["servers"])
	}
	_, stored := e.storedServer("acme", "s1")
	var s1 map[string]any
	for _, s := range servers {
		if m := s.(map[string]any); m["id"] == "s1" {
			s1 = m
		}
	}
	if s1["secret_hash"] != stored.SecretHash || s1["access_token_ttl"] != "2h0m0s" || !strings.Contains(fmt.Sprint(s1["authentications"]), stored.Authentications[0].Static.Users[0].PasswordHash) {
		t.Fatalf("exported s1: %v", s1)
	}
	for _, f := range []string{"issuer_url", "metadata", "tenant_id", "secret"} {
		if _, ok := s1[f]; ok {
			t.Errorf("the export carries %s", f)
		}
	}
	// The export imports back unchanged.
	back := e.expect(e.raw("PUT", "/api/system/configuration?tid=acme", exp.body), 200).json(t)
	if back["unchanged"].(map[string]any)["servers"] != float64(4) || back["updated"].(map[string]any)["servers"] != float64(0) {
		t.Fatalf("re-import of the export: %v", back)
	}
	// Copy into another tenant (the document's other kinds stay out of the
	// way: only tenant and servers).
	copyDoc := map[string]any{"version": 1, "tenant": doc["tenant"], "servers": doc["servers"]}
	e.expect(e.raw("PUT", "/api/system/configuration?tid=copy&mode=merge", copyDoc), 200)
	_, copied := e.storedServer("copy", "s1")
	if copied.SecretHash != stored.SecretHash || copied.Authentications[0].Static.Users[0].PasswordHash != stored.Authentications[0].Static.Users[0].PasswordHash || copied.System {
		t.Fatalf("copied s1: %+v", copied)
	}
	if _, d := e.storedServer("copy", "default"); !d.System {
		t.Fatal("the copy's default server is no longer a system server")
	}
	if e.exists(serverkeys.Kind, "copy", "s1") {
		t.Fatal("keys were copied")
	}
	// Nothing becomes a system server; bad hashes are refused.
	state := e.serverState("copy")
	bad := map[string]any{"version": 1, "tenant": doc["tenant"], "servers": []any{map[string]any{"id": "s9", "system": true}}}
	e.expectFieldError(e.raw("PUT", "/api/system/configuration?tid=copy&mode=merge", bad), "servers[0].system")
	bad["servers"] = []any{map[string]any{"id": "s9", "secret_hash": "not-hex"}}
	e.expectFieldError(e.raw("PUT", "/api/system/configuration?tid=copy&mode=merge", bad), "servers[0].secret_hash")
	bad["servers"] = []any{map[string]any{"id": "s9", "authentications": []any{map[string]any{"id": "l", "method": "static",
		"static": map[string]any{"users": []any{map[string]any{"username": "u", "password_hash": "plain"}}}}}}}
	e.expectFieldError(e.raw("PUT", "/api/system/configuration?tid=copy&mode=merge", bad), "servers[0].authentications[0].static.users[0].password_hash")
	bad["servers"] = []any{map[string]any{"id": "s9", "grant_types": []string{"password"}}}
	e.expectFieldError(e.raw("PUT", "/api/system/configuration?tid=copy&mode=merge", bad), "servers[0].grant_types[0]")
	if e.serverState("copy") != state {
		t.Fatal("refused imports changed the store")
	}
	// A new server without secret_hash gets a secret; a replace import
	// without servers keeps the system servers and deletes s1.
	e.expect(e.raw("PUT", "/api/system/configuration?tid=copy&mode=merge", map[string]any{"version": 1, "tenant": doc["tenant"],
		"servers": []any{map[string]any{"id": "s8"}}}), 200)
	if _, s8 := e.storedServer("copy", "s8"); len(s8.SecretHash) != 64 || s8.AccessTokenTTL.D() != time.Hour {
		t.Fatalf("imported s8: %+v", s8)
	}
	e.expect(e.raw("PUT", "/api/system/configuration?tid=copy", map[string]any{"version": 1, "tenant": doc["tenant"]}), 200)
	for id, want := range map[string]bool{"admin": true, "developer": true, "default": true, "s1": false, "s8": false} {
		if e.exists(model.KindServer, "copy", id) != want {
			t.Errorf("after a replace import without servers: server %s exists %v, want %v", id, !want, want)
		}
	}
}

// TestServersOnPostgres: the server lifecycle on the PostgreSQL store
// (GATEHOUSE_TEST_DATABASE_URL, or a throwaway server; skipped when
// PostgreSQL is not installed).
func TestServersOnPostgres(t *testing.T) {
	var url string
	if os.Getenv(pgtest.EnvDatabaseURL) != "" {
		url = pgtest.NewDatabase(t)
	} else {
		url = pgtest.NewServer(t).NewDatabase(t)
	}
	e := newEnvOn(t, testkit.OpenPostgres(t, url))
	e.createTenant("acme")
	m := e.expect(e.do("POST", "/api/admin/acme/servers", rootToken, map[string]any{"id": "s1", "key_type": "ecdsa", "key_activation_delay": 0}), 201).json(t)
	if _, spec := e.storedServer("acme", "s1"); spec.SecretHash != secretSHA256(m["secret"].(string)) {
		t.Fatal("secret hash")
	}
	e.expect(e.do("PUT", "/api/admin/acme/servers/s1/authentications", rootToken, map[string]any{"methods": []any{staticMethod("login", user("alice", "alice-password"))}}), 200)
	e.expect(e.do("PUT", "/api/admin/acme/servers/s1/authentications", rootToken, map[string]any{"methods": []any{staticMethod("login", user("alice", ""))}}), 200)
	if _, spec := e.storedServer("acme", "s1"); len(spec.Authentications) != 1 {
		t.Fatal("methods")
	} else if ok, _ := passwords.Verify(spec.Authentications[0].Static.Users[0].PasswordHash, "alice-password"); !ok {
		t.Fatal("the kept hash does not verify")
	}
	e.expect(e.do("GET", "/api/admin/acme/servers/s1/keys", rootToken, nil), 200)
	rot := e.expect(e.do("POST", "/api/admin/acme/servers/s1/keys/rotate", rootToken, nil), 201).json(t)
	if rot["key"].(map[string]any)["state"] != "active" {
		t.Fatalf("rotate: %v", rot)
	}
	e.put(model.KindClaim, "acme", "email", model.ClaimSpec{ServerID: "s1", Name: "email", Mapping: "email", Type: model.ClaimIDToken})
	r := e.do("DELETE", "/api/admin/acme/servers/default", rootToken, nil)
	if r.status != 400 || r.errorCode(t) != "in_use" {
		t.Fatalf("delete default: %d %s", r.status, r.body)
	}
	e.expect(e.do("DELETE", "/api/admin/acme/servers/s1", rootToken, nil), 204)
	if e.exists(serverkeys.Kind, "acme", "s1") || e.exists(model.KindClaim, "acme", "email") {
		t.Fatal("keys or claims outlived the server")
	}
	if err := admin.EnsureSystemTenant(context.Background(), e.store); err != nil {
		t.Fatal(err)
	}
	if err := admin.EnsureSystemTenant(context.Background(), e.store); err != nil {
		t.Fatal(err)
	}
	e.expect(e.do("GET", "/api/admin/system/servers/system", rootToken, nil), 200)
}
