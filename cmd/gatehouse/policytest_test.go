package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const adminsRego = `package policy

default allow := false

allow if "admin" in input.roles

reason := "admins only" if not allow
`

const adminsTestRego = `package policy_test

import data.policy

test_admin_allowed if policy.allow with input as {"roles": ["admin"]}

test_guest_denied if not policy.allow with input as {"roles": ["guest"]}

test_wrong if policy.allow with input as {}

todo_test_later if false
`

// usesRego uses admins by its id.
const usesRego = `package policy

import data.gatehouse.policies["admins"]

default allow := false

allow if admins.allow
`

const usesTestRego = `package policy

test_delegates if allow with input as {"roles": ["admin"]}

test_prints if {
	print("checked the empty roles")
	not allow with input as {"roles": []}
}
`

func TestPolicyTestRunsLocalFiles(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "admins.rego", []byte(adminsRego))
	writeFile(t, dir, "admins_test.rego", []byte(adminsTestRego))
	sub := filepath.Join(dir, "more")
	writeFile(t, dir, "README.md", []byte("not rego"))
	if err := mkdir(sub); err != nil {
		t.Fatal(err)
	}
	writeFile(t, sub, "uses.rego", []byte(usesRego))
	writeFile(t, sub, "uses_test.rego", []byte(usesTestRego))

	out, _, err := runCLI(t, "policy", "test", dir)
	if exitCode(err) != ExitTestsFailed {
		t.Fatalf("exit %d (%v):\n%s", exitCode(err), err, out)
	}
	mustContain(t, "the report", out,
		filepath.Join(dir, "admins_test.rego")+":9:\ndata.policy_test.test_wrong: FAIL (",
		strings.Repeat("-", 80)+"\nPASS: 4/6\nFAIL: 1/6\nSKIPPED: 1/6\n")
	if strings.Contains(out, "test_admin_allowed") {
		t.Errorf("a passing test is reported without -v:\n%s", out)
	}

	// -v reports every test and what it printed; --run picks tests.
	out, _, err = runCLI(t, "policy", "test", "-v", "--run", "delegates|prints", dir)
	if err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	mustContain(t, "the verbose report", out,
		filepath.Join(sub, "uses_test.rego")+":3:\ndata.policy.test_delegates: PASS (",
		"data.policy.test_prints: PASS (", "  checked the empty roles\n", "PASS: 2/2\n")

	// Single files do, too.
	out, _, err = runCLI(t, "policy", "test", filepath.Join(sub, "uses.rego"), filepath.Join(sub, "uses_test.rego"),
		filepath.Join(dir, "admins.rego"))
	if err != nil || !strings.Contains(out, "PASS: 2/2") {
		t.Fatalf("%v:\n%s", err, out)
	}
}

func TestPolicyTestRefusesWhatASaveRefuses(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "stringy.rego", []byte("package policy\n\nallow := \"yes\"\n"))
	writeFile(t, dir, "stringy_test.rego", []byte("package policy\n\ntest_x if allow\n"))
	writeFile(t, dir, "lost.rego", []byte("package policy\n\nallow if data.gatehouse.policies[\"nobody\"].allow\n"))
	out, _, err := runCLI(t, "policy", "test", dir)
	if exitCode(err) != ExitTestsFailed {
		t.Fatalf("exit %d (%v):\n%s", exitCode(err), err, out)
	}
	mustContain(t, "the report", out,
		filepath.Join(dir, "stringy.rego")+":3:\npolicy stringy: ERROR (refused: rego_result_type)\n  allow must be a boolean",
		filepath.Join(dir, "lost.rego")+":3:\npolicy lost: ERROR (refused: rego_policy_unknown)",
		"ERROR: 2/2")

	for name, c := range map[string]struct {
		files map[string]string
		want  string
	}{
		"tests of no policy": {map[string]string{"ghost_test.rego": "package policy\n\ntest_x if true\n"}, "tests of policy ghost"},
		"a bad file name":    {map[string]string{"Bad Name.rego": adminsRego}, "is not a policy id"},
	} {
		d := t.TempDir()
		for f, src := range c.files {
			writeFile(t, d, f, []byte(src))
		}
		_, _, err := runCLI(t, "policy", "test", d)
		if exitCode(err) != 1 || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, _, err := runCLI(t, "policy", "test"); exitCode(err) != 1 {
		t.Errorf("no argument: %v", err)
	}
	// No test at all passes, unless --fail-on-empty.
	d := t.TempDir()
	writeFile(t, d, "admins.rego", []byte(adminsRego))
	if _, errOut, err := runCLI(t, "policy", "test", d); err != nil || !strings.Contains(errOut, "no tests found") {
		t.Errorf("no tests: %v %s", err, errOut)
	}
	if _, _, err := runCLI(t, "policy", "test", "--fail-on-empty", d); exitCode(err) != 1 {
		t.Errorf("--fail-on-empty: %v", err)
	}
}

// The export's policies run their stored tests against the tenant's
// configuration; a local file replaces the export's policy of its id.
func TestPolicyTestRunsTheExportsTests(t *testing.T) {
	dir := t.TempDir()
	keyed := "package policy\n\ndefault allow := false\n\nallow if input.key == \"k1\"\n"
	doc, err := json.Marshal(map[string]any{
		"version": 1, "tenant": map[string]any{"id": "acme", "name": "Acme"},
		"services": []any{map[string]any{"id": "pets", "name": "pets", "url": "http://127.0.0.1:9"}},
		"policies": []any{
			map[string]any{"id": "keyed", "policy_name": "keyed", "definition": keyed,
				"tests": "package policy\n\ntest_key if allow with input as {\"key\": \"k1\"}\n\ntest_tenant if data.gatehouse.config.tenant.id == \"acme\"\n\n" +
					"test_pets if data.gatehouse.config.services.pets.url == \"http://127.0.0.1:9\"\n"},
			map[string]any{"id": "untested", "policy_name": "untested", "definition": adminsRego},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	export := writeFile(t, dir, "export.json", doc)
	out, _, err := runCLI(t, "policy", "test", "--config", export)
	if err != nil || !strings.Contains(out, "PASS: 3/3") {
		t.Fatalf("%v:\n%s", err, out)
	}
	// A local keyed.rego replaces the stored one: the stored tests now fail.
	local := filepath.Join(dir, "local")
	if err := mkdir(local); err != nil {
		t.Fatal(err)
	}
	writeFile(t, local, "keyed.rego", []byte(strings.Replace(keyed, "k1", "k2", 1)))
	// And a local test of a stored policy runs against it.
	writeFile(t, local, "untested_test.rego", []byte(adminsTestRego))
	out, _, err = runCLI(t, "policy", "test", "--config", export, local)
	if exitCode(err) != ExitTestsFailed {
		t.Fatalf("exit %d (%v):\n%s", exitCode(err), err, out)
	}
	mustContain(t, "the report", out,
		"policy keyed (tests, from the export):3:\ndata.policy.test_key: FAIL (",
		filepath.Join(local, "untested_test.rego")+":9:\ndata.policy_test.test_wrong: FAIL (",
		"PASS: 4/7\nFAIL: 2/7\nSKIPPED: 1/7\n")
}

func mkdir(dir string) error { return os.MkdirAll(dir, 0o700) }
