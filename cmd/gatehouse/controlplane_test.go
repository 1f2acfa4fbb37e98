package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-dev/gatehouse/admin"
	"github.com/gatehouse-dev/gatehouse/bundles"
	"github.com/gatehouse-dev/gatehouse/bundleservice"
	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	oauthkeys "github.com/gatehouse-dev/gatehouse/oauth/keys"
	"github.com/gatehouse-dev/gatehouse/store"
)

// testToken is the bootstrap (system-wide) admin token of testControlPlane.
const testToken = "cmd-test-bootstrap-token-0123456789"

// testControlPlane is the control plane as serve composes it, in process:
// the admin API with the bundle service mounted on its engine, over a
// bundle manager following an embedded store, on a loopback port.
type testControlPlane struct {
	t       *testing.T
	URL     string
	store   store.Store
	bundles *bundles.Manager
	keys    *bundles.KeyStore
}

func startControlPlane(t *testing.T) *testControlPlane {
	t.Helper()
	st := testkit.Store(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	box := testkit.SecretBox(t)
	scheme, err := admin.NewScheme()
	if err != nil {
		t.Fatal(err)
	}
	keys := bundles.NewKeyStore(st, box)
	mgr := bundles.NewManager(st, keys, log, bundles.WithInputs(scheme.Bundled()))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = mgr.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	reg := prometheus.NewRegistry()
	bsvc, err := bundleservice.New(bundleservice.Options{Store: st, Bundles: mgr, Registry: reg, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	api, err := admin.New(admin.Options{Store: st, BootstrapToken: testToken, Logger: log, Registry: reg, Bundles: mgr, Keys: keys,
		Scheme: scheme, Mount: bsvc.Register, ServerKeys: oauthkeys.NewManager(st, box), SecretBox: box})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.Handler())
	t.Cleanup(srv.Close)
	return &testControlPlane{t: t, URL: srv.URL, store: st, bundles: mgr, keys: keys}
}

// call sends a request with the bootstrap token and returns the status and
// body.
func (cp *testControlPlane) call(method, path string, body any, header ...string) (int, []byte, http.Header) {
	cp.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			cp.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, cp.URL+path, rd)
	if err != nil {
		cp.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testToken)
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cp.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		cp.t.Fatal(err)
	}
	return resp.StatusCode, b, resp.Header
}

// must is call expecting status.
func (cp *testControlPlane) must(status int, method, path string, body any, header ...string) []byte {
	cp.t.Helper()
	got, b, _ := cp.call(method, path, body, header...)
	if got != status {
		cp.t.Fatalf("%s %s: %d, want %d: %s", method, path, got, status, b)
	}
	return b
}

// export is the tenant's configuration document.
func (cp *testControlPlane) export(tid string) []byte {
	cp.t.Helper()
	return cp.must(200, "GET", "/api/system/configuration?tid="+tid, nil)
}

// seedTenant configures tenant tid: a Rego and a validators policy, two
// services with APIs, a scope, an issuer and the gateways edge (envoy,
// service pets) and mesh (grpc, every service). It returns edge's
// credential.
func (cp *testControlPlane) seedTenant(tid string) string {
	cp.t.Helper()
	cp.must(201, "POST", "/api/system/tenants", map[string]any{"id": tid, "name": "Tenant " + tid})
	base := "/api/admin/" + tid
	cp.must(201, "POST", base+"/policies", map[string]any{"id": "keyed", "policy_name": "keyed", "definition": "package policy\n\n" +
		"default allow := false\n\nallow if input.attributes.request.http.headers[\"x-key\"] == \"open-sesame\"\n\nreason := \"no key\" if not allow\n"})
	cp.must(201, "POST", base+"/policies", map[string]any{"id": "hdr", "policy_name": "header check",
		"validators": []any{map[string]any{"name": "header", "conf": map[string]any{"name": "x-team", "value": "blue"}}}})
	cp.must(201, "POST", base+"/services", map[string]any{"id": "pets", "name": "Pets", "url": "http://pets.internal:8080", "hosts": []string{"pets.example.com"}})
	cp.must(201, "POST", base+"/services", map[string]any{"id": "shop", "name": "Shop", "url": "https://shop.internal"})
	cp.must(201, "POST", base+"/apis", map[string]any{"id": "get-pet", "service_id": "pets", "method": "GET", "path": "/pets/{id}", "policy_id": "keyed"})
	cp.must(201, "POST", base+"/apis", map[string]any{"id": "health", "service_id": "pets", "method": "GET", "path": "/health", "public": true})
	cp.must(201, "POST", base+"/apis", map[string]any{"id": "items", "service_id": "shop", "method": "GET", "path": "/items", "policy_id": "hdr"})
	cp.must(201, "POST", base+"/scopes", map[string]any{"id": "pets-read", "name": "pets.read", "service_id": "pets"})
	cp.must(201, "POST", base+"/issuers", map[string]any{"id": "remote", "name": "Remote", "issuer": "https://login.example.org",
		"audiences": []string{"pets"}, "jwks_uri": "https://login.example.org/keys"})
	var gw struct {
		Credential struct {
			Token string `json:"token"`
		} `json:"credential"`
	}
	if err := json.Unmarshal(cp.must(201, "POST", base+"/gateways", map[string]any{"id": "edge", "name": "Edge", "service_ids": []string{"pets"}}), &gw); err != nil {
		cp.t.Fatal(err)
	}
	cp.must(201, "POST", base+"/gateways", map[string]any{"id": "mesh", "name": "Mesh", "type": "grpc"})
	return gw.Credential.Token
}

// bundle waits for the gateway's bundle to be built at the store's
// current configuration and returns it.
func (cp *testControlPlane) bundle(tid, gw string) *bundles.Bundle {
	cp.t.Helper()
	var b *bundles.Bundle
	testkit.Eventually(cp.t, 10*time.Second, func() error {
		b = cp.bundles.Get(tid, gw)
		return testkit.Check(b != nil, "no bundle yet")
	}, "the bundle of %s/%s", tid, gw)
	return b
}

// served fetches the gateway's bundle from the bundle service with a
// gateway credential, as an authorizer or OPA does.
func (cp *testControlPlane) served(tid, gw, credential string) []byte {
	cp.t.Helper()
	req, err := http.NewRequest("GET", cp.URL+"/api/system/"+tid+"/gateways/"+gw+"/opa/bundle", nil)
	if err != nil {
		cp.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+credential)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cp.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		cp.t.Fatalf("bundle service: %d %s", resp.StatusCode, b)
	}
	return b
}

// runCLI runs gatehouse with args in process and returns its output and
// error.
func runCLI(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	root := newRootCommand(&out, &errOut)
	root.SetArgs(args)
	err = root.ExecuteContext(context.Background())
	return out.String(), errOut.String(), err
}

// mustContain fails unless s contains every part.
func mustContain(t *testing.T, what, s string, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if !strings.Contains(s, p) {
			t.Fatalf("%s lacks %q:\n%s", what, p, s)
		}
	}
}
