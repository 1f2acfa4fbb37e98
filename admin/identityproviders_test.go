package admin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/admin"
	"github.com/gatehouse-dev/gatehouse/directory"
	"github.com/gatehouse-dev/gatehouse/internal/httpapi"
	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/store"
)

// idpStateKinds are the kinds of issue 14 that this file's tests watch
// beside the admin snapshot.
var idpStateKinds = []string{model.KindIdentityProvider, model.KindInvitation, model.KindUser, model.KindUserSubject, model.KindIdentityMapping}

// idpStateSnapshot is every object of idpStateKinds in some tenants
// (live or soft-deleted, with revision), with the admin snapshot.
type idpStateSnapshot struct {
	snap    snapshot
	objects string
}

// idpState snapshots the system tenant and tenants.
func (e *env) idpState(tenants ...string) idpStateSnapshot {
	e.t.Helper()
	var b strings.Builder
	for _, tid := range append([]string{model.SystemTenantID}, tenants...) {
		for _, kind := range idpStateKinds {
			pg, err := e.store.List(context.Background(), store.Query{Kind: kind, TenantID: tid, IncludeDeleted: true})
			if err != nil {
				e.t.Fatal(err)
			}
			for _, o := range pg.Items {
				fmt.Fprintf(&b, "%s/%s/%s rev=%d deleted=%v\n", kind, tid, o.ID, o.Revision, o.DeletedAt != nil)
			}
		}
	}
	return idpStateSnapshot{snap: e.snapshot(), objects: b.String()}
}

func (e *env) requireIdPStateUnchanged(t *testing.T, before idpStateSnapshot, msg string, tenants ...string) {
	t.Helper()
	e.requireUnchanged(t, before.snap, msg)
	if after := e.idpState(tenants...); after.objects != before.objects {
		t.Fatalf("%s:\nbefore:\n%s\nafter:\n%s", msg, before.objects, after.objects)
	}
}

// detailsField is the field a 4xx answer names.
func detailsField(t *testing.T, r resp) string {
	t.Helper()
	d, _ := r.json(t)["details"].(map[string]any)
	f, _ := d["field"].(string)
	return f
}

func init() {
	// No user fixture: what keeps a provider from being deleted is a
	// tenant's provider_id (TestSystemIdentityProviders).
	fixtures[model.KindIdentityProvider] = kindFixture{
		create: func(i int) map[string]any {
			return map[string]any{"id": fmt.Sprintf("c%d", i), "name": fmt.Sprintf("conf-%d", i), "type": "google", "client_id": "c"}
		},
		sameName: map[string]any{"id": "dup", "name": "conf-0", "type": "google", "client_id": "c"},
	}
}

const idpSecret = "upstream-Secret-0123456789-abcdef"

func oidcIdP(name string) map[string]any {
	return map[string]any{"name": name, "type": "oidc", "issuer": "https://login.example.com", "client_id": "gatehouse-rp",
		"client_secret": idpSecret, "domains": []string{"example.com"}}
}

