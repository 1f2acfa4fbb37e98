package oauth

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/oauth/grants"
	"github.com/gatehouse-dev/gatehouse/store"
)

// refreshTokenIDPrefix marks a refresh token's id (its hash) between
// GetRefreshTokenInfo and RevokeToken.
const refreshTokenIDPrefix = "rt:"

// CreateAccessToken issues an access token (no refresh token): for a
// code exchange (the code is redeemed here, once), the implicit flow and
// client_credentials.
func (s *storage) CreateAccessToken(ctx context.Context, req op.TokenRequest) (string, time.Time, error) {
	rq, err := requestFrom(ctx)
	if err != nil {
		return "", time.Time{}, err
	}
	var family string
	switch r := req.(type) {
	case *authRequest:
		if r.code != "" {
			if err := s.beginCodeFamily(ctx, rq, r); err != nil {
				return "", time.Time{}, err
			}
		}
		family = r.familyID
	case *clientRequest:
	default:
		return "", time.Time{}, oidc.ErrUnsupportedGrantType().WithDescription("grant_type: not supported")
	}
	t, err := s.issueAccessToken(ctx, rq, req, family)
	if err != nil {
		return "", time.Time{}, err
	}
	return t.JTI, t.ExpiresAt, nil
}

// CreateAccessAndRefreshTokens issues an access token and a refresh
// token: for a code exchange with offline_access (the code is redeemed
// here), and a refresh, which marks the current refresh token used
// atomically — a token used before is a reuse, which revokes its whole
// family.
func (s *storage) CreateAccessAndRefreshTokens(ctx context.Context, req op.TokenRequest, current string) (string, string, time.Time, error) {
	rq, err := requestFrom(ctx)
	if err != nil {
		return "", "", time.Time{}, err
	}
	var (
		family string
		base   *grants.RefreshToken
	)
	switch r := req.(type) {
	case *authRequest:
		if r.code == "" {
			return "", "", time.Time{}, oidc.ErrInvalidGrant().WithDescription("code: missing")
		}
		if err := s.beginCodeFamily(ctx, rq, r); err != nil {
			return "", "", time.Time{}, err
		}
		family = r.familyID
		base = &grants.RefreshToken{AuthTime: r.r.AuthTime, AMR: r.r.AMR, AuthContext: r.r.AuthContext, Credential: r.r.Credential}
	case *refreshRequest:
		if current == "" || grants.Hash(current) != r.hash {
			return "", "", time.Time{}, oidc.ErrInvalidGrant().WithDescription("refresh_token: does not match")
		}
		first, err := s.p.records.MarkRefreshUsed(ctx, rq.tenantID, r.hash, r.t)
		if err != nil {
			return "", "", time.Time{}, oidc.ErrServerError().WithParent(err)
		}
		if !first {
			if err := s.p.records.RevokeFamily(ctx, s.p.store, rq.tenantID, r.t.FamilyID, grants.ReasonRefreshReuse, r.t.ExpiresAt); err != nil {
				return "", "", time.Time{}, oidc.ErrServerError().WithParent(err)
			}
			s.p.log.Warn("oauth: refresh token reused; its family is revoked", "tenant", rq.tenantID, "server", rq.serverID, "client", r.t.ClientID)
			return "", "", time.Time{}, oidc.ErrInvalidGrant().WithDescription("refresh_token: refresh token reuse; every token of its family is revoked")
		}
		family = r.t.FamilyID
		base = &grants.RefreshToken{AuthTime: r.t.AuthTime, AMR: r.t.AMR, AuthContext: r.t.AuthContext,
			Credential: r.t.Credential, ExpiresAt: r.t.ExpiresAt}
	default:
		return "", "", time.Time{}, oidc.ErrUnsupportedGrantType().WithDescription("grant_type: not supported")
	}
	at, err := s.issueAccessToken(ctx, rq, req, family)
	if err != nil {
		return "", "", time.Time{}, err
	}
	refresh, err := grants.NewSecret()
	if err != nil {
		return "", "", time.Time{}, oidc.ErrServerError().WithParent(err)
	}
	now := s.p.now().UTC()
	base.ServerID, base.Issuer, base.ClientID, base.ClientUID = rq.serverID, rq.issuer, at.ClientID, at.ClientUID
	base.Subject, base.SubjectType, base.Scopes, base.Audience = at.Subject, at.SubjectType, at.Scopes, at.Audience
	base.FamilyID, base.IssuedAt = family, now
	if base.ExpiresAt.IsZero() {
		// The family's absolute lifetime starts at the exchange of the
		// login's code; rotations keep it.
		base.ExpiresAt = now.Add(rq.spec().RefreshTokenTTL.D())
	}
	if err := s.p.records.PutRefreshToken(ctx, rq.tenantID, refresh, base); err != nil {
		if errors.Is(err, grants.ErrExpired) {
			return "", "", time.Time{}, oidc.ErrInvalidGrant().WithDescription("refresh_token: expired (its family reached refresh_token_ttl)")
		}
		return "", "", time.Time{}, oidc.ErrServerError().WithParent(err)
	}
	// A family revoked meanwhile (a concurrent reuse or replay) takes
	// the new tokens with it.
	if revoked, err := s.p.records.FamilyRevoked(ctx, rq.tenantID, family); err != nil || revoked {
		_ = s.p.records.DeleteRefreshToken(ctx, rq.tenantID, grants.Hash(refresh))
		return "", "", time.Time{}, oidc.ErrInvalidGrant().WithDescription("refresh_token: revoked")
	}
	return at.JTI, refresh, at.ExpiresAt, nil
}

