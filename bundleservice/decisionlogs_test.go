package bundleservice_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/bundles"
	"github.com/gatehouse-dev/gatehouse/internal/httpapi"
	"github.com/gatehouse-dev/gatehouse/store"
)

// TestGatewayStatusShowsDecisionLogDrops: the decision_logs part of an
// authorizer's OPA status report (the plugin state and OPA's counters,
// counter_decision_logs_dropped_<reason> among them) is kept per instance
// and summed over the instances in the gateway's status.
func TestGatewayStatusShowsDecisionLogDrops(t *testing.T) {
	s := newSite(t, siteOptions{})
	token := s.bundleGateway()
	report := func(id, state string, full, shutdown, sent int) string {
		return fmt.Sprintf(`{"labels":{"id":%q},"bundles":{"gatehouse":{"name":"gatehouse","active_revision":"1"}},`+
			`"decision_logs":{"code":"decision_log_error","message":"upload decision logs: HTTP 503","http_code":503,"metrics":{`+
			`"counter_decision_logs_events":%d,"counter_decision_logs_sent":%d,"counter_decision_logs_dropped":%d,`+
			`"counter_decision_logs_dropped_buffer_full":%d,"counter_decision_logs_dropped_shutdown":%d,"counter_decision_logs_dropped_rejected":0,`+
			`"gauge_decision_logs_buffered_events":7,"gauge_decision_logs_buffered_bytes":1234,"counter_decision_logs_dropped_x":"not a number"}},`+
			`"plugins":{"bundle":{"state":"OK"},"decision_logs":{"state":%q}}}`,
			id, sent+full+shutdown+7, sent, full+shutdown, full, shutdown, state)
	}
	s.expect(s.do("POST", "/api/system/acme/gateways/edge/opa/status", token, report("authz-1", "ERROR", 40, 2, 100)), 204)
	s.expect(s.do("POST", "/api/system/acme/gateways/edge/opa/status", token, report("authz-2", "OK", 5, 0, 300)), 204)
	// A stock OPA without decision logs reports none of it.
	s.expect(s.do("POST", "/api/system/acme/gateways/edge/opa/status", token, `{"labels":{"id":"opa-3"},"plugins":{"bundle":{"state":"OK"}}}`), 204)

	opa := s.opaStatus("acme", "edge")
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

// TestStatusReports: a gateway remembers the MaxOPAInstances instances
// seen last, the newest report decides the active revision, and the last
// bundle fetch is recorded; a report that is not a JSON object is refused.
func TestStatusReports(t *testing.T) {
	s := newSite(t, siteOptions{})
	token := s.bundleGateway()
	for i := range bundles.MaxOPAInstances + 8 {
		s.expect(s.do("POST", "/api/system/acme/gateways/edge/opa/status", token, fmt.Sprintf(`{"labels":{"id":"old-%d"}}`, i)), 204)
	}
	status := `{"labels":{"id":"opa-1","version":"1.22.2"},"bundles":{"edge":{"name":"edge","active_revision":"7","last_successful_activation":"2026-11-23T10:00:00Z"}},"plugins":{"bundle":{"state":"OK"}}}`
	s.expect(s.do("POST", "/api/system/acme/gateways/edge/opa/status", token, status), 204)
	opa := s.opaStatus("acme", "edge")
	if n := len(opa["instances"].([]any)); n != bundles.MaxOPAInstances {
		t.Fatalf("%d OPA instances remembered, want %d", n, bundles.MaxOPAInstances)
	}
	if opa["active_revision"] != "7" || opa["instances"].([]any)[0].(map[string]any)["id"] != "opa-1" || opa["last_fetch"] == nil {
		t.Fatalf("status: %v", opa)
	}
	for _, body := range []string{"null", `[1]`, `{"labels":`} {
		if r := s.do("POST", "/api/system/acme/gateways/edge/opa/status", token, body); r.status != 400 || r.errorCode(t) != httpapi.CodeInvalidJSON {
			t.Errorf("status report %s: %d %s", body, r.status, r.body)
		}
	}
}

// TestDecisionLogUploads: gzip or plain JSON arrays of objects are
// appended, newest last; anything else is refused and appends nothing.
func TestDecisionLogUploads(t *testing.T) {
	s := newSite(t, siteOptions{})
	token := s.bundleGateway()
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(`[{"decision_id":"d1","result":{"allowed":true}},{"decision_id":"d2","result":{"allowed":false}}]`))
	zw.Close()
	s.expect(s.do("POST", "/api/system/acme/gateways/edge/opa/logs", token, gz.Bytes(), "Content-Encoding", "gzip"), 204)
	s.expect(s.do("POST", "/api/system/acme/gateways/edge/opa/logs", token, `[{"decision_id":"d3"}]`), 204)
	for _, c := range []struct {
		body    string
		headers []string
		code    string
	}{
		{`{"not":"an array"}`, nil, httpapi.CodeInvalidJSON},
		{`null`, nil, httpapi.CodeInvalidJSON},
		{`[{"decision_id":"d4"}, 7]`, nil, httpapi.CodeInvalidJSON},
		{`[{"decision_id":"d4"}]`, []string{"Content-Encoding", "gzip"}, httpapi.CodeInvalidRequest},
	} {
		if r := s.do("POST", "/api/system/acme/gateways/edge/opa/logs", token, c.body, c.headers...); r.status != 400 || r.errorCode(t) != c.code {
			t.Errorf("decision logs %s %v: %d %s, want 400 %s", c.body, c.headers, r.status, r.body, c.code)
		}
	}
	var ids []string
	for _, e := range decisions(t, s.store, "acme", "edge") {
		ids = append(ids, e["decision_id"].(string))
	}
	if fmt.Sprint(ids) != "[d3 d2 d1]" {
		t.Fatalf("decision log, newest first: %v", ids)
	}
}

// decisions is gateway gw's decision log, newest first, as the admin API
// lists it.
func decisions(t *testing.T, st store.Store, tid, gw string) []map[string]any {
	t.Helper()
	var out []map[string]any
	after := ""
	for {
		page, err := st.ListLog(context.Background(), store.LogQuery{Stream: bundles.DecisionLog(tid, gw), Limit: 1000, After: after})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range page.Items {
			var ev map[string]any
			if err := json.Unmarshal(e.Data, &ev); err != nil {
				t.Fatalf("decision log entry %s: %v", e.ID, err)
			}
			out = append(out, ev)
		}
		if after = page.Next; after == "" {
			return out
		}
	}
}

// TestDecisionLogRetention: a gateway's decision log keeps its newest
// DecisionLogsKept events, give or take a tenth (trimming is amortised
// over uploads), and never loses an event it keeps.
func TestDecisionLogRetention(t *testing.T) {
	s := newSite(t, siteOptions{decisionLogsKept: 2000})
	token := s.bundleGateway()
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
		s.expect(s.do("POST", "/api/system/acme/gateways/edge/opa/logs", token, b.String()), 204)
	}
	count := func() (int, int) {
		t.Helper()
		total, oldest := 0, -1
		for _, d := range decisions(t, s.store, "acme", "edge") {
			total++
			oldest = int(d["n"].(float64))
		}
		return total, oldest
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