func TestIdentityProviderCRUD(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	base := "/api/admin/acme/identity-providers"
	created := e.expect(e.do("POST", base, rootToken, oidcIdP("corp")), 201)
	m := created.json(t)
	id := m["id"].(string)
	if m["client_secret_set"] != true || m["active"] != true || m["tenant_id"] != "acme" || m["type"] != "oidc" ||
		fmt.Sprint(m["scopes"]) != "[openid email profile]" || fmt.Sprint(m["domains"]) != "[example.com]" {
		t.Fatalf("created: %s", created.body)
	}
	if _, has := m["client_secret"]; has {
		t.Fatalf("the secret is rendered: %s", created.body)
	}
	// Stored sealed, bound to tenant and provider.
	stored, err := directory.IdentityProviders.Get(context.Background(), e.store, "acme", id)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := directory.OpenIdPSecret(testkit.SecretBox(t), "acme", id, stored.Spec.ClientSecretSealed); err != nil || got != idpSecret {
		t.Fatalf("sealed secret opens to %q, %v", got, err)
	}
	// Duplicate name: 409 naming name.
	if r := e.do("POST", base, rootToken, map[string]any{"name": "corp", "type": "google", "client_id": "x"}); r.status != 409 || detailsField(t, r) != "name" {
		t.Fatalf("duplicate name: %d %s", r.status, r.body)
	}
	// A domain of another live provider of the tenant: 409 naming it.
	dup := oidcIdP("other")
	dup["domains"] = []string{"other.example", "example.com"}
	before := e.idpState("acme")
	if r := e.do("POST", base, rootToken, dup); r.status != 409 || detailsField(t, r) != "domains[1]" || r.errorCode(t) != httpapi.CodeAlreadyExists {
		t.Fatalf("duplicate domain: %d %s", r.status, r.body)
	}
	e.requireIdPStateUnchanged(t, before, "a refused create changed the store", "acme")

	// PUT the GET body back: the secret stays.
	got := e.expect(e.do("GET", base+"/"+id, rootToken, nil), 200)
	var body map[string]any
	_ = json.Unmarshal(got.body, &body)
	body["description"] = "Corporate IdP"
	upd := e.expect(e.do("PUT", base+"/"+id, rootToken, body, "If-Match", got.header.Get("ETag")), 200).json(t)
	if upd["description"] != "Corporate IdP" || upd["client_secret_set"] != true {
		t.Fatalf("put: %v", upd)
	}
	if s, _ := directory.IdentityProviders.Get(context.Background(), e.store, "acme", id); s.Spec.ClientSecretSealed != stored.Spec.ClientSecretSealed {
		t.Fatal("a PUT without client_secret changed the sealed secret")
	}
	// PATCH: null leaves a field unchanged (seed 002), other members merge.
	p := e.expect(e.do("PATCH", base+"/"+id, rootToken, map[string]any{"name": nil, "active": false, "link_by_email": true,
		"extra_auth_params": map[string]any{"prompt": "select_account"}}, "Content-Type", admin.MergePatchType), 200).json(t)
	if p["name"] != "corp" || p["active"] != false || p["link_by_email"] != true || p["client_secret_set"] != true ||
		p["extra_auth_params"].(map[string]any)["prompt"] != "select_account" {
		t.Fatalf("patch: %v", p)
	}
	// A new secret replaces the old; client_secret_set false removes it.
	e.expect(e.do("PATCH", base+"/"+id, rootToken, map[string]any{"client_secret": "another-secret-value"}, "Content-Type", admin.MergePatchType), 200)
	s2, _ := directory.IdentityProviders.Get(context.Background(), e.store, "acme", id)
	if v, _ := directory.OpenIdPSecret(testkit.SecretBox(t), "acme", id, s2.Spec.ClientSecretSealed); v != "another-secret-value" {
		t.Fatalf("replaced secret opens to %q", v)
	}
	if r := e.expect(e.do("PATCH", base+"/"+id, rootToken, map[string]any{"client_secret_set": false}, "Content-Type", admin.MergePatchType), 200).json(t); r["client_secret_set"] != false {
		t.Fatalf("removed secret: %v", r)
	}
	// PUT …/state.
	if r := e.expect(e.do("PUT", base+"/"+id+"/state", rootToken, map[string]any{"active": true}), 200).json(t); r["active"] != true {
		t.Fatalf("state: %v", r)
	}
	if r := e.do("PUT", base+"/"+id+"/state", rootToken, map[string]any{}); r.status != 400 || detailsField(t, r) != "active" {
		t.Fatalf("state without active: %d %s", r.status, r.body)
	}
	e.expect(e.do("PUT", base+"/"+id+"/state", rootToken, map[string]any{"active": false}), 200)

	// Filters.
	second := oidcIdP("second")
	second["domains"] = []string{"second.example"}
	id2 := e.expect(e.do("POST", base, rootToken, second), 201).json(t)["id"].(string)
	ids := func(q string) []string {
		l := e.expect(e.do("GET", base+q, rootToken, nil), 200).json(t)
		var out []string
		for _, it := range l["identity_providers"].([]any) {
			out = append(out, it.(map[string]any)["id"].(string))
		}
		slices.Sort(out)
		if int(l["total"].(float64)) != len(out) {
			t.Fatalf("%s: total %v for %d items", q, l["total"], len(out))
		}
		return out
	}
	if got := ids("?active=true"); !slices.Equal(got, []string{id2}) {
		t.Fatalf("active=true: %v", got)
	}
	if got := ids("?active=false"); !slices.Equal(got, []string{id}) {
		t.Fatalf("active=false: %v", got)
	}
	// Soft delete: 204, gone from GET and lists, kept (active unchanged)
	// with include_deleted / only_deleted; name and domains freed.
	e.expect(e.do("DELETE", base+"/"+id, rootToken, nil), 204)
	e.expect(e.do("GET", base+"/"+id, rootToken, nil), 404)
	if got := ids(""); !slices.Equal(got, []string{id2}) {
		t.Fatalf("after delete: %v", got)
	}
	if got := ids("?only_deleted=true"); !slices.Equal(got, []string{id}) {
		t.Fatalf("only_deleted: %v", got)
	}
	all := e.expect(e.do("GET", base+"?include_deleted=true", rootToken, nil), 200).json(t)["identity_providers"].([]any)
	if len(all) != 2 {
		t.Fatalf("include_deleted: %v", all)
	}
	for _, it := range all {
		o := it.(map[string]any)
		if o["id"] == id && (o["metadata"].(map[string]any)["deleted_at"] == nil || o["active"] != false) {
			t.Fatalf("deleted provider: %v", o)
		}
	}
	if r := e.do("GET", base+"?active=maybe", rootToken, nil); r.status != 400 || detailsField(t, r) != "active" {
		t.Fatalf("bad filter: %d %s", r.status, r.body)
	}
	e.expect(e.do("POST", base, rootToken, oidcIdP("corp")), 201)

	// Paging over a filtered listing.
	for i := 0; i < 5; i++ {
		b := map[string]any{"name": fmt.Sprintf("p%d", i), "type": "google", "client_id": "c"}
		e.expect(e.do("POST", base, rootToken, b), 201)
	}
	var seen []string
	next := ""
	for n := 0; n < 10; n++ {
		q := "?active=true&limit=2"
		if next != "" {
			q += "&after=" + next
		}
		l := e.expect(e.do("GET", base+q, rootToken, nil), 200).json(t)
		if l["total"].(float64) != 7 {
			t.Fatalf("total %v", l["total"])
		}
		for _, it := range l["identity_providers"].([]any) {
			seen = append(seen, it.(map[string]any)["id"].(string))
		}
		if next, _ = l["next"].(string); next == "" {
			break
		}
	}
	if len(seen) != 7 || len(slices.Compact(slices.Sorted(slices.Values(seen)))) != 7 {
		t.Fatalf("paged: %v", seen)
	}
	if r := e.do("GET", base+"?active=true&after=%21%21", rootToken, nil); r.status != 400 || detailsField(t, r) != "after" {
		t.Fatalf("bad cursor: %d %s", r.status, r.body)
	}
}

