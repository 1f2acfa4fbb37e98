package token_test

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-dev/gatehouse/gateway/token"
	"github.com/gatehouse-dev/gatehouse/internal/testkit"
)

// signatures counts v's signature checks.
func signatures(v *token.Verifier) *atomic.Int64 {
	var n atomic.Int64
	token.OnSignature(v, func() { n.Add(1) })
	return &n
}

// inlineIssuer is the issuer "https://a" (audience api) with keys inline.
func inlineIssuer(t testing.TB, keys ...testKey) []token.Issuer {
	jwk := make([]map[string]any, len(keys))
	for i, k := range keys {
		jwk[i] = k.jwk(t, nil)
	}
	return []token.Issuer{{ID: "a", Issuer: "https://a", Audiences: []string{"api"}, JWKS: jwks(t, jwk...)}}
}

// aToken signs a token of "https://a" valid for an hour at c's time, with
// extra claims (nil deletes one).
func aToken(t testing.TB, c *clock, kid string, k testKey, extra map[string]any) string {
	claims := map[string]any{"iss": "https://a", "aud": "api", "sub": "bob", "exp": c.unix() + 3600}
	for name, v := range extra {
		if v == nil {
			delete(claims, name)
			continue
		}
		claims[name] = v
	}
	return sign(t, "ES256", kid, k.private, claims)
}

func wantCount(t *testing.T, what string, n *atomic.Int64, want int64) {
	t.Helper()
	if got := n.Load(); got != want {
		t.Fatalf("%s: %d, want %d", what, got, want)
	}
}

func TestCacheHit(t *testing.T) {
	c := newClock()
	reg := prometheus.NewRegistry()
	v := newVerifier(t, inlineIssuer(t, key1()), c.with(token.Options{Registerer: reg}))
	sigs := signatures(v)
	raw := aToken(t, c, "k1", key1(), map[string]any{"scope": "read write"})

	first := mustVerify(t, v, raw)
	wantCount(t, "signature checks", sigs, 1)
	for range 5 {
		if tok := mustVerify(t, v, raw); tok != first {
			t.Fatal("a hit returned another Token")
		}
		if info := v.Info(context.Background(), "Bearer "+raw); !info.Valid || info.Subject != "bob" || len(info.Scopes) != 2 {
			t.Fatalf("info from the cache: %+v", info)
		}
	}
	wantCount(t, "signature checks after hits", sigs, 1)
	if st := v.CacheStats(); st.Hits != 10 || st.Misses != 1 || st.Entries != 1 || st.Evictions != 0 {
		t.Fatalf("stats: %+v", st)
	}

	// Another token is another entry.
	mustVerify(t, v, aToken(t, c, "k1", key1(), map[string]any{"sub": "alice"}))
	wantCount(t, "signature checks of a second token", sigs, 2)

	// A failed signature check is cached too.
	bad := aToken(t, c, "k1", key2(), nil)
	err1 := mustReject(t, v, bad, token.ErrSignature)
	err2 := mustReject(t, v, bad, token.ErrSignature)
	wantCount(t, "signature checks of a forged token", sigs, 3)
	if err1 != err2 {
		t.Fatalf("the cached failure is another error: %v, %v", err1, err2)
	}

	for _, m := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"gatehouse_token_cache_hits_total", map[string]string{"result": "valid"}, 10},
		{"gatehouse_token_cache_hits_total", map[string]string{"result": "invalid"}, 1},
		{"gatehouse_token_cache_misses_total", nil, 3},
		{"gatehouse_token_cache_evictions_total", nil, 0},
	} {
		if got := counter(t, reg, m.name, m.labels); got != m.want {
			t.Errorf("%s%v = %v, want %v", m.name, m.labels, got, m.want)
		}
	}
	// Verifiers on one registry share the metrics.
	other := newVerifier(t, inlineIssuer(t, key1()), c.with(token.Options{Registerer: reg}))
	mustVerify(t, other, raw)
	if got := counter(t, reg, "gatehouse_token_cache_misses_total", nil); got != 4 {
		t.Errorf("shared misses metric %v, want 4", got)
	}
}

