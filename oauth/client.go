package oauth

import (
	"net/url"
	"slices"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/store"
)

// client adapts a clients object of the request's server to op.Client.
type client struct {
	id     string
	uid    string
	spec   *model.ClientSpec
	rq     *request
	scopes map[string]bool // the scopes it may be granted
}

var _ op.Client = (*client)(nil)

func newClient(rq *request, t *store.Typed[model.ClientSpec], serverScopes []string) *client {
	c := &client{id: t.Meta.ID, uid: t.Meta.UID, spec: &t.Spec, rq: rq, scopes: map[string]bool{}}
	for _, s := range standardScopes {
		c.scopes[s] = true
	}
	if !slices.Contains(c.GrantTypeNames(), model.GrantRefreshToken) {
		delete(c.scopes, oidc.ScopeOfflineAccess)
	}
	for _, s := range serverScopes {
		if len(t.Spec.Scopes) == 0 || slices.Contains(t.Spec.Scopes, s) {
			c.scopes[s] = true
		}
	}
	return c
}

// standardScopes are the OpenID Connect scopes every server offers.
var standardScopes = []string{oidc.ScopeOpenID, oidc.ScopeProfile, oidc.ScopeEmail, oidc.ScopePhone, oidc.ScopeAddress, oidc.ScopeOfflineAccess}

// GetID is the client id.
func (c *client) GetID() string { return c.id }

// RedirectURIs are matched exactly (CreateAuthRequest checks it again:
// zitadel ignores the port of a native client's loopback redirect).
func (c *client) RedirectURIs() []string { return c.spec.RedirectURIs }

// PostLogoutRedirectURIs are the logout redirects, matched exactly.
func (c *client) PostLogoutRedirectURIs() []string { return c.spec.PostLogoutRedirectURIs }

// ApplicationType is native for public clients, web for confidential ones.
func (c *client) ApplicationType() op.ApplicationType {
	if c.spec.Public {
		return op.ApplicationTypeNative
	}
	return op.ApplicationTypeWeb
}

// AuthMethod is token_endpoint_auth_method (none for public clients).
func (c *client) AuthMethod() oidc.AuthMethod {
	switch {
	case c.spec.Public:
		return oidc.AuthMethodNone
	case c.spec.TokenEndpointAuthMethod == "":
		return oidc.AuthMethodBasic
	}
	return oidc.AuthMethod(c.spec.TokenEndpointAuthMethod)
}

// ResponseTypes: code, and the implicit ones only when the server
// allows implicit.
func (c *client) ResponseTypes() []oidc.ResponseType {
	types := c.spec.ResponseTypes
	if len(types) == 0 {
		types = []string{string(oidc.ResponseTypeCode)}
	}
	implicit := serverAllows(c.rq.spec(), model.GrantImplicit)
	out := make([]oidc.ResponseType, 0, len(types))
	for _, t := range types {
		rt := oidc.ResponseType(t)
		if rt == oidc.ResponseTypeCode || (implicit && (rt == oidc.ResponseTypeIDToken || rt == oidc.ResponseTypeIDTokenOnly)) {
			out = append(out, rt)
		}
	}
	return out
}

// GrantTypeNames are the client's grant types that its server allows.
func (c *client) GrantTypeNames() []string {
	grants := c.spec.GrantTypes
	if len(grants) == 0 {
		grants = []string{model.GrantAuthorizationCode}
	}
	out := make([]string, 0, len(grants))
	for _, g := range grants {
		if serverAllows(c.rq.spec(), g) {
			out = append(out, g)
		}
	}
	return out
}

// GrantTypes are GrantTypeNames as zitadel names them.
func (c *client) GrantTypes() []oidc.GrantType {
	names := c.GrantTypeNames()
	out := make([]oidc.GrantType, 0, len(names))
	for _, g := range names {
		out = append(out, oidc.GrantType(g))
	}
	return out
}

// allows reports whether the client may use a grant type.
func (c *client) allows(grant string) bool { return slices.Contains(c.GrantTypeNames(), grant) }

// LoginURL is the server's login page for an auth request.
func (c *client) LoginURL(id string) string {
	return c.rq.issuer + pathLogin + "?auth_request=" + url.QueryEscape(id)
}

// AccessTokenType follows the server's access_token_strategy.
func (c *client) AccessTokenType() op.AccessTokenType {
	if c.rq.spec().AccessTokenStrategy == model.AccessTokenOpaque {
		return op.AccessTokenTypeBearer
	}
	return op.AccessTokenTypeJWT
}

// IDTokenLifetime is the server's id_token_ttl.
func (c *client) IDTokenLifetime() time.Duration { return c.rq.spec().IDTokenTTL.D() }

// DevMode is off: no relaxed redirect checks.
func (c *client) DevMode() bool { return false }

// RestrictAdditionalIdTokenScopes keeps the granted scopes.
func (c *client) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}

// RestrictAdditionalAccessTokenScopes keeps the granted scopes.
func (c *client) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}

// IsScopeAllowed answers true: zitadel silently drops the scopes it
// refuses, while Gatehouse answers invalid_scope on the redirect —
// CreateAuthRequest checks every requested scope (allowsScope).
func (c *client) IsScopeAllowed(string) bool { return true }

// allowsScope reports whether the client may be granted a scope: the
// standard OpenID scopes (offline_access with the refresh_token grant)
// and the scopes bound to its server — only those it lists when it
// lists any.
func (c *client) allowsScope(s string) bool { return c.scopes[s] }

// IDTokenUserinfoClaimsAssertion: profile claims go to userinfo when an
// access token is issued (OIDC Core 5.4).
func (c *client) IDTokenUserinfoClaimsAssertion() bool { return false }

// ClockSkew is none.
func (c *client) ClockSkew() time.Duration { return 0 }

// accessAudience is the aud of the client's access tokens: its audience,
// else the server's audiences, else the issuer URL.
func (c *client) accessAudience() []string {
	switch {
	case c.spec.GatewayID != "":
		// A gateway's client speaks for that gateway of this tenant only,
		// whatever audience an imported document carried.
		return []string{model.GatewayAudience(c.rq.tenantID, c.spec.GatewayID)}
	case len(c.spec.Audience) > 0:
		return slices.Clone(c.spec.Audience)
	case len(c.rq.spec().Audiences) > 0:
		return slices.Clone(c.rq.spec().Audiences)
	}
	return []string{c.rq.issuer}
}
