package admin_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/admin"
	"github.com/gatehouse-dev/gatehouse/internal/httpapi"
	"github.com/gatehouse-dev/gatehouse/policies"
)

// A public ES256 key set and the same key with its private part.
const (
	testJWKS        = `{"keys":[{"use":"sig","kty":"EC","kid":"k1","crv":"P-256","alg":"ES256","x":"7ZitrI1DuMA0NQ_vH0GNF7_YrCYfsz4juCpyk63S3Ns","y":"LWchNg9KiiBgahcdesc2dCk6RZE0O-iaq6XGSzf1Miw"}]}`
	testPrivateJWKS = `{"keys":[{"use":"sig","kty":"EC","kid":"k1","crv":"P-256","alg":"ES256","x":"7ZitrI1DuMA0NQ_vH0GNF7_YrCYfsz4juCpyk63S3Ns","y":"LWchNg9KiiBgahcdesc2dCk6RZE0O-iaq6XGSzf1Miw","d":"dPZu0DY6ntRyoy2F1Y744D1FiliflEHpdkYwwc8lbLI"}]}`
)

func TestIssuers(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	e.expect(e.do("POST", "/api/admin/acme/gateways", rootToken, map[string]any{"id": "edge", "name": "edge"}), 201)
	base := "/api/admin/acme/issuers"
	created := e.expect(e.do("POST", base, rootToken, map[string]any{"id": "idp", "name": "IdP", "issuer": "https://idp.example.com",
		"audiences": []string{"pets-api"}, "jwks": json.RawMessage(testJWKS)}), 201).json(t)
	if created["issuer"] != "https://idp.example.com" || created["discovery"] != false || created["jwks"] == nil {
		t.Fatalf("created: %v", created)
	}
	e.expect(e.do("POST", base, rootToken, map[string]any{"name": "IdP", "issuer": "https://x", "audiences": []string{"a"}, "discovery": true}), 409)
	before := e.snapshot()
	for _, bad := range []struct {
		body  map[string]any
		field string
	}{
		{map[string]any{"name": "x", "audiences": []string{"a"}, "discovery": true}, "issuer"},
		{map[string]any{"name": "x", "issuer": "https://i", "discovery": true}, "audiences"},
		{map[string]any{"name": "x", "issuer": "https://i", "audiences": []string{"a"}}, "jwks"},
		{map[string]any{"name": "x", "issuer": "https://i", "audiences": []string{"a"}, "discovery": true, "jwks_uri": "https://i/keys"}, "jwks"},
		{map[string]any{"name": "x", "issuer": "https://i", "audiences": []string{"a"}, "jwks_uri": "ftp://i/keys"}, "jwks_uri"},
		{map[string]any{"name": "x", "issuer": "not a url", "audiences": []string{"a"}, "discovery": true}, "issuer"},
		{map[string]any{"name": "x", "issuer": "https://i", "audiences": []string{"a"}, "jwks": json.RawMessage(`{"keys":[]}`)}, "jwks"},
		{map[string]any{"name": "x", "issuer": "https://i", "audiences": []string{"a"}, "jwks": json.RawMessage(`"nope"`)}, "jwks"},
		{map[string]any{"name": "x", "issuer": "https://i", "audiences": []string{"a"}, "jwks": json.RawMessage(testPrivateJWKS)}, "jwks.keys[0]"},
	} {
		r := e.do("POST", base, rootToken, bad.body)
		if r.status != 400 || r.json(t)["details"].(map[string]any)["field"] != bad.field {
			t.Errorf("%v: %d %s", bad.body, r.status, r.body)
		}
	}
	e.requireUnchanged(t, before, "a rejected issuer changed the store")
	// Issuers reach the gateways' bundles.
	deadline := time.Now().Add(5 * time.Second)
	for {
		if b := e.bundles.Get("acme", "edge"); b != nil {
			cfg, err := policies.ParseBundleConfig(b.Compiled.Data)
			if err == nil && len(cfg.Issuers) == 1 && cfg.Issuers[0].Issuer == "https://idp.example.com" && cfg.Issuers[0].JWKS != "" {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the issuer did not reach the gateway's bundle")
		}
		time.Sleep(10 * time.Millisecond)
	}
	etag := e.expect(e.do("GET", base+"/idp", rootToken, nil), 200).header.Get("ETag")
	upd := e.expect(e.do("PUT", base+"/idp", rootToken, map[string]any{"name": "IdP", "issuer": "https://idp.example.com",
		"audiences": []string{"pets-api", "shop"}, "jwks_uri": "https://idp.example.com/keys"}, "If-Match", etag), 200).json(t)
	if upd["jwks"] != nil || upd["jwks_uri"] != "https://idp.example.com/keys" || len(upd["audiences"].([]any)) != 2 {
		t.Fatalf("updated: %v", upd)
	}
	e.expect(e.do("PUT", base+"/idp", rootToken, map[string]any{"name": "IdP", "issuer": "https://idp.example.com",
		"audiences": []string{"a"}, "discovery": true}, "If-Match", etag), 412)
	if l := e.expect(e.do("GET", base, rootToken, nil), 200).json(t); l["total"] != float64(1) {
		t.Fatalf("list: %v", l)
	}
	e.expect(e.do("DELETE", base+"/idp", rootToken, nil), 204)
	e.expect(e.do("GET", base+"/idp", rootToken, nil), 404)
}

// TestIssuerURLs: the issuer is a URL; jwks_uri and a discovery issuer are
// https and name no loopback, private or link-local host, unless the
// private-URL setting (--jwks-allow-private-urls) allows them (and then
// plain http to them only).
func TestIssuerURLs(t *testing.T) {
	issuer := func(extra map[string]any) map[string]any {
		b := map[string]any{"name": "x", "issuer": "https://idp.example.com", "audiences": []string{"a"}}
		for k, v := range extra {
			b[k] = v
		}
		return b
	}
	refusedAlways := []struct {
		body  map[string]any
		field string
	}{
		{issuer(map[string]any{"issuer": "not a url", "jwks": json.RawMessage(testJWKS)}), "issuer"},
		{issuer(map[string]any{"issuer": "idp.example.com", "jwks": json.RawMessage(testJWKS)}), "issuer"},
		{issuer(map[string]any{"issuer": "urn:example:idp", "jwks": json.RawMessage(testJWKS)}), "issuer"},
		{issuer(map[string]any{"issuer": "https://idp.example.com/?tenant=1", "jwks": json.RawMessage(testJWKS)}), "issuer"},
		{issuer(map[string]any{"issuer": "https://idp.example.com/#x", "jwks": json.RawMessage(testJWKS)}), "issuer"},
		{issuer(map[string]any{"issuer": "https://me:pw@idp.example.com", "jwks": json.RawMessage(testJWKS)}), "issuer"},
		{issuer(map[string]any{"jwks_uri": "http://idp.example.com/keys"}), "jwks_uri"},
		{issuer(map[string]any{"jwks_uri": "ftp://idp.example.com/keys"}), "jwks_uri"},
		{issuer(map[string]any{"jwks_uri": "/keys"}), "jwks_uri"},
		{issuer(map[string]any{"jwks_uri": "https://idp.example.com/keys#k"}), "jwks_uri"},
		{issuer(map[string]any{"issuer": "http://idp.example.com", "discovery": true}), "issuer"},
	}
	private := []map[string]any{
		issuer(map[string]any{"jwks_uri": "http://127.0.0.1:8081/keys"}),
		issuer(map[string]any{"jwks_uri": "https://localhost/keys"}),
		issuer(map[string]any{"jwks_uri": "https://10.1.2.3/keys"}),
		issuer(map[string]any{"jwks_uri": "https://[::1]:8443/keys"}),
		issuer(map[string]any{"jwks_uri": "http://169.254.169.254/latest"}),
		issuer(map[string]any{"issuer": "http://localhost:8080/realms/dev", "discovery": true}),
	}
	for _, allow := range []bool{false, true} {
		e := newEnvWith(t, func(o *admin.Options) { o.AllowPrivateJWKSURLs = allow })
		e.createTenant("acme")
		before := e.snapshot()
		for _, bad := range refusedAlways {
			r := e.do("POST", "/api/admin/acme/issuers", rootToken, bad.body)
			if r.status != 400 || r.json(t)["details"].(map[string]any)["field"] != bad.field {
				t.Errorf("private URLs allowed %v: %v: %d %s", allow, bad.body, r.status, r.body)
			}
		}
		for i, body := range private {
			r := e.do("POST", "/api/admin/acme/issuers", rootToken, body)
			switch {
			case !allow && (r.status != 400 || !contains(r.json(t)["error"], "--jwks-allow-private-urls")):
				t.Errorf("%v without the setting: %d %s", body, r.status, r.body)
			case allow:
				body["name"], body["issuer"] = fmt.Sprint("private-", i), fmt.Sprint(body["issuer"], "/", i)
				if body["discovery"] == true {
					body["issuer"] = "http://localhost:8080/realms/dev"
				}
				e.expect(e.do("POST", "/api/admin/acme/issuers", rootToken, body), 201)
			}
		}
		if !allow {
			e.requireUnchanged(t, before, "a refused issuer changed the store")
		}
	}
	// A name resolving to a private address is for the authorizer to refuse
	// when it dials (internal/netguard); a public-looking https URL passes.
	e := newEnv(t)
	e.createTenant("acme")
	e.expect(e.do("POST", "/api/admin/acme/issuers", rootToken, issuer(map[string]any{"jwks_uri": "https://idp.example.com/keys?v=2"})), 201)
}

// TestIssuerURLsAreUnique: a token's iss names one issuer, so two issuers
// of a tenant cannot share an issuer URL — through the endpoints and
// through a configuration import; other tenants may use it.
func TestIssuerURLsAreUnique(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	e.createTenant("beta")
	base := "/api/admin/acme/issuers"
	body := func(id, url string) map[string]any {
		return map[string]any{"id": id, "name": id, "issuer": url, "audiences": []string{"a"}, "jwks": json.RawMessage(testJWKS)}
	}
	e.expect(e.do("POST", base, rootToken, body("one", "https://idp.example.com")), 201)
	e.expect(e.do("POST", base, rootToken, body("two", "https://other.example.com")), 201)
	before := e.snapshot()
	for _, r := range []resp{
		e.do("POST", base, rootToken, body("three", "https://idp.example.com")),
		e.do("PUT", base+"/two", rootToken, body("two", "https://idp.example.com")),
	} {
		m := r.json(t)
		if r.status != 409 || r.errorCode(t) != httpapi.CodeAlreadyExists || m["details"].(map[string]any)["field"] != "issuer" ||
			!contains(m["error"], `"one"`) {
			t.Errorf("duplicate issuer URL: %d %s", r.status, r.body)
		}
	}
	e.requireUnchanged(t, before, "a refused duplicate issuer URL changed the store")
	// Keeping its own URL is no conflict; another tenant may use it.
	e.expect(e.do("PUT", base+"/one", rootToken, body("one", "https://idp.example.com")), 200)
	e.expect(e.do("POST", "/api/admin/beta/issuers", rootToken, body("one", "https://idp.example.com")), 201)

	// A configuration import: within the document, and in merge mode
	// against a stored issuer the merge keeps.
	var doc map[string]any
	if err := json.Unmarshal(e.exportConfig("acme"), &doc); err != nil {
		t.Fatal(err)
	}
	issuers := doc["issuers"].([]any)
	issuers[1].(map[string]any)["issuer"] = issuers[0].(map[string]any)["issuer"]
	before = e.snapshot()
	for _, mode := range []string{"replace", "merge"} {
		if r := e.importConfig("acme", mode, doc); r.status != 400 || r.json(t)["details"].(map[string]any)["field"] != "issuers[1].issuer" {
			t.Errorf("%s: duplicate issuer URL in the document: %d %s", mode, r.status, r.body)
		}
	}
	doc["issuers"] = []any{map[string]any{"id": "new", "name": "new", "issuer": "https://idp.example.com", "audiences": []string{"a"},
		"jwks": json.RawMessage(testJWKS)}}
	if r := e.importConfig("acme", "merge", doc); r.status != 400 || r.json(t)["details"].(map[string]any)["field"] != "issuers[0].issuer" ||
		!contains(r.json(t)["error"], `"one", which a merge keeps`) {
		t.Errorf("merge: duplicate of a kept issuer: %d %s", r.status, r.body)
	}
	e.requireUnchanged(t, before, "a refused import changed the store")
	// Replacing the issuers, the same document is fine.
	e.expect(e.importConfig("acme", "replace", doc), 200)
}