func TestIdentityProviderValidation(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	base := "/api/admin/acme/identity-providers"
	with := func(edit func(m map[string]any)) map[string]any {
		m := oidcIdP("v")
		edit(m)
		return m
	}
	long := strings.Repeat("x", 257)
	cases := []struct {
		name, field string
		body        map[string]any
	}{
		{"no name", "name", with(func(m map[string]any) { delete(m, "name") })},
		{"no type", "type", with(func(m map[string]any) { delete(m, "type") })},
		{"unknown type", "type", with(func(m map[string]any) { m["type"] = "saml" })},
		{"oidc without issuer", "issuer", with(func(m map[string]any) { delete(m, "issuer") })},
		{"issuer not https", "issuer", with(func(m map[string]any) { m["issuer"] = "http://login.example.com" })},
		{"issuer with query", "issuer", with(func(m map[string]any) { m["issuer"] = "https://login.example.com/?a=b" })},
		{"issuer loopback", "issuer", with(func(m map[string]any) { m["issuer"] = "https://127.0.0.1:8443" })},
		{"issuer localhost", "issuer", with(func(m map[string]any) { m["issuer"] = "http://localhost:8080" })},
		{"token endpoint http", "token_endpoint", with(func(m map[string]any) { m["token_endpoint"] = "http://login.example.com/token" })},
		{"authorization endpoint relative", "authorization_endpoint", with(func(m map[string]any) { m["authorization_endpoint"] = "/authorize" })},
		{"user info private", "user_info_endpoint", with(func(m map[string]any) { m["user_info_endpoint"] = "https://10.0.0.1/userinfo" })},
		{"jwks with credentials", "jwks_uri", with(func(m map[string]any) { m["jwks_uri"] = "https://u:p@login.example.com/jwks" })},
		{"no client id", "client_id", with(func(m map[string]any) { delete(m, "client_id") })},
		{"long client id", "client_id", with(func(m map[string]any) { m["client_id"] = long })},
		{"client secret with spaces", "client_secret", with(func(m map[string]any) { m["client_secret"] = "a b" })},
		{"secret and remove", "client_secret_set", with(func(m map[string]any) { m["client_secret_set"] = false })},
		{"scope without openid", "scopes", with(func(m map[string]any) { m["scopes"] = []string{"email"} })},
		{"bad scope", "scopes[1]", with(func(m map[string]any) { m["scopes"] = []string{"openid", "a b"} })},
		{"duplicate scope", "scopes[1]", with(func(m map[string]any) { m["scopes"] = []string{"openid", "openid"} })},
		{"uppercase domain", "domains[0]", with(func(m map[string]any) { m["domains"] = []string{"Example.com"} })},
		{"not a domain", "domains[0]", with(func(m map[string]any) { m["domains"] = []string{"example"} })},
		{"duplicate domain", "domains[1]", with(func(m map[string]any) { m["domains"] = []string{"a.example", "a.example"} })},
		{"reserved auth param", "extra_auth_params.redirect_uri", with(func(m map[string]any) { m["extra_auth_params"] = map[string]string{"redirect_uri": "https://evil"} })},
		{"reserved nonce", "extra_auth_params.nonce", with(func(m map[string]any) { m["extra_auth_params"] = map[string]string{"nonce": "x"} })},
		{"bad auth param name", "extra_auth_params.a b", with(func(m map[string]any) { m["extra_auth_params"] = map[string]string{"a b": "x"} })},
		{"mapping without target", "mappings[0].target", with(func(m map[string]any) { m["mappings"] = []map[string]string{{"source": "email"}} })},
		{"bad id", "id", with(func(m map[string]any) { m["id"] = "not/an id" })},
		{"other tenant id", "tenant_id", with(func(m map[string]any) { m["tenant_id"] = "other" })},
		{"unknown field", "clientSecret", with(func(m map[string]any) { m["clientSecret"] = "x" })},
		{"ill-typed active", "active", with(func(m map[string]any) { m["active"] = "yes" })},
		{"google with another issuer", "issuer", map[string]any{"name": "g", "type": "google", "issuer": "https://evil.example", "client_id": "c"}},
		{"microsoft common", "issuer", map[string]any{"name": "m", "type": "microsoft", "issuer": "https://login.microsoftonline.com/common/v2.0", "client_id": "c"}},
		{"microsoft without issuer", "issuer", map[string]any{"name": "m", "type": "microsoft", "client_id": "c"}},
		{"github without endpoints", "authorization_endpoint", map[string]any{"name": "gh", "type": "github", "client_id": "c",
			"token_endpoint": "https://github.com/login/oauth/access_token", "user_info_endpoint": "https://api.github.com/user"}},
		{"github with issuer", "issuer", map[string]any{"name": "gh", "type": "github", "client_id": "c", "issuer": "https://github.com",
			"authorization_endpoint": "https://github.com/login/oauth/authorize", "token_endpoint": "https://github.com/login/oauth/access_token",
			"user_info_endpoint": "https://api.github.com/user"}},
	}
	before := e.idpState("acme")
	for _, c := range cases {
		r := e.do("POST", base, rootToken, c.body)
		if r.status != 400 {
			t.Errorf("%s: %d %s", c.name, r.status, r.body)
			continue
		}
		if f := detailsField(t, r); f != c.field {
			if !strings.Contains(string(r.body), `"`+c.field+`"`) {
				t.Errorf("%s: names %q, want %q: %s", c.name, f, c.field, r.body)
			}
		}
		if bytes.Contains(r.body, []byte(idpSecret)) {
			t.Errorf("%s: the answer echoes the secret: %s", c.name, r.body)
		}
	}
	e.requireIdPStateUnchanged(t, before, "refused creates changed the store", "acme")

	// The same rules on PUT: nothing changes.
	id := e.expect(e.do("POST", base, rootToken, oidcIdP("ok")), 201).json(t)["id"].(string)
	before = e.idpState("acme")
	for _, c := range cases[:26] {
		if r := e.do("PUT", base+"/"+id, rootToken, c.body); r.status != 400 {
			t.Errorf("PUT %s: %d %s", c.name, r.status, r.body)
		}
	}
	if r := e.do("PUT", base+"/"+id, rootToken, with(func(m map[string]any) { m["id"] = "another" })); r.status != 400 || detailsField(t, r) != "id" {
		t.Errorf("PUT with another id: %d %s", r.status, r.body)
	}
	e.requireIdPStateUnchanged(t, before, "refused PUTs changed the store", "acme")

	// The presets.
	g := e.expect(e.do("POST", base, rootToken, map[string]any{"name": "google", "type": "google", "client_id": "c"}), 201).json(t)
	if g["issuer"] != directory.GoogleIssuer || g["client_secret_set"] != false {
		t.Fatalf("google: %v", g)
	}
	ms := e.expect(e.do("POST", base, rootToken, map[string]any{"name": "entra", "type": "microsoft", "client_id": "c",
		"issuer": "https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0"}), 201).json(t)
	if ms["type"] != "microsoft" {
		t.Fatalf("microsoft: %v", ms)
	}
	gh := e.expect(e.do("POST", base, rootToken, map[string]any{"name": "github", "type": "github", "client_id": "c", "client_secret": "gh-secret",
		"authorization_endpoint": "https://github.com/login/oauth/authorize", "token_endpoint": "https://github.com/login/oauth/access_token",
		"user_info_endpoint": "https://api.github.com/user"}), 201).json(t)
	if gh["issuer"] != "" || fmt.Sprint(gh["scopes"]) != "[read:user user:email]" {
		t.Fatalf("github: %v", gh)
	}
}