// TestCacheParity: over the parity corpus, a cached verifier (asked twice)
// gives what an uncached one gives, and ASTValue is the value of Value.
func TestCacheParity(t *testing.T) {
	issuers := newParityIssuers(t)
	opts := func(o token.Options) token.Options {
		o.Now, o.AllowPrivateNetworks = func() time.Time { return parityNow }, true
		return o
	}
	cached := newVerifier(t, token.FromBundle(issuers.data), opts(token.Options{}))
	uncached := newVerifier(t, token.FromBundle(issuers.data), opts(token.Options{CacheEntries: -1}))
	ctx := context.Background()
	cases := parityCorpus(t)
	cases = append(cases, parityCase{name: "no header", auth: ""})
	for round := range 2 {
		for _, c := range cases {
			want, wantErr := uncached.Check(ctx, c.auth)
			got, err := cached.Check(ctx, c.auth)
			if !reflect.DeepEqual(got.Value(), want.Value()) || fmt.Sprint(err) != fmt.Sprint(wantErr) {
				t.Fatalf("round %d, %s: cached %v (%v), uncached %v (%v)", round, c.name, mustJSON(t, got), err, mustJSON(t, want), wantErr)
			}
			checkASTValue(t, c.name, got)
			checkASTValue(t, c.name, want)
		}
	}
	if st := cached.CacheStats(); st.Hits == 0 || st.Entries == 0 {
		t.Fatalf("stats: %+v", st)
	}
	if st := uncached.CacheStats(); st != (token.CacheStats{}) {
		t.Fatalf("a disabled cache has stats: %+v", st)
	}
}

func checkASTValue(t *testing.T, name string, info token.Info) {
	t.Helper()
	want, err := ast.InterfaceToValue(info.Value())
	if err != nil {
		t.Fatal(err)
	}
	if got := info.ASTValue(); got == nil || got.Compare(want) != 0 {
		t.Fatalf("%s: ASTValue %v, want %v", name, got, want)
	}
}

func TestInfoASTValue(t *testing.T) {
	c := newClock()
	v := newVerifier(t, inlineIssuer(t, key1()), c.opts())
	ctx := context.Background()
	nested := signRaw(t, "ES256", key1().private, `{"alg":"ES256","kid":"k1"}`, fmt.Sprintf(`{"iss":"https://a","aud":["x","api"],
		"exp":%d.75,"n":[1,-2.5,1e3,12345678901234567890123,0.1],"o":{"a":{"b":[true,null,"é",{}]},"e":[]},"scp":["s1","s2"]}`, c.unix()+60))

	absent := v.Info(ctx, "")
	invalid := v.Info(ctx, "Bearer x.y.z")
	valid := v.Info(ctx, "Bearer "+nested)
	if absent.Present || !invalid.Present || invalid.Valid || !valid.Valid {
		t.Fatalf("infos: %+v %+v %+v", absent, invalid, valid)
	}
	for name, info := range map[string]token.Info{
		"absent": absent, "invalid": invalid, "valid": valid,
		"by hand":                {Present: true, Valid: true, Issuer: "i", Claims: map[string]any{"x": json.Number("1.5")}, Scopes: []string{"a"}},
		"by hand without claims": {Present: true, Valid: true},
		"absent, valid by hand":  {Valid: true},
	} {
		checkASTValue(t, name, info)
	}
	n := valid.ASTValue().(ast.Object).Get(ast.InternedTerm("claims")).Value.(ast.Object).Get(ast.InternedTerm("n"))
	if n.String() != "[1, -2.5, 1e3, 12345678901234567890123, 0.1]" {
		t.Fatalf("numbers: %v", n)
	}

	// The value is computed once per token and shared by its Infos.
	again := v.Info(ctx, "Bearer "+nested)
	if again.ASTValue() != valid.ASTValue() {
		t.Fatal("the value of a cached token is computed again")
	}
	if v.Info(ctx, "").ASTValue() != absent.ASTValue() || v.Info(ctx, "Bearer x").ASTValue() != invalid.ASTValue() {
		t.Fatal("the values of absent and invalid tokens are not shared")
	}
	// An Info whose fields were changed gets its own value.
	changed := again
	changed.Subject = "mallory"
	checkASTValue(t, "changed subject", changed)
	changed = again
	changed.Claims = map[string]any{"sub": "mallory"}
	checkASTValue(t, "changed claims", changed)
	changed = again
	changed.Scopes = []string{"admin", "s2"}
	checkASTValue(t, "changed scopes", changed)
	if again.ASTValue().Compare(valid.ASTValue()) != 0 {
		t.Fatal("the changed copies changed the cached value")
	}
}

