package oauth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"

	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/oauth/grants"
)

const assertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// A private_key_jwt client authenticates with a signed assertion; each
// assertion is good for one request: replayed (at the token endpoint or
// another), or without a jti, it is refused with invalid_client and
// nothing is issued. An assertion that fails verification is refused
// and leaves no record.
func TestClientAssertionsAreUsedOnce(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
		e.client("acme", "signer", model.ClientSpec{ServerID: "default", GrantTypes: []string{model.GrantClientCredentials},
			TokenEndpointAuthMethod: model.AuthMethodPrivateKeyJWT, JWKS: jwks})
		iss := e.issuer("acme", "default")
		sign := func(k *ecdsa.PrivateKey, jti string) string {
			t.Helper()
			now := time.Now()
			claims := jwt.MapClaims{"iss": "signer", "sub": "signer", "aud": iss, "iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix()}
			if jti != "" {
				claims["jti"] = jti
			}
			tok := jwt.NewWithClaims(jwt.SigningMethodES256, claims)
			tok.Header["kid"] = "k1"
			s, err := tok.SignedString(k)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
		token := func(assertion string) (int, map[string]any) {
			return e.postForm(iss+"/oauth2/token", url.Values{"grant_type": {model.GrantClientCredentials},
				"client_assertion_type": {assertionType}, "client_assertion": {assertion}}, "", "")
		}
		refused := func(status int, body map[string]any, want string) {
			t.Helper()
			desc, _ := body["error_description"].(string)
			if status != http.StatusUnauthorized || body["error"] != "invalid_client" || !strings.Contains(desc, want) || body["access_token"] != nil {
				t.Fatalf("%d %v: want 401 invalid_client naming %q", status, body, want)
			}
		}

		first := sign(key, "a-1")
		if status, body := token(first); status != http.StatusOK || body["access_token"] == nil {
			t.Fatalf("first use: %d %v", status, body)
		}
		before := e.snapshot("acme")
		status, body := token(first)
		refused(status, body, "client_assertion: already used")
		status, body = e.postForm(iss+"/oauth2/introspect", url.Values{"token": {"x"},
			"client_assertion_type": {assertionType}, "client_assertion": {first}}, "", "")
		refused(status, body, "client_assertion: already used")
		status, body = token(sign(key, ""))
		refused(status, body, "client_assertion: no jti")
		other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if status, body := token(sign(other, "a-2")); status == http.StatusOK || body["access_token"] != nil {
			t.Fatalf("an assertion signed by another key: %d %v", status, body)
		}
		e.unchanged("acme", before, "refused assertions")

		// A new assertion (a new jti) authenticates again, and the jti
		// another key tried was not burnt.
		if status, body := token(sign(key, "a-2")); status != http.StatusOK {
			t.Fatalf("a fresh assertion: %d %v", status, body)
		}
		if got := e.snapshot("acme")[grants.KindAssertionsUsed]; got != 2 {
			t.Fatalf("%d assertion records, want 2", got)
		}
	})
}