// With --idp-allow-private-urls, loopback and private hosts (and plain
// http to them) are accepted; public hosts still need https.
func TestIdentityProviderPrivateURLs(t *testing.T) {
	e := newEnvWith(t, func(o *admin.Options) { o.AllowPrivateIdPURLs = true })
	e.createTenant("acme")
	base := "/api/admin/acme/identity-providers"
	b := map[string]any{"name": "local", "type": "oidc", "issuer": "http://127.0.0.1:9999/op", "client_id": "c",
		"token_endpoint": "http://localhost:9999/token", "jwks_uri": "https://10.1.2.3/jwks"}
	e.expect(e.do("POST", base, rootToken, b), 201)
	b["name"], b["issuer"] = "public-http", "http://login.example.com"
	if r := e.do("POST", base, rootToken, b); r.status != 400 || detailsField(t, r) != "issuer" {
		t.Fatalf("plain http to a public host: %d %s", r.status, r.body)
	}
}

// Without a secret box, a client secret cannot be sealed: refused, and
// nothing is written; providers without one still work.
func TestIdentityProviderWithoutSecretBox(t *testing.T) {
	e := newEnvWith(t, func(o *admin.Options) { o.SecretBox = nil })
	e.createTenant("acme")
	before := e.idpState("acme")
	if r := e.do("POST", "/api/admin/acme/identity-providers", rootToken, oidcIdP("corp")); r.status != 500 || bytes.Contains(r.body, []byte(idpSecret)) {
		t.Fatalf("secret without a box: %d %s", r.status, r.body)
	}
	e.requireIdPStateUnchanged(t, before, "a refused create changed the store", "acme")
	b := oidcIdP("corp")
	delete(b, "client_secret")
	if r := e.expect(e.do("POST", "/api/admin/acme/identity-providers", rootToken, b), 201).json(t); r["client_secret_set"] != false {
		t.Fatalf("public client: %v", r)
	}
}