// TestCacheExpiry: a cached token is served exactly as long as Verify
// would find it valid, at nanosecond resolution.
func TestCacheExpiry(t *testing.T) {
	c := newClock()
	v := newVerifier(t, inlineIssuer(t, key1()), c.opts())
	sigs := signatures(v)
	exp := c.unix() + 60
	raw := aToken(t, c, "k1", key1(), map[string]any{"exp": exp})
	mustVerify(t, v, raw)
	c.ns.Store(time.Unix(exp+29, 999_999_999).UnixNano())
	mustVerify(t, v, raw)
	wantCount(t, "signature checks before exp + leeway", sigs, 1)
	c.Add(time.Nanosecond)
	mustReject(t, v, raw, token.ErrTime)
	if st := v.CacheStats(); st.Entries != 0 || st.Misses != 2 {
		t.Fatalf("the expired entry is kept: %+v", st)
	}

	// A clock moved back before the verification misses: nbf and iat are
	// checked again.
	c = newClock()
	v = newVerifier(t, inlineIssuer(t, key1()), c.opts())
	sigs = signatures(v)
	raw = aToken(t, c, "k1", key1(), map[string]any{"nbf": c.unix() + 30})
	mustVerify(t, v, raw)
	c.Add(-time.Nanosecond)
	mustReject(t, v, raw, token.ErrTime)
	c.Add(time.Nanosecond)
	mustVerify(t, v, raw)
	mustVerify(t, v, raw)
	wantCount(t, "signature checks", sigs, 2)
}

// TestCacheTimesParity moves the clock forward across the boundaries of
// tokens with integer, fractional, negative and huge NumericDates: at every
// instant the cached verifier agrees with an uncached one.
func TestCacheTimesParity(t *testing.T) {
	c := newClock()
	cached := newVerifier(t, inlineIssuer(t, key1()), c.opts())
	uncached := newVerifier(t, inlineIssuer(t, key1()), c.with(token.Options{CacheEntries: -1}))
	base := c.unix()
	exps := []string{fmt.Sprint(base + 2), fmt.Sprintf("%d.5", base+1), fmt.Sprintf("%d.999", base-30), "1e10", "-0.5", "99999999999999999999"}
	nbfs := []string{"", fmt.Sprint(base - 31), fmt.Sprintf("%d.5", base+1), "1e10"}
	iats := []string{"", fmt.Sprintf("%d.25", base+3)}
	type tokenCase struct{ name, raw string }
	var tokens []tokenCase
	for _, exp := range exps {
		for _, nbf := range nbfs {
			for _, iat := range iats {
				payload := `{"iss":"https://a","aud":"api","exp":` + exp
				if nbf != "" {
					payload += `,"nbf":` + nbf
				}
				if iat != "" {
					payload += `,"iat":` + iat
				}
				payload += "}"
				tokens = append(tokens, tokenCase{payload, signRaw(t, "ES256", key1().private, `{"alg":"ES256"}`, payload)})
			}
		}
	}
	var instants []time.Time
	for _, s := range []int64{base - 35, base - 31, base - 30, base - 29, base - 28, base - 27, base - 1, base, base + 1, base + 30, base + 31, base + 32, base + 33, 1e10 + 30} {
		instants = append(instants, time.Unix(s, 0).Add(-time.Nanosecond), time.Unix(s, 0), time.Unix(s, 500_000_000))
	}
	valid := 0
	ctx := context.Background()
	for _, at := range instants {
		c.ns.Store(at.UnixNano())
		for _, tc := range tokens {
			_, want := uncached.Verify(ctx, tc.raw)
			_, got := cached.Verify(ctx, tc.raw)
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("%s at %s: cached %v, uncached %v", tc.name, at.Format(time.RFC3339Nano), got, want)
			}
			if want == nil {
				valid++
			}
		}
	}
	t.Logf("%d valid verifications, stats %+v", valid, cached.CacheStats())
	if st := cached.CacheStats(); valid < 200 || st.Hits < uint64(valid)/2 {
		t.Fatalf("weak test: %d valid verifications, stats %+v", valid, st)
	}
}

