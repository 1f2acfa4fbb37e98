package admin_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	yaml "go.yaml.in/yaml/v3"

	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	"github.com/gatehouse-dev/gatehouse/model"
)

// credentialsOf lists a gateway's credentials by id.
func (e *env) credentialsOf(tid, gw string) map[string]map[string]any {
	e.t.Helper()
	out := map[string]map[string]any{}
	for _, c := range e.expect(e.do("GET", "/api/admin/"+tid+"/gateways/"+gw+"/credentials", rootToken, nil), 200).json(e.t)["credentials"].([]any) {
		m := c.(map[string]any)
		if _, ok := m["last_used_at"]; !ok {
			e.t.Fatalf("a listed credential lacks last_used_at: %v", m)
		}
		if _, ok := m["token"]; ok {
			e.t.Fatalf("a listed credential shows its token: %v", m)
		}
		out[m["id"].(string)] = m
	}
	return out
}

// eventsOf lists the tenant's audit events of a kind, newest first.
func (e *env) eventsOf(tid, kind string) []map[string]any {
	e.t.Helper()
	var out []map[string]any
	for _, ev := range e.expect(e.do("GET", "/api/admin/"+tid+"/events?kind="+kind, rootToken, nil), 200).json(e.t)["events"].([]any) {
		out = append(out, ev.(map[string]any))
	}
	return out
}

// packageCredential downloads a package and returns its credential id,
// the authorizer settings' credential and the files.
func (e *env) packageCredential(path string) (string, string, map[string]string) {
	e.t.Helper()
	r := e.expect(e.do("GET", path, rootToken, nil), 200)
	files := unzip(e.t, r.body)
	var cfg model.AuthorizerConfig
	if err := yaml.Unmarshal([]byte(files[model.PackageAuthorizer]), &cfg); err != nil {
		e.t.Fatal(err)
	}
	return r.header.Get("X-Gateway-Credential-Id"), cfg.Credential, files
}

func TestGatewayCredentialNamesCreatorsAndLastUse(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	created := e.expect(e.do("POST", "/api/admin/acme/gateways", rootToken, map[string]any{"id": "edge", "name": "edge"}), 201).json(t)
	first := created["credential"].(map[string]any)
	if !strings.HasPrefix(first["name"].(string), "created with the gateway by bootstrap-admin at ") || first["created_by"] != "bootstrap-admin" {
		t.Fatalf("the gateway's first credential: %v", first)
	}

	// POST names the credential; a taken name is a 409 naming the field.
	ci := e.expect(e.do("POST", "/api/admin/acme/gateways/edge/credentials", rootToken, map[string]any{"name": "ci"}), 201).json(t)
	if ci["name"] != "ci" || ci["created_by"] != "bootstrap-admin" || !strings.HasPrefix(ci["token"].(string), "ghg_acme."+ci["id"].(string)+".") {
		t.Fatalf("POST credentials: %v", ci)
	}
	dup := e.expect(e.do("POST", "/api/admin/acme/gateways/edge/credentials", rootToken, map[string]any{"name": "ci"}), 409)
	if dup.errorCode(t) != "already_exists" {
		t.Fatalf("taken name: %s", dup.body)
	}
	if d := dup.json(t); d["details"].(map[string]any)["field"] != "name" || !strings.Contains(d["error"].(string), `name "ci"`) {
		t.Fatalf("the 409 does not name the field: %s", dup.body)
	}
	e.expect(e.do("POST", "/api/admin/acme/gateways/edge/credentials", rootToken, map[string]any{"name": "ci", "secret": "x"}), 400)
	// No body: a default name.
	anon := e.expect(e.do("POST", "/api/admin/acme/gateways/edge/credentials", rootToken, nil), 201).json(t)
	if !strings.HasPrefix(anon["name"].(string), "created by bootstrap-admin at ") {
		t.Fatalf("POST without a body: %v", anon)
	}

	// A download names its credential after itself, or ?name=.
	dlID, dlToken, _ := e.packageCredential("/api/admin/acme/gateways/edge/package")
	laptopID, _, _ := e.packageCredential("/api/admin/acme/gateways/edge/package?name=laptop")
	creds := e.credentialsOf("acme", "edge")
	if len(creds) != 5 {
		t.Fatalf("credentials: %v", creds)
	}
	dl := creds[dlID]
	at := strings.TrimPrefix(dl["name"].(string), "package download by bootstrap-admin at ")
	if ts, err := time.Parse(time.RFC3339, at); err != nil || time.Since(ts) > time.Minute || dl["created_by"] != "bootstrap-admin" {
		t.Fatalf("a download's credential: %v", dl)
	}
	if creds[laptopID]["name"] != "laptop" {
		t.Fatalf("?name=laptop: %v", creds[laptopID])
	}
	for id, c := range creds {
		if c["last_used_at"] != nil {
			t.Fatalf("credential %s was never used but has last_used_at %v", id, c["last_used_at"])
		}
	}

	// The bundle service verifying a credential records its last use.
	testkit.Eventually(t, 10*time.Second, func() error {
		return testkit.Check(e.bundles.Get("acme", "edge") != nil, "no bundle yet")
	})
	before := time.Now().Add(-time.Second).Truncate(time.Second)
	e.expect(e.fetchBundle("/api/system/acme/gateways/edge/opa/bundle", dlToken, "If-None-Match", `"-"`), 200)
	testkit.Eventually(t, 10*time.Second, func() error {
		c := e.credentialsOf("acme", "edge")[dlID]
		s, _ := c["last_used_at"].(string)
		ts, err := time.Parse(time.RFC3339, s)
		if err != nil {
			return fmt.Errorf("last_used_at %v", c["last_used_at"])
		}
		return testkit.Check(!ts.Before(before) && !ts.After(time.Now()), "last_used_at %v, want about now", ts)
	})
	if c := e.credentialsOf("acme", "edge")[laptopID]; c["last_used_at"] != nil {
		t.Fatalf("an unused credential got last_used_at: %v", c)
	}

	// Who minted what: the audit events.
	evs := e.eventsOf("acme", model.KindGatewayCredential)
	minted := map[string]map[string]any{}
	for _, ev := range evs {
		if ev["action"] == "create" {
			minted[ev["object_id"].(string)] = ev
		}
	}
	ev := minted[laptopID]
	if ev == nil || ev["actor"] != "bootstrap-admin" {
		t.Fatalf("no create event of %s by bootstrap-admin: %v", laptopID, evs)
	}
	ch := ev["changes"].(map[string]any)
	if ch["name"].(map[string]any)["after"] != "laptop" || ch["gateway_id"].(map[string]any)["after"] != "edge" ||
		ch["secret_hash"].(map[string]any)["after"] != "***" {
		t.Fatalf("the create event's changes: %v", ch)
	}
}

