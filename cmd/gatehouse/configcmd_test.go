package main

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// editedDocument is the tenant's export with a new service, an API moved
// and a scope gone.
func editedDocument(t *testing.T, exported []byte) []byte {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(exported, &doc); err != nil {
		t.Fatal(err)
	}
	doc["services"] = append(doc["services"].([]any), map[string]any{"id": "extra", "name": "Extra", "url": "http://extra.internal"})
	for _, a := range doc["apis"].([]any) {
		if a := a.(map[string]any); a["id"] == "items" {
			a["path"] = "/items/v2"
		}
	}
	doc["scopes"] = []any{}
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ec interface{ ExitCode() int }
	if errors.As(err, &ec) {
		return ec.ExitCode()
	}
	return 1
}

// diff shows the plan, exit status 2, and changes nothing; apply applies
// it; diff then finds nothing to do (exit status 0).
func TestConfigDiffAndApply(t *testing.T) {
	cp := startControlPlane(t)
	cp.seedTenant("acme")
	before := cp.export("acme")
	file := writeFile(t, t.TempDir(), "acme.json", editedDocument(t, before))
	conn := []string{"--url", cp.URL, "--token", testToken, "--tenant", "acme", "-f", file}

	out, _, err := runCLI(t, append([]string{"config", "diff"}, conn...)...)
	if exitCode(err) != ExitChanges || err.Error() != "" {
		t.Fatalf("diff with changes: exit %d (%v)\n%s", exitCode(err), err, out)
	}
	mustContain(t, "the plan", out, "Plan for tenant acme (configuration \"cfg-", "  - scopes/pets-read\n", "  + services/extra\n",
		"  ~ apis/items (path)\n", "1 to create, 1 to update, 1 to delete,", "--if-match '\"cfg-")
	if string(cp.export("acme")) != string(before) {
		t.Fatal("diff changed the configuration")
	}

	out, _, err = runCLI(t, append([]string{"config", "apply"}, conn...)...)
	if err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	mustContain(t, "apply's report", out, "Applied to tenant acme", "+ services/extra", "1 created, 1 updated, 1 deleted,", "The configuration is now \"cfg-")
	after := cp.export("acme")
	var doc struct {
		Services []struct{ ID string } `json:"services"`
		Scopes   []any                 `json:"scopes"`
	}
	if err := json.Unmarshal(after, &doc); err != nil || len(doc.Scopes) != 0 || len(doc.Services) != 3 {
		t.Fatalf("after apply: %s (%v)", after, err)
	}
	_, _, hdr := cp.call("GET", "/api/system/configuration?tid=acme", nil)
	if !strings.Contains(out, hdr.Get("ETag")) {
		t.Fatalf("apply reported another ETag than the export's %s:\n%s", hdr.Get("ETag"), out)
	}

	out, _, err = runCLI(t, append([]string{"config", "diff"}, conn...)...)
	if err != nil {
		t.Fatalf("diff after apply: exit %d (%v)\n%s", exitCode(err), err, out)
	}
	mustContain(t, "diff after apply", out, "No changes: tenant acme already has this configuration")
	out, _, err = runCLI(t, append([]string{"config", "apply"}, conn...)...)
	if err != nil || !strings.Contains(out, "No changes") {
		t.Fatalf("apply with nothing to do: %v\n%s", err, out)
	}

	t.Run("--json prints the import's answer", func(t *testing.T) {
		out, _, err := runCLI(t, append([]string{"config", "diff", "--json"}, conn...)...)
		var res importResult
		if err != nil || json.Unmarshal([]byte(out), &res) != nil || !res.DryRun || len(res.Changes) != 0 {
			t.Fatalf("%v %s", err, out)
		}
	})
}

// A pipeline needs no system token: the tenant's own credential plans and
// applies its configuration.
func TestConfigWithTheTenantsOwnCredential(t *testing.T) {
	cp := startControlPlane(t)
	cp.seedTenant("acme")
	var cred struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(cp.must(201, "POST", "/api/system/tenants/acme/credentials", map[string]any{"name": "pipeline"}), &cred); err != nil {
		t.Fatal(err)
	}
	file := writeFile(t, t.TempDir(), "acme.json", editedDocument(t, cp.export("acme")))
	conn := []string{"--url", cp.URL, "--token", cred.Token, "--tenant", "acme", "-f", file}
	if out, _, err := runCLI(t, append([]string{"config", "diff"}, conn...)...); exitCode(err) != ExitChanges {
		t.Fatalf("diff: exit %d (%v)\n%s", exitCode(err), err, out)
	}
	if out, _, err := runCLI(t, append([]string{"config", "apply"}, conn...)...); err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	if out, _, err := runCLI(t, append([]string{"config", "diff"}, conn...)...); err != nil {
		t.Fatalf("diff after apply: exit %d (%v)\n%s", exitCode(err), err, out)
	}
}

