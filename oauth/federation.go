package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/mail"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/google/uuid"
	zoidc "github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/oauth2"

	"github.com/gatehouse-dev/gatehouse/directory"
	"github.com/gatehouse-dev/gatehouse/internal/netguard"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/oauth/grants"
	"github.com/gatehouse-dev/gatehouse/store"
)

// Federation: the oidc login method signs a tenant user in at an
// upstream OpenID provider — an identity provider of the server's tenant,
// or of the system tenant (usable by every tenant). The login sends the
// browser to the provider's authorization endpoint with PKCE (S256), a
// state and a nonce; the provider sends it back to
// {issuer}/login/callback, which exchanges the code (with the sealed
// client secret, or as a public client with PKCE only), verifies the ID
// token with go-oidc (signature, iss = the provider's configured issuer,
// aud, expiry, nonce), reads userinfo when the provider has it, resolves
// the identity to a user of the server's tenant (resolveIdentity) and
// completes the login (completeUserLogin).
//
// The state is 256 random bits; the store keeps only its hash, for at
// most federationStateTTL (never past the auth request's login window),
// with the auth request, the hash of the browser's binding nonce, the
// method, the provider, the nonce and the PKCE verifier. The callback
// takes it once (TakeState): a replayed state, one of another server, or
// one brought by another browser issues nothing.
//
// Every request to a provider (discovery, JWKS, token, userinfo) goes
// through Provider.idpHTTP: internal/netguard's dialer (no loopback,
// private or link-local address unless Options.IdPAllowPrivateURLs),
// https only unless that option is set, bounded time and body sizes.

// pathLoginCallback is where upstream providers send the browser back.
const pathLoginCallback = "/login/callback"

// kindFederationStates holds the upstream states of logins under way
// (id = grants.Hash(state)).
const kindFederationStates = "oauth-federation-states"

// Bounds of federation.
const (
	// federationStateTTL is how long a browser has at the upstream
	// provider.
	federationStateTTL = 10 * time.Minute
	// idpDialTimeout bounds connecting to a provider; idpRequestTimeout
	// one request to it (headers and body); idpCallTimeout all of a
	// callback's requests together.
	idpDialTimeout    = 5 * time.Second
	idpRequestTimeout = 10 * time.Second
	idpCallTimeout    = 20 * time.Second
	// maxIdPResponseBytes caps every answer of a provider.
	maxIdPResponseBytes = 1 << 20
	// maxCachedIdPs bounds the cache of providers' configurations.
	maxCachedIdPs = 1024
	// maxExternalSubjectBytes bounds an upstream sub (OIDC: 255 ASCII).
	maxExternalSubjectBytes = 255
)

// idTokenAlgs are the signature algorithms accepted in upstream ID tokens
// of providers configured without discovery.
var idTokenAlgs = []string{oidc.RS256, oidc.RS384, oidc.RS512, oidc.ES256, oidc.ES384, oidc.ES512,
	oidc.PS256, oidc.PS384, oidc.PS512, oidc.EdDSA}

// reservedAuthParam reports whether extra_auth_params may not set an
// authorization request parameter: the federation sets those itself
// (directory.ReservedAuthParams), and a request object could replace
// them all.
func reservedAuthParam(k string) bool {
	return slices.Contains(directory.ReservedAuthParams, k) || k == "response_mode" || k == "request" || k == "request_uri"
}

// federationState is the record of one upstream authorization request.
type federationState struct {
	AuthRequestID string `json:"auth_request_id"`
	ServerID      string `json:"server_id"`
	// BrowserHash is the auth request's binding-nonce hash: the callback
	// must come from the browser that started the auth request.
	BrowserHash string `json:"browser_hash"`
	MethodID    string `json:"method_id"`
	IdPTenantID string `json:"idp_tenant_id"`
	IdPID       string `json:"idp_id"`
	IdPUID      string `json:"idp_uid"`
	Nonce       string `json:"nonce"`
	Verifier    string `json:"code_verifier"`
}

// identityProvider is an identity provider a login may use: of the
// server's tenant, or of the system tenant.
type identityProvider struct {
	tenantID string
	obj      *store.Typed[model.IdentityProviderSpec]
}

func (i *identityProvider) id() string                        { return i.obj.Meta.ID }
func (i *identityProvider) spec() *model.IdentityProviderSpec { return &i.obj.Spec }

// displayName is the provider's name for people.
func (i *identityProvider) displayName() string {
	if i.obj.Meta.Name != "" {
		return i.obj.Meta.Name
	}
	return i.obj.Meta.ID
}

// errNoIdP: no live, active identity provider of that id.
var errNoIdP = errors.New("no active identity provider of that id")

