package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/policies"
)

// withDecisionLogs sets the test gateway's decision_logs.
func withDecisionLogs(mode string) func(*policies.Config) {
	return func(c *policies.Config) { c.Gateways[0].Spec.DecisionLogs = mode }
}

// modeChecks makes n checks r0…r(n-1): r(3k) allowed, r(3k+1) denied,
// r(3k+2) allowed under dry run although its policy denies it.
func modeChecks(t *testing.T, srv *Server, n int) {
	t.Helper()
	for i := range n {
		method, key := "GET", "good"
		switch i % 3 {
		case 1:
			key = "bad"
		case 2:
			method = "DELETE"
		}
		res, err := srv.Check(context.Background(), check(method, "/pets/7", map[string]string{"x-key": key, "x-request-id": fmt.Sprintf("r%d", i)}))
		if err != nil {
			t.Fatal(err)
		}
		if allowed := res.GetOkResponse() != nil; allowed != (i%3 != 1) {
			t.Fatalf("check r%d: allowed %v", i, allowed)
		}
	}
}

// loggedRequests are the x-request-id of the events a sink got, in order.
func loggedRequests(t *testing.T, sink *blockingSink) []string {
	t.Helper()
	sink.mu.Lock()
	defer sink.mu.Unlock()
	var ids []string
	for _, raw := range sink.events {
		var ev struct {
			Input struct {
				Attributes struct {
					Request struct {
						HTTP struct {
							Headers map[string]string `json:"headers"`
						} `json:"http"`
					} `json:"request"`
				} `json:"attributes"`
			} `json:"input"`
		}
		if err := json.Unmarshal(raw, &ev); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, ev.Input.Attributes.Request.HTTP.Headers["x-request-id"])
	}
	return ids
}

func requestIDs(keep func(i int) bool, n int) []string {
	var ids []string
	for i := range n {
		if keep(i) {
			ids = append(ids, fmt.Sprintf("r%d", i))
		}
	}
	return ids
}

// TestDecisionLogModes: the gateway's decision_logs (from its bundle), or
// the logger's override, decides which decisions become events: on all,
// off none, denied the denials (dry-run ones included), sample:N the
// first and every Nth after it, allowed or denied alike. What is left out
// is counted as skipped under its mode, never as dropped.
func TestDecisionLogModes(t *testing.T) {
	const n = 30
	on := func(int) bool { return true }
	for _, c := range []struct {
		name, bundle, override string
		want                   func(i int) bool
	}{
		{"default", "", "", on},
		{"on", "on", "", on},
		{"off", "off", "", func(int) bool { return false }},
		{"denied", "denied", "", func(i int) bool { return i%3 != 0 }},
		{"sample:10", "sample:10", "", func(i int) bool { return i%10 == 0 }},
		{"sample:1", "sample:1", "", on},
		{"sample:1000000", "sample:1000000", "", func(i int) bool { return i == 0 }},
		{"override on over off", "off", "on", on},
		{"override off over on", "on", "off", func(int) bool { return false }},
		{"override sample:7 over denied", "denied", "sample:7", func(i int) bool { return i%7 == 0 }},
	} {
		t.Run(c.name, func(t *testing.T) {
			engines := NewEngines(model.GatewayRef{TenantID: "acme", GatewayID: "edge"})
			e := activate(t, engines, testCompiled(t, withDecisionLogs(c.bundle)), "7")
			opts := DecisionLogOptions{Sink: &blockingSink{}, FlushInterval: 10 * time.Millisecond}
			mode := c.bundle
			if c.override != "" {
				m, err := model.ParseDecisionLogMode(c.override)
				if err != nil {
					t.Fatal(err)
				}
				opts.Mode, mode = &m, c.override
			}
			if mode == "" {
				mode = "on"
			}
			sink := opts.Sink.(*blockingSink)
			logs := NewDecisionLogger(opts)
			if got := logs.Mode(e).String(); got != mode {
				t.Fatalf("Mode %q, want %q", got, mode)
			}
			modeChecks(t, NewServer(ServerOptions{Engines: engines, Logs: logs}), n)
			closeLogs(t, logs, followerWait)

			want := requestIDs(c.want, n)
			if got := loggedRequests(t, sink); !slices.Equal(got, want) {
				t.Fatalf("logged %v, want %v", got, want)
			}
			st := logs.Status()
			m, _ := model.ParseDecisionLogMode(mode)
			wantSkipped := map[string]uint64{"off": 0, "denied": 0, "sample": 0}
			if skipped := uint64(n - len(want)); skipped > 0 {
				wantSkipped[m.Kind.String()] = skipped
			}
			if st.Events != uint64(len(want)) || st.Sent != uint64(len(want)) || st.DroppedTotal() != 0 ||
				fmt.Sprint(st.Skipped) != fmt.Sprint(wantSkipped) || st.SkippedTotal() != uint64(n-len(want)) {
				t.Fatalf("status %+v, want %d events and skipped %v", st, len(want), wantSkipped)
			}
			if (st.Override == nil) != (c.override == "") || (st.Override != nil && st.Override.String() != c.override) {
				t.Fatalf("status override %v, want %q", st.Override, c.override)
			}
		})
	}
}

