package admin_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/testkit"
)

// planResult is the answer of an import (or a dry run).
type planResult struct {
	Created  map[string]int `json:"created"`
	Updated  map[string]int `json:"updated"`
	Deleted  map[string]int `json:"deleted"`
	DryRun   bool           `json:"dry_run"`
	BaseETag string         `json:"base_etag"`
	ETag     string         `json:"etag"`
	Changes  []struct {
		Kind, ID, Action string
		Fields           []string
	} `json:"changes"`
}

func (p planResult) changeList() string {
	var out []string
	for _, c := range p.Changes {
		s := c.Action + " " + c.Kind + "/" + c.ID
		if len(c.Fields) > 0 {
			s += " " + strings.Join(c.Fields, ",")
		}
		out = append(out, s)
	}
	return strings.Join(out, "; ")
}

func decodePlan(t *testing.T, r resp) planResult {
	t.Helper()
	var p planResult
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatal(err)
	}
	return p
}

// planDocument is the export of tid edited: a new service, an API moved
// to another path, the issuer "remote" gone, the tenant renamed.
func planDocument(t *testing.T, exported []byte) map[string]any {
	t.Helper()
	doc := decodeDoc(t, exported)
	doc["services"] = append(docList(doc, "services"), map[string]any{"id": "extra", "name": "Extra", "url": "http://extra.internal"})
	api, _ := docItem(t, doc, "apis", "items")
	api["path"] = "/items/v2"
	var issuers []any
	for _, it := range docList(doc, "issuers") {
		if it.(map[string]any)["id"] != "remote" {
			issuers = append(issuers, it)
		}
	}
	doc["issuers"] = issuers
	doc["tenant"].(map[string]any)["name"] = "Renamed"
	return doc
}

// A dry run answers the plan (every change, the fields an update changes,
// the ETags before and after) and changes nothing; the import it plans
// then does exactly that, and its etag is what an export then has.
func TestConfigurationDryRunPlansWithoutWriting(t *testing.T) {
	dryRunPlansWithoutWriting(t, newEnv(t))
}

// The same on PostgreSQL, whose rolled-back transaction must leave the
// global revision and the change log as they were.
func TestConfigurationDryRunOnPostgres(t *testing.T) {
	dryRunPlansWithoutWriting(t, newEnvOnWith(t, testkit.PostgresStore(t), nil))
}

func dryRunPlansWithoutWriting(t *testing.T, e *env) {
	e.createTenant("acme")
	e.buildRichTenant("acme")
	e.waitBundles("acme", "edge", "mesh")
	before := e.exportConfig("acme")
	exportTag := e.expect(e.do("GET", configPath+"?tid=acme", rootToken, nil), 200).header.Get("ETag")
	doc := planDocument(t, before)
	rev, events := e.revision(), e.eventCount("acme")

	dry := decodePlan(t, e.expect(e.do("PUT", configPath+"?tid=acme&dry_run=true", rootToken, doc), 200))
	want := "delete issuers/remote; create services/extra; update apis/items path; update tenants/acme name"
	if got := dry.changeList(); got != want {
		t.Fatalf("plan %q, want %q", got, want)
	}
	if !dry.DryRun || dry.BaseETag != exportTag || dry.ETag == exportTag || !strings.HasPrefix(dry.BaseETag, `"cfg-`) ||
		dry.Created["services"] != 1 || dry.Updated["apis"] != 1 || dry.Deleted["issuers"] != 1 {
		t.Fatalf("plan %+v (export ETag %s)", dry, exportTag)
	}
	if got := e.exportConfig("acme"); string(got) != string(before) || e.revision() != rev || e.eventCount("acme") != events {
		t.Fatal("the dry run wrote something")
	}

	r := e.expect(e.do("PUT", configPath+"?tid=acme", rootToken, doc, "If-Match", dry.BaseETag), 200)
	applied := decodePlan(t, r)
	if applied.DryRun || applied.changeList() != want || applied.BaseETag != dry.BaseETag || applied.ETag != dry.ETag || r.header.Get("ETag") != dry.ETag {
		t.Fatalf("applied %+v, planned %+v", applied, dry)
	}
	after := e.expect(e.do("GET", configPath+"?tid=acme", rootToken, nil), 200)
	if after.header.Get("ETag") != dry.ETag {
		t.Fatalf("export ETag %s after the import, the plan said %s", after.header.Get("ETag"), dry.ETag)
	}
	again := decodePlan(t, e.expect(e.do("PUT", configPath+"?tid=acme&dry_run=true", rootToken, doc), 200))
	if len(again.Changes) != 0 || again.BaseETag != again.ETag || again.BaseETag != dry.ETag {
		t.Fatalf("planning the applied document again: %+v", again)
	}
}

