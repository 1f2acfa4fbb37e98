package oauth

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/oauth/grants"
	"github.com/gatehouse-dev/gatehouse/store"
)

// Gatehouse's claims in access tokens.
const (
	claimScope   = "scope"
	claimTenant  = "gh_tid"
	claimSubType = "gh_sub_type"
)

// standardClaims are the OpenID Connect claims a scope releases, copied
// from the authentication context (keys of the same name).
var standardClaims = map[string][]string{
	oidc.ScopeProfile: {"name", "given_name", "family_name", "middle_name", "nickname", "preferred_username",
		"profile", "picture", "website", "gender", "birthdate", "zoneinfo", "locale", "updated_at"},
	oidc.ScopeEmail:   {"email", "email_verified"},
	oidc.ScopePhone:   {"phone_number", "phone_number_verified"},
	oidc.ScopeAddress: {"address"},
}

// SetUserinfoFromScopes does nothing (deprecated; SetUserinfoFromRequest
// fills the ID token).
func (s *storage) SetUserinfoFromScopes(context.Context, *oidc.UserInfo, string, string, []string) error {
	return nil
}

// SetUserinfoFromRequest fills the ID token's user claims: the subject
// (always — zitadel overwrites sub with it), the standard claims of
// scopes, and the server's id_token claims for the granted scopes.
func (s *storage) SetUserinfoFromRequest(ctx context.Context, info *oidc.UserInfo, req op.IDTokenRequest, scopes []string) error {
	rq, err := requestFrom(ctx)
	if err != nil {
		return err
	}
	info.Subject = req.GetSubject()
	var authCtx map[string]any
	switch r := req.(type) {
	case *authRequest:
		authCtx = r.r.AuthContext
	case *refreshRequest:
		authCtx = r.t.AuthContext
	}
	return s.fillUserinfo(ctx, rq, info, req.GetSubject(), authCtx, scopes, req.GetScopes())
}

// fillUserinfo sets the standard claims of scopes and the id_token claims
// of granted from authCtx.
func (s *storage) fillUserinfo(ctx context.Context, rq *request, info *oidc.UserInfo, subject string, authCtx map[string]any, scopes, granted []string) error {
	if info.Subject == "" {
		info.Subject = subject
	}
	for _, sc := range scopes {
		for _, name := range standardClaims[sc] {
			if v, ok := authCtx[name]; ok {
				info.AppendClaims(name, v)
			}
		}
		if sc == oidc.ScopeProfile {
			if _, ok := authCtx["preferred_username"]; !ok {
				if _, user, ok := parseStaticSubject(subject); ok {
					info.AppendClaims("preferred_username", user)
				}
			}
		}
	}
	mapped, err := s.mappedClaims(ctx, rq, model.ClaimIDToken, authCtx, granted)
	if err != nil {
		return err
	}
	for k, v := range mapped {
		info.AppendClaims(k, v)
	}
	return nil
}

// mappedClaims are the server's claims of type typ whose scopes were
// granted (none: always), valued from the authentication context.
func (s *storage) mappedClaims(ctx context.Context, rq *request, typ string, authCtx map[string]any, granted []string) (map[string]any, error) {
	claims, err := rq.cfg.serverClaims(ctx)
	if err != nil {
		return nil, oidc.ErrServerError().WithParent(err)
	}
	out := map[string]any{}
	for _, c := range claims {
		if c.Spec.Type != typ || slices.Contains(model.ReservedClaimNames, c.Spec.Name) {
			continue
		}
		if len(c.Spec.Scopes) > 0 && !slices.ContainsFunc(c.Spec.Scopes, func(sc string) bool { return slices.Contains(granted, sc) }) {
			continue
		}
		if v, ok := lookupPath(authCtx, c.Spec.Mapping); ok {
			out[c.Spec.Name] = v
		}
	}
	return out, nil
}

// lookupPath reads a dotted path in an authentication context.
func lookupPath(m map[string]any, path string) (any, bool) {
	var cur any = m
	for _, part := range strings.Split(path, ".") {
		obj, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = obj[part]; !ok {
			return nil, false
		}
	}
	return cur, cur != nil
}

// GetPrivateClaimsFromScopes is unused (GetPrivateClaimsFromRequest
// serves every request).
func (s *storage) GetPrivateClaimsFromScopes(context.Context, string, string, []string) (map[string]any, error) {
	return nil, nil
}

