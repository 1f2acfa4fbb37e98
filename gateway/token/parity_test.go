package token_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/util"

	"github.com/gatehouse-dev/gatehouse/gateway/token"
	"github.com/gatehouse-dev/gatehouse/policies"
)

// The frozen clock of the parity test: half a second past t0.
const t0 = 1_700_000_000

var parityNow = time.Unix(t0, 500_000_000)

const (
	mainIss   = "https://idp.example.com"
	noAudIss  = "https://noaud.example.com"
	remoteIss = "https://remote.example.com"
)

// parityCase is one Authorization header and whether its token is valid
// (not asserted when agreeOnly: only Go and Rego must agree).
type parityCase struct {
	name      string
	auth      string
	valid     bool
	agreeOnly bool
}

// regoTokenInfo evaluates data.gatehouse.lib.token.info over the built-in
// library with issuers as data.
type regoTokenInfo struct {
	pq, reasonQ rego.PreparedEvalQuery
}

func newRegoTokenInfo(t *testing.T, issuers []policies.IssuerData) *regoTokenInfo {
	t.Helper()
	return newRegoTokenInfoWith(t, map[string]any{"issuers": issuers})
}

// newRegoTokenInfoWith is newRegoTokenInfo with config as
// data.gatehouse.config.
func newRegoTokenInfoWith(t *testing.T, config map[string]any) *regoTokenInfo {
	t.Helper()
	lib, err := policies.Library(false)
	if err != nil {
		t.Fatal(err)
	}
	var mods []policies.Module
	for _, f := range lib {
		mods = append(mods, policies.Module{Path: f.Path, Source: f.Source})
	}
	raw, err := json.Marshal(map[string]any{"gatehouse": map[string]any{"config": config}})
	if err != nil {
		t.Fatal(err)
	}
	var data map[string]any
	if err := util.UnmarshalJSON(raw, &data); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	e, err := policies.NewEngine(ctx, mods, data)
	if err != nil {
		t.Fatal(err)
	}
	pq, err := e.Prepare(ctx, "data.gatehouse.lib.token.info")
	if err != nil {
		t.Fatal(err)
	}
	reasonQ, err := e.Prepare(ctx, "data.gatehouse.lib.token.reason")
	if err != nil {
		t.Fatal(err)
	}
	return &regoTokenInfo{pq: pq, reasonQ: reasonQ}
}

// reason is data.gatehouse.lib.token.reason ("" when undefined).
func (r *regoTokenInfo) reason(t *testing.T, auth *string, now time.Time) string {
	t.Helper()
	headers := map[string]any{}
	if auth != nil {
		headers["authorization"] = *auth
	}
	input := map[string]any{"attributes": map[string]any{"request": map[string]any{"http": map[string]any{
		"method": "GET", "path": "/", "host": "api.example.com", "headers": headers}}}}
	rs, err := r.reasonQ.Eval(context.Background(), rego.EvalInput(input), rego.EvalTime(now))
	if err != nil {
		t.Fatalf("rego: %v", err)
	}
	if len(rs) == 0 {
		return ""
	}
	s, _ := rs[0].Expressions[0].Value.(string)
	return s
}

func (r *regoTokenInfo) info(t *testing.T, auth *string, now time.Time) map[string]any {
	t.Helper()
	headers := map[string]any{}
	if auth != nil {
		headers["authorization"] = *auth
	}
	input := map[string]any{"attributes": map[string]any{"request": map[string]any{"http": map[string]any{
		"method": "GET", "path": "/", "host": "api.example.com", "headers": headers}}}}
	obj, err := policies.EvalObject(context.Background(), r.pq, input, rego.EvalTime(now))
	if err != nil {
		t.Fatalf("rego: %v", err)
	}
	return obj
}

// parityIssuers are the issuers of the parity test: their keys and the
// bundle data the Rego side reads.
type parityIssuers struct {
	data   []policies.IssuerData
	remote *httptest.Server
}

