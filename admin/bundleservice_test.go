package admin_test

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/admin"
)

// bundleGateway makes tenant acme with gateway edge and returns the
// gateway's credential once its bundle is served.
func (e *env) bundleGateway() string {
	e.t.Helper()
	e.createTenant("acme")
	e.expect(e.do("POST", "/api/admin/acme/policies", rootToken, map[string]any{"id": "keyed", "policy_name": "keyed", "definition": goodRego}), 201)
	e.seedService("acme", "pets", "/pets/{id}", "keyed")
	token := e.expect(e.do("POST", "/api/admin/acme/gateways", rootToken, map[string]any{"id": "edge", "name": "edge", "service_ids": []string{"pets"}}), 201).
		json(e.t)["credential"].(map[string]any)["token"].(string)
	e.waitBundle(bundlePath, token)
	return token
}

const bundlePath = "/api/system/acme/gateways/edge/opa/bundle"

// poll is a bundle request that also says whether the server asked to
// close the connection (Connection: close, which the client removes from
// the header).
type poll struct {
	resp
	close bool
}

func (e *env) poll(token, etag string) poll {
	req, err := http.NewRequest("GET", e.srv.URL+bundlePath, nil)
	if err != nil {
		e.t.Error(err)
		return poll{}
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("If-None-Match", etag)
	req.Header.Set("Prefer", "wait=30")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Error(err)
		return poll{}
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return poll{resp{status: res.StatusCode, header: res.Header, body: b}, res.Close}
}

// TestDrainAnswersLongPolls: Drain answers a parked long poll at once (304:
// the caller has the current bundle), later long polls are not held, a
// caller with another ETag gets the bundle, and every answer asks the
// client to close the connection.
func TestDrainAnswersLongPolls(t *testing.T) {
	e := newEnv(t)
	token := e.bundleGateway()
	etag := e.expect(e.fetchBundle(bundlePath, token), 200).header.Get("ETag")

	polled := make(chan poll, 1)
	go func() { polled <- e.poll(token, etag) }()
	select {
	case r := <-polled:
		t.Fatalf("the long poll was answered before any change or drain: %d %s", r.status, r.body)
	case <-time.After(300 * time.Millisecond):
	}
	e.api.Drain()
	select {
	case r := <-polled:
		if r.status != 304 || r.header.Get("ETag") != etag || !r.close {
			t.Fatalf("the parked long poll after Drain: %d %v %s", r.status, r.header, r.body)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Drain did not answer the parked long poll")
	}

	start := time.Now()
	if r := e.poll(token, etag); r.status != 304 || !r.close || time.Since(start) > 5*time.Second {
		t.Fatalf("a long poll after Drain: %d (close %v) after %v", r.status, r.close, time.Since(start))
	}
	r := e.poll(token, `"0"`)
	if r.status != 200 || r.header.Get("ETag") != etag || len(r.body) == 0 || !r.close {
		t.Fatalf("a long poll with another ETag after Drain: %d %v", r.status, r.header)
	}
}

// TestDisabledTenantGetsNoBundle: the gateways of a DISABLED tenant are
// refused their bundle (403 tenant_disabled, with or without an ETag)
// while their status reports and decision logs are still taken; once the
// tenant is enabled again the bundle is served and the gateway's status
// shows what its authorizer reported meanwhile.
func TestDisabledTenantGetsNoBundle(t *testing.T) {
	e := newEnv(t)
	token := e.bundleGateway()
	etag := e.expect(e.fetchBundle(bundlePath, token), 200).header.Get("ETag")

	e.expect(e.do("PUT", "/api/system/tenants/acme", rootToken, map[string]any{"name": "Acme", "status": "DISABLED"}), 200)
	for _, r := range []resp{
		e.fetchBundle(bundlePath, token),
		e.fetchBundle(bundlePath, token, "If-None-Match", etag),
		e.fetchBundle(bundlePath, token, "If-None-Match", etag, "Prefer", "wait=5"),
	} {
		if r.status != 403 || r.errorCode(t) != admin.CodeTenantDisabled || r.json(t)["details"].(map[string]any)["tenant_id"] != "acme" {
			t.Fatalf("a disabled tenant's bundle: %d %s", r.status, r.body)
		}
	}
	report := `{"labels":{"id":"authz-1"},"bundles":{"gatehouse":{"name":"gatehouse","active_revision":"` + strings.Trim(etag, `"`) +
		`","code":"tenant_disabled","message":"the tenant is disabled"}},"plugins":{"bundle":{"state":"ERROR"}}}`
	e.expect(e.do("POST", "/api/system/acme/gateways/edge/opa/status", token, report), 204)
	e.expect(e.do("POST", "/api/system/acme/gateways/edge/opa/logs", token, `[{"decision_id":"d1","result":{"allowed":true}}]`), 204)

	e.expect(e.do("PUT", "/api/system/tenants/acme", rootToken, map[string]any{"name": "Acme", "status": "AVAILABLE"}), 200)
	if r := e.fetchBundle(bundlePath, token); r.status != 200 || r.header.Get("ETag") == "" {
		t.Fatalf("the bundle after re-enabling: %d %s", r.status, r.body)
	}
	opa := e.expect(e.do("GET", "/api/admin/acme/gateways/edge", rootToken, nil), 200).json(t)["status"].(map[string]any)["opa"].(map[string]any)
	errs := opa["errors"].([]any)
	if opa["active_revision"] != strings.Trim(etag, `"`) || len(errs) != 1 || !strings.Contains(errs[0].(string), "tenant_disabled") {
		t.Fatalf("status.opa after the disabled period: %v", opa)
	}
}

// TestClientAheadOfThisReplicaIsNotSentAnOlderBundle: a replica whose
// change feed lags may hold an older revision than the one an authorizer
// already has from another replica; it answers 304 (after the long-poll
// wait, or at once without one) instead of the older bundle, which the
// authorizer would refuse as a rollback.
func TestClientAheadOfThisReplicaIsNotSentAnOlderBundle(t *testing.T) {
	e := newEnv(t)
	token := e.bundleGateway()
	cur := e.expect(e.fetchBundle(bundlePath, token), 200).header.Get("ETag")
	rev, err := strconv.ParseInt(strings.Trim(cur, `"`), 10, 64)
	if err != nil {
		t.Fatalf("ETag %q", cur)
	}
	ahead := fmt.Sprintf(`"%d"`, rev+1000)
	req, _ := http.NewRequest("GET", e.srv.URL+bundlePath, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("If-None-Match", ahead)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 304 || res.Header.Get("ETag") != ahead {
		t.Fatalf("a client ahead, no wait: %d ETag %q, want 304 with its own ETag", res.StatusCode, res.Header.Get("ETag"))
	}
	// With a long poll, the wait ends in 304 too (Drain ends it at once).
	polled := make(chan poll, 1)
	go func() { polled <- e.poll(token, ahead) }()
	select {
	case r := <-polled:
		t.Fatalf("a client ahead was answered before the wait: %d", r.status)
	case <-time.After(300 * time.Millisecond):
	}
	e.api.Drain()
	if r := <-polled; r.status != 304 || len(r.body) != 0 {
		t.Fatalf("a client ahead after the wait: %d, %d bytes", r.status, len(r.body))
	}
	// An older or unknown ETag still gets the bundle.
	for _, etag := range []string{`"0"`, `"abc"`, ""} {
		if r := e.fetchBundleWith(token, etag); r.status != 200 {
			t.Fatalf("If-None-Match %q: %d", etag, r.status)
		}
	}
}

func (e *env) fetchBundleWith(token, etag string) resp {
	req, _ := http.NewRequest("GET", e.srv.URL+bundlePath, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	if etag != "" {
		req.Header.Set("If-None-Match", etag)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return resp{status: res.StatusCode, header: res.Header, body: b}
}
