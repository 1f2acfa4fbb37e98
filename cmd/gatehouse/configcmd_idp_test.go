package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// A tenant's federation through config diff|apply: the export carries
// its identity providers without their secrets; a copy into another
// tenant whose document gives the secret in clear plans and applies it
// (the secret in no output), and the same file then plans nothing (the
// sealed secret is the document's, so apply is idempotent).
func TestConfigApplyIdentityProviders(t *testing.T) {
	const secret = "upstream-Secret-for-the-pipeline-0123456789"
	cp := startControlPlane(t)
	cp.must(201, "POST", "/api/system/tenants", map[string]any{"id": "acme", "name": "Acme"})
	cp.must(201, "POST", "/api/system/tenants", map[string]any{"id": "copy", "name": "Copy"})
	cp.must(201, "POST", "/api/admin/acme/identity-providers", map[string]any{"id": "corp", "name": "Corp SSO", "type": "oidc",
		"issuer": "https://login.corp.example", "client_id": "gatehouse-rp", "client_secret": secret, "domains": []string{"corp.example"}})
	cp.must(200, "PUT", "/api/admin/acme/servers/default/authentications", map[string]any{"methods": []any{
		map[string]any{"id": "corp", "method": "oidc", "oidc": map[string]any{"identity_provider_id": "corp"}}}})
	exported := cp.export("acme")
	if strings.Contains(string(exported), secret) || !strings.Contains(string(exported), `"client_secret_set":true`) {
		t.Fatalf("the export: %s", exported)
	}
	var doc map[string]any
	if err := json.Unmarshal(exported, &doc); err != nil {
		t.Fatal(err)
	}
	doc["identity_providers"].([]any)[0].(map[string]any)["client_secret"] = secret
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	file := writeFile(t, t.TempDir(), "copy.json", b)
	conn := []string{"--url", cp.URL, "--token", testToken, "--tenant", "copy", "-f", file}

	out, stderr, err := runCLI(t, append([]string{"config", "diff"}, conn...)...)
	if exitCode(err) != ExitChanges {
		t.Fatalf("diff: exit %d (%v)\n%s", exitCode(err), err, out)
	}
	mustContain(t, "the plan", out, "  + identity_providers/corp\n", "  ~ servers/default (")
	out2, stderr2, err := runCLI(t, append([]string{"config", "apply"}, conn...)...)
	if err != nil {
		t.Fatalf("apply: %v\n%s", err, out2)
	}
	mustContain(t, "apply's report", out2, "+ identity_providers/corp")
	var got struct {
		ClientSecretSet bool `json:"client_secret_set"`
	}
	if err := json.Unmarshal(cp.must(200, "GET", "/api/admin/copy/identity-providers/corp", nil), &got); err != nil || !got.ClientSecretSet {
		t.Fatalf("copy's corp: %+v %v", got, err)
	}
	out3, stderr3, err := runCLI(t, append([]string{"config", "diff"}, conn...)...)
	if err != nil {
		t.Fatalf("diff after apply: exit %d (%v)\n%s", exitCode(err), err, out3)
	}
	mustContain(t, "diff after apply", out3, "No changes: tenant copy already has this configuration")
	for _, s := range []string{out, stderr, out2, stderr2, out3, stderr3, string(cp.export("copy")),
		string(cp.must(200, "GET", "/api/admin/copy/events?limit=1000", nil))} {
		if strings.Contains(s, secret) {
			t.Fatalf("an output holds the secret: %s", s)
		}
	}
}