// The sealed secret and the secret itself never leave the server: not in
// any answer (create, get, list, put, patch, state, delete), not in the
// audit events, not in the configuration export.
func TestIdentityProviderSecretNeverShown(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	base := "/api/admin/acme/identity-providers"
	var bodies [][]byte
	keep := func(r resp) resp { bodies = append(bodies, r.body); return r }
	id := keep(e.expect(e.do("POST", base, rootToken, oidcIdP("corp")), 201)).json(t)["id"].(string)
	keep(e.expect(e.do("GET", base+"/"+id, rootToken, nil), 200))
	keep(e.expect(e.do("GET", base, rootToken, nil), 200))
	keep(e.expect(e.do("PUT", base+"/"+id, rootToken, oidcIdP("corp")), 200))
	keep(e.expect(e.do("PATCH", base+"/"+id, rootToken, map[string]any{"description": "x"}, "Content-Type", admin.MergePatchType), 200))
	keep(e.expect(e.do("PUT", base+"/"+id+"/state", rootToken, map[string]any{"active": false}), 200))
	keep(e.expect(e.do("GET", "/api/admin/acme/events", rootToken, nil), 200))
	keep(e.expect(e.do("GET", "/api/admin/acme/configuration", rootToken, nil), 200))
	// A tenant created with an inline provider.
	keep(e.expect(e.do("POST", "/api/system/tenants", rootToken, map[string]any{"id": "beta", "name": "Beta",
		"identity_provider": oidcIdP("first")}), 201))
	keep(e.expect(e.do("GET", "/api/admin/beta/identity-providers", rootToken, nil), 200))
	keep(e.expect(e.do("GET", "/api/admin/beta/events", rootToken, nil), 200))
	keep(e.expect(e.do("GET", "/api/system/tenants/beta", rootToken, nil), 200))
	keep(e.expect(e.do("DELETE", base+"/"+id, rootToken, nil), 204))
	keep(e.expect(e.do("GET", base+"?include_deleted=true", rootToken, nil), 200))
	keep(e.expect(e.do("GET", "/api/admin/acme/events", rootToken, nil), 200))

	var sealed []string
	for _, tid := range []string{"acme", "beta"} {
		all, err := directory.IdentityProviders.ListAll(context.Background(), e.store, store.Query{TenantID: tid, IncludeDeleted: true})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range all {
			if p.Spec.ClientSecretSealed != "" {
				sealed = append(sealed, p.Spec.ClientSecretSealed)
			}
		}
	}
	if len(sealed) != 2 {
		t.Fatalf("sealed secrets: %v", sealed)
	}
	for _, b := range bodies {
		for _, needle := range append([]string{idpSecret}, sealed...) {
			if bytes.Contains(b, []byte(needle)) {
				t.Fatalf("an answer holds %q: %s", needle, b)
			}
		}
	}
	// The store's events hold no secret either (their change summaries
	// mask it).
	for _, tid := range []string{"acme", "beta"} {
		pg, err := e.store.ListEvents(context.Background(), store.EventQuery{TenantID: tid})
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := json.Marshal(pg)
		for _, needle := range append([]string{idpSecret}, sealed...) {
			if bytes.Contains(raw, []byte(needle)) {
				t.Fatalf("an event of %s holds the secret", tid)
			}
		}
	}
}

