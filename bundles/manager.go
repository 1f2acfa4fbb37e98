// Package bundles keeps every gateway's OPA bundle current: it compiles the
// store's configuration at start, then follows the change feed and rebuilds
// only the gateways whose inputs changed. It serves the bundle service and
// the in-process authorizer.
package bundles

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/policies"
	"github.com/gatehouse-dev/gatehouse/store"
)

// stateKind is the runtime state that remembers, per gateway, the content
// hash and the revision it was first built at, so that a restart or another
// replica gives identical content the same revision (and the same bytes).
const stateKind = "bundle-revisions"

type bundleState struct {
	Hash     string `json:"hash"`
	Revision int64  `json:"revision"`
}

// Bundle is one gateway's current bundle.
type Bundle struct {
	TenantID  string
	GatewayID string
	// Revision is the store revision at which this content first appeared.
	Revision int64
	Hash     string
	// Raw is the signed gzip tar.
	Raw      []byte
	Compiled *policies.Compiled
	KeyID    string
	BuiltAt  time.Time
}

// ETag is the bundle's entity tag: its quoted revision.
func (b *Bundle) ETag() string { return `"` + strconv.FormatInt(b.Revision, 10) + `"` }

type key struct{ tenant, gateway string }

// Manager owns the current bundles.
type Manager struct {
	store   store.Store
	keys    *KeyStore
	log     *slog.Logger
	allowed []string

	mu      sync.RWMutex
	bundles map[key]*Bundle
	errs    map[key]string
	changed chan struct{} // closed and replaced whenever a bundle changes
	ready   chan struct{}
	builds  int64

	// Tenant builds run concurrently, at most cap(slots) at a time, and
	// never two of one tenant: a tenant has at most one build goroutine
	// (sched[tid] set), and a change arriving while its build runs makes
	// that goroutine build once more.
	slots    chan struct{}
	schedMu  sync.Mutex
	sched    map[string]buildState
	inFlight sync.WaitGroup
	// beforeBuild, when set (tests), runs at the start of every tenant
	// build.
	beforeBuild func(ctx context.Context, tenantID string)
}

// buildState is where a tenant's build goroutine is.
type buildState int

const (
	buildWaiting buildState = iota + 1 // for a slot; it will read the newest snapshot
	buildRunning                       // it read its snapshot; a change means building again
	buildAgain                         // running, and changed since its snapshot
)

// Option configures a Manager.
type Option func(*Manager)

// WithAllowedBuiltins lets policies call these denied built-ins
// (policies.DeniedBuiltins); they are written into every bundle so the
// authorizer compiles with the same capabilities.
func WithAllowedBuiltins(names ...string) Option {
	return func(m *Manager) { m.allowed = append([]string(nil), names...) }
}

// WithBuildConcurrency bounds how many tenants' bundles build at once
// (default: GOMAXPROCS, at least 2, so one heavy tenant cannot hold up
// the others).
func WithBuildConcurrency(n int) Option {
	return func(m *Manager) {
		if n > 0 {
			m.slots = make(chan struct{}, n)
		}
	}
}

// NewManager returns a manager; Run starts it.
func NewManager(s store.Store, keys *KeyStore, log *slog.Logger, opts ...Option) *Manager {
	if log == nil {
		log = slog.Default()
	}
	m := &Manager{store: s, keys: keys, log: log, bundles: map[key]*Bundle{}, errs: map[key]string{},
		changed: make(chan struct{}), ready: make(chan struct{}), sched: map[string]buildState{}}
	for _, o := range opts {
		o(m)
	}
	if m.slots == nil {
		m.slots = make(chan struct{}, max(2, runtime.GOMAXPROCS(0)))
	}
	return m
}

// AllowedBuiltins are the denied built-ins policies may call (see
// WithAllowedBuiltins).
func (m *Manager) AllowedBuiltins() []string { return append([]string(nil), m.allowed...) }

// Ready is closed once every bundle has been built at start.
func (m *Manager) Ready() <-chan struct{} { return m.ready }

// Get returns a gateway's current bundle, or nil.
func (m *Manager) Get(tenantID, gatewayID string) *Bundle {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.bundles[key{tenantID, gatewayID}]
}

// All returns every current bundle, sorted by tenant then gateway.
func (m *Manager) All() []*Bundle {
	m.mu.RLock()
	out := make([]*Bundle, 0, len(m.bundles))
	for _, b := range m.bundles {
		out = append(out, b)
	}
	m.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].TenantID != out[j].TenantID {
			return out[i].TenantID < out[j].TenantID
		}
		return out[i].GatewayID < out[j].GatewayID
	})
	return out
}

// BuildError returns the last build error of a gateway ("" when fine).
func (m *Manager) BuildError(tenantID, gatewayID string) string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.errs[key{tenantID, gatewayID}]
}

// Changed returns a channel closed at the next bundle change.
func (m *Manager) Changed() <-chan struct{} {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.changed
}

