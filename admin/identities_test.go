package admin_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/gatehouse-dev/gatehouse/model"
	serverkeys "github.com/gatehouse-dev/gatehouse/oauth/keys"
	"github.com/gatehouse-dev/gatehouse/store"
)

// userToken is an access token of server aid of tid for user sub, signed
// with the server's active key, shaped as the provider shapes a user's
// token (gh_sub_type user, gh_tid the tenant; aud the issuer).
func (d *dirEnv) userToken(tid, aid, sub string, edit func(map[string]any)) string {
	d.t.Helper()
	ctx := context.Background()
	server, err := store.Repo[model.ServerSpec]{Kind: model.KindServer}.Get(ctx, d.store, tid, aid)
	if err != nil {
		d.t.Fatal(err)
	}
	set, err := d.keys.Ensure(ctx, tid, aid, serverkeys.Rotation{Policy: serverkeys.PolicyOf(&server.Spec), Now: time.Now()})
	if err != nil {
		d.t.Fatal(err)
	}
	k, err := set.Signer(time.Now())
	if err != nil {
		d.t.Fatal(err)
	}
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: k.SignatureAlgorithm(), Key: k.Key()}, (&jose.SignerOptions{}).WithHeader("kid", k.ID()))
	if err != nil {
		d.t.Fatal(err)
	}
	iss := model.IssuerURL(ghPublic, tid, aid)
	now := time.Now()
	claims := map[string]any{"iss": iss, "sub": sub, "aud": []string{iss}, "jti": "j-" + sub + "-" + aid, "iat": now.Unix(),
		"exp": now.Add(time.Hour).Unix(), "client_id": "web", "gh_sub_type": "user", "gh_tid": tid}
	if edit != nil {
		edit(claims)
	}
	payload, _ := json.Marshal(claims)
	jws, err := sig.Sign(payload)
	if err != nil {
		d.t.Fatal(err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		d.t.Fatal(err)
	}
	return out
}

// TestIdentities: /identities finds users and service accounts by id;
// /api/system/users finds users by email across tenants.
func TestIdentities(t *testing.T) {
	d := newDirEnv(t)
	uid := d.createUser("Ada@Example.com", "Ada", "Lovelace")
	said := d.createAccount(map[string]any{"name": "ci", "contact_email": "ops@example.com"})["id"].(string)
	u := d.expect(d.do("GET", "/api/admin/acme/identities/"+uid, rootToken, nil), 200).json(t)
	if u["type"] != "user" || u["id"] != uid || u["name"] != "Ada Lovelace" || u["email"] != "Ada@Example.com" || u["state"] != "active" {
		t.Fatalf("user identity %v", u)
	}
	a := d.expect(d.do("GET", "/api/admin/acme/identities/"+said, rootToken, nil), 200).json(t)
	if a["type"] != "service_account" || a["name"] != "ci" || a["email"] != "ops@example.com" || a["state"] != "active" {
		t.Fatalf("service account identity %v", a)
	}
	d.refused(404, "", "GET", "/api/admin/acme/identities/nosuch", nil)
	d.refused(400, "id", "GET", "/api/admin/acme/identities/bad%20id", nil)

	d.expect(d.do("POST", "/api/admin/other/users", rootToken, map[string]any{"email": "ada@example.com", "given_name": "Ada"}), 201)
	d.expect(d.do("POST", "/api/admin/other/users", rootToken, map[string]any{"email": "zed@example.com"}), 201)
	m := d.expect(d.do("GET", "/api/system/users?email=ADA@example.com", rootToken, nil), 200).json(t)
	got := items(t, m, "users")
	if len(got) != 2 || got[0]["tenant_id"] != "acme" || got[0]["id"] != uid || got[1]["tenant_id"] != "other" || got[1]["type"] != "user" {
		t.Fatalf("users by email: %v", m)
	}
	if m := d.expect(d.do("GET", "/api/system/users?email=nobody@example.com", rootToken, nil), 200).json(t); m["total"] != float64(0) {
		t.Fatalf("users of an unknown email: %v", m)
	}
	d.refused(400, "email", "GET", "/api/system/users", nil)
}

