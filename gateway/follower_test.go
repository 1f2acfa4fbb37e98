package gateway

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

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
	down := f.down
	f.mu.Unlock()
	if down {
		http.Error(w, "down", http.StatusServiceUnavailable)
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

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func newFollowerFixture(t *testing.T, url, cacheDir string, key *policies.SigningKey) (*Follower, *Engines) {
	t.Helper()
	engines := NewEngines(Key("acme", "edge"))
	f, err := NewFollower(FollowerOptions{URL: url + "/opa", TenantID: "acme", GatewayID: "edge", Credential: "cred",
		KeyID: key.KeyID, PublicKeyPEM: key.PublicKeyPEM, CacheDir: cacheDir, LongPoll: time.Second,
		Activator: &Activator{Engines: engines}, InstanceID: "test-instance", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
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
	waitUntil(t, "the first activation", func() bool { return f.Revision() == "1" })
	if e := engines.For(nil); e == nil || e.Revision != "1" {
		t.Fatal("no engine after activation")
	}
	// A new revision arrives through the long poll.
	fake.set(signedBundle(t, key, 2, func(c *policies.Config) { c.APIs[2].Spec.Public = false }), `"2"`)
	waitUntil(t, "revision 2", func() bool { return f.Revision() == "2" })
	// A bundle signed with another key is refused; revision 2 stays.
	other, _ := policies.GenerateSigningKey("acme")
	fake.set(signedBundle(t, other, 3, nil), `"3"`)
	time.Sleep(300 * time.Millisecond)
	if f.Revision() != "2" || engines.For(nil).Revision != "2" {
		t.Fatal("a bundle with a bad signature was activated")
	}
	waitUntil(t, "a status report with the error", func() bool {
		fake.mu.Lock()
		defer fake.mu.Unlock()
		for _, s := range fake.statuses {
			b := s["bundles"].(map[string]any)["gatehouse"].(map[string]any)
			if b["active_revision"] == "2" && b["code"] == "bundle_error" {
				return true
			}
		}
		return false
	})
	cancel()
	<-done
	if _, err := os.Stat(f.cachePath()); err != nil {
		t.Fatalf("no cache written: %v", err)
	}

	// Control plane down: a new follower starts from the disk cache.
	fake.mu.Lock()
	fake.down = true
	fake.mu.Unlock()
	f2, engines2 := newFollowerFixture(t, srv.URL, cache, key)
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	go f2.Run(ctx2)
	waitUntil(t, "activation from the cache", func() bool { return engines2.For(nil) != nil })
	if engines2.For(nil).Revision != "2" {
		t.Fatalf("cache gave revision %s", engines2.For(nil).Revision)
	}
	// A tampered cache is not used.
	raw, _ := os.ReadFile(f.cachePath())
	os.WriteFile(f.cachePath(), bytes.Replace(raw, raw[len(raw)-40:], make([]byte, 40), 1), 0o600)
	f3, engines3 := newFollowerFixture(t, srv.URL, cache, key)
	if err := f3.LoadCache(context.Background()); err == nil || engines3.For(nil) != nil {
		t.Fatal("a corrupted cache was activated")
	}
	// With nothing at all, requests are denied (fail closed).
	srv3 := NewServer(ServerOptions{Engines: engines3})
	if res, _ := srv3.Check(context.Background(), check("GET", "/healthz", nil)); res.GetOkResponse() != nil {
		t.Fatal("allowed without any bundle")
	}
}

type blockingSink struct {
	mu     sync.Mutex
	events []json.RawMessage
	block  chan struct{}
}

func (s *blockingSink) Send(ctx context.Context, _, _ string, evs []json.RawMessage) error {
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
	engines := NewEngines(Key("acme", "edge"))
	activate(t, engines, testCompiled(t, nil), "7")
	reg := prometheus.NewRegistry()
	metrics, _ := NewMetrics(reg)
	sink := &blockingSink{}
	logs := NewDecisionLogger(DecisionLogOptions{Sink: sink, InstanceID: "i1", Metrics: metrics, FlushInterval: 50 * time.Millisecond})
	srv := NewServer(ServerOptions{Engines: engines, Logs: logs, Metrics: metrics})
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

	// A stuck sink: checks never block, the overflow is dropped and counted.
	stuck := &blockingSink{block: make(chan struct{})}
	small := NewDecisionLogger(DecisionLogOptions{Sink: stuck, BufferSize: 5, BatchSize: 1, Metrics: metrics})
	srv2 := NewServer(ServerOptions{Engines: engines, Logs: small})
	start := time.Now()
	for i := 0; i < 200; i++ {
		srv2.Check(context.Background(), check("GET", "/healthz", nil))
	}
	if time.Since(start) > 2*time.Second {
		t.Fatal("checks blocked on the decision log")
	}
	close(stuck.block)
	small.Close(context.Background())
	mfs, _ := reg.Gather()
	dropped := 0.0
	for _, mf := range mfs {
		if mf.GetName() == "gatehouse_authorizer_decision_logs_dropped_total" {
			dropped = mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	if dropped < 150 || len(stuck.events)+int(dropped) != 200 {
		t.Fatalf("dropped %v, delivered %d of 200", dropped, len(stuck.events))
	}
}

func TestReverseProxy(t *testing.T) {
	var seen http.Header
	var seenPath string
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen, seenPath = r.Header.Clone(), r.URL.Path
		w.Write([]byte("from upstream"))
	}))
	defer upstream.Close()
	engines := NewEngines(Key("acme", "edge"))
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