func TestCacheKeyRotation(t *testing.T) {
	c := newClock()
	srv := newKeyServer(t, jwks(t, key1().jwk(t, nil)))
	v := newVerifier(t, idpIssuer(srv), c.opts())
	sigs := signatures(v)
	raw1 := idpToken(t, c, "k1", key1())
	mustVerify(t, v, raw1)
	mustVerify(t, v, raw1)
	wantCount(t, "signature checks", sigs, 1)

	// A new set holding the same key: the entry is not served, the token
	// is verified again (and still valid).
	srv.update(func(s *keyServer) { s.set = jwks(t, key1().jwk(t, nil), key2().jwk(t, nil)) })
	raw2 := idpToken(t, c, "k2", key2())
	mustVerify(t, v, raw2) // refetches for the unknown kid
	wantCount(t, "signature checks", sigs, 2)
	mustVerify(t, v, raw1)
	wantCount(t, "signature checks after the set changed", sigs, 3)
	mustVerify(t, v, raw1)
	wantCount(t, "signature checks", sigs, 3)

	// k1 removed: its cached token is invalid as soon as the set is.
	srv.update(func(s *keyServer) { s.set = jwks(t, key2().jwk(t, nil)) })
	c.Add(token.DefaultMinRefetchInterval)
	mustReject(t, v, idpToken(t, c, "k9", key1()), token.ErrSignature) // refetches
	if n := srv.fetches.Load(); n != 3 {
		t.Fatalf("%d fetches, want 3", n)
	}
	mustReject(t, v, raw1, token.ErrSignature)
	mustVerify(t, v, raw2)
	wantCount(t, "signature checks", sigs, 4)
}

// TestCacheUnchangedRefresh: a background refresh that brings the same
// document keeps the cached tokens; one that brings another drops them.
func TestCacheUnchangedRefresh(t *testing.T) {
	c := newClock()
	srv := newKeyServer(t, jwks(t, key1().jwk(t, nil)))
	v := newVerifier(t, idpIssuer(srv), c.with(token.Options{RefreshInterval: 5 * time.Millisecond}))
	sigs := signatures(v)
	raw := idpToken(t, c, "k1", key1())
	mustVerify(t, v, raw)
	testkit.Eventually(t, waitBound, func() error {
		n := srv.fetches.Load()
		return testkit.Check(n >= 3, "%d fetches", n)
	}, "refreshes")
	mustVerify(t, v, raw)
	wantCount(t, "signature checks after unchanged refreshes", sigs, 1)

	srv.update(func(s *keyServer) { s.set = jwks(t, key1().jwk(t, map[string]any{"use": "sig"})) })
	testkit.Eventually(t, waitBound, func() error {
		mustVerify(t, v, raw)
		n := sigs.Load()
		return testkit.Check(n == 2, "%d signature checks", n)
	}, "the changed set to drop the entry")
}