// GetPrivateClaimsFromRequest adds Gatehouse's claims to a JWT access
// token: scope, gh_tid, gh_sub_type and the server's access_token
// claims for the granted scopes. zitadel calls it for the access token
// only, after taking its aud: from now on the request's audience is the
// ID token's (audiencePhase).
func (s *storage) GetPrivateClaimsFromRequest(ctx context.Context, req op.TokenRequest, _ []string) (map[string]any, error) {
	rq, err := requestFrom(ctx)
	if err != nil {
		return nil, err
	}
	if a, ok := req.(audienced); ok {
		a.phase().accessTokenDone()
	}
	claims := map[string]any{claimTenant: rq.tenantID}
	var authCtx map[string]any
	switch r := req.(type) {
	case *authRequest:
		claims[claimSubType], authCtx = grants.SubjectUser, r.r.AuthContext
	case *refreshRequest:
		claims[claimSubType], authCtx = r.t.SubjectType, r.t.AuthContext
	case *clientRequest:
		claims[claimSubType] = r.subjectType()
	}
	if sc := req.GetScopes(); len(sc) > 0 {
		claims[claimScope] = strings.Join(sc, " ")
	}
	mapped, err := s.mappedClaims(ctx, rq, model.ClaimAccessToken, authCtx, req.GetScopes())
	if err != nil {
		return nil, err
	}
	for k, v := range mapped {
		claims[k] = v
	}
	return claims, nil
}

// errInactive: an access token that is not (or no longer) valid here.
var errInactive = errors.New("access_token: invalid, expired or revoked")

// liveAccessToken reads the record of an access token of the request's
// server that is unexpired and not revoked, of a client or of a user
// still at the server with the password of its login.
func (s *storage) liveAccessToken(ctx context.Context, rq *request, jti string) (*grants.AccessToken, error) {
	if !model.ValidObjectID(jti) {
		return nil, errInactive
	}
	t, err := s.p.records.AccessToken(ctx, rq.tenantID, jti)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, errInactive
	case err != nil:
		return nil, oidc.ErrServerError().WithParent(err)
	case t.ServerID != rq.serverID || t.Issuer != rq.issuer || !t.ExpiresAt.After(s.p.now()):
		return nil, errInactive
	}
	revoked, err := s.p.records.IsRevoked(ctx, s.p.store, rq.tenantID, t)
	if err != nil {
		return nil, oidc.ErrServerError().WithParent(err)
	}
	if revoked {
		return nil, errInactive
	}
	if t.SubjectType == grants.SubjectUser && s.p.subjectCurrent(ctx, rq, t.Subject, t.Credential) != nil {
		return nil, errInactive // the user was removed or suspended, or its credentials changed
	}
	return t, nil
}

// authContextOf is the authentication context of a subject now: a static
// user's from the server's configuration, a tenant user's from the
// directory (userAuthContext), nil for clients.
func (s *storage) authContextOf(ctx context.Context, rq *request, t *grants.AccessToken) (map[string]any, error) {
	if t.SubjectType != grants.SubjectUser {
		return nil, nil
	}
	if !isStaticSubject(t.Subject) {
		u, err := s.p.tenantUser(ctx, rq.tenantID, t.Subject)
		if err != nil {
			return nil, err
		}
		return userAuthContext(u, nil), nil
	}
	_, user, err := staticUser(rq.spec(), t.Subject)
	if err != nil {
		return nil, err
	}
	return user.AuthenticationContext, nil
}

// SetUserinfoFromToken answers userinfo for a live access token: sub
// (always) and the claims of its scopes.
func (s *storage) SetUserinfoFromToken(ctx context.Context, info *oidc.UserInfo, jti, _ string, _ string) error {
	rq, err := requestFrom(ctx)
	if err != nil {
		return err
	}
	t, err := s.liveAccessToken(ctx, rq, jti)
	if err != nil {
		return err
	}
	authCtx, err := s.authContextOf(ctx, rq, t)
	if err != nil {
		return fmt.Errorf("%w: %w", errInactive, err)
	}
	info.Subject = t.Subject
	return s.fillUserinfo(ctx, rq, info, t.Subject, authCtx, t.Scopes, t.Scopes)
}

// SetIntrospectionFromToken describes a live access token of the
// request's server to an authenticated client of the server; anything
// else is active:false.
func (s *storage) SetIntrospectionFromToken(ctx context.Context, resp *oidc.IntrospectionResponse, jti, _ string, _ string) error {
	rq, err := requestFrom(ctx)
	if err != nil {
		return err
	}
	t, err := s.liveAccessToken(ctx, rq, jti)
	if err != nil {
		return err
	}
	resp.Scope = t.Scopes
	resp.ClientID = t.ClientID
	resp.TokenType = oidc.BearerToken
	resp.Expiration = oidc.FromTime(t.ExpiresAt)
	resp.IssuedAt = oidc.FromTime(t.IssuedAt)
	resp.NotBefore = oidc.FromTime(t.IssuedAt)
	resp.Subject = t.Subject
	resp.Audience = t.Audience
	resp.Issuer = t.Issuer
	resp.JWTID = t.JTI
	resp.Claims = map[string]any{claimTenant: rq.tenantID, claimSubType: t.SubjectType}
	if _, user, ok := parseStaticSubject(t.Subject); ok {
		resp.Username = user
	}
	return nil
}
