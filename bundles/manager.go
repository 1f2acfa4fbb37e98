// Package bundles keeps every gateway's OPA bundle current: it compiles the
// store's configuration at start, then follows the change feed and rebuilds
// only the gateways whose inputs changed. It serves the bundle service and
// the in-process authorizer.
package bundles

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-dev/gatehouse/internal/broadcast"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/policies"
	"github.com/gatehouse-dev/gatehouse/store"
)

// Retry backoff of a failed build (jittered, doubling).
const (
	minRetry = 100 * time.Millisecond
	maxRetry = 5 * time.Second
)

// Reasons of gatehouse_bundle_build_failures_total.
const (
	reasonTransient = "transient"
	reasonContent   = "content"
)

// Bundle is one gateway's current bundle.
type Bundle struct {
	TenantID  string
	GatewayID string
	// Revision is the store revision at which this content first appeared,
	// recorded with store.Runtime.ClaimBundleRevision: every replica gives
	// this content this revision.
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

// BuildFailure describes a gateway's bundle build that fails, while it
// does: the gateway keeps its last good bundle meanwhile.
type BuildFailure struct {
	// Error is the last failure.
	Error string
	// Since is when the first of the consecutive failures happened.
	Since time.Time
	// Failures is how many builds in a row failed.
	Failures int
	// Retrying says the failure is transient (the store failed, or
	// another replica had recorded newer content): the build is retried
	// with backoff until it succeeds. Otherwise the configuration does
	// not compile, and it is built again at its next change.
	Retrying bool
}

// pendingChange is a tenant's changes not built yet: from first to last
// (store revisions).
type pendingChange struct{ first, last int64 }

// contentError is a build error caused by the configuration itself:
// building again from the same configuration fails again.
type contentError struct{ err error }

func (e contentError) Error() string { return e.err.Error() }
func (e contentError) Unwrap() error { return e.err }

// errStale: a gateway's content came from a snapshot older than content
// another replica already recorded; a newer snapshot is needed.
var errStale = errors.New("compiled from a snapshot older than the content recorded by another replica")

// Manager owns the current bundles.
type Manager struct {
	store   store.Store
	keys    *KeyStore
	log     *slog.Logger
	allowed []string
	// public is the base of the servers' issuer URLs (WithPublicURL).
	public string
	// inputs are the kinds whose changes rebuild bundles (WithInputs).
	inputs map[string]bool

	mu      sync.RWMutex
	bundles map[model.GatewayRef]*Bundle
	errs    map[model.GatewayRef]*BuildFailure // gateways whose content does not compile
	failing map[string]*BuildFailure           // tenants whose builds fail and are retried
	changed broadcast.Broadcaster              // notified whenever a bundle changes
	ready   chan struct{}
	builds  int64

	// Where the change feed is. Every change up to fed was handed to the
	// builds; pending holds the tenants with changes not built yet, so
	// every change up to position() is built, and the feed resumes from
	// there after an interruption. head is the newest store revision seen.
	posMu   sync.Mutex
	fed     int64
	head    int64
	pending map[string]pendingChange

	failures *prometheus.CounterVec
	lag      prometheus.GaugeFunc
	nFailing prometheus.GaugeFunc
	// retryMin and retryMax bound the backoff between retries of a failed
	// build (minRetry, maxRetry; shorter in tests).
	retryMin, retryMax time.Duration

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

// WithInputs names the kinds whose changes rebuild bundles: the kind
// registry's Bundled kinds (default CompiledKinds; see CheckInputs).
func WithInputs(kinds []string) Option {
	return func(m *Manager) {
		m.inputs = map[string]bool{}
		for _, k := range kinds {
			m.inputs[k] = true
		}
	}
}

// WithAllowedBuiltins lets policies call these denied built-ins
// (policies.DeniedBuiltins); they are written into every bundle so the
// authorizer compiles with the same capabilities.
func WithAllowedBuiltins(names ...string) Option {
	return func(m *Manager) { m.allowed = append([]string(nil), names...) }
}

// WithPublicURL is the externally visible base URL of the control plane:
// the tenants' authorization servers are issuers {url}/{tid}/{aid} in
// their bundles (a tenant whose server has keys does not compile without
// it).
func WithPublicURL(url string) Option {
	return func(m *Manager) { m.public = url }
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
	m := &Manager{store: s, keys: keys, log: log, bundles: map[model.GatewayRef]*Bundle{}, errs: map[model.GatewayRef]*BuildFailure{},
		failing: map[string]*BuildFailure{}, ready: make(chan struct{}),
		sched: map[string]buildState{}, pending: map[string]pendingChange{}, retryMin: minRetry, retryMax: maxRetry}
	for _, o := range opts {
		o(m)
	}
	if m.slots == nil {
		m.slots = make(chan struct{}, max(2, runtime.GOMAXPROCS(0)))
	}
	if m.inputs == nil {
		WithInputs(compiledKinds)(m)
	}
	m.failures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gatehouse_bundle_build_failures_total",
		Help: "Tenant bundle builds that failed, by reason: transient (the store failed; retried with backoff until it succeeds) or content (a gateway's configuration does not compile; built again at its next change).",
	}, []string{"reason"})
	m.failures.WithLabelValues(reasonTransient)
	m.failures.WithLabelValues(reasonContent)
	m.lag = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "gatehouse_bundle_lag_revisions",
		Help: "The newest store revision this process has seen minus the revision up to which the bundles of every change are built (0 when every bundle is current).",
	}, func() float64 { return float64(m.Lag()) })
	m.nFailing = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "gatehouse_bundle_tenants_failing",
		Help: "Tenants whose bundle builds fail transiently and are being retried (their gateways serve their last good bundle).",
	}, func() float64 { m.mu.RLock(); defer m.mu.RUnlock(); return float64(len(m.failing)) })
	return m
}