// apply --if-match applies a reviewed plan only while the configuration is
// the one it was made against: after a concurrent change nothing is
// applied and the error says to plan again.
func TestConfigApplyRefusesAChangedConfiguration(t *testing.T) {
	cp := startControlPlane(t)
	cp.seedTenant("acme")
	file := writeFile(t, t.TempDir(), "acme.json", editedDocument(t, cp.export("acme")))
	conn := []string{"--url", cp.URL, "--token", testToken, "--tenant", "acme", "-f", file}
	out, _, err := runCLI(t, append([]string{"config", "diff"}, conn...)...)
	if exitCode(err) != ExitChanges {
		t.Fatalf("diff: %v\n%s", err, out)
	}
	etag := regexp.MustCompile(`--if-match '("cfg-[0-9a-f]+")'`).FindStringSubmatch(out)
	if etag == nil {
		t.Fatalf("diff printed no ETag to apply with:\n%s", out)
	}

	// Someone changes the tenant after the review.
	cp.must(201, "POST", "/api/admin/acme/scopes", map[string]any{"id": "late", "name": "late"})
	changed := cp.export("acme")
	out, _, err = runCLI(t, append([]string{"config", "apply", "--if-match", etag[1]}, conn...)...)
	if err == nil || !strings.Contains(err.Error(), "nothing applied: the configuration of tenant acme changed since the plan") ||
		!strings.Contains(err.Error(), "run gatehouse config diff again") {
		t.Fatalf("apply of a stale plan: %v\n%s", err, out)
	}
	if string(cp.export("acme")) != string(changed) {
		t.Fatal("a refused apply changed the configuration")
	}
	// The ETag without its quotes works too, once it is current again.
	out, _, err = runCLI(t, append([]string{"config", "diff"}, conn...)...)
	fresh := regexp.MustCompile(`--if-match '"(cfg-[0-9a-f]+)"'`).FindStringSubmatch(out)
	if exitCode(err) != ExitChanges || fresh == nil {
		t.Fatalf("diff: %v\n%s", err, out)
	}
	if out, _, err := runCLI(t, append([]string{"config", "apply", "--if-match", fresh[1]}, conn...)...); err != nil {
		t.Fatalf("apply of the fresh plan: %v\n%s", err, out)
	}
}

// Bad input is refused with the problem named, and nothing changes.
func TestConfigRefusals(t *testing.T) {
	cp := startControlPlane(t)
	cp.seedTenant("acme")
	exported := cp.export("acme")
	var doc map[string]any
	if err := json.Unmarshal(exported, &doc); err != nil {
		t.Fatal(err)
	}
	doc["services"].([]any)[1].(map[string]any)["url"] = "ftp://shop.internal"
	bad, _ := json.Marshal(doc)
	dir := t.TempDir()
	badFile := writeFile(t, dir, "bad.json", bad)
	good := writeFile(t, dir, "good.json", editedDocument(t, exported))
	var tenantCred struct {
		Token string `json:"token"`
	}
	cp.must(201, "POST", "/api/system/tenants", map[string]any{"id": "globex", "name": "Globex"})
	if err := json.Unmarshal(cp.must(201, "POST", "/api/system/tenants/globex/credentials", map[string]any{"name": "ci"}), &tenantCred); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		args []string
		want string
	}{
		"an invalid object":            {[]string{"--token", testToken, "--tenant", "acme", "-f", badFile}, "services[1].url"},
		"not JSON":                     {[]string{"--token", testToken, "--tenant", "acme", "-f", writeFile(t, dir, "x.json", []byte("[1,"))}, "is not JSON"},
		"an unknown tenant":            {[]string{"--token", testToken, "--tenant", "nope", "-f", good}, "HTTP 404"},
		"another tenant's credential":  {[]string{"--token", tenantCred.Token, "--tenant", "acme", "-f", good}, "HTTP 403"},
		"a wrong token":                {[]string{"--token", "not-the-token-at-all", "--tenant", "acme", "-f", good}, "HTTP 401"},
		"no --tenant":                  {[]string{"--token", testToken, "-f", good}, "--tenant is required"},
		"a bad --tenant":               {[]string{"--token", testToken, "--tenant", "A B", "-f", good}, "invalid tenant id"},
		"no --file":                    {[]string{"--token", testToken, "--tenant", "acme"}, "--file is required"},
		"a bad --mode":                 {[]string{"--token", testToken, "--tenant", "acme", "-f", good, "--mode", "upsert"}, "--mode must be replace or merge"},
		"a missing file":               {[]string{"--token", testToken, "--tenant", "acme", "-f", filepath.Join(dir, "absent.json")}, "absent.json"},
		"an --if-match that is no tag": {[]string{"--token", testToken, "--tenant", "acme", "-f", good, "--if-match", `"12"`}, "--if-match"},
	} {
		for _, verb := range []string{"diff", "apply"} {
			if verb == "diff" && strings.HasPrefix(name, "an --if-match") {
				continue
			}
			t.Run(verb+" "+name, func(t *testing.T) {
				_, _, err := runCLI(t, append([]string{"config", verb, "--url", cp.URL}, c.args...)...)
				if exitCode(err) != 1 || !strings.Contains(err.Error(), c.want) {
					t.Fatalf("exit %d, error %v; want one saying %q", exitCode(err), err, c.want)
				}
				if verb == "apply" && strings.Contains(c.want, "HTTP") && !strings.HasPrefix(err.Error(), "nothing applied") {
					t.Fatalf("apply's error does not say nothing was applied: %v", err)
				}
				if string(cp.export("acme")) != string(exported) {
					t.Fatal("the configuration changed")
				}
			})
		}
	}
}