// beginCodeFamily redeems the code of a code exchange and, on a server
// with single_session_per_client, revokes the previous tokens of the
// subject at the client.
func (s *storage) beginCodeFamily(ctx context.Context, rq *request, r *authRequest) error {
	if s.p.subjectCurrent(ctx, rq, r.r.Subject, r.r.Credential) != nil {
		return oidc.ErrInvalidGrant().WithDescription("code: its user no longer exists, is not active or changed credentials")
	}
	if err := s.redeemCode(ctx, rq, r); err != nil {
		return err
	}
	if rq.spec().SingleSessionPerClient {
		if err := s.p.records.RevokeSubjectClient(ctx, s.p.store, rq.tenantID, rq.serverID, r.r.Subject, r.r.ClientID); err != nil {
			return oidc.ErrServerError().WithParent(err)
		}
	}
	return nil
}

// issueAccessToken records a new access token of req; the JWT (or opaque
// token) is made by zitadel from the returned record.
func (s *storage) issueAccessToken(ctx context.Context, rq *request, req op.TokenRequest, family string) (*grants.AccessToken, error) {
	now := s.p.now().UTC()
	jti, err := grants.NewTimeOrderedID(now)
	if err != nil {
		return nil, oidc.ErrServerError().WithParent(err)
	}
	t := &grants.AccessToken{
		JTI: jti, ServerID: rq.serverID, Issuer: rq.issuer, Subject: req.GetSubject(),
		Scopes: slices.Clone(req.GetScopes()), Audience: req.GetAudience(), FamilyID: family,
		IssuedAt: now, ExpiresAt: now.Add(rq.spec().AccessTokenTTL.D()),
	}
	var c *client
	switch r := req.(type) {
	case *authRequest:
		c, t.SubjectType, t.Credential = r.client, grants.SubjectUser, r.r.Credential
	case *refreshRequest:
		c, t.SubjectType, t.Credential = r.client, r.t.SubjectType, r.t.Credential
	case *clientRequest:
		c, t.SubjectType = r.client, r.subjectType()
		if r.ttl > 0 {
			t.ExpiresAt = now.Add(r.ttl)
		}
		r.expiresAt = t.ExpiresAt
	}
	t.ClientID, t.ClientUID = c.id, c.uid
	if err := s.p.records.PutAccessToken(ctx, rq.tenantID, t); err != nil {
		return nil, oidc.ErrServerError().WithParent(err)
	}
	if a, ok := req.(audienced); ok && c.AccessTokenType() == op.AccessTokenTypeBearer {
		a.phase().accessTokenDone() // opaque: no JWT claims follow
	}
	return t, nil
}

