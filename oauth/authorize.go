package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/oauth/grants"
	"github.com/gatehouse-dev/gatehouse/store"
)

// CreateAuthRequest enforces the server's rules on an authorization
// request zitadel has validated (client, redirect_uri, response_type) and
// stores it: the redirect_uri exactly registered (else HTML 400, no
// redirect), PKCE S256 required for public clients and, with
// enforce_pkce, for all (plain refused), every scope allowed (else
// invalid_scope on the redirect). A refused request writes nothing.
func (s *storage) CreateAuthRequest(ctx context.Context, req *oidc.AuthRequest, hintSubject string) (op.AuthRequest, error) {
	rq, err := requestFrom(ctx)
	if err != nil {
		return nil, err
	}
	c, err := s.client(ctx, req.ClientID)
	if err != nil {
		return nil, oidc.ErrInvalidRequestRedirectURI().WithDescription("client_id: unknown client").WithParent(err)
	}
	if !slices.Contains(c.spec.RedirectURIs, req.RedirectURI) {
		return nil, oidc.ErrInvalidRequestRedirectURI().WithDescription("redirect_uri: not registered for this client (exact match)")
	}
	if req.ResponseType == oidc.ResponseTypeCode && !c.allows(model.GrantAuthorizationCode) {
		return nil, oidc.ErrUnauthorizedClient().WithDescription("response_type: code needs the authorization_code grant, which this client does not have")
	}
	if req.ResponseType != oidc.ResponseTypeCode && !c.allows(model.GrantImplicit) {
		return nil, oidc.ErrUnauthorizedClient().WithDescription("response_type: only code is allowed for this client")
	}
	switch {
	case req.CodeChallenge == "" && (c.spec.Public || rq.spec().EnforcePKCE):
		return nil, oidc.ErrInvalidRequest().WithDescription("code_challenge: required (PKCE with code_challenge_method S256)")
	case req.CodeChallenge != "" && req.CodeChallengeMethod != oidc.CodeChallengeMethodS256:
		return nil, oidc.ErrInvalidRequest().WithDescription("code_challenge_method: must be S256 (plain is not supported)")
	case req.CodeChallenge == "" && req.CodeChallengeMethod != "":
		return nil, oidc.ErrInvalidRequest().WithDescription("code_challenge: missing beside code_challenge_method")
	}
	if err := checkAuthRequestBounds(req); err != nil {
		return nil, err
	}
	for _, sc := range req.Scopes {
		if !c.allowsScope(sc) {
			return nil, oidc.ErrInvalidScope().WithDescription("scope: %s is not allowed for this client", printableScope(sc))
		}
	}
	binding := bindingFrom(ctx)
	if binding == nil {
		return nil, oidc.ErrServerError().WithParent(errors.New("oauth: an auth request outside /authorize"))
	}
	id, err := grants.NewID()
	if err != nil {
		return nil, err
	}
	now := s.p.now().UTC()
	expires := now.Add(grants.LoginWindow)
	slot, ok, err := s.p.records.AcquireAuthRequestSlot(ctx, rq.tenantID, rq.serverID, s.p.maxPending, expires)
	if err != nil {
		return nil, oidc.ErrServerError().WithParent(err)
	}
	if !ok {
		s.p.log.Warn("oauth: too many auth requests wait for their login; refused", "tenant", rq.tenantID, "server", rq.serverID, "limit", s.p.maxPending)
		return nil, &oidc.Error{ErrorType: "temporarily_unavailable", Description: "request: too many sign-ins are in progress at this server; try again in a few minutes"}
	}
	r := &grants.AuthRequest{
		ID: id, ServerID: rq.serverID, ClientID: c.id, RedirectURI: req.RedirectURI,
		ResponseType: string(req.ResponseType), ResponseMode: string(req.ResponseMode),
		Scopes: slices.Clone(req.Scopes), State: req.State, Nonce: req.Nonce,
		CodeChallenge: req.CodeChallenge, CodeChallengeMethod: string(req.CodeChallengeMethod),
		Prompt: slices.Clone(req.Prompt), MaxAge: req.MaxAge, LoginHint: req.LoginHint,
		HintSubject: hintSubject, CreatedAt: now, ExpiresAt: expires,
		BrowserHash: grants.Hash(binding.nonce), Slot: slot,
	}
	if err := s.p.records.PutAuthRequest(ctx, rq.tenantID, r); err != nil {
		_ = s.p.records.ReleaseAuthRequestSlot(ctx, rq.tenantID, slot)
		return nil, oidc.ErrServerError().WithParent(err)
	}
	binding.id = id
	return newAuthRequest(r, c), nil
}

