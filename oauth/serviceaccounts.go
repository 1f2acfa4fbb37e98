package oauth

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/store"
)

// Service accounts (the directory, issue F) are confidential
// client_credentials clients of their tenant's default server whose
// ClientSpec.ServiceAccountID names the account. Their tokens have sub =
// the service account id and gh_sub_type "service_account", live the
// account's token_duration, and are issued only while the account is
// active and not past its expiry: the client of a suspended, expired or
// deleted account fails client authentication (invalid_client).

var serviceAccountRepo = store.Repo[model.ServiceAccountSpec]{Kind: model.KindServiceAccount}

// errNoAccount and errAccountInactive: the client's service account is
// gone (or names another client), or suspended or expired.
var (
	errNoAccount       = errors.New("its service account does not exist")
	errAccountInactive = errors.New("its service account is suspended or expired")
)

// accountOf is the service account whose client c is: nil for any other
// client; errNoAccount or errAccountInactive when the account cannot
// have tokens; any other error is the store's.
func (p *Provider) accountOf(ctx context.Context, rq *request, c *client) (*store.Typed[model.ServiceAccountSpec], error) {
	id := c.spec.ServiceAccountID
	if id == "" {
		return nil, nil
	}
	a, err := serviceAccountRepo.Get(ctx, p.store, rq.tenantID, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, errNoAccount
	case err != nil:
		return nil, fmt.Errorf("read service account %s/%s: %w", rq.tenantID, id, err)
	case a.Spec.ClientID != c.id:
		return nil, errNoAccount
	case a.Spec.State != model.ServiceAccountActive, a.Spec.Expiry != nil && !p.now().Before(*a.Spec.Expiry):
		return nil, errAccountInactive
	}
	return a, nil
}

// accountRefused reports whether err is accountOf's refusal (rather than
// a store failure).
func accountRefused(err error) bool {
	return errors.Is(err, errNoAccount) || errors.Is(err, errAccountInactive)
}

// activeAccountClient is c, authenticated, unless it is the client of a
// service account that cannot have tokens: then client authentication
// fails, with the one answer of every failed authentication.
func (s *storage) activeAccountClient(ctx context.Context, c *client) (*client, error) {
	rq, err := requestFrom(ctx)
	if err != nil {
		return nil, oidc.ErrServerError().WithParent(err)
	}
	if _, err := s.p.accountOf(ctx, rq, c); err != nil {
		if accountRefused(err) {
			return nil, errClientAuth
		}
		return nil, oidc.ErrServerError().WithParent(err)
	}
	return c, nil
}

// MintServiceAccountToken issues an access token for the service account
// whose client is clientID, at server serverID of tenant tid, valid for
// ttl: the long-lived token a service account's create or rotation
// returns (admin.ServiceAccountTokenMinter). It is made exactly as the
// token endpoint makes a client_credentials token — the same request
// (clientCredentialsRequest), the same zitadel function
// (op.CreateClientCredentialsTokenResponse), so the same claims, signing
// key and record (introspection, revocation) — with only its lifetime
// changed. It returns the token and its expiry.
func (p *Provider) MintServiceAccountToken(ctx context.Context, tid, serverID, clientID string, ttl time.Duration) (string, time.Time, error) {
	if ttl <= 0 {
		return "", time.Time{}, errors.New("oauth: a service account token needs a positive lifetime")
	}
	cfg, err := p.configs.get(ctx, tid, serverID)
	switch {
	case err != nil:
		return "", time.Time{}, fmt.Errorf("oauth: server %s/%s: %w", tid, serverID, err)
	case cfg.tenant.Spec.Status == model.TenantDisabled:
		return "", time.Time{}, fmt.Errorf("oauth: tenant %s is disabled", tid)
	case !serverAllows(&cfg.server.Spec, model.GrantClientCredentials):
		return "", time.Time{}, fmt.Errorf("oauth: server %s/%s does not allow the client_credentials grant", tid, serverID)
	}
	rq := &request{tenantID: tid, serverID: serverID, issuer: p.issuerOf(tid, serverID), cfg: cfg}
	ctx = withRequest(ctx, rq)
	c, err := p.storage.client(ctx, clientID)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("oauth: client %s/%s: %w", tid, clientID, err)
	}
	if c.spec.ServiceAccountID == "" {
		return "", time.Time{}, fmt.Errorf("oauth: client %s/%s is not a service account's", tid, clientID)
	}
	req, err := p.storage.clientCredentialsRequest(ctx, c, nil)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("oauth: service account client %s/%s: %w", tid, clientID, err)
	}
	req.ttl = ttl
	resp, err := op.CreateClientCredentialsTokenResponse(ctx, req, p.op, c)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("oauth: issue the token of service account client %s/%s: %w", tid, clientID, err)
	}
	return resp.AccessToken, req.expiresAt, nil
}
