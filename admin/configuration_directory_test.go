package admin_test

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/gatehouse-dev/gatehouse/admin"
	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	"github.com/gatehouse-dev/gatehouse/model"
)

// The directory in the configuration document: service accounts with
// their clients' secret hashes, groups with their members and projects
// with their groups and direct members.

// tokenAt asks tenant tid's default server for a client_credentials token.
func (d *dirEnv) tokenAt(tid, clientID, secret string) (*oauth2.Token, error) {
	cc := clientcredentials.Config{ClientID: clientID, ClientSecret: secret, TokenURL: d.tokenURL(tid, model.DefaultServerID)}
	return cc.Token(context.Background())
}

// dirAccount is a service account made for the document tests.
type dirAccount struct{ id, clientID, secret string }

// buildDirectory gives acme two users, three service accounts (ops
// rotated with a grace period, old suspended), a plain client, two
// groups and two projects with direct members; it returns the accounts
// and every secret handed out.
func (d *dirEnv) buildDirectory() (map[string]dirAccount, []string) {
	d.t.Helper()
	base := "/api/admin/acme"
	for _, u := range []map[string]any{
		{"id": "alice", "email": "alice@example.com", "given_name": "Alice", "password": "alice's long password"},
		{"id": "bob", "email": "bob@example.com", "family_name": "Builder"},
	} {
		d.expect(d.do("POST", base+"/users", rootToken, u), 201)
	}
	accounts := map[string]dirAccount{}
	var secrets []string
	for _, body := range []map[string]any{
		{"id": "ci", "name": "CI", "description": "the pipeline", "contact_email": "ci@example.com", "token_duration": "PT2H",
			"grant_default_roles": false, "expiry": time.Now().Add(48 * time.Hour).UTC().Format(time.RFC3339), "labels": map[string]string{"team": "build"}},
		{"id": "ops", "name": "Ops"},
		{"id": "old", "name": "Old", "state": "suspended"},
	} {
		out := d.createAccount(body)
		a := dirAccount{id: out["id"].(string), clientID: out["client_id"].(string), secret: out["client_secret"].(string)}
		accounts[a.id] = a
		secrets = append(secrets, a.secret)
	}
	rotated := d.expect(d.do("POST", base+"/service-accounts/ops/rotate", rootToken, map[string]any{"grace_period": "1h"}), 200).json(d.t)
	ops := accounts["ops"]
	ops.secret = rotated["client_secret"].(string)
	accounts["ops"] = ops
	secrets = append(secrets, ops.secret)
	d.expect(d.do("POST", base+"/clients", rootToken, map[string]any{"client_id": "plain", "authorization_server_id": "default",
		"grant_types": []string{"client_credentials"}}), 201)
	d.expect(d.do("POST", base+"/groups", rootToken, map[string]any{"id": "g1", "name": "builders", "description": "they build",
		"user_ids": []string{"bob", "alice"}, "service_account_ids": []string{"ci"}, "role_ids": []string{"r1"}, "labels": map[string]string{"k": "v"}}), 201)
	d.expect(d.do("POST", base+"/groups", rootToken, map[string]any{"id": "g2", "name": "empty"}), 201)
	d.expect(d.do("POST", base+"/projects", rootToken, map[string]any{"id": "p1", "name": "Apollo", "description": "to the moon",
		"group_ids": []string{"g1"}, "labels": map[string]string{"k": "v"}}), 201)
	d.expect(d.do("POST", base+"/projects", rootToken, map[string]any{"id": "p2", "name": "Gemini"}), 201)
	d.expect(d.do("PUT", base+"/projects/p1/members/users/alice", rootToken, nil), 201)
	d.expect(d.do("PUT", base+"/projects/p1/members/service-accounts/ops", rootToken, nil), 201)
	return accounts, secrets
}

// projectsOfPrincipal renders GET /{users|service-accounts}/{id}/projects
// of tenant tid as "pid:direct:groups" entries.
func (d *dirEnv) projectsOfPrincipal(tid, coll, id string) string {
	d.t.Helper()
	var out []string
	for _, p := range items(d.t, d.expect(d.do("GET", "/api/admin/"+tid+"/"+coll+"/"+id+"/projects", rootToken, nil), 200).json(d.t), "projects") {
		m := p["membership"].(map[string]any)
		out = append(out, fmt.Sprintf("%s:%v:%v", p["id"], m["direct"], m["group_ids"]))
	}
	return strings.Join(out, " ")
}

