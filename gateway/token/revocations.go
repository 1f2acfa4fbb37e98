package token

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strconv"

	"github.com/gatehouse-dev/gatehouse/policies"
)

// ErrRevoked: the token verifies but is revoked (see SetRevocations).
var ErrRevoked = errors.New("revoked")

// SetRevocations makes r (a bundle's data.gatehouse.config.revocations;
// see policies.RevocationsData for the rules) the revocations Verify
// enforces from now on, replacing the previous ones. They apply to cached
// outcomes as well: they are checked on every Verify, after the cache.
// The Verifier keeps r: it must not be modified afterwards.
func (v *Verifier) SetRevocations(r policies.RevocationsData) {
	if r.Empty() {
		v.revocations.Store(nil)
		return
	}
	v.revocations.Store(&r)
}

// revoked returns why t is revoked at now (Unix nanoseconds), or nil.
func revoked(r *policies.RevocationsData, t *Token, now int64) error {
	iss := t.Issuer
	if jti, ok := t.Claims["jti"].(string); ok {
		if exp, listed := r.JTI[iss][jti]; listed {
			// live while now < exp + Leeway, as the token's own exp.
			if c, _ := compareNumericDate(now, json.Number(strconv.FormatInt(exp, 10)), leewaySeconds); c < 0 {
				return fmt.Errorf("%w: jti %q", ErrRevoked, jti)
			}
		}
	}
	sub, ok := t.Claims["sub"].(string)
	if !ok {
		return nil
	}
	if nb, listed := r.NotBefore[iss][sub]; listed && !issuedSince(t.Claims, nb) {
		return fmt.Errorf("%w: issued before %d for sub %q", ErrRevoked, nb, sub)
	}
	clients := r.ClientNotBefore[iss][sub]
	if len(clients) == 0 {
		return nil
	}
	for _, name := range [...]string{"client_id", "azp"} {
		c, ok := t.Claims[name].(string)
		if !ok {
			continue
		}
		if nb, listed := clients[c]; listed && !issuedSince(t.Claims, nb) {
			return fmt.Errorf("%w: issued before %d for sub %q and client %q", ErrRevoked, nb, sub, c)
		}
	}
	return nil
}

// issuedSince: iat is a finite number with floor(iat) >= nb (floor as the
// Rego library computes it, see compareNumericDate).
func issuedSince(claims map[string]any, nb int64) bool {
	iat, ok := claims["iat"].(json.Number)
	if !ok {
		return false
	}
	if i, err := strconv.ParseInt(string(iat), 10, 64); err == nil {
		return i >= nb
	}
	f, ok := new(big.Float).SetString(string(iat))
	if !ok || f.IsInf() {
		return false
	}
	return opaFloor(f).Cmp(big.NewInt(nb)) >= 0
}
