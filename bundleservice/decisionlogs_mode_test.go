package bundleservice_test

import (
	"fmt"
	"testing"
)

// TestGatewayStatusShowsTheDecisionLogMode: the decision log mode an
// authorizer reports (mode, mode_source) and what the mode skipped
// (counter_decision_logs_skipped, _skipped_<mode>) are kept per instance;
// the gateway's summary lists the modes and adds up the skipped. A mode
// the control plane does not know, or not in its canonical form, is left
// out, and so is an unknown source.
func TestGatewayStatusShowsTheDecisionLogMode(t *testing.T) {
	s := newSite(t, siteOptions{})
	token := s.bundleGateway()
	report := func(id, mode, source string, skipped int) string {
		return fmt.Sprintf(`{"labels":{"id":%q},"bundles":{"gatehouse":{"name":"gatehouse","active_revision":"1"}},`+
			`"decision_logs":{"mode":%q,"mode_source":%q,"metrics":{"counter_decision_logs_events":3,"counter_decision_logs_sent":3,`+
			`"counter_decision_logs_dropped":0,"counter_decision_logs_skipped":%d,"counter_decision_logs_skipped_off":0,`+
			`"counter_decision_logs_skipped_denied":0,"counter_decision_logs_skipped_sample":%d}},`+
			`"plugins":{"bundle":{"state":"OK"},"decision_logs":{"state":"OK"}}}`, id, mode, source, skipped, skipped)
	}
	for _, r := range []string{report("a", "sample:10", "gateway", 27), report("b", "off", "authorizer", 0),
		report("c", "sample:010", "gateway", 5), report("d", "denied", "elsewhere", 1)} {
		s.expect(s.do("POST", "/api/system/acme/gateways/edge/opa/status", token, r), 204)
	}
	opa := s.opaStatus("acme", "edge")
	want := map[string]struct{ mode, source any }{"a": {"sample:10", "gateway"}, "b": {"off", "authorizer"}, "c": {nil, nil}, "d": {"denied", nil}}
	for _, raw := range opa["instances"].([]any) {
		inst := raw.(map[string]any)
		dl := inst["decision_logs"].(map[string]any)
		w := want[inst["id"].(string)]
		if dl["mode"] != w.mode || dl["mode_source"] != w.source {
			t.Errorf("instance %s: mode %v from %v, want %v from %v", inst["id"], dl["mode"], dl["mode_source"], w.mode, w.source)
		}
		if inst["id"] == "a" && (dl["skipped"] != float64(27) || fmt.Sprint(dl["skipped_by_mode"]) != "map[denied:0 off:0 sample:27]") {
			t.Errorf("instance a: %v", dl)
		}
	}
	dl := opa["decision_logs"].(map[string]any)
	if fmt.Sprint(dl["modes"]) != "[denied off sample:10]" || dl["skipped"] != float64(33) {
		t.Fatalf("decision_logs summary: %v", dl)
	}
}