// identityProvider finds the live, active identity provider id of tenant
// tid, else of the system tenant (directory.IdentityProviderFor):
// errNoIdP when neither has one.
func (p *Provider) identityProvider(ctx context.Context, tid, id string) (*identityProvider, error) {
	if id == "" {
		return nil, errNoIdP
	}
	obj, err := directory.IdentityProviderFor(ctx, p.store, tid, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, errNoIdP
	case err != nil:
		return nil, fmt.Errorf("read identity provider %q: %w", id, err)
	case !obj.Spec.Active:
		return nil, errNoIdP
	}
	return &identityProvider{tenantID: obj.Meta.TenantID, obj: obj}, nil
}

// methodIdP is the active identity provider a federated method refers
// to: errNoIdP when it has none.
func (p *Provider) methodIdP(ctx context.Context, rq *request, m *model.AuthenticationMethod) (*identityProvider, error) {
	if m.OIDC == nil {
		return nil, errNoIdP
	}
	return p.identityProvider(ctx, rq.tenantID, m.OIDC.IdentityProviderID)
}

// upstreamOP is what the federation uses of one provider configuration:
// go-oidc's provider (endpoints, userinfo) and ID token verifier, whose
// key set caches the provider's JWKS (nil for github, which has no ID
// tokens).
type upstreamOP struct {
	provider *oidc.Provider
	verifier *oidc.IDTokenVerifier
}

// idpKey names one revision of an identity provider.
type idpKey struct {
	tenant, id, uid string
	rev             int64
}

// idpCache holds the upstreamOP of identity providers by revision: a
// changed provider is discovered again; past maxCachedIdPs it starts
// again from empty. A failed discovery is not kept.
type idpCache struct {
	mu      sync.Mutex
	entries map[idpKey]*upstreamOP
}

func newIdPCache() *idpCache { return &idpCache{entries: map[idpKey]*upstreamOP{}} }

// upstream is the upstreamOP of an identity provider: the explicit
// endpoints when authorization_endpoint, token_endpoint and jwks_uri are
// all set, else discovery at the issuer (go-oidc refuses a discovery
// document whose issuer is not the configured one), explicit endpoints
// overriding discovered ones.
func (p *Provider) upstream(ctx context.Context, idp *identityProvider) (*upstreamOP, error) {
	key := idpKey{idp.tenantID, idp.id(), idp.obj.Meta.UID, idp.obj.Meta.Revision}
	p.idps.mu.Lock()
	up := p.idps.entries[key]
	p.idps.mu.Unlock()
	if up != nil {
		return up, nil
	}
	s := idp.spec()
	cctx := oidc.ClientContext(context.Background(), p.idpHTTP)
	var prov *oidc.Provider
	switch {
	case s.Type == model.IdPGitHub: // OAuth 2.0 only: no ID tokens, the user from user_info_endpoint
		if s.AuthorizationEndpoint == "" || s.TokenEndpoint == "" || s.UserInfoEndpoint == "" {
			return nil, errors.New("a github identity provider needs authorization_endpoint, token_endpoint and user_info_endpoint")
		}
		up = &upstreamOP{provider: (&oidc.ProviderConfig{IssuerURL: s.Issuer, AuthURL: s.AuthorizationEndpoint,
			TokenURL: s.TokenEndpoint, UserInfoURL: s.UserInfoEndpoint}).NewProvider(cctx)}
	case s.AuthorizationEndpoint != "" && s.TokenEndpoint != "" && s.JWKSURI != "":
		prov = (&oidc.ProviderConfig{IssuerURL: s.Issuer, AuthURL: s.AuthorizationEndpoint, TokenURL: s.TokenEndpoint,
			UserInfoURL: s.UserInfoEndpoint, JWKSURL: s.JWKSURI, Algorithms: idTokenAlgs}).NewProvider(cctx)
	default:
		dctx, cancel := context.WithTimeout(ctx, idpRequestTimeout)
		defer cancel()
		discovered, err := oidc.NewProvider(oidc.ClientContext(dctx, p.idpHTTP), s.Issuer)
		if err != nil {
			return nil, fmt.Errorf("discovery of %s: %w", s.Issuer, err)
		}
		var doc struct {
			Algs []string `json:"id_token_signing_alg_values_supported"`
		}
		_ = discovered.Claims(&doc)
		cfg := oidc.ProviderConfig{IssuerURL: s.Issuer, AuthURL: discovered.Endpoint().AuthURL, TokenURL: discovered.Endpoint().TokenURL,
			UserInfoURL: discovered.UserInfoEndpoint(), Algorithms: doc.Algs}
		if err := discovered.Claims(&struct {
			JWKSURI *string `json:"jwks_uri"`
		}{&cfg.JWKSURL}); err != nil {
			return nil, fmt.Errorf("discovery of %s: %w", s.Issuer, err)
		}
		for dst, v := range map[*string]string{&cfg.AuthURL: s.AuthorizationEndpoint, &cfg.TokenURL: s.TokenEndpoint,
			&cfg.UserInfoURL: s.UserInfoEndpoint, &cfg.JWKSURL: s.JWKSURI} {
			if v != "" {
				*dst = v
			}
		}
		if cfg.AuthURL == "" || cfg.TokenURL == "" || cfg.JWKSURL == "" {
			return nil, fmt.Errorf("discovery of %s: no authorization_endpoint, token_endpoint or jwks_uri", s.Issuer)
		}
		prov = cfg.NewProvider(cctx)
	}
	if up == nil {
		up = &upstreamOP{provider: prov, verifier: prov.Verifier(&oidc.Config{ClientID: s.ClientID, Now: p.now})}
	}
	p.idps.mu.Lock()
	defer p.idps.mu.Unlock()
	if cur := p.idps.entries[key]; cur != nil {
		return cur, nil
	}
	if len(p.idps.entries) >= maxCachedIdPs {
		clear(p.idps.entries)
	}
	p.idps.entries[key] = up
	return up, nil
}

