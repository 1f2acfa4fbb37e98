package policies_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/field"
	"github.com/gatehouse-dev/gatehouse/internal/testkit/authzkit"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/policies"
)

// The replay's tests log decisions through the gateway's own authorizer
// and decision logger (authzkit), so the events replayed are exactly what
// a gateway writes: masked, with its result document.

// savedKeyed is the saved policy: a request with the key is allowed.
const savedKeyed = `package policy

default allow := false

allow if input.attributes.request.http.headers["x-key"] == "open-sesame"

reason := "no key" if not allow
`

// draftKeyed accepts a second key and refuses DELETE: it flips DELETE
// with the old key to deny, and any request with the new key to allow.
const draftKeyed = `package policy

default allow := false

allow if {
	input.attributes.request.http.headers["x-key"] in {"open-sesame", "new-key"}
	input.attributes.request.http.method != "DELETE"
}

reason := "no key, or a DELETE" if not allow
`

// replayConfig is a tenant with two services: pets (two APIs bound to
// keyed) and toys (one API bound to other), one gateway over both.
func replayConfig(gw model.GatewaySpec) *policies.Config {
	gw.Type = model.GatewayEnvoy
	return &policies.Config{
		Revision: 7,
		Tenant:   policies.Object[model.TenantSpec]{ID: "acme", Spec: model.TenantSpec{Name: "Acme", Status: model.TenantAvailable}},
		Services: []policies.Object[model.ServiceSpec]{
			{ID: "pets", Name: "pets", Spec: model.ServiceSpec{URL: "http://pets.internal", Hosts: []string{"pets.example.com"}}},
			{ID: "toys", Name: "toys", Spec: model.ServiceSpec{URL: "http://toys.internal", Hosts: []string{"toys.example.com"}}},
		},
		APIs: []policies.Object[model.APISpec]{
			{ID: "get-pet", Spec: model.APISpec{ServiceID: "pets", Method: "GET", Path: "/pets/{id}", PolicyID: "keyed", CanHavePolicy: true}},
			{ID: "del-pet", Spec: model.APISpec{ServiceID: "pets", Method: "DELETE", Path: "/pets/{id}", PolicyID: "keyed", CanHavePolicy: true}},
			{ID: "get-toy", Spec: model.APISpec{ServiceID: "toys", Method: "GET", Path: "/toys/{id}", PolicyID: "other", CanHavePolicy: true}},
		},
		Policies: []policies.Object[model.PolicySpec]{
			{ID: "keyed", Name: "keyed", Spec: model.PolicySpec{Language: model.LanguageRego, Definition: savedKeyed}},
			{ID: "other", Name: "other", Spec: model.PolicySpec{Language: model.LanguageRego, Definition: "package policy\n\nallow := true\n"}},
		},
		Gateways: []policies.Object[model.GatewaySpec]{{ID: "edge", Name: "edge", Spec: gw}},
	}
}

// logged sends the requests through an authorizer of the configuration's
// gateway edge and returns the decisions it logged, oldest first.
func logged(t testing.TB, cfg *policies.Config, tokens authzkit.Tokens, reqs []authzkit.Request) []policies.LoggedDecision {
	t.Helper()
	c, err := policies.Compile(cfg, "edge")
	if err != nil {
		t.Fatal(err)
	}
	sink := &authzkit.Events{}
	a := authzkit.New(t, c, tokens, sink)
	for _, r := range reqs {
		a.Check(t, r)
	}
	a.Flush()
	events := sink.All()
	if len(events) != len(reqs) {
		t.Fatalf("%d events logged for %d checks", len(events), len(reqs))
	}
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	out := make([]policies.LoggedDecision, len(events))
	for i, e := range events {
		out[i] = policies.LoggedDecision{GatewayID: "edge", ReceivedAt: base.Add(time.Duration(i) * time.Second), Event: e}
	}
	return out
}

// newestFirst is a ReplayRequest.Decisions over decisions (oldest first).
func newestFirst(decisions []policies.LoggedDecision) func(context.Context, func(policies.LoggedDecision) bool) error {
	return func(ctx context.Context, yield func(policies.LoggedDecision) bool) error {
		for i := len(decisions) - 1; i >= 0; i-- {
			if err := ctx.Err(); err != nil {
				return err
			}
			if !yield(decisions[i]) {
				return nil
			}
		}
		return nil
	}
}

