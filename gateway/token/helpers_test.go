package token_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"sync"
	"testing"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
)

// testKey is a signing key and its kid.
type testKey struct {
	kid     string
	private any // *rsa.PrivateKey or *ecdsa.PrivateKey
}

// jwk is the key's public JWK with extra members (e.g. alg, use) merged in.
func (k testKey) jwk(t testing.TB, extra map[string]any) map[string]any {
	t.Helper()
	var pub any
	switch p := k.private.(type) {
	case *rsa.PrivateKey:
		pub = &p.PublicKey
	case *ecdsa.PrivateKey:
		pub = &p.PublicKey
	}
	b, err := jose.JSONWebKey{Key: pub, KeyID: k.kid}.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if k.kid == "" {
		delete(m, "kid")
	}
	for name, v := range extra {
		m[name] = v
	}
	return m
}

// privateJWK is the key's JWK with its private members.
func (k testKey) privateJWK(t testing.TB) map[string]any {
	t.Helper()
	b, err := jose.JSONWebKey{Key: k.private, KeyID: k.kid}.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// jwks encodes a JWK Set.
func jwks(t testing.TB, keys ...map[string]any) []byte {
	t.Helper()
	if keys == nil {
		keys = []map[string]any{}
	}
	b, err := json.Marshal(map[string]any{"keys": keys})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var (
	keysOnce sync.Once
	rsaKeys  [3]*rsa.PrivateKey
	ecKeys   map[string][]*ecdsa.PrivateKey
)

// rsaKey and ecKey return fixed keys, generated once per test binary.
func rsaKey(i int) *rsa.PrivateKey {
	genKeys()
	return rsaKeys[i]
}

func ecKey(curve string, i int) *ecdsa.PrivateKey {
	genKeys()
	return ecKeys[curve][i]
}

func genKeys() {
	keysOnce.Do(func() {
		for i := range rsaKeys {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				panic(err)
			}
			rsaKeys[i] = k
		}
		ecKeys = map[string][]*ecdsa.PrivateKey{}
		for name, c := range map[string]elliptic.Curve{"P-256": elliptic.P256(), "P-384": elliptic.P384(), "P-521": elliptic.P521()} {
			for range 3 {
				k, err := ecdsa.GenerateKey(c, rand.Reader)
				if err != nil {
					panic(err)
				}
				ecKeys[name] = append(ecKeys[name], k)
			}
		}
	})
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// signRaw signs header.payload (JSON texts, used as they are) with alg.
func signRaw(t testing.TB, alg string, key any, header, payload string) string {
	t.Helper()
	signing := b64(header) + "." + b64(payload)
	sig, err := jwt.GetSigningMethod(alg).Sign(signing, key)
	if err != nil {
		t.Fatalf("sign %s: %v", alg, err)
	}
	return signing + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// sign signs claims with alg, the header naming kid unless it is "".
func sign(t testing.TB, alg, kid string, key any, claims map[string]any) string {
	t.Helper()
	h := map[string]any{"alg": alg, "typ": "JWT"}
	if kid != "" {
		h["kid"] = kid
	}
	hb, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	pb, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	return signRaw(t, alg, key, string(hb), string(pb))
}

// publicPEM encodes a public key as PEM (PKIX).
func publicPEM(t testing.TB, pub any) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}
