package oauth

import (
	"net/http"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// Client assertions (private_key_jwt, RFC 7523 §3) are good for one
// request (OpenID Connect Core §9: the jti "MUST only be used once"):
// zitadel checks an assertion's signature, audience and times but keeps
// no record of its jti, so an assertion seen once (a proxy log, a
// captured request) would authenticate its client again until it
// expires. assertionReplayed records every valid assertion's jti before
// zitadel answers the request.

// assertionMaxAge is how old (iat) an assertion zitadel's verifier
// accepts (op.Provider.JWTProfileVerifier); a record of its use need not
// outlive that.
const assertionMaxAge = time.Hour

// assertionReplayed answers the request itself, and reports true, when
// it carries a client assertion that is valid but has no jti or was used
// before. Invalid assertions are left to zitadel, which refuses them:
// only the holder of a client's key can make a record.
func (p *Provider) assertionReplayed(w http.ResponseWriter, r *http.Request, rq *request) bool {
	if r.Method != http.MethodPost {
		return false
	}
	if err := r.ParseForm(); err != nil {
		return false // zitadel refuses the body
	}
	assertion := r.PostForm.Get("client_assertion")
	if assertion == "" {
		return false
	}
	ctx := r.Context()
	claims, err := op.VerifyJWTAssertion(ctx, assertion, p.op.JWTProfileVerifier(ctx))
	if err != nil {
		return false
	}
	if claims.JWTID == "" {
		writeOAuthError(w, http.StatusUnauthorized, "invalid_client", "client_assertion: no jti (an assertion must carry a unique jti)")
		return true
	}
	expires := claims.ExpiresAt.AsTime()
	if limit := claims.IssuedAt.AsTime().Add(assertionMaxAge); limit.Before(expires) {
		expires = limit
	}
	first, err := p.records.UseAssertion(ctx, rq.tenantID, rq.serverID, claims.Issuer, claims.JWTID, expires.Add(time.Minute))
	switch {
	case err != nil:
		p.serverError(w, "record the client assertion", err)
		return true
	case !first:
		writeOAuthError(w, http.StatusUnauthorized, "invalid_client", "client_assertion: already used (each assertion is good for one request: sign a new one with a new jti)")
		return true
	}
	if r.PostForm.Get("client_assertion_type") == oidc.ClientAssertionTypeJWTAssertion {
		// zitadel's client_credentials grant authenticates by secret
		// only: the storage takes the client from here (ClientCredentials).
		rq.assertedClient = claims.Issuer
	}
	return false
}
