package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// runPolicyEvalCLI runs `policy eval` with args.
func runPolicyEvalCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := newPolicyEvalCommand(&out, &errOut)
	cmd.SetArgs(args)
	cmd.SetOut(&errOut)
	cmd.SetErr(&errOut)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

const evalPolicy = `package policy

default allow := false

allow if {
	input.attributes.request.http.headers["x-key"] == "open-sesame"
}
`

func TestPolicyEvalStandalone(t *testing.T) {
	dir := t.TempDir()
	pol := writeFile(t, dir, "keyed.rego", []byte(evalPolicy))
	good := writeFile(t, dir, "good.json", []byte(`{"method":"GET","path":"/pets/7","headers":{"X-Key":"open-sesame"}}`))
	bad := writeFile(t, dir, "bad.json", []byte(`{"method":"GET","path":"/pets/7","headers":{"X-Key":"guess"}}`))

	out, err := runPolicyEvalCLI(t, "--policy", pol, "--request", good)
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, "an allowed request", out, "ALLOWED 200", "route    API any", "policy   keyed allows")

	out, err = runPolicyEvalCLI(t, "--policy", pol, "--request", bad)
	if err != nil {
		t.Fatalf("a denial without --fail: %v", err)
	}
	mustContain(t, "a denied request", out, "DENIED 401", "token    none", "line 6: input.attributes.request.http.headers[\"x-key\"] == \"open-sesame\"",
		`input.attributes.request.http.headers["x-key"] = "guess"`)
	if _, err := runPolicyEvalCLI(t, "--policy", pol, "--request", bad, "--fail"); !errors.Is(err, errDenied) {
		t.Fatalf("--fail on a denial: %v", err)
	}

	out, err = runPolicyEvalCLI(t, "--policy", pol, "--request", good, "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var res map[string]any
	if err := json.Unmarshal([]byte(out), &res); err != nil || res["allowed"] != true || res["stages"] == nil {
		t.Fatalf("json output: %v %s", err, out)
	}
}

func TestPolicyEvalWithAnExport(t *testing.T) {
	cp := startControlPlane(t)
	cp.seedTenant("acme")
	dir := t.TempDir()
	export := writeFile(t, dir, "export.json", cp.export("acme"))
	req := writeFile(t, dir, "req.json", []byte(`{"method":"GET","path":"/pets/7","headers":{"Host":"pets.example.com","x-key":"open-sesame"}}`))

	// The saved policy decides the route it is bound to.
	out, err := runPolicyEvalCLI(t, "--config", export, "--policy-id", "keyed", "--request", req, "--gateway", "edge")
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, "the saved policy", out, "ALLOWED 200", "API get-pet (GET /pets/{id}) of service pets on gateway edge", `params id="7"`)

	// A local draft replaces it.
	draft := writeFile(t, dir, "keyed.rego", []byte("package policy\n\nallow := false\n"))
	out, err = runPolicyEvalCLI(t, "--config", export, "--policy", draft, "--request", req)
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, "the draft", out, "DENIED 401", "policy   keyed denies")

	// No API for the host: the route stage says so.
	other := writeFile(t, dir, "other.json", []byte(`{"method":"GET","path":"/pets/7","headers":{"Host":"nowhere.example.com"}}`))
	out, err = runPolicyEvalCLI(t, "--config", export, "--policy-id", "keyed", "--request", other, "--gateway", "edge")
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, "no route", out, "DENIED 404", `route    none: no service of the gateway serves host "nowhere.example.com"`)
}

func TestPolicyEvalRefusals(t *testing.T) {
	dir := t.TempDir()
	pol := writeFile(t, dir, "keyed.rego", []byte(evalPolicy))
	req := writeFile(t, dir, "req.json", []byte(`{"method":"GET","path":"/"}`))
	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"no request":       {[]string{"--policy", pol}, "--request is required"},
		"no policy":        {[]string{"--request", req, "--policy-id", "x"}, "--policy is required without --config"},
		"a bad request":    {[]string{"--policy", pol, "--request", writeFile(t, dir, "r1.json", []byte(`{"method":"GET","path":"pets"}`))}, "request.path"},
		"an unknown field": {[]string{"--policy", pol, "--request", writeFile(t, dir, "r2.json", []byte(`{"method":"GET","path":"/","hedaers":{}}`))}, "hedaers"},
		"a broken policy":  {[]string{"--policy", writeFile(t, dir, "broken.rego", []byte("package policy\n\nallow if {\n\tx\n}\n")), "--request", req}, "4:"},
		"a bad output":     {[]string{"--policy", pol, "--request", req, "-o", "yaml"}, "--output"},
		"a bad id":         {[]string{"--policy", pol, "--request", req, "--policy-id", "Not An Id"}, "--policy-id"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := runPolicyEvalCLI(t, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want an error with %q, got %v", tc.want, err)
			}
		})
	}
}
