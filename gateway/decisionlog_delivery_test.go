package gateway

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
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

// fakeLogIntake is the control plane's …/opa/logs endpoint: it answers
// 503 while failing (counting the attempts), 400 while rejecting, and
// otherwise stores the events. With barrier set, an accepted upload waits
// (up to 5 s) until that many uploads are in flight at once.
type fakeLogIntake struct {
	mu          sync.Mutex
	failing     bool
	rejecting   bool
	attempts    int
	events      []map[string]any
	batches     []int
	inFlight    int
	maxInFlight int
	barrier     int
	gate        chan struct{}
}

func (f *fakeLogIntake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/opa/logs" || r.Header.Get("Content-Encoding") != "gzip" || r.Header.Get("Authorization") != "Bearer cred" {
		http.Error(w, "unexpected request", http.StatusTeapot)
		return
	}
	f.mu.Lock()
	if f.failing || f.rejecting {
		f.attempts++
		rejecting := f.rejecting
		f.mu.Unlock()
		if rejecting {
			http.Error(w, `{"error":"decision logs must be a JSON array of events"}`, http.StatusBadRequest)
			return
		}
		http.Error(w, "the control plane is down", http.StatusServiceUnavailable)
		return
	}
	f.inFlight++
	f.maxInFlight = max(f.maxInFlight, f.inFlight)
	if f.gate == nil {
		f.gate = make(chan struct{})
	}
	gate := f.gate
	if f.barrier > 0 && f.inFlight >= f.barrier {
		f.barrier = 0
		close(f.gate)
	}
	wait := f.barrier > 0
	f.mu.Unlock()
	if wait {
		select {
		case <-gate:
		case <-time.After(5 * time.Second):
		}
	}
	var evs []map[string]any
	zr, err := gzip.NewReader(r.Body)
	if err == nil {
		err = json.NewDecoder(zr).Decode(&evs)
	}
	f.mu.Lock()
	f.inFlight--
	if err == nil {
		f.events = append(f.events, evs...)
		f.batches = append(f.batches, len(evs))
	}
	f.mu.Unlock()
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (f *fakeLogIntake) set(fn func(f *fakeLogIntake)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

// requestIDs are the x-request-id headers of the stored events, which must
// be distinct and carry distinct decision ids.
func (f *fakeLogIntake) requestIDs(t *testing.T) map[string]bool {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	ids, decisions := map[string]bool{}, map[string]bool{}
	for _, ev := range f.events {
		h := ev["input"].(map[string]any)["attributes"].(map[string]any)["request"].(map[string]any)["http"].(map[string]any)["headers"].(map[string]any)
		id, _ := h["x-request-id"].(string)
		did, _ := ev["decision_id"].(string)
		if ids[id] || decisions[did] || did == "" {
			t.Fatalf("event delivered twice or without a decision id: %v", ev)
		}
		ids[id], decisions[did] = true, true
	}
	return ids
}

func newLogTestServer(t *testing.T) (*Engines, func(opts DecisionLogOptions) (*DecisionLogger, *Server)) {
	t.Helper()
	engines := NewEngines(model.GatewayRef{TenantID: "acme", GatewayID: "edge"})
	activate(t, engines, testCompiled(t, nil), "7")
	return engines, func(opts DecisionLogOptions) (*DecisionLogger, *Server) {
		l := NewDecisionLogger(opts)
		return l, NewServer(ServerOptions{Engines: engines, Logs: l})
	}
}

// checks makes n decisions whose events carry x-request-id r<from+i>.
func checks(t *testing.T, srv *Server, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		srv.Check(context.Background(), check("GET", "/pets/7", map[string]string{"x-key": "good", "x-request-id": fmt.Sprintf("r%d", i)}))
	}
}