func newParityIssuers(t *testing.T) *parityIssuers {
	rsa1, rsa2 := testKey{"rsa1", rsaKey(0)}, testKey{"rsa2", rsaKey(1)}
	ec256, ec384, ec521 := testKey{"ec256", ecKey("P-256", 0)}, testKey{"ec384", ecKey("P-384", 0)}, testKey{"ec521", ecKey("P-521", 0)}
	enc := testKey{"enc", ecKey("P-256", 1)}
	dup := testKey{"dup", ecKey("P-256", 2)}
	badX := ec256.jwk(t, map[string]any{"kid": "bad"})
	badX["x"] = strings.TrimSuffix(badX["x"].(string), "A") + "AA"
	mainSet := jwks(t,
		rsa1.jwk(t, nil),
		rsa2.jwk(t, map[string]any{"alg": "RS256", "use": "sig"}),
		ec256.jwk(t, nil),
		ec384.jwk(t, map[string]any{"alg": "ES384"}),
		ec521.privateJWK(t), // private members are ignored
		enc.jwk(t, map[string]any{"use": "enc"}),
		badX,
		map[string]any{"kty": "oct", "kid": "hmac", "k": b64("secret")},
		map[string]any{"kty": "RSA", "kid": 7, "n": "AQAB", "e": "AQAB"},
	)
	remoteKey := testKey{"remote", rsaKey(2)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(jwks(t, remoteKey.jwk(t, nil)))
	}))
	t.Cleanup(srv.Close)
	return &parityIssuers{remote: srv, data: []policies.IssuerData{
		{ID: "main", Name: "main", Issuer: mainIss, Audiences: []string{"api", "web"}, JWKS: string(mainSet)},
		{ID: "dup", Name: "dup", Issuer: mainIss, Audiences: []string{"dup-aud"}, JWKS: string(jwks(t, dup.jwk(t, nil)))},
		{ID: "noaud", Name: "noaud", Issuer: noAudIss, Audiences: []string{}, JWKS: string(jwks(t, ec256.jwk(t, nil)))},
		{ID: "remote", Name: "remote", Issuer: remoteIss, Audiences: []string{"api"}, JWKSURI: srv.URL + "/jwks"},
	}}
}

