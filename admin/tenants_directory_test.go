package admin_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/admin"
	"github.com/gatehouse-dev/gatehouse/directory"
	"github.com/gatehouse-dev/gatehouse/internal/passwords"
	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	"github.com/gatehouse-dev/gatehouse/store"
)

func TestTenantDirectoryFields(t *testing.T) {
	e := newEnv(t)
	plain := e.createTenant("plain")
	if plain["organization_type"] != "adhoc" || plain["provider_scope"] != "organization" || fmt.Sprint(plain["domains"]) != "[]" ||
		plain["mfa_provider"] != "" || plain["provider_id"] != "" || plain["realm_name"] != "" {
		t.Fatalf("defaults: %v", plain)
	}
	m := e.expect(e.do("POST", "/api/system/tenants", rootToken, map[string]any{"id": "acme", "name": "Acme",
		"organization_type": "domain", "domains": []string{"acme.example", "acme.test"}, "mfa_provider": "totp", "realm_name": "acme-realm"}), 201).json(t)
	if m["organization_type"] != "domain" || fmt.Sprint(m["domains"]) != "[acme.example acme.test]" || m["mfa_provider"] != "totp" || m["realm_name"] != "acme-realm" {
		t.Fatalf("created: %v", m)
	}
	if _, has := m["admin_user"]; has {
		t.Fatalf("admin_user without one: %v", m)
	}

	// Bad settings: 400 naming the field, nothing created.
	cases := []struct {
		field string
		body  map[string]any
	}{
		{"organization_type", map[string]any{"organization_type": "federated"}},
		{"domains", map[string]any{"organization_type": "domain"}},
		{"domains[0]", map[string]any{"domains": []string{"Beta.example"}}},
		{"domains[1]", map[string]any{"domains": []string{"beta.example", "beta.example"}}},
		{"domains[0]", map[string]any{"domains": []string{"localhost"}}},
		{"provider_scope", map[string]any{"provider_scope": "world"}},
		{"provider_id", map[string]any{"provider_id": "no-such-idp"}},
		{"provider_id", map[string]any{"provider_scope": "global", "provider_id": "no-such-idp"}},
		{"provider_id", map[string]any{"provider_id": "bad/id"}},
		{"mfa_provider", map[string]any{"mfa_provider": "sms"}},
		{"realm_name", map[string]any{"realm_name": strings.Repeat("r", 300)}},
		{"identity_provider.client_id", map[string]any{"identity_provider": map[string]any{"name": "corp", "type": "oidc", "issuer": "https://login.example.com"}}},
		{"identity_provider.issuer", map[string]any{"identity_provider": map[string]any{"name": "corp", "type": "oidc", "issuer": "http://login.example.com", "client_id": "c"}}},
		{"identity_provider.id", map[string]any{"identity_provider": map[string]any{"id": "a b", "name": "corp", "type": "google", "client_id": "c"}}},
		{"identity_provider.tenant_id", map[string]any{"identity_provider": map[string]any{"tenant_id": "other", "name": "corp", "type": "google", "client_id": "c"}}},
		{"admin_user.email", map[string]any{"admin_user": map[string]any{"given_name": "Ann"}}},
		{"admin_user.email", map[string]any{"admin_user": map[string]any{"email": "Ann <ann@beta.example>"}}},
		{"admin_user.password", map[string]any{"admin_user": map[string]any{"email": "ann@beta.example", "password": "short"}}},
		{"admin_user.given_name", map[string]any{"admin_user": map[string]any{"email": "ann@beta.example", "given_name": strings.Repeat("g", 300)}}},
	}
	before := e.idpState("acme", "beta")
	for _, c := range cases {
		body := map[string]any{"id": "beta", "name": "Beta"}
		for k, v := range c.body {
			body[k] = v
		}
		r := e.do("POST", "/api/system/tenants", rootToken, body)
		if r.status != 400 || detailsField(t, r) != c.field {
			t.Errorf("%v: %d %s (want 400 naming %s)", c.body, r.status, r.body, c.field)
		}
	}
	e.expect(e.do("GET", "/api/system/tenants/beta", rootToken, nil), 404)
	e.requireIdPStateUnchanged(t, before, "refused creates changed the store", "acme", "beta")

	// A domain of another live tenant: 409 naming it, nothing created.
	if r := e.do("POST", "/api/system/tenants", rootToken, map[string]any{"id": "beta", "name": "Beta", "domains": []string{"beta.example", "acme.test"}}); r.status != 409 || detailsField(t, r) != "domains[1]" {
		t.Fatalf("a domain of another tenant: %d %s", r.status, r.body)
	}
	e.requireIdPStateUnchanged(t, before, "a refused create changed the store", "acme", "beta")
	e.expect(e.do("GET", "/api/system/tenants/beta", rootToken, nil), 404)

	// PUT: the same rules; identity_provider and admin_user only on create.
	got := e.expect(e.do("GET", "/api/system/tenants/plain", rootToken, nil), 200).json(t)
	for _, c := range []struct {
		field string
		edit  func(m map[string]any)
	}{
		{"domains[0]", func(m map[string]any) { m["domains"] = []string{"acme.example"} }},
		{"identity_provider", func(m map[string]any) {
			m["identity_provider"] = map[string]any{"name": "x", "type": "google", "client_id": "c"}
		}},
		{"admin_user", func(m map[string]any) { m["admin_user"] = map[string]any{"email": "a@b.example"} }},
		{"provider_id", func(m map[string]any) { m["provider_id"] = "nope" }},
		{"mfa_provider", func(m map[string]any) { m["mfa_provider"] = "hotp" }},
	} {
		body := map[string]any{}
		for k, v := range got {
			body[k] = v
		}
		c.edit(body)
		if r := e.do("PUT", "/api/system/tenants/plain", rootToken, body); r.status/100 != 4 || detailsField(t, r) != c.field {
			t.Errorf("PUT %s: %d %s", c.field, r.status, r.body)
		}
	}
	e.requireIdPStateUnchanged(t, before, "refused PUTs changed the store", "acme", "plain")
	// The tenant's own admin route may set them too (PATCH merges).
	own := e.credential("plain")
	p := e.expect(e.do("PATCH", "/api/admin/plain/tenant", own, map[string]any{"domains": []string{"plain.example"}, "mfa_provider": "totp"},
		"Content-Type", admin.MergePatchType), 200).json(t)
	if fmt.Sprint(p["domains"]) != "[plain.example]" || p["mfa_provider"] != "totp" {
		t.Fatalf("patch: %v", p)
	}
	// Deleting a tenant frees its domains.
	e.expect(e.do("DELETE", "/api/system/tenants/acme", rootToken, nil), 204)
	e.expect(e.do("POST", "/api/system/tenants", rootToken, map[string]any{"id": "beta", "name": "Beta", "domains": []string{"acme.test"}}), 201)
}

