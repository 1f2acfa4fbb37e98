package verify

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/gatehouse-dev/gatehouse/model"
)

// AdminAuth authenticates admin API callers by access tokens of
// Gatehouse's servers: a token of tenant T's "admin" server acts on T
// only; a token of the "system" server of the "system" tenant acts
// system-wide. The token must verify as the server's gateways would
// verify it (signature by a published key, iss, aud naming the server's
// issuer URL or audiences, exp, nbf, not revoked). It implements
// admin.TokenVerifier (admin.Options.TokenAuth).
type AdminAuth struct {
	Verifier *Verifier
}

// LooksLikeJWT reports whether a bearer token has the shape of a JWS
// compact serialisation (three base64url parts, the first a JSON object).
func LooksLikeJWT(raw string) bool {
	return strings.HasPrefix(raw, "eyJ") && strings.Count(raw, ".") == 2
}

// VerifyAdminToken returns the subject of an admin server's access token
// ("token:<tid>/<aid>:<sub>", for audit events) and the tenant it acts on
// ("" for system/system); accepted is false for any token it does not
// accept; err is a failure to read the store (admin.TokenVerifier).
func (a AdminAuth) VerifyAdminToken(ctx context.Context, raw string) (subject, tenantID string, accepted bool, err error) {
	p, err := a.Authenticate(ctx, raw)
	switch {
	case errors.Is(err, ErrNotAccepted):
		return "", "", false, nil
	case err != nil:
		return "", "", false, err
	}
	return p.Subject, p.TenantID, true, nil
}

// Principal is who an admin token acts as: TenantID "" is system-wide.
type Principal struct {
	Subject, TenantID string
}

// Authenticate returns the principal of an admin server's access token; a
// token it does not accept is an error wrapping ErrNotAccepted.
func (a AdminAuth) Authenticate(ctx context.Context, raw string) (Principal, error) {
	iss, err := unverifiedIssuer(raw)
	if err != nil {
		return Principal{}, fmt.Errorf("%w: %w", ErrNotAccepted, err)
	}
	tid, aid, ok := a.Verifier.ServerOf(iss)
	if !ok {
		return Principal{}, fmt.Errorf("%w: iss %q is not a server of this control plane", ErrNotAccepted, iss)
	}
	system := tid == model.SystemTenantID && aid == model.SystemServerID
	if !system && aid != model.AdminServerID {
		return Principal{}, fmt.Errorf("%w: %s/%s is not an admin server", ErrNotAccepted, tid, aid)
	}
	tok, err := a.Verifier.Verify(ctx, tid, aid, raw)
	if err != nil {
		return Principal{}, err
	}
	if tok.Subject == "" {
		return Principal{}, fmt.Errorf("%w: the token has no sub", ErrNotAccepted)
	}
	p := Principal{Subject: "token:" + tid + "/" + aid + ":" + tok.Subject, TenantID: tid}
	if system {
		p.TenantID = ""
	}
	return p, nil
}

// unverifiedIssuer reads iss from a JWT's payload without verifying it:
// only to pick the server whose keys then verify the token.
func unverifiedIssuer(raw string) (string, error) {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return "", fmt.Errorf("not a JWT")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", fmt.Errorf("malformed JWT payload")
	}
	var claims struct {
		Iss string `json:"iss"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil || claims.Iss == "" {
		return "", fmt.Errorf("the JWT has no iss")
	}
	return claims.Iss, nil
}