// System-wide providers: /api/system/identity-providers with a
// system-wide token only; objects of the system tenant, not listed among
// a tenant's own.
func TestSystemIdentityProviders(t *testing.T) {
	e := newEnv(t)
	if err := admin.EnsureSystemTenant(context.Background(), e.store); err != nil { // as gatehouse serve does
		t.Fatal(err)
	}
	e.createTenant("acme")
	tok := e.credential("acme")
	base := "/api/system/identity-providers"
	g := e.expect(e.do("POST", base, rootToken, map[string]any{"name": "google", "type": "google", "client_id": "c", "client_secret": idpSecret}), 201).json(t)
	id := g["id"].(string)
	if g["tenant_id"] != model.SystemTenantID || g["client_secret_set"] != true {
		t.Fatalf("system provider: %v", g)
	}
	e.expect(e.do("GET", base+"/"+id, rootToken, nil), 200)
	if l := e.expect(e.do("GET", base, rootToken, nil), 200).json(t); l["total"].(float64) != 1 {
		t.Fatalf("system list: %v", l)
	}
	// The same collection through the system tenant's admin route.
	e.expect(e.do("GET", "/api/admin/system/identity-providers/"+id, rootToken, nil), 200)
	if l := e.expect(e.do("GET", "/api/admin/acme/identity-providers", rootToken, nil), 200).json(t); l["total"].(float64) != 0 {
		t.Fatalf("a tenant lists the system's providers: %v", l)
	}
	e.expect(e.do("PATCH", base+"/"+id, rootToken, map[string]any{"active": false}, "Content-Type", admin.MergePatchType), 200)
	e.expect(e.do("PUT", base+"/"+id+"/state", rootToken, map[string]any{"active": true}), 200)
	// A tenant's credential: 403 on every system route, nothing changes.
	before := e.idpState("acme")
	for _, c := range []struct{ method, path string }{
		{"GET", base}, {"POST", base}, {"GET", base + "/" + id}, {"PUT", base + "/" + id}, {"PATCH", base + "/" + id},
		{"DELETE", base + "/" + id}, {"PUT", base + "/" + id + "/state"},
		{"GET", "/api/admin/system/identity-providers"}, {"POST", "/api/admin/system/identity-providers"},
	} {
		ct := "application/json"
		if c.method == "PATCH" {
			ct = admin.MergePatchType
		}
		if r := e.do(c.method, c.path, tok, map[string]any{"name": "x", "active": false}, "Content-Type", ct); r.status != 403 || r.errorCode(t) != httpapi.CodeForbidden {
			t.Errorf("tenant credential on %s %s: %d %s", c.method, c.path, r.status, r.body)
		}
	}
	e.requireIdPStateUnchanged(t, before, "a tenant credential changed the system's providers", "acme")
	// A tenant may name it as its provider (provider_scope global); it
	// cannot be deleted while named.
	ten := e.expect(e.do("GET", "/api/system/tenants/acme", rootToken, nil), 200).json(t)
	ten["provider_scope"], ten["provider_id"] = "global", id
	e.expect(e.do("PUT", "/api/system/tenants/acme", rootToken, ten), 200)
	if r := e.do("DELETE", base+"/"+id, rootToken, nil); r.status != 409 || r.errorCode(t) != httpapi.CodeInUse {
		t.Fatalf("delete a provider in use: %d %s", r.status, r.body)
	}
	ten = e.expect(e.do("GET", "/api/system/tenants/acme", rootToken, nil), 200).json(t)
	ten["provider_id"] = ""
	e.expect(e.do("PUT", "/api/system/tenants/acme", rootToken, ten), 200)
	// A login method of any tenant's server that uses it: 409 too.
	e.expect(e.do("PUT", "/api/admin/acme/servers/default/authentications", rootToken, map[string]any{"methods": []any{
		map[string]any{"id": "g", "method": "oidc", "oidc": map[string]any{"identity_provider_id": id}}}}), 200)
	r := e.do("DELETE", base+"/"+id, rootToken, nil)
	if r.status != 409 || !strings.Contains(string(r.body), "acme/default") {
		t.Fatalf("delete a provider a server logs in with: %d %s", r.status, r.body)
	}
	e.expect(e.do("PUT", "/api/admin/acme/servers/default/authentications", rootToken, map[string]any{"methods": []any{}}), 200)
	e.expect(e.do("DELETE", base+"/"+id, rootToken, nil), 204)
	e.expect(e.do("GET", base+"/"+id, rootToken, nil), 404)
}

