package token_test

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/gateway/token"
	"github.com/gatehouse-dev/gatehouse/policies"
)

// parityRevocations are the revocations of TestParityRevocations, at
// parityNow (t0 + 0.5 s, 30 s of leeway).
func parityRevocations() policies.RevocationsData {
	return policies.RevocationsData{
		JTI: map[string]map[string]int64{
			mainIss: {
				"live":   t0 + 600,
				"lapsed": t0 - 31, // lapsed at t0 - 1
				"edge":   t0 - 30, // lapsed at t0
				"within": t0 - 29, // lasts until t0 + 1
				"5":      t0 + 600,
				"":       t0 + 600,
			},
			"https://other.example.com": {"other": t0 + 600},
		},
		NotBefore: map[string]map[string]int64{
			mainIss: {"bob": t0 - 100, "a|b": t0 - 100},
		},
		ClientNotBefore: map[string]map[string]map[string]int64{
			mainIss: {
				"carol": {"app1": t0 - 100},
				"a":     {"b": t0 - 100},
			},
			"https://other.example.com": {"alice": {"app1": t0 + 600}},
		},
	}
}

type revocationCase struct {
	name  string
	extra map[string]any
	key   string // "dup" signs with the other issuer of mainIss
	valid bool
}

var revocationCases = []revocationCase{
	{"no jti", nil, "", true},
	{"jti listed", map[string]any{"jti": "live"}, "", false},
	{"jti listed, token of the other issuer with the same iss", map[string]any{"jti": "live", "aud": "dup-aud"}, "dup", false},
	{"jti entry lapsed", map[string]any{"jti": "lapsed"}, "", true},
	{"jti entry lapsed at t0", map[string]any{"jti": "edge"}, "", true},
	{"jti entry within leeway", map[string]any{"jti": "within"}, "", false},
	{"jti not listed", map[string]any{"jti": "fresh"}, "", true},
	{"empty jti listed", map[string]any{"jti": ""}, "", false},
	{"numeric jti whose string is listed", map[string]any{"jti": 5}, "", true},
	{"jti listed for another iss only", map[string]any{"jti": "other"}, "", true},
	{"sub without not_before", map[string]any{"iat": nil}, "", true},
	{"sub issued before not_before", map[string]any{"sub": "bob", "iat": t0 - 200}, "", false},
	{"sub issued at not_before", map[string]any{"sub": "bob", "iat": t0 - 100}, "", true},
	{"sub issued after not_before", map[string]any{"sub": "bob", "iat": t0 - 50}, "", true},
	{"sub issued at a fraction past not_before", map[string]any{"sub": "bob", "iat": json.Number("1699999900.5")}, "", true},
	{"sub issued a fraction before not_before", map[string]any{"sub": "bob", "iat": json.Number("1699999899.5")}, "", false},
	{"sub with not_before, iat in exponent form", map[string]any{"sub": "bob", "iat": json.Number("1.69999995e9")}, "", true},
	{"sub with not_before, iat far past", map[string]any{"sub": "bob", "iat": json.Number("-1e30")}, "", false},
	{"sub with not_before, no iat", map[string]any{"sub": "bob", "iat": nil}, "", false},
	{"sub with not_before, any client", map[string]any{"sub": "bob", "iat": t0 - 200, "client_id": "app9"}, "", false},
	{"sub containing the separator", map[string]any{"sub": "a|b", "iat": t0 - 200}, "", false},
	{"client issued before not_before", map[string]any{"sub": "carol", "iat": t0 - 200, "client_id": "app1"}, "", false},
	{"client by azp issued before not_before", map[string]any{"sub": "carol", "iat": t0 - 200, "azp": "app1"}, "", false},
	{"client by azp, other client_id", map[string]any{"sub": "carol", "iat": t0 - 200, "client_id": "app2", "azp": "app1"}, "", false},
	{"client issued after not_before", map[string]any{"sub": "carol", "iat": t0 - 10, "client_id": "app1"}, "", true},
	{"client without iat", map[string]any{"sub": "carol", "iat": nil, "client_id": "app1"}, "", false},
	{"other client of the sub", map[string]any{"sub": "carol", "iat": t0 - 200, "client_id": "app2"}, "", true},
	{"sub with client not_before, no client", map[string]any{"sub": "carol", "iat": t0 - 200}, "", true},
	{"numeric client_id", map[string]any{"sub": "carol", "iat": t0 - 200, "client_id": 1}, "", true},
	{"same client of another sub", map[string]any{"sub": "dave", "iat": t0 - 200, "client_id": "app1"}, "", true},
	{"sub and client that join to a revoked sub", map[string]any{"sub": "a", "iat": t0 - 200, "client_id": "b"}, "", false},
	{"sub and another client", map[string]any{"sub": "a", "iat": t0 - 200, "client_id": "b|c"}, "", true},
	{"client not_before of another iss", map[string]any{"iat": t0 - 200, "client_id": "app1"}, "", true},
	{"numeric sub", map[string]any{"sub": 7, "iat": t0 - 200, "client_id": "app1"}, "", true},
}