// Builds is how many bundles have been built (for tests and metrics).
func (m *Manager) Builds() int64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.builds
}

// Wait returns the gateway's bundle as soon as its ETag differs from etag,
// or the current one when ctx ends (the long poll timed out). It returns
// nil when the gateway has no bundle.
func (m *Manager) Wait(ctx context.Context, tenantID, gatewayID, etag string) *Bundle {
	for {
		ch := m.Changed()
		b := m.Get(tenantID, gatewayID)
		if b == nil || b.ETag() != etag {
			return b
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return b
		}
	}
}

// Run builds every bundle, then follows the change feed until ctx ends.
// It returns once the builds it started have stopped.
func (m *Manager) Run(ctx context.Context) error {
	defer m.inFlight.Wait()
	rev, err := m.rebuildAll(ctx)
	if err != nil {
		return err
	}
	close(m.ready)
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		last, err := m.follow(ctx, rev)
		if ctx.Err() != nil {
			return nil
		}
		if last > rev {
			rev, backoff = last, 100*time.Millisecond
		}
		if errors.Is(err, store.ErrCompacted) {
			if rev, err = m.rebuildAll(ctx); err != nil {
				m.log.Error("bundle rebuild failed", "error", err.Error())
			}
			continue
		}
		m.log.Warn("change feed interrupted; resuming", "error", fmt.Sprint(err), "revision", rev)
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
	return nil
}

// follow consumes the change feed from rev, rebuilding affected tenants. It
// returns the last revision handled and why it stopped.
func (m *Manager) follow(ctx context.Context, rev int64) (int64, error) {
	ch, err := m.store.Watch(ctx, rev)
	if err != nil {
		return rev, err
	}
	for {
		var ev store.WatchEvent
		var ok bool
		select {
		case ev, ok = <-ch:
		case <-ctx.Done():
			return rev, ctx.Err()
		}
		if !ok {
			return rev, errors.New("watch closed")
		}
		tenants := map[string]bool{}
		for {
			if ev.Err != nil {
				m.rebuildTenants(ctx, tenants)
				return rev, ev.Err
			}
			rev = ev.Revision
			for _, c := range ev.Changes {
				if !InputKinds[c.Kind] {
					continue
				}
				if c.Kind == model.KindTenant {
					tenants[c.ID] = true
				} else if c.TenantID != "" {
					tenants[c.TenantID] = true
				}
			}
			// Take whatever else is already queued, so a burst of writes
			// costs one rebuild per tenant.
			select {
			case ev, ok = <-ch:
				if ok {
					continue
				}
			default:
			}
			break
		}
		m.rebuildTenants(ctx, tenants)
		if !ok {
			return rev, errors.New("watch closed")
		}
	}
}

// rebuildTenants schedules the tenants' builds; it does not wait for them,
// so the change feed keeps flowing while a heavy tenant builds.
func (m *Manager) rebuildTenants(ctx context.Context, tenants map[string]bool) {
	for tid := range tenants {
		m.schedule(ctx, tid)
	}
}

// schedule makes sure the tenant is built from a snapshot taken after
// now: it starts the tenant's build goroutine, or, when one is already
// running past its snapshot, asks it to build again.
func (m *Manager) schedule(ctx context.Context, tid string) {
	m.schedMu.Lock()
	defer m.schedMu.Unlock()
	switch m.sched[tid] {
	case buildWaiting, buildAgain:
		return
	case buildRunning:
		m.sched[tid] = buildAgain
		return
	}
	m.sched[tid] = buildWaiting
	m.inFlight.Add(1)
	go m.buildLoop(ctx, tid)
}

// buildLoop builds a tenant in a slot, again while changes arrived during
// the build.
func (m *Manager) buildLoop(ctx context.Context, tid string) {
	defer m.inFlight.Done()
	for {
		select {
		case m.slots <- struct{}{}:
		case <-ctx.Done():
			m.schedMu.Lock()
			delete(m.sched, tid)
			m.schedMu.Unlock()
			return
		}
		m.schedMu.Lock()
		m.sched[tid] = buildRunning
		m.schedMu.Unlock()
		err := m.RebuildTenant(ctx, tid)
		<-m.slots
		if err != nil && ctx.Err() == nil {
			m.log.Error("bundle build failed", "tenant", tid, "error", err.Error())
		}
		m.schedMu.Lock()
		if m.sched[tid] == buildAgain && ctx.Err() == nil {
			m.sched[tid] = buildWaiting
			m.schedMu.Unlock()
			continue
		}
		delete(m.sched, tid)
		m.schedMu.Unlock()
		return
	}
}

