package local_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/gatehouse-dev/gatehouse/bundles"
	"github.com/gatehouse-dev/gatehouse/gateway"
	"github.com/gatehouse-dev/gatehouse/gateway/local"
	"github.com/gatehouse-dev/gatehouse/internal/secretbox"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/store"
	"github.com/gatehouse-dev/gatehouse/store/embedded"
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

func write(t *testing.T, st store.Store, fn func(ctx context.Context, tx store.Tx) error) {
	t.Helper()
	if _, err := st.Update(context.Background(), fn); err != nil {
		t.Fatal(err)
	}
}

// tenant stores a tenant with one gateway, service, API and validators
// policy (header x-v equals v).
func tenant(t *testing.T, st store.Store, tid, v string) {
	write(t, st, func(ctx context.Context, tx store.Tx) error {
		objs := []*store.Object{
			{Kind: model.KindTenant, ID: tid, Spec: []byte(`{"name":"` + tid + `","status":"AVAILABLE"}`)},
			{Kind: model.KindService, TenantID: tid, ID: "s", Name: "s", Spec: []byte(`{"url":"http://s.internal"}`)},
			{Kind: model.KindAPI, TenantID: tid, ID: "a", ParentID: "s", Spec: []byte(`{"service_id":"s","method":"GET","path":"/","policy_id":"p"}`)},
			{Kind: model.KindGateway, TenantID: tid, ID: "gw", Name: "gw", Spec: []byte(`{"type":"envoy"}`)},
		}
		for _, o := range objs {
			if err := tx.Create(ctx, o); err != nil {
				return err
			}
		}
		return setPolicy(ctx, tx, tid, v, true)
	})
}

func setPolicy(ctx context.Context, tx store.Tx, tid, v string, create bool) error {
	spec, _ := json.Marshal(model.PolicySpec{Language: model.LanguageValidators,
		Validators: []model.ValidatorConfig{{Name: "header", Conf: map[string]any{"name": "x-v", "value": v}}}})
	if create {
		return tx.Create(ctx, &store.Object{Kind: model.KindPolicy, TenantID: tid, ID: "p", Name: "p", Spec: spec})
	}
	o, err := tx.Get(ctx, model.KindPolicy, tid, "p")
	if err != nil {
		return err
	}
	o.Spec = spec
	return tx.Update(ctx, o, 0)
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

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestSlowActivationDoesNotHoldUpOtherGateways(t *testing.T) {
	st, err := embedded.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	box, err := secretbox.New(bytes.Repeat([]byte{9}, secretbox.KeySize))
	if err != nil {
		t.Fatal(err)
	}
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
	go func() { local.Run(ctx, mgr, activator, log); close(runDone) }()
	t.Cleanup(func() { cancel(); <-runDone; <-mgrDone; st.Close() })

	select {
	case <-entered:
	case <-time.After(20 * time.Second):
		t.Fatal("the heavy gateway's activation never started")
	}
	// While it is stuck, the light tenant's bundles activate, changes too.
	eventually(t, "the light gateway's engine", func() bool { return allows(engines.Get("light", "gw"), "l1") })
	write(t, st, func(ctx context.Context, tx store.Tx) error { return setPolicy(ctx, tx, "light", "l2", false) })
	eventually(t, "the light gateway's new revision", func() bool { return allows(engines.Get("light", "gw"), "l2") })
	if engines.Get("heavy", "gw") != nil {
		t.Fatal("the heavy gateway is active before its activation finished")
	}
	// A change to the heavy tenant meanwhile: its newest bundle wins.
	write(t, st, func(ctx context.Context, tx store.Tx) error { return setPolicy(ctx, tx, "heavy", "h2", false) })
	close(release)
	eventually(t, "the heavy gateway's newest revision", func() bool { return allows(engines.Get("heavy", "gw"), "h2") })

	// A deleted gateway's engine goes.
	write(t, st, func(ctx context.Context, tx store.Tx) error {
		_, err := tx.Delete(ctx, model.KindGateway, "light", "gw", 0, false)
		return err
	})
	eventually(t, "the deleted gateway's engine to go", func() bool { return engines.Get("light", "gw") == nil })
}