func revocationToken(t *testing.T, c revocationCase) string {
	t.Helper()
	claims := map[string]any{"iss": mainIss, "sub": "alice", "aud": "api", "exp": t0 + 600, "iat": t0 - 10}
	for k, v := range c.extra {
		if v == nil {
			delete(claims, k)
			continue
		}
		claims[k] = v
	}
	if c.key == "dup" {
		return "Bearer " + sign(t, "ES256", "dup", ecKey("P-256", 2), claims)
	}
	return "Bearer " + sign(t, "RS256", "rsa1", rsaKey(0), claims)
}

// TestParityRevocations: the Go verifier with SetRevocations and the Rego
// library with data.gatehouse.config.revocations agree on every revoked and
// unrevoked token, and the tokens are valid as documented.
func TestParityRevocations(t *testing.T) {
	issuers := newParityIssuers(t)
	rev := parityRevocations()
	v, err := token.New(token.FromBundle(issuers.data), token.Options{Now: func() time.Time { return parityNow }})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	v.SetRevocations(rev)
	r := newRegoTokenInfoWith(t, map[string]any{"issuers": issuers.data, "revocations": rev})
	plain := newRegoTokenInfo(t, issuers.data) // a bundle without revocations
	ctx := context.Background()
	for _, c := range revocationCases {
		auth := revocationToken(t, c)
		info, reason := v.Check(ctx, auth)
		want := r.info(t, &auth, parityNow)
		if !reflect.DeepEqual(info.Value(), want) {
			t.Errorf("%s: Go and Rego disagree (Go's reason: %v)\n  Go:   %s\n  Rego: %s", c.name, reason, mustJSON(t, info.Value()), mustJSON(t, want))
			continue
		}
		if info.Valid != c.valid {
			t.Errorf("%s: valid = %v, want %v (reason: %v)", c.name, info.Valid, c.valid, reason)
		}
		if !info.Valid && !errors.Is(reason, token.ErrRevoked) {
			t.Errorf("%s: reason %v, want %v", c.name, reason, token.ErrRevoked)
		}
		// Without revocations every token of the corpus is valid.
		if got := plain.info(t, &auth, parityNow); got["valid"] != true {
			t.Errorf("%s: invalid without revocations: %v", c.name, got)
		}
	}
}

// TestRevocationsAndCache: revocations apply to cached outcomes, and are
// replaced as a whole by each SetRevocations.
func TestRevocationsAndCache(t *testing.T) {
	issuers := newParityIssuers(t)
	now := parityNow
	v, err := token.New(token.FromBundle(issuers.data[:1]), token.Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	ctx := context.Background()
	auth := revocationToken(t, revocationCase{extra: map[string]any{"jti": "live", "sub": "bob", "iat": t0 - 200}})
	if info, err := v.Check(ctx, auth); !info.Valid {
		t.Fatalf("before revocation: %v", err)
	}
	if st := v.CacheStats(); st.Entries != 1 {
		t.Fatalf("not cached: %+v", st)
	}
	v.SetRevocations(policies.RevocationsData{JTI: map[string]map[string]int64{mainIss: {"live": t0 + 600}}})
	if info, err := v.Check(ctx, auth); info.Valid || !errors.Is(err, token.ErrRevoked) {
		t.Fatalf("cached token after revoking its jti: valid %v, %v", info.Valid, err)
	}
	v.SetRevocations(policies.RevocationsData{NotBefore: map[string]map[string]int64{mainIss: {"bob": t0 - 100}}})
	if info, err := v.Check(ctx, auth); info.Valid || !errors.Is(err, token.ErrRevoked) {
		t.Fatalf("cached token after a not_before: valid %v, %v", info.Valid, err)
	}
	v.SetRevocations(policies.RevocationsData{})
	if info, err := v.Check(ctx, auth); !info.Valid {
		t.Fatalf("after the revocations are gone: %v", err)
	}
	// The jti entry lapses with time.
	v.SetRevocations(policies.RevocationsData{JTI: map[string]map[string]int64{mainIss: {"live": t0 + 5}}})
	if info, _ := v.Check(ctx, auth); info.Valid {
		t.Fatal("valid while the entry lasts")
	}
	now = time.Unix(t0+35, 0)
	if info, err := v.Check(ctx, auth); !info.Valid {
		t.Fatalf("after the entry lapsed: %v", err)
	}
}
