package token_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-dev/gatehouse/gateway/token"
	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	"github.com/gatehouse-dev/gatehouse/policies"
)

// clock is a settable clock for Options.Now.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Unix(t0, 0).UnixNano())
	return c
}

func (c *clock) Now() time.Time      { return time.Unix(0, c.ns.Load()) }
func (c *clock) Add(d time.Duration) { c.ns.Add(int64(d)) }
func (c *clock) unix() int64         { return c.Now().Unix() }
func (c *clock) opts() token.Options { return token.Options{Now: c.Now, AllowPrivateNetworks: true} }
func (c *clock) with(o token.Options) token.Options {
	o.Now, o.AllowPrivateNetworks = c.Now, true
	return o
}

// keyServer serves a JWK Set at /keys and a discovery document.
type keyServer struct {
	*httptest.Server
	mu        sync.Mutex
	set       []byte
	status    int
	delay     time.Duration
	chunked   bool
	fetches   atomic.Int32
	discovery atomic.Int32
}

func newKeyServer(t *testing.T, set []byte) *keyServer {
	s := &keyServer{set: set, status: http.StatusOK}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func (s *keyServer) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	set, status, delay, chunked := s.set, s.status, s.delay, s.chunked
	s.mu.Unlock()
	switch r.URL.Path {
	case "/.well-known/openid-configuration":
		s.discovery.Add(1)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"issuer": s.URL, "jwks_uri": s.URL + "/keys",
			"authorization_endpoint": s.URL + "/authorize", "token_endpoint": s.URL + "/token"})
	case "/keys":
		s.fetches.Add(1)
		time.Sleep(delay)
		if status != http.StatusOK {
			http.Error(w, "unavailable", status)
			return
		}
		w.Header().Set("Content-Type", "application/jwk-set+json")
		if chunked {
			w.Write(set[:1])
			w.(http.Flusher).Flush()
			set = set[1:]
		}
		w.Write(set)
	default:
		http.NotFound(w, r)
	}
}

func (s *keyServer) update(f func(s *keyServer)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
}

// remoteToken signs a token for issuer iss valid for an hour at c's time.
func remoteToken(t *testing.T, c *clock, iss, kid string, k testKey) string {
	return sign(t, "ES256", kid, k.private, map[string]any{"iss": iss, "aud": "api", "sub": "bob", "exp": c.unix() + 3600})
}

// idpIssuer is the issuer "https://idp" with its keys at srv's /keys.
func idpIssuer(srv *keyServer) []token.Issuer {
	return []token.Issuer{{ID: "idp", Issuer: "https://idp", Audiences: []string{"api"}, JWKSURI: srv.URL + "/keys"}}
}

// idpToken is a remoteToken of idpIssuer.
func idpToken(t *testing.T, c *clock, kid string, k testKey) string {
	return remoteToken(t, c, "https://idp", kid, k)
}

// waitBound bounds the waits for a background refresh.
const waitBound = 5 * time.Second

