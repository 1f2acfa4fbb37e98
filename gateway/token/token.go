// Package token validates bearer tokens on the authorizer's fast path and
// computes what policies see as input.gatehouse.token. The pure-Rego
// entrypoint computes the same object (gatehouse.lib.token.info in
// policies/rego/gatehouse/lib/token.rego); the rules below are shared, and a
// parity test checks that Go and Rego agree token by token.
//
// The token is the Authorization header value after a case-insensitive
// "Bearer " prefix (nothing is trimmed). Without such a header the token is
// absent: {"present": false, "valid": false}. A present token is valid only
// if all of these hold:
//
//   - It is a compact JWS: exactly three non-empty segments of base64url
//     characters (A-Z a-z 0-9 - _, no padding), whose header and payload
//     decode to JSON objects. JSON is read strictly (nothing may follow the
//     value) and numbers are kept exact; of duplicate members the last wins.
//   - The header's alg is RS256, RS384, RS512, PS256, PS384, PS512, ES256,
//     ES384 or ES512 (never none or HS*); kid, typ and cty, if present, are
//     strings; there is no crit and no enc member.
//   - The payload's iss equals the issuer of a configured issuer exactly,
//     and for one such issuer both hold: aud (a string, or an array of
//     strings) contains one of the issuer's audiences (an issuer without
//     audiences accepts no token), and the signature verifies with a key of
//     the issuer's JWK Set. The keys tried: when the header has a kid, only
//     keys whose kid equals it; without a kid, every key. A key must fit the
//     alg — kty RSA for RS* and PS*; kty EC with crv P-256, P-384, P-521 for
//     ES256, ES384, ES512 — and its alg and use members, if present, must be
//     the token's alg and "sig". Only a key's public material is used (n and
//     e, or crv, x and y: base64url, EC coordinates of the curve's full
//     size); a key whose material does not parse is skipped. ES signatures
//     are r||s of the curve's size.
//   - exp is present and a number, and now < floor(exp) + Leeway; nbf and
//     iat, if present, are numbers with floor(nbf) - Leeway <= now and
//     floor(iat) - Leeway <= now. Claims are truncated to whole seconds
//     (floor) and compared with the current time in nanoseconds.
//   - It is not revoked by the bundle's revocations
//     (data.gatehouse.config.revocations, set by SetRevocations; the rules
//     are policies.RevocationsData's): its jti is not listed for its iss
//     with now < exp + Leeway, and, when its sub (or its sub and its
//     client_id or azp) has a not_before for its iss, it has an iat with
//     floor(iat) >= not_before. Revoked tokens fail with ErrRevoked.
//
// A valid token gives {"present": true, "valid": true, "issuer": iss,
// "subject": sub (or "" unless sub is a string), "claims": the whole
// payload, "scopes": [...]}, where scopes are the scope claim split on
// spaces (empty parts dropped) if it is a string, else the scp claim split
// the same way if it is a string, else scp as it is if it is an array of
// strings, else []. An invalid token gives exactly {"present": true,
// "valid": false}; Verify and Check say why.
//
// Keys come from an issuer's inline JWK Set, from its jwks_uri, or from the
// jwks_uri of its OpenID Connect discovery document (in that order of
// precedence). Remote sets are fetched eagerly and asynchronously by New,
// refreshed in the background every RefreshInterval, and refetched when a
// token names a kid the set lacks (or no keys could be fetched yet) — at
// most once per MinRefetchInterval, concurrent requests sharing one fetch.
// A failed fetch keeps the last good keys. A check never waits on the
// network for a key that is cached. The pure-Rego entrypoint has no network:
// there, tokens of issuers whose keys are remote are never valid.
//
// A Verifier caches the outcome of a token's signature check (by the
// SHA-256 of the token; bounds in Options.CacheEntries and CacheBytes) and
// serves it only while verifying again would give the same outcome: until
// floor(exp) + Leeway, until a remote key set it was checked with changes,
// until Revoke drops it, and, for a failure, for FailureTTL at most. The
// rules above hold unchanged. The Tokens and Infos it returns are shared
// with the cache: read-only.
package token

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/golang-jwt/jwt/v5"
	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/util"
)

// Leeway is the clock skew allowed on exp, nbf and iat. The Rego library
// uses the same number (gatehouse.lib.token.leeway, in seconds).
const Leeway = 30 * time.Second