// eventSize is the JSON size of one event of the checks above.
func eventSize(t *testing.T, l *DecisionLogger, engines *Engines) int {
	t.Helper()
	e := engines.For(nil)
	d, err := e.Decide(context.Background(), RequestFromCheck(check("GET", "/pets/7", map[string]string{"x-key": "good", "x-request-id": "r000"})))
	if err != nil {
		t.Fatal(err)
	}
	ev, err := l.event(logItem{engine: e, decision: d, at: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	return len(ev)
}

func closeLogs(t *testing.T, l *DecisionLogger, within time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	l.Close(ctx)
}

// TestDecisionLogsSurviveAnOutage: while the control plane fails, uploads
// are retried with backoff and nothing is dropped (the buffer holds it);
// the status says ERROR with the HTTP code. Once it answers again every
// event arrives exactly once, in batches, uploaded concurrently, and the
// status is OK again.
func TestDecisionLogsSurviveAnOutage(t *testing.T) {
	intake := &fakeLogIntake{failing: true}
	cp := httptest.NewServer(intake)
	defer cp.Close()
	_, start := newLogTestServer(t)
	logs, srv := start(DecisionLogOptions{Sink: &HTTPLogSink{URL: cp.URL + "/opa", Credential: "cred"},
		BatchEvents: 10, FlushInterval: 20 * time.Millisecond, Uploads: 4, RetryMin: 5 * time.Millisecond, RetryMax: 40 * time.Millisecond})
	const n = 500
	checks(t, srv, 0, n)
	// Far more attempts than the three the old logger made before it
	// dropped a batch.
	testkit.Eventually(t, followerWait, func() error {
		intake.mu.Lock()
		defer intake.mu.Unlock()
		return testkit.Check(intake.attempts >= 40, "%d upload attempts", intake.attempts)
	}, "uploads failing for a while")
	st := logs.Status()
	if st.State != "ERROR" || st.HTTPCode != http.StatusServiceUnavailable || !strings.Contains(st.Message, "503") {
		t.Fatalf("status during the outage: %+v", st)
	}
	if st.DroppedTotal() != 0 || st.BufferedEvents != n || st.Events != n || st.Sent != 0 {
		t.Fatalf("during the outage: %+v", st)
	}
	intake.set(func(f *fakeLogIntake) { f.failing, f.barrier = false, 2 })
	testkit.Eventually(t, followerWait, func() error {
		st := logs.Status()
		return testkit.Check(st.Sent == n, "status %+v", st)
	}, "the backlog delivered")
	st = logs.Status()
	if st.State != "OK" || st.DroppedTotal() != 0 || st.BufferedEvents != 0 || st.BufferedBytes != 0 || st.Uploads["ok"] == 0 || st.Uploads["error"] < 40 {
		t.Fatalf("status after the outage: %+v", st)
	}
	closeLogs(t, logs, 10*time.Second)
	ids := intake.requestIDs(t)
	if len(ids) != n {
		t.Fatalf("%d distinct events delivered, want %d", len(ids), n)
	}
	for i := range n {
		if !ids[fmt.Sprintf("r%d", i)] {
			t.Fatalf("event r%d lost", i)
		}
	}
	intake.mu.Lock()
	defer intake.mu.Unlock()
	if intake.maxInFlight < 2 {
		t.Errorf("uploads were not concurrent (at most %d in flight)", intake.maxInFlight)
	}
	if len(intake.batches) >= n/2 || len(intake.batches) < n/10 {
		t.Errorf("%d uploads for %d events in batches of at most 10", len(intake.batches), n)
	}
	for _, b := range intake.batches {
		if b > 10 {
			t.Errorf("a batch of %d events, more than BatchEvents", b)
		}
	}
}

// dropLines are the "decision log events dropped" log lines.
func dropLines(t *testing.T, b *syncBuffer) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, line := range bytes.Split(b.buf.Bytes(), []byte("\n")) {
		var m map[string]any
		if json.Unmarshal(line, &m) == nil && m["msg"] == "decision log events dropped" {
			out = append(out, m)
		}
	}
	return out
}

// TestDecisionLogDropsAreCountedLoggedAndReported: past the byte budget,
// events are dropped and counted by reason (buffer_full; shutdown for those
// still buffered when the logger stops without a spill directory; rejected
// for a batch the control plane refuses), in the metrics and the status;
// drops are logged at most once per interval, and the follower's status
// report carries the counts in OPA's format.
func TestDecisionLogDropsAreCountedLoggedAndReported(t *testing.T) {
	intake := &fakeLogIntake{failing: true}
	cp := httptest.NewServer(intake)
	defer cp.Close()
	engines, start := newLogTestServer(t)
	probe := NewDecisionLogger(DecisionLogOptions{Sink: &blockingSink{}})
	size := eventSize(t, probe, engines)
	closeLogs(t, probe, time.Second)

	reg := prometheus.NewRegistry()
	metrics, _ := NewMetrics(reg)
	out := &syncBuffer{}
	logs, srv := start(DecisionLogOptions{Sink: &HTTPLogSink{URL: cp.URL + "/opa", Credential: "cred"}, Metrics: metrics,
		BufferBytes: int64(20 * size), BatchEvents: 5, Uploads: 1, FlushInterval: 10 * time.Millisecond,
		RetryMin: 5 * time.Millisecond, RetryMax: 20 * time.Millisecond, DropLogInterval: time.Hour,
		Logger: slog.New(slog.NewJSONHandler(out, nil))})
	const n = 300
	if !t.Run("a full buffer drops events and the first drop is logged at once", func(t *testing.T) {
		checks(t, srv, 0, n)
		testkit.Eventually(t, followerWait, func() error {
			lines := dropLines(t, out)
			return testkit.Check(len(lines) == 1, "drop log lines %v", lines)
		}, "the first drop logged")
	}) {
		return
	}
	if !t.Run("the status report carries the drop counts and the failing uploads", func(t *testing.T) {
		key, _ := policies.GenerateSigningKey("acme")
		fake := &fakeBundleService{}
		fake.set(signedBundle(t, key, 4, nil), `"4"`)
		bs := httptest.NewServer(fake)
		defer bs.Close()
		f, err := NewFollower(FollowerOptions{URL: bs.URL + "/opa", TenantID: "acme", GatewayID: "edge", Credential: "cred",
			KeyID: key.KeyID, PublicKeyPEM: key.PublicKeyPEM, LongPoll: time.Second, Activator: &Activator{Engines: NewEngines(model.GatewayRef{TenantID: "acme", GatewayID: "edge"})},
			InstanceID: "i1", DecisionLogs: logs})
		if err != nil {
			t.Fatal(err)
		}
		runFollower(t, f)
		var report map[string]any
		testkit.Eventually(t, followerWait, func() error {
			st := logs.Status()
			fake.mu.Lock()
			defer fake.mu.Unlock()
			for _, s := range fake.statuses {
				dl, _ := s["decision_logs"].(map[string]any)
				m, _ := dl["metrics"].(map[string]any)
				plugin, _ := s["plugins"].(map[string]any)["decision_logs"].(map[string]any)
				if m != nil && st.DroppedTotal() > 0 && m["counter_decision_logs_dropped_buffer_full"] == float64(st.Dropped[DropBufferFull]) &&
					m["counter_decision_logs_dropped"] == float64(st.DroppedTotal()) && m["counter_decision_logs_events"] == float64(n) &&
					plugin["state"] == "ERROR" && dl["http_code"] == float64(503) && dl["code"] == "decision_log_error" {
					report = s
					return nil
				}
			}
			var last any
			if len(fake.statuses) > 0 {
				last = fake.statuses[len(fake.statuses)-1]["decision_logs"]
			}
			return fmt.Errorf("decision log status %+v; %d status reports, the last one's decision_logs: %v", st, len(fake.statuses), last)
		}, "a status report with the drops")
		if m := report["decision_logs"].(map[string]any)["metrics"].(map[string]any); m["counter_decision_logs_sent"] != float64(0) ||
			m["counter_decision_logs_dropped_rejected"] != float64(0) {
			t.Fatalf("report metrics: %v", m)
		}
	}) {
		return
	}
	if !t.Run("at close every event is counted as dropped, by reason, in the metrics and in two rate-limited log lines", func(t *testing.T) {
		closeLogs(t, logs, 200*time.Millisecond)
		st := logs.Status()
		full, shutdown := st.Dropped[DropBufferFull], st.Dropped[DropShutdown]
		if full < n/3 || shutdown == 0 || full+shutdown != n || st.DroppedTotal() != n || st.Sent != 0 || st.BufferedEvents != 0 {
			t.Fatalf("after close: %+v", st)
		}
		mfs, _ := reg.Gather()
		byReason := map[string]float64{}
		for _, mf := range mfs {
			if mf.GetName() == "gatehouse_decision_logs_dropped_total" {
				for _, m := range mf.GetMetric() {
					byReason[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
				}
			}
		}
		if byReason[DropBufferFull] != float64(full) || byReason[DropShutdown] != float64(shutdown) || len(byReason) != len(DecisionLogDropReasons()) {
			t.Fatalf("metrics %v, status %v", byReason, st.Dropped)
		}
		// Rate-limited: one line at the first drop, the rest in one line at
		// the end (the interval is an hour).
		lines := dropLines(t, out)
		if len(lines) != 2 || lines[0]["level"] != "WARN" {
			t.Fatalf("%d drop log lines, want 2: %v", len(lines), lines)
		}
		if total := lines[0]["dropped"].(float64) + lines[1]["dropped"].(float64); total != n || lines[1]["dropped_total"] != float64(n) {
			t.Fatalf("drop lines count %v events, want %d: %v", total, n, lines)
		}
	}) {
		return
	}
	t.Run("a batch the control plane refuses for good is dropped as rejected", func(t *testing.T) {
		intake.set(func(f *fakeLogIntake) { f.failing, f.rejecting = false, true })
		out2 := &syncBuffer{}
		rejected, srv2 := start(DecisionLogOptions{Sink: &HTTPLogSink{URL: cp.URL + "/opa", Credential: "cred"}, BatchEvents: 5,
			Logger: slog.New(slog.NewJSONHandler(out2, nil))})
		checks(t, srv2, 0, 12)
		closeLogs(t, rejected, 10*time.Second)
		if st := rejected.Status(); st.Dropped[DropRejected] != 12 || st.DroppedTotal() != 12 || st.Uploads["rejected"] != 3 {
			t.Fatalf("rejected batches: %+v", st)
		}
		if !out2.logged("WARN", "decision log batch rejected by the control plane") || len(dropLines(t, out2)) == 0 {
			t.Fatal("the rejection was not logged")
		}
	})
}

// TestDecisionLogSpillSurvivesARestart: with a spill directory, batches
// that do not fit the memory budget go to disk, and what is undelivered
// when the logger stops stays there (nothing is dropped); a new logger on
// the same directory delivers all of it.
func TestDecisionLogSpillSurvivesARestart(t *testing.T) {
	intake := &fakeLogIntake{failing: true}
	cp := httptest.NewServer(intake)
	defer cp.Close()
	engines, start := newLogTestServer(t)
	probe := NewDecisionLogger(DecisionLogOptions{Sink: &blockingSink{}})
	size := eventSize(t, probe, engines)
	closeLogs(t, probe, time.Second)
	dir := filepath.Join(t.TempDir(), "decision-logs")
	sink := &HTTPLogSink{URL: cp.URL + "/opa", Credential: "cred"}
	opts := DecisionLogOptions{Sink: sink, BufferBytes: int64(15 * size), BatchEvents: 5, Uploads: 2, FlushInterval: 10 * time.Millisecond,
		RetryMin: 5 * time.Millisecond, RetryMax: 20 * time.Millisecond, SpillDir: dir}
	first, srv := start(opts)
	const n = 200
	checks(t, srv, 0, n)
	testkit.Eventually(t, followerWait, func() error {
		st := first.Status()
		return testkit.Check(st.SpilledBytes > 0, "status %+v", st)
	}, "batches spilled to disk")
	closeLogs(t, first, 10*time.Second)
	st := first.Status()
	if st.DroppedTotal() != 0 || st.Sent != 0 || st.BufferedEvents != n || st.BufferedBytes != 0 || st.SpilledBytes == 0 {
		t.Fatalf("after the first logger stopped: %+v", st)
	}
	onDisk := 0
	files, _ := filepath.Glob(filepath.Join(dir, "acme", "edge", "*.json.gz"))
	for _, f := range files {
		_, events, ok := parseSpillName(filepath.Base(f))
		if !ok {
			t.Fatalf("unexpected file %s", f)
		}
		onDisk += events
	}
	if onDisk != n {
		t.Fatalf("%d events on disk, want %d", onDisk, n)
	}

	// A batch another gateway's authorizer spilled into the same directory
	// is not sent as this gateway's.
	other := filepath.Join(dir, "acme", "other")
	raw, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	_, foreign, _ := parseSpillName(filepath.Base(files[0]))
	if err := os.MkdirAll(other, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(other, filepath.Base(files[0])), raw, 0o600); err != nil {
		t.Fatal(err)
	}

	intake.set(func(f *fakeLogIntake) { f.failing = false })
	opts.Sink = &HTTPLogSink{URL: cp.URL + "/opa", Credential: "cred", TenantID: "acme", GatewayID: "edge"}
	second, srv2 := start(opts)
	if st := second.Status(); st.BufferedEvents != int64(n+foreign) || st.SpilledBytes == 0 {
		t.Fatalf("the second logger did not queue the spilled events: %+v", st)
	}
	checks(t, srv2, n, 10)
	closeLogs(t, second, 10*time.Second)
	if st := second.Status(); st.Sent != n+10 || st.Dropped[DropRejected] != uint64(foreign) || st.DroppedTotal() != uint64(foreign) ||
		st.BufferedEvents != 0 || st.SpilledBytes != 0 {
		t.Fatalf("after the second logger: %+v", st)
	}
	ids := intake.requestIDs(t)
	for i := range n + 10 {
		if !ids[fmt.Sprintf("r%d", i)] {
			t.Fatalf("event r%d lost", i)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "acme", "*", "*")); len(left) != 0 {
		t.Fatalf("delivered batches left on disk: %v", left)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatal(err)
	}
}