// parityCorpus builds the tokens of the parity test.
func parityCorpus(t *testing.T) []parityCase {
	rsa1, rsa2, rsaRemote := rsaKey(0), rsaKey(1), rsaKey(2)
	ec256, ec384, ec521, enc, dup := ecKey("P-256", 0), ecKey("P-384", 0), ecKey("P-521", 0), ecKey("P-256", 1), ecKey("P-256", 2)
	claims := func(extra map[string]any) map[string]any {
		c := map[string]any{"iss": mainIss, "sub": "alice", "aud": "api", "exp": t0 + 600, "iat": t0 - 10}
		for k, v := range extra {
			if v == nil {
				delete(c, k)
				continue
			}
			c[k] = v
		}
		return c
	}
	// null is a claim set to JSON null (nil deletes a claim).
	null := json.RawMessage("null")
	var cases []parityCase
	add := func(name string, valid bool, tok string) {
		cases = append(cases, parityCase{name: name, auth: "Bearer " + tok, valid: valid})
	}
	good := sign(t, "RS256", "rsa1", rsa1, claims(nil))

	// Algorithms and keys.
	for _, c := range []struct {
		alg, kid string
		key      any
	}{
		{"RS256", "rsa1", rsa1}, {"RS384", "rsa1", rsa1}, {"RS512", "rsa1", rsa1},
		{"PS256", "rsa1", rsa1}, {"PS384", "rsa1", rsa1}, {"PS512", "rsa1", rsa1},
		{"ES256", "ec256", ec256}, {"ES384", "ec384", ec384}, {"ES512", "ec521", ec521},
		{"RS256", "rsa2", rsa2},
	} {
		add(c.alg+" kid "+c.kid, true, sign(t, c.alg, c.kid, c.key, claims(nil)))
		if c.kid != "rsa2" {
			add(c.alg+" without kid", true, sign(t, c.alg, "", c.key, claims(nil)))
		}
	}
	add("RS256 without kid, key declaring RS256", true, sign(t, "RS256", "", rsa2, claims(nil)))
	add("PS256 with a key declaring RS256", false, sign(t, "PS256", "rsa2", rsa2, claims(nil)))
	add("PS256 without kid, only a key declaring RS256", false, sign(t, "PS256", "", rsa2, claims(nil)))
	add("ES384 key declaring ES384 used for ES384", true, sign(t, "ES384", "", ec384, claims(nil)))
	add("unknown kid", false, sign(t, "RS256", "nope", rsa1, claims(nil)))
	add("kid of another key", false, sign(t, "RS256", "rsa2", rsa1, claims(nil)))
	add("kid of a key of another type", false, sign(t, "RS256", "ec256", rsa1, claims(nil)))
	add("ES256 with the P-384 key's kid", false, sign(t, "ES256", "ec384", ec256, claims(nil)))
	add("ES256 with kid of a key with bad material", false, sign(t, "ES256", "bad", ec256, claims(nil)))
	add("key for encryption", false, sign(t, "ES256", "enc", enc, claims(nil)))
	add("key for encryption without kid", false, sign(t, "ES256", "", enc, claims(nil)))
	add("kid matching a numeric kid", false, sign(t, "RS256", "7", rsa1, claims(nil)))
	add("key of no issuer", false, sign(t, "RS256", "rsa1", rsaRemote, claims(nil)))
	add("empty kid", false, signRaw(t, "RS256", rsa1, `{"alg":"RS256","kid":""}`, mustJSON(t, claims(nil))))

	// Signatures.
	parts := strings.Split(good, ".")
	sig := []byte(parts[2])
	sig[10] ^= 1
	add("bad signature", false, parts[0]+"."+parts[1]+"."+string(sig))
	add("signature of other claims", false, parts[0]+"."+strings.Split(sign(t, "RS256", "rsa1", rsa1, claims(map[string]any{"sub": "mallory"})), ".")[1]+"."+parts[2])
	es := strings.Split(sign(t, "ES256", "ec256", ec256, claims(nil)), ".")
	add("ES256 signature one byte short", false, es[0]+"."+es[1]+"."+es[2][:len(es[2])-2])
	add("ES256 signature with a byte more", false, es[0]+"."+es[1]+"."+es[2]+"AA")
	add("alg none", false, b64(`{"alg":"none"}`)+"."+b64(mustJSON(t, claims(nil)))+".")
	add("alg none with a signature", false, b64(`{"alg":"none"}`)+"."+b64(mustJSON(t, claims(nil)))+"."+parts[2])
	pem := publicPEM(t, &rsa1.PublicKey)
	add("HS256 with the public key as secret", false, signRaw(t, "HS256", []byte(pem), `{"alg":"HS256","kid":"rsa1"}`, mustJSON(t, claims(nil))))
	add("HS256 with the JWK as secret", false, signRaw(t, "HS256", []byte(b64("secret")), `{"alg":"HS256","kid":"hmac"}`, mustJSON(t, claims(nil))))
	add("EdDSA", false, b64(`{"alg":"EdDSA"}`)+"."+b64(mustJSON(t, claims(nil)))+"."+parts[2])

	// Header members.
	for _, c := range []struct {
		name, header string
		valid        bool
	}{
		{"typ and cty strings", `{"alg":"RS256","kid":"rsa1","typ":"at+jwt","cty":"JWT"}`, true},
		{"numeric kid", `{"alg":"RS256","kid":1}`, false},
		{"numeric typ", `{"alg":"RS256","kid":"rsa1","typ":1}`, false},
		{"null cty", `{"alg":"RS256","kid":"rsa1","cty":null}`, false},
		{"crit", `{"alg":"RS256","kid":"rsa1","crit":["exp"],"exp":1}`, false},
		{"enc", `{"alg":"RS256","kid":"rsa1","enc":"A128GCM"}`, false},
		{"alg not a string", `{"alg":["RS256"],"kid":"rsa1"}`, false},
		{"huge number in header", `{"alg":"RS256","kid":"rsa1","x":1e400}`, true},
		{"duplicate alg, last wins", `{"alg":"HS256","kid":"rsa1","alg":"RS256"}`, true},
		{"header not an object", `["RS256"]`, false},
		{"header with trailing data", `{"alg":"RS256","kid":"rsa1"} x`, false},
		{"header with trailing whitespace", "{\"alg\":\"RS256\",\"kid\":\"rsa1\"} \n", true},
	} {
		add("header: "+c.name, c.valid, signRaw(t, "RS256", rsa1, c.header, mustJSON(t, claims(nil))))
	}

	// Times, at t0 + 0.5 s with 30 s of leeway.
	for _, c := range []struct {
		name  string
		extra map[string]any
		valid bool
	}{
		{"expired beyond leeway", map[string]any{"exp": t0 - 30}, false},
		{"expired within leeway", map[string]any{"exp": t0 - 29}, true},
		{"fractional exp is floored", map[string]any{"exp": json.Number("1699999970.9")}, false},
		{"fractional exp within leeway", map[string]any{"exp": json.Number("1699999971.2")}, true},
		{"exp in exponent form", map[string]any{"exp": json.Number("1.7000006e9")}, true},
		{"exp 1e400", map[string]any{"exp": json.Number("1e400")}, true},
		{"exp with a huge exponent", map[string]any{"exp": json.Number("1e1000000000")}, false},
		{"nbf with a huge exponent", map[string]any{"nbf": json.Number("1e1000000000")}, false},
		{"iat with a huge exponent", map[string]any{"iat": json.Number("1e1000000000")}, false},
		{"nbf in the future, iat a string", map[string]any{"nbf": t0 + 600, "iat": "x"}, false},
		{"exp -0.5", map[string]any{"exp": json.Number("-0.5")}, false},
		{"exp integral float", map[string]any{"exp": json.Number("1700000600.0")}, true},
		{"exp 2^64", map[string]any{"exp": json.Number("18446744073709551616")}, true},
		{"missing exp", map[string]any{"exp": nil}, false},
		{"exp a string", map[string]any{"exp": "1700000600"}, false},
		{"exp null", map[string]any{"exp": null}, false},
		{"nbf within leeway", map[string]any{"nbf": t0 + 30}, true},
		{"nbf beyond leeway", map[string]any{"nbf": t0 + 31}, false},
		{"nbf fractional within leeway", map[string]any{"nbf": json.Number("1700000030.99")}, true},
		{"nbf null", map[string]any{"nbf": null}, false},
		{"nbf a string", map[string]any{"nbf": "0"}, false},
		{"iat within leeway", map[string]any{"iat": t0 + 30}, true},
		{"iat beyond leeway", map[string]any{"iat": t0 + 31}, false},
		{"iat absent", map[string]any{"iat": nil}, true},
		{"iat in the far past", map[string]any{"iat": json.Number("-1e30")}, true},
		{"iat a bool", map[string]any{"iat": true}, false},
	} {
		add("time: "+c.name, c.valid, sign(t, "ES256", "ec256", ec256, claims(c.extra)))
	}

	// Issuer and audience.
	for _, c := range []struct {
		name  string
		extra map[string]any
		key   any
		kid   string
		valid bool
	}{
		{"wrong iss", map[string]any{"iss": "https://evil.example.com"}, rsa1, "rsa1", false},
		{"iss with a trailing slash", map[string]any{"iss": mainIss + "/"}, rsa1, "rsa1", false},
		{"missing iss", map[string]any{"iss": nil}, rsa1, "rsa1", false},
		{"numeric iss", map[string]any{"iss": 1}, rsa1, "rsa1", false},
		{"aud array", map[string]any{"aud": []any{"x", "web"}}, rsa1, "rsa1", true},
		{"wrong aud", map[string]any{"aud": "x"}, rsa1, "rsa1", false},
		{"absent aud", map[string]any{"aud": nil}, rsa1, "rsa1", false},
		{"null aud", map[string]any{"aud": null}, rsa1, "rsa1", false},
		{"empty aud array", map[string]any{"aud": []any{}}, rsa1, "rsa1", false},
		{"aud array with a number", map[string]any{"aud": []any{"api", 1}}, rsa1, "rsa1", false},
		{"numeric aud", map[string]any{"aud": 1}, rsa1, "rsa1", false},
		{"aud of the other issuer with the same iss", map[string]any{"aud": "dup-aud"}, rsa1, "rsa1", false},
		{"the other issuer's key and aud", map[string]any{"aud": "dup-aud"}, dup, "dup", true},
		{"the other issuer's key, this aud", map[string]any{"aud": "api"}, dup, "dup", false},
		{"issuer without audiences", map[string]any{"iss": noAudIss}, ec256, "ec256", false},
	} {
		alg := "RS256"
		if c.key != rsa1 {
			alg = "ES256"
		}
		add("claims: "+c.name, c.valid, sign(t, alg, c.kid, c.key, claims(c.extra)))
	}

	// Claims, subject and scopes.
	for _, c := range []struct {
		name  string
		extra map[string]any
	}{
		{"scope string", map[string]any{"scope": "  read write  admin:all "}},
		{"empty scope", map[string]any{"scope": ""}},
		{"scope array falls back to scp", map[string]any{"scope": []any{"x"}, "scp": []any{"a", "b c", ""}}},
		{"scp string", map[string]any{"scp": "a b"}},
		{"scp with a non-string", map[string]any{"scp": []any{"a", 1}}},
		{"scope and scp", map[string]any{"scope": "s", "scp": []any{"p"}}},
		{"scp object", map[string]any{"scp": map[string]any{"a": true}}},
		{"no sub", map[string]any{"sub": nil}},
		{"numeric sub", map[string]any{"sub": 42}},
		{"nested and odd claims", map[string]any{
			"roles": []any{"admin", map[string]any{"deep": []any{1, 2.5, nil, true}}},
			"n1":    json.Number("1e3"), "n2": json.Number("12345678901234567890123"), "n3": json.Number("-0.000001"),
			"n4": json.Number("1.50"), "text": "ünïcødé \u2028 \"quoted\"", "empty": map[string]any{}, "null": null,
		}},
	} {
		add("claims: "+c.name, true, sign(t, "PS256", "rsa1", rsa1, claims(c.extra)))
	}
	add("duplicate iss, last wins", true, signRaw(t, "RS256", rsa1, `{"alg":"RS256","kid":"rsa1"}`,
		`{"iss":"https://evil.example.com","iss":"`+mainIss+`","aud":"api","exp":1700000600}`))
	add("payload with trailing data", false, signRaw(t, "RS256", rsa1, `{"alg":"RS256","kid":"rsa1"}`,
		`{"iss":"`+mainIss+`","aud":"api","exp":1700000600} {}`))
	add("payload null", false, signRaw(t, "RS256", rsa1, `{"alg":"RS256","kid":"rsa1"}`, `null`))
	add("payload an array", false, signRaw(t, "RS256", rsa1, `{"alg":"RS256","kid":"rsa1"}`, `[1]`))
	add("payload invalid UTF-8", true, signRaw(t, "RS256", rsa1, `{"alg":"RS256","kid":"rsa1"}`,
		"{\"iss\":\""+mainIss+"\",\"aud\":\"api\",\"exp\":1700000600,\"x\":\"\xff\xfe\"}"))

	// Shapes of the token and the header.
	for _, c := range []struct{ name, tok string }{
		{"empty", ""},
		{"one segment", "abc"},
		{"two segments", parts[0] + "." + parts[1]},
		{"four segments", good + ".x"},
		{"empty signature", parts[0] + "." + parts[1] + "."},
		{"padded payload", parts[0] + "." + parts[1] + "=." + parts[2]},
		{"standard base64 characters", parts[0] + "." + parts[1][:8] + "+/" + parts[1][10:] + "." + parts[2]},
		{"length 1 mod 4", parts[0] + "." + parts[1] + "." + parts[2] + "A"},
		{"space inside", parts[0] + ". " + parts[1] + "." + parts[2]},
		{"trailing space", good + " "},
		{"header not JSON", b64("{alg: RS256}") + "." + parts[1] + "." + parts[2]},
		{"header not base64", "!!!!." + parts[1] + "." + parts[2]},
	} {
		add("shape: "+c.name, false, c.tok)
	}
	cases = append(cases,
		parityCase{name: "lower-case bearer", auth: "bearer " + good, valid: true},
		parityCase{name: "upper-case bearer", auth: "BEARER " + good, valid: true},
		parityCase{name: "two spaces", auth: "Bearer  " + good},
		parityCase{name: "tab", auth: "Bearer\t" + good},
		parityCase{name: "no prefix", auth: good},
		parityCase{name: "basic", auth: "Basic YWxpY2U6c2VjcmV0"},
		parityCase{name: "bearer without token", auth: "Bearer"},
		parityCase{name: "bearer and a space", auth: "Bearer "},
		parityCase{name: "non-ASCII prefix", auth: "Beärer " + good},
	)

	// Mutations of valid tokens: flipped, dropped and inserted characters.
	rng := rand.New(rand.NewPCG(1, 2))
	seeds := []string{good, sign(t, "ES256", "ec256", ec256, claims(nil)), sign(t, "PS512", "", rsa1, claims(nil))}
	const alphabet = "AQgw_-.=+/ a9Z"
	for i := range 150 {
		b := []byte(seeds[i%len(seeds)])
		pos := rng.IntN(len(b))
		switch i % 3 {
		case 0:
			b[pos] = alphabet[rng.IntN(len(alphabet))]
		case 1:
			b = append(b[:pos], b[pos+1:]...)
		default:
			b = append(b[:pos], append([]byte{alphabet[rng.IntN(len(alphabet))]}, b[pos:]...)...)
		}
		// A mutation may leave the token valid (e.g. base64 padding bits).
		cases = append(cases, parityCase{name: fmt.Sprintf("mutation %d", i), auth: "Bearer " + string(b), agreeOnly: true})
	}
	return cases
}

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestParityWithRego checks, token by token, that the Go verifier and the
// Rego library compute the same input.gatehouse.token at the same time.
func TestParityWithRego(t *testing.T) {
	issuers := newParityIssuers(t)
	v, err := token.New(token.FromBundle(issuers.data), token.Options{Now: func() time.Time { return parityNow }, AllowPrivateNetworks: true})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	r := newRegoTokenInfo(t, issuers.data)
	ctx := context.Background()

	cases := parityCorpus(t)
	validCount := 0
	reasons := map[string]int{}
	for _, c := range cases {
		goInfo, reason := v.Check(ctx, c.auth)
		got := goInfo.Value()
		want := r.info(t, &c.auth, parityNow)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: Go and Rego disagree (Go's reason: %v)\n  Go:   %s\n  Rego: %s", c.name, reason, mustJSON(t, got), mustJSON(t, want))
			continue
		}
		// Why an invalid token is invalid, alike (token.Reason; the
		// decision logs and, when a gateway exposes token errors, the
		// challenge carry it).
		if got, want := token.Reason(reason), r.reason(t, &c.auth, parityNow); got != want {
			t.Errorf("%s: Go's reason %q (%v), Rego's %q", c.name, got, reason, want)
		}
		reasons[token.Reason(reason)]++
		if !c.agreeOnly && goInfo.Valid != c.valid {
			t.Errorf("%s: valid = %v, want %v (reason: %v)", c.name, goInfo.Valid, c.valid, reason)
		}
		if goInfo.Valid {
			validCount++
		}
		b, err := json.Marshal(goInfo)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case !goInfo.Present && string(b) != `{"present":false,"valid":false}`,
			goInfo.Present && !goInfo.Valid && string(b) != `{"present":true,"valid":false}`:
			t.Errorf("%s: marshals to %s", c.name, b)
		}
	}
	if validCount < 40 || len(cases) < 250 {
		t.Fatalf("weak corpus: %d cases, %d valid", len(cases), validCount)
	}
	for _, r := range []string{token.ReasonMalformed, token.ReasonUnsupportedAlgorithm, token.ReasonIssuerUnknown, token.ReasonAudienceMismatch,
		token.ReasonExpired, token.ReasonNotYetValid, token.ReasonSignatureInvalid} {
		if reasons[r] == 0 {
			t.Errorf("the corpus has no token invalid for %s: %v", r, reasons)
		}
	}

	// No header at all.
	if got, want := v.Info(ctx, "").Value(), r.info(t, nil, parityNow); !reflect.DeepEqual(got, want) {
		t.Errorf("no header: Go %v, Rego %v", got, want)
	}

	// The documented difference: remote keys work in Go only.
	remote := "Bearer " + sign(t, "RS256", "remote", rsaKey(2), map[string]any{"iss": remoteIss, "aud": "api", "exp": t0 + 60})
	if info, err := v.Check(ctx, remote); !info.Valid {
		t.Errorf("remote issuer in Go: %v", err)
	}
	if want := r.info(t, &remote, parityNow); !reflect.DeepEqual(want, map[string]any{"present": true, "valid": false}) {
		t.Errorf("remote issuer in Rego: %v", want)
	}
}

