package model

import "testing"

func TestParseDecisionLogMode(t *testing.T) {
	for _, c := range []struct {
		in   string
		want DecisionLogMode
	}{
		{"on", DecisionLogMode{}},
		{"off", DecisionLogMode{Kind: DecisionLogsOff}},
		{"denied", DecisionLogMode{Kind: DecisionLogsDenied}},
		{"sample:1", DecisionLogMode{Kind: DecisionLogsSample, N: 1}},
		{"sample:250", DecisionLogMode{Kind: DecisionLogsSample, N: 250}},
		{"sample:1000000", DecisionLogMode{Kind: DecisionLogsSample, N: MaxDecisionLogSample}},
	} {
		got, err := ParseDecisionLogMode(c.in)
		if err != nil || got != c.want {
			t.Errorf("%q: %+v %v, want %+v", c.in, got, err, c.want)
		}
		if got.String() != c.in {
			t.Errorf("%q reads back as %q", c.in, got.String())
		}
	}
	if (DecisionLogMode{}).String() != DefaultDecisionLogs {
		t.Errorf("the zero mode is %q", DecisionLogMode{}.String())
	}
	for _, bad := range []string{"", "ON", "On", " on", "on ", "true", "false", "none", "all", "sample", "sample:", "sample:0",
		"sample:-1", "sample:+5", "sample:05", "sample:1000001", "sample:4294967297", "sample:1.5", "sample:10x", "sample: 10", "denied:1"} {
		if m, err := ParseDecisionLogMode(bad); err == nil {
			t.Errorf("%q accepted as %+v", bad, m)
		}
	}
}