// TestConfigurationDirectory: service accounts, groups and projects
// round-trip through the document — exported without a secret in clear,
// re-imported without a change, copied into another tenant (where the
// accounts' secrets work, the markers are there and the copy exports the
// same bytes), changed (memberships, a new secret revoking the old
// tokens, a suspension) and removed by a replace import (the account's
// client goes and its tokens are revoked).
func TestConfigurationDirectory(t *testing.T) { testConfigurationDirectory(t, newDirEnv(t)) }

// The same on PostgreSQL (markers on its parent-id index).
func TestConfigurationDirectoryOnPostgres(t *testing.T) {
	testConfigurationDirectory(t, newDirEnvOn(t, testkit.PostgresStore(t)))
}

func testConfigurationDirectory(t *testing.T, d *dirEnv) {
	accounts, secrets := d.buildDirectory()
	ci, ops := accounts["ci"], accounts["ops"]
	ciTok, err := d.tokenAt("acme", ci.clientID, ci.secret)
	if err != nil {
		t.Fatalf("ci's token: %v", err)
	}

	exported := d.exportConfig("acme")
	if again := d.exportConfig("acme"); !bytes.Equal(exported, again) {
		t.Fatalf("two exports differ:\n%s\n%s", exported, again)
	}
	checkNoClearSecrets(t, exported, secrets)
	doc := decodeDoc(t, exported)
	keys := []string{}
	for _, k := range strings.Split(string(exported), `":[`) {
		if i := strings.LastIndex(k, `"`); i >= 0 && slices.Contains(configKeys, k[i+1:]) {
			keys = append(keys, k[i+1:])
		}
	}
	// Referenced kinds first: users and service accounts before groups,
	// groups before projects.
	if i := slices.Index(keys, "users"); i < 0 || keys[i+1] != "service_accounts" || keys[i+2] != "groups" || keys[i+3] != "projects" {
		t.Fatalf("document order: %v", keys)
	}
	n := sizes(doc)
	if n["users"] != 2 || n["service_accounts"] != 3 || n["groups"] != 2 || n["projects"] != 2 || n["clients"] != 1 {
		t.Fatalf("exported objects: %v", n)
	}
	sa, _ := docItem(t, doc, "service_accounts", "ci")
	if sa["client_id"] != ci.clientID || sa["secret_hash"] != sha256Hex(ci.secret) || sa["token_duration"] != "2h0m0s" ||
		sa["grant_default_roles"] != false || sa["contact_email"] != "ci@example.com" || sa["state"] != "active" || sa["expiry"] == nil ||
		sa["description"] != "the pipeline" || fmt.Sprint(sa["labels"]) != "map[team:build]" {
		t.Fatalf("exported ci: %v", sa)
	}
	if _, ok := sa["group_ids"]; ok {
		t.Fatalf("a document account lists its groups (the groups do): %v", sa)
	}
	opsItem, _ := docItem(t, doc, "service_accounts", "ops")
	if opsItem["secret_hash"] != sha256Hex(ops.secret) || opsItem["previous_secret_hash"] == nil || opsItem["previous_secret_expires_at"] == nil {
		t.Fatalf("exported ops (rotated with a grace period): %v", opsItem)
	}
	if old, _ := docItem(t, doc, "service_accounts", "old"); old["state"] != "suspended" {
		t.Fatalf("exported old: %v", old)
	}
	if g, _ := docItem(t, doc, "groups", "g1"); fmt.Sprint(g["user_ids"], g["service_account_ids"], g["role_ids"]) != "[bob alice] [ci] [r1]" ||
		g["name"] != "builders" || g["description"] != "they build" {
		t.Fatalf("exported g1: %v", g)
	}
	p1, _ := docItem(t, doc, "projects", "p1")
	if fmt.Sprint(p1["group_ids"], p1["members"]) != "[g1] [map[id:ops type:service_account] map[id:alice type:user]]" || p1["status"] != nil {
		t.Fatalf("exported p1: %v", p1)
	}
	if p2, _ := docItem(t, doc, "projects", "p2"); fmt.Sprint(p2["members"], p2["group_ids"]) != "[] []" {
		t.Fatalf("exported p2: %v", p2)
	}
	for _, c := range docList(doc, "clients") {
		if id := c.(map[string]any)["client_id"]; id != "plain" {
			t.Fatalf("an account's client %v is in the document's clients", id)
		}
	}
	// Every writable field of the request bodies is in the document
	// (group_ids of an account are its groups'; issue_token is create's).
	spec, err := admin.OpenAPI(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for schema, key := range map[string]string{"ServiceAccountRequest": "service_accounts", "GroupRequest": "groups", "ProjectRequest": "projects"} {
		readOnly := []string{"tenant_id", "metadata", "status"}
		if key == "service_accounts" {
			readOnly = append(readOnly, "group_ids", "issue_token")
		}
		seen := map[string]bool{}
		for _, x := range docList(doc, key) {
			for k := range x.(map[string]any) {
				seen[k] = true
			}
		}
		for prop := range spec.Components.Schemas[schema].Value.Properties {
			if !seen[prop] && !slices.Contains(readOnly, prop) {
				t.Errorf("%s.%s is not in the exported %s", schema, prop, key)
			}
		}
	}

	// The same document into the same tenant changes nothing.
	before, dir := d.snapshot(), d.dirState()
	for _, mode := range []string{"replace", "merge"} {
		d.expectCounts(d.importCounts("acme", mode, exported), counts("unchanged", n))
	}
	d.requireUnchanged(t, before, "an unchanged re-import wrote to the store")
	if d.dirState() != dir {
		t.Fatal("an unchanged re-import changed the directory")
	}

	// Into another tenant: everything created (the system servers take
	// the document's secret hashes), the accounts' secrets work there.
	systemServers := map[string]int{"servers": 3}
	d.expectCounts(d.importCounts("other", "", exported), counts("created", minus(n, systemServers), "updated", systemServers))
	copied := d.exportConfig("other")
	if !bytes.Equal(tenantNeutral(copied, "other"), tenantNeutral(exported, "acme")) {
		t.Fatalf("the copy exports differently:\n%s\n%s", exported, copied)
	}
	for _, kind := range []string{"service_accounts", "groups", "projects", "users"} {
		if a, b := fmt.Sprint(d.resourceView("acme", kind)), fmt.Sprint(d.resourceView("other", kind)); a != b {
			t.Errorf("%s differ through the API:\n%s\n%s", kind, a, b)
		}
	}
	tok, err := d.tokenAt("other", ci.clientID, ci.secret)
	if err != nil {
		t.Fatalf("ci's secret in the copy: %v", err)
	}
	if claims := jwtPayload(t, tok.AccessToken); claims["sub"] != "ci" || claims["iss"] != ghPublic+"/other/default" {
		t.Fatalf("the copy's token: %v", claims)
	}
	if _, err := d.tokenAt("other", ops.clientID, ops.secret); err != nil {
		t.Fatalf("ops's secret in the copy: %v", err)
	}
	_, err = d.tokenAt("other", accounts["old"].clientID, accounts["old"].secret)
	wantInvalidClient(t, err, "the suspended account's secret in the copy")
	for _, c := range []struct{ tid, coll, id, want string }{
		{"other", "users", "alice", "p1:true:[g1]"},
		{"other", "users", "bob", "p1:false:[g1]"},
		{"other", "service-accounts", "ci", "p1:false:[g1]"},
		{"other", "service-accounts", "ops", "p1:true:[]"},
		{"other", "service-accounts", "old", ""},
	} {
		if got := d.projectsOfPrincipal(c.tid, c.coll, c.id); got != c.want {
			t.Errorf("projects of %s %s in %s: %q, want %q", c.coll, c.id, c.tid, got, c.want)
		}
	}
	if g := d.expect(d.do("GET", "/api/admin/other/service-accounts/ci", rootToken, nil), 200).json(t); fmt.Sprint(g["group_ids"]) != "[g1]" {
		t.Fatalf("ci's groups in the copy: %v", g)
	}
	// Again: no change.
	d.expectCounts(d.importCounts("other", "", exported), counts("unchanged", n))

	// Changes: g1 loses bob and ci's place goes to ops; p1's members
	// become bob alone; ci gets a new secret (its old one and its tokens
	// stop working); old becomes active.
	changed := deepCopy(t, doc)
	g1, _ := docItem(t, changed, "groups", "g1")
	g1["user_ids"], g1["service_account_ids"] = []any{"alice"}, []any{"ops"}
	p1c, _ := docItem(t, changed, "projects", "p1")
	p1c["members"] = []any{map[string]any{"type": "user", "id": "bob"}}
	newSecret := "a brand new secret for ci, long enough to be one"
	sac, _ := docItem(t, changed, "service_accounts", "ci")
	sac["secret_hash"] = sha256Hex(newSecret)
	oldc, _ := docItem(t, changed, "service_accounts", "old")
	oldc["state"] = "active"
	r := d.expect(d.importConfig("acme", "replace", changed), 200).json(t)
	var fields []string
	for _, c := range r["changes"].([]any) {
		m := c.(map[string]any)
		fields = append(fields, fmt.Sprintf("%s/%s %s %v", m["kind"], m["id"], m["action"], m["fields"]))
	}
	if got := strings.Join(fields, "; "); got != "service_accounts/ci update [secret_hash]; service_accounts/old update [state]; "+
		"groups/g1 update [service_account_ids user_ids]; projects/p1 update [members]" {
		t.Fatalf("changes: %s", got)
	}
	d.checkMarkers()
	for _, c := range []struct{ coll, id, want string }{
		{"users", "alice", "p1:false:[g1]"},
		{"users", "bob", "p1:true:[]"},
		{"service-accounts", "ci", ""},
		{"service-accounts", "ops", "p1:false:[g1]"},
	} {
		if got := d.projectsOfPrincipal("acme", c.coll, c.id); got != c.want {
			t.Errorf("projects of %s %s after the change: %q, want %q", c.coll, c.id, got, c.want)
		}
	}
	_, err = d.accountToken(ci.clientID, ci.secret)
	wantInvalidClient(t, err, "ci's old secret after the import")
	if d.accepted(ciTok.AccessToken) {
		t.Fatal("ci's token issued before its new secret is still accepted")
	}
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second))) // past the revocation's second
	if tok, err := d.accountToken(ci.clientID, newSecret); err != nil || !d.accepted(tok.AccessToken) {
		t.Fatalf("ci's new secret: %v", err)
	}
	if _, err := d.accountToken(accounts["old"].clientID, accounts["old"].secret); err != nil {
		t.Fatalf("old, reactivated by the import: %v", err)
	}
	d.expectCounts(d.importCounts("acme", "replace", changed), counts("unchanged", n))

	// A replace without ci (and without it in g1) deletes it with its
	// client and revokes its tokens; a suspension revokes ops's.
	opsTok, err := d.accountToken(ops.clientID, ops.secret)
	if err != nil {
		t.Fatal(err)
	}
	ciTok, err = d.accountToken(ci.clientID, newSecret)
	if err != nil {
		t.Fatal(err)
	}
	without := deepCopy(t, changed)
	var kept []any
	for _, x := range docList(without, "service_accounts") {
		if x.(map[string]any)["id"] != "ci" {
			kept = append(kept, x)
		}
	}
	without["service_accounts"] = kept
	opsw, _ := docItem(t, without, "service_accounts", "ops")
	opsw["state"] = "suspended"
	start := time.Now().Truncate(time.Second)
	d.expectCounts(d.importCounts("acme", "replace", without), minus(counts("unchanged", n, "deleted", map[string]int{"service_accounts": 1},
		"updated", map[string]int{"service_accounts": 1}), counts("unchanged", map[string]int{"service_accounts": 2})))
	d.expect(d.do("GET", "/api/admin/acme/service-accounts/ci", rootToken, nil), 404)
	d.expect(d.do("GET", "/api/admin/acme/clients/"+ci.clientID, rootToken, nil), 404)
	revs := d.subjectRevocations()
	for _, id := range []string{"ci", "ops"} {
		if at, ok := revs[id]; !ok || at.Before(start) {
			t.Errorf("%s's tokens are not revoked by the import (%v): %v", id, at, revs)
		}
	}
	if d.accepted(ciTok.AccessToken) || d.accepted(opsTok.AccessToken) {
		t.Fatal("a deleted or suspended account's token is still accepted")
	}
	_, err = d.accountToken(ops.clientID, ops.secret)
	wantInvalidClient(t, err, "the suspended ops")
	d.checkMarkers()
	if got := d.projectsOfPrincipal("acme", "service-accounts", "ops"); got != "p1:false:[g1]" {
		t.Fatalf("ops's projects: %q", got)
	}
}

