package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
)

// --decision-logs: empty leaves each gateway's mode, a mode overrides
// them all, the boolean flag's old values still work, anything else is
// refused naming the flag.
func TestDecisionLogOverride(t *testing.T) {
	for in, want := range map[string]string{"": "", "on": "on", "true": "on", "off": "off", "false": "off", "denied": "denied", "sample:20": "sample:20"} {
		m, err := decisionLogOverride(in)
		if err != nil || (m == nil) != (want == "") || (m != nil && m.String() != want) {
			t.Errorf("%q: %v %v, want %q", in, m, err, want)
		}
	}
	for _, bad := range []string{"yes", "OFF", "sample:0", "sample:1000001", "denied "} {
		if m, err := decisionLogOverride(bad); err == nil || !strings.Contains(err.Error(), "--decision-logs") {
			t.Errorf("%q: %v %v", bad, m, err)
		}
	}
}

// decision_logs in gatehouse-authorizer.yaml sets the mode unless the
// flag was given; a bad value fails the start.
func TestDecisionLogsSetting(t *testing.T) {
	const settings = "control_plane_url: http://cp.example\ntenant: acme\ngateway: edge\ncredential: ghg_acme.c.s\nkey_id: k1\npublic_key: PEM\n"
	file := func(extra string) string {
		path := filepath.Join(t.TempDir(), "gatehouse-authorizer.yaml")
		if err := os.WriteFile(path, []byte(settings+extra), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	load := func(extra, flag string) (authorizerConfig, error) {
		cmd := &cobra.Command{}
		cmd.Flags().String("decision-logs", "", "")
		cfg := defaults()
		if flag != "" {
			if err := cmd.Flags().Set("decision-logs", flag); err != nil {
				t.Fatal(err)
			}
			cfg.DecisionLogs = flag
		}
		cfg.ConfigFile = file(extra)
		return cfg, cfg.load(cmd)
	}
	for _, c := range []struct{ extra, flag, want string }{
		{"", "", ""},
		{"decision_logs: denied\n", "", "denied"},
		{"decision_logs: sample:100\n", "", "sample:100"},
		{"decision_logs: false\n", "", "false"},
		{"decision_logs: denied\n", "off", "off"},
	} {
		cfg, err := load(c.extra, c.flag)
		if err != nil || cfg.DecisionLogs != c.want {
			t.Errorf("%q with --decision-logs=%q: %q %v, want %q", c.extra, c.flag, cfg.DecisionLogs, err, c.want)
		}
	}
	if _, err := load("decision_logs: sample:0\n", ""); err == nil || !strings.Contains(err.Error(), "--decision-logs") {
		t.Fatalf("a bad decision_logs: %v", err)
	}
	if _, err := load("", "every"); err == nil {
		t.Fatal("a bad --decision-logs was accepted")
	}
}

// gatehouse serve refuses a bad --decision-logs before it starts anything.
func TestServeRefusesABadDecisionLogsFlag(t *testing.T) {
	dir := t.TempDir()
	err := runServe(context.Background(), serveConfig{LogLevel: "info", DataDir: dir, PolicyTestTimeout: time.Second, DecisionLogsKept: 1,
		StoreTimeout: time.Second, DecisionLogs: "sample:0"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--decision-logs") {
		t.Fatalf("runServe: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("it wrote %v before refusing", entries)
	}
}