const leewaySeconds = int64(Leeway / time.Second)

// Reasons a token is invalid; Verify's errors wrap one of them.
var (
	ErrMalformed = errors.New("malformed token")
	ErrAlgorithm = errors.New("unsupported signature algorithm")
	ErrIssuer    = errors.New("untrusted issuer")
	ErrAudience  = errors.New("audience not accepted")
	ErrTime      = errors.New("token not valid at this time")
	ErrSignature = errors.New("signature not verified")
	// ErrExpired and ErrNotYetValid are the two ErrTime failures (exp
	// passed; nbf or iat in the future); the error wraps both.
	ErrExpired     = errors.New("expired")
	ErrNotYetValid = errors.New("not yet valid")
	// ErrKeysUnavailable: no key could be had for the issuers that would
	// accept the token (a JWK Set or discovery fetch failed); the error
	// also wraps ErrSignature.
	ErrKeysUnavailable = errors.New("issuer keys unavailable")
)

// Reasons of Reason: why a present token is invalid, machine-readable, as
// decision logs and the policy test endpoint report them.
const (
	ReasonMalformed            = "malformed"
	ReasonUnsupportedAlgorithm = "unsupported_algorithm"
	ReasonIssuerUnknown        = "issuer_unknown"
	ReasonAudienceMismatch     = "audience_mismatch"
	ReasonExpired              = "expired"
	ReasonNotYetValid          = "not_yet_valid"
	ReasonJWKSUnavailable      = "jwks_unavailable"
	ReasonSignatureInvalid     = "signature_invalid"
	ReasonRevoked              = "revoked"
	// ReasonInvalid is any other failure (none today).
	ReasonInvalid = "invalid"
)

// Reason is the machine-readable reason of an error of Verify or Check
// ("" for nil): one of the Reason* constants.
func Reason(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrRevoked):
		return ReasonRevoked
	case errors.Is(err, ErrExpired):
		return ReasonExpired
	case errors.Is(err, ErrNotYetValid):
		return ReasonNotYetValid
	case errors.Is(err, ErrKeysUnavailable):
		return ReasonJWKSUnavailable
	case errors.Is(err, ErrSignature):
		return ReasonSignatureInvalid
	case errors.Is(err, ErrAudience):
		return ReasonAudienceMismatch
	case errors.Is(err, ErrIssuer):
		return ReasonIssuerUnknown
	case errors.Is(err, ErrAlgorithm):
		return ReasonUnsupportedAlgorithm
	case errors.Is(err, ErrMalformed), errors.Is(err, ErrTime):
		// ErrTime alone: exp missing, or a time claim that is no number.
		return ReasonMalformed
	}
	return ReasonInvalid
}

// Info is what policies see as input.gatehouse.token. It marshals to
// exactly the object the Rego library computes: {"present":…,"valid":false}
// for an absent or invalid token, and every field for a valid one (subject
// "", claims {} and scopes [] included).
//
// The Claims and Scopes of an Info the Verifier returns are shared with its
// cache and with other callers: they are read-only.
type Info struct {
	Present bool           `json:"present"`
	Valid   bool           `json:"valid"`
	Issuer  string         `json:"issuer,omitempty"`
	Subject string         `json:"subject,omitempty"`
	Claims  map[string]any `json:"claims,omitempty"`
	Scopes  []string       `json:"scopes,omitempty"`

	// value caches ASTValue for the Info of a verified Token (nil
	// otherwise); it is shared by the copies of that Info.
	value *infoValue
}

// Value returns the object with JSON types (map[string]any, []any, string,
// bool, json.Number), as it goes into the policy input.
func (i Info) Value() map[string]any {
	if !i.Valid {
		return map[string]any{"present": i.Present, "valid": false}
	}
	scopes := make([]any, len(i.Scopes))
	for n, s := range i.Scopes {
		scopes[n] = s
	}
	claims := i.Claims
	if claims == nil {
		claims = map[string]any{}
	}
	return map[string]any{"present": true, "valid": true, "issuer": i.Issuer, "subject": i.Subject,
		"claims": claims, "scopes": scopes}
}

// MarshalJSON encodes Value.
func (i Info) MarshalJSON() ([]byte, error) {
	return json.Marshal(i.Value())
}

