// Package gatewaycred verifies gateway credentials
// (ghg_<tenant>.<id>.<secret>, minted by the admin API, stored hashed)
// against the store: the one check behind the bundle service
// (/api/system/{tid}/gateways/{gw}/opa/…) and the xDS server (a Verifier
// is an envoy.CredentialVerifier). It keeps a bounded cache of recently
// verified credentials for store outages and follows revocations on the
// change feed (FollowRevocations, which gatehouse serve runs).
package gatewaycred

import (
	"container/list"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-dev/gatehouse/envoy"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/store"
)

// TokenPrefix starts every gateway token: ghg_<tenant>.<credential id>.<secret>.
const TokenPrefix = "ghg_"

var credRepo = store.Repo[model.GatewayCredentialSpec]{Kind: model.KindGatewayCredential}

// Verifier verifies gateway credentials against the store.
//
// While the store is unavailable (store.ErrUnavailable) it accepts the
// credentials the bundle service served recently with the store answering
// (Remember): a bounded LRU of SHA-256 hashes of whole tokens, each valid
// for a TTL after the store last vouched for it (defaults
// DefaultCacheSize, DefaultCacheTTL), so authorizers keep long-polling
// through a short outage. The cache only answers when the store does not:
// once the store answers, its answer wins (an unknown or revoked
// credential is refused and forgotten). Entries are only kept while
// FollowRevocations follows the change feed, which forgets a credential
// when it, its gateway or its tenant is deleted, and every credential of a
// tenant that changes (a tenant being disabled).
type Verifier struct {
	store store.Store
	log   *slog.Logger
	cache *credentialCache
	// following counts the FollowRevocations calls that follow the feed;
	// nothing is remembered while it is 0.
	following atomic.Int32
	fallbacks *prometheus.CounterVec
	cached    prometheus.GaugeFunc
	// usage records when credentials were last verified (LastUsed).
	usage *usageRecorder
}

// Defaults of the cache of recently verified gateway credentials.
const (
	DefaultCacheSize = 10000
	DefaultCacheTTL  = 5 * time.Minute
)

// Option configures New.
type Option func(*options)

type options struct {
	cache         *credentialCache
	usageInterval time.Duration
}

// WithCache sets the size and TTL of the cache of recently verified
// credentials; a size of 0 turns it off.
func WithCache(size int, ttl time.Duration) Option {
	return func(o *options) { o.cache.size, o.cache.ttl = size, ttl }
}

// WithUsageInterval sets how often, at most, a credential's last use
// (LastUsed, the admin API's last_used_at) is written to the store's
// runtime state: once per interval per credential (default
// DefaultUsageInterval); 0 or less turns the recording off.
func WithUsageInterval(d time.Duration) Option {
	return func(o *options) { o.usageInterval = d }
}

// New returns the verifier of st's gateway credentials.
func New(st store.Store, log *slog.Logger, opts ...Option) *Verifier {
	if log == nil {
		log = slog.Default()
	}
	c := &credentialCache{size: DefaultCacheSize, ttl: DefaultCacheTTL,
		entries: map[[sha256.Size]byte]*list.Element{}, order: list.New()}
	o := options{cache: c, usageInterval: DefaultUsageInterval}
	for _, opt := range opts {
		opt(&o)
	}
	return &Verifier{store: st, log: log, cache: c, usage: newUsageRecorder(st, log, o.usageInterval),
		fallbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_gateway_credential_fallbacks_total",
			Help: "Gateway credential checks the store could not answer, by result: cached (accepted from the cache of recently verified credentials) or refused (503).",
		}, []string{"result"}),
		cached: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "gatehouse_gateway_credentials_cached",
			Help: "Gateway credentials the bundle service would accept while the store is unavailable (verified within the cache TTL or not).",
		}, func() float64 { return float64(c.len()) })}
}

var _ envoy.CredentialVerifier = (*Verifier)(nil)

// RegisterMetrics registers gatehouse_gateway_credential_fallbacks_total
// and gatehouse_gateway_credentials_cached with reg (once; registering
// again with the same registry does nothing).
func (g *Verifier) RegisterMetrics(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{g.fallbacks, g.cached} {
		if err := reg.Register(c); err != nil {
			var already prometheus.AlreadyRegisteredError
			if errors.As(err, &already) && already.ExistingCollector == c {
				continue
			}
			return fmt.Errorf("register gateway credential metrics: %w", err)
		}
	}
	return nil
}