// RegisterMetrics registers the bundle metrics with reg:
// gatehouse_bundle_build_failures_total{reason},
// gatehouse_bundle_lag_revisions and gatehouse_bundle_tenants_failing.
func (m *Manager) RegisterMetrics(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.failures, m.lag, m.nFailing} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("register bundle metrics: %w", err)
		}
	}
	return nil
}

// Lag is the newest store revision this manager has seen minus the
// revision up to which the bundles of every change are built.
func (m *Manager) Lag() int64 {
	m.posMu.Lock()
	defer m.posMu.Unlock()
	return max(0, m.head-m.positionLocked())
}

// position is the revision up to which every change's bundles are built:
// the feed resumes after it.
func (m *Manager) position() int64 {
	m.posMu.Lock()
	defer m.posMu.Unlock()
	return m.positionLocked()
}

func (m *Manager) positionLocked() int64 {
	p := m.fed
	for _, pc := range m.pending {
		p = min(p, pc.first-1)
	}
	return p
}

// noteChanges records that the feed delivered revision rev, which changed
// the inputs of these tenants.
func (m *Manager) noteChanges(rev int64, tenants []string) {
	m.posMu.Lock()
	defer m.posMu.Unlock()
	for _, tid := range tenants {
		pc, ok := m.pending[tid]
		if !ok {
			pc = pendingChange{first: rev, last: rev}
		}
		pc.first, pc.last = min(pc.first, rev), max(pc.last, rev)
		m.pending[tid] = pc
	}
	m.fed, m.head = max(m.fed, rev), max(m.head, rev)
}