// TokenRequestByRefreshToken reads a refresh token of the request's
// server whose client still exists (with the UID it was issued to),
// whose user (a user subject) is still one of an enabled login method
// of the server with the password of the login, and whose family is not
// revoked. Whether it was used already is decided atomically by
// CreateAccessAndRefreshTokens.
func (s *storage) TokenRequestByRefreshToken(ctx context.Context, token string) (op.RefreshTokenRequest, error) {
	rq, err := requestFrom(ctx)
	if err != nil {
		return nil, err
	}
	t, err := s.p.records.RefreshToken(ctx, rq.tenantID, token)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, errors.New("refresh_token: unknown, expired or revoked")
	case err != nil:
		return nil, oidc.ErrServerError().WithParent(err)
	case t.ServerID != rq.serverID:
		return nil, errors.New("refresh_token: unknown, expired or revoked")
	}
	c, err := s.client(ctx, t.ClientID)
	if err != nil || c.uid != t.ClientUID {
		return nil, errors.New("refresh_token: its client no longer exists")
	}
	if t.SubjectType == grants.SubjectUser && s.p.subjectCurrent(ctx, rq, t.Subject, t.Credential) != nil {
		return nil, errors.New("refresh_token: its user no longer exists, is not active or changed credentials")
	}
	if _, err := s.p.accountOf(ctx, rq, c); err != nil {
		return nil, errors.New("refresh_token: its service account no longer exists or is not active")
	}
	if revoked, err := s.p.records.FamilyRevoked(ctx, rq.tenantID, t.FamilyID); err != nil || revoked {
		return nil, errors.New("refresh_token: revoked")
	}
	return newRefreshRequest(t, grants.Hash(token), c), nil
}

// GetRefreshTokenInfo identifies a refresh token for the revocation
// endpoint (its id is its hash).
func (s *storage) GetRefreshTokenInfo(ctx context.Context, _ string, token string) (string, string, error) {
	rq, err := requestFrom(ctx)
	if err != nil {
		return "", "", err
	}
	t, err := s.p.records.RefreshToken(ctx, rq.tenantID, token)
	if err != nil || t.ServerID != rq.serverID {
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return "", "", err
		}
		return "", "", op.ErrInvalidRefreshToken
	}
	return t.Subject, refreshTokenIDPrefix + grants.Hash(token), nil
}

// RevokeToken revokes (RFC 7009) a refresh token or an access token of
// the requesting client, with its whole family; an access token's jti is
// added to the revocation list until its exp. Unknown tokens are not an
// error (RFC 7009 §2.2). zitadel gives a subject only for a token it
// identified — a refresh token GetRefreshTokenInfo found ("rt:"+hash),
// an opaque token it decrypted or a JWT whose signature it verified (its
// jti) — and otherwise passes the submitted string with no subject: that
// revokes nothing, so a jti or a refresh token's hash alone is worth
// nothing here.
func (s *storage) RevokeToken(ctx context.Context, tokenOrID, subject string, clientID string) *oidc.Error {
	rq, err := requestFrom(ctx)
	if err != nil {
		return oidc.ErrServerError().WithParent(err)
	}
	if subject == "" {
		return nil // not a token zitadel could identify
	}
	if hash, ok := strings.CutPrefix(tokenOrID, refreshTokenIDPrefix); ok {
		t, err := s.p.records.RefreshTokenByHash(ctx, rq.tenantID, hash)
		switch {
		case errors.Is(err, store.ErrNotFound):
			return nil
		case err != nil:
			return oidc.ErrServerError().WithParent(err)
		case t.ServerID != rq.serverID || t.Subject != subject:
			return nil
		case t.ClientID != clientID:
			return oidc.ErrInvalidRequest().WithDescription("token: was not issued to this client")
		}
		if err := s.p.records.RevokeFamily(ctx, s.p.store, rq.tenantID, t.FamilyID, grants.ReasonRevoked, t.ExpiresAt); err != nil {
			return oidc.ErrServerError().WithParent(err)
		}
		return nil
	}
	if !model.ValidObjectID(tokenOrID) {
		return nil // not a token of ours
	}
	t, err := s.p.records.AccessToken(ctx, rq.tenantID, tokenOrID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil
	case err != nil:
		return oidc.ErrServerError().WithParent(err)
	case t.ServerID != rq.serverID || t.Subject != subject:
		return nil
	case t.ClientID != clientID:
		return oidc.ErrInvalidRequest().WithDescription("token: was not issued to this client")
	}
	if t.FamilyID != "" {
		err = s.p.records.RevokeFamily(ctx, s.p.store, rq.tenantID, t.FamilyID, grants.ReasonRevoked, t.ExpiresAt)
	} else {
		_, err = s.p.store.Update(ctx, func(ctx context.Context, tx store.Tx) error {
			return grants.RevokeJTI(ctx, tx, rq.tenantID, t.Issuer, t.JTI, t.ExpiresAt)
		})
	}
	if err != nil {
		return oidc.ErrServerError().WithParent(err)
	}
	return nil
}