// idpSecret is an identity provider's client secret, "" for a public
// client (PKCE only).
func (p *Provider) idpSecret(idp *identityProvider) (string, error) {
	return directory.OpenIdPSecret(p.box, idp.tenantID, idp.id(), idp.spec().ClientSecretSealed)
}

// oauth2Config is the OAuth 2.0 client of an upstream provider.
func (up *upstreamOP) oauth2Config(idp *identityProvider, secret, redirect string) *oauth2.Config {
	s := idp.spec()
	scopes := slices.Clone(s.Scopes)
	switch {
	case len(scopes) > 0:
	case s.Type == model.IdPGitHub:
		scopes = []string{"read:user", "user:email"}
	default:
		scopes = slices.Clone(directory.DefaultIdPScopes)
	}
	if s.Type != model.IdPGitHub && !slices.Contains(scopes, oidc.ScopeOpenID) {
		scopes = append([]string{oidc.ScopeOpenID}, scopes...)
	}
	ep := up.provider.Endpoint()
	if secret == "" {
		ep.AuthStyle = oauth2.AuthStyleInParams // a public client sends its client_id only
	}
	return &oauth2.Config{ClientID: s.ClientID, ClientSecret: secret, Endpoint: ep, RedirectURL: redirect, Scopes: scopes}
}

// startFederation begins the login of auth request a (binding nonce
// nonce) by federated method m at its identity provider, passing on the
// auth request's login_hint.
func (p *Provider) startFederation(w http.ResponseWriter, r *http.Request, rq *request, a *authRequest, nonce string, m *model.AuthenticationMethod) {
	idp, err := p.methodIdP(r.Context(), rq, m)
	if err != nil {
		if !errors.Is(err, errNoIdP) {
			p.serverError(w, "read the identity provider", err)
			return
		}
		writeErrorPage(w, http.StatusServiceUnavailable, "method: login method "+strconv.Quote(m.ID)+
			"'s identity provider is not active or no longer exists; go back and choose another way to sign in, or ask the server's administrator.")
		return
	}
	p.federate(w, r, rq, a, nonce, m, idp, a.r.LoginHint)
}

// federate sends the browser of auth request a (binding nonce nonce) to
// identity provider idp for method m, with loginHint passed on (unless
// the provider's extra_auth_params set one).
func (p *Provider) federate(w http.ResponseWriter, r *http.Request, rq *request, a *authRequest, nonce string,
	m *model.AuthenticationMethod, idp *identityProvider, loginHint string) {
	ctx := r.Context()
	up, err := p.upstream(ctx, idp)
	if err != nil {
		p.log.Warn("oauth: an identity provider cannot be used", "tenant", rq.tenantID, "server", rq.serverID,
			"identity_provider", idp.id(), "error", err)
		writeErrorPage(w, http.StatusBadGateway, "The identity provider "+idp.displayName()+
			" cannot be reached or is not set up correctly; try again later, or go back and choose another way to sign in.")
		return
	}
	state, err := grants.NewSecret()
	if err != nil {
		p.serverError(w, "start the sign-in at the identity provider", err)
		return
	}
	upNonce, err := grants.NewSecret()
	if err != nil {
		p.serverError(w, "start the sign-in at the identity provider", err)
		return
	}
	verifier := oauth2.GenerateVerifier()
	ttl := min(federationStateTTL, a.r.ExpiresAt.Sub(p.now()))
	if ttl < time.Second {
		writeErrorPage(w, http.StatusBadRequest, "auth_request: expired; go back to the application and sign in again.")
		return
	}
	fs := federationState{AuthRequestID: a.r.ID, ServerID: rq.serverID, BrowserHash: grants.Hash(nonce), MethodID: m.ID,
		IdPTenantID: idp.tenantID, IdPID: idp.id(), IdPUID: idp.obj.Meta.UID, Nonce: upNonce, Verifier: verifier}
	b, err := json.Marshal(fs)
	if err != nil {
		p.serverError(w, "start the sign-in at the identity provider", err)
		return
	}
	if err := p.store.PutStateTTL(ctx, kindFederationStates, rq.tenantID, grants.Hash(state), b, ttl); err != nil {
		p.serverError(w, "start the sign-in at the identity provider", err)
		return
	}
	opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(verifier), oidc.Nonce(upNonce)}
	extra := idp.spec().ExtraAuthParams
	for _, k := range slices.Sorted(maps.Keys(extra)) {
		if !reservedAuthParam(k) {
			opts = append(opts, oauth2.SetAuthURLParam(k, extra[k]))
		}
	}
	if _, set := extra["login_hint"]; !set && loginHint != "" {
		opts = append(opts, oauth2.SetAuthURLParam("login_hint", loginHint))
	}
	if _, set := extra["prompt"]; !set && slices.Contains(a.r.Prompt, zoidc.PromptLogin) {
		opts = append(opts, oauth2.SetAuthURLParam("prompt", "login")) // the client asked for a new login
	}
	conf := up.oauth2Config(idp, "", rq.issuer+pathLoginCallback)
	http.Redirect(w, r, conf.AuthCodeURL(state, opts...), http.StatusSeeOther)
}

