package admin_test

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/admin"
	"github.com/gatehouse-dev/gatehouse/directory"
	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/store"
)

// Identity providers in the configuration document: every field but the
// client secret (client_secret_set says whether there is one), providers
// before the servers whose login methods name them, the tenant's
// directory settings with them.

const (
	entraIssuer   = "https://login.microsoftonline.com/7f3c9a2e-1b2c-4d5e-8f90-0123456789ab/v2.0"
	entraSecret   = "entra-Secret-abcdefghijklmnopqrstuv"
	googleSecret  = "google-Secret-0123456789-zyxwvutsrq"
	copiedSecret  = "clear-Secret-given-in-the-document-4-the-copy"
	rotatedSecret = "rotated-Upstream-Secret-given-in-clear-0987"
)

// buildFederation gives the system tenant a google provider (with a
// secret), and acme three providers — corp (oidc, secret, domains,
// extra parameters, mappings, labels), gh (github, a public client),
// entra (microsoft, secret, inactive) — and a deleted one, a default
// server logging in with password, corp, entra (azure) and the system's
// google, and the directory settings naming corp.
func buildFederation(e *env) {
	e.t.Helper()
	if err := admin.EnsureSystemTenant(context.Background(), e.store); err != nil {
		e.t.Fatal(err)
	}
	e.createTenant("acme")
	e.createTenant("other")
	e.expect(e.do("POST", "/api/system/identity-providers", rootToken, map[string]any{"id": "google", "name": "Google",
		"type": "google", "client_id": "gh-google", "client_secret": googleSecret}), 201)
	base := "/api/admin/acme/identity-providers"
	for _, b := range []map[string]any{
		{"id": "corp", "name": "Corp SSO", "description": "the corporate directory", "type": "oidc", "issuer": "https://login.corp.example",
			"client_id": "gatehouse-rp", "client_secret": idpSecret, "scopes": []string{"openid", "email", "groups"},
			"domains": []string{"corp.example", "corp-mail.example"}, "link_by_email": true,
			"extra_auth_params": map[string]string{"prompt": "select_account"},
			"mappings":          []map[string]string{{"source": "groups", "target": "groups"}}, "labels": map[string]string{"team": "iam"}},
		{"id": "gh", "name": "GitHub", "type": "github", "client_id": "Iv1.abc", "authorization_endpoint": "https://github.com/login/oauth/authorize",
			"token_endpoint": "https://github.com/login/oauth/access_token", "user_info_endpoint": "https://api.github.com/user"},
		{"id": "entra", "name": "Entra ID", "type": "microsoft", "issuer": entraIssuer, "client_id": "entra-app", "client_secret": entraSecret,
			"domains": []string{"acme.onmicrosoft.example"}},
		{"id": "gone", "name": "Gone", "type": "google", "client_id": "old", "domains": []string{"gone.example"}},
	} {
		e.expect(e.do("POST", base, rootToken, b), 201)
	}
	e.expect(e.do("PUT", base+"/entra/state", rootToken, map[string]any{"active": false}), 200)
	e.expect(e.do("DELETE", base+"/gone", rootToken, nil), 204)
	e.expect(e.do("PUT", "/api/admin/acme/servers/default/authentications", rootToken, map[string]any{"methods": []any{
		map[string]any{"id": "pw", "method": "password"},
		map[string]any{"id": "corp", "method": "oidc", "oidc": map[string]any{"identity_provider_id": "corp"}},
		map[string]any{"id": "ms", "method": "azure", "azure": map[string]any{"identity_provider_id": "entra"}},
		map[string]any{"id": "google", "method": "oidc", "oidc": map[string]any{"identity_provider_id": "google"}},
	}}), 200)
	ten := e.expect(e.do("GET", "/api/system/tenants/acme", rootToken, nil), 200).json(e.t)
	ten["organization_type"], ten["domains"], ten["provider_id"], ten["mfa_provider"], ten["realm_name"] =
		"domain", []string{"acme.example"}, "corp", "totp", "acme-realm"
	e.expect(e.do("PUT", "/api/system/tenants/acme", rootToken, ten), 200)
}