func newVerifier(t *testing.T, issuers []token.Issuer, opts token.Options) *token.Verifier {
	t.Helper()
	v, err := token.New(issuers, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	return v
}

func mustVerify(t *testing.T, v *token.Verifier, raw string) *token.Token {
	t.Helper()
	tok, err := v.Verify(context.Background(), raw)
	if err != nil {
		t.Fatalf("token invalid: %v", err)
	}
	return tok
}

func mustReject(t *testing.T, v *token.Verifier, raw string, want error) error {
	t.Helper()
	_, err := v.Verify(context.Background(), raw)
	if err == nil || !errors.Is(err, want) {
		t.Fatalf("got %v, want %v", err, want)
	}
	return err
}

// counter reads a counter of reg by name and labels.
func counter(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if labels[lp.GetName()] != lp.GetValue() {
					continue metric
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

var (
	key1 = func() testKey { return testKey{"k1", ecKey("P-256", 0)} }
	key2 = func() testKey { return testKey{"k2", ecKey("P-256", 1)} }
)

func TestJWKSURI(t *testing.T) {
	c := newClock()
	srv := newKeyServer(t, jwks(t, key1().jwk(t, nil)))
	reg := prometheus.NewRegistry()
	v := newVerifier(t, idpIssuer(srv),
		c.with(token.Options{Registerer: reg}))
	tok := mustVerify(t, v, idpToken(t, c, "k1", key1()))
	if tok.IssuerID != "idp" || tok.Subject != "bob" || tok.Claims["aud"] != "api" {
		t.Fatalf("token: %+v", tok)
	}
	info := v.Info(context.Background(), "Bearer "+idpToken(t, c, "", key1()))
	if !info.Valid || info.Issuer != "https://idp" || len(info.Scopes) != 0 || info.Scopes == nil {
		t.Fatalf("info: %+v", info)
	}
	if n := srv.fetches.Load(); n != 1 {
		t.Fatalf("%d fetches, want 1", n)
	}
	if got := counter(t, reg, "gatehouse_token_jwks_fetches_total", map[string]string{"issuer": "idp", "result": "success"}); got != 1 {
		t.Fatalf("fetch metric %v", got)
	}
	// A second verifier on the same registry shares the metrics.
	if _, err := token.New(nil, token.Options{Registerer: reg}); err != nil {
		t.Fatal(err)
	}
}

func TestDiscovery(t *testing.T) {
	c := newClock()
	srv := newKeyServer(t, jwks(t, key1().jwk(t, nil)))
	v := newVerifier(t, []token.Issuer{{ID: "oidc", Issuer: srv.URL, Audiences: []string{"api"}, Discovery: true}}, c.opts())
	mustVerify(t, v, remoteToken(t, c, srv.URL, "k1", key1()))
	if d, f := srv.discovery.Load(), srv.fetches.Load(); d != 1 || f != 1 {
		t.Fatalf("%d discovery and %d JWKS fetches, want 1 and 1", d, f)
	}

	// The document must name the same issuer (go-oidc checks it).
	other := newVerifier(t, []token.Issuer{{ID: "oidc", Issuer: srv.URL + "/", Audiences: []string{"api"}, Discovery: true}}, c.opts())
	if err := mustReject(t, other, remoteToken(t, c, srv.URL+"/", "k1", key1()), token.ErrSignature); !strings.Contains(err.Error(), "discovery") {
		t.Fatalf("error: %v", err)
	}
}

func TestKeyRotation(t *testing.T) {
	c := newClock()
	srv := newKeyServer(t, jwks(t, key1().jwk(t, nil)))
	reg := prometheus.NewRegistry()
	v := newVerifier(t, idpIssuer(srv),
		c.with(token.Options{Registerer: reg}))
	mustVerify(t, v, idpToken(t, c, "k1", key1()))

	srv.update(func(s *keyServer) { s.set = jwks(t, key2().jwk(t, nil)) })
	mustVerify(t, v, idpToken(t, c, "k2", key2()))
	if n := srv.fetches.Load(); n != 2 {
		t.Fatalf("%d fetches, want 2", n)
	}
	if got := counter(t, reg, "gatehouse_token_jwks_unknown_kid_refetches_total", map[string]string{"issuer": "idp"}); got != 1 {
		t.Fatalf("refetch metric %v", got)
	}
	// k1 was rotated out; asking again for it is rate-limited.
	mustReject(t, v, idpToken(t, c, "k1", key1()), token.ErrSignature)
	if n := srv.fetches.Load(); n != 2 {
		t.Fatalf("%d fetches, want 2", n)
	}
}

func TestRefetchRateLimit(t *testing.T) {
	c := newClock()
	srv := newKeyServer(t, jwks(t, key1().jwk(t, nil)))
	v := newVerifier(t, idpIssuer(srv), c.opts())
	mustVerify(t, v, idpToken(t, c, "k1", key1()))
	srv.update(func(s *keyServer) { s.delay = 100 * time.Millisecond })

	burst := func() {
		var wg sync.WaitGroup
		for i := range 50 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				raw := idpToken(t, c, fmt.Sprintf("unknown-%d", i), key1())
				if _, err := v.Verify(context.Background(), raw); !errors.Is(err, token.ErrSignature) {
					t.Errorf("unknown kid: %v", err)
				}
			}()
		}
		wg.Wait()
	}
	burst()
	if n := srv.fetches.Load(); n != 2 {
		t.Fatalf("after a burst of unknown kids: %d fetches, want 2", n)
	}
	c.Add(29 * time.Second)
	burst()
	if n := srv.fetches.Load(); n != 2 {
		t.Fatalf("within MinRefetchInterval: %d fetches, want 2", n)
	}
	c.Add(time.Second)
	burst()
	if n := srv.fetches.Load(); n != 3 {
		t.Fatalf("after MinRefetchInterval: %d fetches, want 3", n)
	}
}

func TestFirstRequestWaitsForTheInitialFetch(t *testing.T) {
	c := newClock()
	srv := newKeyServer(t, jwks(t, key1().jwk(t, nil)))
	srv.delay = 200 * time.Millisecond
	v := newVerifier(t, idpIssuer(srv), c.opts())
	mustVerify(t, v, idpToken(t, c, "k1", key1()))
	if n := srv.fetches.Load(); n != 1 {
		t.Fatalf("%d fetches, want 1", n)
	}
}

func TestBackgroundRefresh(t *testing.T) {
	c := newClock()
	srv := newKeyServer(t, jwks(t, key1().jwk(t, nil)))
	v := newVerifier(t, idpIssuer(srv),
		c.with(token.Options{RefreshInterval: 20 * time.Millisecond}))
	mustVerify(t, v, idpToken(t, c, "k1", key1()))

	// A token without kid never triggers a refetch: only the background
	// refresh brings the new key.
	srv.update(func(s *keyServer) { s.set = jwks(t, key2().jwk(t, nil)) })
	noKid := idpToken(t, c, "", key2())
	testkit.Eventually(t, waitBound, func() error {
		_, err := v.Verify(context.Background(), noKid)
		return err
	}, "the refreshed key")

	// A check never waits for a refresh in progress when its key is cached.
	srv.update(func(s *keyServer) { s.delay = time.Second })
	before := srv.fetches.Load()
	testkit.Eventually(t, waitBound, func() error {
		n := srv.fetches.Load()
		return testkit.Check(n > before, "%d fetches, %d before", n, before)
	}, "a slow refresh")
	start := time.Now()
	mustVerify(t, v, idpToken(t, c, "k2", key2()))
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Fatalf("a check with a cached key took %s", d)
	}

	v.Close()
	time.Sleep(50 * time.Millisecond)
	n := srv.fetches.Load()
	time.Sleep(100 * time.Millisecond)
	if srv.fetches.Load() != n {
		t.Fatal("refreshes continue after Close")
	}
	v.Close()
}

