package admin_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/bundles"
	"github.com/gatehouse-dev/gatehouse/internal/testkit"
)

// decisionEvent is a decision log event as the authorizer writes it (the
// parts a search reads).
func decisionEvent(id string, allowed bool, status int, api, policy, subject string) json.RawMessage {
	tok := `{"present":false,"valid":false}`
	if subject != "" {
		tok = fmt.Sprintf(`{"present":true,"valid":true,"subject":%q}`, subject)
	}
	reason := ""
	if status == 401 {
		reason = `,"token_reason":"expired"`
	}
	return json.RawMessage(fmt.Sprintf(`{"decision_id":%q,"input":{"attributes":{"request":{"http":{"method":"GET","path":"/pets/1"}}},"gatehouse":{"token":%s}},`+
		`"result":{"allowed":%t,"http_status":%d,"api_id":%q,"policy_id":%q,"reason":"r"%s},"timestamp":"2026-12-01T10:00:00Z"}`,
		id, tok, allowed, status, api, policy, reason))
}

// decisionIDs lists the decision_id of each listed event.
func decisionIDs(t *testing.T, body map[string]any) []string {
	t.Helper()
	var out []string
	for _, d := range body["decisions"].([]any) {
		out = append(out, d.(map[string]any)["event"].(map[string]any)["decision_id"].(string))
	}
	return out
}

// seedDecisions gives tenant tid's gateway edge these events, oldest
// first: d0 … d9.
func seedDecisions(t *testing.T, e *env, tid string) {
	t.Helper()
	events := []json.RawMessage{
		decisionEvent("d0", true, 200, "get-pet", "p1", "alice"),
		decisionEvent("d1", false, 403, "get-pet", "p1", "bob"),
		decisionEvent("d2", false, 401, "get-pet", "p1", ""),
		decisionEvent("d3", true, 200, "put-pet", "p2", "alice"),
		decisionEvent("d4", false, 404, "", "", ""),
		decisionEvent("d5", false, 403, "put-pet", "p2", "bob"),
		decisionEvent("d6", true, 200, "get-pet", "p1", "bob"),
		decisionEvent("d7", false, 403, "get-pet", "p1", "alice"),
		decisionEvent("d8", true, 200, "put-pet", "p2", "carol"),
		decisionEvent("d9", false, 403, "get-pet", "p1", "bob"),
	}
	if err := e.store.AppendLog(context.Background(), bundles.DecisionLog(tid, "edge"), events); err != nil {
		t.Fatal(err)
	}
}

func newDecisionEnv(t *testing.T, e *env) {
	t.Helper()
	for _, tid := range []string{"acme", "other"} {
		e.createTenant(tid)
		e.expect(e.do("POST", "/api/admin/"+tid+"/gateways", rootToken, map[string]any{"id": "edge", "name": "edge"}), 201)
	}
	seedDecisions(t, e, "acme")
	// The other tenant's gateway of the same id logs the same decisions,
	// under other ids.
	if err := e.store.AppendLog(context.Background(), bundles.DecisionLog("other", "edge"), []json.RawMessage{
		decisionEvent("other-0", false, 403, "get-pet", "p1", "bob"), decisionEvent("other-1", true, 200, "get-pet", "p1", "bob"),
	}); err != nil {
		t.Fatal(err)
	}
}

func TestDecisionSearch(t *testing.T) { decisionSearch(t, newEnv(t)) }

func TestDecisionSearchOnPostgres(t *testing.T) {
	decisionSearch(t, newEnvOnWith(t, testkit.PostgresStore(t), nil))
}