// TestCacheFailures: a failed signature check is cached for FailureTTL,
// never past a change of the key set, and a failure for an unknown kid is
// not cached at all.
func TestCacheFailures(t *testing.T) {
	c := newClock()
	v := newVerifier(t, inlineIssuer(t, key1()), c.opts())
	sigs := signatures(v)
	forged := aToken(t, c, "k1", key2(), nil)
	mustReject(t, v, forged, token.ErrSignature)
	c.Add(token.DefaultFailureTTL - time.Nanosecond)
	mustReject(t, v, forged, token.ErrSignature)
	wantCount(t, "signature checks within FailureTTL", sigs, 1)
	c.Add(time.Nanosecond)
	mustReject(t, v, forged, token.ErrSignature)
	wantCount(t, "signature checks after FailureTTL", sigs, 2)

	noFailures := newVerifier(t, inlineIssuer(t, key1()), c.with(token.Options{FailureTTL: -1}))
	sigs = signatures(noFailures)
	mustReject(t, noFailures, forged, token.ErrSignature)
	mustReject(t, noFailures, forged, token.ErrSignature)
	wantCount(t, "signature checks without failure caching", sigs, 2)

	// Failures before the signature check are not cached.
	expired := aToken(t, c, "k1", key1(), map[string]any{"exp": c.unix() - 60})
	mustReject(t, v, expired, token.ErrTime)
	mustReject(t, v, "x.y.z", token.ErrMalformed)
	if st := v.CacheStats(); st.Entries != 1 {
		t.Fatalf("stats: %+v", st)
	}

	// Remote keys, failures cached for an hour: the key set changes under
	// the cached failure of a known kid; a new kid's token becomes valid
	// when the background refresh brings it, although refetches are
	// rate-limited.
	srv := newKeyServer(t, jwks(t, key1().jwk(t, nil)))
	rv := newVerifier(t, idpIssuer(srv), c.with(token.Options{FailureTTL: time.Hour, RefreshInterval: 10 * time.Millisecond}))
	sigs = signatures(rv)
	mustVerify(t, rv, idpToken(t, c, "k1", key1())) // the set is there
	forged = idpToken(t, c, "k1", key2())
	mustReject(t, rv, forged, token.ErrSignature)
	newKid := idpToken(t, c, "k2", key2())
	mustReject(t, rv, newKid, token.ErrSignature)
	// Both failures stay while the set does: the forged one from the cache.
	for range 3 {
		mustReject(t, rv, forged, token.ErrSignature)
		mustReject(t, rv, newKid, token.ErrSignature)
	}
	wantCount(t, "signature checks", sigs, 2)
	k1IsKey2 := key2().jwk(t, map[string]any{"kid": "k1"})
	srv.update(func(s *keyServer) { s.set = jwks(t, k1IsKey2, key2().jwk(t, nil)) })
	testkit.Eventually(t, waitBound, func() error {
		_, err := rv.Verify(context.Background(), newKid)
		return err
	}, "the new kid's token")
	mustVerify(t, rv, forged) // its cached failure is not served
}

// TestCacheFailureCountsOnce: with the set unchanged, a forged token with a
// known kid is checked once per FailureTTL however often it comes.
func TestCacheFailureCountsOnce(t *testing.T) {
	c := newClock()
	srv := newKeyServer(t, jwks(t, key1().jwk(t, nil)))
	v := newVerifier(t, idpIssuer(srv), c.with(token.Options{FailureTTL: time.Hour}))
	sigs := signatures(v)
	mustVerify(t, v, idpToken(t, c, "k1", key1())) // the set is there
	forged := idpToken(t, c, "k1", key2())
	for range 10 {
		mustReject(t, v, forged, token.ErrSignature)
	}
	wantCount(t, "signature checks", sigs, 2)
	// An unknown kid is not cached (and costs no signature check).
	newKid := idpToken(t, c, "k2", key2())
	for range 3 {
		mustReject(t, v, newKid, token.ErrSignature)
	}
	if st := v.CacheStats(); st.Entries != 2 || st.Misses != 5 {
		t.Fatalf("stats: %+v", st)
	}
	srv.update(func(s *keyServer) { s.set = jwks(t, key1().jwk(t, nil), key2().jwk(t, nil)) })
	c.Add(token.DefaultMinRefetchInterval)
	mustVerify(t, v, newKid)
}