func TestFailingServerKeepsTheLastKeys(t *testing.T) {
	c := newClock()
	srv := newKeyServer(t, jwks(t, key1().jwk(t, nil)))
	reg := prometheus.NewRegistry()
	v := newVerifier(t, idpIssuer(srv),
		c.with(token.Options{RefreshInterval: 10 * time.Millisecond, Registerer: reg}))
	raw := idpToken(t, c, "k1", key1())
	mustVerify(t, v, raw)

	for _, broken := range []func(s *keyServer){
		func(s *keyServer) { s.status = http.StatusServiceUnavailable },
		func(s *keyServer) { s.status, s.set = http.StatusOK, []byte(`{"keys": [`) },
		func(s *keyServer) { s.set = jwks(t) },
	} {
		srv.update(broken)
		errorsBefore := counter(t, reg, "gatehouse_token_jwks_fetches_total", map[string]string{"issuer": "idp", "result": "error"})
		testkit.Eventually(t, waitBound, func() error {
			n := counter(t, reg, "gatehouse_token_jwks_fetches_total", map[string]string{"issuer": "idp", "result": "error"})
			return testkit.Check(n >= errorsBefore+2, "%v failed fetches, %v before", n, errorsBefore)
		}, "failed refreshes")
		mustVerify(t, v, raw)
		// An unknown kid's refetch fails too; the keys stay.
		c.Add(time.Minute)
		mustReject(t, v, idpToken(t, c, "k9", key1()), token.ErrSignature)
		mustVerify(t, v, idpToken(t, c, "k1", key1()))
	}
}

