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
}

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
	old := s.slot(model.GatewayRef{TenantID: e.TenantID, GatewayID: e.GatewayID}, true).Swap(e)
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
		s.broadcast()
	}
	return old
}

func (s *Engines) broadcast() { s.changed.Notify() }

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
// name ("tenant" and "gateway"), else the default gateway.
func (s *Engines) For(ext map[string]string) *Engine {
	if t, g := ext["tenant"], ext["gateway"]; t != "" && g != "" {
		if p := s.slot(model.GatewayRef{TenantID: t, GatewayID: g}, false); p != nil {
			return p.Load()
		}
		return nil
	}
	if s.single.IsZero() {
		return nil
	}
	p := s.slot(s.single, false)
	if p == nil {
		return nil
	}
	e := p.Load()
	if e != nil && ext["tenant"] != "" && ext["tenant"] != e.TenantID {
		return nil // extensions of another tenant: never decide with our bundle
	}
	return e
}