func TestGatewayPackageReusesACredential(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	e.expect(e.do("POST", "/api/admin/acme/gateways", rootToken, map[string]any{"id": "edge", "name": "edge"}), 201)
	e.expect(e.do("POST", "/api/admin/acme/gateways", rootToken, map[string]any{"id": "side", "name": "side"}), 201)
	ci := e.expect(e.do("POST", "/api/admin/acme/gateways/edge/credentials", rootToken, map[string]any{"name": "ci"}), 201).json(t)
	id, token := ci["id"].(string), ci["token"].(string)
	side := e.expect(e.do("POST", "/api/admin/acme/gateways/side/credentials", rootToken, map[string]any{"name": "side-ci"}), 201).json(t)["id"].(string)
	testkit.Eventually(t, 10*time.Second, func() error {
		return testkit.Check(e.bundles.Get("acme", "edge") != nil, "no bundle yet")
	})
	bundle := "/api/system/acme/gateways/edge/opa/bundle"
	count := len(e.credentialsOf("acme", "edge"))

	// Without rotate: the credential's id, no secret (it cannot be read
	// back): the authorizer's settings leave it out, the bootstrap holds
	// the placeholder, the README says what to do.
	gotID, cred, files := e.packageCredential("/api/admin/acme/gateways/edge/package?credential=" + id)
	if gotID != id || cred != "" || strings.Contains(files[model.PackageEnv], "ghg_") {
		t.Fatalf("reused credential: id %q credential %q .env %s", gotID, cred, files[model.PackageEnv])
	}
	for name, body := range files {
		if strings.Contains(body, token) || strings.Contains(body, strings.TrimPrefix(token, "ghg_acme."+id+".")) {
			t.Fatalf("%s holds the reused credential's secret", name)
		}
	}
	if !strings.Contains(files[model.PackageEnvoyBootstrap], "Bearer REPLACE_WITH_GATEWAY_CREDENTIAL") ||
		!strings.Contains(files[model.PackageReadme], "cannot be read back") || !strings.Contains(files[model.PackageReadme], "rotate=true") ||
		!strings.Contains(files[model.PackageAuthorizer], "--credential") {
		t.Fatalf("placeholder package:\n%s\n%s", files[model.PackageReadme], files[model.PackageEnvoyBootstrap])
	}
	if n := len(e.credentialsOf("acme", "edge")); n != count {
		t.Fatalf("reusing a credential minted one: %d credentials, want %d", n, count)
	}
	e.expect(e.fetchBundle(bundle, token, "If-None-Match", `"-"`), 200)

	// rotate=true: a new secret for the same id; the old one stops working.
	gotID, rotated, files := e.packageCredential("/api/admin/acme/gateways/edge/package?credential=" + id + "&rotate=true")
	if gotID != id || !strings.HasPrefix(rotated, "ghg_acme."+id+".") || rotated == token ||
		!strings.Contains(files[model.PackageEnvoyBootstrap], rotated) {
		t.Fatalf("rotated: id %q token %q", gotID, rotated)
	}
	e.expect(e.fetchBundle(bundle, token), 401)
	e.expect(e.fetchBundle(bundle, rotated, "If-None-Match", `"-"`), 200)
	if c := e.credentialsOf("acme", "edge"); len(c) != count || c[id]["name"] != "ci" {
		t.Fatalf("after a rotation: %v", c)
	}
	// The rotation is audited, the secret masked.
	evs := e.eventsOf("acme", model.KindGatewayCredential)
	if evs[0]["action"] != "rotate" || evs[0]["object_id"] != id || evs[0]["actor"] != "bootstrap-admin" {
		t.Fatalf("newest credential event: %v", evs[0])
	}
	if sh := evs[0]["changes"].(map[string]any)["secret_hash"].(map[string]any); sh["before"] != "***" || sh["after"] != "***" || len(evs[0]["changes"].(map[string]any)) != 1 {
		t.Fatalf("rotation changes: %v", evs[0]["changes"])
	}
	raw, _ := json.Marshal(evs)
	if strings.Contains(string(raw), "secret_hash\":{\"after\":\"") && !strings.Contains(string(raw), `"***"`) {
		t.Fatalf("events show a secret hash: %s", raw)
	}

	// Mistakes are 400s naming the parameter.
	for q, field := range map[string]string{
		"?rotate=true":                            "rotate",
		"?credential=" + side:                     "credential", // another gateway's
		"?credential=nope-nope-nope-0000":         "credential",
		"?credential=Bad!":                        "credential",
		"?credential=" + id + "&rotate=maybe":     "rotate",
		"?credential=" + id + "&name=x":           "name",
		"?credential=" + id + "&credential=" + id: "credential",
		"?name=":   "name",
		"?bogus=1": "bogus",
	} {
		r := e.expect(e.do("GET", "/api/admin/acme/gateways/edge/package"+q, rootToken, nil), 400)
		if got := r.json(t)["details"].(map[string]any)["field"]; got != field {
			t.Errorf("%s: field %v, want %s: %s", q, got, field, r.body)
		}
	}
	if n := len(e.credentialsOf("acme", "edge")); n != count {
		t.Fatalf("refused downloads minted credentials: %d, want %d", n, count)
	}

	// Who revoked what.
	e.expect(e.do("DELETE", "/api/admin/acme/gateways/edge/credentials/"+id, rootToken, nil), 204)
	evs = e.eventsOf("acme", model.KindGatewayCredential)
	if evs[0]["action"] != "delete" || evs[0]["object_id"] != id || evs[0]["actor"] != "bootstrap-admin" ||
		evs[0]["changes"].(map[string]any)["name"].(map[string]any)["before"] != "ci" {
		t.Fatalf("revocation event: %v", evs[0])
	}
	e.expect(e.fetchBundle(bundle, rotated), 401)
}

