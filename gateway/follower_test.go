package gateway

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/policies"
)

// fakeBundleService is a minimal bundle service: it serves whatever bundle
// it is given, long-polls, and records status reports and decision logs.
type fakeBundleService struct {
	mu       sync.Mutex
	bundle   []byte
	etag     string
	changed  chan struct{}
	statuses []map[string]any
	logs     []map[string]any
	down     bool
	// status, when set, is the plain error every request gets; gone answers
	// as the bundle service does for a deleted gateway; abort drops the
	// connection (a network error).
	status int
	gone   bool
	abort  bool
	// disabled refuses bundles as the bundle service does for a DISABLED
	// tenant (status reports and logs are still taken).
	disabled bool
	// inm records the If-None-Match of every bundle request.
	inm []string
}

func (f *fakeBundleService) set(raw []byte, etag string) {
	f.mu.Lock()
	f.bundle, f.etag = raw, etag
	if f.changed != nil {
		close(f.changed)
	}
	f.changed = make(chan struct{})
	f.mu.Unlock()
}

func (f *fakeBundleService) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	down, status, gone, abort, disabled := f.down, f.status, f.gone, f.abort, f.disabled
	if r.URL.Path == "/opa/bundle" {
		f.inm = append(f.inm, r.Header.Get("If-None-Match"))
	}
	f.mu.Unlock()
	switch {
	case abort:
		panic(http.ErrAbortHandler)
	case down:
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	case status != 0:
		http.Error(w, "plain error", status)
		return
	case gone:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, `{"status_code":404,"error":"gateway \"edge\" does not exist","error_code":"gateway_not_found","details":{}}`)
		return
	case disabled && r.URL.Path == "/opa/bundle":
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, `{"status_code":403,"error":"tenant \"acme\" is disabled","error_code":"tenant_disabled","details":{"tenant_id":"acme"}}`)
		return
	}
	if r.Header.Get("Authorization") != "Bearer cred" {
		http.Error(w, "no", http.StatusUnauthorized)
		return
	}
	switch r.URL.Path {
	case "/opa/bundle":
		f.mu.Lock()
		raw, etag, ch := f.bundle, f.etag, f.changed
		f.mu.Unlock()
		if r.Header.Get("If-None-Match") == etag {
			select {
			case <-ch:
			case <-time.After(time.Second):
				w.WriteHeader(http.StatusNotModified)
				return
			case <-r.Context().Done():
				return
			}
			f.mu.Lock()
			raw, etag = f.bundle, f.etag
			f.mu.Unlock()
		}
		w.Header().Set("ETag", etag)
		w.Write(raw)
	case "/opa/status":
		var m map[string]any
		json.NewDecoder(r.Body).Decode(&m)
		f.mu.Lock()
		f.statuses = append(f.statuses, m)
		f.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	case "/opa/logs":
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		var evs []map[string]any
		json.NewDecoder(zr).Decode(&evs)
		f.mu.Lock()
		f.logs = append(f.logs, evs...)
		f.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	default:
		http.NotFound(w, r)
	}
}

