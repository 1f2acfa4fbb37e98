package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/testkit/authzkit"
)

// runPolicyReplayCLI runs `policy replay` with args.
func runPolicyReplayCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := newPolicyReplayCommand(&out)
	cmd.SetArgs(args)
	cmd.SetOut(&errOut)
	cmd.SetErr(&errOut)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

// replayDraftRego lets a second key in and refuses DELETE.
const replayDraftRego = `package policy

default allow := false

allow if {
	input.attributes.request.http.headers["x-key"] in {"open-sesame", "new-key"}
	input.attributes.request.http.method == "GET"
}

reason := "a key, and GET only" if not allow
`

// TestPolicyReplayCommand: decisions logged by edge's authorizer into the
// control plane's store, replayed by the CLI against a draft: the summary,
// the examples, the exit status (2 for flips, 0 for none) and --json.
func TestPolicyReplayCommand(t *testing.T) {
	cp := startControlPlane(t)
	cp.seedTenant("acme")
	a := authzkit.New(t, cp.bundle("acme", "edge").Compiled, nil, authzkit.StoreSink{Store: cp.store})
	for _, key := range []string{"open-sesame", "new-key", "wrong"} {
		a.Check(t, authzkit.Request{Method: "GET", Host: "pets.example.com", Path: "/pets/7", Headers: map[string]string{"x-key": key}})
	}
	a.Flush()
	dir := t.TempDir()
	conn := []string{"--url", cp.URL, "--token", testToken, "--tenant", "acme", "--policy", "keyed"}

	draft := writeFile(t, dir, "draft.rego", []byte(replayDraftRego))
	out, err := runPolicyReplayCLI(t, append(conn, "-f", draft)...)
	if exitCode(err) != ExitFlips {
		t.Fatalf("a draft that flips: exit %d (%v)\n%s", exitCode(err), err, out)
	}
	mustContain(t, "the summary", out,
		"Replay of a draft of policy keyed (tenant acme, every gateway)\n",
		"  3 decisions evaluated of the last 3 of the policy's APIs (limit 1000, 3 log events read, logged ",
		"  flips: 0 allow → deny, 1 deny → allow\n",
		"  unchanged: 1 allowed, 1 denied\n",
		"  get-pet  3          0             1\n",
		"  deny → allow  GET /pets/7  (API get-pet, gateway edge, ",
		"      was: denied 401 \"no key\"\n      now: allowed 200 \"allowed by policy keyed\"\n")

	// The saved policy as a JSON policy object, one gateway, a limit:
	// nothing flips, exit 0.
	same := writeFile(t, dir, "same.json", []byte(`{"definition": "package policy\n\ndefault allow := false\n\nallow if input.attributes.request.http.headers[\"x-key\"] == \"open-sesame\"\n"}`))
	out, err = runPolicyReplayCLI(t, append(conn, "-f", same, "--gateway", "edge", "--limit", "2")...)
	if err != nil {
		t.Fatalf("no flips: %v\n%s", err, out)
	}
	mustContain(t, "no flips", out, "(tenant acme, gateway edge)", "  2 decisions evaluated of the last 2 of the policy's APIs (limit 2,", "  flips: 0 allow → deny, 0 deny → allow\n")
	if strings.Contains(out, "Newest flips") {
		t.Fatalf("examples without flips:\n%s", out)
	}

	// Through the root command: gatehouse policy replay.
	out, _, err = runCLI(t, append([]string{"policy", "replay", "-f", draft, "--json"}, conn...)...)
	var res map[string]any
	if exitCode(err) != ExitFlips || json.Unmarshal([]byte(out), &res) != nil || res["evaluated"] != float64(3) {
		t.Fatalf("--json: exit %d, %s", exitCode(err), out)
	}

	// Errors: exit 1, the problem named.
	bad := writeFile(t, dir, "bad.rego", []byte("package policy\n\nallow if {\n"))
	for what, c := range map[string]struct {
		args []string
		want string
	}{
		"a draft that does not parse": {append(conn, "-f", bad), "invalid_policy: policy.definition: 4:"},
		"an unknown policy":           {[]string{"--url", cp.URL, "--token", testToken, "--tenant", "acme", "--policy", "nope", "-f", draft}, "HTTP 404"},
		"an unknown gateway":          {append(conn, "-f", draft, "--gateway", "nope"), "gateway_id"},
		"no draft":                    {conn, "-f/--file is required"},
		"a limit too large":           {append(conn, "-f", draft, "--limit", "10001"), "--limit must be between 1 and 10000"},
		"no tenant":                   {[]string{"--policy", "keyed", "-f", draft}, "--tenant is required"},
	} {
		out, err := runPolicyReplayCLI(t, c.args...)
		if exitCode(err) != 1 || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: exit %d, %v (want %q)\n%s", what, exitCode(err), err, c.want, out)
		}
	}
}
