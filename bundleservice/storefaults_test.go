package bundleservice_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/httpapi"
	"github.com/gatehouse-dev/gatehouse/internal/pgtest"
	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	"github.com/gatehouse-dev/gatehouse/store"
	"github.com/gatehouse-dev/gatehouse/store/postgres"
)

// within runs call and fails the test when it takes longer than limit.
func within(t *testing.T, what string, limit time.Duration, call func() resp) resp {
	t.Helper()
	start := time.Now()
	r := call()
	if d := time.Since(start); d > limit {
		t.Errorf("%s took %s (limit %s)", what, d, limit)
	}
	return r
}

// expectStoreUnavailable asserts a 503 store_unavailable with Retry-After.
func expectStoreUnavailable(t *testing.T, what string, r resp) {
	t.Helper()
	if r.status != 503 || r.errorCode(t) != httpapi.CodeStoreUnavailable || r.header.Get("Retry-After") != fmt.Sprint(httpapi.StoreRetryAfter) {
		t.Errorf("%s: %d Retry-After %q %s; want 503 store_unavailable with Retry-After", what, r.status, r.header.Get("Retry-After"), r.body)
	}
}

// TestHungDatabase: with PostgreSQL hung (every server process stopped),
// the bundle service keeps serving a gateway it served before the hang
// from memory (200, 304, long polls), refuses an unknown credential with
// 503 (not 401, not a hang) and status uploads with 503; everything works
// again once the database resumes; and a revoked credential is not served
// from the cache in the next hang. (admin's TestHungDatabase has the admin
// API's side.)
func TestHungDatabase(t *testing.T) {
	const deadline = 500 * time.Millisecond
	const bound = 3 * deadline
	srv := pgtest.NewServer(t)
	url := srv.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	raw, err := postgres.OpenWith(ctx, url, postgres.Options{Timeout: deadline})
	if err != nil {
		t.Fatal(err)
	}
	s := newSite(t, siteOptions{store: store.WithDeadline(raw, deadline), follow: true})

	edgeCred, edge := s.gateway("acme", "edge", true)
	_, side := s.gateway("acme", "side", false)
	// The bundle service remembers edge's credential once it served it
	// with the store answering (and the feed is followed).
	var first resp
	testkit.Eventually(t, 30*time.Second, func() error {
		first = s.fetchBundle(bundlePath, edge)
		n := s.creds.CachedCredentials()
		return testkit.Check(first.status == 200 && n == 1, "bundle %d, %d credentials cached", first.status, n)
	}, "edge's bundle served and its credential remembered")
	etag := first.header.Get("ETag")

	pause := func() {
		t.Helper()
		if err := srv.Pause(); err != nil {
			t.Fatal(err)
		}
	}
	resume := func() {
		t.Helper()
		if err := srv.Resume(); err != nil {
			t.Fatal(err)
		}
		testkit.Eventually(t, 30*time.Second, func() error { return s.store.Ping(context.Background()) }, "the store after the database resumed")
	}
	t.Cleanup(func() { _ = srv.Resume() })

	pause()
	r := within(t, "bundle from memory", bound, func() resp { return s.fetchBundle(bundlePath, edge) })
	if r.status != 200 || !bytes.Equal(r.body, first.body) || r.header.Get("ETag") != etag {
		t.Errorf("bundle while the database hangs: %d %q, want 200 with the bundle served before", r.status, r.header.Get("ETag"))
	}
	if r := within(t, "304 from memory", bound, func() resp { return s.fetchBundle(bundlePath, edge, "If-None-Match", etag) }); r.status != 304 {
		t.Errorf("conditional bundle request while the database hangs: %d %s, want 304", r.status, r.body)
	}
	if r := within(t, "long poll", bound+time.Second, func() resp {
		return s.fetchBundle(bundlePath, edge, "If-None-Match", etag, "Prefer", "wait=1")
	}); r.status != 304 {
		t.Errorf("long poll while the database hangs: %d %s, want 304 after the wait", r.status, r.body)
	}
	expectStoreUnavailable(t, "never-served credential", within(t, "never-served credential", bound, func() resp {
		return s.fetchBundle("/api/system/acme/gateways/side/opa/bundle", side)
	}))
	expectStoreUnavailable(t, "unknown credential", within(t, "unknown credential", bound, func() resp {
		return s.fetchBundle(bundlePath, "ghg_acme.nope.c2VjcmV0")
	}))
	expectStoreUnavailable(t, "status upload", within(t, "status upload", bound, func() resp {
		return s.do("POST", "/api/system/acme/gateways/edge/opa/status", edge, map[string]any{"labels": map[string]string{"id": "a"}})
	}))

	resume()
	s.expect(s.fetchBundle(bundlePath, edge, "If-None-Match", etag), 304)

	// A revocation seen on the change feed leaves the cache: in the next
	// hang, the revoked credential is refused, not served.
	revoke(t, s, "acme", edgeCred)
	testkit.Eventually(t, 30*time.Second, func() error {
		n := s.creds.CachedCredentials()
		return testkit.Check(n == 0, "%d credentials cached", n)
	}, "the revocation to leave the cache")
	pause()
	expectStoreUnavailable(t, "revoked credential", within(t, "revoked credential", bound, func() resp {
		return s.fetchBundle(bundlePath, edge)
	}))
	resume()
	if r := s.fetchBundle(bundlePath, edge); r.status != 401 {
		t.Errorf("revoked credential once the store answers: %d %s, want 401", r.status, r.body)
	}
}