// VerifyGateway returns the gateway token is a credential of. A malformed,
// unknown, wrong or revoked token is envoy.ErrInvalidCredential; a store
// failure is another error, unless the store is unavailable and the token
// is in the cache of recently verified credentials.
func (g *Verifier) VerifyGateway(ctx context.Context, token string) (envoy.GatewayIdentity, error) {
	id, _, err := g.Verify(ctx, token)
	return id, err
}

// Verify is VerifyGateway that also says whether the identity came from
// the cache (the store being unavailable): the bundle service then
// answers from memory only.
func (g *Verifier) Verify(ctx context.Context, token string) (id envoy.GatewayIdentity, fromCache bool, err error) {
	cred, tid, err := verifyToken(ctx, g.store, token)
	switch {
	case err == nil:
		id := envoy.GatewayIdentity{TenantID: tid, GatewayID: cred.Spec.GatewayID, CredentialID: cred.Meta.ID}
		g.usage.used(id)
		return id, false, nil
	case errors.Is(err, envoy.ErrInvalidCredential):
		g.cache.remove(tokenKey(token))
	case errors.Is(err, store.ErrUnavailable) && g.cache.size > 0:
		if id, ok := g.cache.get(tokenKey(token), time.Now()); ok {
			g.fallbacks.WithLabelValues("cached").Inc()
			g.log.WarnContext(ctx, "store unavailable: gateway credential accepted from the cache of recently verified credentials",
				"tenant", id.TenantID, "gateway", id.GatewayID, "credential", id.CredentialID)
			return id, true, nil
		}
		g.fallbacks.WithLabelValues("refused").Inc()
	}
	return envoy.GatewayIdentity{}, false, err
}

// Remember records that the store vouched for token (of id) just now, so
// that it is accepted for the cache's TTL while the store is unavailable.
// It does nothing unless FollowRevocations is following the change feed.
func (g *Verifier) Remember(token string, id envoy.GatewayIdentity) {
	if g.following.Load() > 0 {
		g.cache.put(tokenKey(token), id, time.Now())
	}
}

// WaitUsage waits for the writes of credentials' last use in flight
// (LastUsed): for tests and shutdown; verifications never wait for them.
func (g *Verifier) WaitUsage() { g.usage.wait() }

// CachedCredentials is how many credentials the cache holds.
func (g *Verifier) CachedCredentials() int { return g.cache.len() }

// DeletedWithGateway reports whether token is a credential of gateway gw
// of tenant tid that was deleted with its gateway (such credentials are
// soft-deleted, their hashes kept): only its holder learns of the
// deletion.
func (g *Verifier) DeletedWithGateway(ctx context.Context, tid, gw, token string) (bool, error) {
	ptid, id, secret, ok := parseToken(token)
	if !ok || ptid != tid {
		return false, nil
	}
	page, err := g.store.List(ctx, store.Query{Kind: model.KindGatewayCredential, TenantID: tid, ParentID: gw, IncludeDeleted: true})
	if err != nil {
		return false, fmt.Errorf("look up deleted gateway credentials: %w", err)
	}
	for _, o := range page.Items {
		if o.ID != id || o.Live() {
			continue
		}
		var spec model.GatewayCredentialSpec
		if err := json.Unmarshal(o.Spec, &spec); err != nil {
			return false, fmt.Errorf("deleted gateway credential %s: %w", o.ID, err)
		}
		return spec.GatewayID == gw && secretMatches(spec.SecretHash, secret), nil
	}
	return false, nil
}

// NewCredential makes a new credential of gateway gw of tenant tid: the
// object to store (kind model.KindGatewayCredential, a child of the
// gateway, holding the SHA-256 of its 256-bit secret) and its token
// (TokenPrefix<tid>.<id>.<secret>), which exists nowhere else.
func NewCredential(tid, gw string) (*store.Object, string, error) {
	var id [16]byte
	var secret [32]byte
	if _, err := rand.Read(id[:]); err != nil {
		return nil, "", fmt.Errorf("generate a credential id: %w", err)
	}
	if _, err := rand.Read(secret[:]); err != nil {
		return nil, "", fmt.Errorf("generate a credential secret: %w", err)
	}
	sec := base64.RawURLEncoding.EncodeToString(secret[:])
	sum := sha256.Sum256([]byte(sec))
	spec, err := json.Marshal(model.GatewayCredentialSpec{GatewayID: gw, SecretHash: hex.EncodeToString(sum[:])})
	if err != nil {
		return nil, "", fmt.Errorf("encode a gateway credential: %w", err)
	}
	o := &store.Object{Kind: model.KindGatewayCredential, TenantID: tid, ID: hex.EncodeToString(id[:]), ParentID: gw, Spec: spec}
	return o, TokenPrefix + tid + "." + o.ID + "." + sec, nil
}

