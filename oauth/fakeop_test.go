package oauth

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// fakeOP is a minimal upstream OpenID provider for the federation tests:
// discovery, an authorization endpoint that signs its user in at once
// (no page), a token endpoint checking the client and the PKCE verifier,
// userinfo and JWKS. What it answers is set by its fields; what it was
// sent is recorded. busy accumulates the time its handlers took (the
// benchmark subtracts it).
type fakeOP struct {
	t      testing.TB
	srv    *httptest.Server
	key    *rsa.PrivateKey
	issuer string

	clientID, secret string

	mu sync.Mutex
	// user is who signs in: sub and the ID token's claims.
	sub    string
	claims map[string]any
	// userinfo are userinfo's claims besides sub (nil: userinfo answers
	// 404).
	userinfo map[string]any
	// idTokenIssuer, when set, is the ID tokens' iss instead of issuer;
	// nonce, when set, replaces the nonce; deny answers error=access_denied.
	idTokenIssuer string
	nonce         string
	deny          bool
	// pad adds that many bytes to the discovery document.
	pad int
	// authorizations are the query strings /authorize was sent; tokenForms
	// the token requests' forms and tokenAuth their Authorization headers.
	authorizations []url.Values
	tokenForms     []url.Values
	tokenAuth      []string
	codes          map[string]url.Values
	discoveryHits  atomic.Int64

	busy atomic.Int64 // nanoseconds spent in handlers
}

func newFakeOP(t testing.TB, clientID, secret string) *fakeOP {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeOP{t: t, key: key, clientID: clientID, secret: secret, sub: "upstream-user-1",
		claims: map[string]any{}, userinfo: map[string]any{}, codes: map[string]url.Values{}}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", f.discovery)
	mux.HandleFunc("/authorize", f.authorize)
	mux.HandleFunc("/token", f.token)
	mux.HandleFunc("/userinfo", f.userinfoHandler)
	mux.HandleFunc("/jwks", f.jwks)
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		mux.ServeHTTP(w, r)
		f.busy.Add(int64(time.Since(start)))
	}))
	t.Cleanup(f.srv.Close)
	f.issuer = f.srv.URL
	return f
}

func (f *fakeOP) set(fn func(f *fakeOP)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeOP) lastAuthorization() url.Values {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.authorizations) == 0 {
		return nil
	}
	return f.authorizations[len(f.authorizations)-1]
}

func writeJSONTest(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (f *fakeOP) discovery(w http.ResponseWriter, _ *http.Request) {
	f.discoveryHits.Add(1)
	f.mu.Lock()
	pad := f.pad
	f.mu.Unlock()
	writeJSONTest(w, 200, map[string]any{"padding": strings.Repeat("x", pad),
		"issuer": f.issuer, "authorization_endpoint": f.srv.URL + "/authorize", "token_endpoint": f.srv.URL + "/token",
		"userinfo_endpoint": f.srv.URL + "/userinfo", "jwks_uri": f.srv.URL + "/jwks",
		"response_types_supported": []string{"code"}, "subject_types_supported": []string{"public"},
		"id_token_signing_alg_values_supported": []string{"RS256"}, "code_challenge_methods_supported": []string{"S256"},
	})
}

func (f *fakeOP) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f.mu.Lock()
	f.authorizations = append(f.authorizations, q)
	deny := f.deny
	f.mu.Unlock()
	redirect, err := url.Parse(q.Get("redirect_uri"))
	if err != nil || q.Get("client_id") != f.clientID || q.Get("response_type") != "code" {
		http.Error(w, "bad authorization request", http.StatusBadRequest)
		return
	}
	out := url.Values{"state": {q.Get("state")}}
	if deny {
		out.Set("error", "access_denied")
	} else {
		code := rand.Text()
		f.mu.Lock()
		f.codes[code] = q
		f.mu.Unlock()
		out.Set("code", code)
	}
	redirect.RawQuery = out.Encode()
	http.Redirect(w, r, redirect.String(), http.StatusFound)
}

func (f *fakeOP) token(w http.ResponseWriter, r *http.Request) {
	_ = r.ParseForm()
	f.mu.Lock()
	f.tokenForms = append(f.tokenForms, r.PostForm)
	f.tokenAuth = append(f.tokenAuth, r.Header.Get("Authorization"))
	az, ok := f.codes[r.PostForm.Get("code")]
	delete(f.codes, r.PostForm.Get("code"))
	sub, claims, iss, nonce := f.sub, f.claims, f.issuer, f.nonce
	if f.idTokenIssuer != "" {
		iss = f.idTokenIssuer
	}
	f.mu.Unlock()
	if !ok {
		writeJSONTest(w, 400, map[string]any{"error": "invalid_grant"})
		return
	}
	user, pass, basic := r.BasicAuth()
	switch {
	case f.secret != "" && (!basic || user != f.clientID || pass != f.secret):
		writeJSONTest(w, 401, map[string]any{"error": "invalid_client"})
		return
	case f.secret == "" && (basic || r.PostForm.Get("client_id") != f.clientID):
		writeJSONTest(w, 401, map[string]any{"error": "invalid_client"})
		return
	}
	sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
	if az.Get("code_challenge_method") != "S256" || base64.RawURLEncoding.EncodeToString(sum[:]) != az.Get("code_challenge") ||
		r.PostForm.Get("redirect_uri") != az.Get("redirect_uri") {
		writeJSONTest(w, 400, map[string]any{"error": "invalid_grant", "error_description": "PKCE or redirect_uri"})
		return
	}
	if nonce == "" {
		nonce = az.Get("nonce")
	}
	now := time.Now()
	idt := map[string]any{"iss": iss, "sub": sub, "aud": f.clientID, "iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(), "nonce": nonce}
	for k, v := range claims {
		idt[k] = v
	}
	writeJSONTest(w, 200, map[string]any{"access_token": "at-" + rand.Text(), "token_type": "Bearer", "expires_in": 300,
		"id_token": f.sign(idt)})
}

func (f *fakeOP) sign(claims map[string]any) string {
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: f.key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "k1"))
	if err != nil {
		f.t.Error(err)
		return ""
	}
	b, _ := json.Marshal(claims)
	jws, err := signer.Sign(b)
	if err != nil {
		f.t.Error(err)
		return ""
	}
	s, _ := jws.CompactSerialize()
	return s
}

func (f *fakeOP) userinfoHandler(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	info, sub := f.userinfo, f.sub
	f.mu.Unlock()
	if info == nil || !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer at-") {
		http.NotFound(w, r)
		return
	}
	out := map[string]any{"sub": sub}
	for k, v := range info {
		out[k] = v
	}
	writeJSONTest(w, 200, out)
}

func (f *fakeOP) jwks(w http.ResponseWriter, _ *http.Request) {
	writeJSONTest(w, 200, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &f.key.PublicKey, KeyID: "k1", Algorithm: "RS256", Use: "sig"}}})
}
