package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/gatehouse-dev/gatehouse/bundles"
	"github.com/gatehouse-dev/gatehouse/gateway"
	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/store"
)

// slowActivator holds the activations of one tenant until released, as a
// heavy compilation would.
type slowActivator struct {
	*gateway.Activator
	slow    string
	entered chan<- struct{}
	release <-chan struct{}
}

func (a *slowActivator) Activate(ctx context.Context, src *gateway.Source, source string) (*gateway.Engine, error) {
	if src.TenantID == a.slow {
		a.entered <- struct{}{}
		select {
		case <-a.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return a.Activator.Activate(ctx, src, source)
}

// tenant stores a tenant with one gateway, service, API and validators
// policy (header x-v equals v).
func tenant(t *testing.T, st store.Store, tid, v string) {
	t.Helper()
	testkit.Create(t, st,
		testkit.Tenant(tid),
		testkit.Service(tid, "s", "http://s.internal"),
		testkit.API(tid, "a", model.APISpec{ServiceID: "s", Method: "GET", Path: "/", PolicyID: "p"}),
		testkit.Gateway(tid, "gw", model.GatewaySpec{Type: model.GatewayEnvoy}),
		testkit.Policy(tid, "p", testkit.Validators(testkit.HeaderEquals("x-v", v))))
}

// setPolicy makes the tenant's policy require x-v: v.
func setPolicy(t *testing.T, st store.Store, tid, v string) {
	t.Helper()
	testkit.Edit(t, st, model.KindPolicy, tid, "p", func(p *model.PolicySpec) {
		p.Validators = []model.ValidatorConfig{testkit.HeaderEquals("x-v", v)}
	})
}

// allows reports whether the gateway's active engine allows GET / with x-v: v.
func allows(e *gateway.Engine, v string) bool {
	if e == nil {
		return false
	}
	req := gateway.RequestFromCheck(&authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/", Host: "x", Headers: map[string]string{"x-v": v}}}}})
	d, err := e.Decide(context.Background(), req)
	return err == nil && d.Allowed
}

// waitBound bounds the waits for an activation.
const waitBound = 20 * time.Second

// enforces is a condition: gateway tid/gw's active engine allows GET /
// with x-v: v.
func enforces(engines *gateway.Engines, tid, v string) func() error {
	return func() error {
		e := engines.Get(tid, "gw")
		if e == nil {
			return errors.New("no engine")
		}
		return testkit.Check(allows(e, v), "the engine at revision %s does not allow x-v: %s", e.Revision, v)
	}
}

func TestSlowActivationDoesNotHoldUpOtherGateways(t *testing.T) {
	st := testkit.Store(t)
	box := testkit.SecretBox(t)
	tenant(t, st, "heavy", "h1") // sorts first: the old loop activated it first
	tenant(t, st, "light", "l1")
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	mgr := bundles.NewManager(st, bundles.NewKeyStore(st, box), log)
	entered := make(chan struct{}, 16)
	release := make(chan struct{})
	engines := gateway.NewEngines(model.GatewayRef{})
	activator := &slowActivator{Activator: &gateway.Activator{Engines: engines}, slow: "heavy", entered: entered, release: release}
	ctx, cancel := context.WithCancel(context.Background())
	mgrDone, runDone := make(chan struct{}), make(chan struct{})
	go func() { _ = mgr.Run(ctx); close(mgrDone) }()
	go func() { _ = (&localBundles{bundles: mgr, activator: activator, log: log}).Run(ctx); close(runDone) }()
	t.Cleanup(func() { cancel(); <-runDone; <-mgrDone })

	testkit.Receive(t, entered, waitBound, "the heavy gateway's activation to start")
	// While it is stuck, the light tenant's bundles activate, changes too.
	testkit.Eventually(t, waitBound, enforces(engines, "light", "l1"), "the light gateway's engine")
	setPolicy(t, st, "light", "l2")
	testkit.Eventually(t, waitBound, enforces(engines, "light", "l2"), "the light gateway's new revision")
	if engines.Get("heavy", "gw") != nil {
		t.Fatal("the heavy gateway is active before its activation finished")
	}
	// A change to the heavy tenant meanwhile: its newest bundle wins.
	setPolicy(t, st, "heavy", "h2")
	close(release)
	testkit.Eventually(t, waitBound, enforces(engines, "heavy", "h2"), "the heavy gateway's newest revision")

	// A deleted gateway's engine goes.
	testkit.Write(t, st, func(ctx context.Context, tx store.Tx) error {
		_, err := tx.Delete(ctx, model.KindGateway, "light", "gw", 0, false)
		return err
	})
	testkit.Eventually(t, waitBound, func() error {
		if e := engines.Get("light", "gw"); e != nil {
			return fmt.Errorf("engine at revision %s still active", e.Revision)
		}
		return nil
	}, "the deleted gateway's engine to go")
}
