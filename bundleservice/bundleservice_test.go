package bundleservice_test

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/bundleservice"
	"github.com/gatehouse-dev/gatehouse/internal/httpapi"
	"github.com/gatehouse-dev/gatehouse/model"
)

// TestDrainAnswersLongPolls: Drain answers a parked long poll at once (304:
// the caller has the current bundle), later long polls are not held, a
// caller with another ETag gets the bundle, and every answer asks the
// client to close the connection.
func TestDrainAnswersLongPolls(t *testing.T) {
	s := newSite(t, siteOptions{})
	token := s.bundleGateway()
	etag := s.expect(s.fetchBundle(bundlePath, token), 200).header.Get("ETag")

	polled := make(chan resp, 1)
	go func() { polled <- s.poll(token, etag) }()
	select {
	case r := <-polled:
		t.Fatalf("the long poll was answered before any change or drain: %d %s", r.status, r.body)
	case <-time.After(300 * time.Millisecond):
	}
	s.svc.Drain()
	select {
	case r := <-polled:
		if r.status != 304 || r.header.Get("ETag") != etag || !r.close {
			t.Fatalf("the parked long poll after Drain: %d %v %s", r.status, r.header, r.body)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Drain did not answer the parked long poll")
	}

	start := time.Now()
	if r := s.poll(token, etag); r.status != 304 || !r.close || time.Since(start) > 5*time.Second {
		t.Fatalf("a long poll after Drain: %d (close %v) after %v", r.status, r.close, time.Since(start))
	}
	r := s.poll(token, `"0"`)
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
	s := newSite(t, siteOptions{})
	token := s.bundleGateway()
	etag := s.expect(s.fetchBundle(bundlePath, token), 200).header.Get("ETag")

	s.setTenantStatus("acme", model.TenantDisabled)
	for _, r := range []resp{
		s.fetchBundle(bundlePath, token),
		s.fetchBundle(bundlePath, token, "If-None-Match", etag),
		s.fetchBundle(bundlePath, token, "If-None-Match", etag, "Prefer", "wait=5"),
	} {
		if r.status != 403 || r.errorCode(t) != httpapi.CodeTenantDisabled || r.json(t)["details"].(map[string]any)["tenant_id"] != "acme" {
			t.Fatalf("a disabled tenant's bundle: %d %s", r.status, r.body)
		}
	}
	report := `{"labels":{"id":"authz-1"},"bundles":{"gatehouse":{"name":"gatehouse","active_revision":"` + strings.Trim(etag, `"`) +
		`","code":"tenant_disabled","message":"the tenant is disabled"}},"plugins":{"bundle":{"state":"ERROR"}}}`
	s.expect(s.do("POST", "/api/system/acme/gateways/edge/opa/status", token, report), 204)
	s.expect(s.do("POST", "/api/system/acme/gateways/edge/opa/logs", token, `[{"decision_id":"d1","result":{"allowed":true}}]`), 204)

	s.setTenantStatus("acme", model.TenantAvailable)
	if r := s.fetchBundle(bundlePath, token); r.status != 200 || r.header.Get("ETag") == "" {
		t.Fatalf("the bundle after re-enabling: %d %s", r.status, r.body)
	}
	opa := s.opaStatus("acme", "edge")
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
	s := newSite(t, siteOptions{})
	token := s.bundleGateway()
	cur := s.expect(s.fetchBundle(bundlePath, token), 200).header.Get("ETag")
	rev, err := strconv.ParseInt(strings.Trim(cur, `"`), 10, 64)
	if err != nil {
		t.Fatalf("ETag %q", cur)
	}
	ahead := fmt.Sprintf(`"%d"`, rev+1000)
	if r := s.fetchBundle(bundlePath, token, "If-None-Match", ahead); r.status != 304 || r.header.Get("ETag") != ahead {
		t.Fatalf("a client ahead, no wait: %d ETag %q, want 304 with its own ETag", r.status, r.header.Get("ETag"))
	}
	// With a long poll, the wait ends in 304 too (Drain ends it at once).
	polled := make(chan resp, 1)
	go func() { polled <- s.poll(token, ahead) }()
	select {
	case r := <-polled:
		t.Fatalf("a client ahead was answered before the wait: %d", r.status)
	case <-time.After(300 * time.Millisecond):
	}
	s.svc.Drain()
	if r := <-polled; r.status != 304 || len(r.body) != 0 {
		t.Fatalf("a client ahead after the wait: %d, %d bytes", r.status, len(r.body))
	}
	// An older or unknown ETag still gets the bundle.
	for _, etag := range []string{`"0"`, `"abc"`, ""} {
		var headers []string
		if etag != "" {
			headers = []string{"If-None-Match", etag}
		}
		if r := s.fetchBundle(bundlePath, token, headers...); r.status != 200 {
			t.Fatalf("If-None-Match %q: %d", etag, r.status)
		}
	}
}

// TestGatewayCredentialChecks: a credential of another gateway or tenant
// is 403, a wrong, unknown or revoked one 401 (with WWW-Authenticate), a
// deleted gateway's 404 gateway_not_found on every endpoint, and bad path
// ids 400 naming the parameter.
func TestGatewayCredentialChecks(t *testing.T) {
	s := newSite(t, siteOptions{})
	token := s.bundleGateway()
	_, other := s.gateway("other", "edge", true)
	_, second := s.gateway("acme", "second", false)
	revokedID, revoked := s.gateway("acme", "third", false)
	s.waitBundle("/api/system/acme/gateways/third/opa/bundle", revoked)
	revoke(t, s, "acme", revokedID)
	for _, c := range []struct {
		path, token string
		status      int
		code        string
	}{
		{bundlePath, "", 401, httpapi.CodeUnauthorized},
		{bundlePath, "ghg_acme.nope.nope", 401, httpapi.CodeUnauthorized},
		{bundlePath, token[:len(token)-2] + "xx", 401, httpapi.CodeUnauthorized},
		{"/api/system/acme/gateways/third/opa/bundle", revoked, 401, httpapi.CodeUnauthorized},
		{bundlePath, other, 403, httpapi.CodeForbidden},
		{bundlePath, second, 403, httpapi.CodeForbidden},
		{"/api/system/ACME/gateways/edge/opa/bundle", token, 400, httpapi.CodeInvalidField},
		{"/api/system/acme/gateways/e%20dge/opa/bundle", token, 400, httpapi.CodeInvalidField},
	} {
		r := s.fetchBundle(c.path, c.token)
		if r.status != c.status || r.errorCode(t) != c.code {
			t.Errorf("%s with %.20s…: %d %s, want %d %s", c.path, c.token, r.status, r.body, c.status, c.code)
		}
		if c.status == 401 && !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s with %.20s…: 401 without WWW-Authenticate", c.path, c.token)
		}
	}
	deleteGateway(t, s, "acme", "edge")
	for _, r := range []resp{
		s.fetchBundle(bundlePath, token),
		s.do("POST", "/api/system/acme/gateways/edge/opa/status", token, `{"labels":{"id":"a"}}`),
		s.do("POST", "/api/system/acme/gateways/edge/opa/logs", token, `[]`),
	} {
		if r.status != 404 || r.errorCode(t) != bundleservice.CodeGatewayNotFound {
			t.Errorf("a deleted gateway's credential: %d %s", r.status, r.body)
		}
	}
}