func signedBundle(t testing.TB, key *policies.SigningKey, rev int64, mutate func(*policies.Config)) []byte {
	t.Helper()
	raw, err := policies.Build(testCompiled(t, mutate), rev, key)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// followerWait bounds the waits for a follower, a decision logger or a
// status report.
const followerWait = 10 * time.Second

// atRevision is a condition: f has activated revision rev.
func atRevision(f *Follower, rev string) func() error {
	return func() error {
		got := f.Revision()
		return testkit.Check(got == rev, "revision %q", got)
	}
}

func newFollowerFixture(t *testing.T, url, cacheDir string, key *policies.SigningKey) (*Follower, *Engines) {
	t.Helper()
	return newLoggingFollower(t, url, cacheDir, key, io.Discard)
}

// newLoggingFollower is newFollowerFixture with JSON log lines written to w.
func newLoggingFollower(t *testing.T, url, cacheDir string, key *policies.SigningKey, w io.Writer) (*Follower, *Engines) {
	t.Helper()
	engines := NewEngines(model.GatewayRef{TenantID: "acme", GatewayID: "edge"})
	f, err := NewFollower(FollowerOptions{URL: url + "/opa", TenantID: "acme", GatewayID: "edge", Credential: "cred",
		KeyID: key.KeyID, PublicKeyPEM: key.PublicKeyPEM, CacheDir: cacheDir, LongPoll: time.Second,
		Activator: &Activator{Engines: engines}, InstanceID: "test-instance", Logger: slog.New(slog.NewJSONHandler(w, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return f, engines
}

func TestFollowerVerifiesActivatesCachesAndReports(t *testing.T) {
	key, _ := policies.GenerateSigningKey("acme")
	fake := &fakeBundleService{}
	fake.set(signedBundle(t, key, 1, nil), `"1"`)
	srv := httptest.NewServer(fake)
	defer srv.Close()
	cache := t.TempDir()
	f, engines := newFollowerFixture(t, srv.URL, cache, key)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { f.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	if !t.Run("the first bundle is verified and activated", func(t *testing.T) {
		testkit.Eventually(t, followerWait, atRevision(f, "1"), "the first activation")
		if e := engines.For(nil); e == nil || e.Revision != "1" {
			t.Fatal("no engine after activation")
		}
	}) {
		return
	}
	if !t.Run("a new revision arrives through the long poll", func(t *testing.T) {
		fake.set(signedBundle(t, key, 2, func(c *policies.Config) { c.APIs[2].Spec.Public = false }), `"2"`)
		testkit.Eventually(t, followerWait, atRevision(f, "2"), "revision 2")
	}) {
		return
	}
	if !t.Run("a bundle signed with another key is refused and reported; the revision stays", func(t *testing.T) {
		other, _ := policies.GenerateSigningKey("acme")
		fake.set(signedBundle(t, other, 3, nil), `"3"`)
		// The report with the error comes once the bundle was refused.
		testkit.Eventually(t, followerWait, fake.reportedWhere(func(b map[string]any) bool {
			return b["active_revision"] == "2" && b["code"] == "bundle_error"
		}), "a status report with the error")
		if f.Revision() != "2" || engines.For(nil).Revision != "2" {
			t.Fatal("a bundle with a bad signature was activated")
		}
	}) {
		return
	}
	if !t.Run("the active bundle is in the disk cache", func(t *testing.T) {
		cancel()
		<-done
		if _, err := os.Stat(f.cachePath()); err != nil {
			t.Fatalf("no cache written: %v", err)
		}
	}) {
		return
	}
	if !t.Run("with the control plane down a new follower starts from the cache", func(t *testing.T) {
		fake.mu.Lock()
		fake.down = true
		fake.mu.Unlock()
		f2, engines2 := newFollowerFixture(t, srv.URL, cache, key)
		ctx2, cancel2 := context.WithCancel(context.Background())
		done2 := make(chan struct{})
		go func() { f2.Run(ctx2); close(done2) }()
		// Waited for: it writes under the cache directory until it stops.
		defer func() { cancel2(); <-done2 }()
		testkit.Eventually(t, followerWait, func() error { return testkit.Check(engines2.For(nil) != nil, "no engine") },
			"activation from the cache")
		if engines2.For(nil).Revision != "2" {
			t.Fatalf("cache gave revision %s", engines2.For(nil).Revision)
		}
	}) {
		return
	}
	t.Run("a tampered cache is not used, and with nothing at all requests are denied", func(t *testing.T) {
		raw, _ := os.ReadFile(f.cachePath())
		os.WriteFile(f.cachePath(), bytes.Replace(raw, raw[len(raw)-40:], make([]byte, 40), 1), 0o600)
		f3, engines3 := newFollowerFixture(t, srv.URL, cache, key)
		if err := f3.LoadCache(context.Background()); err == nil || engines3.For(nil) != nil {
			t.Fatal("a corrupted cache was activated")
		}
		srv3 := NewServer(ServerOptions{Engines: engines3})
		if res, _ := srv3.Check(context.Background(), check("GET", "/healthz", nil)); res.GetOkResponse() != nil {
			t.Fatal("allowed without any bundle")
		}
	})
}

type blockingSink struct {
	mu     sync.Mutex
	events []json.RawMessage
	block  chan struct{}
}

func (s *blockingSink) Send(ctx context.Context, batch *LogBatch) error {
	evs, err := batch.Decode()
	if err != nil {
		return err
	}
	if s.block != nil {
		select {
		case <-s.block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	s.mu.Lock()
	s.events = append(s.events, evs...)
	s.mu.Unlock()
	return nil
}

func TestDecisionLogs(t *testing.T) {
	engines := NewEngines(model.GatewayRef{TenantID: "acme", GatewayID: "edge"})
	activate(t, engines, testCompiled(t, nil), "7")
	reg := prometheus.NewRegistry()
	metrics, _ := NewMetrics(reg)
	sink := &blockingSink{}
	logs := NewDecisionLogger(DecisionLogOptions{Sink: sink, InstanceID: "i1", Metrics: metrics, FlushInterval: 50 * time.Millisecond})
	srv := NewServer(ServerOptions{Engines: engines, Logs: logs, Metrics: metrics})
	if !t.Run("every decision is logged once, credentials masked, dry runs marked", func(t *testing.T) {
		srv.Check(context.Background(), check("GET", "/pets/7", map[string]string{"x-key": "good", "authorization": "Basic secret-token", "cookie": "c=1"}))
		srv.Check(context.Background(), check("DELETE", "/pets/7", nil))
		logs.Close(context.Background())
		if len(sink.events) != 2 {
			t.Fatalf("%d events, want 2", len(sink.events))
		}
		var ev map[string]any
		json.Unmarshal(sink.events[0], &ev)
		raw := string(sink.events[0])
		if ev["decision_id"] == "" || ev["path"] != "gatehouse/authz/decision" || ev["bundles"].(map[string]any)["gatehouse"].(map[string]any)["revision"] != "7" ||
			ev["result"].(map[string]any)["allowed"] != true || ev["timestamp"] == nil || ev["labels"].(map[string]any)["id"] != "i1" {
			t.Fatalf("event: %s", raw)
		}
		if bytes.Contains(sink.events[0], []byte("secret-token")) || bytes.Contains(sink.events[0], []byte("c=1")) {
			t.Fatalf("masked headers leaked: %s", raw)
		}
		if len(ev["erased"].([]any)) != 2 {
			t.Fatalf("erased: %v", ev["erased"])
		}
		var dry map[string]any
		json.Unmarshal(sink.events[1], &dry)
		if dry["custom"].(map[string]any)["dry_run"] != true || dry["result"].(map[string]any)["policy_allowed"] != false {
			t.Fatalf("dry-run event: %s", sink.events[1])
		}
	}) {
		return
	}

	t.Run("with a stuck sink checks never block; the overflow is dropped and counted", func(t *testing.T) {
		stuck := &blockingSink{block: make(chan struct{})}
		small := NewDecisionLogger(DecisionLogOptions{Sink: stuck, BufferBytes: 5 * int64(eventSize(t, logs, engines)), BatchEvents: 1, Uploads: 1, Metrics: metrics})
		srv2 := NewServer(ServerOptions{Engines: engines, Logs: small})
		start := time.Now()
		for i := 0; i < 200; i++ {
			srv2.Check(context.Background(), check("GET", "/healthz", nil))
		}
		if time.Since(start) > 2*time.Second {
			t.Fatal("checks blocked on the decision log")
		}
		testkit.Eventually(t, followerWait, func() error {
			st := small.Status()
			return testkit.Check(st.QueuedEvents == 0, "%d events queued", st.QueuedEvents)
		}, "every decision encoded")
		close(stuck.block)
		small.Close(context.Background())
		mfs, _ := reg.Gather()
		dropped := 0.0
		for _, mf := range mfs {
			if mf.GetName() == "gatehouse_decision_logs_dropped_total" {
				for _, m := range mf.GetMetric() {
					dropped += m.GetCounter().GetValue()
				}
			}
		}
		if dropped < 150 || len(stuck.events)+int(dropped) != 200 {
			t.Fatalf("dropped %v, delivered %d of 200", dropped, len(stuck.events))
		}
	})
}

func TestReverseProxy(t *testing.T) {
	var seen http.Header
	var seenPath string
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen, seenPath = r.Header.Clone(), r.URL.Path
		w.Write([]byte("from upstream"))
	}))
	defer upstream.Close()
	engines := NewEngines(model.GatewayRef{TenantID: "acme", GatewayID: "edge"})
	activate(t, engines, testCompiled(t, func(c *policies.Config) { c.Services[0].Spec.URL = upstream.URL }), "1")
	proxy := httptest.NewServer(NewProxy(NewServer(ServerOptions{Engines: engines}), nil))
	defer proxy.Close()

	req, _ := http.NewRequest("GET", proxy.URL+"/pets/5", nil)
	req.Header.Set("X-Key", "good")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || string(body) != "from upstream" || seenPath != "/pets/5" {
		t.Fatalf("allowed request: %d %q %s", res.StatusCode, body, seenPath)
	}
	if seen.Get("X-Pet-Id") != "5" || seen.Get("X-Key") != "" || res.Header.Get("X-Checked") != "yes" {
		t.Fatalf("headers: upstream saw %v, client got %v", seen, res.Header)
	}
	seenPath = ""
	res, _ = http.Get(proxy.URL + "/pets/locked")
	body, _ = io.ReadAll(res.Body)
	if res.StatusCode != 423 || string(body) != `{"error":"locked"}` || seenPath != "" {
		t.Fatalf("denied request: %d %q (upstream saw %q)", res.StatusCode, body, seenPath)
	}
	res, _ = http.Get(proxy.URL + "/nowhere")
	if res.StatusCode != 404 {
		t.Fatalf("unknown route: %d", res.StatusCode)
	}
	// Paths an upstream might resolve differently never go through.
	for _, path := range []string{"/pets/../admin", "/pets/%2e%2e/admin", "/pets/a%2Fb"} {
		seenPath = ""
		req, _ := http.NewRequest("GET", proxy.URL+path, nil)
		req.Header.Set("X-Key", "good")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 400 || seenPath != "" {
			t.Errorf("%s: %d (upstream saw %q)", path, res.StatusCode, seenPath)
		}
	}
}

// syncBuffer collects log lines written from several goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// logged reports whether a JSON log line has that level and message.
func (b *syncBuffer) logged(level, msg string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, line := range bytes.Split(b.buf.Bytes(), []byte("\n")) {
		var m map[string]any
		if json.Unmarshal(line, &m) == nil && m["level"] == level && m["msg"] == msg {
			return true
		}
	}
	return false
}

// reported reports whether a status report since the last reset matches.
func (f *fakeBundleService) reported(match func(b map[string]any) bool) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range f.statuses {
		if b, ok := s["bundles"].(map[string]any)["gatehouse"].(map[string]any); ok && match(b) {
			return true
		}
	}
	return false
}

// reportedWhere is a condition: a status report since the last reset
// matches; otherwise it shows the bundle part of the last reports.
func (f *fakeBundleService) reportedWhere(match func(b map[string]any) bool) func() error {
	return func() error {
		if f.reported(match) {
			return nil
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		var last []any
		for _, s := range f.statuses[max(0, len(f.statuses)-3):] {
			last = append(last, s["bundles"])
		}
		shown, _ := json.Marshal(last)
		return fmt.Errorf("%d status reports, the last ones: %s", len(f.statuses), shown)
	}
}

// bundleRequests is a condition: at least n bundle requests since inm
// was reset.
func (f *fakeBundleService) bundleRequests(n int) func() error {
	return func() error {
		f.mu.Lock()
		defer f.mu.Unlock()
		return testkit.Check(len(f.inm) >= n, "%d bundle requests", len(f.inm))
	}
}

func (f *fakeBundleService) update(fn func(*fakeBundleService)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func runFollower(t *testing.T, f *Follower) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { f.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

// healthAllowed says whether the active engine lets GET /healthz through:
// it tells the two contents apart (the mutation makes it private).
func healthAllowed(engines *Engines) bool {
	res, _ := NewServer(ServerOptions{Engines: engines}).Check(context.Background(), check("GET", "/healthz", nil))
	return res.GetOkResponse() != nil
}

func privateHealth(c *policies.Config) { c.APIs[2].Spec.Public = false }

// TestFollowerRefusesRollback: a validly signed bundle replayed with an
// older revision, or with the active revision and other content, is refused
// with a logged error and a status report error; the active revision stays
// and a newer one is still taken.
func TestFollowerRefusesRollback(t *testing.T) {
	key, _ := policies.GenerateSigningKey("acme")
	rev3 := signedBundle(t, key, 3, nil)
	fake := &fakeBundleService{}
	fake.set(signedBundle(t, key, 5, nil), `"5"`)
	srv := httptest.NewServer(fake)
	defer srv.Close()
	logs := &syncBuffer{}
	f, engines := newLoggingFollower(t, srv.URL, t.TempDir(), key, logs)
	runFollower(t, f)
	if !t.Run("revision 5 is active", func(t *testing.T) {
		testkit.Eventually(t, followerWait, atRevision(f, "5"), "revision 5")
	}) {
		return
	}
	if !t.Run("a replayed older bundle is refused, logged and reported; revision 5 stays", func(t *testing.T) {
		fake.update(func(f *fakeBundleService) { f.statuses = nil })
		fake.set(rev3, `"3"`) // a man in the middle replays an older bundle
		testkit.Eventually(t, followerWait, fake.reportedWhere(func(b map[string]any) bool {
			return b["active_revision"] == "5" && b["code"] == "bundle_rollback" && strings.Contains(b["message"].(string), "revision 3 is older than revision 5")
		}), "a status report refusing revision 3")
		if !logs.logged("ERROR", "bundle rollback refused; enforcing the active revision") {
			t.Fatal("the refused rollback was not logged as an error")
		}
		if e := engines.For(nil); f.Revision() != "5" || e == nil || e.Revision != "5" || !healthAllowed(engines) {
			t.Fatal("the replayed older bundle was activated")
		}
	}) {
		return
	}
	if !t.Run("the active revision with other content is refused as well", func(t *testing.T) {
		fake.update(func(f *fakeBundleService) { f.statuses = nil })
		fake.set(signedBundle(t, key, 5, privateHealth), `"5-other"`)
		testkit.Eventually(t, followerWait, fake.reportedWhere(func(b map[string]any) bool {
			return b["code"] == "bundle_rollback" && strings.Contains(b["message"].(string), "other content")
		}), "a status report refusing the other revision 5")
		if f.Revision() != "5" || !healthAllowed(engines) {
			t.Fatal("a bundle with the active revision and other content was activated")
		}
	}) {
		return
	}
	t.Run("a newer revision is taken", func(t *testing.T) {
		fake.set(signedBundle(t, key, 7, privateHealth), `"7"`)
		testkit.Eventually(t, followerWait, atRevision(f, "7"), "revision 7")
		if healthAllowed(engines) {
			t.Fatal("revision 7 is not the one enforced")
		}
	})
}

// TestFollowerETagFromVerifiedManifest: a cache holding an old bundle with
// a newer .etag side file beside it must not make the follower claim the
// newer revision: it asks with the ETag of the bundle it verified and gets
// the newer one.
func TestFollowerETagFromVerifiedManifest(t *testing.T) {
	key, _ := policies.GenerateSigningKey("acme")
	fake := &fakeBundleService{}
	fake.set(signedBundle(t, key, 2, privateHealth), `"2"`)
	srv := httptest.NewServer(fake)
	defer srv.Close()
	cache := t.TempDir()
	f, engines := newFollowerFixture(t, srv.URL, cache, key)
	if err := os.MkdirAll(filepath.Dir(f.cachePath()), 0o700); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(f.cachePath(), signedBundle(t, key, 1, nil), 0o600)
	os.WriteFile(f.cachePath()+".etag", []byte(`"2"`+"\n"), 0o600)

	runFollower(t, f)
	testkit.Eventually(t, followerWait, atRevision(f, "2"), "revision 2 from the control plane")
	fake.mu.Lock()
	first := fake.inm[0]
	fake.mu.Unlock()
	if first != `"1"` {
		t.Fatalf("the first request said If-None-Match %s, want the cached bundle's \"1\"", first)
	}
	if healthAllowed(engines) {
		t.Fatal("revision 2 is not the one enforced")
	}
	if _, err := os.Stat(f.cachePath() + ".etag"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the .etag side file is still there: %v", err)
	}
}

// TestFollowerRestartKeepsTheHighWaterMark: after revision 7 was active, a
// restart with an older (validly signed) bundle in the cache does not
// activate it, nor does the same bundle replayed over the network.
func TestFollowerRestartKeepsTheHighWaterMark(t *testing.T) {
	key, _ := policies.GenerateSigningKey("acme")
	rev3 := signedBundle(t, key, 3, nil)
	fake := &fakeBundleService{}
	fake.set(signedBundle(t, key, 7, privateHealth), `"7"`)
	srv := httptest.NewServer(fake)
	defer srv.Close()
	cache := t.TempDir()
	f, _ := newFollowerFixture(t, srv.URL, cache, key)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { f.Run(ctx); close(done) }()
	testkit.Eventually(t, followerWait, atRevision(f, "7"), "revision 7")
	cancel()
	<-done
	var st followerState
	if raw, err := os.ReadFile(f.statePath()); err != nil || json.Unmarshal(raw, &st) != nil || st.Revision != "7" {
		t.Fatalf("state.json after revision 7: %+v %v", st, err)
	}

	// The cache now holds revision 3 (restored from a backup, or planted).
	os.WriteFile(f.cachePath(), rev3, 0o600)
	fake.update(func(f *fakeBundleService) { f.down = true })
	f2, engines2 := newFollowerFixture(t, srv.URL, cache, key)
	if err := f2.LoadCache(context.Background()); err == nil || !errors.Is(err, errRollback) || engines2.For(nil) != nil || engines2.Ready() {
		t.Fatalf("the older cached bundle: %v (engine %v)", err, engines2.For(nil))
	}

	// Nor does the control plane's answer (a replay) bring revision 3 back.
	logs := &syncBuffer{}
	f3, engines3 := newLoggingFollower(t, srv.URL, cache, key, logs)
	fake.update(func(f *fakeBundleService) { f.down = false; f.statuses = nil })
	fake.set(rev3, `"3"`)
	runFollower(t, f3)
	testkit.Eventually(t, followerWait, fake.reportedWhere(func(b map[string]any) bool {
		return b["code"] == "bundle_rollback" && b["active_revision"] == ""
	}), "a status report refusing revision 3")
	if engines3.For(nil) != nil || !logs.logged("ERROR", "cached bundle refused") {
		t.Fatal("revision 3 was activated after a restart, or its refusal not logged")
	}
	fake.set(signedBundle(t, key, 8, nil), `"8"`)
	testkit.Eventually(t, followerWait, func() error {
		return testkit.Check(f3.Revision() == "8" && engines3.Ready(), "revision %q, ready %v", f3.Revision(), engines3.Ready())
	}, "revision 8")
}

// TestFollowerFailsClosedWhenTheGatewayIsDeleted: network errors and
// answers that are not the bundle service's word keep the last good
// bundle; a 404 gateway_not_found removes the engine, the cache and the
// readiness, and a restart does not bring the bundle back. A later bundle
// (the deletion was faked, or the gateway is back) is enforced again.
func TestFollowerFailsClosedWhenTheGatewayIsDeleted(t *testing.T) {
	key, _ := policies.GenerateSigningKey("acme")
	fake := &fakeBundleService{}
	fake.set(signedBundle(t, key, 4, nil), `"4"`)
	srv := httptest.NewServer(fake)
	defer srv.Close()

	t.Run("answers that are not the bundle service's word keep the last good bundle", func(t *testing.T) {
		for _, c := range []struct {
			name string
			set  func(*fakeBundleService)
		}{
			{"a dropped connection", func(f *fakeBundleService) { f.abort = true }},
			{"a plain 404", func(f *fakeBundleService) { f.status = http.StatusNotFound }},
			{"a 401", func(f *fakeBundleService) { f.status = http.StatusUnauthorized }},
			{"a 503", func(f *fakeBundleService) { f.status = http.StatusServiceUnavailable }},
		} {
			t.Run(c.name, func(t *testing.T) {
				fake.update(func(f *fakeBundleService) { f.abort, f.status = false, 0 })
				f, engines := newFollowerFixture(t, srv.URL, t.TempDir(), key)
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan struct{})
				go func() { f.Run(ctx); close(done) }()
				defer func() { cancel(); <-done }()
				testkit.Eventually(t, followerWait, atRevision(f, "4"), "revision 4")
				fake.update(func(f *fakeBundleService) { f.inm = nil; c.set(f) })
				// Two requests: the answer to the first has been handled.
				testkit.Eventually(t, followerWait, fake.bundleRequests(2), "two requests after %s", c.name)
				if f.Deleted() || !engines.Ready() || engines.For(nil) == nil || engines.For(nil).Revision != "4" {
					t.Errorf("%s: the last good bundle is no longer enforced", c.name)
				}
			})
		}
	})

	fake.update(func(f *fakeBundleService) { f.abort, f.status = false, 0 })
	cache := t.TempDir()
	logs := &syncBuffer{}
	f, engines := newLoggingFollower(t, srv.URL, cache, key, logs)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { f.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	if !t.Run("a 404 gateway_not_found removes the engine, the cache and the readiness", func(t *testing.T) {
		testkit.Eventually(t, followerWait, atRevision(f, "4"), "revision 4")
		fake.update(func(f *fakeBundleService) { f.gone = true })
		testkit.Eventually(t, followerWait, func() error {
			return testkit.Check(f.Deleted(), "not deleted, revision %q", f.Revision())
		}, "the deletion")
		if engines.Ready() || engines.For(nil) != nil || f.Revision() != "" {
			t.Fatal("the deleted gateway's bundle is still enforced")
		}
		if healthAllowed(engines) {
			t.Fatal("a request was allowed after the deletion")
		}
		if !logs.logged("ERROR", "the gateway was deleted on the control plane; every request is denied") {
			t.Fatal("the deletion was not logged as an error")
		}
		if _, err := os.Stat(f.cachePath()); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("the cache survived the deletion: %v", err)
		}
		var st followerState
		if raw, err := os.ReadFile(f.statePath()); err != nil || json.Unmarshal(raw, &st) != nil || st.DeletedAt == nil || st.Revision != "4" {
			t.Fatalf("state.json after the deletion: %+v %v", st, err)
		}
	}) {
		return
	}

	var f2 *Follower
	var engines2 *Engines
	if !t.Run("a restart enforces nothing, even with a bundle put back in the cache and the control plane unreachable", func(t *testing.T) {
		cancel()
		<-done
		os.WriteFile(f.cachePath(), signedBundle(t, key, 4, nil), 0o600)
		fake.update(func(f *fakeBundleService) { f.gone, f.down = false, true })
		f2, engines2 = newFollowerFixture(t, srv.URL, cache, key)
		if err := f2.LoadCache(context.Background()); !errors.Is(err, errGatewayDeleted) || engines2.Ready() || !f2.Deleted() {
			t.Fatalf("restart after the deletion: %v, ready %v", err, engines2.Ready())
		}
	}) {
		return
	}

	t.Run("once the control plane serves the gateway again it is enforced and no longer deleted", func(t *testing.T) {
		fake.update(func(f *fakeBundleService) { f.down = false })
		fake.set(signedBundle(t, key, 9, nil), `"9"`)
		ctx2, cancel2 := context.WithCancel(context.Background())
		done2 := make(chan struct{})
		go func() { f2.Run(ctx2); close(done2) }()
		defer func() { cancel2(); <-done2 }()
		testkit.Eventually(t, followerWait, func() error {
			return testkit.Check(f2.Revision() == "9" && engines2.Ready() && !f2.Deleted(),
				"revision %q, ready %v, deleted %v", f2.Revision(), engines2.Ready(), f2.Deleted())
		}, "revision 9")
		testkit.Eventually(t, followerWait, func() error {
			var st followerState
			raw, err := os.ReadFile(f2.statePath())
			if err != nil {
				return err
			}
			return testkit.Check(json.Unmarshal(raw, &st) == nil && st.DeletedAt == nil && st.Revision == "9", "state.json %s", raw)
		}, "state.json without the deletion")
	})
}

// TestFollowerWithoutCacheKeepsTheMarkInMemory: no cache directory, the
// high-water mark still holds for the process's lifetime.
func TestFollowerWithoutCacheKeepsTheMarkInMemory(t *testing.T) {
	key, _ := policies.GenerateSigningKey("acme")
	fake := &fakeBundleService{}
	fake.set(signedBundle(t, key, 6, nil), `"6"`)
	srv := httptest.NewServer(fake)
	defer srv.Close()
	f, engines := newFollowerFixture(t, srv.URL, "", key)
	runFollower(t, f)
	testkit.Eventually(t, followerWait, atRevision(f, "6"), "revision 6")
	fake.update(func(f *fakeBundleService) { f.statuses = nil })
	fake.set(signedBundle(t, key, 2, privateHealth), `"2"`)
	testkit.Eventually(t, followerWait, fake.reportedWhere(func(b map[string]any) bool { return b["code"] == "bundle_rollback" }),
		"a status report refusing revision 2")
	if f.Revision() != "6" || !healthAllowed(engines) {
		t.Fatal("revision 2 was activated")
	}
}

func TestParseRevision(t *testing.T) {
	for s, want := range map[string]int64{"0": 0, "1": 1, "9223372036854775807": 1<<63 - 1} {
		if got, err := parseRevision(s); err != nil || got != want {
			t.Errorf("%q: %d %v", s, got, err)
		}
	}
	for _, s := range []string{"", "abc", "-1", "+1", "01", " 1", "1.0", "0x10", "9223372036854775808"} {
		if _, err := parseRevision(s); err == nil {
			t.Errorf("%q: accepted", s)
		}
	}
}

// TestFollowerNeverLowersTheMarkOnDisk: a state.json whose high-water mark
// is higher than this follower's (another process sharing the cache
// directory activated a newer revision) is never lowered by this one.
func TestFollowerNeverLowersTheMarkOnDisk(t *testing.T) {
	dir := t.TempDir()
	key, err := policies.GenerateSigningKey("acme")
	if err != nil {
		t.Fatal(err)
	}
	f, _ := newFollowerFixture(t, "http://127.0.0.1:1", dir, key)
	if err := f.loadState(); err != nil {
		t.Fatal(err)
	}
	if err := f.writeState(followerState{Revision: "100", Digest: "d100"}); err != nil {
		t.Fatal(err)
	}
	if err := f.writeState(followerState{Revision: "5", Digest: "d5"}); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(f.statePath())
	if err != nil {
		t.Fatal(err)
	}
	var st followerState
	if err := json.Unmarshal(raw, &st); err != nil || st.Revision != "100" || st.Digest != "d100" {
		t.Fatalf("state.json %s (%v): the mark was lowered", raw, err)
	}
	if err := f.writeState(followerState{Revision: "101", Digest: "d101"}); err != nil {
		t.Fatal(err)
	}
	raw, _ = os.ReadFile(f.statePath())
	if json.Unmarshal(raw, &st); st.Revision != "101" {
		t.Fatalf("state.json %s: a higher mark was not written", raw)
	}
}
