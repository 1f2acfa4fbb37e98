package admin_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/model"
)

// A 409 says which of id or name collided: details.field and the message.
func TestConflictNamesTheField(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	e.expect(e.do("POST", "/api/admin/acme/gateways", rootToken, map[string]any{"id": "edge", "name": "edge"}), 201)
	for _, c := range []struct {
		body        map[string]any
		field, want string
	}{
		{map[string]any{"id": "edge", "name": "other"}, "id", `id "edge"`},
		{map[string]any{"id": "other", "name": "edge"}, "name", `name "edge"`},
	} {
		r := e.expect(e.do("POST", "/api/admin/acme/gateways", rootToken, c.body), 409)
		if r.errorCode(t) != "already_exists" {
			t.Fatalf("%v: %s", c.body, r.body)
		}
		m := r.json(t)
		d := m["details"].(map[string]any)
		if d["field"] != c.field || d["value"] != "edge" || d["kind"] != "gateway" || !strings.HasPrefix(m["error"].(string), c.field+": ") ||
			!strings.Contains(m["error"].(string), c.want) {
			t.Errorf("%v: want the 409 to name %s: %s", c.body, c.field, r.body)
		}
	}
	// A tenant's id too (system-level kinds).
	r := e.expect(e.do("POST", "/api/system/tenants", rootToken, map[string]any{"id": "acme", "name": "again"}), 409)
	if d := r.json(t)["details"].(map[string]any); d["field"] != "id" {
		t.Errorf("tenant id collision: %s", r.body)
	}
}

// Audit events carry a before/after summary of the fields a write
// changed, secrets masked.
func TestAuditEventsSummariseChanges(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	gw := map[string]any{"id": "edge", "name": "edge", "description": "first", "labels": map[string]any{"team": "a"}}
	e.expect(e.do("POST", "/api/admin/acme/gateways", rootToken, gw), 201)
	gw["description"], gw["dry_run"], gw["labels"] = "second", true, map[string]any{"team": "b"}
	e.expect(e.do("PUT", "/api/admin/acme/gateways/edge", rootToken, gw), 200)

	evs := e.eventsOf("acme", model.KindGateway)
	if len(evs) != 2 || evs[0]["action"] != "update" || evs[1]["action"] != "create" {
		t.Fatalf("gateway events: %v", evs)
	}
	upd := evs[0]["changes"].(map[string]any)
	want := map[string]any{
		"description": map[string]any{"before": "first", "after": "second"},
		"dry_run":     map[string]any{"after": true}, // false is stored as unset
		"labels":      map[string]any{"before": map[string]any{"team": "a"}, "after": map[string]any{"team": "b"}},
	}
	gotJSON, _ := json.Marshal(upd)
	wantJSON, _ := json.Marshal(want)
	if string(gotJSON) != string(wantJSON) {
		t.Fatalf("update changes:\n got %s\nwant %s", gotJSON, wantJSON)
	}
	crt := evs[1]["changes"].(map[string]any)
	if n := crt["name"].(map[string]any); n["after"] != "edge" || n["before"] != nil {
		t.Fatalf("create changes: %v", crt)
	}
	// A PUT that changes nothing has no summary.
	e.expect(e.do("PUT", "/api/admin/acme/gateways/edge", rootToken, gw), 200)
	if ev := e.eventsOf("acme", model.KindGateway)[0]; ev["changes"] != nil {
		t.Fatalf("a no-op update lists changes: %v", ev["changes"])
	}

	// An admin credential's secret hash is masked.
	e.expect(e.do("POST", "/api/system/tenants/acme/credentials", rootToken, map[string]any{"name": "ci"}), 201)
	evs = e.eventsOf("acme", model.KindAdminCredential)
	ch := evs[0]["changes"].(map[string]any)
	if ch["secret_hash"].(map[string]any)["after"] != "***" || ch["name"].(map[string]any)["after"] != "ci" {
		t.Fatalf("admin credential changes: %v", ch)
	}

	// A delete summarises what was there.
	e.expect(e.do("DELETE", "/api/admin/acme/gateways/edge", rootToken, nil), 204)
	evs = e.eventsOf("acme", model.KindGateway)
	if evs[0]["action"] != "delete" || evs[0]["changes"].(map[string]any)["description"].(map[string]any)["before"] != "second" {
		t.Fatalf("delete event: %v", evs[0])
	}
	if _, ok := evs[0]["changes"].(map[string]any)["description"].(map[string]any)["after"]; ok {
		t.Fatalf("a delete has an after: %v", evs[0])
	}
	// Its credentials are revoked with it, each event saying so.
	for _, ev := range e.eventsOf("acme", model.KindGatewayCredential) {
		if ev["action"] == "delete" && ev["changes"].(map[string]any)["gateway_id"].(map[string]any)["before"] != "edge" {
			t.Fatalf("credential revoked with its gateway: %v", ev)
		}
	}
}