// checkAuthRequestBounds refuses, with invalid_request naming the
// parameter, what would make a large record: state or nonce over 1 KiB,
// login_hint over 256 bytes, a code_challenge that is not 43 base64url
// characters (an S256 challenge), more than 50 scopes or one over 256
// bytes. An oversized state is not echoed on the error redirect.
func checkAuthRequestBounds(req *oidc.AuthRequest) error {
	var desc string
	switch {
	case len(req.State) > maxStateBytes:
		req.State = ""
		desc = "state: longer than 1024 bytes"
	case len(req.Nonce) > maxNonceBytes:
		desc = "nonce: longer than 1024 bytes"
	case len(req.LoginHint) > maxLoginHintBytes:
		desc = "login_hint: longer than 256 bytes"
	case req.CodeChallenge != "" && !validCodeChallenge(req.CodeChallenge):
		desc = "code_challenge: not an S256 challenge (43 base64url characters)"
	case len(req.Scopes) > maxScopes:
		desc = "scope: more than 50 scopes"
	default:
		for _, sc := range req.Scopes {
			if len(sc) > maxScopeBytes {
				return oidc.ErrInvalidRequest().WithDescription("scope: a scope is longer than 256 bytes")
			}
		}
		return nil
	}
	return oidc.ErrInvalidRequest().WithDescription("%s", desc)
}