func tokenKey(token string) [sha256.Size]byte { return sha256.Sum256([]byte(strings.TrimSpace(token))) }

// parseToken splits a gateway token into its tenant, credential id and
// secret; ok is false when it is not shaped like one.
func parseToken(token string) (tid, id, secret string, ok bool) {
	rest, ok := strings.CutPrefix(strings.TrimSpace(token), TokenPrefix)
	parts := strings.Split(rest, ".")
	if !ok || len(parts) != 3 || !model.ValidTenantID(parts[0]) || !model.ValidObjectID(parts[1]) {
		return "", "", "", false
	}
	return parts[0], parts[1], parts[2], true
}

// secretMatches compares the SHA-256 of secret with the stored hex hash,
// in constant time.
func secretMatches(secretHash, secret string) bool {
	want, _ := hex.DecodeString(secretHash)
	sum := sha256.Sum256([]byte(secret))
	return subtle.ConstantTimeCompare(sum[:], want) == 1
}

// verifyToken looks a gateway credential up and checks its secret in
// constant time. It returns the credential and its tenant, an error
// wrapping envoy.ErrInvalidCredential, or a store error.
func verifyToken(ctx context.Context, r store.Reader, token string) (*store.Typed[model.GatewayCredentialSpec], string, error) {
	tid, id, secret, ok := parseToken(token)
	if !ok {
		return nil, "", fmt.Errorf("malformed token: %w", envoy.ErrInvalidCredential)
	}
	cred, err := credRepo.Get(ctx, r, tid, id)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, "", fmt.Errorf("look up gateway credential: %w", err)
	}
	hash := ""
	if cred != nil {
		hash = cred.Spec.SecretHash
	}
	// The secret is hashed and compared even when there is no credential,
	// so the answer takes as long either way.
	if !secretMatches(hash, secret) || cred == nil {
		return nil, "", fmt.Errorf("unknown credential or wrong secret: %w", envoy.ErrInvalidCredential)
	}
	return cred, tid, nil
}

// credentialCache is an LRU of verified credentials, by token hash.
type credentialCache struct {
	size int
	ttl  time.Duration

	mu      sync.Mutex
	entries map[[sha256.Size]byte]*list.Element
	order   *list.List // of *credentialEntry, most recently verified first
}

type credentialEntry struct {
	key      [sha256.Size]byte
	id       envoy.GatewayIdentity
	verified time.Time
}

func (c *credentialCache) put(key [sha256.Size]byte, id envoy.GatewayIdentity, now time.Time) {
	if c.size <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.entries[key]; ok {
		e := el.Value.(*credentialEntry)
		e.id, e.verified = id, now
		c.order.MoveToFront(el)
		return
	}
	c.entries[key] = c.order.PushFront(&credentialEntry{key: key, id: id, verified: now})
	for c.order.Len() > c.size {
		c.drop(c.order.Back())
	}
}

// get returns the identity of a credential verified within the TTL.
func (c *credentialCache) get(key [sha256.Size]byte, now time.Time) (envoy.GatewayIdentity, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.entries[key]
	if !ok {
		return envoy.GatewayIdentity{}, false
	}
	e := el.Value.(*credentialEntry)
	if now.Sub(e.verified) > c.ttl {
		c.drop(el)
		return envoy.GatewayIdentity{}, false
	}
	return e.id, true
}

func (c *credentialCache) remove(key [sha256.Size]byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.entries[key]; ok {
		c.drop(el)
	}
}

// forget drops every entry match selects.
func (c *credentialCache) forget(match func(envoy.GatewayIdentity) bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for el := c.order.Front(); el != nil; {
		next := el.Next()
		if match(el.Value.(*credentialEntry).id) {
			c.drop(el)
		}
		el = next
	}
}

func (c *credentialCache) drop(el *list.Element) {
	delete(c.entries, el.Value.(*credentialEntry).key)
	c.order.Remove(el)
}