func decisionSearch(t *testing.T, e *env) {
	newDecisionEnv(t, e)
	const base = "/api/admin/acme/gateways/edge/decisions"
	list := func(query string) map[string]any {
		t.Helper()
		return e.expect(e.do("GET", base+query, rootToken, nil), 200).json(t)
	}
	for _, c := range []struct {
		query string
		want  []string
	}{
		{"", []string{"d9", "d8", "d7", "d6", "d5", "d4", "d3", "d2", "d1", "d0"}},
		{"?allowed=false", []string{"d9", "d7", "d5", "d4", "d2", "d1"}},
		{"?allowed=true", []string{"d8", "d6", "d3", "d0"}},
		{"?api_id=put-pet", []string{"d8", "d5", "d3"}},
		{"?policy_id=p2&allowed=false", []string{"d5"}},
		{"?subject=bob", []string{"d9", "d6", "d5", "d1"}},
		{"?subject=bob&http_status=403&api_id=get-pet", []string{"d9", "d1"}},
		{"?http_status=404", []string{"d4"}},
		{"?decision_id=d7", []string{"d7"}},
		{"?token_reason=expired", []string{"d2"}},
		{"?decision_id=other-0", nil},
		{"?subject=nobody", nil},
	} {
		body := list(c.query)
		if got := decisionIDs(t, body); !slices.Equal(got, c.want) || body["total"] != float64(len(c.want)) || body["next"] != "" {
			t.Errorf("%s: %v (total %v, next %v), want %v", c.query, got, body["total"], body["next"], c.want)
		}
	}

	// Paging keeps the filters: every page has the total, the pages
	// together are the listing.
	var paged []string
	next, pages := "", 0
	for {
		q := "?allowed=false&limit=4"
		if next != "" {
			q += "&after=" + next
		}
		body := list(q)
		paged = append(paged, decisionIDs(t, body)...)
		if body["total"] != float64(6) {
			t.Fatalf("page %d: total %v, want 6", pages, body["total"])
		}
		pages++
		if next = body["next"].(string); next == "" {
			break
		}
	}
	if want := []string{"d9", "d7", "d5", "d4", "d2", "d1"}; !slices.Equal(paged, want) || pages != 2 {
		t.Fatalf("paged denials: %v in %d pages, want %v in 2", paged, pages, want)
	}

	// since: the ones newer than a decision seen.
	ids := map[string]string{}
	for _, d := range list("")["decisions"].([]any) {
		m := d.(map[string]any)
		ids[m["event"].(map[string]any)["decision_id"].(string)] = m["id"].(string)
	}
	if got := decisionIDs(t, list("?allowed=false&since="+ids["d5"])); !slices.Equal(got, []string{"d9", "d7"}) {
		t.Errorf("denials since d5: %v", got)
	}

	// Windows of received time: everything was received at one time.
	first := list("?decision_id=d0")["decisions"].([]any)[0].(map[string]any)["received_at"].(string)
	at, err := time.Parse(time.RFC3339Nano, first)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		query string
		n     float64
	}{
		{"?from=" + url.QueryEscape(at.Format(time.RFC3339Nano)), 10},
		{"?to=" + url.QueryEscape(at.Format(time.RFC3339Nano)) + "&allowed=true", 4},
		{"?from=" + url.QueryEscape(at.Add(time.Microsecond).Format(time.RFC3339Nano)), 0},
		{"?to=" + url.QueryEscape(at.Add(-time.Microsecond).Format(time.RFC3339Nano)), 0},
		{fmt.Sprintf("?from=%d&to=%d", at.Unix()-60, at.Unix()+60), 10},
	} {
		if body := list(c.query); body["total"] != c.n {
			t.Errorf("%s: total %v, want %v", c.query, body["total"], c.n)
		}
	}

	// Counts per policy, over a window and under the filters.
	stats := e.expect(e.do("GET", base+"/stats", rootToken, nil), 200).json(t)
	want := map[string]any{"total": 10.0, "allowed": 4.0, "denied": 6.0, "policies": []any{
		map[string]any{"policy_id": "", "total": 1.0, "allowed": 0.0, "denied": 1.0},
		map[string]any{"policy_id": "p1", "total": 6.0, "allowed": 2.0, "denied": 4.0},
		map[string]any{"policy_id": "p2", "total": 3.0, "allowed": 2.0, "denied": 1.0},
	}}
	if fmt.Sprint(stats) != fmt.Sprint(want) {
		t.Errorf("stats: %v, want %v", stats, want)
	}
	window := fmt.Sprintf("?from=%d&to=%d&subject=bob", at.Unix()-60, at.Unix()+60)
	stats = e.expect(e.do("GET", base+"/stats"+window, rootToken, nil), 200).json(t)
	want = map[string]any{"total": 4.0, "allowed": 1.0, "denied": 3.0, "policies": []any{
		map[string]any{"policy_id": "p1", "total": 3.0, "allowed": 1.0, "denied": 2.0},
		map[string]any{"policy_id": "p2", "total": 1.0, "allowed": 0.0, "denied": 1.0},
	}}
	if fmt.Sprint(stats) != fmt.Sprint(want) {
		t.Errorf("stats of bob: %v, want %v", stats, want)
	}
	empty := e.expect(e.do("GET", base+"/stats?subject=nobody", rootToken, nil), 200).json(t)
	if fmt.Sprint(empty) != "map[allowed:0 denied:0 policies:[] total:0]" {
		t.Errorf("stats of nothing: %v", empty)
	}
}

