package admin_test

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/admin"
	"github.com/gatehouse-dev/gatehouse/envoy"
	"github.com/gatehouse-dev/gatehouse/gatewaycred"
)

var _ admin.XDSStatusSource = (*envoy.Server)(nil)

func TestGatewayStatusShowsXDS(t *testing.T) {
	e := newEnv(t)
	xs, err := envoy.New(envoy.Options{Bundles: e.bundles, AuthorizerAddress: "127.0.0.1:9191",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Credentials: gatewaycred.New(e.store, nil)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = xs.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	api, err := admin.New(admin.Options{Store: e.store, BootstrapToken: rootToken, Bundles: e.bundles, Keys: e.keys, XDS: xs})
	if err != nil {
		t.Fatal(err)
	}
	withXDS := *e
	withXDS.srv = httptest.NewServer(api.Handler())
	t.Cleanup(withXDS.srv.Close)

	withXDS.createTenant("acme")
	withXDS.seedService("acme", "pets", "/pets/{id}", "")
	withXDS.expect(withXDS.do("POST", "/api/admin/acme/gateways", rootToken, map[string]any{"id": "edge", "name": "edge"}), 201)
	var xds map[string]any
	deadline := time.Now().Add(5 * time.Second)
	for {
		st := withXDS.expect(withXDS.do("GET", "/api/admin/acme/gateways/edge", rootToken, nil), 200).json(t)["status"].(map[string]any)
		xds, _ = st["xds"].(map[string]any)
		if xds != nil && xds["version"] != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status.xds never got a version: %v", st)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if xds["node_id"] != "acme/edge" || xds["nodes"] == nil {
		t.Fatalf("status.xds: %v", xds)
	}

	// Without a control plane there is no status.xds.
	st := e.expect(e.do("GET", "/api/admin/acme/gateways/edge", rootToken, nil), 200).json(t)["status"].(map[string]any)
	if _, ok := st["xds"]; ok {
		t.Fatalf("status.xds without a control plane: %v", st)
	}
}
