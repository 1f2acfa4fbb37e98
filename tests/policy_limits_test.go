package tests

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestServePolicyEvaluationFlags: --policy-allow-builtins and
// --policy-test-timeout are documented, checked at start and applied.
func TestServePolicyEvaluationFlags(t *testing.T) {
	out, err := exec.Command(gatehouseBin, "serve", "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("serve --help: %v\n%s", err, out)
	}
	for _, want := range []string{"--policy-allow-builtins", "GATEHOUSE_POLICY_ALLOW_BUILTINS", "http.send",
		"--policy-test-timeout", "GATEHOUSE_POLICY_TEST_TIMEOUT", "2s"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("serve --help does not mention %s", want)
		}
	}

	// A built-in that is not a denied one is refused at start.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, gatehouseBin, "serve", "--data-dir", t.TempDir(), "--http-addr", "127.0.0.1:0",
		"--xds-addr", "", "--authz-addr", "", "--policy-allow-builtins", "count")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GATEHOUSE_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	out, err = cmd.CombinedOutput()
	if err == nil || ctx.Err() != nil || !strings.Contains(string(out), "--policy-allow-builtins") || !strings.Contains(string(out), `"count"`) {
		t.Fatalf("serve with a bad allow-list: %v\n%s", err, out)
	}

	p := startServe(t, serveOptions{DataDir: t.TempDir(), Token: testToken,
		Args: []string{"--policy-allow-builtins", "http.send", "--policy-test-timeout", "300ms"}})
	c := newClient(t, p.URL, testToken)
	c.must(201, "POST", "/api/system/tenants", map[string]any{"id": "acme", "name": "Acme"})
	c.must(201, "POST", "/api/admin/acme/policies", map[string]any{"policy_name": "caller",
		"definition": "package policy\n\nallow if http.send({\"method\": \"get\", \"url\": \"https://pdp.example.com/\"}).status_code == 200\n"})
	r := c.do("POST", "/api/admin/acme/policies", map[string]any{"policy_name": "env",
		"definition": "package policy\n\nallow if opa.runtime().env.HOME == \"/\"\n"})
	if r.Status != 400 || !strings.Contains(string(r.Body), "rego_builtin_denied") {
		t.Fatalf("opa.runtime with only http.send allowed: %d %s", r.Status, r.Body)
	}
	r = c.do("POST", "/api/admin/acme/policies/test", map[string]any{"input": map[string]any{}, "policy": map[string]any{
		"definition": "package policy\n\nallow if count([x | some x in numbers.range(1, 1000000000000)]) > 0\n"}})
	if m := r.JSON(t); r.Status != 400 || m["error_code"] != "evaluation_timeout" || m["details"].(map[string]any)["timeout_ms"] != float64(300) {
		t.Fatalf("heavy policy test: %d %s", r.Status, r.Body)
	}
}