func TestIdentityProviderIsolation(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	e.createTenant("other")
	id := e.expect(e.do("POST", "/api/admin/acme/identity-providers", rootToken, oidcIdP("corp")), 201).json(t)["id"].(string)
	tok := e.credential("other")
	own := e.credential("acme")
	e.expect(e.do("GET", "/api/admin/acme/identity-providers/"+id, own, nil), 200)
	before := e.idpState("acme", "other")
	for _, c := range []struct{ method, path string }{
		{"GET", "/api/admin/acme/identity-providers"}, {"POST", "/api/admin/acme/identity-providers"},
		{"GET", "/api/admin/acme/identity-providers/" + id}, {"PUT", "/api/admin/acme/identity-providers/" + id},
		{"PATCH", "/api/admin/acme/identity-providers/" + id}, {"DELETE", "/api/admin/acme/identity-providers/" + id},
		{"PUT", "/api/admin/acme/identity-providers/" + id + "/state"},
	} {
		ct := "application/json"
		if c.method == "PATCH" {
			ct = admin.MergePatchType
		}
		if r := e.do(c.method, c.path, tok, oidcIdP("x"), "Content-Type", ct); r.status != 403 {
			t.Errorf("other's credential on %s %s: %d %s", c.method, c.path, r.status, r.body)
		}
		unknown := strings.Replace(c.path, "/acme/", "/nope/", 1)
		if r := e.do(c.method, unknown, rootToken, oidcIdP("x"), "Content-Type", ct); r.status != 404 || r.errorCode(t) != httpapi.CodeNotFound {
			t.Errorf("unknown tenant %s %s: %d %s", c.method, unknown, r.status, r.body)
		}
	}
	// Another tenant's provider does not exist in this one.
	if r := e.do("GET", "/api/admin/other/identity-providers/"+id, rootToken, nil); r.status != http.StatusNotFound {
		t.Fatalf("acme's provider under other: %d %s", r.status, r.body)
	}
	e.requireIdPStateUnchanged(t, before, "foreign requests changed the store", "acme", "other")
}

// A provider a login method of one of the tenant's servers uses cannot
// be deleted (409 in_use naming the server); nothing changes.
func TestIdentityProviderInUseByServer(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	id := e.expect(e.do("POST", "/api/admin/acme/identity-providers", rootToken, oidcIdP("corp")), 201).json(t)["id"].(string)
	e.expect(e.do("PUT", "/api/admin/acme/servers/default/authentications", rootToken, map[string]any{"methods": []any{
		map[string]any{"id": "corp-login", "method": "oidc", "oidc": map[string]any{"identity_provider_id": id}}}}), 200)
	before := e.idpState("acme")
	r := e.do("DELETE", "/api/admin/acme/identity-providers/"+id, rootToken, nil)
	if r.status != 409 || r.errorCode(t) != httpapi.CodeInUse || !strings.Contains(string(r.body), "acme/default") {
		t.Fatalf("delete a provider in use: %d %s", r.status, r.body)
	}
	e.requireIdPStateUnchanged(t, before, "a refused delete changed the store", "acme")
}