func newReplayTester(t testing.TB, concurrency int, timeout time.Duration) *policies.Tester {
	t.Helper()
	ch, err := policies.NewChecker()
	if err != nil {
		t.Fatal(err)
	}
	return policies.NewTester(ch, concurrency, timeout)
}

func rego(src string) model.PolicySpec {
	return model.PolicySpec{Language: model.LanguageRego, Definition: src}
}

func pets(method, id, key string) authzkit.Request {
	h := map[string]string{}
	if key != "" {
		h["x-key"] = key
	}
	return authzkit.Request{Method: method, Host: "pets.example.com", Path: "/pets/" + id, Headers: h}
}

// replayOf replays draft over the decisions with the configuration of gw.
func replayOf(t *testing.T, tr *policies.Tester, gw model.GatewaySpec, draft model.PolicySpec, limit int, decisions []policies.LoggedDecision) *policies.ReplayResult {
	t.Helper()
	res, err := tr.Replay(context.Background(), policies.ReplayRequest{PolicyID: "keyed", Draft: draft, Limit: limit,
		Config:    func(context.Context) (*policies.Config, error) { return replayConfig(gw), nil },
		Decisions: newestFirst(decisions)})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestReplayCountsFlipsBothWays(t *testing.T) {
	reqs := []authzkit.Request{
		pets("GET", "1", "open-sesame"),                             // allowed, stays
		pets("DELETE", "2", "open-sesame"),                          // allowed → denied
		pets("GET", "3", "new-key"),                                 // denied → allowed
		pets("DELETE", "4", "new-key"),                              // denied, stays (401 both)
		pets("GET", "5", ""),                                        // denied, stays
		{Method: "GET", Host: "toys.example.com", Path: "/toys/1"},  // another policy's API: not replayed
		{Method: "GET", Host: "pets.example.com", Path: "/nowhere"}, // no API: not replayed
	}
	decisions := logged(t, replayConfig(model.GatewaySpec{}), nil, reqs)
	res := replayOf(t, newReplayTester(t, 0, 0), model.GatewaySpec{}, rego(draftKeyed), 0, decisions)
	if res.Scanned != 7 || res.Matched != 5 || res.Evaluated != 5 || res.Flips != (policies.ReplayFlips{AllowToDeny: 1, DenyToAllow: 1}) ||
		res.Unchanged != (policies.ReplayUnchanged{Allowed: 1, Denied: 2}) || !res.Complete || res.Limit != policies.DefaultReplayLimit {
		t.Fatalf("counts: %+v", res)
	}
	want := []policies.ReplayAPI{{APIID: "del-pet", Evaluated: 2, AllowToDeny: 1}, {APIID: "get-pet", Evaluated: 3, DenyToAllow: 1}}
	if fmt.Sprint(res.APIs) != fmt.Sprint(want) {
		t.Fatalf("apis: %+v, want %+v", res.APIs, want)
	}
	if len(res.Examples) != 2 {
		t.Fatalf("examples: %+v", res.Examples)
	}
	// Newest first: GET /pets/3 was logged after DELETE /pets/2.
	up, down := res.Examples[0], res.Examples[1]
	if up.Flip != policies.FlipDenyToAllow || up.Method != "GET" || up.Path != "/pets/3" || up.APIID != "get-pet" || up.GatewayID != "edge" ||
		up.DecisionID == "" || up.Time.IsZero() || up.Old != (policies.Verdict{HTTPStatus: 401, Reason: "no key", PolicyID: "keyed"}) ||
		up.New != (policies.Verdict{Allowed: true, HTTPStatus: 200, Reason: "allowed by policy keyed"}) || up.ReadsMasked {
		t.Errorf("deny → allow example: %+v", up)
	}
	if down.Flip != policies.FlipAllowToDeny || down.Method != "DELETE" || down.Path != "/pets/2" ||
		down.Old != (policies.Verdict{Allowed: true, HTTPStatus: 200, Reason: "allowed by policy keyed", PolicyID: "keyed"}) ||
		down.New != (policies.Verdict{HTTPStatus: 401, Reason: "no key, or a DELETE"}) {
		t.Errorf("allow → deny example: %+v", down)
	}
	if res.Newest == nil || res.Oldest == nil || res.Newest.Before(*res.Oldest) {
		t.Errorf("window %v … %v", res.Oldest, res.Newest)
	}

	// The saved policy itself, replayed, changes nothing.
	same := replayOf(t, newReplayTester(t, 0, 0), model.GatewaySpec{}, rego(savedKeyed), 0, decisions)
	if same.Evaluated != 5 || same.Flips != (policies.ReplayFlips{}) || same.Unchanged.StatusChanged != 0 || len(same.Examples) != 0 {
		t.Fatalf("the saved policy replayed: %+v", same)
	}
}

func TestReplayComparesThePolicysOwnVerdictInDryRun(t *testing.T) {
	// A gateway in dry-run lets everything through and logs the policy's
	// own verdict as policy_allowed: that is what the draft is held to.
	gw := model.GatewaySpec{DryRun: true}
	decisions := logged(t, replayConfig(gw), nil, []authzkit.Request{pets("GET", "1", "new-key"), pets("GET", "2", "open-sesame")})
	res := replayOf(t, newReplayTester(t, 0, 0), gw, rego(draftKeyed), 0, decisions)
	if res.Evaluated != 2 || res.Flips != (policies.ReplayFlips{DenyToAllow: 1}) || res.Unchanged.Allowed != 1 || len(res.Examples) != 1 {
		t.Fatalf("dry-run: %+v", res)
	}
	if ex := res.Examples[0]; ex.Old != (policies.Verdict{Reason: "no key", DryRun: true, PolicyID: "keyed"}) || !ex.New.Allowed {
		t.Fatalf("dry-run example: %+v", ex)
	}
}

func TestReplaySeesTheMaskedInputAndSaysWhenTheDraftReadsIt(t *testing.T) {
	tokens := authzkit.Tokens{"alice": {"pets:read"}}
	reqs := []authzkit.Request{
		{Method: "GET", Host: "pets.example.com", Path: "/pets/1", Headers: map[string]string{"authorization": "Bearer alice", "x-key": "open-sesame"}},
		{Method: "GET", Host: "pets.example.com", Path: "/pets/2?api_key=secret", Headers: map[string]string{"x-key": "open-sesame"}},
		{Method: "GET", Host: "pets.example.com", Path: "/pets/3", Headers: map[string]string{"x-key": "open-sesame"}},
		// Refused before any policy (401): the draft would not run.
		{Method: "GET", Host: "pets.example.com", Path: "/pets/4", Headers: map[string]string{"authorization": "Bearer mallory", "x-key": "open-sesame"}},
	}
	decisions := logged(t, replayConfig(model.GatewaySpec{}), tokens, reqs)
	tr := newReplayTester(t, 0, 0)

	// A draft that reads the Authorization header sees it erased, as the
	// log keeps it: its verdict is flagged as one on a masked field.
	readsHeader := rego(`package policy

default allow := false

allow if startswith(input.attributes.request.http.headers.authorization, "Bearer ")
`)
	res := replayOf(t, tr, model.GatewaySpec{}, readsHeader, 0, decisions)
	if res.Matched != 4 || res.Evaluated != 3 || res.Skipped != (policies.ReplaySkipped{TokenInvalid: 1}) || res.Flips.AllowToDeny != 3 {
		t.Fatalf("counts: %+v", res)
	}
	const authPtr, pathPtr = "/input/attributes/request/http/headers/authorization", "/input/attributes/request/http/path"
	if res.Masked.Events != 2 || res.Masked.Read != 1 || res.Masked.Fields[authPtr] != 1 || res.Masked.Fields[pathPtr] != 1 ||
		res.Masked.Fields["/input/parsed_query/api_key"] != 1 || fmt.Sprint(res.Masked.Reads) != "[input.attributes.request.http.headers.authorization]" {
		t.Fatalf("masked: %+v", res.Masked)
	}
	for _, ex := range res.Examples {
		if ex.ReadsMasked != (ex.Path == "/pets/1") {
			t.Errorf("%s: reads_masked %v", ex.Path, ex.ReadsMasked)
		}
	}

	// A draft that reads the token (what the gateway verified, logged as
	// such) and a masked query parameter's value.
	readsToken := rego(`package policy

default allow := false

allow if input.gatehouse.token.subject == "alice"

allow if input.parsed_query.api_key[0] == "secret"
`)
	res = replayOf(t, tr, model.GatewaySpec{}, readsToken, 0, decisions)
	if res.Evaluated != 3 || res.Unchanged.Allowed != 1 || res.Flips.AllowToDeny != 2 || res.Masked.Read != 1 ||
		fmt.Sprint(res.Masked.Reads) != "[input.parsed_query.api_key[_]]" {
		t.Fatalf("token draft: %+v", res)
	}
	for _, ex := range res.Examples {
		if ex.ReadsMasked != (ex.Path == "/pets/2?api_key=REDACTED") {
			t.Errorf("%s: reads_masked %v", ex.Path, ex.ReadsMasked)
		}
	}

	// What the draft reads is found through the library functions it
	// calls and the imports of input it names.
	for name, c := range map[string]struct {
		draft model.PolicySpec
		read  int
		reads string
	}{
		"a scope validator reads the verified token only": {model.PolicySpec{Language: model.LanguageValidators,
			Validators: []model.ValidatorConfig{{Name: "scope", Conf: map[string]any{"scopes": []any{"pets:read"}}}}}, 0, "[]"},
		"a header validator reads the request's headers": {model.PolicySpec{Language: model.LanguageValidators,
			Validators: []model.ValidatorConfig{{Name: "header", Conf: map[string]any{"name": "X-Key", "comparator": "equals", "value": "open-sesame"}}}},
			2, "[input.attributes.request.http]"},
		"an import of input": {rego("package policy\n\nimport input.attributes.request.http as h\n\nallow if h.headers.authorization\n"),
			1, "[input.attributes.request.http.headers.authorization]"},
		"a header chosen at run time": {rego("package policy\n\nallow if {\n\tsome name\n\tinput.attributes.request.http.headers[name] == \"x\"\n}\n"),
			1, "[input.attributes.request.http.headers[_]]"},
	} {
		res := replayOf(t, tr, model.GatewaySpec{}, c.draft, 0, decisions)
		if res.Masked.Read != c.read || fmt.Sprint(res.Masked.Reads) != c.reads {
			t.Errorf("%s: %+v", name, res.Masked)
		}
	}
}

func TestReplayTakesTheNewestDecisionsUpToTheLimit(t *testing.T) {
	var reqs []authzkit.Request
	for i := range 12 {
		reqs = append(reqs, pets("GET", fmt.Sprint(i), "new-key"))
		reqs = append(reqs, authzkit.Request{Method: "GET", Host: "toys.example.com", Path: "/toys/1"})
	}
	decisions := logged(t, replayConfig(model.GatewaySpec{}), nil, reqs)
	tr := newReplayTester(t, 0, 0)
	res := replayOf(t, tr, model.GatewaySpec{}, rego(draftKeyed), 3, decisions)
	if res.Limit != 3 || res.Matched != 3 || res.Evaluated != 3 || res.Scanned != 6 || !res.Complete {
		t.Fatalf("limit 3: %+v", res)
	}
	for i, ex := range res.Examples {
		if want := fmt.Sprintf("/pets/%d", 11-i); ex.Path != want {
			t.Errorf("example %d: %s, want %s (newest first)", i, ex.Path, want)
		}
	}
	res = replayOf(t, tr, model.GatewaySpec{}, rego(draftKeyed), 0, decisions)
	if res.Evaluated != 12 || len(res.Examples) != policies.MaxReplayExamples {
		t.Fatalf("all: %d evaluated, %d examples", res.Evaluated, len(res.Examples))
	}
	for _, bad := range []int{-1, policies.MaxReplayLimit + 1} {
		_, err := tr.Replay(context.Background(), policies.ReplayRequest{PolicyID: "keyed", Draft: rego(draftKeyed), Limit: bad,
			Config: func(context.Context) (*policies.Config, error) { t.Fatal("configuration loaded"); return nil, nil }})
		var l field.ErrorList
		if !errors.As(err, &l) || l[0].Field != "limit" || !strings.Contains(l[0].Message, fmt.Sprint(policies.MaxReplayLimit)) {
			t.Errorf("limit %d: %v", bad, err)
		}
	}
}

func TestReplayRefusesABadDraft(t *testing.T) {
	tr := newReplayTester(t, 0, 0)
	_, err := tr.Replay(context.Background(), policies.ReplayRequest{PolicyID: "keyed", Draft: rego("package policy\n\nallow if {\n\tinput.x ==\n}\n"),
		Config: func(context.Context) (*policies.Config, error) { t.Fatal("configuration loaded"); return nil, nil }})
	var check *policies.CheckError
	if !errors.As(err, &check) || check.Field != "definition" || check.Problems[0].Line != 5 {
		t.Fatalf("bad draft: %v", err)
	}
}

func TestReplayIsBounded(t *testing.T) {
	decisions := logged(t, replayConfig(model.GatewaySpec{}), nil, []authzkit.Request{pets("GET", "1", "open-sesame"), pets("GET", "2", "open-sesame")})

	t.Run("a draft past the gateway's policy timeout is its 503", func(t *testing.T) {
		gw := model.GatewaySpec{PolicyTimeoutMS: 1}
		slow := rego(`package policy

allow if count([x | some x in numbers.range(1, 100000000); x % 7 == 0]) > 0
`)
		res := replayOf(t, newReplayTester(t, 0, 0), gw, slow, 0, decisions)
		if res.Evaluated != 2 || res.Timeouts != 2 || res.Flips.AllowToDeny != 2 ||
			res.Examples[0].New != (policies.Verdict{HTTPStatus: 503, Reason: "policy evaluation timed out"}) {
			t.Fatalf("timeouts: %+v", res)
		}
	})

	t.Run("the replay's deadline returns what it found", func(t *testing.T) {
		tr := newReplayTester(t, 0, 20*time.Millisecond)
		res, err := tr.Replay(context.Background(), policies.ReplayRequest{PolicyID: "keyed", Draft: rego(draftKeyed),
			Config: func(context.Context) (*policies.Config, error) { return replayConfig(model.GatewaySpec{}), nil },
			Decisions: func(ctx context.Context, yield func(policies.LoggedDecision) bool) error {
				yield(decisions[0])
				<-ctx.Done() // a log that never ends
				return ctx.Err()
			}})
		if err != nil {
			t.Fatal(err)
		}
		if res.Complete || res.Stopped != policies.ReplayStoppedDeadline || res.Evaluated != 1 {
			t.Fatalf("deadline: %+v", res)
		}
	})

	t.Run("the caller's end is an error, not a result", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		_, err := newReplayTester(t, 0, 0).Replay(ctx, policies.ReplayRequest{PolicyID: "keyed", Draft: rego(draftKeyed),
			Config: func(context.Context) (*policies.Config, error) { return replayConfig(model.GatewaySpec{}), nil },
			Decisions: func(ctx context.Context, yield func(policies.LoggedDecision) bool) error {
				yield(decisions[0])
				cancel() // the client went away
				yield(decisions[1])
				return nil
			}})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("canceled: %v", err)
		}
	})

	t.Run("at most MaxReplayScan events are read", func(t *testing.T) {
		toy := logged(t, replayConfig(model.GatewaySpec{}), nil, []authzkit.Request{{Method: "GET", Host: "toys.example.com", Path: "/toys/1"}})[0]
		res, err := newReplayTester(t, 0, 0).Replay(context.Background(), policies.ReplayRequest{PolicyID: "keyed", Draft: rego(draftKeyed),
			Config: func(context.Context) (*policies.Config, error) { return replayConfig(model.GatewaySpec{}), nil },
			Decisions: func(ctx context.Context, yield func(policies.LoggedDecision) bool) error {
				for yield(toy) {
				}
				return nil
			}})
		if err != nil {
			t.Fatal(err)
		}
		if res.Complete || res.Stopped != policies.ReplayStoppedScanLimit || res.Scanned != policies.MaxReplayScan || res.Matched != 0 {
			t.Fatalf("scan limit: %+v", res)
		}
	})

	t.Run("replays share the test slots", func(t *testing.T) {
		tr := newReplayTester(t, 1, 20*time.Millisecond)
		release, err := tr.Acquire(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		defer release()
		_, err = tr.Replay(context.Background(), policies.ReplayRequest{PolicyID: "keyed", Draft: rego(draftKeyed),
			Config: func(context.Context) (*policies.Config, error) { t.Fatal("configuration loaded"); return nil, nil }})
		if !errors.Is(err, policies.ErrBusy) {
			t.Fatalf("busy: %v", err)
		}
	})

	t.Run("a log that fails is a DecisionsError", func(t *testing.T) {
		boom := errors.New("boom")
		_, err := newReplayTester(t, 0, 0).Replay(context.Background(), policies.ReplayRequest{PolicyID: "keyed", Draft: rego(draftKeyed),
			Config:    func(context.Context) (*policies.Config, error) { return replayConfig(model.GatewaySpec{}), nil },
			Decisions: func(context.Context, func(policies.LoggedDecision) bool) error { return boom }})
		var de *policies.DecisionsError
		if !errors.As(err, &de) || !errors.Is(err, boom) {
			t.Fatalf("log error: %v", err)
		}
	})
}