func TestUnreachableIssuer(t *testing.T) {
	c := newClock()
	srv := newKeyServer(t, nil)
	srv.status = http.StatusNotFound
	v := newVerifier(t, idpIssuer(srv), c.opts())
	err := mustReject(t, v, idpToken(t, c, "k1", key1()), token.ErrSignature)
	if !strings.Contains(err.Error(), "HTTP 404") {
		t.Fatalf("error: %v", err)
	}
}

func TestPrivateAddressesRefused(t *testing.T) {
	c := newClock()
	srv := newKeyServer(t, jwks(t, key1().jwk(t, nil)))
	for _, is := range []token.Issuer{
		{ID: "uri", Issuer: "https://idp", Audiences: []string{"api"}, JWKSURI: srv.URL + "/keys"},
		{ID: "discovery", Issuer: srv.URL, Audiences: []string{"api"}, Discovery: true},
	} {
		v := newVerifier(t, []token.Issuer{is}, token.Options{Now: c.Now})
		err := mustReject(t, v, remoteToken(t, c, is.Issuer, "k1", key1()), token.ErrSignature)
		if !strings.Contains(err.Error(), "loopback") {
			t.Fatalf("%s: %v", is.ID, err)
		}
	}
	if srv.fetches.Load() != 0 || srv.discovery.Load() != 0 {
		t.Fatal("a private address was fetched")
	}
}

func TestOversizeJWKSRefused(t *testing.T) {
	c := newClock()
	set := jwks(t, key1().jwk(t, nil))
	for _, chunked := range []bool{false, true} {
		srv := newKeyServer(t, set)
		srv.chunked = chunked
		v := newVerifier(t, idpIssuer(srv),
			c.with(token.Options{MaxJWKSBytes: int64(len(set) - 1)}))
		err := mustReject(t, v, idpToken(t, c, "k1", key1()), token.ErrSignature)
		if !strings.Contains(err.Error(), "larger than") {
			t.Fatalf("chunked %v: %v", chunked, err)
		}
		exact := newVerifier(t, idpIssuer(srv),
			c.with(token.Options{MaxJWKSBytes: int64(len(set))}))
		mustVerify(t, exact, idpToken(t, c, "k1", key1()))
	}
}

func TestInlineKeysAndReasons(t *testing.T) {
	c := newClock()
	v := newVerifier(t, token.FromBundle([]policies.IssuerData{
		{ID: "a", Issuer: "https://a", Audiences: []string{"api"}, JWKS: string(jwks(t, key1().jwk(t, nil)))},
		{ID: "broken", Issuer: "https://broken", Audiences: []string{"api"}, JWKS: "not json"},
		{ID: "none", Issuer: "https://none", Audiences: []string{"api"}},
	}), c.opts())
	mustVerify(t, v, remoteToken(t, c, "https://a", "k1", key1()))
	mustReject(t, v, remoteToken(t, c, "https://broken", "k1", key1()), token.ErrSignature)
	mustReject(t, v, remoteToken(t, c, "https://none", "k1", key1()), token.ErrSignature)
	mustReject(t, v, remoteToken(t, c, "https://b", "k1", key1()), token.ErrIssuer)
	mustReject(t, v, "a.b", token.ErrMalformed)
	mustReject(t, v, sign(t, "ES256", "k1", key1().private, map[string]any{"iss": "https://a", "aud": "x", "exp": c.unix() + 60}), token.ErrAudience)
	mustReject(t, v, sign(t, "ES256", "k1", key1().private, map[string]any{"iss": "https://a", "aud": "api", "exp": c.unix() - 60}), token.ErrTime)
	mustReject(t, v, signRaw(t, "HS256", []byte("k"), `{"alg":"HS256"}`, `{}`), token.ErrAlgorithm)

	info, err := v.Check(context.Background(), "Basic x")
	if info.Present || err != nil {
		t.Fatalf("no bearer token: %+v %v", info, err)
	}
	info, err = v.Check(context.Background(), "Bearer x")
	if b, _ := json.Marshal(info); string(b) != `{"present":true,"valid":false}` || !errors.Is(err, token.ErrMalformed) {
		t.Fatalf("invalid token: %s %v", b, err)
	}
	info = v.Info(context.Background(), "Bearer "+sign(t, "ES256", "k1", key1().private,
		map[string]any{"iss": "https://a", "aud": "api", "exp": c.unix() + 60}))
	if b, _ := json.Marshal(info); string(b) != `{"claims":{"aud":"api","exp":1700000060,"iss":"https://a"},"issuer":"https://a","present":true,"scopes":[],"subject":"","valid":true}` {
		t.Fatalf("valid token: %s", b)
	}
}

