// Package jwtkit signs JSON Web Tokens for tests and serves the signers'
// key set: an RSA signer (RS256, golang-jwt/jwt/v5) with a key id, its
// public key as a JWK Set, and a JWKS endpoint on loopback (httptest)
// whose keys a test can rotate.
package jwtkit

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
)

// Signer is an RSA key that signs RS256 tokens naming its key id.
type Signer struct {
	KeyID string
	Key   *rsa.PrivateKey
}

// New generates a 2048-bit RSA signer with key id kid.
func New(kid string) (*Signer, error) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("generate an RSA key: %w", err)
	}
	return &Signer{KeyID: kid, Key: k}, nil
}

// NewSigner is New failing the test on error.
func NewSigner(t testing.TB, kid string) *Signer {
	t.Helper()
	s, err := New(kid)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Sign returns claims signed with RS256, the header naming the key id.
func (s *Signer) Sign(claims jwt.Claims) (string, error) {
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	tok.Header["kid"] = s.KeyID
	raw, err := tok.SignedString(s.Key)
	if err != nil {
		return "", fmt.Errorf("sign a token with %q: %w", s.KeyID, err)
	}
	return raw, nil
}

// Token is Sign failing the test on error.
func (s *Signer) Token(t testing.TB, claims jwt.Claims) string {
	t.Helper()
	raw, err := s.Sign(claims)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// JWK is the signer's public key (alg RS256, use sig).
func (s *Signer) JWK() jose.JSONWebKey {
	return jose.JSONWebKey{Key: &s.Key.PublicKey, KeyID: s.KeyID, Algorithm: "RS256", Use: "sig"}
}

// MarshalJWKS encodes the signers' public keys as a JWK Set.
func MarshalJWKS(signers ...*Signer) ([]byte, error) {
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{}}
	for _, s := range signers {
		set.Keys = append(set.Keys, s.JWK())
	}
	b, err := json.Marshal(set)
	if err != nil {
		return nil, fmt.Errorf("encode a JWK Set: %w", err)
	}
	return b, nil
}

// JWKS is MarshalJWKS failing the test on error.
func JWKS(t testing.TB, signers ...*Signer) []byte {
	t.Helper()
	b, err := MarshalJWKS(signers...)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Server serves a JWK Set on loopback, at every path (so its URL is a
// jwks_uri), and counts the fetches.
type Server struct {
	*httptest.Server
	mu      sync.Mutex
	set     []byte
	fetches atomic.Int64
}

// NewServer starts a server publishing the signers' keys; it is closed
// when the test ends.
func NewServer(t testing.TB, signers ...*Signer) *Server {
	t.Helper()
	s := &Server{set: JWKS(t, signers...)}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func (s *Server) serve(w http.ResponseWriter, _ *http.Request) {
	s.fetches.Add(1)
	s.mu.Lock()
	set := s.set
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(set)
}

// Publish replaces the published keys with the signers' (a key rotation).
func (s *Server) Publish(t testing.TB, signers ...*Signer) {
	t.Helper()
	set := JWKS(t, signers...)
	s.mu.Lock()
	s.set = set
	s.mu.Unlock()
}

// Fetches is how many times the key set was requested.
func (s *Server) Fetches() int64 { return s.fetches.Load() }
