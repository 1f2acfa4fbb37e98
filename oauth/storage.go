package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/oauth/clientauth"
	"github.com/gatehouse-dev/gatehouse/store"
)

// storage is the one op.Storage of the provider. zitadel finds optional
// features by type assertion on this value, so it implements all of them
// itself (no wrapper may hide one — WAVE2 §2.7); storage_test.go asserts
// the set. Its methods read the tenant and server from the request
// context (request) and the Gatehouse objects and runtime records from
// the store.
type storage struct {
	p *Provider
}

// The optional interfaces implemented, and (storage_test.go) those
// deliberately not: op.TokenExchangeStorage, op.DeviceAuthorizationStorage,
// op.JWTProfileTokenStorage.
var (
	_ op.Storage                        = (*storage)(nil)
	_ op.ClientCredentialsStorage       = (*storage)(nil)
	_ op.CanSetUserinfoFromRequest      = (*storage)(nil)
	_ op.CanGetPrivateClaimsFromRequest = (*storage)(nil)
	_ op.CanTerminateSessionFromRequest = (*storage)(nil)
)

var (
	clientRepo = store.Repo[model.ClientSpec]{Kind: model.KindClient}
	scopeRepo  = store.Repo[model.ScopeSpec]{Kind: model.KindScope}
	claimRepo  = store.Repo[model.ClaimSpec]{Kind: model.KindClaim}
)

// errUnknownClient: no client of that id at the request's server.
var errUnknownClient = errors.New("client_id: unknown client")

// client reads a client of the request's server; a client of another
// server (or tenant) does not exist here. model.ConsoleClientID is the
// built-in client of admin servers (console.go), unknown elsewhere.
func (s *storage) client(ctx context.Context, id string) (*client, error) {
	rq, err := requestFrom(ctx)
	if err != nil {
		return nil, oidc.ErrServerError().WithParent(err)
	}
	if id == "" || !model.ValidObjectID(id) {
		return nil, errUnknownClient
	}
	var t *store.Typed[model.ClientSpec]
	if id == model.ConsoleClientID {
		// Built in on admin servers (console.go); never read from the
		// store, so no stored client can stand in for it.
		if t = s.p.consoleClient(rq); t == nil {
			return nil, errUnknownClient
		}
	} else if id == invitationClientID {
		// Built in on default servers (invitations.go), never stored.
		if t = s.p.invitationClient(rq); t == nil {
			return nil, errUnknownClient
		}
	} else {
		t, err = rq.cfg.client(ctx, id)
		switch {
		case errors.Is(err, store.ErrNotFound):
			return nil, errUnknownClient
		case err != nil:
			return nil, oidc.ErrServerError().WithParent(fmt.Errorf("read client %s/%s: %w", rq.tenantID, id, err))
		}
	}
	scopes, err := rq.cfg.serverScopes(ctx)
	if err != nil {
		return nil, oidc.ErrServerError().WithParent(err)
	}
	return newClient(rq, t, scopes), nil
}

// GetClientByClientID returns a client of the request's server.
func (s *storage) GetClientByClientID(ctx context.Context, clientID string) (op.Client, error) {
	return s.client(ctx, clientID)
}

// AuthorizeClientIDSecret checks a confidential client's secret (current,
// or previous within its grace period; constant time).
func (s *storage) AuthorizeClientIDSecret(ctx context.Context, clientID, secret string) error {
	_, err := s.authenticate(ctx, clientID, secret)
	return err
}

// errClientAuth: unknown client, public client or wrong secret (one
// answer for all).
var errClientAuth = errors.New("client_id: client authentication failed")

func (s *storage) authenticate(ctx context.Context, clientID, secret string) (*client, error) {
	c, err := s.client(ctx, clientID)
	if err != nil {
		var oe *oidc.Error
		if errors.As(err, &oe) && oe.ErrorType == oidc.ServerError {
			return nil, err
		}
		return nil, errClientAuth
	}
	if c.spec.Public || c.spec.TokenEndpointAuthMethod == model.AuthMethodPrivateKeyJWT ||
		!clientauth.ClientSecretValid(c.spec, secret, s.p.now()) {
		return nil, errClientAuth
	}
	return c, nil
}