// If-Match makes an import all-or-nothing against concurrent changes: a
// configuration changed since the plan is a 412 naming the current ETag,
// and nothing of the import is written.
func TestConfigurationIfMatch(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	e.buildRichTenant("acme")
	e.waitBundles("acme", "edge", "mesh")
	doc := planDocument(t, e.exportConfig("acme"))
	plan := decodePlan(t, e.expect(e.do("PUT", configPath+"?tid=acme&dry_run=true", rootToken, doc), 200))

	// Someone else changes the configuration meanwhile.
	e.expect(e.do("POST", "/api/admin/acme/scopes", rootToken, map[string]any{"id": "late", "name": "late"}), 201)
	current := e.expect(e.do("GET", configPath+"?tid=acme", rootToken, nil), 200)
	rev, events := e.revision(), e.eventCount("acme")

	r := e.expect(e.do("PUT", configPath+"?tid=acme", rootToken, doc, "If-Match", plan.BaseETag), 412)
	if code := r.errorCode(t); code != "precondition_failed" || r.json(t)["details"].(map[string]any)["etag"] != current.header.Get("ETag") {
		t.Fatalf("%s: %s", code, r.body)
	}
	if string(e.exportConfig("acme")) != string(current.body) || e.revision() != rev || e.eventCount("acme") != events {
		t.Fatal("a refused import wrote something")
	}
	// A dry run checks it too.
	e.expect(e.do("PUT", configPath+"?tid=acme&dry_run=true", rootToken, doc, "If-Match", plan.BaseETag), 412)

	for _, bad := range []string{`"12"`, "cfg-abc", `W/"cfg-abc"`, `"cfg-a", "cfg-b"`} {
		r := e.expect(e.do("PUT", configPath+"?tid=acme", rootToken, doc, "If-Match", bad), 400)
		if code := r.errorCode(t); code != "invalid_header" {
			t.Fatalf("If-Match %s: %s", bad, r.body)
		}
	}
	if r := e.expect(e.do("PUT", configPath+"?tid=acme&dry_run=maybe", rootToken, doc), 400); !strings.Contains(string(r.body), "dry_run") {
		t.Fatalf("a bad dry_run: %s", r.body)
	}
	// With the current ETag (or *), it applies.
	e.expect(e.do("PUT", configPath+"?tid=acme", rootToken, doc, "If-Match", current.header.Get("ETag")), 200)
	e.expect(e.do("PUT", configPath+"?tid=acme", rootToken, doc, "If-Match", "*"), 200)
}

// The export's ETag: the same configuration, the same ETag (and 304 with
// If-None-Match); any change, another.
func TestConfigurationExportETag(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	first := e.expect(e.do("GET", configPath+"?tid=acme", rootToken, nil), 200).header.Get("ETag")
	if first == "" || first != e.expect(e.do("GET", configPath+"?tid=acme", rootToken, nil), 200).header.Get("ETag") {
		t.Fatalf("ETag %q is not stable", first)
	}
	e.expect(e.do("GET", configPath+"?tid=acme", rootToken, nil, "If-None-Match", first), 304)
	e.expect(e.do("POST", "/api/admin/acme/scopes", rootToken, map[string]any{"id": "s", "name": "s"}), 201)
	second := e.expect(e.do("GET", configPath+"?tid=acme", rootToken, nil, "If-None-Match", first), 200).header.Get("ETag")
	e.expect(e.do("DELETE", "/api/admin/acme/scopes/s", rootToken, nil), 204)
	third := e.expect(e.do("GET", configPath+"?tid=acme", rootToken, nil), 200).header.Get("ETag")
	if second == first || third != first {
		t.Fatal(fmt.Sprintf("ETags %s, %s, %s: a change must change it, its undoing restore it", first, second, third))
	}
}
