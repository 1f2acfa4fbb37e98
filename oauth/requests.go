package oauth

import (
	"slices"
	"sync/atomic"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/oauth/grants"
	"github.com/gatehouse-dev/gatehouse/store"
)

// audiencePhase keeps an ID token from carrying the access token's
// audience. zitadel asks one request value for both audiences
// (GetAudience): for the JWT access token (CreateJWT, which then calls
// GetPrivateClaimsFromRequest) and afterwards for the ID token, which it
// extends with the client id. An ID token whose aud named the access
// token's audience (the issuer URL, a gateway) would pass for an access
// token at a gateway, so once the access token is made (its JWT claims,
// or an opaque token's record) GetAudience answers none and the ID token
// gets aud = [client_id].
type audiencePhase struct {
	accessAud []string
	idPhase   atomic.Bool
}

func (a *audiencePhase) GetAudience() []string {
	if a.idPhase.Load() {
		return nil
	}
	return slices.Clone(a.accessAud)
}

// accessTokenDone switches to the ID token's audience.
func (a *audiencePhase) accessTokenDone() { a.idPhase.Store(true) }

// audienced is a request with an audiencePhase.
type audienced interface{ phase() *audiencePhase }

func (a *audiencePhase) phase() *audiencePhase { return a }

// authRequest adapts an auth request record to op.AuthRequest; from
// AuthRequestByCode it also carries the code (in memory only) and the
// family of the tokens its exchange issues.
type authRequest struct {
	audiencePhase
	r        *grants.AuthRequest
	client   *client
	code     string
	familyID string
}

var (
	_ op.AuthRequest         = (*authRequest)(nil)
	_ op.RefreshTokenRequest = (*refreshRequest)(nil)
	_ op.TokenRequest        = (*clientRequest)(nil)
)

func newAuthRequest(r *grants.AuthRequest, c *client) *authRequest {
	a := &authRequest{r: r, client: c}
	a.accessAud = c.accessAudience()
	if r.ResponseType == string(oidc.ResponseTypeIDTokenOnly) {
		a.accessTokenDone() // no access token
	}
	return a
}

func (a *authRequest) GetID() string          { return a.r.ID }
func (a *authRequest) GetACR() string         { return claimString(a.r.AuthContext, "acr") } // a federated login's upstream acr
func (a *authRequest) GetAMR() []string       { return a.r.AMR }
func (a *authRequest) GetAuthTime() time.Time { return a.r.AuthTime }
func (a *authRequest) GetClientID() string    { return a.r.ClientID }
func (a *authRequest) GetNonce() string       { return a.r.Nonce }
func (a *authRequest) GetRedirectURI() string { return a.r.RedirectURI }
func (a *authRequest) GetResponseType() oidc.ResponseType {
	return oidc.ResponseType(a.r.ResponseType)
}
func (a *authRequest) GetResponseMode() oidc.ResponseMode {
	return oidc.ResponseMode(a.r.ResponseMode)
}
func (a *authRequest) GetScopes() []string { return a.r.Scopes }
func (a *authRequest) GetState() string    { return a.r.State }
func (a *authRequest) GetSubject() string  { return a.r.Subject }
func (a *authRequest) Done() bool          { return a.r.Done }

// GetCodeChallenge is the PKCE challenge (S256 only: CreateAuthRequest
// refuses the others).
func (a *authRequest) GetCodeChallenge() *oidc.CodeChallenge {
	if a.r.CodeChallenge == "" {
		return nil
	}
	return &oidc.CodeChallenge{Challenge: a.r.CodeChallenge, Method: oidc.CodeChallengeMethod(a.r.CodeChallengeMethod)}
}

// refreshRequest adapts a refresh token record to op.RefreshTokenRequest.
type refreshRequest struct {
	audiencePhase
	t      *grants.RefreshToken
	hash   string
	client *client
	scopes []string
}

func newRefreshRequest(t *grants.RefreshToken, hash string, c *client) *refreshRequest {
	// The scopes granted then, less those the client may no longer be
	// granted (unbound from the server, removed from the client's
	// scopes, or offline_access without the refresh_token grant).
	scopes := make([]string, 0, len(t.Scopes))
	for _, s := range t.Scopes {
		if c.scopes[s] {
			scopes = append(scopes, s)
		}
	}
	r := &refreshRequest{t: t, hash: hash, client: c, scopes: scopes}
	r.accessAud = t.Audience
	if len(r.accessAud) == 0 {
		r.accessAud = c.accessAudience()
	}
	return r
}

func (r *refreshRequest) GetAMR() []string       { return r.t.AMR }
func (r *refreshRequest) GetAuthTime() time.Time { return r.t.AuthTime }
func (r *refreshRequest) GetClientID() string    { return r.t.ClientID }
func (r *refreshRequest) GetScopes() []string    { return r.scopes }
func (r *refreshRequest) GetSubject() string     { return r.t.Subject }

// SetCurrentScopes narrows the scopes (zitadel checked they are a subset).
func (r *refreshRequest) SetCurrentScopes(scopes []string) { r.scopes = scopes }

// clientRequest is a client_credentials token request: the client is the
// subject, or the service account the client is of (serviceaccounts.go).
type clientRequest struct {
	client *client
	scopes []string
	// account is the service account of the client, nil for a plain
	// client; ttl, when set, is the access token's lifetime (instead of
	// the server's access_token_ttl).
	account *store.Typed[model.ServiceAccountSpec]
	ttl     time.Duration
	// expiresAt is the issued token's expiry (set by issueAccessToken).
	expiresAt time.Time
}

func (r *clientRequest) GetSubject() string {
	if r.account != nil {
		return r.account.Meta.ID
	}
	return r.client.id
}

// subjectType is the token's gh_sub_type.
func (r *clientRequest) subjectType() string {
	if r.account != nil {
		return grants.SubjectServiceAccount
	}
	return grants.SubjectClient
}

func (r *clientRequest) GetAudience() []string { return r.client.accessAudience() }
func (r *clientRequest) GetScopes() []string   { return r.scopes }