func TestCacheBounds(t *testing.T) {
	c := newClock()
	tokens := make([]string, 5)
	for i := range tokens {
		tokens[i] = aToken(t, c, "k1", key1(), map[string]any{"jti": fmt.Sprint(i)})
	}

	// The cost estimate: 18 JSON values (the header object, 3 names and 3
	// values; the claims object, 5 names and 5 values) and the token's
	// length.
	one := newVerifier(t, inlineIssuer(t, key1()), c.opts())
	mustVerify(t, one, tokens[0])
	cost := int64(token.CacheEntryOverhead + len(tokens[0]) + 18*token.CacheBytesPerValue)
	if st := one.CacheStats(); st.Bytes != cost || st.Shards != 16 {
		t.Fatalf("stats %+v, want %d bytes", st, cost)
	}

	for _, opts := range []token.Options{{CacheEntries: 3}, {CacheBytes: 3*cost + cost/2}} {
		v := newVerifier(t, inlineIssuer(t, key1()), c.with(opts))
		sigs := signatures(v)
		for _, i := range []int{0, 1, 2, 0, 3} { // 1 is the least recently used
			mustVerify(t, v, tokens[i])
		}
		wantCount(t, fmt.Sprintf("%+v: signature checks", opts), sigs, 4)
		if st := v.CacheStats(); st.Entries != 3 || st.Evictions != 1 || st.Bytes != 3*cost || st.Shards != 1 {
			t.Fatalf("%+v: stats %+v", opts, st)
		}
		for _, i := range []int{0, 2, 3} {
			mustVerify(t, v, tokens[i])
		}
		wantCount(t, fmt.Sprintf("%+v: signature checks", opts), sigs, 4)
		mustVerify(t, v, tokens[1])
		wantCount(t, fmt.Sprintf("%+v: signature checks", opts), sigs, 5)
	}

	// Too long, too costly, disabled: verified every time.
	for _, opts := range []token.Options{
		{CacheMaxTokenBytes: len(tokens[0]) - 1},
		{CacheBytes: cost - 1},
		{CacheEntries: -1},
		{CacheBytes: -1},
		{CacheMaxTokenBytes: -1},
	} {
		v := newVerifier(t, inlineIssuer(t, key1()), c.with(opts))
		sigs := signatures(v)
		mustVerify(t, v, tokens[0])
		mustVerify(t, v, tokens[0])
		wantCount(t, fmt.Sprintf("%+v: signature checks", opts), sigs, 2)
		if st := v.CacheStats(); st.Entries != 0 {
			t.Fatalf("%+v: stats %+v", opts, st)
		}
	}
	// The longest token cached.
	v := newVerifier(t, inlineIssuer(t, key1()), c.with(token.Options{CacheMaxTokenBytes: len(tokens[0])}))
	mustVerify(t, v, tokens[0])
	if st := v.CacheStats(); st.Entries != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestCacheRevoke(t *testing.T) {
	c := newClock()
	v := newVerifier(t, inlineIssuer(t, key1()), c.opts())
	sigs := signatures(v)
	alice := aToken(t, c, "k1", key1(), map[string]any{"sub": "alice"})
	bob := aToken(t, c, "k1", key1(), nil)
	forged := aToken(t, c, "k1", key2(), map[string]any{"sub": "alice"})
	mustVerify(t, v, alice)
	mustVerify(t, v, bob)
	mustReject(t, v, forged, token.ErrSignature)
	if n := v.Revoke(func(tok *token.Token) bool { return tok.Subject == "alice" }); n != 1 {
		t.Fatalf("revoked %d, want 1", n)
	}
	mustVerify(t, v, bob)
	mustReject(t, v, forged, token.ErrSignature)
	wantCount(t, "signature checks", sigs, 3)
	mustVerify(t, v, alice) // verified again: revocation is the caller's
	wantCount(t, "signature checks", sigs, 4)
	if st := v.CacheStats(); st.Entries != 3 {
		t.Fatalf("stats %+v", st)
	}
	disabled := newVerifier(t, inlineIssuer(t, key1()), c.with(token.Options{CacheEntries: -1}))
	if n := disabled.Revoke(func(*token.Token) bool { return true }); n != 0 {
		t.Fatalf("revoked %d without a cache", n)
	}

	// A verification running during Revoke caches nothing.
	v = newVerifier(t, inlineIssuer(t, key1()), c.opts())
	checking, release := make(chan struct{}), make(chan struct{})
	token.OnSignature(v, func() {
		close(checking)
		<-release
	})
	done := make(chan error)
	go func() {
		_, err := v.Verify(context.Background(), alice)
		done <- err
	}()
	<-checking
	if n := v.Revoke(func(*token.Token) bool { return true }); n != 0 {
		t.Fatalf("revoked %d", n)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if st := v.CacheStats(); st.Entries != 0 {
		t.Fatalf("a verification during Revoke was cached: %+v", st)
	}
}

// TestCacheConcurrent runs verifications, revocations and key set refreshes
// at once (meant for -race) on a cache small enough to evict.
func TestCacheConcurrent(t *testing.T) {
	c := newClock()
	srv := newKeyServer(t, jwks(t, key1().jwk(t, nil)))
	issuers := append(inlineIssuer(t, key1()), idpIssuer(srv)...)
	v := newVerifier(t, issuers, c.with(token.Options{CacheEntries: 8, RefreshInterval: 5 * time.Millisecond}))
	type tc struct {
		raw   string
		valid bool
	}
	var cases []tc
	for i := range 12 {
		cases = append(cases,
			tc{aToken(t, c, "k1", key1(), map[string]any{"jti": fmt.Sprint(i)}), true},
			tc{idpToken(t, c, "k1", key1()), true},
			tc{aToken(t, c, "k1", key2(), map[string]any{"jti": fmt.Sprint(i)}), false},
		)
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	sets := [][]byte{jwks(t, key1().jwk(t, nil)), jwks(t, key1().jwk(t, map[string]any{"use": "sig"}))}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if i%5 == 0 {
				v.Revoke(func(tok *token.Token) bool { return tok.IssuerID == "idp" })
			}
			srv.update(func(s *keyServer) { s.set = sets[i%2] }) // the same key, another document
			v.CacheStats()
			c.Add(time.Millisecond)
			time.Sleep(time.Millisecond)
		}
	}()
	var workers sync.WaitGroup
	for w := range 4 {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for i := range 300 {
				k := cases[(i*7+w)%len(cases)]
				info, err := v.Check(ctx, "Bearer "+k.raw)
				if info.Valid != k.valid || (err == nil) != k.valid {
					t.Errorf("valid %v (%v), want %v", info.Valid, err, k.valid)
					return
				}
				if info.Valid && info.ASTValue() == nil {
					t.Error("no value")
					return
				}
			}
		}()
	}
	workers.Wait()
	close(stop)
	wg.Wait()
	st := v.CacheStats()
	if st.Entries > 8 || st.Hits == 0 || st.Evictions == 0 {
		t.Fatalf("stats %+v", st)
	}
}