// validCodeChallenge reports whether s is 43 base64url characters.
func validCodeChallenge(s string) bool {
	if len(s) != codeChallengeBytes {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// authRequest reads an auth request of the request's server.
func (s *storage) authRequest(ctx context.Context, id string) (*authRequest, error) {
	rq, err := requestFrom(ctx)
	if err != nil {
		return nil, err
	}
	r, err := s.p.records.AuthRequest(ctx, rq.tenantID, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, oidc.ErrInvalidRequest().WithDescription("auth_request: unknown or expired")
	case err != nil:
		return nil, oidc.ErrServerError().WithParent(err)
	case r.ServerID != rq.serverID:
		return nil, oidc.ErrInvalidRequest().WithDescription("auth_request: unknown or expired")
	}
	c, err := s.client(ctx, r.ClientID)
	if err != nil {
		return nil, oidc.ErrInvalidRequest().WithDescription("client_id: the client of the auth request no longer exists")
	}
	return newAuthRequest(r, c), nil
}

// AuthRequestByID reads an auth request (the login and the callback).
func (s *storage) AuthRequestByID(ctx context.Context, id string) (op.AuthRequest, error) {
	return s.authRequest(ctx, id)
}

// SaveAuthCode records the code issued for a completed auth request,
// keyed by its hash, for authorization_code_ttl. One code per auth
// request: the auth request is taken and put back marked, so a replayed
// callback gets none.
func (s *storage) SaveAuthCode(ctx context.Context, id, code string) error {
	rq, err := requestFrom(ctx)
	if err != nil {
		return err
	}
	e, ok, err := s.p.store.TakeState(ctx, grants.KindAuthRequests, rq.tenantID, id)
	if err != nil {
		return oidc.ErrServerError().WithParent(err)
	}
	if !ok {
		return oidc.ErrInvalidRequest().WithDescription("auth_request: unknown or expired")
	}
	var r grants.AuthRequest
	if err := json.Unmarshal(e.Value, &r); err != nil {
		return oidc.ErrServerError().WithParent(err)
	}
	issued := r.CodeIssued
	r.CodeIssued = true
	codeExpires := s.p.now().Add(rq.spec().AuthorizationCodeTTL.D())
	if codeExpires.After(r.ExpiresAt) {
		r.ExpiresAt = codeExpires // the exchange reads it
	}
	if err := s.p.records.PutAuthRequest(ctx, rq.tenantID, &r); err != nil {
		return oidc.ErrServerError().WithParent(err)
	}
	if issued || !r.Done || r.ServerID != rq.serverID {
		return oidc.ErrInvalidRequest().WithDescription("auth_request: a code was already issued, or the login is not complete")
	}
	family, err := grants.NewID()
	if err != nil {
		return err
	}
	c := &grants.Code{AuthRequestID: id, ServerID: rq.serverID, ClientID: r.ClientID, FamilyID: family, ExpiresAt: codeExpires}
	if err := s.p.records.PutCode(ctx, rq.tenantID, code, c); err != nil {
		return oidc.ErrServerError().WithParent(err)
	}
	return nil
}

// AuthRequestByCode finds the auth request of a code, without redeeming
// it (the token endpoint redeems it when it issues tokens, after the
// client, the PKCE verifier and the redirect_uri were checked). A code
// already redeemed is a replay: the tokens issued from it are revoked.
func (s *storage) AuthRequestByCode(ctx context.Context, code string) (op.AuthRequest, error) {
	rq, err := requestFrom(ctx)
	if err != nil {
		return nil, err
	}
	c, err := s.p.records.Code(ctx, rq.tenantID, code)
	if errors.Is(err, store.ErrNotFound) {
		if rerr := s.revokeReplayedCode(ctx, rq, code); rerr != nil {
			return nil, rerr
		}
		return nil, errors.New("code: unknown, expired or already used")
	}
	if err != nil {
		return nil, oidc.ErrServerError().WithParent(err)
	}
	if c.ServerID != rq.serverID {
		return nil, errors.New("code: unknown, expired or already used")
	}
	a, err := s.authRequest(ctx, c.AuthRequestID)
	if err != nil {
		return nil, err
	}
	a.code, a.familyID = code, c.FamilyID
	return a, nil
}

// revokeReplayedCode revokes the family of a code that was redeemed
// before (RFC 6749 §4.1.2); an unknown code revokes nothing.
func (s *storage) revokeReplayedCode(ctx context.Context, rq *request, code string) error {
	use, err := s.p.records.CodeUse(ctx, rq.tenantID, code)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil
	case err != nil:
		return oidc.ErrServerError().WithParent(err)
	case use.ServerID != rq.serverID:
		return nil
	}
	if err := s.p.records.RevokeFamily(ctx, s.p.store, rq.tenantID, use.FamilyID, grants.ReasonCodeReplay, use.FamilyExpiresAt); err != nil {
		return oidc.ErrServerError().WithParent(err)
	}
	s.p.log.Warn("oauth: authorization code replayed; its tokens are revoked", "tenant", rq.tenantID, "server", rq.serverID, "client", use.ClientID)
	return nil
}

// redeemCode consumes the code of a token exchange exactly once
// (TakeState) and records its use for replay detection.
func (s *storage) redeemCode(ctx context.Context, rq *request, a *authRequest) error {
	c, ok, err := s.p.records.TakeCode(ctx, rq.tenantID, a.code)
	if err != nil {
		return oidc.ErrServerError().WithParent(err)
	}
	if !ok {
		if err := s.revokeReplayedCode(ctx, rq, a.code); err != nil {
			return err
		}
		return oidc.ErrInvalidGrant().WithDescription("code: already used")
	}
	spec := rq.spec()
	use := &grants.CodeUse{ServerID: rq.serverID, ClientID: c.ClientID, FamilyID: c.FamilyID, UsedAt: s.p.now().UTC(),
		FamilyExpiresAt: s.p.now().Add(max(spec.AccessTokenTTL.D(), spec.RefreshTokenTTL.D(), spec.IDTokenTTL.D()))}
	if err := s.p.records.PutCodeUse(ctx, rq.tenantID, a.code, use); err != nil {
		return oidc.ErrServerError().WithParent(fmt.Errorf("record the use of a code: %w", err))
	}
	return nil
}

// DeleteAuthRequest deletes an auth request (after its tokens).
func (s *storage) DeleteAuthRequest(ctx context.Context, id string) error {
	rq, err := requestFrom(ctx)
	if err != nil {
		return err
	}
	return s.p.records.DeleteAuthRequest(ctx, rq.tenantID, id)
}
