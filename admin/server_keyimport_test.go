package admin_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
)

// privateJWKS is a JWK Set of the private keys.
func privateJWKS(t *testing.T, keys ...crypto.Signer) map[string]any {
	t.Helper()
	set := jose.JSONWebKeySet{}
	for _, k := range keys {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: k})
	}
	raw, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func thumbprint(t *testing.T, k crypto.Signer) string {
	t.Helper()
	tp, err := (&jose.JSONWebKey{Key: k.Public()}).Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(tp)
}

// TestServerKeyImport: jwks on a server write imports private keys —
// sealed, never echoed, published as public keys — and refuses keys the
// server cannot sign with, changing nothing.
func TestServerKeyImport(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	ec1, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ec2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	small, _ := rsa.GenerateKey(rand.Reader, 1024)

	r := e.expect(e.do("POST", "/api/admin/acme/servers", rootToken, map[string]any{"id": "imp", "key_type": "ecdsa",
		"key_activation_delay": "0s", "jwks": privateJWKS(t, ec1)}), 201)
	if strings.Contains(string(r.body), `"d"`) || strings.Contains(string(r.body), "jwks") {
		t.Fatalf("the create answer echoes the imported key: %s", r.body)
	}
	keys := keyInfos(t, e.expect(e.do("GET", "/api/admin/acme/servers/imp/keys", rootToken, nil), 200).json(t))
	if len(keys) != 1 || keys[0]["kid"] != thumbprint(t, ec1) || keys[0]["state"] != "active" {
		t.Fatalf("keys after import: %v (want the imported key, active)", keys)
	}
	o, err := e.store.Get(context.Background(), "server-keys", "acme", "imp")
	if err != nil {
		t.Fatal(err)
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawURLEncoding} {
		if strings.Contains(string(o.Spec), enc.EncodeToString(ec1.D.Bytes())) {
			t.Fatal("the imported private key is stored in clear")
		}
	}
	// PUT with another key adds it; the same key again is refused.
	cur := e.expect(e.do("GET", "/api/admin/acme/servers/imp", rootToken, nil), 200).json(t)
	cur["jwks"] = privateJWKS(t, ec2)
	e.expect(e.do("PUT", "/api/admin/acme/servers/imp", rootToken, cur), 200)
	if keys := keyInfos(t, e.expect(e.do("GET", "/api/admin/acme/servers/imp/keys", rootToken, nil), 200).json(t)); len(keys) != 2 {
		t.Fatalf("keys after a second import: %v", keys)
	}

	for name, body := range map[string]map[string]any{
		"an RSA key for an ecdsa server": {"id": "bad1", "key_type": "ecdsa", "jwks": privateJWKS(t, small)},
		"a small RSA key":                {"id": "bad2", "key_type": "rsa", "jwks": privateJWKS(t, small)},
		"a P-384 key":                    {"id": "bad3", "key_type": "ecdsa", "jwks": privateJWKS(t, p384)},
		"a public key":                   {"id": "bad4", "key_type": "ecdsa", "jwks": map[string]any{"keys": []any{publicJWK(t, ec1)}}},
		"no keys":                        {"id": "bad5", "key_type": "ecdsa", "jwks": map[string]any{"keys": []any{}}},
		"not a key set":                  {"id": "bad6", "key_type": "ecdsa", "jwks": map[string]any{"keys": "x"}},
	} {
		r := e.do("POST", "/api/admin/acme/servers", rootToken, body)
		if r.status != 400 || r.json(t)["details"].(map[string]any)["field"] != "jwks" {
			t.Errorf("%s: %d %s, want 400 naming jwks", name, r.status, r.body)
		}
		e.expect(e.do("GET", "/api/admin/acme/servers/"+body["id"].(string), rootToken, nil), 404)
	}
	cur = e.expect(e.do("GET", "/api/admin/acme/servers/imp", rootToken, nil), 200).json(t)
	cur["jwks"] = privateJWKS(t, ec1)
	if r := e.do("PUT", "/api/admin/acme/servers/imp", rootToken, cur); r.status != 400 || !strings.Contains(string(r.body), "already") {
		t.Fatalf("importing a key the server has: %d %s", r.status, r.body)
	}
}

func publicJWK(t *testing.T, k crypto.Signer) any {
	raw, _ := json.Marshal(jose.JSONWebKey{Key: k.Public()})
	var m any
	_ = json.Unmarshal(raw, &m)
	return m
}
