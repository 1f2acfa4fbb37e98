package oauth

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/oauth/keys"
	"github.com/gatehouse-dev/gatehouse/store"
)

// The configuration every provider request reads — its tenant, its
// server, the scopes bound to the server, the claims it maps, its
// clients and its key set — is decoded once per store revision and
// authorization server, not once per request: serverConfig holds it,
// configCache finds it. A request first reads the store's global
// revision (one read); an entry taken at that revision is used as it is,
// any other is rebuilt, so a committed change (a client deleted, a secret
// rotated, a scope unbound, a key rotated) is seen by the first request
// that starts after its commit, exactly as without the cache.
//
// Everything an entry holds is shared by concurrent requests and must be
// treated as read-only.

// maxCachedServers bounds the entries of the cache; past it the cache
// starts again from empty (entries are rebuilt on demand).
const maxCachedServers = 4096

// serverKey names one authorization server.
type serverKey struct{ tenant, server string }

// configCache holds the serverConfig of every server requested lately.
type configCache struct {
	store store.Store

	mu      sync.Mutex
	entries map[serverKey]*serverConfig
}

func newConfigCache(s store.Store) *configCache {
	return &configCache{store: s, entries: map[serverKey]*serverConfig{}}
}

// errNoTenant and errNoServer: the tenant (or server) of the path does
// not exist (or the tenant is being deleted).
var (
	errNoTenant = errors.New("no such tenant")
	errNoServer = errors.New("no such authorization server")
)

// get returns the configuration of server aid of tenant tid as of the
// store's current revision: errNoTenant or errNoServer when it does not
// exist. A disabled tenant is returned (the caller refuses it).
func (c *configCache) get(ctx context.Context, tid, aid string) (*serverConfig, error) {
	rev, err := c.store.Revision(ctx)
	if err != nil {
		return nil, fmt.Errorf("read the store's revision: %w", err)
	}
	key := serverKey{tid, aid}
	c.mu.Lock()
	cfg := c.entries[key]
	c.mu.Unlock()
	if cfg != nil && cfg.rev == rev {
		return cfg, nil
	}
	cfg, err = c.load(ctx, rev, tid, aid)
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case errors.Is(err, errNoTenant) || errors.Is(err, errNoServer):
		delete(c.entries, key)
	case err != nil:
	default:
		if old := c.entries[key]; old == nil || old.rev <= rev {
			if old == nil && len(c.entries) >= maxCachedServers {
				clear(c.entries)
			}
			c.entries[key] = cfg
		}
	}
	return cfg, err
}

// load reads the tenant and the server. It is tagged with rev, read
// before: what it reads may be newer than rev, never older, so an entry
// is never used past a change.
func (c *configCache) load(ctx context.Context, rev int64, tid, aid string) (*serverConfig, error) {
	tenant, err := tenantRepo.Get(ctx, c.store, "", tid)
	switch {
	case errors.Is(err, store.ErrNotFound) || (err == nil && tenant.Spec.Status == model.TenantDeleted):
		return nil, errNoTenant
	case err != nil:
		return nil, fmt.Errorf("read tenant %s: %w", tid, err)
	}
	server, err := serverRepo.Get(ctx, c.store, tid, aid)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, errNoServer
	case err != nil:
		return nil, fmt.Errorf("read server %s/%s: %w", tid, aid, err)
	}
	return &serverConfig{store: c.store, rev: rev, tenant: tenant, server: server}, nil
}

// serverConfig is the configuration of one authorization server at one
// store revision. The tenant and server are read when it is made; the
// rest on first use (an error is not kept: the next use reads again).
type serverConfig struct {
	store  store.Store
	rev    int64
	tenant *store.Typed[model.TenantSpec]
	server *store.Typed[model.ServerSpec]

	mu      sync.Mutex
	scopes  lazy[[]string]
	claims  lazy[[]*store.Typed[model.ClaimSpec]]
	clients lazy[[]*store.Typed[model.ClientSpec]]
	byID    map[string]*store.Typed[model.ClientSpec]

	keysMu sync.Mutex // held while the key set loads
	keys   *keys.Set
}

// lazy is a value of a serverConfig loaded on first use (under the
// config's mutex); a failed load is not kept.
type lazy[T any] struct {
	v      T
	loaded bool
}