func TestGatewayPackageReadmeByType(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	e.expect(e.do("POST", "/api/admin/acme/gateways", rootToken, map[string]any{"id": "edge", "name": "edge"}), 201)
	e.expect(e.do("POST", "/api/admin/acme/gateways", rootToken, map[string]any{"id": "mesh", "name": "mesh", "type": "grpc"}), 201)
	_, _, envoyFiles := e.packageCredential("/api/admin/acme/gateways/edge/package")
	_, _, grpcFiles := e.packageCredential("/api/admin/acme/gateways/mesh/package")
	for name, files := range map[string]map[string]string{"envoy": envoyFiles, "grpc": grpcFiles} {
		readme := files[model.PackageReadme]
		// Beside make run: serve holds 9191; every authorizer its own
		// health port.
		for _, want := range []string{"--authz-addr 127.0.0.1:9291 --http-addr 127.0.0.1:9292", "make run", "--authorizer-address 127.0.0.1:9291", "health"} {
			if !strings.Contains(readme, want) {
				t.Errorf("%s README lacks %q:\n%s", name, want, readme)
			}
		}
		// The README describes the files the package has, no others.
		for _, f := range []string{model.PackageEnvoyBootstrap, model.PackageGRPCBootstrap} {
			_, has := files[f]
			if mentioned := strings.Contains(readme, f); mentioned != has {
				t.Errorf("%s package: has %s %v, README mentions it %v:\n%s", name, f, has, mentioned, readme)
			}
		}
	}
	if strings.Contains(grpcFiles[model.PackageReadme], "envoy -c") || !strings.Contains(envoyFiles[model.PackageReadme], "envoy -c envoy.yaml") {
		t.Errorf("Run sections:\n%s\n---\n%s", envoyFiles[model.PackageReadme], grpcFiles[model.PackageReadme])
	}
}
