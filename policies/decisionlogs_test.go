package policies

import (
	"testing"

	"github.com/gatehouse-dev/gatehouse/model"
)

// TestBundleCarriesTheDecisionLogMode: the gateway's decision_logs is in
// data.gatehouse.config.gateway (on when the gateway sets none) and
// ParseBundleConfig reads it back parsed; a bundle without it, or with a
// value this authorizer does not know, logs everything.
func TestBundleCarriesTheDecisionLogMode(t *testing.T) {
	for _, c := range []struct{ spec, want string }{{"", "on"}, {"off", "off"}, {"denied", "denied"}, {"sample:25", "sample:25"}} {
		cfg := testConfig()
		cfg.Gateways[0].Spec.DecisionLogs = c.spec
		compiled, err := Compile(cfg, "edge")
		if err != nil {
			t.Fatal(err)
		}
		gw := compiled.Data[Root].(map[string]any)["config"].(map[string]any)["gateway"].(map[string]any)
		if gw["decision_logs"] != c.want {
			t.Errorf("%q: bundle's gateway.decision_logs %v, want %q", c.spec, gw["decision_logs"], c.want)
		}
		bc, err := ParseBundleConfig(compiled.Data)
		if err != nil {
			t.Fatal(err)
		}
		if bc.Gateway.DecisionLogs != c.want || bc.Gateway.DecisionLogMode.String() != c.want {
			t.Errorf("%q: parsed %q (%v), want %q", c.spec, bc.Gateway.DecisionLogs, bc.Gateway.DecisionLogMode, c.want)
		}
	}
	compiled, err := Compile(testConfig(), "edge")
	if err != nil {
		t.Fatal(err)
	}
	gw := compiled.Data[Root].(map[string]any)["config"].(map[string]any)["gateway"].(map[string]any)
	for _, old := range []any{nil, "sample:0", "every-other"} {
		if old == nil {
			delete(gw, "decision_logs")
		} else {
			gw["decision_logs"] = old
		}
		bc, err := ParseBundleConfig(compiled.Data)
		if err != nil {
			t.Fatalf("%v: %v", old, err)
		}
		if bc.Gateway.DecisionLogMode != (model.DecisionLogMode{}) {
			t.Errorf("decision_logs %v reads as %v, want on", old, bc.Gateway.DecisionLogMode)
		}
	}
}