// loginCallback is GET {issuer}/login/callback?code&state (or ?error&state),
// where an upstream provider sends the browser back.
func (p *Provider) loginCallback(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		writeErrorPage(w, http.StatusMethodNotAllowed, "The sign-in callback takes GET.")
		return
	}
	ctx := r.Context()
	rq, _ := requestFrom(ctx)
	q := r.URL.Query()
	state := q.Get("state")
	if state == "" || len(state) > maxStateBytes {
		writeErrorPage(w, http.StatusBadRequest, "state: missing or too long; go back to the application and sign in again.")
		return
	}
	// Read, check the browser, then take: a state that leaked to another
	// browser cannot be burnt by it, and only one callback takes it.
	stateID := grants.Hash(state)
	fs, err := p.federationState(ctx, rq, stateID)
	if err != nil {
		p.serverError(w, "read the sign-in's state", err)
		return
	}
	if fs == nil {
		writeErrorPage(w, http.StatusBadRequest, "state: unknown, expired or already used; go back to the application and sign in again.")
		return
	}
	a, err := p.storage.authRequest(ctx, fs.AuthRequestID)
	if err != nil {
		p.authRequestErrorPage(w, err)
		return
	}
	nonce := browserNonce(r, a)
	if nonce == "" || grants.Hash(nonce) != fs.BrowserHash {
		refuseOtherBrowser(w)
		return
	}
	if _, ok, err := p.store.TakeState(ctx, kindFederationStates, rq.tenantID, stateID); err != nil || !ok {
		if err != nil {
			p.serverError(w, "read the sign-in's state", err)
			return
		}
		writeErrorPage(w, http.StatusBadRequest, "state: unknown, expired or already used; go back to the application and sign in again.")
		return
	}
	if a.r.Done {
		http.Redirect(w, r, op.AuthCallbackURL(p.op)(ctx, a.r.ID), http.StatusFound)
		return
	}
	if upErr := q.Get("error"); upErr != "" {
		p.denyLogin(w, r, rq, a, "the identity provider did not sign the user in ("+printableText(upErr, 64)+")")
		return
	}
	code := q.Get("code")
	if code == "" {
		writeErrorPage(w, http.StatusBadRequest, "code: missing from the identity provider's answer; go back to the application and sign in again.")
		return
	}
	m := enabledMethod(rq.spec(), fs.MethodID)
	idp, err := p.identityProvider(ctx, rq.tenantID, fs.IdPID)
	switch {
	case err != nil && !errors.Is(err, errNoIdP):
		p.serverError(w, "read the identity provider", err)
		return
	case m == nil || !federated(m) || m.OIDC.IdentityProviderID != fs.IdPID,
		err != nil, idp.tenantID != fs.IdPTenantID, idp.obj.Meta.UID != fs.IdPUID:
		writeErrorPage(w, http.StatusBadRequest, "The sign-in method or its identity provider changed during the sign-in; go back to the application and sign in again.")
		return
	}
	ext, err := p.upstreamIdentity(ctx, rq, idp, code, fs)
	if err != nil {
		p.log.Warn("oauth: an identity provider's sign-in was refused", "tenant", rq.tenantID, "server", rq.serverID,
			"identity_provider", idp.id(), "error", err)
		writeErrorPage(w, http.StatusBadGateway, "The sign-in at "+idp.displayName()+" could not be accepted: "+err.Error()+
			". Nothing was issued; go back to the application and sign in again.")
		return
	}
	user, denial, err := p.resolveIdentity(ctx, rq, a, idp, ext)
	if err != nil {
		p.serverError(w, "resolve the signed-in identity", err)
		return
	}
	if denial != "" {
		p.denyLogin(w, r, rq, a, denial)
		return
	}
	p.completeUserLogin(w, r, rq, a, user, m.ID, ext.AMR, federatedAuthContext(ext, idp, m))
}

