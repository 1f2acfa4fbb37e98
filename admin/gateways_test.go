package admin_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/bundleservice"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/policies"
	"github.com/gatehouse-dev/gatehouse/store"
)

// seedService creates a service with one API bound to a policy through the
// store (the services API is tested on its own).
func (e *env) seedService(tid, sid, path, policyID string) {
	e.t.Helper()
	_, err := e.store.Update(context.Background(), func(ctx context.Context, tx store.Tx) error {
		svc, _ := json.Marshal(model.ServiceSpec{URL: "http://" + sid + ".internal"})
		if err := tx.Create(ctx, &store.Object{Kind: model.KindService, TenantID: tid, ID: sid, Name: sid, Spec: svc}); err != nil {
			return err
		}
		api, _ := json.Marshal(model.APISpec{ServiceID: sid, Method: "GET", Path: path, PolicyID: policyID, CanHavePolicy: true})
		return tx.Create(ctx, &store.Object{Kind: model.KindAPI, TenantID: tid, ID: sid + "-api", ParentID: sid, Spec: api})
	})
	if err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) fetchBundle(path, token string, headers ...string) resp {
	e.t.Helper()
	return e.do("GET", path, token, nil, headers...)
}

func TestGatewaysAndBundleService(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	e.createTenant("other")
	e.expect(e.do("POST", "/api/admin/acme/policies", rootToken, map[string]any{"id": "keyed", "policy_name": "keyed", "definition": goodRego}), 201)
	e.seedService("acme", "pets", "/pets/{id}", "keyed")

	gw := e.expect(e.do("POST", "/api/admin/acme/gateways", rootToken, map[string]any{"id": "edge", "name": "edge", "service_ids": []string{"pets"}}), 201).json(t)
	cred := gw["credential"].(map[string]any)
	token := cred["token"].(string)
	if gw["type"] != "envoy" || !strings.HasPrefix(token, "ghg_acme.") {
		t.Fatalf("created gateway: %v", gw)
	}
	e.expect(e.do("POST", "/api/admin/acme/gateways", rootToken, map[string]any{"name": "x", "service_ids": []string{"ghost"}}), 400)
	e.expect(e.do("POST", "/api/admin/acme/gateways", rootToken, map[string]any{"name": "x", "type": "pyron"}), 400)
	creds := e.expect(e.do("GET", "/api/admin/acme/gateways/edge/credentials", rootToken, nil), 200)
	if bytes.Contains(creds.body, []byte(strings.Split(token, ".")[2])) {
		t.Fatal("credential listing leaks the secret")
	}

	bundlePath := "/api/system/acme/gateways/edge/opa/bundle"
	var b resp
	deadline := time.Now().Add(5 * time.Second)
	for b = e.fetchBundle(bundlePath, token); b.status != 200 && time.Now().Before(deadline); b = e.fetchBundle(bundlePath, token) {
		time.Sleep(20 * time.Millisecond)
	}
	if b.status != 200 || b.header.Get("Content-Type") != "application/gzip" || b.header.Get("ETag") == "" {
		t.Fatalf("bundle: %d %v", b.status, b.header)
	}
	keys := e.expect(e.do("GET", "/api/admin/acme/gateways/edge/keys", rootToken, nil), 200).json(t)["keys"].([]any)[0].(map[string]any)
	bundle, err := policies.ReadBundle(b.body, policies.VerificationConfig(keys["kid"].(string), keys["public_key_pem"].(string)))
	if err != nil {
		t.Fatalf("bundle does not verify with the published key: %v", err)
	}
	if `"`+bundle.Manifest.Revision+`"` != b.header.Get("ETag") {
		t.Fatalf("ETag %s vs manifest revision %s", b.header.Get("ETag"), bundle.Manifest.Revision)
	}
	etag := b.header.Get("ETag")
	e.expect(e.fetchBundle(bundlePath, token, "If-None-Match", etag), 304)

	// Long poll: held until the policy changes, then the new bundle.
	type result struct {
		r    resp
		took time.Duration
	}
	done := make(chan result, 1)
	go func() {
		start := time.Now()
		r := e.fetchBundle(bundlePath, token, "If-None-Match", etag, "Prefer", "modes=snapshot,delta;wait=20")
		done <- result{r, time.Since(start)}
	}()
	time.Sleep(200 * time.Millisecond)
	select {
	case r := <-done:
		t.Fatalf("long poll answered before any change: %d", r.r.status)
	default:
	}
	changed := strings.Replace(goodRego, "open-sesame", "new-key", 1)
	e.expect(e.do("PUT", "/api/admin/acme/policies/keyed", rootToken, map[string]any{"policy_name": "keyed", "definition": changed}), 200)
	select {
	case r := <-done:
		if r.r.status != 200 || r.r.header.Get("ETag") == etag || r.r.header.Get("Content-Type") != policies.BundleContentType {
			t.Fatalf("long poll: %d %v", r.r.status, r.r.header)
		}
		if !bytes.Contains(gunzipAll(t, r.r.body), []byte("new-key")) {
			t.Fatal("the long-polled bundle lacks the change")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("long poll did not answer after a change")
	}
	// Long poll that times out: 304.
	cur := e.fetchBundle(bundlePath, token).header.Get("ETag")
	start := time.Now()
	if r := e.fetchBundle(bundlePath, token, "If-None-Match", cur, "Prefer", "wait=1"); r.status != 304 || time.Since(start) < 900*time.Millisecond {
		t.Fatalf("long poll without change: %d after %v", r.status, time.Since(start))
	}

	// Credentials: wrong, another tenant's, another gateway's, revoked.
	other := e.expect(e.do("POST", "/api/admin/other/gateways", rootToken, map[string]any{"id": "edge", "name": "edge"}), 201).json(t)["credential"].(map[string]any)["token"].(string)
	second := e.expect(e.do("POST", "/api/admin/acme/gateways", rootToken, map[string]any{"id": "second", "name": "second"}), 201).json(t)["credential"].(map[string]any)["token"].(string)
	for _, c := range []struct {
		token  string
		status int
	}{
		{"", 401}, {"ghg_acme.nope.nope", 401}, {token[:len(token)-2] + "xx", 401}, {rootToken, 401},
		{other, 403}, {second, 403},
	} {
		if r := e.fetchBundle(bundlePath, c.token); r.status != c.status {
			t.Errorf("token %.20s…: %d, want %d", c.token, r.status, c.status)
		}
	}
	e.expect(e.do("DELETE", "/api/admin/acme/gateways/edge/credentials/"+cred["id"].(string), rootToken, nil), 204)
	e.expect(e.fetchBundle(bundlePath, token), 401)
	fresh := e.expect(e.do("POST", "/api/admin/acme/gateways/edge/credentials", rootToken, nil), 201).json(t)["token"].(string)
	e.expect(e.fetchBundle(bundlePath, fresh), 200)

	// Status reports and decision logs.
	// Many instances: only the most recently seen are remembered.
	for i := 0; i < 40; i++ {
		e.expect(e.do("POST", "/api/system/acme/gateways/edge/opa/status", fresh, fmt.Sprintf(`{"labels":{"id":"old-%d"}}`, i)), 204)
	}
	status := `{"labels":{"id":"opa-1","version":"1.22.2"},"bundles":{"edge":{"name":"edge","active_revision":"7","last_successful_activation":"2026-11-23T10:00:00Z"}},"plugins":{"bundle":{"state":"OK"}}}`
	e.expect(e.do("POST", "/api/system/acme/gateways/edge/opa/status", fresh, status), 204)
	st := e.expect(e.do("GET", "/api/admin/acme/gateways/edge", rootToken, nil), 200).json(t)["status"].(map[string]any)
	opa := st["opa"].(map[string]any)
	if n := len(opa["instances"].([]any)); n != 32 {
		t.Fatalf("%d OPA instances remembered, want 32", n)
	}
	if opa["active_revision"] != "7" || opa["instances"].([]any)[0].(map[string]any)["id"] != "opa-1" || st["bundle"].(map[string]any)["revision"] == nil {
		t.Fatalf("status: %v", st)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(`[{"decision_id":"d1","result":{"allowed":true}},{"decision_id":"d2","result":{"allowed":false}}]`))
	zw.Close()
	req, _ := http.NewRequest("POST", e.srv.URL+"/api/system/acme/gateways/edge/opa/logs", &gz)
	req.Header.Set("Authorization", "Bearer "+fresh)
	req.Header.Set("Content-Encoding", "gzip")
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil || res.StatusCode != 204 {
		t.Fatalf("upload logs: %v %v", err, res)
	}
	decisions := e.expect(e.do("GET", "/api/admin/acme/gateways/edge/decisions", rootToken, nil), 200).json(t)["decisions"].([]any)
	if len(decisions) != 2 || decisions[0].(map[string]any)["event"].(map[string]any)["decision_id"] != "d2" {
		t.Fatalf("decisions: %v", decisions)
	}
	e.expect(e.do("POST", "/api/system/acme/gateways/edge/opa/logs", fresh, `{"not":"an array"}`), 400)

	// Deleting the gateway revokes its credentials and its bundle, and a
	// gateway created later with the same id inherits none of its decision
	// logs or status.
	// Its authorizer learns of the deletion (404 gateway_not_found), in a
	// long poll held when it happens and with its credential afterwards,
	// even once a gateway with the same id exists again; a wrong secret
	// learns nothing.
	cur = e.fetchBundle(bundlePath, fresh).header.Get("ETag")
	polled := make(chan resp, 1)
	go func() { polled <- e.fetchBundle(bundlePath, fresh, "If-None-Match", cur, "Prefer", "wait=20") }()
	e.expect(e.do("DELETE", "/api/admin/acme/gateways/edge", rootToken, nil), 204)
	gone := func(r resp) {
		t.Helper()
		if r.status != 404 || r.json(t)["error_code"] != bundleservice.CodeGatewayNotFound {
			t.Fatalf("a deleted gateway's credential: %d %s", r.status, r.body)
		}
	}
	select {
	case r := <-polled:
		gone(r)
	case <-time.After(10 * time.Second):
		t.Fatal("the long poll did not end with the deletion")
	}
	gone(e.fetchBundle(bundlePath, fresh))
	gone(e.do("POST", "/api/system/acme/gateways/edge/opa/status", fresh, status))
	e.expect(e.fetchBundle(bundlePath, fresh[:len(fresh)-2]+"xx"), 401)
	e.expect(e.do("POST", "/api/admin/acme/gateways", rootToken, map[string]any{"id": "edge", "name": "edge"}), 201)
	gone(e.fetchBundle(bundlePath, fresh))
	if ds := e.expect(e.do("GET", "/api/admin/acme/gateways/edge/decisions", rootToken, nil), 200).json(t)["decisions"].([]any); len(ds) != 0 {
		t.Fatalf("a new gateway inherited decisions: %v", ds)
	}
	if st := e.expect(e.do("GET", "/api/admin/acme/gateways/edge", rootToken, nil), 200).json(t)["status"].(map[string]any)["opa"].(map[string]any); len(st["instances"].([]any)) != 0 || st["last_fetch"] != nil {
		t.Fatalf("a new gateway inherited status: %v", st)
	}
}

func gunzipAll(t *testing.T, b []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(zr)
	return out
}
