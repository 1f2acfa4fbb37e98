package admin_test

import (
	"encoding/json"
	"testing"
	"time"

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
	before := e.revision()
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
	if e.revision() != before {
		t.Fatal("a rejected issuer changed the store")
	}
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