// TestDecisionLogSampleCountsPerGateway: under sample:N each gateway of
// one logger (gatehouse serve's) has its own count, so one gateway's
// traffic does not decide which of another's decisions are logged.
func TestDecisionLogSampleCountsPerGateway(t *testing.T) {
	engines := NewEngines(model.GatewayRef{})
	var cfg *policies.Config
	activate(t, engines, testCompiled(t, func(c *policies.Config) {
		withDecisionLogs("sample:3")(c)
		second := c.Gateways[0]
		second.ID, second.Name = "edge2", "edge2"
		c.Gateways = append(c.Gateways, second)
		cfg = c
	}), "7")
	other, err := policies.Compile(cfg, "edge2")
	if err != nil {
		t.Fatal(err)
	}
	activate(t, engines, other, "7")
	sink := &blockingSink{}
	logs := NewDecisionLogger(DecisionLogOptions{Sink: sink, FlushInterval: 10 * time.Millisecond})
	srv := NewServer(ServerOptions{Engines: engines, Logs: logs})
	// edge: 4 checks (r0 and r3 logged); edge2 in between: 2 checks (its
	// first, e0, logged).
	for i, c := range []struct{ gw, id string }{{"edge", "r0"}, {"edge2", "e0"}, {"edge", "r1"}, {"edge", "r2"}, {"edge2", "e1"}, {"edge", "r3"}} {
		req := check("GET", "/pets/7", map[string]string{"x-key": "good", "x-request-id": c.id})
		req.Attributes.ContextExtensions = map[string]string{"tenant": "acme", "gateway": c.gw}
		if res, err := srv.Check(context.Background(), req); err != nil || res.GetOkResponse() == nil {
			t.Fatalf("check %d: %v %v", i, res, err)
		}
	}
	closeLogs(t, logs, followerWait)
	got := loggedRequests(t, sink)
	slices.Sort(got)
	if want := []string{"e0", "r0", "r3"}; !slices.Equal(got, want) {
		t.Fatalf("logged %v, want %v", got, want)
	}
	if st := logs.Status(); st.Skipped["sample"] != 3 || st.Events != 3 {
		t.Fatalf("status %+v", st)
	}
}

// TestDecisionLogSkipDoesNotAllocate: a decision the mode leaves out
// costs a counter, not an allocation.
func TestDecisionLogSkipDoesNotAllocate(t *testing.T) {
	for _, mode := range []string{"off", "denied", "sample:1000"} {
		t.Run(mode, func(t *testing.T) {
			engines := NewEngines(model.GatewayRef{TenantID: "acme", GatewayID: "edge"})
			e := activate(t, engines, testCompiled(t, withDecisionLogs(mode)), "7")
			logs := NewDecisionLogger(DecisionLogOptions{Sink: &blockingSink{}})
			defer logs.Close(context.Background())
			d := &Decision{Allowed: true}
			now := time.Now()
			logs.Log(e, d, now, time.Millisecond) // sample: its first is taken
			before := logs.Status().Events
			if allocs := testing.AllocsPerRun(200, func() { logs.Log(e, d, now, time.Millisecond) }); allocs != 0 {
				t.Fatalf("%v allocations per skipped decision", allocs)
			}
			if st := logs.Status(); st.Events != before || st.SkippedTotal() < 200 {
				t.Fatalf("status %+v", st)
			}
		})
	}
}

