// Package verify checks, in process, the access tokens Gatehouse's own
// authorization servers issue: for the admin API (tokens of a tenant's
// admin server and of system/system) and the bundle service (tokens of a
// gateway's client). It verifies them exactly as gateways do — the same
// gateway/token verifier, fed the issuer entries and revocations the
// tenant's bundles carry (policies.Config.ServerIssuers, Revocations) —
// read from the store, not over HTTP, and cached per store revision.
package verify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gatehouse-dev/gatehouse/bundles"
	"github.com/gatehouse-dev/gatehouse/gateway/token"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/policies"
	"github.com/gatehouse-dev/gatehouse/store"
)

// ErrNotAccepted: the token is not an access token this verifier accepts
// (wrong issuer, audience, signature, expired, revoked …). The wrapped
// message says why, for logs; callers answer without it.
var ErrNotAccepted = errors.New("token not accepted")

// Verifier verifies tokens of the servers of any tenant of a store.
type Verifier struct {
	store  store.Store
	public string
	now    func() time.Time
	log    *slog.Logger

	mu    sync.Mutex
	cache map[cacheKey]*cached
}

type cacheKey struct {
	tenant, server, audiences string
}

// cached is a verifier of one server built from the store at revision.
type cached struct {
	revision int64
	v        *token.Verifier
	issuer   string
}

// maxCached bounds the verifiers kept (each holds one server's keys).
const maxCached = 1024

// New returns a verifier of the servers whose issuer URLs start with
// publicURL. now is its clock (nil: time.Now).
func New(st store.Store, publicURL string, now func() time.Time, log *slog.Logger) *Verifier {
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Verifier{store: st, public: publicURL, now: now, log: log, cache: map[cacheKey]*cached{}}
}

// Verify checks raw, a JWT access token, as an access token of server
// serverID of tenant tenantID whose aud names one of audiences (none:
// the server's own audiences and its issuer URL, as its gateways accept).
func (v *Verifier) Verify(ctx context.Context, tenantID, serverID, raw string, audiences ...string) (*token.Token, error) {
	c, err := v.verifierOf(ctx, tenantID, serverID, audiences)
	if err != nil {
		return nil, err
	}
	tok, err := c.v.Verify(ctx, raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotAccepted, err)
	}
	if tok.IssuerID != policies.ServerIssuerPrefix+serverID {
		return nil, fmt.Errorf("%w: issued by %s", ErrNotAccepted, tok.IssuerID)
	}
	return tok, nil
}

// IssuerURL is the issuer URL of a server.
func (v *Verifier) IssuerURL(tenantID, serverID string) string {
	return model.IssuerURL(v.public, tenantID, serverID)
}

// ServerOf names the tenant and server of an issuer URL of this control
// plane (ok false for any other iss).
func (v *Verifier) ServerOf(iss string) (tenantID, serverID string, ok bool) {
	rest, found := strings.CutPrefix(iss, strings.TrimRight(v.public, "/")+"/")
	if !found {
		return "", "", false
	}
	tid, aid, found := strings.Cut(rest, "/")
	if !found || !model.ValidTenantID(tid) || !model.ValidObjectID(aid) {
		return "", "", false
	}
	return tid, aid, true
}

// verifierOf returns the verifier of a server at the store's current
// revision, building it when the store changed since.
func (v *Verifier) verifierOf(ctx context.Context, tenantID, serverID string, audiences []string) (*cached, error) {
	rev, err := v.store.Revision(ctx)
	if err != nil {
		return nil, fmt.Errorf("verify: read the store revision: %w", err)
	}
	key := cacheKey{tenantID, serverID, strings.Join(audiences, "\x00")}
	v.mu.Lock()
	c := v.cache[key]
	v.mu.Unlock()
	if c != nil && c.revision == rev {
		return c, nil
	}
	var cfg *policies.Config
	if err := v.store.View(ctx, func(ctx context.Context, r store.Reader) error {
		var err error
		cfg, err = bundles.LoadTokenConfig(ctx, r, tenantID)
		return err
	}); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, fmt.Errorf("%w: tenant %s does not exist", ErrNotAccepted, tenantID)
		}
		return nil, fmt.Errorf("verify: load the servers of %s: %w", tenantID, err)
	}
	if cfg.Tenant.Spec.Status == model.TenantDisabled {
		return nil, fmt.Errorf("%w: tenant %s is disabled", ErrNotAccepted, tenantID)
	}
	cfg.PublicURL = v.public
	cfg.KeysAt = v.now()
	issuers, err := cfg.ServerIssuers()
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	i := slices.IndexFunc(issuers, func(o policies.Object[model.IssuerSpec]) bool {
		return o.ID == policies.ServerIssuerPrefix+serverID
	})
	if i < 0 {
		return nil, fmt.Errorf("%w: server %s/%s does not exist or has no keys", ErrNotAccepted, tenantID, serverID)
	}
	is := issuers[i].Spec
	if len(audiences) > 0 {
		is.Audiences = audiences
	}
	tv, err := token.New([]token.Issuer{{ID: issuers[i].ID, Issuer: is.Issuer, Audiences: is.Audiences, JWKS: is.JWKS}},
		token.Options{Now: v.now, Logger: v.log})
	if err != nil {
		return nil, fmt.Errorf("verify: server %s/%s: %w", tenantID, serverID, err)
	}
	if cfg.Revocations != nil {
		tv.SetRevocations(*cfg.Revocations)
	}
	c = &cached{revision: cfg.Revision, v: tv, issuer: is.Issuer}
	v.mu.Lock()
	if old := v.cache[key]; old != nil {
		old.v.Close()
	}
	if len(v.cache) >= maxCached {
		for k, old := range v.cache {
			old.v.Close()
			delete(v.cache, k)
			break
		}
	}
	v.cache[key] = c
	v.mu.Unlock()
	return c, nil
}
