package admin_test

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/admin"
	"github.com/gatehouse-dev/gatehouse/internal/httpapi"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/store"
)

const claimsPath = "/api/admin/acme/claims"

func TestClaimsCRUD(t *testing.T) {
	e := clientEnv(t, nil)
	c := e.expect(e.do("POST", claimsPath, rootToken, map[string]any{"authorization_server_id": "web", "name": "email",
		"mapping": "email", "type": "id_token", "scopes": []string{"email"}}), 201).json(t)
	id := c["id"].(string)
	if !isUUID(id) || c["tenant_id"] != "acme" || c["mapping"] != "email" || fmt.Sprint(c["scopes"]) != "[email]" {
		t.Fatalf("created claim: %v", c)
	}
	got := e.expect(e.do("GET", claimsPath+"/"+id, rootToken, nil), 200).json(t)
	body := maps.Clone(got)
	body["mapping"], body["scopes"] = "contact.email", []string{}
	upd := e.expect(e.do("PUT", claimsPath+"/"+id, rootToken, body), 200).json(t)
	if upd["mapping"] != "contact.email" || fmt.Sprint(upd["scopes"]) != "[]" {
		t.Fatalf("updated claim: %v", upd)
	}
	l := e.expect(e.do("GET", claimsPath, rootToken, nil), 200).json(t)
	if l["total"].(float64) != 1 || items(t, l, "claims")[0]["name"] != "email" {
		t.Fatalf("claims: %v", l)
	}
	e.expect(e.do("DELETE", claimsPath+"/"+id, rootToken, nil), 204)
	e.expect(e.do("GET", claimsPath+"/"+id, rootToken, nil), 404)
	if evs := e.eventsOf("acme", "claims"); len(evs) != 3 {
		t.Fatalf("claim events: %v", evs)
	}
}

func TestClaimRulesRefuseNamingTheField(t *testing.T) {
	e := clientEnv(t, nil)
	with := func(kv ...any) map[string]any {
		b := map[string]any{"authorization_server_id": "web", "name": "groups", "mapping": "groups", "type": "access_token"}
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i+1] == nil {
				delete(b, kv[i].(string))
				continue
			}
			b[kv[i].(string)] = kv[i+1]
		}
		return b
	}
	cases := []struct {
		name  string
		body  map[string]any
		field string
	}{
		{"server required", with("authorization_server_id", nil), "authorization_server_id"},
		{"unknown server", with("authorization_server_id", "ghost"), "authorization_server_id"},
		{"bad server id", with("authorization_server_id", "a b"), "authorization_server_id"},
		{"name required", with("name", nil), "name"},
		{"name with a space", with("name", "my claim"), "name"},
		{"mapping required", with("mapping", nil), "mapping"},
		{"mapping with an empty segment", with("mapping", "a..b"), "mapping"},
		{"mapping starting with a digit", with("mapping", "1st"), "mapping"},
		{"mapping with a space", with("mapping", "a b"), "mapping"},
		{"mapping too long", with("mapping", strings.Repeat("a", 257)), "mapping"},
		{"type required", with("type", nil), "type"},
		{"the seed's placeholder type", with("type", "string"), "type"},
		{"bad scope", with("scopes", []string{"ok", "has space"}), "scopes[1]"},
		{"scope twice", with("scopes", []string{"a", "a"}), "scopes[1]"},
		{"unknown field", with("value", "x"), "value"},
		{"bad id", with("id", "a/b"), "id"},
		{"tenant mismatch", with("tenant_id", "other"), "tenant_id"},
		{"bad label", with("labels", map[string]string{"-x-": "v"}), "labels.-x-"},
	}
	for _, name := range model.ReservedClaimNames {
		cases = append(cases, struct {
			name  string
			body  map[string]any
			field string
		}{"reserved " + name, with("name", name), "name"})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e.t = t
			before, beforeOAuth := e.snapshot(), e.oauthObjects("acme")
			e.expectFieldError(e.do("POST", claimsPath, rootToken, c.body), c.field)
			e.expectNothingWritten(t, "acme", before, beforeOAuth, "a refused claim create wrote")
		})
	}
	e.t = t
	e.expect(e.do("POST", claimsPath, rootToken, with("name", "https://example.com/roles", "mapping", "app_metadata.roles", "scopes", []string{"roles", "openid"})), 201)
}