// The policy values of an absent and of an invalid token.
var (
	absentValue  = ast.MustInterfaceToValue(Info{}.Value())
	invalidValue = ast.MustInterfaceToValue(Info{Present: true}.Value())
)

// ASTValue returns Value as an OPA value: ast.InterfaceToValue(i.Value()),
// or nil if that fails (never for an Info of a Verifier). The value of an
// absent or invalid token is a shared constant; that of a valid token from
// a Verifier is computed once per token (and kept with the cached token),
// unless the Info's fields were changed since. The value is shared: it must
// not be modified.
func (i Info) ASTValue() ast.Value {
	switch {
	case !i.Valid && !i.Present:
		return absentValue
	case !i.Valid:
		return invalidValue
	case i.value != nil && i.value.of.same(&i):
		i.value.once.Do(func() { i.value.v, _ = ast.InterfaceToValue(i.value.of.Value()) })
		return i.value.v
	}
	v, err := ast.InterfaceToValue(i.Value())
	if err != nil {
		return nil
	}
	return v
}

// infoValue is the ASTValue of the Info of a verified Token, computed on
// first use.
type infoValue struct {
	once sync.Once
	of   Info // the Info it is the value of
	v    ast.Value
}

// same reports whether i has the fields of o: equal strings, and the same
// claims map and scopes (not only equal ones).
func (o *Info) same(i *Info) bool {
	return o.Present == i.Present && o.Valid == i.Valid && o.Issuer == i.Issuer && o.Subject == i.Subject &&
		reflect.ValueOf(o.Claims).UnsafePointer() == reflect.ValueOf(i.Claims).UnsafePointer() &&
		len(o.Scopes) == len(i.Scopes) && (len(o.Scopes) == 0 || &o.Scopes[0] == &i.Scopes[0])
}

// Token is a verified token. A Token the Verifier returns may be shared
// with its cache and with other callers: it, its maps and its slices are
// read-only.
type Token struct {
	// IssuerID is the ID of the configured issuer whose key verified it.
	IssuerID string
	// Issuer is the iss claim, Subject the sub claim ("" unless a string).
	Issuer  string
	Subject string
	// Header and Claims are the decoded JOSE header and payload; numbers
	// are json.Number.
	Header map[string]any
	Claims map[string]any
	// Scopes are the token's scopes (see the package documentation).
	Scopes []string

	value *infoValue // the ASTValue of Info, computed once (nil for a Token made by hand)
}

// Info returns the token as policies see it.
func (t *Token) Info() Info {
	return Info{Present: true, Valid: true, Issuer: t.Issuer, Subject: t.Subject, Claims: t.Claims, Scopes: t.Scopes, value: t.value}
}

