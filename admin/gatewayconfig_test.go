package admin_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/admin"
	"github.com/gatehouse-dev/gatehouse/envoy"
	"github.com/gatehouse-dev/gatehouse/gatewaycred"
	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/policies"
	"github.com/gatehouse-dev/gatehouse/store"
)

var _ admin.XDSConfigSource = (*envoy.Server)(nil)

// newEnvWithXDS is newEnv with a running xDS server over its bundles, as
// serve and control-plane run one.
func newEnvWithXDS(t *testing.T) *env {
	t.Helper()
	var xs *envoy.Server
	e := newEnvWith(t, func(o *admin.Options) {
		var err error
		xs, err = envoy.New(envoy.Options{Bundles: o.Bundles, AuthorizerAddress: "authz.internal:9191",
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Credentials: gatewaycred.New(o.Store, nil)})
		if err != nil {
			t.Fatal(err)
		}
		o.XDS, o.XDSConfig, o.XDSPublicAddress = xs, xs, "xds.example.com:18000"
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = xs.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return e
}

// generatedConfigTenant makes tenant tid with a service, an API bound to a
// Rego policy and a gateway edge, and returns edge's credential.
func (e *env) generatedConfigTenant(tid string) string {
	e.t.Helper()
	e.createTenant(tid)
	base := "/api/admin/" + tid
	e.expect(e.do("POST", base+"/policies", rootToken, map[string]any{"id": "keyed", "policy_name": "keyed", "definition": goodRego}), 201)
	e.expect(e.do("POST", base+"/services", rootToken, map[string]any{"id": "pets", "name": "Pets", "url": "https://pets.internal:8443",
		"hosts": []string{"pets.example.com"}}), 201)
	e.expect(e.do("POST", base+"/apis", rootToken, map[string]any{"id": "get-pet", "service_id": "pets", "method": "GET",
		"path": "/pets/{id}", "policy_id": "keyed"}), 201)
	gw := e.expect(e.do("POST", base+"/gateways", rootToken, map[string]any{"id": "edge", "name": "Edge", "service_ids": []string{"pets"}}), 201).json(e.t)
	return gw["credential"].(map[string]any)["token"].(string)
}

func TestGatewayEnvoyConfig(t *testing.T) {
	e := newEnvWithXDS(t)
	gwToken := e.generatedConfigTenant("acme")
	e.createTenant("other")
	acme, other := e.credential("acme"), e.credential("other")
	const path = "/api/admin/acme/gateways/edge/envoy-config"

	var body map[string]any
	testkit.Eventually(t, 10*time.Second, func() error {
		r := e.do("GET", path, acme, nil)
		if r.status == 503 {
			if code := r.errorCode(t); code != admin.CodeNotBuilt || r.header.Get("Retry-After") == "" {
				t.Fatalf("503 %s: %s", code, r.body)
			}
			return errors.New("not built yet")
		}
		body = e.expect(r, 200).json(t)
		return nil
	}, "the envoy config of acme/edge")

	t.Run("it is the snapshot the status reports, with the ext_authz filter and the routes", func(t *testing.T) {
		st := e.expect(e.do("GET", "/api/admin/acme/gateways/edge", acme, nil), 200).json(t)["status"].(map[string]any)["xds"].(map[string]any)
		if body["tenant_id"] != "acme" || body["gateway_id"] != "edge" || body["node_id"] != "acme/edge" || body["version"] != st["version"] {
			t.Fatalf("envoy-config %v, status.xds %v", body, st)
		}
		raw, _ := json.Marshal(body["config_dump"])
		for _, want := range []string{"type.googleapis.com/envoy.admin.v3.ListenersConfigDump", "type.googleapis.com/envoy.admin.v3.ClustersConfigDump",
			"type.googleapis.com/envoy.admin.v3.RoutesConfigDump", "envoy.filters.http.ext_authz", "/pets/", "pets.example.com",
			envoy.ServiceClusterName("pets"), `"context_extensions"`} {
			if !strings.Contains(string(raw), want) {
				t.Errorf("the config dump lacks %s", want)
			}
		}
		if strings.Contains(string(raw), "PRIVATE KEY") || strings.Contains(string(raw), gwToken) {
			t.Fatal("the config dump carries a secret")
		}
	})
	t.Run("the system token may read it too", func(t *testing.T) {
		e.expect(e.do("GET", path, rootToken, nil), 200)
	})
	t.Run("another tenant's admin is refused", func(t *testing.T) {
		if code := e.expect(e.do("GET", path, other, nil), 403).errorCode(t); code != "forbidden" {
			t.Fatal(code)
		}
	})
	t.Run("the gateway's own credential does not authenticate here", func(t *testing.T) {
		if code := e.expect(e.do("GET", path, gwToken, nil), 401).errorCode(t); code != "unauthorized" {
			t.Fatal(code)
		}
	})
	t.Run("an unknown gateway is a 404", func(t *testing.T) {
		if code := e.expect(e.do("GET", "/api/admin/acme/gateways/nope/envoy-config", acme, nil), 404).errorCode(t); code != "not_found" {
			t.Fatal(code)
		}
	})
	t.Run("a gateway whose bundle does not build is a 409 naming why", func(t *testing.T) {
		testkit.Write(t, e.store, func(ctx context.Context, tx store.Tx) error {
			return brokenGateway(ctx, tx, "acme")
		})
		r := e.waitStatus("/api/admin/acme/gateways/broken/envoy-config", acme, 409)
		if code := r.errorCode(t); code != admin.CodeBuildFailed || !strings.Contains(string(r.body), "broken-api") {
			t.Fatalf("%s: %s", code, r.body)
		}
	})
}

// brokenGateway stores a gateway with an API whose path does not parse,
// straight into the store (the admin API refuses it): its bundle never
// builds.
func brokenGateway(ctx context.Context, tx store.Tx, tid string) error {
	svc, _ := json.Marshal(model.ServiceSpec{URL: "http://broken.internal", Hosts: []string{"broken.example.com"}})
	if err := tx.Create(ctx, &store.Object{Kind: model.KindService, TenantID: tid, ID: "broken", Name: "broken", Spec: svc}); err != nil {
		return err
	}
	api, _ := json.Marshal(model.APISpec{ServiceID: "broken", Method: "GET", Path: "/a/{", CanHavePolicy: true})
	if err := tx.Create(ctx, &store.Object{Kind: model.KindAPI, TenantID: tid, ID: "broken-api", Name: "broken-api", ParentID: "broken", Spec: api}); err != nil {
		return err
	}
	gw, _ := json.Marshal(model.GatewaySpec{Type: model.GatewayEnvoy, ServiceIDs: []string{"broken"}})
	return tx.Create(ctx, &store.Object{Kind: model.KindGateway, TenantID: tid, ID: "broken", Name: "broken", Spec: gw})
}

// waitStatus polls GET path until it answers status (the bundle manager
// and the xDS server catch up with the store) and returns that answer.
func (e *env) waitStatus(path, token string, status int) resp {
	e.t.Helper()
	var r resp
	testkit.Eventually(e.t, 10*time.Second, func() error {
		r = e.do("GET", path, token, nil)
		return testkit.Check(r.status == status, "%d %s", r.status, r.body)
	}, "GET %s to answer %d", path, status)
	return r
}

// Without an xDS server (control-plane or serve with --xds-addr "") the
// route says so; the gateway must exist all the same.
func TestGatewayEnvoyConfigWithoutXDS(t *testing.T) {
	e := newEnv(t)
	e.generatedConfigTenant("acme")
	r := e.expect(e.do("GET", "/api/admin/acme/gateways/edge/envoy-config", rootToken, nil), 400)
	if code := r.errorCode(t); code != admin.CodeXDSDisabled || !strings.Contains(string(r.body), "--xds-addr") {
		t.Fatalf("%s: %s", code, r.body)
	}
	e.expect(e.do("GET", "/api/admin/acme/gateways/nope/envoy-config", rootToken, nil), 404)
}

func TestGatewayBundleContent(t *testing.T) {
	e := newEnv(t)
	gwToken := e.generatedConfigTenant("acme")
	e.createTenant("other")
	acme, other := e.credential("acme"), e.credential("other")
	e.waitBundles("acme", "edge")
	const path = "/api/admin/acme/gateways/edge/bundle-content"
	r := e.expect(e.do("GET", path, acme, nil), 200)
	var body struct {
		Revision int64           `json:"revision"`
		ETag     string          `json:"etag"`
		Hash     string          `json:"hash"`
		KeyID    string          `json:"key_id"`
		Bytes    int             `json:"bytes"`
		Manifest map[string]any  `json:"manifest"`
		Data     json.RawMessage `json:"data"`
		Modules  []struct {
			Path     string `json:"path"`
			PolicyID string `json:"policy_id"`
			Source   string `json:"source"`
			SHA256   string `json:"sha256"`
			Bytes    int    `json:"bytes"`
		} `json:"modules"`
		Files []struct {
			Path  string `json:"path"`
			Bytes int    `json:"bytes"`
		} `json:"files"`
	}
	if err := json.Unmarshal(r.body, &body); err != nil {
		t.Fatal(err)
	}
	b := e.bundles.Get("acme", "edge")

	t.Run("it is the bundle the bundle service serves, file for file", func(t *testing.T) {
		if body.Revision != b.Revision || body.ETag != b.ETag() || r.header.Get("ETag") != b.ETag() || body.Hash != b.Hash ||
			body.KeyID != b.KeyID || body.Bytes != len(b.Raw) {
			t.Fatalf("bundle-content %s, bundle revision %d etag %s", r.body, b.Revision, b.ETag())
		}
		served, err := policies.ReadBundle(e.expect(e.fetchBundle("/api/system/acme/gateways/edge/opa/bundle", gwToken), 200).body, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(body.Modules) != len(served.Modules) {
			t.Fatalf("%d modules, the bundle has %d", len(body.Modules), len(served.Modules))
		}
		sources := map[string]string{}
		for _, m := range served.Modules {
			sources[strings.TrimPrefix(m.Path, "/")] = string(m.Raw)
		}
		policyModules := 0
		for _, m := range body.Modules {
			if sources[m.Path] != m.Source || m.Bytes != len(m.Source) {
				t.Fatalf("module %s differs from the bundle's", m.Path)
			}
			if m.PolicyID != "" {
				policyModules++
				if m.PolicyID != "keyed" || !strings.Contains(m.Source, `"open-sesame"`) {
					t.Fatalf("module %s attributed to %q", m.Path, m.PolicyID)
				}
			}
		}
		if policyModules != 1 {
			t.Fatalf("%d modules attributed to a policy, want 1", policyModules)
		}
		var data any
		if err := json.Unmarshal(body.Data, &data); err != nil {
			t.Fatal(err)
		}
		raw, _ := json.Marshal(served.Data)
		if gotJ, _ := json.Marshal(data); string(gotJ) != string(raw) {
			t.Fatalf("data differs from the bundle's data.json:\n%s\n%s", gotJ, raw)
		}
		if body.Manifest["revision"] != served.Manifest.Revision {
			t.Fatalf("manifest %v, bundle's revision %s", body.Manifest, served.Manifest.Revision)
		}
		names := map[string]bool{}
		for _, f := range body.Files {
			names[f.Path] = true
		}
		for _, want := range []string{".manifest", "data.json", ".signatures.json"} {
			if !names[want] {
				t.Fatalf("files lack %s: %v", want, body.Files)
			}
		}
	})
	t.Run("If-None-Match with its ETag is a 304", func(t *testing.T) {
		e.expect(e.do("GET", path, acme, nil, "If-None-Match", b.ETag()), 304)
	})
	t.Run("access: another tenant 403, the gateway credential 401, an unknown gateway 404", func(t *testing.T) {
		e.expect(e.do("GET", path, other, nil), 403)
		e.expect(e.do("GET", path, gwToken, nil), 401)
		e.expect(e.do("GET", "/api/admin/acme/gateways/nope/bundle-content", acme, nil), 404)
		e.expect(e.do("GET", "/api/admin/other/gateways/edge/bundle-content", other, nil), 404)
	})
	t.Run("a gateway whose bundle never built is a 409 naming why", func(t *testing.T) {
		testkit.Write(t, e.store, func(ctx context.Context, tx store.Tx) error { return brokenGateway(ctx, tx, "acme") })
		r := e.waitStatus("/api/admin/acme/gateways/broken/bundle-content", acme, 409)
		if code := r.errorCode(t); code != admin.CodeBuildFailed || !strings.Contains(string(r.body), "broken-api") {
			t.Fatalf("%s: %s", code, r.body)
		}
	})
}
