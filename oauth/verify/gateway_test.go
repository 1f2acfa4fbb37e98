package verify_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-dev/gatehouse/bundles"
	"github.com/gatehouse-dev/gatehouse/bundleservice"
	"github.com/gatehouse-dev/gatehouse/internal/httpapi"
	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/oauth/verify"
	"github.com/gatehouse-dev/gatehouse/store"
)

// TestGatewayTokensAtTheBundleService: the bundle service admits an
// access token of the gateway's own client, and nothing close to it.
func TestGatewayTokensAtTheBundleService(t *testing.T) {
	w := newWorld(t)
	w.server("acme", model.DefaultServerID)
	w.server("globex", model.DefaultServerID)
	testkit.Create(t, w.store,
		testkit.Gateway("acme", "gw1", model.GatewaySpec{Type: model.GatewayEnvoy, ServerID: model.DefaultServerID}),
		testkit.Gateway("acme", "gw2", model.GatewaySpec{Type: model.GatewayEnvoy, ServerID: model.DefaultServerID}),
		testkit.Gateway("acme", "plain", model.GatewaySpec{Type: model.GatewayEnvoy}))
	for _, c := range []struct{ id, gw string }{{"gateway-gw1", "gw1"}, {"gateway-gw2", "gw2"}, {"web", ""}} {
		raw, _ := json.Marshal(model.ClientSpec{ServerID: model.DefaultServerID, GatewayID: c.gw, System: c.gw != "",
			GrantTypes: []string{model.GrantClientCredentials}})
		testkit.Create(t, w.store, &store.Object{Kind: model.KindClient, TenantID: "acme", ID: c.id, Spec: raw})
	}

	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	mgr := bundles.NewManager(w.store, bundles.NewKeyStore(w.store, testkit.SecretBox(t)), log, bundles.WithPublicURL(public))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = mgr.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	reg := prometheus.NewRegistry()
	v := verify.New(w.store, public, func() time.Time { return w.now }, nil)
	svc, err := bundleservice.New(bundleservice.Options{Store: w.store, Bundles: mgr, Registry: reg, Logger: log,
		GatewayTokens: verify.GatewayAuth{Verifier: v}})
	if err != nil {
		t.Fatal(err)
	}
	m, err := httpapi.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	e := httpapi.NewEngine(log, m)
	svc.Register(e)
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)

	get := func(gw, tok string) int {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/api/system/acme/gateways/"+gw+"/opa/bundle", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	mint := func(tid, client, aud string) string {
		c := w.claims(tid, model.DefaultServerID, client)
		c["client_id"], c["aud"] = client, aud
		return w.token(tid, model.DefaultServerID, c)
	}
	good := mint("acme", "gateway-gw1", model.GatewayAudience("acme", "gw1"))
	testkit.Eventually(t, 10*time.Second, func() error {
		return testkit.Check(get("gw1", good) == http.StatusOK, "gw1's bundle with its client's token")
	})
	for name, c := range map[string]struct {
		gw, tok string
	}{
		"another gateway's client":            {"gw1", mint("acme", "gateway-gw2", model.GatewayAudience("acme", "gw1"))},
		"a client that is no gateway's":       {"gw1", mint("acme", "web", model.GatewayAudience("acme", "gw1"))},
		"the token at another gateway":        {"gw2", good},
		"the server's audience":               {"gw1", mint("acme", "gateway-gw1", model.IssuerURL(public, "acme", "default"))},
		"a gateway without a server":          {"plain", good},
		"another tenant's server, same names": {"gw1", mint("globex", "gateway-gw1", model.GatewayAudience("acme", "gw1"))},
	} {
		if got := get(c.gw, c.tok); got != http.StatusUnauthorized {
			t.Errorf("%s: status %d, want 401", name, got)
		}
	}
}