func TestBearer(t *testing.T) {
	for in, want := range map[string]string{"Bearer x": "x", "bearer x.y": "x.y", "BEARER ": "", "Bearer  x": " x"} {
		if got, ok := token.Bearer(in); !ok || got != want {
			t.Errorf("Bearer(%q) = %q, %v", in, got, ok)
		}
	}
	for _, in := range []string{"", "Bearer", "Basic x", "Bearer\tx", "Bearerx", "Beärer x"} {
		if _, ok := token.Bearer(in); ok {
			t.Errorf("Bearer(%q) accepted", in)
		}
	}
}

func BenchmarkInfo(b *testing.B) {
	now := time.Unix(t0, 0)
	for _, c := range []struct {
		alg string
		key testKey
	}{{"RS256", testKey{"r", rsaKey(0)}}, {"ES256", testKey{"e", ecKey("P-256", 0)}}} {
		b.Run(c.alg, func(b *testing.B) {
			v, err := token.New([]token.Issuer{{ID: "a", Issuer: "https://a", Audiences: []string{"api"}, JWKS: jwks(b, c.key.jwk(b, nil))}},
				token.Options{Now: func() time.Time { return now }})
			if err != nil {
				b.Fatal(err)
			}
			defer v.Close()
			auth := "Bearer " + sign(b, c.alg, c.key.kid, c.key.private, map[string]any{"iss": "https://a", "aud": "api", "sub": "s",
				"exp": t0 + 60, "iat": t0, "scope": "a b c", "roles": []any{"x", "y"}})
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if !v.Info(ctx, auth).Valid {
					b.Fatal("invalid")
				}
			}
		})
	}
}

func TestCustomHTTPClient(t *testing.T) {
	c := newClock()
	srv := newKeyServer(t, jwks(t, key1().jwk(t, nil)))
	// A client given in Options is used as it is: no address guard.
	v := newVerifier(t, idpIssuer(srv), token.Options{Now: c.Now, HTTPClient: srv.Client()})
	mustVerify(t, v, idpToken(t, c, "k1", key1()))
}