// rebuildAll builds every tenant's bundles and returns the revision of the
// snapshot it listed tenants at.
func (m *Manager) rebuildAll(ctx context.Context) (int64, error) {
	var rev int64
	var tenants []string
	err := m.store.View(ctx, func(ctx context.Context, r store.Reader) error {
		var err error
		if rev, err = r.Revision(ctx); err != nil {
			return err
		}
		items, err := tenantRepo.ListAll(ctx, r, store.Query{})
		for _, t := range items {
			tenants = append(tenants, t.Meta.ID)
		}
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("list tenants: %w", err)
	}
	for _, tid := range tenants {
		m.schedule(ctx, tid)
	}
	// Nothing else schedules meanwhile (the change feed is not being
	// followed), so this waits for exactly the builds above and any left
	// from before.
	m.inFlight.Wait()
	if ctx.Err() != nil {
		return 0, ctx.Err()
	}
	return rev, nil
}

// RebuildTenant recompiles a tenant's gateways and replaces the bundles
// whose content changed; a deleted tenant's bundles are dropped. Run
// schedules its own calls (never two of one tenant at once); other callers
// must not call it for a tenant while Run may be building that tenant.
func (m *Manager) RebuildTenant(ctx context.Context, tenantID string) error {
	if m.beforeBuild != nil {
		m.beforeBuild(ctx, tenantID)
	}
	var cfg *policies.Config
	err := m.store.View(ctx, func(ctx context.Context, r store.Reader) error {
		var err error
		cfg, err = LoadConfig(ctx, r, tenantID)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		m.dropTenant(tenantID)
		return nil
	}
	if err != nil {
		return err
	}
	cfg.AllowedBuiltins = m.allowed
	present := map[string]bool{}
	var buildErr error
	for _, gw := range cfg.Gateways {
		present[gw.ID] = true
		if err := m.buildGateway(ctx, cfg, gw.ID); err != nil {
			m.setError(key{tenantID, gw.ID}, err)
			buildErr = errors.Join(buildErr, fmt.Errorf("gateway %s: %w", gw.ID, err))
		}
	}
	m.mu.Lock()
	removed := false
	for k := range m.bundles {
		if k.tenant == tenantID && !present[k.gateway] {
			delete(m.bundles, k)
			delete(m.errs, k)
			removed = true
		}
	}
	if removed {
		m.broadcastLocked()
	}
	m.mu.Unlock()
	return buildErr
}

func (m *Manager) buildGateway(ctx context.Context, cfg *policies.Config, gatewayID string) error {
	k := key{cfg.Tenant.ID, gatewayID}
	compiled, err := policies.Compile(cfg, gatewayID)
	if err != nil {
		return err
	}
	for pid, why := range compiled.Skipped {
		m.log.Warn("policy left out of bundle", "tenant", k.tenant, "gateway", k.gateway, "policy", pid, "error", why)
	}
	if cur := m.Get(k.tenant, k.gateway); cur != nil && cur.Hash == compiled.Hash {
		return nil
	}
	rev, err := m.revisionFor(ctx, k, compiled.Hash, cfg.Revision)
	if err != nil {
		return err
	}
	signer, err := m.keys.Key(ctx, k.tenant)
	if err != nil {
		return err
	}
	raw, err := policies.Build(compiled, rev, signer)
	if err != nil {
		return err
	}
	b := &Bundle{TenantID: k.tenant, GatewayID: k.gateway, Revision: rev, Hash: compiled.Hash, Raw: raw,
		Compiled: compiled, KeyID: signer.KeyID, BuiltAt: time.Now().UTC()}
	m.mu.Lock()
	m.bundles[k] = b
	delete(m.errs, k)
	m.builds++
	m.broadcastLocked()
	m.mu.Unlock()
	m.log.Info("bundle built", "tenant", k.tenant, "gateway", k.gateway, "revision", rev, "bytes", len(raw))
	return nil
}

// revisionFor keeps the revision of content seen before (after a restart,
// or built by another replica) and records new content at snapshotRev.
func (m *Manager) revisionFor(ctx context.Context, k key, hash string, snapshotRev int64) (int64, error) {
	if e, err := m.store.GetState(ctx, stateKind, k.tenant, k.gateway); err == nil {
		var st bundleState
		if json.Unmarshal(e.Value, &st) == nil && st.Hash == hash {
			return st.Revision, nil
		}
	} else if !errors.Is(err, store.ErrNotFound) {
		return 0, err
	}
	body, _ := json.Marshal(bundleState{Hash: hash, Revision: snapshotRev})
	if err := m.store.PutState(ctx, stateKind, k.tenant, k.gateway, body); err != nil {
		return 0, err
	}
	return snapshotRev, nil
}

func (m *Manager) setError(k key, err error) {
	m.mu.Lock()
	m.errs[k] = err.Error()
	m.mu.Unlock()
}

func (m *Manager) dropTenant(tenantID string) {
	m.keys.Forget(tenantID)
	m.mu.Lock()
	defer m.mu.Unlock()
	dropped := false
	for k := range m.bundles {
		if k.tenant == tenantID {
			delete(m.bundles, k)
			delete(m.errs, k)
			dropped = true
		}
	}
	if dropped {
		m.broadcastLocked()
	}
}

func (m *Manager) broadcastLocked() {
	close(m.changed)
	m.changed = make(chan struct{})
}