// Bearer returns the token of an Authorization header value: what follows
// a case-insensitive "Bearer " prefix. ok is false without the prefix.
func Bearer(authorization string) (raw string, ok bool) {
	const prefix = "bearer "
	if len(authorization) < len(prefix) {
		return "", false
	}
	for i := range len(prefix) {
		c := authorization[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != prefix[i] {
			return "", false
		}
	}
	return authorization[len(prefix):], true
}

// Info returns input.gatehouse.token for an Authorization header value
// ("" when the request has none).
func (v *Verifier) Info(ctx context.Context, authorization string) Info {
	info, _ := v.Check(ctx, authorization)
	return info
}

// Check is Info plus the reason a present token is invalid (nil when the
// token is valid or absent). The Info of a valid token is shared with the
// Verifier's cache: see Info.
func (v *Verifier) Check(ctx context.Context, authorization string) (Info, error) {
	raw, ok := Bearer(authorization)
	if !ok {
		return Info{}, nil
	}
	t, err := v.Verify(ctx, raw)
	if err != nil {
		return Info{Present: true}, err
	}
	return t.Info(), nil
}

// algorithm is an accepted alg and the key it needs.
type algorithm struct {
	method jwt.SigningMethod
	kty    string // "RSA" or "EC"
	crv    string // the curve, for EC
}

var algorithms = map[string]algorithm{
	"RS256": {jwt.SigningMethodRS256, "RSA", ""},
	"RS384": {jwt.SigningMethodRS384, "RSA", ""},
	"RS512": {jwt.SigningMethodRS512, "RSA", ""},
	"PS256": {jwt.SigningMethodPS256, "RSA", ""},
	"PS384": {jwt.SigningMethodPS384, "RSA", ""},
	"PS512": {jwt.SigningMethodPS512, "RSA", ""},
	"ES256": {jwt.SigningMethodES256, "EC", "P-256"},
	"ES384": {jwt.SigningMethodES384, "EC", "P-384"},
	"ES512": {jwt.SigningMethodES512, "EC", "P-521"},
}

// Verify validates a raw token (without the "Bearer " prefix). The error
// wraps one of the Err* reasons.
//
// Outcomes are cached (see Options.CacheEntries): a token verified once is
// not verified again while its cached outcome holds, and the Token returned
// is then the one of the first verification, shared (read-only).
func (v *Verifier) Verify(ctx context.Context, raw string) (*Token, error) {
	now := v.now().UnixNano()
	tok, err := v.verifyCached(ctx, raw, now)
	if err != nil {
		return nil, err
	}
	if r := v.revocations.Load(); r != nil {
		if err := revoked(r, tok, now); err != nil {
			return nil, err
		}
	}
	return tok, nil
}

// verifyCached is Verify without the revocations.
func (v *Verifier) verifyCached(ctx context.Context, raw string, now int64) (*Token, error) {
	c := v.cache
	if c == nil {
		o := v.verify(ctx, raw, now)
		return o.tok, o.err
	}
	if len(raw) > c.maxToken {
		c.miss()
		o := v.verify(ctx, raw, now)
		return o.tok, o.err
	}
	// Sum256 neither keeps nor modifies its argument: the token's bytes
	// are read in place rather than copied.
	key := sha256.Sum256(unsafe.Slice(unsafe.StringData(raw), len(raw)))
	if e := c.get(&key, now); e != nil {
		return e.tok, e.err
	}
	gen := c.generation()
	o := v.verify(ctx, raw, now)
	if o.cacheable {
		c.put(&key, &o, len(raw), now, gen)
	}
	return o.tok, o.err
}

// verification is the outcome of verify and what a cached copy of it
// depends on.
type verification struct {
	tok *Token
	err error
	// exp is the exp claim, for outcomes of the signature check.
	exp json.Number
	// deps are the remote key sets consulted, as they were.
	deps []dep
	// cacheable: the outcome holds until exp (floor(exp) + Leeway) and
	// until a key set of deps changes. It is false for every outcome
	// before the signature check (cheap to compute again, and an nbf
	// failure is time-dependent) and when a candidate issuer other than
	// the one that verified the token asked for a refetch or had no keys
	// (verifying again could fetch keys and change the outcome).
	cacheable bool
}

// dep is a remote key set an outcome depends on: its keys then (nil when
// there were none).
type dep struct {
	remote *remoteKeys
	keys   *keySet
}

// verify validates raw at now (Unix nanoseconds), without the cache.
//
// Parsing is done here rather than by jwt.Parser, whose JSON and time
// handling differ from the Rego builtins' on edge cases (a header number
// beyond float64, data after the payload object, fractional or huge
// NumericDates); golang-jwt's signing methods verify the signature.
func (v *Verifier) verify(ctx context.Context, raw string, now int64) verification {
	o, err := v.verifyToken(ctx, raw, now)
	if err != nil {
		o.err = err
	}
	return o
}

// verifyToken is verify with the error apart.
func (v *Verifier) verifyToken(ctx context.Context, raw string, now int64) (verification, error) {
	var o verification
	hseg, pseg, sseg, ok := splitCompact(raw)
	if !ok {
		return o, fmt.Errorf("%w: not three base64url segments", ErrMalformed)
	}
	header, err := decodeObject(hseg)
	if err != nil {
		return o, fmt.Errorf("%w: header: %v", ErrMalformed, err)
	}
	alg, _ := header["alg"].(string)
	spec, ok := algorithms[alg]
	if !ok {
		return o, fmt.Errorf("%w: alg %v", ErrAlgorithm, header["alg"])
	}
	if err := checkHeader(header); err != nil {
		return o, err
	}
	claims, err := decodeObject(pseg)
	if err != nil {
		return o, fmt.Errorf("%w: payload: %v", ErrMalformed, err)
	}

	iss, ok := claims["iss"].(string)
	candidates := v.issuers[iss]
	if !ok || len(candidates) == 0 {
		return o, fmt.Errorf("%w: iss %v", ErrIssuer, claims["iss"])
	}
	auds, ok := audiences(claims["aud"])
	if !ok {
		return o, fmt.Errorf("%w: aud is not a string or an array of strings", ErrAudience)
	}
	accepted := 0
	for _, is := range candidates {
		if is.accepts(auds) {
			accepted++
		}
	}
	if accepted == 0 {
		return o, fmt.Errorf("%w: aud %v", ErrAudience, claims["aud"])
	}
	if err := checkTimes(claims, now); err != nil {
		return o, err
	}
	o.exp = claims["exp"].(json.Number)

	sig, err := base64.RawURLEncoding.DecodeString(sseg)
	if err != nil {
		return o, fmt.Errorf("%w: signature: %v", ErrMalformed, err)
	}
	kid, hasKid := header["kid"].(string)
	signed := raw[:len(hseg)+1+len(pseg)]
	var keyErr error
	refetched := false // by a candidate that did not verify the token
	for _, is := range candidates {
		if !is.accepts(auds) {
			continue
		}
		ks, asked, err := is.keySet(ctx, kid, hasKid)
		if is.remote != nil {
			o.deps = append(o.deps, dep{remote: is.remote, keys: ks})
		}
		if err != nil {
			keyErr, refetched = err, true
			continue
		}
		for i := range ks.keys {
			k := &ks.keys[i]
			if !k.usableFor(alg, spec, kid, hasKid) {
				continue
			}
			if v.onSignature != nil {
				v.onSignature()
			}
			if spec.method.Verify(signed, sig, k.public) == nil {
				o.tok = newToken(is.ID, iss, header, claims)
				o.cacheable = !refetched
				return o, nil
			}
		}
		refetched = refetched || asked
	}
	o.cacheable = !refetched
	if keyErr != nil {
		return o, fmt.Errorf("%w: %w: %v", ErrSignature, ErrKeysUnavailable, keyErr)
	}
	if hasKid {
		return o, fmt.Errorf("%w: no key with kid %q and type %s verifies it", ErrSignature, kid, alg)
	}
	return o, fmt.Errorf("%w: no key of type %s verifies it", ErrSignature, alg)
}

// newToken returns the Token of verified claims.
func newToken(issuerID, iss string, header, claims map[string]any) *Token {
	t := &Token{IssuerID: issuerID, Issuer: iss, Subject: subject(claims), Header: header,
		Claims: claims, Scopes: scopes(claims)}
	t.value = &infoValue{of: t.Info()}
	return t
}

// splitCompact splits a compact JWS into its three segments, each
// non-empty, of base64url characters and of a length base64 allows.
func splitCompact(raw string) (header, payload, signature string, ok bool) {
	header, rest, ok1 := strings.Cut(raw, ".")
	payload, signature, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || !segmentOK(header) || !segmentOK(payload) || !segmentOK(signature) {
		return "", "", "", false
	}
	return header, payload, signature, true
}

// segmentOK: non-empty unpadded base64url (the Rego library's segment_ok).
func segmentOK(s string) bool {
	if len(s) == 0 || len(s)%4 == 1 {
		return false
	}
	for i := range len(s) {
		c := s[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// decodeObject decodes a segment into a JSON object the way Rego's
// json.unmarshal does (OPA's util.UnmarshalJSON: strict, exact numbers).
func decodeObject(seg string) (map[string]any, error) {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return nil, err
	}
	var x any
	if err := util.UnmarshalJSON(b, &x); err != nil {
		return nil, err
	}
	obj, ok := x.(map[string]any)
	if !ok {
		return nil, errors.New("not a JSON object")
	}
	return obj, nil
}

// checkHeader applies the header rules besides alg.
func checkHeader(h map[string]any) error {
	for _, name := range [...]string{"kid", "typ", "cty"} {
		if x, ok := h[name]; ok {
			if _, ok := x.(string); !ok {
				return fmt.Errorf("%w: header %s is not a string", ErrMalformed, name)
			}
		}
	}
	for _, name := range [...]string{"crit", "enc"} {
		if _, ok := h[name]; ok {
			return fmt.Errorf("%w: header has %s", ErrMalformed, name)
		}
	}
	return nil
}

// audiences reads aud: a string or an array of strings (ok false otherwise;
// an absent aud is ok with none).
func audiences(aud any) ([]any, bool) {
	switch a := aud.(type) {
	case nil:
		return nil, true
	case string:
		return []any{a}, true
	case []any:
		for _, x := range a {
			if _, ok := x.(string); !ok {
				return nil, false
			}
		}
		return a, true
	}
	return nil, false
}

// checkTimes applies the exp, nbf and iat rules at now (Unix nanoseconds).
func checkTimes(claims map[string]any, now int64) error {
	exp, ok := claims["exp"].(json.Number)
	if !ok {
		return fmt.Errorf("%w: exp is missing or not a number", ErrTime)
	}
	switch c, ok := compareNumericDate(now, exp, leewaySeconds); {
	case !ok:
		return fmt.Errorf("%w: exp %s is not a finite number", ErrTime, exp)
	case c >= 0:
		return fmt.Errorf("%w: %w (exp %s)", ErrTime, ErrExpired, exp)
	}
	for _, name := range [...]string{"nbf", "iat"} {
		x, present := claims[name]
		if !present {
			continue
		}
		n, ok := x.(json.Number)
		if !ok {
			return fmt.Errorf("%w: %s is not a number", ErrTime, name)
		}
		switch c, ok := compareNumericDate(now, n, -leewaySeconds); {
		case !ok:
			return fmt.Errorf("%w: %s %s is not a finite number", ErrTime, name, n)
		case c < 0:
			return fmt.Errorf("%w: %w: %s %s is in the future", ErrTime, ErrNotYetValid, name, n)
		}
	}
	return nil
}

// compareNumericDate compares now (Unix nanoseconds) with (floor(n) +
// offset seconds) in nanoseconds, computed as the Rego library computes it
// with OPA's arithmetic: floor of a non-integer goes through a big.Float of
// 64-bit mantissa (OPA's floor builtin), the rest is exact. ok is false when
// n is not a finite number.
func compareNumericDate(now int64, n json.Number, offset int64) (c int, ok bool) {
	if d, ok := numericDateNanos(n, offset); ok {
		return cmp.Compare(now, d), true
	}
	f, ok := new(big.Float).SetString(string(n))
	if !ok || f.IsInf() {
		return 0, false
	}
	d := opaFloor(f)
	d.Add(d, big.NewInt(offset))
	d.Mul(d, big.NewInt(int64(time.Second)))
	return big.NewInt(now).Cmp(d), true
}

// numericDateNanos is floor(n) + offset seconds in Unix nanoseconds when n
// is an integer small enough for an int64 (the fast path of
// compareNumericDate); ok is false otherwise.
func numericDateNanos(n json.Number, offset int64) (d int64, ok bool) {
	const bound = 1 << 33 // (bound + offset) * 1e9 fits an int64
	i, err := strconv.ParseInt(string(n), 10, 64)
	if err != nil || i <= -bound || i >= bound {
		return 0, false
	}
	return (i + offset) * int64(time.Second), true
}

// opaFloor is OPA's floor for a big.Float (topdown.arithFloor), quirks
// included, as an integer.
func opaFloor(a *big.Float) *big.Int {
	i, _ := a.Int(nil)
	f := new(big.Float).SetInt(i)
	if !f.Signbit() || a.Cmp(f) == 0 {
		return i
	}
	r, _ := new(big.Float).Sub(f, big.NewFloat(1.0)).Int(nil)
	return r
}

func subject(claims map[string]any) string {
	s, _ := claims["sub"].(string)
	return s
}

// scopes: scope split on spaces if a string, else scp split if a string,
// else scp if an array of strings, else none.
func scopes(claims map[string]any) []string {
	if s, ok := claims["scope"].(string); ok {
		return splitSpaces(s)
	}
	switch scp := claims["scp"].(type) {
	case string:
		return splitSpaces(scp)
	case []any:
		out := make([]string, 0, len(scp))
		for _, x := range scp {
			s, ok := x.(string)
			if !ok {
				return []string{}
			}
			out = append(out, s)
		}
		return out
	}
	return []string{}
}

func splitSpaces(s string) []string {
	out := make([]string, 0, strings.Count(s, " ")+1)
	for part := range strings.SplitSeq(s, " ") {
		if part != "" {
			out = append(out, part)
		}
	}
	return out
}