// ClientCredentials authenticates a client of the client_credentials
// grant: by its secret, or (zitadel passes no assertion here) by the
// client assertion the handler verified (assertionReplayed).
func (s *storage) ClientCredentials(ctx context.Context, clientID, secret string) (op.Client, error) {
	if id := assertedClient(ctx); id != "" && secret == "" && (clientID == "" || clientID == id) {
		c, err := s.client(ctx, id)
		if err != nil || c.spec.TokenEndpointAuthMethod != model.AuthMethodPrivateKeyJWT {
			return nil, errClientAuth
		}
		return s.activeAccountClient(ctx, c)
	}
	c, err := s.authenticate(ctx, clientID, secret)
	if err != nil {
		return nil, err
	}
	return s.activeAccountClient(ctx, c)
}

// assertedClient is the client the request's client assertion
// authenticated, or "".
func assertedClient(ctx context.Context) string {
	if rq, err := requestFrom(ctx); err == nil {
		return rq.assertedClient
	}
	return ""
}

// ClientCredentialsTokenRequest is the token request of a machine: the
// subject is the client id; every requested scope must be allowed.
func (s *storage) ClientCredentialsTokenRequest(ctx context.Context, clientID string, scopes []string) (op.TokenRequest, error) {
	if clientID == "" {
		clientID = assertedClient(ctx)
	}
	c, err := s.client(ctx, clientID)
	if err != nil {
		return nil, oidc.ErrInvalidClient().WithDescription("client_id: unknown client")
	}
	return s.clientCredentialsRequest(ctx, c, scopes)
}

// clientCredentialsRequest is the token request of client c for scopes:
// of the token endpoint's client_credentials grant, and of the long-lived
// token of a service account (MintServiceAccountToken).
func (s *storage) clientCredentialsRequest(ctx context.Context, c *client, scopes []string) (*clientRequest, error) {
	for _, sc := range scopes {
		if sc == oidc.ScopeOpenID || sc == oidc.ScopeOfflineAccess || !c.allowsScope(sc) {
			return nil, oidc.ErrInvalidScope().WithDescription("scope: %s is not allowed for this client", printableScope(sc))
		}
	}
	r := &clientRequest{client: c, scopes: scopes}
	rq, err := requestFrom(ctx)
	if err != nil {
		return nil, oidc.ErrServerError().WithParent(err)
	}
	if r.account, err = s.p.accountOf(ctx, rq, c); err != nil {
		if accountRefused(err) {
			return nil, oidc.ErrInvalidClient().WithDescription("client_id: %s", err.Error())
		}
		return nil, oidc.ErrServerError().WithParent(err)
	}
	if r.account != nil {
		r.ttl = r.account.Spec.TokenDuration.D()
	}
	return r, nil
}

// GetKeyByIDAndClientID returns a public key of a private_key_jwt client
// (its jwks), for client assertions.
func (s *storage) GetKeyByIDAndClientID(ctx context.Context, keyID, clientID string) (*jose.JSONWebKey, error) {
	c, err := s.client(ctx, clientID)
	if err != nil {
		return nil, err
	}
	if c.spec.TokenEndpointAuthMethod != model.AuthMethodPrivateKeyJWT || len(c.spec.JWKS) == 0 {
		return nil, errors.New("client_id: not a private_key_jwt client with keys")
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(c.spec.JWKS, &set); err != nil {
		return nil, fmt.Errorf("client %s: jwks: %w", clientID, err)
	}
	for _, k := range set.Key(keyID) {
		if k.IsPublic() && (k.Use == "" || k.Use == "sig") {
			return &k, nil
		}
	}
	return nil, errors.New("client_assertion: unknown key id")
}

// ValidateJWTProfileScopes refuses: the JWT bearer grant (RFC 7523) is
// not offered (the token endpoint refuses it before this).
func (s *storage) ValidateJWTProfileScopes(context.Context, string, []string) ([]string, error) {
	return nil, oidc.ErrUnsupportedGrantType().WithDescription("grant_type: the JWT bearer grant is not supported")
}

// Health pings the store.
func (s *storage) Health(ctx context.Context) error { return s.p.store.Ping(ctx) }

// printableScope is a scope for an error description (RFC 6749 limits
// its characters), or a placeholder.
func printableScope(s string) string {
	if len(s) == 0 || len(s) > 128 {
		return "(a requested scope)"
	}
	for _, r := range s {
		if r < 0x21 || r > 0x7e || r == '"' || r == '\\' {
			return "(a requested scope)"
		}
	}
	return s
}