func (c *credentialCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}

// forgetChange drops the cached credentials a change may revoke or
// restrict: a deleted or changed credential, the credentials of a deleted
// gateway, those of a tenant that changed (it may have been disabled) or
// was deleted.
func (g *Verifier) forgetChange(c store.Change) {
	switch {
	case c.Kind == model.KindGatewayCredential:
		g.cache.forget(func(id envoy.GatewayIdentity) bool { return id.TenantID == c.TenantID && id.CredentialID == c.ID })
	case c.Kind == model.KindGateway && c.Op == store.OpDelete:
		g.cache.forget(func(id envoy.GatewayIdentity) bool { return id.TenantID == c.TenantID && id.GatewayID == c.ID })
	case c.Kind == model.KindTenant:
		g.cache.forget(func(id envoy.GatewayIdentity) bool { return id.TenantID == c.ID })
	}
}

// revocationKinds are the kinds whose deletion may revoke gateway
// credentials (a gateway's and a tenant's take their credentials along).
var revocationKinds = map[string]bool{model.KindGatewayCredential: true, model.KindGateway: true, model.KindTenant: true}

// FollowRevocations calls revoked after every committed transaction that
// deleted gateway credentials (revoked ones, or those of a deleted gateway
// or tenant) or rotated one's secret (an update of the credential), following the store's change feed from fromRevision (0: the
// current revision) until ctx ends — changes made through any replica. It
// calls revoked too when the feed resumes after an interruption (changes
// may have been missed). Give it the xDS server's Reverify. While it runs,
// the credential cache (Remember) is kept and forgets what the feed
// revokes; when it returns, the cache is emptied.
func (g *Verifier) FollowRevocations(ctx context.Context, fromRevision int64, revoked func(context.Context)) error {
	rev := fromRevision
	for wait := 100 * time.Millisecond; rev <= 0; wait = min(2*wait, 5*time.Second) {
		var err error
		if rev, err = g.revision(ctx); err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		g.log.Warn("gateway credential revocations: cannot read the current revision; retrying", "error", err.Error())
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
	// Credentials verified from now on are read at rev or later: the feed
	// delivers every revocation after them.
	g.following.Add(1)
	defer func() {
		if g.following.Add(-1) == 0 {
			g.cache.forget(func(envoy.GatewayIdentity) bool { return true })
		}
	}()
	backoff := 100 * time.Millisecond
	for {
		last, err := g.follow(ctx, rev, revoked)
		if ctx.Err() != nil {
			return nil
		}
		if last > rev {
			rev, backoff = last, 100*time.Millisecond
		}
		if errors.Is(err, store.ErrCompacted) {
			// Start over from now; the call to revoked below covers the
			// gap, and the cache forgets what it cannot check.
			g.cache.forget(func(envoy.GatewayIdentity) bool { return true })
			if now, rerr := g.revision(ctx); rerr == nil {
				rev = now
			}
		}
		g.log.Warn("gateway credential revocations: change feed interrupted; resuming", "error", fmt.Sprint(err), "revision", rev)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
		revoked(ctx)
	}
}

// follow watches from rev and returns the last revision seen and why it
// stopped.
func (g *Verifier) follow(ctx context.Context, rev int64, revoked func(context.Context)) (int64, error) {
	ch, err := g.store.Watch(ctx, rev)
	if err != nil {
		return rev, err
	}
	for {
		select {
		case <-ctx.Done():
			return rev, ctx.Err()
		case ev, ok := <-ch:
			if !ok {
				return rev, errors.New("watch closed")
			}
			if ev.Err != nil {
				return rev, ev.Err
			}
			rev = ev.Revision
			deleted := false
			for _, c := range ev.Changes {
				g.forgetChange(c)
				// A credential updated is one whose secret was rotated:
				// the old secret is revoked.
				deleted = deleted || c.Op == store.OpDelete && revocationKinds[c.Kind] ||
					c.Op == store.OpUpdate && c.Kind == model.KindGatewayCredential
			}
			if deleted {
				revoked(ctx)
			}
		}
	}
}

func (g *Verifier) revision(ctx context.Context) (int64, error) {
	var rev int64
	err := g.store.View(ctx, func(ctx context.Context, r store.Reader) error {
		var err error
		rev, err = r.Revision(ctx)
		return err
	})
	return rev, err
}
