package verify

import (
	"context"
	"errors"
	"fmt"

	"github.com/gatehouse-dev/gatehouse/model"
)

// UserAuth authenticates the callers of /api/identity by access tokens
// that a server of a tenant issued to a user of that tenant: verified as
// the server's gateways verify them (signature by a published key, iss,
// aud naming the server's issuer URL or audiences, exp, nbf, not
// revoked), with gh_sub_type "user", gh_tid the server's tenant and a
// sub. Any server of the tenant will do (admin, developer, default or
// its own). It implements admin.UserTokenVerifier
// (admin.Options.UserTokens).
type UserAuth struct {
	Verifier *Verifier
}

// VerifyUserToken returns the tenant and the user id (sub) of a user's
// access token; accepted is false for any token it does not accept; err
// is a failure to read the store.
func (a UserAuth) VerifyUserToken(ctx context.Context, raw string) (tenantID, subject string, accepted bool, err error) {
	tid, sub, err := a.authenticate(ctx, raw)
	switch {
	case errors.Is(err, ErrNotAccepted):
		return "", "", false, nil
	case err != nil:
		return "", "", false, err
	}
	return tid, sub, true, nil
}

func (a UserAuth) authenticate(ctx context.Context, raw string) (tid, sub string, err error) {
	if !LooksLikeJWT(raw) {
		return "", "", fmt.Errorf("%w: not a JWT", ErrNotAccepted)
	}
	iss, err := unverifiedIssuer(raw)
	if err != nil {
		return "", "", fmt.Errorf("%w: %w", ErrNotAccepted, err)
	}
	tid, aid, ok := a.Verifier.ServerOf(iss)
	if !ok {
		return "", "", fmt.Errorf("%w: iss %q is not a server of this control plane", ErrNotAccepted, iss)
	}
	tok, err := a.Verifier.Verify(ctx, tid, aid, raw)
	if err != nil {
		return "", "", err
	}
	typ, _ := tok.Claims["gh_sub_type"].(string)
	owner, _ := tok.Claims["gh_tid"].(string)
	switch {
	case typ != "user":
		return "", "", fmt.Errorf("%w: not a user's token (gh_sub_type %q)", ErrNotAccepted, typ)
	case owner != tid:
		return "", "", fmt.Errorf("%w: gh_tid %q is not the issuer's tenant %q", ErrNotAccepted, owner, tid)
	case !model.ValidObjectID(tok.Subject):
		return "", "", fmt.Errorf("%w: the token's sub is not a user id", ErrNotAccepted)
	}
	return tid, tok.Subject, nil
}