// federationState reads the upstream state of id of the request's server
// (nil when there is none).
func (p *Provider) federationState(ctx context.Context, rq *request, id string) (*federationState, error) {
	e, err := p.store.GetState(ctx, kindFederationStates, rq.tenantID, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var fs federationState
	if err := json.Unmarshal(e.Value, &fs); err != nil {
		return nil, fmt.Errorf("decode a federation state: %w", err)
	}
	if fs.ServerID != rq.serverID {
		return nil, nil
	}
	return &fs, nil
}

// externalIdentity is who the upstream provider signed in.
type externalIdentity struct {
	Subject           string
	Email             string
	EmailVerified     bool
	GivenName         string
	FamilyName        string
	PreferredUsername string
	Locale            string
	AMR               []string
	// Claims are the ID token's claims, with userinfo's where the ID token
	// has none of that name.
	Claims map[string]any
}

// upstreamError is a refusal of the provider's answer; its text is shown
// on the error page (it holds no secret).
type upstreamError struct {
	msg string
	err error
}

func (e *upstreamError) Error() string {
	if e.err == nil {
		return e.msg
	}
	return e.msg + ": " + e.err.Error()
}
func (e *upstreamError) Unwrap() error { return e.err }

// upstreamIdentity exchanges the upstream code and verifies what comes
// back: the ID token (go-oidc: signature, iss equal to the provider's
// issuer, aud, expiry), its nonce, its at_hash when present, and
// userinfo (same sub) when the provider has that endpoint.
func (p *Provider) upstreamIdentity(ctx context.Context, rq *request, idp *identityProvider, code string, fs *federationState) (*externalIdentity, error) {
	up, err := p.upstream(ctx, idp)
	if err != nil {
		return nil, &upstreamError{"the identity provider cannot be used", err}
	}
	secret, err := p.idpSecret(idp)
	if err != nil {
		return nil, &upstreamError{"the identity provider's client secret cannot be opened", err}
	}
	ctx, cancel := context.WithTimeout(ctx, idpCallTimeout)
	defer cancel()
	ctx = oidc.ClientContext(ctx, p.idpHTTP)
	tok, err := up.oauth2Config(idp, secret, rq.issuer+pathLoginCallback).Exchange(ctx, code, oauth2.VerifierOption(fs.Verifier))
	if err != nil {
		return nil, &upstreamError{"the code exchange failed", scrubTokenError(err)}
	}
	if up.verifier == nil {
		return p.githubIdentity(ctx, up, tok)
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return nil, &upstreamError{msg: "the token response has no ID token"}
	}
	idt, err := up.verifier.Verify(ctx, raw)
	if err != nil {
		return nil, &upstreamError{"the ID token was refused", err}
	}
	if idt.Nonce != fs.Nonce {
		return nil, &upstreamError{msg: "the ID token's nonce is not the one sent"}
	}
	if idt.AccessTokenHash != "" {
		if err := idt.VerifyAccessToken(tok.AccessToken); err != nil {
			return nil, &upstreamError{"the ID token's at_hash does not match the access token", err}
		}
	}
	if idt.Subject == "" || len(idt.Subject) > maxExternalSubjectBytes {
		return nil, &upstreamError{msg: "the ID token's sub is empty or longer than 255 bytes"}
	}
	claims := map[string]any{}
	if err := idt.Claims(&claims); err != nil {
		return nil, &upstreamError{"the ID token's claims cannot be read", err}
	}
	if up.provider.UserInfoEndpoint() != "" && tok.AccessToken != "" {
		info, err := up.provider.UserInfo(ctx, oauth2.StaticTokenSource(tok))
		if err != nil {
			return nil, &upstreamError{"userinfo failed", err}
		}
		if info.Subject != idt.Subject {
			return nil, &upstreamError{msg: "userinfo's sub is not the ID token's"}
		}
		more := map[string]any{}
		if err := info.Claims(&more); err != nil {
			return nil, &upstreamError{"userinfo's claims cannot be read", err}
		}
		for k, v := range more {
			if _, ok := claims[k]; !ok {
				claims[k] = v
			}
		}
	}
	ext := newExternalIdentity(idt.Subject, claims)
	if amr, ok := claims["amr"].([]any); ok {
		for _, v := range amr {
			if s, ok := v.(string); ok && s != "" && len(ext.AMR) < 16 {
				ext.AMR = append(ext.AMR, printableText(s, 32))
			}
		}
	}
	if len(ext.AMR) == 0 {
		ext.AMR = []string{"fed"}
	}
	return ext, nil
}

// newExternalIdentity reads the identity's standard claims.
func newExternalIdentity(sub string, claims map[string]any) *externalIdentity {
	return &externalIdentity{Subject: sub, Claims: claims,
		Email: claimString(claims, "email"), EmailVerified: claimBool(claims, "email_verified"),
		GivenName: claimString(claims, "given_name"), FamilyName: claimString(claims, "family_name"),
		PreferredUsername: claimString(claims, "preferred_username"), Locale: claimString(claims, "locale")}
}

// githubIdentity is the identity of a github provider's login: the
// user_info_endpoint's answer (GET https://api.github.com/user), sub its
// numeric id (directory.GitHubSubject). Its email is never taken as
// verified (that answer does not say), so link_by_email does not apply.
func (p *Provider) githubIdentity(ctx context.Context, up *upstreamOP, tok *oauth2.Token) (*externalIdentity, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, up.provider.UserInfoEndpoint(), nil)
	if err != nil {
		return nil, &upstreamError{"user_info_endpoint", err}
	}
	req.Header.Set("Accept", "application/json")
	tok.SetAuthHeader(req)
	res, err := p.idpHTTP.Do(req)
	if err != nil {
		return nil, &upstreamError{"user_info_endpoint failed", err}
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, &upstreamError{"user_info_endpoint failed", err}
	}
	if res.StatusCode != http.StatusOK {
		return nil, &upstreamError{msg: fmt.Sprintf("user_info_endpoint answered HTTP %d", res.StatusCode)}
	}
	sub, err := directory.GitHubSubject(body)
	if err != nil {
		return nil, &upstreamError{"user_info_endpoint", err}
	}
	claims := map[string]any{}
	if err := json.Unmarshal(body, &claims); err != nil {
		return nil, &upstreamError{"user_info_endpoint", err}
	}
	ext := newExternalIdentity(sub, claims)
	ext.EmailVerified = false
	if login := claimString(claims, "login"); ext.PreferredUsername == "" {
		ext.PreferredUsername = login
	}
	ext.AMR = []string{"fed"}
	return ext, nil
}

