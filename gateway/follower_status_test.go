package gateway

import (
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/policies"
)

// refusingTransport fails bundle downloads with "connection refused" while
// refuse is set (the control plane's bundle endpoint is unreachable) and
// lets everything else through.
type refusingTransport struct {
	refuse atomic.Bool
}

func (t *refusingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if t.refuse.Load() && strings.HasSuffix(r.URL.Path, "/bundle") {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	}
	return http.DefaultTransport.RoundTrip(r)
}

func newStatusFollower(t *testing.T, url string, key *policies.SigningKey, client *http.Client, logs *syncBuffer) (*Follower, *Engines) {
	t.Helper()
	engines := NewEngines(model.GatewayRef{TenantID: "acme", GatewayID: "edge"})
	f, err := NewFollower(FollowerOptions{URL: url + "/opa", TenantID: "acme", GatewayID: "edge", Credential: "cred",
		KeyID: key.KeyID, PublicKeyPEM: key.PublicKeyPEM, CacheDir: t.TempDir(), LongPoll: time.Second, Client: client,
		Activator: &Activator{Engines: engines}, InstanceID: "test-instance", Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return f, engines
}

// clean is a status report of revision rev without an error.
func clean(rev string) func(b map[string]any) bool {
	return func(b map[string]any) bool {
		_, code := b["code"]
		_, msg := b["message"]
		return b["active_revision"] == rev && !code && !msg
	}
}

// quickWait bounds the waits for a status report well within the
// follower's 30 s periodic report, so only a report sent because of the
// change counts.
const quickWait = 5 * time.Second

// TestFollowerClearsErrorsWhenTheControlPlaneIsBack: while bundle downloads
// are refused, the status report carries the error; once the control plane
// answers again, a report without the error follows at once, although the
// revision did not change.
func TestFollowerClearsErrorsWhenTheControlPlaneIsBack(t *testing.T) {
	key, _ := policies.GenerateSigningKey("acme")
	fake := &fakeBundleService{}
	fake.set(signedBundle(t, key, 4, nil), `"4"`)
	srv := httptest.NewServer(fake)
	defer srv.Close()
	tr := &refusingTransport{}
	f, engines := newStatusFollower(t, srv.URL, key, &http.Client{Transport: tr}, &syncBuffer{})
	runFollower(t, f)
	testkit.Eventually(t, followerWait, atRevision(f, "4"), "revision 4")

	for round := 0; round < 2; round++ {
		tr.refuse.Store(true)
		testkit.Eventually(t, quickWait, fake.reportedWhere(func(b map[string]any) bool {
			msg, _ := b["message"].(string)
			return b["active_revision"] == "4" && b["code"] == "bundle_error" && strings.Contains(msg, "connection refused")
		}), "a status report with the refused connection")
		if e := engines.For(nil); e == nil || e.Revision != "4" {
			t.Fatal("the last good bundle is not enforced while the control plane is away")
		}
		fake.update(func(f *fakeBundleService) { f.statuses = nil })
		tr.refuse.Store(false)
		testkit.Eventually(t, quickWait, fake.reportedWhere(clean("4")), "a status report without the error")
		if f.Revision() != "4" {
			t.Fatalf("revision %s, want 4 (nothing changed)", f.Revision())
		}
		fake.update(func(f *fakeBundleService) { f.statuses = nil })
	}
}

// TestFollowerKeepsEnforcingForADisabledTenant: the bundle service refuses
// a DISABLED tenant's bundle (403 tenant_disabled); the follower keeps
// enforcing its last good bundle, stays ready, says why in its status
// report and log, and takes bundles again once the tenant is enabled.
func TestFollowerKeepsEnforcingForADisabledTenant(t *testing.T) {
	key, _ := policies.GenerateSigningKey("acme")
	fake := &fakeBundleService{}
	fake.set(signedBundle(t, key, 4, nil), `"4"`)
	srv := httptest.NewServer(fake)
	defer srv.Close()
	logs := &syncBuffer{}
	f, engines := newStatusFollower(t, srv.URL, key, &http.Client{}, logs)
	runFollower(t, f)
	testkit.Eventually(t, followerWait, atRevision(f, "4"), "revision 4")

	fake.update(func(f *fakeBundleService) { f.disabled = true; f.inm = nil })
	testkit.Eventually(t, quickWait, fake.reportedWhere(func(b map[string]any) bool {
		msg, _ := b["message"].(string)
		return b["active_revision"] == "4" && b["code"] == "tenant_disabled" && strings.Contains(msg, "disabled")
	}), "a status report saying the tenant is disabled")
	// Two requests: the answer to the first has been handled.
	testkit.Eventually(t, followerWait, fake.bundleRequests(2), "two refused requests")
	if e := engines.For(nil); e == nil || e.Revision != "4" || !engines.Ready() || f.Deleted() || !healthAllowed(engines) {
		t.Fatal("the last good bundle is not enforced while the tenant is disabled")
	}
	if !logs.logged("WARN", "the tenant is disabled on the control plane; enforcing the last good bundle") {
		t.Fatal("the refusal was not logged")
	}

	fake.update(func(f *fakeBundleService) { f.disabled = false; f.statuses = nil })
	testkit.Eventually(t, quickWait, fake.reportedWhere(clean("4")), "a status report without the error")
	fake.set(signedBundle(t, key, 5, privateHealth), `"5"`)
	testkit.Eventually(t, followerWait, func() error {
		return testkit.Check(f.Revision() == "5" && !healthAllowed(engines), "revision %q, /healthz allowed %v", f.Revision(), healthAllowed(engines))
	}, "revision 5")
}