// BenchmarkVerifyCached measures Info and its ASTValue, the authorizer's
// use: uncached (every call verifies the signature and converts the
// claims), cached with one token, and cached from parallel goroutines
// cycling through 64 tokens (16 shards, or 1).
func BenchmarkVerifyCached(b *testing.B) {
	now := time.Unix(t0, 0)
	for _, alg := range []struct {
		name string
		key  testKey
	}{{"RS256", testKey{"r", rsaKey(0)}}, {"ES256", testKey{"e", ecKey("P-256", 0)}}} {
		auths := make([]string, 64)
		for i := range auths {
			auths[i] = "Bearer " + sign(b, alg.name, alg.key.kid, alg.key.private, map[string]any{"iss": "https://a", "aud": "api", "sub": "s",
				"exp": t0 + 60, "iat": t0, "scope": "a b c", "roles": []any{"x", "y"}, "jti": fmt.Sprintf("%02d", i)})
		}
		for _, c := range []struct {
			name     string
			opts     token.Options
			parallel bool
		}{
			{"uncached", token.Options{CacheEntries: -1}, false},
			{"cached", token.Options{}, false},
			{"cached-parallel", token.Options{}, true},
			{"cached-parallel-1shard", token.Options{CacheBytes: 1 << 20}, true},
		} {
			b.Run(alg.name+"/"+c.name, func(b *testing.B) {
				c.opts.Now = func() time.Time { return now }
				v, err := token.New(inlineIssuer(b, alg.key), c.opts)
				if err != nil {
					b.Fatal(err)
				}
				defer v.Close()
				ctx := context.Background()
				info := func(auth string) {
					i := v.Info(ctx, auth)
					if !i.Valid || i.ASTValue() == nil {
						b.Fatal("invalid")
					}
				}
				for _, auth := range auths {
					info(auth)
				}
				b.ReportAllocs()
				if c.parallel {
					var seed atomic.Int64
					b.RunParallel(func(pb *testing.PB) {
						for i := seed.Add(17); pb.Next(); i++ {
							info(auths[i%int64(len(auths))])
						}
					})
					return
				}
				for b.Loop() {
					info(auths[0])
				}
			})
		}
	}
}
