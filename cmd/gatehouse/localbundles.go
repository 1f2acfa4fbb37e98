package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strconv"
	"sync"

	"github.com/gatehouse-dev/gatehouse/bundles"
	"github.com/gatehouse-dev/gatehouse/gateway"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/store"
)

// localBundles feeds the in-process authorizer of gatehouse serve
// straight from the bundle manager: every gateway's current compiled
// bundle is activated as soon as it is built, without a network round
// trip. (It lives in cmd because it reads the store-backed manager and
// writes decision logs into the store, and nothing under gateway/ may
// import store.)
type localBundles struct {
	bundles   *bundles.Manager
	activator localActivator
	log       *slog.Logger
}

// Run activates every bundle of the manager and follows its changes until
// ctx ends. Gateways activate concurrently, at most GOMAXPROCS (at least
// 2) at a time, so one heavy tenant's compilation does not hold up the
// others' bundles; one gateway's activations run one at a time, always of
// its newest bundle. Run returns nil once its activations have stopped.
func (l *localBundles) Run(ctx context.Context) error {
	log := l.log
	if log == nil {
		log = slog.Default()
	}
	m := l.bundles
	select {
	case <-m.Ready():
	case <-ctx.Done():
		return nil
	}
	r := &localRunner{a: l.activator, log: log, slots: make(chan struct{}, max(2, runtime.GOMAXPROCS(0))), gateways: map[model.GatewayRef]*localGatewayState{}}
	defer r.workers.Wait()
	for {
		changed := m.Changed()
		r.sync(ctx, m.All())
		select {
		case <-changed:
		case <-ctx.Done():
			return nil
		}
	}
}

// localActivator activates and removes gateways' engines (*gateway.Activator).
type localActivator interface {
	Activate(ctx context.Context, src *gateway.Source, source string) (*gateway.Engine, error)
	Remove(tenantID, gatewayID string)
}

// localRunner keeps the in-process engines in step with the manager's bundles.
type localRunner struct {
	a       localActivator
	log     *slog.Logger
	slots   chan struct{}
	workers sync.WaitGroup

	mu       sync.Mutex
	gateways map[model.GatewayRef]*localGatewayState
}

// localGatewayState is one gateway's activation state: want is its newest
// bundle (nil once it is gone); a worker runs while running is set.
type localGatewayState struct {
	want    *bundles.Bundle
	active  string // hash of the active bundle
	failed  string // hash of a bundle that failed to activate (until the next change)
	running bool
}

// sync records the current bundles and starts a worker for every gateway
// that needs an activation or a removal.
func (r *localRunner) sync(ctx context.Context, all []*bundles.Bundle) {
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := map[model.GatewayRef]bool{}
	for _, b := range all {
		key := model.GatewayRef{TenantID: b.TenantID, GatewayID: b.GatewayID}
		seen[key] = true
		st := r.gateways[key]
		if st == nil {
			st = &localGatewayState{}
			r.gateways[key] = st
		}
		st.want = b
		st.failed = "" // a failed activation is retried at every change, as before
		r.start(ctx, key, st)
	}
	for key, st := range r.gateways {
		if !seen[key] {
			st.want = nil
			r.start(ctx, key, st)
		}
	}
}

// start runs a worker for the gateway unless one runs or nothing is to do
// (r.mu held).
func (r *localRunner) start(ctx context.Context, key model.GatewayRef, st *localGatewayState) {
	if st.running || (st.want != nil && (st.want.Hash == st.active || st.want.Hash == st.failed)) {
		return
	}
	st.running = true
	r.workers.Add(1)
	go r.work(ctx, key, st)
}

// work activates the gateway's newest bundle, in a slot, until it is the
// active one; a gateway that is gone is removed.
func (r *localRunner) work(ctx context.Context, key model.GatewayRef, st *localGatewayState) {
	defer r.workers.Done()
	for {
		r.mu.Lock()
		b := st.want
		switch {
		case b == nil:
			r.a.Remove(key.TenantID, key.GatewayID)
			delete(r.gateways, key)
			st.running = false
			r.mu.Unlock()
			return
		case b.Hash == st.active || b.Hash == st.failed || ctx.Err() != nil:
			st.running = false
			r.mu.Unlock()
			return
		}
		r.mu.Unlock()
		select {
		case r.slots <- struct{}{}:
		case <-ctx.Done():
			continue
		}
		src, err := gateway.SourceFromCompiled(b.Compiled, strconv.FormatInt(b.Revision, 10))
		if err == nil {
			_, err = r.a.Activate(ctx, src, "in-process")
		}
		<-r.slots
		r.mu.Lock()
		if err != nil {
			r.log.Error("in-process activation failed", "tenant", b.TenantID, "gateway", b.GatewayID, "error", err.Error())
			st.failed = b.Hash
		} else {
			st.active = b.Hash
		}
		r.mu.Unlock()
	}
}

// storeLogSink writes decision log events straight into the store's decision
// log (what the bundle service's logs endpoint does for remote
// authorizers).
type storeLogSink struct{ Store store.Runtime }

// Send implements gateway.LogSink. A batch the store refuses as invalid
// is rejected for good; other errors are retried by the logger.
func (s storeLogSink) Send(ctx context.Context, batch *gateway.LogBatch) error {
	events, err := batch.Decode()
	if err != nil {
		return fmt.Errorf("%w: %v", gateway.ErrLogRejected, err)
	}
	err = s.Store.AppendLog(ctx, store.LogStream{Name: model.DecisionLogStream, TenantID: batch.TenantID, Key: batch.GatewayID}, events)
	if errors.Is(err, store.ErrInvalid) {
		return fmt.Errorf("%w: %v", gateway.ErrLogRejected, err)
	}
	return err
}