func TestClaimNamesAreUniquePerServerAndType(t *testing.T) {
	e := clientEnv(t, nil)
	claim := func(id, server, name, typ string) map[string]any {
		return map[string]any{"id": id, "authorization_server_id": server, "name": name, "mapping": "email", "type": typ}
	}
	e.expect(e.do("POST", claimsPath, rootToken, claim("a", "web", "email", "id_token")), 201)
	before, beforeOAuth := e.snapshot(), e.oauthObjects("acme")
	r := e.do("POST", claimsPath, rootToken, claim("b", "web", "email", "id_token"))
	if r.status != 409 || r.errorCode(t) != httpapi.CodeAlreadyExists || errDetails(t, r)["field"] != "name" || !strings.Contains(r.json(t)["error"].(string), "name") {
		t.Fatalf("duplicate claim: %d %s", r.status, r.body)
	}
	e.expectNothingWritten(t, "acme", before, beforeOAuth, "a refused duplicate claim wrote")
	// The same name in the other token, or of another server, is another claim.
	e.expect(e.do("POST", claimsPath, rootToken, claim("b", "web", "email", "access_token")), 201)
	e.expect(e.do("POST", claimsPath, rootToken, claim("c", "narrow", "email", "id_token")), 201)
	// A PUT into a collision is refused; a PUT of the claim itself is not.
	if r := e.do("PUT", claimsPath+"/b", rootToken, claim("b", "web", "email", "id_token")); r.status != 409 {
		t.Fatalf("PUT into a duplicate: %d %s", r.status, r.body)
	}
	e.expect(e.do("PUT", claimsPath+"/a", rootToken, claim("a", "web", "email", "id_token")), 200)
	// Renamed, the name is free again.
	e.expect(e.do("PATCH", claimsPath+"/a", rootToken, map[string]any{"name": "mail"}, "Content-Type", admin.MergePatchType), 200)
	e.expect(e.do("POST", claimsPath, rootToken, claim("d", "web", "email", "id_token")), 201)
}

func TestClaimsGoWithTheirServerAndStayInTheirTenant(t *testing.T) {
	e := clientEnv(t, nil)
	e.oauthServer("acme", "solo")
	e.createTenant("other")
	otherTok := e.credential("other")
	e.expect(e.do("POST", claimsPath, rootToken, map[string]any{"id": "x", "authorization_server_id": "solo", "name": "email", "mapping": "email", "type": "id_token"}), 201)
	e.expect(e.do("POST", claimsPath, rootToken, map[string]any{"id": "y", "authorization_server_id": "web", "name": "email", "mapping": "email", "type": "id_token"}), 201)
	for _, c := range []struct{ method, path string }{
		{"GET", claimsPath}, {"POST", claimsPath}, {"GET", claimsPath + "/x"}, {"PUT", claimsPath + "/x"}, {"DELETE", claimsPath + "/x"},
	} {
		if r := e.do(c.method, c.path, otherTok, map[string]any{"name": "x"}); r.status != 403 {
			t.Errorf("%s %s with tenant other's credential: %d %s", c.method, c.path, r.status, r.body)
		}
	}
	e.expect(e.do("GET", "/api/admin/other/claims/x", otherTok, nil), 404)
	// Another tenant cannot name acme's server.
	e.expectFieldError(e.do("POST", "/api/admin/other/claims", otherTok, map[string]any{"authorization_server_id": "solo", "name": "n", "mapping": "m", "type": "id_token"}), "authorization_server_id")

	sch, err := admin.NewScheme()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.Update(context.Background(), func(ctx context.Context, tx store.Tx) error {
		_, err := sch.Delete(ctx, tx, model.KindServer, "acme", "solo", 0, nil)
		return err
	}); err != nil {
		t.Fatalf("delete server solo: %v", err)
	}
	e.expect(e.do("GET", claimsPath+"/x", rootToken, nil), 404)
	e.expect(e.do("GET", claimsPath+"/y", rootToken, nil), 200)
}
