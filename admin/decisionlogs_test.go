package admin_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/admin"
)

// TestGatewayStatusShowsDecisionLogDrops: the decision_logs part of an
// authorizer's OPA status report (the plugin state and OPA's counters,
// counter_decision_logs_dropped_<reason> among them) is kept per instance
// and summed over the instances in the gateway's status.
func TestGatewayStatusShowsDecisionLogDrops(t *testing.T) {
	e := newEnv(t)
	token := e.bundleGateway()
	report := func(id, state string, full, shutdown, sent int) string {
		return fmt.Sprintf(`{"labels":{"id":%q},"bundles":{"gatehouse":{"name":"gatehouse","active_revision":"1"}},`+
			`"decision_logs":{"code":"decision_log_error","message":"upload decision logs: HTTP 503","http_code":503,"metrics":{`+
			`"counter_decision_logs_events":%d,"counter_decision_logs_sent":%d,"counter_decision_logs_dropped":%d,`+
			`"counter_decision_logs_dropped_buffer_full":%d,"counter_decision_logs_dropped_shutdown":%d,"counter_decision_logs_dropped_rejected":0,`+
			`"gauge_decision_logs_buffered_events":7,"gauge_decision_logs_buffered_bytes":1234,"counter_decision_logs_dropped_x":"not a number"}},`+
			`"plugins":{"bundle":{"state":"OK"},"decision_logs":{"state":%q}}}`,
			id, sent+full+shutdown+7, sent, full+shutdown, full, shutdown, state)
	}
	e.expect(e.do("POST", "/api/system/acme/gateways/edge/opa/status", token, report("authz-1", "ERROR", 40, 2, 100)), 204)
	e.expect(e.do("POST", "/api/system/acme/gateways/edge/opa/status", token, report("authz-2", "OK", 5, 0, 300)), 204)
	// A stock OPA without decision logs reports none of it.
	e.expect(e.do("POST", "/api/system/acme/gateways/edge/opa/status", token, `{"labels":{"id":"opa-3"},"plugins":{"bundle":{"state":"OK"}}}`), 204)

	opa := e.expect(e.do("GET", "/api/admin/acme/gateways/edge", rootToken, nil), 200).json(t)["status"].(map[string]any)["opa"].(map[string]any)
	dl, ok := opa["decision_logs"].(map[string]any)
	if !ok {
		t.Fatalf("no decision_logs in the gateway status: %v", opa)
	}
	by := dl["dropped_by_reason"].(map[string]any)
	if dl["dropped"] != float64(47) || by["buffer_full"] != float64(45) || by["shutdown"] != float64(2) || by["rejected"] != float64(0) ||
		len(by) != 3 || dl["sent"] != float64(400) || dl["buffered_events"] != float64(14) || fmt.Sprint(dl["failing"]) != "[authz-1]" {
		t.Fatalf("decision_logs summary: %v", dl)
	}
	for _, raw := range opa["instances"].([]any) {
		inst := raw.(map[string]any)
		idl, has := inst["decision_logs"].(map[string]any)
		switch inst["id"] {
		case "authz-1":
			if !has || idl["state"] != "ERROR" || idl["dropped"] != float64(42) || idl["events"] != float64(149) {
				t.Fatalf("authz-1: %v", inst)
			}
			errs := fmt.Sprint(inst["errors"])
			if !strings.Contains(errs, "decision logs: decision_log_error upload decision logs: HTTP 503") {
				t.Fatalf("authz-1 errors: %s", errs)
			}
		case "opa-3":
			if has {
				t.Fatalf("opa-3 reported no decision logs: %v", inst)
			}
		}
	}
}

// TestDecisionLogRetention: a gateway's decision log keeps its newest
// DecisionLogsKept events, give or take a tenth (trimming is amortised
// over uploads), and never loses an event it keeps.
func TestDecisionLogRetention(t *testing.T) {
	e := newEnvWith(t, func(o *admin.Options) { o.DecisionLogsKept = 2000 })
	token := e.bundleGateway()
	next := 0
	upload := func(n int) {
		var b strings.Builder
		b.WriteByte('[')
		for i := range n {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"decision_id":"d%d","n":%d}`, next, next)
			next++
		}
		b.WriteByte(']')
		e.expect(e.do("POST", "/api/system/acme/gateways/edge/opa/logs", token, b.String()), 204)
	}
	count := func() (int, int) {
		t.Helper()
		total, oldest, after := 0, -1, ""
		for {
			path := "/api/admin/acme/gateways/edge/decisions?limit=1000"
			if after != "" {
				path += "&after=" + after
			}
			page := e.expect(e.do("GET", path, rootToken, nil), 200).json(t)
			for _, d := range page["decisions"].([]any) {
				total++
				oldest = int(d.(map[string]any)["event"].(map[string]any)["n"].(float64))
			}
			if after, _ = page["next"].(string); after == "" {
				return total, oldest
			}
		}
	}
	for range 5 {
		upload(500)
	}
	if n, oldest := count(); n != 2500-500 && n != 2500 {
		t.Fatalf("after 2,500 events: %d kept (oldest %d)", n, oldest)
	}
	for range 40 {
		upload(100)
	}
	n, oldest := count()
	if n < 2000 || n > 2000+1000+100 || oldest != next-n {
		t.Fatalf("after %d events: %d kept, the oldest is %d (want the newest, at least 2,000)", next, n, oldest)
	}
}