// TestStatusReportShowsTheDecisionLogMode: the follower's status report
// says which mode is in effect and where it comes from — the gateway's
// (its active bundle's, changing with it) or the authorizer's override —
// and counts what the mode skipped.
func TestStatusReportShowsTheDecisionLogMode(t *testing.T) {
	key, _ := policies.GenerateSigningKey("acme")
	for _, c := range []struct {
		name, override string
	}{{"the gateway's", ""}, {"the authorizer's override", "off"}} {
		t.Run(c.name, func(t *testing.T) {
			fake := &fakeBundleService{}
			fake.set(signedBundle(t, key, 4, withDecisionLogs("sample:5")), `"4"`)
			bs := httptest.NewServer(fake)
			defer bs.Close()
			opts := DecisionLogOptions{Sink: &HTTPLogSink{URL: bs.URL + "/opa", Credential: "cred"}, FlushInterval: 10 * time.Millisecond}
			wantMode, wantSource := "sample:5", "gateway"
			if c.override != "" {
				m, _ := model.ParseDecisionLogMode(c.override)
				opts.Mode, wantMode, wantSource = &m, c.override, "authorizer"
			}
			logs := NewDecisionLogger(opts)
			defer logs.Close(context.Background())
			engines := NewEngines(model.GatewayRef{TenantID: "acme", GatewayID: "edge"})
			f, err := NewFollower(FollowerOptions{URL: bs.URL + "/opa", TenantID: "acme", GatewayID: "edge", Credential: "cred",
				KeyID: key.KeyID, PublicKeyPEM: key.PublicKeyPEM, LongPoll: time.Second, Activator: &Activator{Engines: engines},
				InstanceID: "i1", DecisionLogs: logs})
			if err != nil {
				t.Fatal(err)
			}
			runFollower(t, f)
			testkit.Eventually(t, followerWait, atRevision(f, "4"), "revision 4 active")
			srv := NewServer(ServerOptions{Engines: engines, Logs: logs})
			modeChecks(t, srv, 10)
			skipped := logs.Status().SkippedTotal()
			if want := map[string]uint64{"": 8, "off": 10}[c.override]; skipped != want {
				t.Fatalf("skipped %d, want %d", skipped, want)
			}
			reportWith := func(mode, source string, skipped uint64) func() error {
				return func() error {
					f.report(context.Background())
					fake.mu.Lock()
					defer fake.mu.Unlock()
					if len(fake.statuses) == 0 {
						return fmt.Errorf("no status report yet")
					}
					last, _ := fake.statuses[len(fake.statuses)-1]["decision_logs"].(map[string]any)
					m, _ := last["metrics"].(map[string]any)
					return testkit.Check(last["mode"] == mode && last["mode_source"] == source &&
						m["counter_decision_logs_skipped"] == float64(skipped),
						"decision_logs of the last report: %v", last)
				}
			}
			testkit.Eventually(t, followerWait, reportWith(wantMode, wantSource, skipped), "a report with the mode")
			if c.override != "" {
				return
			}
			// A new bundle with another mode: the report follows it.
			fake.set(signedBundle(t, key, 5, withDecisionLogs("denied")), `"5"`)
			testkit.Eventually(t, followerWait, atRevision(f, "5"), "revision 5 active")
			testkit.Eventually(t, followerWait, reportWith("denied", "gateway", skipped), "a report with the new mode")
		})
	}
}

// TestDecisionLogReportWithoutAMode: before any bundle is active and
// without an override no mode is reported (rather than a guess).
func TestDecisionLogReportWithoutAMode(t *testing.T) {
	logs := NewDecisionLogger(DecisionLogOptions{Sink: &blockingSink{}})
	defer logs.Close(context.Background())
	f := &Follower{opts: FollowerOptions{TenantID: "acme", GatewayID: "edge", Activator: &Activator{Engines: NewEngines(model.GatewayRef{})}}}
	mode, source := f.decisionLogMode(logs.Status())
	status, _ := decisionLogReport(logs.Status(), mode, source)
	if _, ok := status["mode"]; ok || mode != "" {
		t.Fatalf("report %v", status)
	}
	if m := status["metrics"].(map[string]any); m["counter_decision_logs_skipped_off"] != uint64(0) || m["counter_decision_logs_skipped"] != uint64(0) {
		t.Fatalf("metrics %v", m)
	}
}