// TestCallerIdentity: a user's token of any server of its tenant gets
// its identity, tenants and projects at /api/identity; another tenant's
// routes are 403; no, bad, admin, client and service account tokens are
// 401; a user that is not active is 403.
func TestCallerIdentity(t *testing.T) {
	d := newDirEnv(t)
	uid := d.createUser("ada@example.com", "Ada", "Lovelace")
	d.expect(d.do("POST", "/api/admin/acme/groups", rootToken, map[string]any{"id": "g1", "name": "g1", "user_ids": []string{uid}}), 201)
	d.expect(d.do("POST", "/api/admin/acme/projects", rootToken, map[string]any{"id": "p1", "name": "one", "group_ids": []string{"g1"}}), 201)
	d.expect(d.do("POST", "/api/admin/acme/projects", rootToken, map[string]any{"id": "p2", "name": "two"}), 201)
	d.expect(d.do("POST", "/api/admin/acme/projects", rootToken, map[string]any{"id": "p3", "name": "three"}), 201)
	d.expect(d.do("PUT", "/api/admin/acme/projects/p2/members/users/"+uid, rootToken, nil), 201)

	for _, aid := range []string{model.DefaultServerID, model.AdminServerID} {
		tok := d.userToken("acme", aid, uid, nil)
		self := d.expect(d.do("GET", "/api/identity/acme/self", tok, nil), 200).json(t)
		if self["type"] != "user" || self["id"] != uid || self["name"] != "Ada Lovelace" || self["email"] != "ada@example.com" {
			t.Fatalf("self with a token of %s: %v", aid, self)
		}
	}
	tok := d.userToken("acme", model.DefaultServerID, uid, nil)
	if got := projectIDs(t, d.expect(d.do("GET", "/api/identity/acme/projects", tok, nil), 200).json(t)); got != "p1<g1> p2" {
		t.Fatalf("the caller's projects %q, want p1 through g1 and p2", got)
	}
	ten := items(t, d.expect(d.do("GET", "/api/identity/tenants", tok, nil), 200).json(t), "tenants")
	if len(ten) != 1 || ten[0]["id"] != "acme" || ten[0]["name"] != "Tenant acme" {
		t.Fatalf("the caller's tenants %v", ten)
	}

	// Another tenant's routes: 403, whatever exists there.
	for _, p := range []string{"/api/identity/other/self", "/api/identity/other/projects", "/api/identity/nosuch/self"} {
		if r := d.do("GET", p, tok, nil); r.status != 403 {
			t.Errorf("%s with acme's user token: %d %s", p, r.status, r.body)
		}
	}
	// Tokens that are not a user's token of its tenant: 401.
	sa := d.createAccount(map[string]any{"name": "ci", "issue_token": true})
	for name, raw := range map[string]string{
		"none":                  "",
		"garbage":               "not-a-token",
		"the bootstrap token":   rootToken,
		"a tenant credential":   d.credential("acme"),
		"a service account's":   sa["access_token"].(string),
		"a client's":            d.userToken("acme", "default", "machine", func(c map[string]any) { c["gh_sub_type"] = "client" }),
		"gh_tid of another":     d.userToken("acme", "default", uid, func(c map[string]any) { c["gh_tid"] = "other" }),
		"expired":               d.userToken("acme", "default", uid, func(c map[string]any) { c["exp"] = time.Now().Add(-time.Hour).Unix() }),
		"another audience":      d.userToken("acme", "default", uid, func(c map[string]any) { c["aud"] = "https://elsewhere" }),
		"signed by other's key": forge(d, uid),
	} {
		for _, p := range []string{"/api/identity/acme/self", "/api/identity/tenants", "/api/identity/acme/projects"} {
			if r := d.do("GET", p, raw, nil); r.status != 401 {
				t.Errorf("%s token on %s: %d %s", name, p, r.status, r.body)
			}
		}
	}
	// A user that is not active (pending here) is 403, and has no tenants.
	pending := d.expect(d.do("POST", "/api/admin/acme/users", rootToken, map[string]any{"email": "pat@example.com", "state": "pending"}), 201).json(t)["id"].(string)
	pt := d.userToken("acme", "default", pending, nil)
	d.expect(d.do("GET", "/api/identity/acme/self", pt, nil), 403)
	d.expect(d.do("GET", "/api/identity/acme/projects", pt, nil), 403)
	if ten := items(t, d.expect(d.do("GET", "/api/identity/tenants", pt, nil), 200).json(t), "tenants"); len(ten) != 0 {
		t.Fatalf("a pending user's tenants: %v", ten)
	}
	// A token naming no user of the tenant is 403.
	d.expect(d.do("GET", "/api/identity/acme/self", d.userToken("acme", "default", "nobody", nil), nil), 403)
}

// forge is acme's issuer claims for uid signed by tenant other's default
// server key.
func forge(d *dirEnv, uid string) string {
	return d.userToken("other", "default", uid, func(c map[string]any) {
		iss := model.IssuerURL(ghPublic, "acme", "default")
		c["iss"], c["aud"], c["gh_tid"] = iss, []string{iss}, "acme"
	})
}