// Every bad query parameter is a 400 naming it.
func TestDecisionSearchRefusesBadQueries(t *testing.T) {
	e := newEnv(t)
	newDecisionEnv(t, e)
	const base = "/api/admin/acme/gateways/edge/decisions"
	for _, c := range []struct {
		path, field, code string
	}{
		{base + "?alowed=false", "alowed", "unknown_field"},
		{base + "?allowed=false&sort=asc", "sort", "unknown_field"},
		{base + "?allowed=maybe", "allowed", "invalid_field"},
		{base + "?allowed=true&allowed=false", "allowed", "invalid_field"},
		{base + "?http_status=abc", "http_status", "invalid_field"},
		{base + "?http_status=42", "http_status", "invalid_field"},
		{base + "?from=garbage", "from", "invalid_field"},
		{base + "?to=2026-13-01T00:00:00Z", "to", "invalid_field"},
		{base + "?from=2026-12-02T00:00:00Z&to=2026-12-01T00:00:00Z", "to", "invalid_field"},
		{base + "?api_id=Not%20An%20Id", "api_id", "invalid_field"},
		{base + "?policy_id=", "policy_id", "invalid_field"},
		{base + "?subject=", "subject", "invalid_field"},
		{base + "?decision_id=", "decision_id", "invalid_field"},
		{base + "?since=nope", "since", "invalid_field"},
		{base + "?since=0", "since", "invalid_field"},
		{base + "?after=nope", "after", "invalid_field"},
		{base + "?limit=0", "limit", "invalid_field"},
		{base + "?total=maybe", "total", "invalid_field"},
		{base + "/stats?total=false", "total", "unknown_field"},
		{base + "/stats?limit=10", "limit", "unknown_field"},
		{base + "/stats?since=1", "since", "unknown_field"},
		{base + "/stats?allowed=maybe", "allowed", "invalid_field"},
		{base + "/stats?from=2026-12-02T00:00:00Z&to=2026-12-01T00:00:00Z", "to", "invalid_field"},
	} {
		r := e.do("GET", c.path, rootToken, nil)
		if r.status != 400 {
			t.Errorf("%s: %d %s, want 400", c.path, r.status, r.body)
			continue
		}
		if code := r.errorCode(t); code != c.code || r.json(t)["details"].(map[string]any)["field"] != c.field {
			t.Errorf("%s: %s, want %s naming %s", c.path, r.body, c.code, c.field)
		}
	}
	e.expect(e.do("GET", "/api/admin/acme/gateways/nope/decisions", rootToken, nil), 404)
	e.expect(e.do("GET", "/api/admin/acme/gateways/nope/decisions/stats", rootToken, nil), 404)

	// total=false leaves the count out; the default has it.
	if m := e.expect(e.do("GET", base+"?total=false", rootToken, nil), 200).json(t); m["total"] != nil || m["decisions"] == nil {
		t.Fatalf("total=false: %v", m)
	}
	if m := e.expect(e.do("GET", base, rootToken, nil), 200).json(t); m["total"] == nil {
		t.Fatalf("no total: %v", m)
	}
}

// A tenant's credential sees its own gateway's decisions only: another
// tenant's are 403, and a gateway of the same id in another tenant never
// shows up in its listing or counts.
func TestDecisionSearchTenantIsolation(t *testing.T) {
	e := newEnv(t)
	newDecisionEnv(t, e)
	acme := e.credential("acme")
	body := e.expect(e.do("GET", "/api/admin/acme/gateways/edge/decisions?subject=bob", acme, nil), 200).json(t)
	if got := decisionIDs(t, body); !slices.Equal(got, []string{"d9", "d6", "d5", "d1"}) || body["total"] != 4.0 {
		t.Fatalf("acme's listing: %v (total %v)", got, body["total"])
	}
	stats := e.expect(e.do("GET", "/api/admin/acme/gateways/edge/decisions/stats", acme, nil), 200).json(t)
	if stats["total"] != 10.0 {
		t.Fatalf("acme's counts include another tenant's: %v", stats)
	}
	for _, p := range []string{"/api/admin/other/gateways/edge/decisions", "/api/admin/other/gateways/edge/decisions/stats",
		"/api/admin/other/gateways/edge/decisions?decision_id=other-0"} {
		if r := e.do("GET", p, acme, nil); r.status != 403 || r.errorCode(t) != "forbidden" {
			t.Errorf("acme's credential on %s: %d %s", p, r.status, r.body)
		}
	}
	other := e.expect(e.do("GET", "/api/admin/other/gateways/edge/decisions", e.credential("other"), nil), 200).json(t)
	if got := decisionIDs(t, other); !slices.Equal(got, []string{"other-1", "other-0"}) {
		t.Fatalf("other's listing: %v", got)
	}
}