// builtAt records that a tenant was built from the snapshot at rev.
func (m *Manager) builtAt(tid string, rev int64) {
	m.posMu.Lock()
	defer m.posMu.Unlock()
	m.head = max(m.head, rev)
	pc, ok := m.pending[tid]
	switch {
	case !ok:
	case pc.last <= rev:
		delete(m.pending, tid)
	default: // changed since the snapshot: built again (buildAgain)
		pc.first = max(pc.first, rev+1)
		m.pending[tid] = pc
	}
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
	return m.bundles[model.GatewayRef{TenantID: tenantID, GatewayID: gatewayID}]
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

// BuildError returns the error of a gateway's failing build ("" when
// fine): its tenant's transient failure, or its content's.
func (m *Manager) BuildError(tenantID, gatewayID string) string {
	if f := m.BuildFailure(tenantID, gatewayID); f != nil {
		return f.Error
	}
	return ""
}

// BuildFailure describes a gateway's failing build (nil when fine): its
// tenant's transient failure, which is retried, or else its content's.
func (m *Manager) BuildFailure(tenantID, gatewayID string) *BuildFailure {
	m.mu.RLock()
	defer m.mu.RUnlock()
	f := m.failing[tenantID]
	if f == nil {
		f = m.errs[model.GatewayRef{TenantID: tenantID, GatewayID: gatewayID}]
	}
	if f == nil {
		return nil
	}
	c := *f
	return &c
}

// Changed returns a channel closed at the next bundle change.
func (m *Manager) Changed() <-chan struct{} { return m.changed.Wait() }

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
// A build that fails for a transient reason (the store) is retried with
// backoff until it succeeds, and the feed never moves past a change whose
// bundles are not built: when the feed is interrupted (a dropped
// connection, a restarted database) it resumes from the last revision
// up to which everything is built. Run returns once the builds it
// started have stopped.
func (m *Manager) Run(ctx context.Context) error {
	defer m.inFlight.Wait()
	if err := m.rebuildAll(ctx); err != nil {
		return nil // ctx ended
	}
	close(m.ready)
	backoff := m.retryMin
	for ctx.Err() == nil {
		from := m.position()
		last, err := m.follow(ctx, from)
		if ctx.Err() != nil {
			return nil
		}
		if last > from {
			backoff = m.retryMin
		}
		if errors.Is(err, store.ErrCompacted) {
			if err := m.rebuildAll(ctx); err != nil {
				return nil
			}
			continue
		}
		m.log.Warn("change feed interrupted; resuming", "error", fmt.Sprint(err), "revision", m.position())
		select {
		case <-ctx.Done():
		case <-time.After(jitter(backoff)):
		}
		backoff = min(2*backoff, m.retryMax)
	}
	return nil
}

// jitter returns a duration in [d/2, d].
func jitter(d time.Duration) time.Duration {
	return d/2 + rand.N(d/2+1)
}

// follow consumes the change feed after rev, rebuilding affected tenants.
// It returns the last revision it received and why it stopped.
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
			var changed []string
			seen := map[string]bool{}
			for _, c := range ev.Changes {
				if !m.inputs[c.Kind] {
					continue
				}
				tid := c.TenantID
				if c.Kind == model.KindTenant {
					tid = c.ID
				}
				if tid != "" && !seen[tid] {
					seen[tid], tenants[tid] = true, true
					changed = append(changed, tid)
				}
			}
			// Pending before the feed position moves past the change.
			m.noteChanges(rev, changed)
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
// the build, and again after a backoff while the build fails for a
// transient reason. While it waits (for a slot or a retry) new changes
// need nothing more: the next build reads the newest snapshot.
func (m *Manager) buildLoop(ctx context.Context, tid string) {
	defer m.inFlight.Done()
	var delay time.Duration
	for {
		if !m.waitToBuild(ctx, delay) {
			m.schedMu.Lock()
			delete(m.sched, tid)
			m.schedMu.Unlock()
			return
		}
		m.schedMu.Lock()
		m.sched[tid] = buildRunning
		m.schedMu.Unlock()
		next := min(max(2*delay, m.retryMin), m.retryMax)
		retry := m.build(ctx, tid, next)
		<-m.slots
		m.schedMu.Lock()
		switch {
		case ctx.Err() != nil:
			delete(m.sched, tid)
			m.schedMu.Unlock()
			return
		case retry:
			m.sched[tid] = buildWaiting
			delay = next
		case m.sched[tid] == buildAgain:
			m.sched[tid] = buildWaiting
			delay = 0
		default:
			delete(m.sched, tid)
			m.schedMu.Unlock()
			return
		}
		m.schedMu.Unlock()
	}
}

// waitToBuild waits about delay (jittered), then for a build slot, which
// the caller must give back. It reports false when ctx ended first.
func (m *Manager) waitToBuild(ctx context.Context, delay time.Duration) bool {
	if delay > 0 {
		t := time.NewTimer(jitter(delay))
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return false
		}
	}
	select {
	case m.slots <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

// build builds a tenant once, records the outcome (metrics, failures,
// the feed position) and reports whether it must be retried, which
// buildLoop does within retryIn.
func (m *Manager) build(ctx context.Context, tid string, retryIn time.Duration) (retry bool) {
	snap, retry, err := m.buildTenant(ctx, tid)
	if ctx.Err() != nil {
		return false
	}
	var was BuildFailure
	m.mu.Lock()
	f := m.failing[tid]
	if f != nil {
		was = *f
	}
	if retry {
		if f == nil {
			f = &BuildFailure{Since: time.Now().UTC(), Retrying: true}
			m.failing[tid] = f
		}
		f.Error, f.Failures = err.Error(), f.Failures+1
		was = *f
	} else {
		delete(m.failing, tid)
	}
	m.mu.Unlock()
	if retry {
		m.failures.WithLabelValues(reasonTransient).Inc()
		// The 1st failure, then the 2nd, 4th, 8th…: a long outage does not
		// flood the log.
		if n := was.Failures; n&(n-1) == 0 {
			m.log.Error("bundle build failed; retrying", "tenant", tid, "error", err.Error(), "failures", n,
				"since", was.Since.Format(time.RFC3339Nano), "retry_within", retryIn.String())
		}
		return true
	}
	if f != nil {
		m.log.Info("bundle build recovered", "tenant", tid, "failures", was.Failures,
			"after", time.Since(was.Since).Round(time.Millisecond).String())
	}
	if err != nil {
		m.failures.WithLabelValues(reasonContent).Inc()
		m.log.Error("bundle build failed", "tenant", tid, "error", err.Error())
	}
	m.builtAt(tid, snap)
	return false
}

// rebuildAll builds every tenant's bundles (listing them is retried with
// backoff while it fails, and so are the builds) and moves the feed
// position to the revision it listed them at. It fails only when ctx
// ends.
func (m *Manager) rebuildAll(ctx context.Context) error {
	var rev int64
	var tenants []string
	for delay := m.retryMin; ; delay = min(2*delay, m.retryMax) {
		tenants = tenants[:0]
		err := m.store.View(ctx, func(ctx context.Context, r store.Reader) error {
			var err error
			if rev, err = r.Revision(ctx); err != nil {
				return err
			}
			pg, err := r.List(ctx, store.Query{Kind: model.KindTenant})
			if err != nil {
				return err
			}
			for _, t := range pg.Items {
				tenants = append(tenants, t.ID)
			}
			return nil
		})
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		m.failures.WithLabelValues(reasonTransient).Inc()
		m.log.Error("bundle build failed: list tenants; retrying", "error", err.Error(), "retry_within", delay.String())
		select {
		case <-time.After(jitter(delay)):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	m.noteChanges(rev, tenants)
	for _, tid := range tenants {
		m.schedule(ctx, tid)
	}
	// Nothing else schedules meanwhile (the change feed is not being
	// followed), so this waits for exactly the builds above and any left
	// from before.
	m.inFlight.Wait()
	return ctx.Err()
}

// RebuildTenant recompiles a tenant's gateways and replaces the bundles
// whose content changed; a deleted tenant's bundles are dropped. It does
// not retry. Run schedules its own builds (never two of one tenant at
// once); other callers must not call it for a tenant while Run may be
// building that tenant.
func (m *Manager) RebuildTenant(ctx context.Context, tenantID string) error {
	_, _, err := m.buildTenant(ctx, tenantID)
	return err
}

// buildTenant builds a tenant, and once more at once when a gateway's
// snapshot turned out older than content another replica recorded. It
// returns the snapshot revision it built from and whether the build must
// be retried (a transient failure).
func (m *Manager) buildTenant(ctx context.Context, tenantID string) (snap int64, retry bool, err error) {
	for attempt := 0; ; attempt++ {
		var stale bool
		snap, stale, retry, err = m.buildTenantOnce(ctx, tenantID)
		if !stale || ctx.Err() != nil {
			return snap, retry, err
		}
		if attempt == 1 {
			return snap, true, err
		}
	}
}

func (m *Manager) buildTenantOnce(ctx context.Context, tenantID string) (snap int64, stale, retry bool, err error) {
	if m.beforeBuild != nil {
		m.beforeBuild(ctx, tenantID)
	}
	var cfg *policies.Config
	err = m.store.View(ctx, func(ctx context.Context, r store.Reader) error {
		var err error
		if snap, err = r.Revision(ctx); err != nil {
			return err
		}
		cfg, err = LoadConfig(ctx, r, tenantID)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		m.dropTenant(tenantID)
		return snap, false, false, nil
	}
	if err != nil {
		return 0, false, true, fmt.Errorf("read the configuration of tenant %s: %w", tenantID, err)
	}
	cfg.AllowedBuiltins = m.allowed
	cfg.PublicURL = m.public
	present := map[string]bool{}
	var errs error
	for _, gw := range cfg.Gateways {
		present[gw.ID] = true
		err := m.buildGateway(ctx, cfg, gw.ID)
		if err == nil {
			continue
		}
		var ce contentError
		switch {
		case errors.As(err, &ce):
			m.setError(model.GatewayRef{TenantID: tenantID, GatewayID: gw.ID}, err)
		case errors.Is(err, errStale):
			stale = true
		default:
			retry = true
		}
		errs = errors.Join(errs, fmt.Errorf("gateway %s: %w", gw.ID, err))
	}
	m.mu.Lock()
	removed := false
	for k := range m.bundles {
		if k.TenantID == tenantID && !present[k.GatewayID] {
			delete(m.bundles, k)
			removed = true
		}
	}
	for k := range m.errs {
		if k.TenantID == tenantID && !present[k.GatewayID] {
			delete(m.errs, k)
		}
	}
	if removed {
		m.broadcastLocked()
	}
	m.mu.Unlock()
	return snap, stale, retry, errs
}

// buildGateway compiles a gateway's bundle, claims its revision in the
// store (so that every replica gives this content the same revision, and
// the same bytes) and installs it when it differs from the current one.
func (m *Manager) buildGateway(ctx context.Context, cfg *policies.Config, gatewayID string) error {
	k := model.GatewayRef{TenantID: cfg.Tenant.ID, GatewayID: gatewayID}
	compiled, err := policies.Compile(cfg, gatewayID)
	if err != nil {
		return contentError{err}
	}
	// Even when the content is the one served: another replica may have
	// recorded it again (it changed and came back meanwhile) at a newer
	// revision.
	rev, err := m.store.ClaimBundleRevision(ctx, k.TenantID, k.GatewayID, compiled.Hash, cfg.Revision)
	if errors.Is(err, store.ErrConflict) {
		return fmt.Errorf("%w: %w", errStale, err)
	}
	if err != nil {
		return fmt.Errorf("claim the bundle revision: %w", err)
	}
	if cur := m.Get(k.TenantID, k.GatewayID); cur != nil && cur.Hash == compiled.Hash && cur.Revision == rev {
		m.mu.Lock()
		delete(m.errs, k)
		m.mu.Unlock()
		return nil
	}
	for pid, why := range compiled.Skipped {
		m.log.Warn("policy left out of bundle", "tenant", k.TenantID, "gateway", k.GatewayID, "policy", pid, "error", why)
	}
	signer, err := m.keys.Key(ctx, k.TenantID)
	if err != nil {
		return fmt.Errorf("signing key: %w", err)
	}
	raw, err := policies.Build(compiled, rev, signer)
	if err != nil {
		return contentError{err}
	}
	b := &Bundle{TenantID: k.TenantID, GatewayID: k.GatewayID, Revision: rev, Hash: compiled.Hash, Raw: raw,
		Compiled: compiled, KeyID: signer.KeyID, BuiltAt: time.Now().UTC()}
	m.mu.Lock()
	m.bundles[k] = b
	delete(m.errs, k)
	m.builds++
	m.broadcastLocked()
	m.mu.Unlock()
	m.log.Info("bundle built", "tenant", k.TenantID, "gateway", k.GatewayID, "revision", rev, "bytes", len(raw))
	return nil
}

// setError records a gateway's content error.
func (m *Manager) setError(k model.GatewayRef, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f := m.errs[k]
	if f == nil {
		f = &BuildFailure{Since: time.Now().UTC()}
		m.errs[k] = f
	}
	f.Error, f.Failures = err.Error(), f.Failures+1
}

func (m *Manager) dropTenant(tenantID string) {
	m.keys.Forget(tenantID)
	m.mu.Lock()
	defer m.mu.Unlock()
	dropped := false
	for k := range m.bundles {
		if k.TenantID == tenantID {
			delete(m.bundles, k)
			dropped = true
		}
	}
	for k := range m.errs {
		if k.TenantID == tenantID {
			delete(m.errs, k)
		}
	}
	if dropped {
		m.broadcastLocked()
	}
}

// broadcastLocked wakes the waiters of Changed (m.mu held, so a waiter
// that read Changed before the bundles sees the change).
func (m *Manager) broadcastLocked() { m.changed.Notify() }