func TestTenantCreateWithIdentityProviderAndAdminUser(t *testing.T) {
	e := newEnv(t)
	idp := oidcIdP("corp")
	idp["id"] = "corp"
	m := e.expect(e.do("POST", "/api/system/tenants", rootToken, map[string]any{"id": "acme", "name": "Acme",
		"identity_provider": idp,
		"admin_user":        map[string]any{"email": "Ann@Acme.example", "given_name": "Ann", "family_name": "Admin", "password": "correct horse battery"}}), 201).json(t)
	if m["provider_id"] != "corp" || m["provider_scope"] != "organization" {
		t.Fatalf("provider: %v", m)
	}
	au := m["admin_user"].(map[string]any)
	if au["email"] != "ann@acme.example" || au["id"] == "" {
		t.Fatalf("admin_user: %v", au)
	}
	// GET does not repeat admin_user.
	if g := e.expect(e.do("GET", "/api/system/tenants/acme", rootToken, nil), 200).json(t); g["admin_user"] != nil {
		t.Fatalf("GET shows admin_user: %v", g)
	}
	p := e.expect(e.do("GET", "/api/admin/acme/identity-providers/corp", rootToken, nil), 200).json(t)
	if p["client_secret_set"] != true || p["tenant_id"] != "acme" {
		t.Fatalf("inline provider: %v", p)
	}
	stored, err := directory.IdentityProviders.Get(context.Background(), e.store, "acme", "corp")
	if err != nil {
		t.Fatal(err)
	}
	if v, err := directory.OpenIdPSecret(testkit.SecretBox(t), "acme", "corp", stored.Spec.ClientSecretSealed); err != nil || v != idpSecret {
		t.Fatalf("inline secret opens to %q %v", v, err)
	}
	u, err := directory.UserByEmail(context.Background(), e.store, "acme", "ann@acme.example")
	if err != nil {
		t.Fatal(err)
	}
	if u.Meta.ID != au["id"] || u.Spec.State != "active" || u.Spec.GivenName != "Ann" || u.Spec.FamilyName != "Admin" || u.Spec.Subject != "ann@acme.example" {
		t.Fatalf("user: %+v", u)
	}
	if ok, err := passwords.Verify(u.Spec.PasswordHash, "correct horse battery"); !ok || err != nil {
		t.Fatalf("password: %v %v", ok, err)
	}
	// The events of the create name the provider and the user; no
	// password or secret in them.
	ev := e.expect(e.do("GET", "/api/admin/acme/events", rootToken, nil), 200)
	for _, needle := range []string{"correct horse battery", idpSecret, u.Spec.PasswordHash} {
		if strings.Contains(string(ev.body), needle) {
			t.Fatalf("events hold %q", needle)
		}
	}
	var kinds []string
	for _, x := range ev.json(t)["events"].([]any) {
		kinds = append(kinds, x.(map[string]any)["kind"].(string))
	}
	for _, k := range []string{"tenants", "identity-providers", "users"} {
		if !slices.Contains(kinds, k) {
			t.Fatalf("no %s event: %v", k, kinds)
		}
	}
	// The tenant's provider cannot be deleted while it is provider_id.
	if r := e.do("DELETE", "/api/admin/acme/identity-providers/corp", rootToken, nil); r.status != 409 || r.errorCode(t) != "in_use" {
		t.Fatalf("delete the tenant's provider: %d %s", r.status, r.body)
	}
	// provider_id may also name a provider the tenant makes later, not an
	// unknown one, and a global one must be a system provider.
	ten := e.expect(e.do("GET", "/api/system/tenants/acme", rootToken, nil), 200).json(t)
	ten["provider_scope"] = "global"
	if r := e.do("PUT", "/api/system/tenants/acme", rootToken, ten); r.status != 400 || detailsField(t, r) != "provider_id" {
		t.Fatalf("global provider_id naming a tenant provider: %d %s", r.status, r.body)
	}
	// A bad inline provider creates nothing at all (no tenant, servers,
	// provider or user).
	before := e.idpState("beta")
	bad := oidcIdP("corp")
	delete(bad, "client_id")
	if r := e.do("POST", "/api/system/tenants", rootToken, map[string]any{"id": "beta", "name": "Beta", "identity_provider": bad,
		"admin_user": map[string]any{"email": "bob@beta.example"}}); r.status != 400 || detailsField(t, r) != "identity_provider.client_id" {
		t.Fatalf("bad inline provider: %d %s", r.status, r.body)
	}
	e.requireIdPStateUnchanged(t, before, "a refused create changed the store", "beta")
	if _, err := directory.UserByEmail(context.Background(), e.store, "beta", "bob@beta.example"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("user of a refused tenant: %v", err)
	}
	// The inline provider's domain conflicts with nothing else: a second
	// tenant may have a provider with the same domain.
	idp2 := oidcIdP("corp")
	e.expect(e.do("POST", "/api/system/tenants", rootToken, map[string]any{"id": "gamma", "name": "Gamma", "identity_provider": idp2}), 201)
}

