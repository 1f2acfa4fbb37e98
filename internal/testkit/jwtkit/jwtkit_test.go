package jwtkit_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"

	"github.com/gatehouse-dev/gatehouse/internal/testkit/jwtkit"
)

// verify checks raw against the key set served at url, as a relying party
// does: the key named by the token's kid, RS256 only.
func verify(url, raw string) (jwt.MapClaims, error) {
	res, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, err
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("key set %s: %w", body, err)
	}
	claims := jwt.MapClaims{}
	_, err = jwt.ParseWithClaims(raw, claims, func(tok *jwt.Token) (any, error) {
		kid, _ := tok.Header["kid"].(string)
		keys := set.Key(kid)
		if len(keys) == 0 {
			return nil, errors.New("unknown kid " + kid)
		}
		return keys[0].Key, nil
	}, jwt.WithValidMethods([]string{"RS256"}))
	return claims, err
}

func TestSignerAndServer(t *testing.T) {
	k1, k2 := jwtkit.NewSigner(t, "k1"), jwtkit.NewSigner(t, "k2")
	srv := jwtkit.NewServer(t, k1)
	claims := jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(time.Hour).Unix()}

	t.Run("a token of a published key verifies with the served key set", func(t *testing.T) {
		got, err := verify(srv.URL+"/keys", k1.Token(t, claims))
		if err != nil || got["sub"] != "alice" {
			t.Fatalf("claims %v, %v", got, err)
		}
	})
	t.Run("a token of an unpublished key does not", func(t *testing.T) {
		if _, err := verify(srv.URL, k2.Token(t, claims)); err == nil {
			t.Fatal("verified")
		}
	})
	t.Run("after a rotation the new key verifies and the old one does not", func(t *testing.T) {
		srv.Publish(t, k2)
		if _, err := verify(srv.URL, k2.Token(t, claims)); err != nil {
			t.Fatal(err)
		}
		if _, err := verify(srv.URL, k1.Token(t, claims)); err == nil {
			t.Fatal("the retired key verified")
		}
	})
	t.Run("every fetch is counted", func(t *testing.T) {
		if n := srv.Fetches(); n != 4 {
			t.Fatalf("%d fetches, want 4", n)
		}
	})
	t.Run("the key set names each key's kid, alg and use", func(t *testing.T) {
		var set jose.JSONWebKeySet
		if err := json.Unmarshal(jwtkit.JWKS(t, k1, k2), &set); err != nil {
			t.Fatal(err)
		}
		if len(set.Keys) != 2 || set.Keys[0].KeyID != "k1" || set.Keys[1].Algorithm != "RS256" || set.Keys[1].Use != "sig" || !set.Keys[0].IsPublic() {
			t.Fatalf("key set %+v", set.Keys)
		}
	})
}