// ofServer lists the tenant's objects of repo that belong to the server
// (by serverID) and keeps what keep makes of them in l.
func ofServer[S, T any](ctx context.Context, cfg *serverConfig, l *lazy[T], repo store.Repo[S], serverID func(*S) string,
	keep func([]*store.Typed[S]) T) (T, error) {
	cfg.mu.Lock()
	defer cfg.mu.Unlock()
	if l.loaded {
		return l.v, nil
	}
	items, err := repo.ListAll(ctx, cfg.store, store.Query{TenantID: cfg.tenant.Meta.ID})
	if err != nil {
		var zero T
		return zero, fmt.Errorf("list the %s of tenant %s: %w", repo.Kind, cfg.tenant.Meta.ID, err)
	}
	mine := items[:0]
	for _, it := range items {
		if serverID(&it.Spec) == cfg.server.Meta.ID {
			mine = append(mine, it)
		}
	}
	l.v, l.loaded = keep(mine), true
	return l.v, nil
}

func same[T any](v T) T { return v }

// serverScopes are the names of the tenant's scopes bound to the server.
func (cfg *serverConfig) serverScopes(ctx context.Context) ([]string, error) {
	return ofServer(ctx, cfg, &cfg.scopes, scopeRepo, func(s *model.ScopeSpec) string { return s.ServerID },
		func(items []*store.Typed[model.ScopeSpec]) []string {
			var names []string
			for _, it := range items {
				if it.Meta.Name != "" {
					names = append(names, it.Meta.Name)
				}
			}
			return names
		})
}

// serverClaims are the claims the server maps into its tokens.
func (cfg *serverConfig) serverClaims(ctx context.Context) ([]*store.Typed[model.ClaimSpec], error) {
	return ofServer(ctx, cfg, &cfg.claims, claimRepo, func(s *model.ClaimSpec) string { return s.ServerID }, same)
}

// serverClients are the clients of the server (for CORS).
func (cfg *serverConfig) serverClients(ctx context.Context) ([]*store.Typed[model.ClientSpec], error) {
	return ofServer(ctx, cfg, &cfg.clients, clientRepo, func(s *model.ClientSpec) string { return s.ServerID }, same)
}

// client returns the server's client of that id (store.ErrNotFound when
// there is none). Clients found are kept (as many as the server has);
// ids not found are read again each time.
func (cfg *serverConfig) client(ctx context.Context, id string) (*store.Typed[model.ClientSpec], error) {
	cfg.mu.Lock()
	defer cfg.mu.Unlock()
	if c := cfg.byID[id]; c != nil {
		return c, nil
	}
	t, err := clientRepo.Get(ctx, cfg.store, cfg.tenant.Meta.ID, id)
	switch {
	case err != nil:
		return nil, err
	case t.Spec.ServerID != cfg.server.Meta.ID:
		return nil, store.ErrNotFound
	}
	if cfg.byID == nil {
		cfg.byID = map[string]*store.Typed[model.ClientSpec]{}
	}
	cfg.byID[id] = t
	return t, nil
}

// keySet is the server's key set at this revision: loaded once; with
// ensure, a server without keys gets its first key (a write: the next
// revision's entry loads it).
func (cfg *serverConfig) keySet(ctx context.Context, m *keys.Manager, now time.Time, ensure bool) (*keys.Set, error) {
	cfg.keysMu.Lock()
	defer cfg.keysMu.Unlock()
	if cfg.keys != nil && (cfg.keys.Len() > 0 || !ensure) {
		return cfg.keys, nil
	}
	tid, aid := cfg.tenant.Meta.ID, cfg.server.Meta.ID
	policy := keys.PolicyOf(&cfg.server.Spec)
	var (
		set *keys.Set
		err error
	)
	if ensure {
		set, err = m.Ensure(ctx, tid, aid, keys.Rotation{Policy: policy, Now: now})
	} else {
		set, err = m.Load(ctx, tid, aid, policy)
	}
	if err != nil {
		return nil, fmt.Errorf("keys of server %s/%s: %w", tid, aid, err)
	}
	cfg.keys = set
	return set, nil
}
