package admin_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/httpapi"
	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/policies"
)

// storedDecisionLogs is the decision_logs of the stored gateway spec.
func (e *env) storedDecisionLogs(tid, id string) string {
	e.t.Helper()
	o, err := e.store.Get(context.Background(), model.KindGateway, tid, id)
	if err != nil {
		e.t.Fatal(err)
	}
	var spec model.GatewaySpec
	if err := json.Unmarshal(o.Spec, &spec); err != nil {
		e.t.Fatal(err)
	}
	return spec.DecisionLogs
}

// bundleDecisionLogs waits until the gateway's bundle carries want as
// its gateway.decision_logs.
func (e *env) bundleDecisionLogs(tid, id, want string) {
	e.t.Helper()
	testkit.Eventually(e.t, 10*time.Second, func() error {
		b := e.bundles.Get(tid, id)
		if b == nil {
			return testkit.Check(false, "no bundle yet")
		}
		cfg, err := policies.ParseBundleConfig(b.Compiled.Data)
		if err != nil {
			return err
		}
		return testkit.Check(cfg.Gateway.DecisionLogs == want && cfg.Gateway.DecisionLogMode.String() == want,
			"the bundle's gateway.decision_logs is %q", cfg.Gateway.DecisionLogs)
	}, "the bundle carrying decision_logs "+want)
}

// TestGatewayDecisionLogs: decision_logs defaults to on (stored as
// nothing), takes off, denied and sample:N, refuses anything else with a
// 400 naming the field and nothing changed, reaches the bundle, and goes
// through the configuration export and import.
func TestGatewayDecisionLogs(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	base := "/api/admin/acme/gateways"
	gw := e.expect(e.do("POST", base, rootToken, map[string]any{"id": "edge", "name": "edge"}), 201).json(t)
	if gw["decision_logs"] != "on" || e.storedDecisionLogs("acme", "edge") != "" {
		t.Fatalf("default: %v, stored %q", gw["decision_logs"], e.storedDecisionLogs("acme", "edge"))
	}
	e.bundleDecisionLogs("acme", "edge", "on")

	t.Run("bad values are refused, naming the field, nothing changed", func(t *testing.T) {
		for _, bad := range []any{"ON", "true", "none", "sample", "sample:", "sample:0", "sample:-3", "sample:007", "sample:1000001",
			"sample:1.5", " off", false, 10, map[string]any{}} {
			before := e.snapshot()
			for _, r := range []resp{
				e.do("POST", base, rootToken, map[string]any{"id": "bad", "name": "bad", "decision_logs": bad}),
				e.do("PUT", base+"/edge", rootToken, map[string]any{"name": "edge", "decision_logs": bad}),
				e.do("PATCH", base+"/edge", rootToken, map[string]any{"decision_logs": bad}, "Content-Type", "application/merge-patch+json"),
			} {
				if r.status != 400 || r.errorCode(t) != httpapi.CodeInvalidField || errDetails(t, r)["field"] != "decision_logs" {
					t.Errorf("decision_logs %#v: %d %s", bad, r.status, r.body)
				}
			}
			e.requireUnchanged(t, before, "a refused decision_logs changed the store")
		}
	})

	t.Run("good values are stored, returned and bundled", func(t *testing.T) {
		for _, mode := range []string{"off", "denied", "sample:1", "sample:100", "sample:1000000", "on"} {
			etag := e.expect(e.do("GET", base+"/edge", rootToken, nil), 200).header.Get("ETag")
			up := e.expect(e.do("PUT", base+"/edge", rootToken, map[string]any{"name": "edge", "decision_logs": mode}, "If-Match", etag), 200).json(t)
			got := e.expect(e.do("GET", base+"/edge", rootToken, nil), 200).json(t)
			if up["decision_logs"] != mode || got["decision_logs"] != mode {
				t.Fatalf("%s: PUT answered %v, GET %v", mode, up["decision_logs"], got["decision_logs"])
			}
			if stored, want := e.storedDecisionLogs("acme", "edge"), strings.TrimPrefix(mode, "on"); stored != want {
				t.Fatalf("%s: stored %q, want %q", mode, stored, want)
			}
			e.bundleDecisionLogs("acme", "edge", mode)
		}
		// Omitted on PUT: back to the default.
		e.expect(e.do("PUT", base+"/edge", rootToken, map[string]any{"name": "edge", "decision_logs": "off"}), 200)
		if r := e.expect(e.do("PUT", base+"/edge", rootToken, map[string]any{"name": "edge"}), 200).json(t); r["decision_logs"] != "on" {
			t.Fatalf("PUT without decision_logs: %v", r["decision_logs"])
		}
		// PATCH changes it alone.
		r := e.expect(e.do("PATCH", base+"/edge", rootToken, map[string]any{"decision_logs": "sample:50"}, "Content-Type", "application/merge-patch+json"), 200).json(t)
		if r["decision_logs"] != "sample:50" || r["name"] != "edge" {
			t.Fatalf("PATCH: %v", r)
		}
		created := e.expect(e.do("POST", base, rootToken, map[string]any{"id": "quiet", "name": "quiet", "decision_logs": "denied"}), 201).json(t)
		if created["decision_logs"] != "denied" {
			t.Fatalf("created with denied: %v", created["decision_logs"])
		}
		e.bundleDecisionLogs("acme", "quiet", "denied")
	})

	t.Run("export and import carry it", func(t *testing.T) {
		exported := e.exportConfig("acme")
		doc := decodeDoc(t, exported)
		edge, edgeAt := docItem(t, doc, "gateways", "edge")
		quiet, _ := docItem(t, doc, "gateways", "quiet")
		if edge["decision_logs"] != "sample:50" || quiet["decision_logs"] != "denied" {
			t.Fatalf("exported gateways: %v, %v", edge, quiet)
		}
		e.createTenant("copy")
		e.expect(e.importConfig("copy", "", doc), 200)
		for id, want := range map[string]string{"edge": "sample:50", "quiet": "denied"} {
			if got := e.expect(e.do("GET", "/api/admin/copy/gateways/"+id, rootToken, nil), 200).json(t)["decision_logs"]; got != want {
				t.Errorf("imported %s: %v, want %s", id, got, want)
			}
			e.bundleDecisionLogs("copy", id, want)
		}
		// Re-importing the export changes nothing.
		if n := e.importCounts("acme", "", doc); n["updated gateways"] != 0 {
			t.Fatalf("re-import: %v", n)
		}
		// A bad value in a document: refused naming the item's field.
		docList(doc, "gateways")[edgeAt].(map[string]any)["decision_logs"] = "sample:0"
		before := e.snapshot()
		r := e.importConfig("acme", "", doc)
		if r.status != 400 || r.errorCode(t) != httpapi.CodeInvalidField || errDetails(t, r)["field"] != fmt.Sprintf("gateways[%d].decision_logs", edgeAt) {
			t.Fatalf("import with a bad decision_logs: %d %s", r.status, r.body)
		}
		e.requireUnchanged(t, before, "a refused import changed the store")
	})
}