// TestConfigurationDirectoryRefusals: a bad directory item, a reference
// to a user, service account or group the document lacks, and a client
// id that is taken are 400s naming the field's path, with nothing
// changed.
func TestConfigurationDirectoryRefusals(t *testing.T) {
	d := newDirEnv(t)
	accounts, _ := d.buildDirectory()
	doc := decodeDoc(t, d.exportConfig("acme"))
	cases := []struct {
		name, mode, field string
		edit              func(doc map[string]any)
	}{
		{"bad token_duration", "", "service_accounts[0].token_duration", func(doc map[string]any) {
			docList(doc, "service_accounts")[0].(map[string]any)["token_duration"] = "forever"
		}},
		{"token_duration too long", "", "service_accounts[0].token_duration", func(doc map[string]any) {
			docList(doc, "service_accounts")[0].(map[string]any)["token_duration"] = "PT49H"
		}},
		{"no secret_hash", "", "service_accounts[1].secret_hash", func(doc map[string]any) {
			delete(docList(doc, "service_accounts")[1].(map[string]any), "secret_hash")
		}},
		{"a secret in clear", "", "service_accounts[1].client_secret", func(doc map[string]any) {
			docList(doc, "service_accounts")[1].(map[string]any)["client_secret"] = "clear text"
		}},
		{"a bad secret_hash", "", "service_accounts[2].secret_hash", func(doc map[string]any) {
			docList(doc, "service_accounts")[2].(map[string]any)["secret_hash"] = strings.Repeat("X", 64)
		}},
		{"no client_id", "", "service_accounts[0].client_id", func(doc map[string]any) {
			delete(docList(doc, "service_accounts")[0].(map[string]any), "client_id")
		}},
		{"a previous hash without expiry", "", "service_accounts[2].previous_secret_expires_at", func(doc map[string]any) {
			delete(docList(doc, "service_accounts")[2].(map[string]any), "previous_secret_expires_at")
		}},
		{"group_ids on an account", "", "service_accounts[0].group_ids", func(doc map[string]any) {
			docList(doc, "service_accounts")[0].(map[string]any)["group_ids"] = []string{"g1"}
		}},
		{"two accounts with one client", "", "service_accounts[1].client_id", func(doc map[string]any) {
			docList(doc, "service_accounts")[1].(map[string]any)["client_id"] = docList(doc, "service_accounts")[0].(map[string]any)["client_id"]
		}},
		{"an account taking a kept client's id", "merge", "service_accounts[0].client_id", func(doc map[string]any) {
			docList(doc, "service_accounts")[0].(map[string]any)["client_id"] = "plain"
		}},
		{"an account taking a document client's id", "", "service_accounts[0].client_id", func(doc map[string]any) {
			docList(doc, "service_accounts")[0].(map[string]any)["client_id"] = "plain"
		}},
		{"a document client with an account's id", "", "clients[0].client_id", func(doc map[string]any) {
			c := docList(doc, "clients")[0].(map[string]any)
			c["client_id"], c["id"] = accounts["ops"].clientID, accounts["ops"].clientID
		}},
		{"an unknown user in a group", "", "groups[0].user_ids[1]", func(doc map[string]any) {
			docList(doc, "groups")[0].(map[string]any)["user_ids"] = []any{"alice", "nosuch"}
		}},
		{"a group naming a user the replace deletes", "", "groups[0].user_ids[0]", func(doc map[string]any) {
			doc["users"] = docList(doc, "users")[:1] // alice only; g1 lists bob first
		}},
		{"an unknown account in a group", "merge", "groups[0].service_account_ids[0]", func(doc map[string]any) {
			docList(doc, "groups")[0].(map[string]any)["service_account_ids"] = []any{"nosuch"}
		}},
		{"a group member listed twice", "", "groups[0].user_ids[1]", func(doc map[string]any) {
			docList(doc, "groups")[0].(map[string]any)["user_ids"] = []any{"alice", "alice"}
		}},
		{"a group's metadata", "", "groups[1].metadata", func(doc map[string]any) {
			docList(doc, "groups")[1].(map[string]any)["metadata"] = map[string]any{}
		}},
		{"an unknown group in a project", "", "projects[0].group_ids[0]", func(doc map[string]any) {
			docList(doc, "projects")[0].(map[string]any)["group_ids"] = []any{"nosuch"}
		}},
		{"a project naming a group the replace deletes", "", "projects[0].group_ids[0]", func(doc map[string]any) {
			doc["groups"] = docList(doc, "groups")[1:]
		}},
		{"an unknown member of a project", "", "projects[0].members[1].id", func(doc map[string]any) {
			docList(doc, "projects")[0].(map[string]any)["members"] = []any{map[string]any{"type": "user", "id": "alice"},
				map[string]any{"type": "user", "id": "nosuch"}}
		}},
		{"a group as a project member", "", "projects[0].members[0].type", func(doc map[string]any) {
			docList(doc, "projects")[0].(map[string]any)["members"] = []any{map[string]any{"type": "group", "id": "g1"}}
		}},
		{"a project member listed twice", "", "projects[0].members[1]", func(doc map[string]any) {
			docList(doc, "projects")[0].(map[string]any)["members"] = []any{map[string]any{"type": "user", "id": "alice"},
				map[string]any{"type": "user", "id": "alice"}}
		}},
		{"a project's status", "", "projects[1].status", func(doc map[string]any) {
			docList(doc, "projects")[1].(map[string]any)["status"] = "READY"
		}},
		{"a long project name", "", "projects[1].name", func(doc map[string]any) {
			docList(doc, "projects")[1].(map[string]any)["name"] = strings.Repeat("n", 51)
		}},
		{"two projects of one name", "", "projects[1].name", func(doc map[string]any) {
			docList(doc, "projects")[1].(map[string]any)["name"] = "Apollo"
		}},
		{"service_accounts not a list", "", "service_accounts", func(doc map[string]any) {
			doc["service_accounts"] = map[string]any{}
		}},
	}
	before, snap := d.dirState(), d.snapshot()
	for _, c := range cases {
		bad := deepCopy(t, doc)
		c.edit(bad)
		r := d.importConfig("acme", c.mode, bad)
		if r.status != 400 {
			t.Errorf("%s: %d, want 400: %s", c.name, r.status, r.body)
			continue
		}
		r.errorCode(t)
		if det, _ := r.json(t)["details"].(map[string]any); det["field"] != c.field {
			t.Errorf("%s: want an error naming %s: %s", c.name, c.field, r.body)
		}
	}
	d.requireUnchanged(t, snap, "a refused import wrote")
	if d.dirState() != before {
		t.Fatal("a refused import changed the directory")
	}
	// The accounts still work.
	for _, id := range []string{"ci", "ops"} {
		if _, err := d.accountToken(accounts[id].clientID, accounts[id].secret); err != nil {
			t.Fatalf("%s after the refusals: %v", id, err)
		}
	}
	// A replace that drops the plain client lets an account take its id.
	moved := deepCopy(t, doc)
	moved["clients"] = []any{}
	docList(moved, "service_accounts")[0].(map[string]any)["client_id"] = "plain"
	d.expect(d.importConfig("acme", "", moved), 200)
	if c := d.expect(d.do("GET", "/api/admin/acme/clients/plain", rootToken, nil), 200).json(t); c["system"] != true || !strings.Contains(c["description"].(string), `"ci"`) {
		t.Fatalf("the client plain after the move: %v", c)
	}
	d.expect(d.do("GET", "/api/admin/acme/clients/"+accounts["ci"].clientID, rootToken, nil), 404)
	if _, err := d.accountToken("plain", accounts["ci"].secret); err != nil {
		t.Fatalf("ci's secret on its new client: %v", err)
	}
	if got := d.expect(d.do("GET", "/api/admin/acme/service-accounts/mapping/plain", rootToken, nil), 200).json(t)["id"]; got != "ci" {
		t.Fatalf("mapping of the new client: %v", got)
	}
}