// TerminateSession ends the subject's login sessions at the server and
// revokes its tokens at the client.
func (s *storage) TerminateSession(ctx context.Context, userID, clientID string) error {
	_, err := s.TerminateSessionFromRequest(ctx, &op.EndSessionRequest{UserID: userID, ClientID: clientID})
	return err
}

// TerminateSessionFromRequest is the logout (end_session): the
// post_logout_redirect_uri must be registered exactly; the browser's
// session and the subject's other sessions at the server end, and the
// subject's tokens at the client are revoked. It returns where to send
// the browser (the post-logout redirect, or the signed-out page).
func (s *storage) TerminateSessionFromRequest(ctx context.Context, req *op.EndSessionRequest) (string, error) {
	rq, err := requestFrom(ctx)
	if err != nil {
		return "", err
	}
	redirect := req.RedirectURI
	if redirect == "" {
		redirect = rq.issuer + pathLoggedOut
	} else if c, err := s.client(ctx, req.ClientID); err != nil || !postLogoutRegistered(c, redirect) {
		return "", oidc.ErrInvalidRequest().WithDescription("post_logout_redirect_uri: not registered for this client (exact match)")
	}
	subject := req.UserID
	if rq.sessionHash != "" {
		if sess, err := s.p.records.SessionByHash(ctx, rq.tenantID, rq.sessionHash); err == nil && sess.ServerID == rq.serverID {
			if subject == "" {
				subject = sess.Subject
			}
			if err := s.p.records.DeleteSessionByHash(ctx, rq.tenantID, rq.sessionHash); err != nil {
				return "", err
			}
		}
	}
	if subject == "" {
		return redirect, nil
	}
	sessions, err := s.p.records.Sessions(ctx, rq.tenantID)
	if err != nil {
		return "", err
	}
	for hash, sess := range sessions {
		if sess.ServerID == rq.serverID && sess.Subject == subject {
			if err := s.p.records.DeleteSessionByHash(ctx, rq.tenantID, hash); err != nil {
				return "", err
			}
		}
	}
	if req.ClientID != "" {
		if err := s.p.records.RevokeSubjectClient(ctx, s.p.store, rq.tenantID, rq.serverID, subject, req.ClientID); err != nil {
			return "", err
		}
	}
	return redirect, nil
}

// postLogoutRegistered reports whether redirect (with zitadel's state
// parameter, if any) is exactly one of the client's post-logout URIs.
func postLogoutRegistered(c *client, redirect string) bool {
	if slices.Contains(c.spec.PostLogoutRedirectURIs, redirect) {
		return true
	}
	base, _, found := strings.Cut(redirect, "?")
	if !found {
		return false
	}
	for _, u := range c.spec.PostLogoutRedirectURIs {
		if u == base && !strings.Contains(u, "?") && strings.HasPrefix(redirect[len(base):], "?state=") && !strings.Contains(redirect[len(base)+1:], "&") {
			return true
		}
	}
	return false
}
