package gateway

import (
	"sync"
	"sync/atomic"

	"github.com/gatehouse-dev/gatehouse/internal/broadcast"
	"github.com/gatehouse-dev/gatehouse/model"
)

// Engines holds the active engine of each gateway this authorizer serves.
// Activation is an atomic swap: checks in flight finish on the engine they
// started with.
type Engines struct {
	mu      sync.RWMutex
	byKey   map[model.GatewayRef]*atomic.Pointer[Engine]
	single  model.GatewayRef      // when set, the gateway used when a request names none
	changed broadcast.Broadcaster // notified at every activation or removal
	// watchers are called after every activation and removal (watch).
	watchers []engineWatcher
}

// engineWatcher is told of a gateway's engine changing from old to cur
// (cur nil: removed; old nil: first activation or re-activation).
type engineWatcher func(ref model.GatewayRef, old, cur *Engine)

// NewEngines returns an empty set. defaultGateway (the zero GatewayRef:
// none) is used for requests whose context extensions name no gateway.
func NewEngines(defaultGateway model.GatewayRef) *Engines {
	return &Engines{byKey: map[model.GatewayRef]*atomic.Pointer[Engine]{}, single: defaultGateway}
}

func (s *Engines) slot(key model.GatewayRef, create bool) *atomic.Pointer[Engine] {
	s.mu.RLock()
	p := s.byKey[key]
	s.mu.RUnlock()
	if p != nil || !create {
		return p
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if p = s.byKey[key]; p == nil {
		p = &atomic.Pointer[Engine]{}
		s.byKey[key] = p
	}
	return p
}

// Activate makes e the gateway's engine and returns the one it replaced.
func (s *Engines) Activate(e *Engine) *Engine {
	ref := model.GatewayRef{TenantID: e.TenantID, GatewayID: e.GatewayID}
	old := s.slot(ref, true).Swap(e)
	s.notify(ref, old, e)
	s.broadcast()
	return old
}

// Remove drops a gateway's engine, so its requests are denied and, when it
// is the default gateway, Ready reports false. It returns the engine it
// removed.
func (s *Engines) Remove(tenantID, gatewayID string) *Engine {
	p := s.slot(model.GatewayRef{TenantID: tenantID, GatewayID: gatewayID}, false)
	if p == nil {
		return nil
	}
	old := p.Swap(nil)
	if old != nil {
		s.notify(model.GatewayRef{TenantID: tenantID, GatewayID: gatewayID}, old, nil)
		s.broadcast()
	}
	return old
}

func (s *Engines) broadcast() { s.changed.Notify() }

// watch registers f, called (synchronously, after the swap) at every
// activation and removal.
func (s *Engines) watch(f engineWatcher) {
	s.mu.Lock()
	s.watchers = append(s.watchers, f)
	s.mu.Unlock()
}

func (s *Engines) notify(ref model.GatewayRef, old, cur *Engine) {
	s.mu.RLock()
	ws := s.watchers
	s.mu.RUnlock()
	for _, f := range ws {
		f(ref, old, cur)
	}
}

// Get returns a gateway's engine, or nil.
func (s *Engines) Get(tenantID, gatewayID string) *Engine {
	if p := s.slot(model.GatewayRef{TenantID: tenantID, GatewayID: gatewayID}, false); p != nil {
		return p.Load()
	}
	return nil
}

// Changed is closed at the next activation or removal.
func (s *Engines) Changed() <-chan struct{} { return s.changed.Wait() }

// Ready reports whether at least one engine is active (or, with a default
// gateway, whether that one is).
func (s *Engines) Ready() bool {
	if !s.single.IsZero() {
		p := s.slot(s.single, false)
		return p != nil && p.Load() != nil
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, p := range s.byKey {
		if p.Load() != nil {
			return true
		}
	}
	return false
}

// For picks the engine of a request: the gateway its context extensions
// name ("tenant" and "gateway"), else the default gateway; nil when there
// is none (Resolve says why).
func (s *Engines) For(ext map[string]string) *Engine {
	e, _ := s.Resolve(ext)
	return e
}

// Miss says why a request has no engine (Resolve).
type Miss int

const (
	// MissNone: the request has an engine.
	MissNone Miss = iota
	// MissNoGateway: the context extensions name no gateway ("tenant"
	// and "gateway") and this authorizer has no default gateway.
	MissNoGateway
	// MissUnknownGateway: the context extensions name a gateway this
	// authorizer has never had a bundle for.
	MissUnknownGateway
	// MissForeignTenant: the context extensions name a tenant that is not
	// the gateway's: the gateway id is this authorizer's under another
	// tenant, or the default gateway belongs to another tenant.
	MissForeignTenant
	// MissNoBundle: the gateway is this authorizer's, but no bundle is
	// active for it (not yet, or it was removed).
	MissNoBundle
)

// String is the miss's machine-readable code (the error_code of its
// denial).
func (m Miss) String() string {
	switch m {
	case MissNone:
		return "none"
	case MissNoGateway:
		return "no_gateway"
	case MissUnknownGateway:
		return "unknown_gateway"
	case MissForeignTenant:
		return "foreign_tenant"
	case MissNoBundle:
		return "no_bundle"
	}
	return "unknown"
}

// Resolve is For, with the reason when there is no engine: a request is
// never decided with a bundle it does not name, nor with another tenant's.
func (s *Engines) Resolve(ext map[string]string) (*Engine, Miss) {
	t, g := ext["tenant"], ext["gateway"]
	if t != "" && g != "" {
		ref := model.GatewayRef{TenantID: t, GatewayID: g}
		if p := s.slot(ref, false); p != nil {
			if e := p.Load(); e != nil {
				return e, MissNone
			}
			return nil, MissNoBundle
		}
		if ref == s.single {
			return nil, MissNoBundle
		}
		if s.foreign(ref) {
			return nil, MissForeignTenant
		}
		return nil, MissUnknownGateway
	}
	if s.single.IsZero() {
		return nil, MissNoGateway
	}
	if t != "" && t != s.single.TenantID {
		return nil, MissForeignTenant // extensions of another tenant: never decide with our bundle
	}
	if g != "" && g != s.single.GatewayID {
		return nil, MissUnknownGateway // another gateway named without its tenant: not ours to decide
	}
	p := s.slot(s.single, false)
	if p == nil {
		return nil, MissNoBundle
	}
	e := p.Load()
	if e == nil {
		return nil, MissNoBundle
	}
	return e, MissNone
}

// foreign reports whether ref names a tenant that is not its gateway's:
// the default gateway is another tenant's, or this authorizer serves a
// gateway of ref's id under another tenant.
func (s *Engines) foreign(ref model.GatewayRef) bool {
	if !s.single.IsZero() && s.single.TenantID != ref.TenantID {
		return true
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	for k := range s.byKey {
		if k.GatewayID == ref.GatewayID && k.TenantID != ref.TenantID {
			return true
		}
	}
	return false
}