// scrubTokenError keeps the upstream's error code of a failed exchange
// and drops its body (which could echo what was sent).
func scrubTokenError(err error) error {
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		return err
	}
	desc := re.ErrorCode
	if desc == "" && re.Response != nil {
		desc = fmt.Sprintf("HTTP %d", re.Response.StatusCode)
	}
	return errors.New("the token endpoint answered " + printableText(desc, 64))
}

func claimString(c map[string]any, k string) string {
	s, _ := c[k].(string)
	return strings.TrimSpace(s)
}

// claimBool reads a boolean claim (some providers send "true").
func claimBool(c map[string]any, k string) bool {
	switch v := c[k].(type) {
	case bool:
		return v
	case string:
		return v == "true"
	}
	return false
}

// printableText is s cut to n bytes with everything but printable ASCII
// replaced (upstream text shown on a page or in an error description).
func printableText(s string, n int) string {
	b := []byte(s)
	if len(b) > n {
		b = b[:n]
	}
	for i, c := range b {
		if c < 0x20 || c > 0x7e {
			b[i] = '?'
		}
	}
	return string(b)
}

// resolveIdentity finds the user of the server's tenant the upstream
// identity signs in as — only ever a user of rq.tenantID, also through a
// system-tenant identity provider: (1) the user mapped to (provider,
// sub); else (2) with the provider's link_by_email and a verified email,
// the tenant's user of that email, mapped to the identity from now on;
// else (3) with the server's auto_provision_users, a new active user
// from the claims, mapped; else the login is denied. A user who is not
// active is denied too. denial is the access_denied description ("" when
// user is set); err is a store failure.
func (p *Provider) resolveIdentity(ctx context.Context, rq *request, a *authRequest, idp *identityProvider,
	ext *externalIdentity) (user *store.Typed[model.UserSpec], denial string, err error) {
	// An auth request started from an invitation's accept link resolves
	// the identity to the invitation's user instead (invitations.go).
	if a.r.InvitationKeyHash != "" {
		return p.acceptInvitation(ctx, rq.tenantID, a.r.InvitationKeyHash, federatedInvitee(idp, ext))
	}
	tid := rq.tenantID
	user, err = directory.UserByMapping(ctx, p.store, tid, idp.id(), ext.Subject)
	switch {
	case err == nil:
		return activeUser(user)
	case !errors.Is(err, store.ErrNotFound):
		return nil, "", fmt.Errorf("find the user mapped to the identity: %w", err)
	}
	if _, err := directory.IdentityMappings.GetByName(ctx, p.store, tid, model.IdentityMappingName(idp.id(), ext.Subject)); err == nil {
		return nil, "the identity is mapped to a user that no longer exists", nil
	}
	actor := "identity-provider:" + idp.id()
	if idp.spec().LinkByEmail && ext.EmailVerified && ext.Email != "" {
		user, err = directory.UserByEmail(ctx, p.store, tid, ext.Email)
		switch {
		case err == nil && !user.Spec.EmailVerified:
			// Both sides must have verified the address: else whoever made
			// the local user first (an unverified auto-provisioned one)
			// would receive the real owner's login (account pre-hijack).
			return nil, "the tenant's user of this email has no verified email; an administrator maps the identity", nil
		case err == nil:
			linked, err := p.mapIdentity(ctx, tid, user.Meta.ID, idp, ext, actor)
			if err != nil {
				return nil, "", err
			}
			if !linked {
				return nil, "the user of this email is mapped to another identity at this identity provider", nil
			}
			return activeUser(user)
		case !errors.Is(err, store.ErrNotFound):
			return nil, "", fmt.Errorf("find the user by email: %w", err)
		}
	}
	if !rq.spec().AutoProvisionUsers {
		return nil, "no user of this tenant is mapped to this identity", nil
	}
	if addr, perr := mail.ParseAddress(ext.Email); ext.Email == "" || perr != nil || addr.Address != ext.Email || len(ext.Email) > 254 {
		return nil, "the identity provider gave no usable email, which a new user needs", nil
	}
	return p.provisionUser(ctx, tid, idp, ext, actor)
}

