package gateway

import (
	"context"
	"fmt"
	"reflect"
	"strconv"
	"sync"

	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/policies"
)

// TokenFactory builds a token validator for a bundle's issuers.
type TokenFactory func(ctx context.Context, issuers []policies.IssuerData) (TokenValidator, error)

// RevocationEnforcer is a TokenValidator that enforces a bundle's token
// revocations (data.gatehouse.config.revocations), as token.Verifier does.
// The Activator hands each revision's revocations to its gateway's
// validator (kept across revisions while the issuers do not change); a
// bundle with revocations is refused when the validator cannot enforce
// them, so that the Go fast path never accepts what the Rego library
// refuses.
type RevocationEnforcer interface {
	SetRevocations(policies.RevocationsData)
}

// Activator turns bundle revisions into engines and swaps them in. A
// gateway's token validator (and its key cache) is kept across revisions
// while the issuers do not change.
type Activator struct {
	Engines *Engines
	// Tokens builds validators; nil means no token is ever valid.
	Tokens  TokenFactory
	Metrics *Metrics

	mu     sync.Mutex
	tokens map[model.GatewayRef]tokenEntry
}

type tokenEntry struct {
	issuers []policies.IssuerData
	v       TokenValidator
}

// Activate builds an engine for src and makes it the gateway's current one.
// source labels the metric (control-plane, disk-cache, in-process).
// The engine keeps src.Data for the bundle's pure-Rego entrypoint, as
// NewEngine does.
func (a *Activator) Activate(ctx context.Context, src *Source, source string) (*Engine, error) {
	return a.activate(ctx, src, source, true)
}

// activate is Activate; keepData is newEngine's. The follower does not keep
// the data: its engines hold only what their policies read.
func (a *Activator) activate(ctx context.Context, src *Source, source string, keepData bool) (*Engine, error) {
	e, err := a.build(ctx, src, keepData)
	if a.Metrics != nil {
		result := "ok"
		if err != nil {
			result = "error"
		}
		a.Metrics.activations.WithLabelValues(source, result).Inc()
	}
	if err != nil {
		return nil, err
	}
	a.Engines.Activate(e)
	if a.Metrics != nil {
		if rev, err := strconv.ParseFloat(e.Revision, 64); err == nil {
			a.Metrics.revision.WithLabelValues(e.TenantID, e.GatewayID).Set(rev)
		}
	}
	return e, nil
}

func (a *Activator) build(ctx context.Context, src *Source, keepData bool) (*Engine, error) {
	cfg, err := policies.ParseEngineConfig(src.Data)
	if err != nil {
		return nil, err
	}
	tokens, err := a.validator(ctx, model.GatewayRef{TenantID: cfg.Tenant.ID, GatewayID: cfg.Gateway.ID}, cfg.Issuers)
	if err != nil {
		return nil, err
	}
	if err := checkRevocations(cfg, tokens); err != nil {
		return nil, err
	}
	e, err := newEngine(ctx, src, cfg, tokens, keepData)
	if err != nil {
		return nil, err
	}
	setRevocations(cfg, tokens)
	return e, nil
}

// checkRevocations refuses a bundle with revocations that tokens cannot
// enforce (a nil validator accepts no token at all).
func checkRevocations(cfg *policies.BundleConfig, tokens TokenValidator) error {
	if _, ok := tokens.(RevocationEnforcer); ok || tokens == nil || cfg.Revocations.Empty() {
		return nil
	}
	return fmt.Errorf("bundle of gateway %s/%s has token revocations its token validator cannot enforce", cfg.Tenant.ID, cfg.Gateway.ID)
}

// setRevocations hands the bundle's revocations to tokens, once its engine
// is built (the validator may serve the previous revision until then).
func setRevocations(cfg *policies.BundleConfig, tokens TokenValidator) {
	if r, ok := tokens.(RevocationEnforcer); ok {
		r.SetRevocations(cfg.Revocations)
	}
}

func (a *Activator) validator(ctx context.Context, key model.GatewayRef, issuers []policies.IssuerData) (TokenValidator, error) {
	if a.Tokens == nil {
		return nil, nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.tokens == nil {
		a.tokens = map[model.GatewayRef]tokenEntry{}
	}
	if cur, ok := a.tokens[key]; ok && reflect.DeepEqual(cur.issuers, issuers) {
		return cur.v, nil
	}
	v, err := a.Tokens(ctx, issuers)
	if err != nil {
		return nil, err
	}
	if cur, ok := a.tokens[key]; ok && cur.v != nil {
		cur.v.Close()
	}
	a.tokens[key] = tokenEntry{issuers: issuers, v: v}
	return v, nil
}

// Remove drops a gateway's engine and validator (and its revision gauge):
// its requests are denied from now on.
func (a *Activator) Remove(tenantID, gatewayID string) {
	a.Engines.Remove(tenantID, gatewayID)
	if a.Metrics != nil {
		a.Metrics.revision.DeleteLabelValues(tenantID, gatewayID)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	key := model.GatewayRef{TenantID: tenantID, GatewayID: gatewayID}
	if cur, ok := a.tokens[key]; ok && cur.v != nil {
		cur.v.Close()
	}
	delete(a.tokens, key)
}

// Close releases every validator.
func (a *Activator) Close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for k, t := range a.tokens {
		if t.v != nil {
			t.v.Close()
		}
		delete(a.tokens, k)
	}
}