// TestParityClock moves the clock across an exp and an nbf boundary, at
// nanosecond resolution, on both sides.
func TestParityClock(t *testing.T) {
	issuers := newParityIssuers(t)
	r := newRegoTokenInfo(t, issuers.data)
	key := ecKey("P-256", 0)
	exp := "Bearer " + sign(t, "ES256", "ec256", key, map[string]any{"iss": mainIss, "aud": "api", "exp": t0})
	nbf := "Bearer " + sign(t, "ES256", "ec256", key, map[string]any{"iss": mainIss, "aud": "api", "exp": t0 + 3600, "nbf": t0 + 60})
	for _, c := range []struct {
		auth  string
		now   time.Time
		valid bool
	}{
		{exp, time.Unix(t0+29, 999_999_999), true},
		{exp, time.Unix(t0+30, 0), false},
		{nbf, time.Unix(t0+29, 999_999_999), false},
		{nbf, time.Unix(t0+30, 0), true},
	} {
		v, err := token.New(token.FromBundle(issuers.data[:1]), token.Options{Now: func() time.Time { return c.now }})
		if err != nil {
			t.Fatal(err)
		}
		got := v.Info(context.Background(), c.auth)
		v.Close()
		want := r.info(t, &c.auth, c.now)
		if !reflect.DeepEqual(got.Value(), want) || got.Valid != c.valid {
			t.Errorf("at %s: Go %v, Rego %v, want valid %v", c.now.Format(time.RFC3339Nano), got.Valid, want["valid"], c.valid)
		}
	}
}