// activeUser lets only active users sign in.
func activeUser(u *store.Typed[model.UserSpec]) (*store.Typed[model.UserSpec], string, error) {
	if u.Spec.State != model.UserActive {
		return nil, "the user is " + string(u.Spec.State) + " in this tenant", nil
	}
	return u, "", nil
}

// mapIdentity maps the identity to user uid (audited): false when the
// user has another identity at this provider (one per provider) or the
// identity was mapped meanwhile to another user.
func (p *Provider) mapIdentity(ctx context.Context, tid, uid string, idp *identityProvider, ext *externalIdentity, actor string) (bool, error) {
	linked := false
	_, err := p.store.Update(ctx, func(ctx context.Context, tx store.Tx) error {
		linked = false
		existing, err := directory.IdentityMappings.ListAll(ctx, tx, store.Query{TenantID: tid, ParentID: uid})
		if err != nil {
			return fmt.Errorf("list the user's mappings: %w", err)
		}
		for _, m := range existing {
			if m.Spec.IdentityProviderID == idp.id() {
				return nil
			}
		}
		m, err := directory.AddMapping(ctx, tx, tid, uid, idp.id(), ext.Subject)
		if errors.Is(err, directory.ErrMappingTaken) {
			return nil
		}
		if err != nil {
			return err
		}
		linked = true
		return tx.AppendEvent(ctx, &store.Event{TenantID: tid, Actor: actor, Action: "create", Kind: model.KindIdentityMapping, ObjectID: m.Meta.ID})
	})
	if err != nil {
		return false, fmt.Errorf("map the identity to user %q: %w", uid, err)
	}
	return linked, nil
}

// provisionUser creates an active user from the claims and maps the
// identity to it, in one transaction (audited).
func (p *Provider) provisionUser(ctx context.Context, tid string, idp *identityProvider, ext *externalIdentity, actor string) (*store.Typed[model.UserSpec], string, error) {
	u := &store.Typed[model.UserSpec]{Meta: store.Object{TenantID: tid, ID: uuid.NewString(), CreatedBy: actor},
		Spec: model.UserSpec{Email: model.NormalizeEmail(ext.Email), EmailVerified: ext.EmailVerified,
			GivenName: printableUnicode(ext.GivenName, 256), FamilyName: printableUnicode(ext.FamilyName, 256),
			PreferredUsername: printableUnicode(ext.PreferredUsername, 256), Locale: printableUnicode(ext.Locale, 35),
			State: model.UserActive}}
	denial := ""
	_, err := p.store.Update(ctx, func(ctx context.Context, tx store.Tx) error {
		denial = ""
		err := directory.CreateUser(ctx, tx, u)
		if errors.Is(err, directory.ErrEmailTaken) || errors.Is(err, directory.ErrSubjectTaken) {
			denial = "another user of this tenant has this email; an administrator can map the identity to it"
			return errDenied
		}
		if err != nil {
			return err
		}
		m, err := directory.AddMapping(ctx, tx, tid, u.Meta.ID, idp.id(), ext.Subject)
		if errors.Is(err, directory.ErrMappingTaken) {
			denial = "the identity was mapped to another user meanwhile; sign in again"
			return errDenied
		}
		if err != nil {
			return err
		}
		if err := tx.AppendEvent(ctx, &store.Event{TenantID: tid, Actor: actor, Action: "create", Kind: model.KindUser, ObjectID: u.Meta.ID}); err != nil {
			return err
		}
		return tx.AppendEvent(ctx, &store.Event{TenantID: tid, Actor: actor, Action: "create", Kind: model.KindIdentityMapping, ObjectID: m.Meta.ID})
	})
	switch {
	case errors.Is(err, errDenied):
		return nil, denial, nil
	case err != nil:
		return nil, "", fmt.Errorf("create a user for the identity: %w", err)
	}
	return u, "", nil
}