// storedIdP reads a provider of tenant tid from the store.
func (e *env) storedIdP(tid, id string) *store.Typed[model.IdentityProviderSpec] {
	e.t.Helper()
	p, err := directory.IdentityProviders.Get(context.Background(), e.store, tid, id)
	if err != nil {
		e.t.Fatalf("identity provider %s/%s: %v", tid, id, err)
	}
	return p
}

// sealedSecrets are every sealed client secret of the tenants' providers
// (live or deleted).
func (e *env) sealedSecrets(tenants ...string) []string {
	e.t.Helper()
	var out []string
	for _, tid := range tenants {
		all, err := directory.IdentityProviders.ListAll(context.Background(), e.store, store.Query{TenantID: tid, IncludeDeleted: true})
		if err != nil {
			e.t.Fatal(err)
		}
		for _, p := range all {
			if p.Spec.ClientSecretSealed != "" {
				out = append(out, p.Spec.ClientSecretSealed)
			}
		}
	}
	return out
}

// holdsNone fails when b holds one of the needles.
func holdsNone(t *testing.T, what string, b []byte, needles []string) {
	t.Helper()
	for _, n := range needles {
		if n != "" && bytes.Contains(b, []byte(n)) {
			t.Fatalf("%s holds %q: %s", what, n, b)
		}
	}
}

// storeEvents is every event of the tenants as the store keeps it.
func (e *env) storeEvents(tenants ...string) []byte {
	e.t.Helper()
	var b bytes.Buffer
	for _, tid := range tenants {
		pg, err := e.store.ListEvents(context.Background(), store.EventQuery{TenantID: tid})
		if err != nil {
			e.t.Fatal(err)
		}
		for _, ev := range pg.Items {
			fmt.Fprintf(&b, "%s %s %s %s %s\n", ev.TenantID, ev.Action, ev.Kind, ev.ObjectID, ev.Changes)
		}
	}
	return b.Bytes()
}

// TestConfigurationIdentityProviders: a tenant's identity providers and
// directory settings round-trip through the document — exported without
// any secret (client_secret_set for information), the same bytes every
// time, before the servers; re-imported without a change; copied into
// another tenant without the secrets (client_secret_set false there)
// unless the document gives one in clear, which the import seals for
// that tenant and shows nowhere; a clear secret equal to the stored one
// changes nothing; client_secret_set false removes a secret.
func TestConfigurationIdentityProviders(t *testing.T) {
	testConfigurationIdentityProviders(t, newEnv(t))
}

// The same on PostgreSQL.
func TestConfigurationIdentityProvidersOnPostgres(t *testing.T) {
	testConfigurationIdentityProviders(t, newEnvOn(t, testkit.PostgresStore(t)))
}