func TestTenantListFilters(t *testing.T) {
	e := newEnv(t)
	for _, b := range []map[string]any{
		{"id": "t1", "name": "Alpha", "mfa_provider": "totp", "realm_name": "r1"},
		{"id": "t2", "name": "Alpha", "realm_name": "r2"},
		{"id": "t3", "name": "Beta", "mfa_provider": "totp", "status": "DISABLED"},
		{"id": "t4", "name": "Gamma"},
	} {
		e.expect(e.do("POST", "/api/system/tenants", rootToken, b), 201)
	}
	e.expect(e.do("DELETE", "/api/system/tenants/t4", rootToken, nil), 204)
	ids := func(q string) []string {
		l := e.expect(e.do("GET", "/api/system/tenants"+q, rootToken, nil), 200).json(t)
		var out []string
		for _, x := range l["tenants"].([]any) {
			out = append(out, x.(map[string]any)["id"].(string))
		}
		if int(l["total"].(float64)) != len(out) {
			t.Fatalf("%s: total %v for %v", q, l["total"], out)
		}
		return out
	}
	for q, want := range map[string][]string{
		"?name=Alpha":                       {"t1", "t2"},
		"?name=Alpha&mfa_provider=totp":     {"t1"},
		"?mfa_provider=totp":                {"t1", "t3"},
		"?mfa_provider=":                    {"t2"},
		"?realm_name=r2":                    {"t2"},
		"?status=DISABLED":                  {"t3"},
		"?status=AVAILABLE&name=Beta":       nil,
		"?status=DELETED":                   nil,
		"?status=DELETED&include_deleted=1": {"t4"},
		"?name=Gamma&include_deleted=true":  {"t4"},
	} {
		if got := ids(q); !slices.Equal(got, want) {
			t.Errorf("%s: %v, want %v", q, got, want)
		}
	}
	if r := e.do("GET", "/api/system/tenants?status=SLEEPING", rootToken, nil); r.status != 400 || detailsField(t, r) != "status" {
		t.Fatalf("bad status filter: %d %s", r.status, r.body)
	}
}