// errDenied rolls back a transaction whose outcome is a denial.
var errDenied = errors.New("denied")

// printableUnicode is s without control characters, cut to n bytes (at
// a rune boundary).
func printableUnicode(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, s)
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }

// protocolClaims are the ID token claims about the token itself, not the
// user: they are not put into the authentication context.
var protocolClaims = []string{"aud", "exp", "iat", "nbf", "nonce", "at_hash", "c_hash", "jti", "azp", "sid", "auth_time"}

// federatedAuthContext is the authentication context of a federated
// login: the upstream claims (without the token's own), with idp (the
// provider's id, issuer and the upstream sub), then the provider's
// mappings and the method's applied (source: a dotted path into the
// upstream claims, target: a dotted path into the context). The acr of
// the upstream login stays as acr.
func federatedAuthContext(ext *externalIdentity, idp *identityProvider, m *model.AuthenticationMethod) map[string]any {
	out := maps.Clone(ext.Claims)
	for _, k := range protocolClaims {
		delete(out, k)
	}
	delete(out, "iss")
	delete(out, "sub")
	out["idp"] = map[string]any{"id": idp.id(), "issuer": idp.spec().Issuer, "subject": ext.Subject}
	for _, maps := range [][]model.AuthMapping{idp.spec().Mappings, m.Mappings} {
		for _, mp := range maps {
			if v, ok := lookupPath(ext.Claims, mp.Source); ok {
				setPath(out, mp.Target, v)
			}
		}
	}
	return out
}

// setPath sets a dotted path in m, making the objects on the way (a
// value that is not an object on the way is replaced).
func setPath(m map[string]any, path string, v any) {
	parts := strings.Split(path, ".")
	cur := m
	for _, part := range parts[:len(parts)-1] {
		next, ok := cur[part].(map[string]any)
		if !ok {
			next = map[string]any{}
			cur[part] = next
		}
		cur = next
	}
	cur[parts[len(parts)-1]] = v
}

// newIdPHTTPClient is the client of every request to an identity
// provider: netguard's dialer (allowPrivate: loopback and private
// addresses too), https only unless allowPrivate, bounded connect,
// header and total time, at most 3 redirects, bodies capped at
// maxIdPResponseBytes, no proxy from the environment.
func newIdPHTTPClient(allowPrivate bool) *http.Client {
	tr := &http.Transport{
		DialContext:            netguard.Dialer(idpDialTimeout, allowPrivate).DialContext,
		TLSHandshakeTimeout:    idpDialTimeout,
		ResponseHeaderTimeout:  idpRequestTimeout,
		MaxResponseHeaderBytes: 64 << 10,
		IdleConnTimeout:        90 * time.Second,
		MaxIdleConnsPerHost:    4,
		ForceAttemptHTTP2:      true,
	}
	return &http.Client{
		Transport: &idpTransport{base: tr, allowPlain: allowPrivate},
		Timeout:   idpRequestTimeout,
		CheckRedirect: func(_ *http.Request, via []*http.Request) error {
			if len(via) >= 3 {
				return errors.New("more than 3 redirects")
			}
			return nil
		},
	}
}

// idpTransport refuses plain http (unless allowPlain) and caps bodies.
type idpTransport struct {
	base       http.RoundTripper
	allowPlain bool
}

func (t *idpTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "https" && !(t.allowPlain && req.URL.Scheme == "http") {
		return nil, fmt.Errorf("identity provider URL %s: https is required", (&url.URL{Scheme: req.URL.Scheme, Host: req.URL.Host, Path: req.URL.Path}).String())
	}
	res, err := t.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	res.Body = &cappedBody{rc: res.Body, left: maxIdPResponseBytes}
	return res, nil
}

// cappedBody fails a read past its cap.
type cappedBody struct {
	rc   io.ReadCloser
	left int64
}

func (b *cappedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		var one [1]byte
		if n, _ := b.rc.Read(one[:]); n > 0 {
			return 0, fmt.Errorf("the identity provider's answer is larger than %d bytes", maxIdPResponseBytes)
		}
		return 0, io.EOF
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *cappedBody) Close() error { return b.rc.Close() }