func TestKeyProblems(t *testing.T) {
	c := newClock()
	srv := newKeyServer(t, jwks(t, key1().jwk(t, nil)))
	srv.update(func(s *keyServer) { s.status = http.StatusServiceUnavailable })
	v := newVerifier(t, idpIssuer(srv), c.with(token.Options{RefreshInterval: 10 * time.Millisecond}))
	problem := func() *token.KeyProblem {
		for _, p := range v.KeyProblems() {
			if p.IssuerID == "idp" {
				return &p
			}
		}
		return nil
	}
	testkit.Eventually(t, waitBound, func() error {
		p := problem()
		return testkit.Check(p != nil && strings.Contains(p.Error, "HTTP 503") && !p.HasKeys && !p.Since.IsZero(), "problem %+v", p)
	}, "the failing fetch reported, without keys")
	since := problem().Since
	// The server recovers: no problem left.
	srv.update(func(s *keyServer) { s.status = http.StatusOK })
	testkit.Eventually(t, waitBound, func() error { return testkit.Check(problem() == nil, "problem %+v", problem()) }, "recovered")
	mustVerify(t, v, idpToken(t, c, "k1", key1()))
	// It fails again: reported with the keys kept, from a new start.
	c.Add(time.Minute)
	srv.update(func(s *keyServer) { s.status = http.StatusInternalServerError })
	testkit.Eventually(t, waitBound, func() error {
		p := problem()
		return testkit.Check(p != nil && p.HasKeys && strings.Contains(p.Error, "HTTP 500") && p.Since.After(since), "problem %+v", p)
	}, "the new failure reported, keys kept")

	// An unusable inline set is a problem from the start.
	bad := newVerifier(t, []token.Issuer{{ID: "inline", Issuer: "https://inline.example", JWKS: []byte(`{"keys": 1}`)}}, c.opts())
	if ps := bad.KeyProblems(); len(ps) != 1 || ps[0].IssuerID != "inline" || !strings.Contains(ps[0].Error, "inline JWK Set unusable") {
		t.Fatalf("inline problems %+v", ps)
	}
}

// TestFailedFetchIsRetriedBeforeTheRefreshInterval: an issuer down when
// the verifier starts gets its keys soon after it recovers, without
// waiting for the (long) refresh interval or for a token.
func TestFailedFetchIsRetriedBeforeTheRefreshInterval(t *testing.T) {
	c := newClock()
	srv := newKeyServer(t, jwks(t, key1().jwk(t, nil)))
	srv.update(func(s *keyServer) { s.status = http.StatusServiceUnavailable })
	v := newVerifier(t, idpIssuer(srv), c.with(token.Options{RefreshInterval: time.Hour}))
	testkit.Eventually(t, waitBound, func() error {
		return testkit.Check(len(v.KeyProblems()) == 1, "problems %+v", v.KeyProblems())
	}, "the first fetch failed")
	srv.update(func(s *keyServer) { s.status = http.StatusOK })
	// The retries come 2s, 4s, … after the failure: well within 15s.
	testkit.Eventually(t, 15*time.Second, func() error {
		return testkit.Check(len(v.KeyProblems()) == 0, "problems %+v", v.KeyProblems())
	}, "the keys fetched by a retry")
	mustVerify(t, v, idpToken(t, c, "k1", key1()))
}

// TestIssuerSeriesGoWithTheirLastVerifier: verifiers on one registry share
// the series by issuer; an issuer's series stay while any open verifier
// has it and are deleted when the last one closes (its issuer or gateway
// was deleted).
func TestIssuerSeriesGoWithTheirLastVerifier(t *testing.T) {
	c := newClock()
	srv := newKeyServer(t, jwks(t, key1().jwk(t, nil)))
	reg := prometheus.NewRegistry()
	corp := token.Issuer{ID: "corp", Issuer: "https://corp", Audiences: []string{"api"}, JWKSURI: srv.URL + "/keys"}
	a, err := token.New(idpIssuer(srv), c.with(token.Options{Registerer: reg}))
	if err != nil {
		t.Fatal(err)
	}
	b, err := token.New(append(idpIssuer(srv), corp), c.with(token.Options{Registerer: reg}))
	if err != nil {
		t.Fatal(err)
	}
	series := func(issuer string) float64 {
		return counter(t, reg, "gatehouse_token_jwks_fetches_total", map[string]string{"issuer": issuer, "result": "success"})
	}
	testkit.Eventually(t, waitBound, func() error {
		return testkit.Check(series("idp") >= 2 && series("corp") >= 1, "fetches idp %v corp %v", series("idp"), series("corp"))
	}, "both verifiers fetched")
	a.Close()
	if series("idp") < 2 {
		t.Fatalf("idp's series went while a verifier still has it: %v", series("idp"))
	}
	b.Close()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), "gatehouse_token_jwks_") && len(mf.GetMetric()) != 0 {
			t.Fatalf("%s still has %d series after every verifier closed", mf.GetName(), len(mf.GetMetric()))
		}
	}
}