func testConfigurationIdentityProviders(t *testing.T, e *env) {
	buildFederation(e)
	box := testkit.SecretBox(t)
	secrets := []string{idpSecret, entraSecret, googleSecret}
	sealed := e.sealedSecrets(model.SystemTenantID, "acme")
	if len(sealed) != 3 {
		t.Fatalf("sealed secrets: %d", len(sealed))
	}

	exported := e.exportConfig("acme")
	if again := e.exportConfig("acme"); !bytes.Equal(exported, again) {
		t.Fatalf("two exports differ:\n%s\n%s", exported, again)
	}
	checkNoClearSecrets(t, exported, secrets)
	holdsNone(t, "the export", exported, sealed)
	for _, k := range []string{`"client_secret"`, `"client_secret_sealed"`, `"role_mapping"`, `"gone"`, `"Google"`} {
		if bytes.Contains(exported, []byte(k)) {
			t.Fatalf("the export holds %s: %s", k, exported)
		}
	}
	doc := decodeDoc(t, exported)
	keys := []string{}
	for _, k := range strings.Split(string(exported), `":[`) {
		if i := strings.LastIndex(k, `"`); i >= 0 && slices.Contains(configKeys, k[i+1:]) {
			keys = append(keys, k[i+1:])
		}
	}
	if i, j := slices.Index(keys, "identity_providers"), slices.Index(keys, "servers"); i < 0 || j < i {
		t.Fatalf("document order (identity providers before servers): %v", keys)
	}
	if ids := fmt.Sprint(docIDs(doc, "identity_providers")); ids != "[corp entra gh]" {
		t.Fatalf("exported providers %s (the deleted one and the system's are not acme's)", ids)
	}
	corp, _ := docItem(t, doc, "identity_providers", "corp")
	want := map[string]string{"name": "Corp SSO", "description": "the corporate directory", "type": "oidc", "issuer": "https://login.corp.example",
		"client_id": "gatehouse-rp", "client_secret_set": "true", "scopes": "[openid email groups]", "domains": "[corp.example corp-mail.example]",
		"link_by_email": "true", "extra_auth_params": "map[prompt:select_account]", "mappings": "[map[source:groups target:groups]]",
		"active": "true", "labels": "map[team:iam]", "authorization_endpoint": "", "token_endpoint": "", "user_info_endpoint": "", "jwks_uri": "", "id": "corp"}
	for k, v := range want {
		if got := fmt.Sprint(corp[k]); got != v {
			t.Errorf("exported corp.%s = %s, want %s", k, got, v)
		}
	}
	if len(corp) != len(want) {
		t.Errorf("exported corp has other fields: %v", corp)
	}
	if gh, _ := docItem(t, doc, "identity_providers", "gh"); gh["client_secret_set"] != false || gh["token_endpoint"] != "https://github.com/login/oauth/access_token" ||
		fmt.Sprint(gh["scopes"]) != "[read:user user:email]" {
		t.Fatalf("exported gh: %v", gh)
	}
	if en, _ := docItem(t, doc, "identity_providers", "entra"); en["client_secret_set"] != true || en["active"] != false || en["issuer"] != entraIssuer {
		t.Fatalf("exported entra: %v", en)
	}
	tenant := doc["tenant"].(map[string]any)
	if fmt.Sprintf("%v %v %v %v %v %v", tenant["organization_type"], tenant["domains"], tenant["provider_scope"], tenant["provider_id"], tenant["mfa_provider"], tenant["realm_name"]) !=
		"domain [acme.example] organization corp totp acme-realm" {
		t.Fatalf("exported tenant: %v", tenant)
	}
	def, _ := docItem(t, doc, "servers", "default")
	if m := fmt.Sprint(def["authentications"]); !strings.Contains(m, "identity_provider_id:entra") || !strings.Contains(m, "identity_provider_id:google") {
		t.Fatalf("exported default server's methods: %s", m)
	}
	// Every field of the routes' body is in the document but the
	// envelope's and the write-only secret.
	spec, err := admin.OpenAPI(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for prop := range spec.Components.Schemas["IdentityProviderRequest"].Value.Properties {
		if _, ok := corp[prop]; !ok && !slices.Contains([]string{"tenant_id", "metadata", "client_secret"}, prop) {
			t.Errorf("IdentityProviderRequest.%s is not in the exported provider", prop)
		}
	}

	// The same document into the same tenant changes nothing.
	n := sizes(doc)
	before := e.idpState("acme", "other")
	for _, mode := range []string{"replace", "merge"} {
		e.expectCounts(e.importCounts("acme", mode, exported), counts("unchanged", n))
	}
	e.requireIdPStateUnchanged(t, before, "an unchanged re-import wrote", "acme", "other")

	// Into another tenant: acme's domains are acme's (409 naming the
	// tenant's), nothing changes.
	before = e.idpState("acme", "other")
	r := e.importConfig("other", "", doc)
	if r.status != 409 || r.errorCode(t) != "already_exists" || detailsField(t, r) != "tenant.domains[0]" {
		t.Fatalf("a copy with acme's domains: %d %s", r.status, r.body)
	}
	e.requireIdPStateUnchanged(t, before, "a refused copy wrote", "acme", "other")
	copyDoc := deepCopy(t, doc)
	copyDoc["tenant"].(map[string]any)["domains"] = []any{"other.example"}
	systemServers := map[string]int{"servers": 3}
	e.expectCounts(e.importCounts("other", "", copyDoc), counts("created", minus(n, systemServers), "updated", systemServers))
	for _, id := range []string{"corp", "entra", "gh"} {
		if p := e.storedIdP("other", id); p.Spec.ClientSecretSealed != "" {
			t.Fatalf("other's %s has a secret: the secret was copied", id)
		}
	}
	if g := e.expect(e.do("GET", "/api/admin/other/identity-providers/corp", rootToken, nil), 200).json(t); g["client_secret_set"] != false ||
		fmt.Sprint(g["domains"]) != "[corp.example corp-mail.example]" {
		t.Fatalf("other's corp: %v", g)
	}
	copied := e.exportConfig("other")
	// The copy's export is acme's but for the secrets it lacks and the
	// domains it has.
	expect := bytes.ReplaceAll(tenantNeutral(exported, "acme"), []byte(`"client_secret_set":true`), []byte(`"client_secret_set":false`))
	expect = bytes.Replace(expect, []byte(`"domains":["acme.example"]`), []byte(`"domains":["other.example"]`), 1)
	if !bytes.Equal(tenantNeutral(copied, "other"), expect) {
		t.Fatalf("the copy exports differently:\n%s\n%s", expect, copied)
	}
	if ten := e.expect(e.do("GET", "/api/system/tenants/other", rootToken, nil), 200).json(t); ten["provider_id"] != "corp" || ten["mfa_provider"] != "totp" {
		t.Fatalf("other's directory settings: %v", ten)
	}
	// Again: no change (client_secret_set true keeps the none there is).
	before = e.idpState("acme", "other")
	e.expectCounts(e.importCounts("other", "", copyDoc), counts("unchanged", n))
	e.requireIdPStateUnchanged(t, before, "a re-import of the copy wrote", "acme", "other")

	// A clear secret in the document: sealed for other (a plan first,
	// which writes nothing), never answered, exported or in an event.
	withSecret := deepCopy(t, copyDoc)
	c, _ := docItem(t, withSecret, "identity_providers", "corp")
	c["client_secret"] = copiedSecret
	before = e.idpState("acme", "other")
	var answers [][]byte
	plan := e.expect(e.do("PUT", "/api/admin/other/configuration?dry_run=true", rootToken, withSecret), 200)
	answers = append(answers, plan.body)
	e.requireIdPStateUnchanged(t, before, "a plan wrote", "acme", "other")
	applied := e.expect(e.importConfig("other", "", withSecret), 200)
	answers = append(answers, applied.body)
	for _, a := range [][]byte{plan.body, applied.body} {
		if got := changeList(t, decodeDoc(t, a)); got != "identity_providers/corp update [client_secret client_secret_set]" {
			t.Fatalf("changes: %s", got)
		}
	}
	stored := e.storedIdP("other", "corp")
	if v, err := directory.OpenIdPSecret(box, "other", "corp", stored.Spec.ClientSecretSealed); err != nil || v != copiedSecret {
		t.Fatalf("other's corp secret opens to %q, %v", v, err)
	}
	if _, err := directory.OpenIdPSecret(box, "acme", "corp", stored.Spec.ClientSecretSealed); err == nil {
		t.Fatal("the sealed secret opens for another tenant")
	}
	answers = append(answers, e.exportConfig("other"),
		e.expect(e.do("GET", "/api/admin/other/identity-providers/corp", rootToken, nil), 200).body,
		e.expect(e.do("GET", "/api/admin/other/identity-providers", rootToken, nil), 200).body,
		e.expect(e.do("GET", "/api/admin/other/events?limit=1000", rootToken, nil), 200).body,
		e.storeEvents("other"))
	for i, a := range answers {
		holdsNone(t, fmt.Sprintf("answer %d", i), a, []string{copiedSecret, stored.Spec.ClientSecretSealed})
	}
	if g := decodeDoc(t, answers[3]); g["client_secret_set"] != true {
		t.Fatalf("other's corp after the clear secret: %v", g)
	}
	// The same document again: the secret is the stored one, nothing
	// changes (a config apply is idempotent).
	before = e.idpState("acme", "other")
	e.expectCounts(e.importCounts("other", "", withSecret), counts("unchanged", n))
	e.requireIdPStateUnchanged(t, before, "a clear secret equal to the stored one wrote", "acme", "other")
	// A new secret in clear replaces it; client_secret_set false removes
	// it (only that field changes); a document left as exported keeps
	// acme's.
	c["client_secret"] = rotatedSecret
	e.expect(e.importConfig("other", "merge", withSecret), 200)
	if v, _ := directory.OpenIdPSecret(box, "other", "corp", e.storedIdP("other", "corp").Spec.ClientSecretSealed); v != rotatedSecret {
		t.Fatalf("rotated secret: %q", v)
	}
	removed := deepCopy(t, doc)
	rc, _ := docItem(t, removed, "identity_providers", "corp")
	rc["client_secret_set"] = false
	if got := changeList(t, e.expect(e.importConfig("acme", "", removed), 200).json(t)); got != "identity_providers/corp update [client_secret_set]" {
		t.Fatalf("changes: %s", got)
	}
	if p := e.storedIdP("acme", "corp"); p.Spec.ClientSecretSealed != "" {
		t.Fatal("client_secret_set false kept the secret")
	}
	if p := e.storedIdP("acme", "entra"); p.Spec.ClientSecretSealed == "" || p.Spec.Active {
		t.Fatalf("entra after the import: %+v", p.Spec)
	}
	// The deleted provider is still a deleted one, and its id may be
	// imported as a new provider.
	gone := map[string]any{"id": "gone", "name": "Gone again", "type": "google", "client_id": "new"}
	merged := deepCopy(t, removed)
	merged["identity_providers"] = append(docList(merged, "identity_providers"), gone)
	if got := changeList(t, e.expect(e.importConfig("acme", "merge", merged), 200).json(t)); got != "identity_providers/gone create []" {
		t.Fatalf("changes: %s", got)
	}
	if g := e.storedIdP("acme", "gone"); g.Spec.ClientID != "new" || !g.Spec.Active || g.Meta.Name != "Gone again" {
		t.Fatalf("gone re-imported: %+v", g)
	}
}

// docIDs are the ids of one list of a document.
func docIDs(doc map[string]any, key string) []string {
	var out []string
	for _, x := range docList(doc, key) {
		out = append(out, x.(map[string]any)["id"].(string))
	}
	return out
}

// changeList renders an import answer's changes.
func changeList(t *testing.T, m map[string]any) string {
	t.Helper()
	var out []string
	for _, c := range m["changes"].([]any) {
		c := c.(map[string]any)
		fields := []string{}
		if f, ok := c["fields"].([]any); ok {
			for _, x := range f {
				fields = append(fields, x.(string))
			}
		}
		out = append(out, fmt.Sprintf("%s/%s %s %v", c["kind"], c["id"], c["action"], fields))
	}
	return strings.Join(out, "; ")
}

// TestConfigurationIdentityProviderRefusals: a bad provider, a domain two
// providers would share, a login method or a tenant provider_id naming a
// provider that is neither the document's nor a system-wide one, and a
// replace that drops a provider something the document leaves alone
// still uses are refused naming the document path, with nothing changed.
func TestConfigurationIdentityProviderRefusals(t *testing.T) {
	e := newEnv(t)
	buildFederation(e)
	doc := decodeDoc(t, e.exportConfig("acme"))
	_, corpAt := docItem(t, doc, "identity_providers", "corp")
	_, entraAt := docItem(t, doc, "identity_providers", "entra")
	_, ghAt := docItem(t, doc, "identity_providers", "gh")
	_, defAt := docItem(t, doc, "servers", "default")
	idp := func(doc map[string]any, id string) map[string]any {
		m, _ := docItem(t, doc, "identity_providers", id)
		return m
	}
	methods := func(doc map[string]any) []any {
		return docList(doc, "servers")[defAt].(map[string]any)["authentications"].([]any)
	}
	drop := func(doc map[string]any, id string) {
		var kept []any
		for _, x := range docList(doc, "identity_providers") {
			if x.(map[string]any)["id"] != id {
				kept = append(kept, x)
			}
		}
		doc["identity_providers"] = kept
	}
	p := func(at int, f string) string { return fmt.Sprintf("identity_providers[%d].%s", at, f) }
	method := func(j int) string {
		return fmt.Sprintf("servers[%d].authentications[%d].oidc.identity_provider_id", defAt, j)
	}
	cases := []struct {
		name, mode string
		status     int
		field      string
		edit       func(doc map[string]any)
	}{
		{"an http issuer", "", 400, p(corpAt, "issuer"), func(d map[string]any) { idp(d, "corp")["issuer"] = "http://login.corp.example" }},
		{"no client_id", "", 400, p(ghAt, "client_id"), func(d map[string]any) { delete(idp(d, "gh"), "client_id") }},
		{"an unknown type", "", 400, p(corpAt, "type"), func(d map[string]any) { idp(d, "corp")["type"] = "saml" }},
		{"scopes without openid", "", 400, p(corpAt, "scopes"), func(d map[string]any) { idp(d, "corp")["scopes"] = []any{"email"} }},
		{"a reserved parameter", "", 400, p(corpAt, "extra_auth_params.state"), func(d map[string]any) {
			idp(d, "corp")["extra_auth_params"] = map[string]any{"state": "x"}
		}},
		{"a sealed secret", "", 400, p(entraAt, "client_secret_sealed"), func(d map[string]any) { idp(d, "entra")["client_secret_sealed"] = "AAAA" }},
		{"a tenant_id", "", 400, p(entraAt, "tenant_id"), func(d map[string]any) { idp(d, "entra")["tenant_id"] = "acme" }},
		{"a secret with client_secret_set false", "", 400, p(corpAt, "client_secret_set"), func(d map[string]any) {
			idp(d, "corp")["client_secret"], idp(d, "corp")["client_secret_set"] = "a secret in clear", false
		}},
		{"a secret not printable", "", 400, p(corpAt, "client_secret"), func(d map[string]any) { idp(d, "corp")["client_secret"] = "two words" }},
		{"no id", "", 400, p(ghAt, "id"), func(d map[string]any) { delete(idp(d, "gh"), "id") }},
		{"two providers of one name", "", 400, p(ghAt, "name"), func(d map[string]any) { idp(d, "gh")["name"] = "Corp SSO" }},
		{"two providers of one domain", "", 409, p(ghAt, "domains[0]"), func(d map[string]any) { idp(d, "gh")["domains"] = []any{"corp-mail.example"} }},
		{"a domain of a provider a merge keeps", "merge", 409, "identity_providers[1].domains[1]", func(d map[string]any) {
			drop(d, "corp")
			idp(d, "gh")["domains"] = []any{"gh.example", "corp.example"}
		}},
		{"a method naming no provider", "", 400, method(1), func(d map[string]any) {
			methods(d)[1].(map[string]any)["oidc"] = map[string]any{"identity_provider_id": "nosuch"}
		}},
		{"a method naming another tenant's provider", "merge", 400, method(3), func(d map[string]any) {
			methods(d)[3].(map[string]any)["oidc"] = map[string]any{"identity_provider_id": "theirs"}
		}},
		{"a method naming a provider the replace drops", "", 400, method(2), func(d map[string]any) {
			drop(d, "entra")
		}},
		{"azure naming a provider that is not Entra ID", "", 400, method(2), func(d map[string]any) {
			idp(d, "entra")["type"], idp(d, "entra")["issuer"] = "oidc", "https://login.corp.example"
		}},
		{"provider_id naming a provider the replace drops", "", 400, "tenant.provider_id", func(d map[string]any) {
			drop(d, "corp")
			m := methods(d)
			d["servers"].([]any)[defAt].(map[string]any)["authentications"] = append(m[:1], m[2:]...)
		}},
		{"a global provider_id naming no system provider", "", 400, "tenant.provider_id", func(d map[string]any) {
			d["tenant"].(map[string]any)["provider_scope"] = "global"
		}},
		{"organization_type domain without domains", "", 400, "tenant.domains", func(d map[string]any) {
			d["tenant"].(map[string]any)["domains"] = []any{}
		}},
		{"an unknown mfa_provider", "", 400, "tenant.mfa_provider", func(d map[string]any) { d["tenant"].(map[string]any)["mfa_provider"] = "sms" }},
		{"identity_providers not a list", "", 400, "identity_providers", func(d map[string]any) { d["identity_providers"] = map[string]any{} }},
	}
	e.createTenant("globex")
	e.expect(e.do("POST", "/api/admin/globex/identity-providers", rootToken, map[string]any{"id": "theirs", "name": "Theirs", "type": "google", "client_id": "x"}), 201)
	before := e.idpState("acme", "other", "globex")
	for _, c := range cases {
		bad := deepCopy(t, doc)
		c.edit(bad)
		r := e.importConfig("acme", c.mode, bad)
		if r.status != c.status {
			t.Errorf("%s: %d, want %d: %s", c.name, r.status, c.status, r.body)
			continue
		}
		r.errorCode(t)
		if f := detailsField(t, r); f != c.field {
			t.Errorf("%s: want an error naming %s: %s", c.name, c.field, r.body)
		}
		holdsNone(t, c.name, r.body, []string{"a secret in clear"})
	}
	e.requireIdPStateUnchanged(t, before, "a refused import wrote", "acme", "other", "globex")

	// A replace that drops entra and leaves the default server out (a
	// replace keeps system servers as they are, and default logs in with
	// entra): 409 in_use naming entra and its user.
	bad := deepCopy(t, doc)
	drop(bad, "entra")
	var servers []any
	for _, s := range docList(bad, "servers") {
		if s.(map[string]any)["id"] != "default" {
			servers = append(servers, s)
		}
	}
	bad["servers"] = servers
	r := e.importConfig("acme", "", bad)
	if r.status != 409 || r.errorCode(t) != "in_use" {
		t.Fatalf("a replace dropping a provider a kept server uses: %d %s", r.status, r.body)
	}
	if d := r.json(t)["details"].(map[string]any); d["id"] != "entra" || fmt.Sprint(d["used_by"]) != "map[servers:[acme/default]]" {
		t.Fatalf("in_use details: %s", r.body)
	}
	e.requireIdPStateUnchanged(t, before, "a refused import wrote", "acme", "other", "globex")
}

// TestConfigurationSystemIdentityProviders: the system tenant's
// providers are in the system tenant's document only; a replace of it
// that drops one another tenant uses (a server's login method, a global
// provider_id) is a 409 in_use naming the provider and its users, with
// nothing changed; once nothing uses it, the replace deletes it.
func TestConfigurationSystemIdentityProviders(t *testing.T) {
	e := newEnv(t)
	buildFederation(e)
	ten := e.expect(e.do("GET", "/api/system/tenants/other", rootToken, nil), 200).json(t)
	ten["provider_scope"], ten["provider_id"] = "global", "google"
	e.expect(e.do("PUT", "/api/system/tenants/other", rootToken, ten), 200)
	sys := e.exportConfig(model.SystemTenantID)
	checkNoClearSecrets(t, sys, []string{googleSecret})
	holdsNone(t, "the system export", sys, e.sealedSecrets(model.SystemTenantID))
	doc := decodeDoc(t, sys)
	if ids := fmt.Sprint(docIDs(doc, "identity_providers")); ids != "[google]" {
		t.Fatalf("the system tenant's providers: %s", ids)
	}
	if g, _ := docItem(t, doc, "identity_providers", "google"); g["client_secret_set"] != true || g["issuer"] != "https://accounts.google.com" {
		t.Fatalf("exported google: %v", g)
	}
	before := e.idpState("acme", "other")
	e.expectCounts(e.importCounts(model.SystemTenantID, "", doc), counts("unchanged", sizes(doc)))
	e.requireIdPStateUnchanged(t, before, "an unchanged re-import of the system tenant wrote", "acme", "other")

	without := deepCopy(t, doc)
	without["identity_providers"] = []any{}
	r := e.importConfig(model.SystemTenantID, "", without)
	if r.status != 409 || r.errorCode(t) != "in_use" {
		t.Fatalf("dropping a system provider in use: %d %s", r.status, r.body)
	}
	if d := r.json(t)["details"].(map[string]any); d["id"] != "google" || fmt.Sprint(d["used_by"]) != "map[servers:[acme/default] tenants:[other]]" {
		t.Fatalf("in_use details: %s", r.body)
	}
	e.requireIdPStateUnchanged(t, before, "a refused import wrote", "acme", "other")

	// acme's servers stop using it (through acme's document), other's
	// provider_id goes: the replace deletes it.
	acme := decodeDoc(t, e.exportConfig("acme"))
	def, _ := docItem(t, acme, "servers", "default")
	def["authentications"] = def["authentications"].([]any)[:3]
	e.expect(e.importConfig("acme", "", acme), 200)
	ten = e.expect(e.do("GET", "/api/system/tenants/other", rootToken, nil), 200).json(t)
	ten["provider_id"] = ""
	e.expect(e.do("PUT", "/api/system/tenants/other", rootToken, ten), 200)
	if got := changeList(t, e.expect(e.importConfig(model.SystemTenantID, "", without), 200).json(t)); got != "identity_providers/google delete []" {
		t.Fatalf("changes: %s", got)
	}
	e.expect(e.do("GET", "/api/system/identity-providers/google", rootToken, nil), 404)
}
