package policies

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/field"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/routing/pathcorpus"
)

// keyedPolicy allows requests that carry the key.
const keyedPolicy = `package policy

default allow := false

allow if input.attributes.request.http.headers["x-key"] == "open-sesame"

reason := "no key" if not allow
`

// newTester is a Tester with the default built-ins and a test deadline
// long enough for a loaded machine (the deadline tests set their own).
func newTester(t *testing.T, concurrency int, timeout time.Duration, allowed ...string) *Tester {
	t.Helper()
	ch, err := NewChecker(allowed...)
	if err != nil {
		t.Fatal(err)
	}
	return NewTester(ch, concurrency, timeout)
}

// fromConfig is a TestRequest.Config that returns a new configuration
// from newConfig on each call (Run changes the one it gets).
func fromConfig(newConfig func() *Config) func(context.Context) (*Config, error) {
	return func(context.Context) (*Config, error) { return newConfig(), nil }
}

func keyedInput(key string) map[string]any {
	return map[string]any{"attributes": map[string]any{"request": map[string]any{"http": map[string]any{
		"method": "GET", "path": "/x", "headers": map[string]any{"x-key": key}}}}}
}

// fieldErrorOf is the single field error of err, or fails the test.
func fieldErrorOf(t *testing.T, err error) *field.Error {
	t.Helper()
	var l field.ErrorList
	if !errors.As(err, &l) || len(l) != 1 {
		t.Fatalf("want one field error, got %v", err)
	}
	return l[0]
}

func TestTesterDecidesAndExplains(t *testing.T) {
	tr := newTester(t, 0, 0)
	ctx := context.Background()
	// A saved policy is tested as given, in place of its stored version.
	saved := TestRequest{PolicyID: "pets-rego", Policy: *regoSpec(keyedPolicy), Config: fromConfig(testConfig)}
	saved.Input = keyedInput("open-sesame")
	ok, err := tr.Run(ctx, saved)
	if err != nil {
		t.Fatal(err)
	}
	if !ok.Allowed || ok.Result["allow"] != true || ok.Request == nil || ok.Request.Path != "/x" ||
		!strings.Contains(ok.Explanation.Module, PolicyPackage("pets-rego")) {
		t.Fatalf("allowed input: %+v", ok)
	}
	saved.Input = keyedInput("wrong")
	no, err := tr.Run(ctx, saved)
	if err != nil {
		t.Fatal(err)
	}
	if no.Allowed || no.Result["reason"] != "no key" || no.Explanation.Truncated || len(no.Explanation.FailedExpressions) == 0 ||
		!strings.Contains(no.Explanation.FailedExpressions[0], `input.attributes.request.http.headers["x-key"] == "open-sesame"`) {
		t.Fatalf("denied input: %+v", no)
	}

	// An unsaved validators policy: per-validator outcome and the
	// translation as the module.
	res, err := tr.Run(ctx, TestRequest{Input: keyedInput("k"), Config: fromConfig(testConfig), Policy: model.PolicySpec{
		Language: model.LanguageValidators, Validators: []model.ValidatorConfig{
			{Name: "header", Conf: map[string]any{"name": "x-key", "value": "k"}},
			{Name: "method", Conf: map[string]any{"value": "POST"}},
		}}})
	if err != nil {
		t.Fatal(err)
	}
	want := []ValidatorOutcome{{0, "header", true}, {1, "method", false}}
	if res.Allowed || fmt.Sprint(res.Explanation.Validators) != fmt.Sprint(want) ||
		!strings.Contains(res.Explanation.Module, `v.method("equals", "POST")`) || !strings.Contains(res.Explanation.Module, PolicyPackage(UnsavedPolicyID)) {
		t.Fatalf("validators: %+v", res)
	}
	// No request path: nothing canonical to show.
	res, err = tr.Run(ctx, TestRequest{Input: map[string]any{}, Policy: *regoSpec(keyedPolicy), Config: fromConfig(testConfig)})
	if err != nil || res.Request != nil || res.Allowed {
		t.Fatalf("input without a path: %+v %v", res, err)
	}
}

func TestTesterRefusesBadRequests(t *testing.T) {
	tr := newTester(t, 0, 0)
	ctx := context.Background()
	run := func(req TestRequest) error {
		t.Helper()
		if req.Config == nil {
			req.Config = fromConfig(testConfig)
		}
		if req.Input == nil {
			req.Input = keyedInput("k")
		}
		res, err := tr.Run(ctx, req)
		if err == nil {
			t.Fatalf("%+v: no error, result %+v", req.Policy, res)
		}
		return err
	}
	// Unsaved policies the Checker refuses.
	for _, c := range []struct {
		spec  model.PolicySpec
		field string
		limit bool
		msg   string
	}{
		{*regoSpec("package policy\n\nallow if {\n\tx == 1\n}\n"), "definition", false, "definition: 4:2: var x is unsafe"},
		{model.PolicySpec{Language: model.LanguageValidators, Validators: []model.ValidatorConfig{{Name: "telepathy"}}}, "validators[0].name", false,
			`validators[0].name: unknown validator "telepathy"`},
		{model.PolicySpec{Language: model.LanguageValidators, Validators: make([]model.ValidatorConfig, MaxValidators+1)}, "validators", true,
			"validators: a policy may have at most"},
		{*regoSpec("package policy\n\nallow if opa.runtime().env.X == \"1\"\n"), "definition", false, "definition: 3:10: opa.runtime is not available"},
	} {
		err := run(TestRequest{Policy: c.spec})
		var ce *CheckError
		if !errors.As(err, &ce) || ce.Field != c.field || ce.LimitExceeded() != c.limit || len(ce.Problems) == 0 || !strings.HasPrefix(ce.Error(), c.msg) {
			t.Errorf("%s: %v (%+v)", c.field, err, ce)
		}
	}
	var ce *CheckError
	if err := run(TestRequest{Policy: *regoSpec("package policy\nallow if {")}); !errors.As(err, &ce) || ce.Problems[0].Line != 2 || ce.Problems[0].Column == 0 {
		t.Errorf("parse error: %v", err)
	}

	// No input: after the check, before anything runs.
	_, err := tr.Run(ctx, TestRequest{Policy: *regoSpec(keyedPolicy), Config: func(context.Context) (*Config, error) {
		t.Fatal("the configuration was loaded for a test without input")
		return nil, nil
	}})
	if e := fieldErrorOf(t, err); e.Field != "input" || e.Code != field.CodeRequired {
		t.Errorf("no input: %v", e)
	}
	if err := run(TestRequest{Policy: model.PolicySpec{Language: model.LanguageValidators}}); !errors.As(err, &ce) {
		t.Errorf("a validators policy without validators: %v", err)
	}

	// A saved policy that no longer compiles (a built-in denied since it
	// was saved) is named as it is left out of bundles.
	netPolicy := *regoSpec("package policy\n\ndefault allow := false\n\nallow if {\n\tinput.never\n\thttp.send({\"method\": \"get\", \"url\": \"http://x\"}).status_code == 200\n}\n")
	e := fieldErrorOf(t, run(TestRequest{PolicyID: "net", Policy: netPolicy}))
	if e.Field != "definition" || e.Code != CodeInvalidPolicy || !strings.Contains(e.Message, "http.send is not available") {
		t.Errorf("skipped policy: %v", e)
	}
	// The Tester compiles with its Checker's allowed built-ins.
	allowing := newTester(t, 0, 0, "http.send")
	if res, err := allowing.Run(ctx, TestRequest{PolicyID: "net", Policy: netPolicy, Input: map[string]any{}, Config: fromConfig(testConfig)}); err != nil || res.Allowed {
		t.Errorf("allowed http.send: %+v %v", res, err)
	}

	// A policy that fails on the input.
	conflict := *regoSpec("package policy\n\nallow = x if { x := input.a }\nallow = y if { y := input.b }\n")
	e = fieldErrorOf(t, run(TestRequest{Policy: conflict, Input: map[string]any{"a": true, "b": false}}))
	if e.Field != "input" || e.Code != CodeEvaluationError || !strings.HasPrefix(e.Message, "the policy failed to evaluate: ") ||
		!strings.Contains(e.Message, "conflicting values") {
		t.Errorf("evaluation error: %v", e)
	}

	// The configuration's own failure comes back as it is.
	gone := errors.New("tenant gone")
	_, err = tr.Run(ctx, TestRequest{Policy: *regoSpec(keyedPolicy), Input: map[string]any{},
		Config: func(context.Context) (*Config, error) { return nil, gone }})
	var cfgErr *ConfigError
	if !errors.As(err, &cfgErr) || cfgErr.Err != gone || !errors.Is(err, gone) {
		t.Errorf("configuration error: %v", err)
	}
	if n := tr.Running(); n != 0 {
		t.Errorf("%d slots still held", n)
	}
}

// TestTesterCompilesWhatThePolicyNeeds: a stored policy that OPA cannot
// compile (it was never checked) does not fail the test of another that
// neither is nor refers to it; the policies referred to are compiled.
func TestTesterCompilesWhatThePolicyNeeds(t *testing.T) {
	tr := newTester(t, 0, 0)
	cfg := func() *Config {
		c := testConfig()
		c.Policies = append(c.Policies,
			Object[model.PolicySpec]{ID: "base", Name: "base", Spec: *regoSpec(keyedPolicy)},
			Object[model.PolicySpec]{ID: "broken", Name: "broken", Spec: *regoSpec("package policy\n\nallow if not_a_function(1)\n")})
		return c
	}
	calling := "package policy\n\ndefault allow := false\n\nallow if data.gatehouse.policies." + PolicyPackage("base") + ".allow\n"
	for _, req := range []TestRequest{
		{Policy: *regoSpec(calling)},
		{PolicyID: "base", Policy: *regoSpec(keyedPolicy)},
	} {
		req.Input, req.Config = keyedInput("open-sesame"), fromConfig(cfg)
		res, err := tr.Run(context.Background(), req)
		if err != nil || !res.Allowed {
			t.Fatalf("%q: %+v %v", req.PolicyID, res, err)
		}
	}
}

// TestTesterSeesTheCanonicalRequest runs every path class of
// routing/pathcorpus through the Tester: the policy sees the canonical
// path (and the query as sent), never an owned header, and a refused path
// never reaches the policy — as in the authorizer.
func TestTesterSeesTheCanonicalRequest(t *testing.T) {
	tr := newTester(t, 0, 0)
	echo := *regoSpec(`package policy

default allow := false

allow if not input.attributes.request.http.headers["x-gatehouse-user"]

reason := input.attributes.request.http.path

headers := {"x-seen": concat("/", input.parsed_path)}
`)
	for _, c := range pathcorpus.Cases() {
		t.Run(c.Class, func(t *testing.T) {
			input := map[string]any{"attributes": map[string]any{"request": map[string]any{"http": map[string]any{
				"method": "GET", "path": c.Target, "headers": map[string]any{"x-gatehouse-user": "root", "X-Seen": "forged"}}}}}
			res, err := tr.Run(context.Background(), TestRequest{Policy: echo, Input: input, Config: fromConfig(testConfig)})
			if err != nil {
				t.Fatal(err)
			}
			if res.Request == nil {
				t.Fatalf("no request view: %+v", res)
			}
			if c.Status != 0 {
				if res.Allowed || res.Result["http_status"] != c.Status || res.Request.RefusedStatus != c.Status || res.Request.RefusedReason == "" ||
					res.Request.Path != "" || len(res.Explanation.FailedExpressions) != 1 ||
					!strings.HasPrefix(res.Explanation.FailedExpressions[0], "the gateway refuses the request path before any policy runs: ") ||
					res.Explanation.Module == "" {
					t.Fatalf("refused path %.80q: %+v", c.Target, res)
				}
				return
			}
			want := c.Canonical
			if _, q, ok := strings.Cut(c.Target, "?"); ok {
				want += "?" + q
			}
			if !res.Allowed || res.Result["reason"] != want || res.Request.Path != c.Canonical || res.Request.RefusedStatus != 0 ||
				fmt.Sprint(res.Request.RemovedHeaders) != "[x-gatehouse-user x-seen]" {
				t.Fatalf("%.80q: allowed %v, policy saw %.100v, request %+v", c.Target, res.Allowed, res.Result["reason"], res.Request)
			}
		})
	}
}

func TestTesterDeadlineAndBoundedExplanation(t *testing.T) {
	tr := newTester(t, 0, 100*time.Millisecond)
	if tr.Timeout() != 100*time.Millisecond || newTester(t, 0, 0).Timeout() != DefaultTestTimeout {
		t.Fatalf("timeouts %s, default %s", tr.Timeout(), newTester(t, 0, 0).Timeout())
	}
	heavy := func() *Config {
		c := testConfig()
		c.Policies = append(c.Policies, Object[model.PolicySpec]{ID: "heavy", Name: "heavy", Spec: *regoSpec(heavyPolicy)})
		return c
	}
	for _, req := range []TestRequest{
		{PolicyID: "heavy", Policy: *regoSpec(heavyPolicy)},
		{Policy: *regoSpec(heavyPolicy)},
	} {
		req.Input, req.Config = map[string]any{}, fromConfig(heavy)
		var err error
		withinReason(t, func() { _, err = tr.Run(context.Background(), req) })
		e := fieldErrorOf(t, err)
		if e.Field != "definition" || e.Code != CodeEvaluationTimeout ||
			!strings.HasPrefix(e.Error(), "definition: the policy did not finish evaluating within 100ms (the policy test deadline)") {
			t.Errorf("%q: %v", req.PolicyID, e)
		}
	}

	// Many failing expressions: the explanation stops at its bound, marked.
	var b strings.Builder
	b.WriteString("package policy\n\ndefault allow := false\n\n")
	for i := range 3 * MaxExplainLines {
		fmt.Fprintf(&b, "allow if input.n == %d\n", i)
	}
	long := newTester(t, 0, 0)
	res, err := long.Run(context.Background(), TestRequest{Policy: *regoSpec(b.String()), Input: map[string]any{"n": -1}, Config: fromConfig(testConfig)})
	if err != nil {
		t.Fatal(err)
	}
	if res.Allowed || !res.Explanation.Truncated || len(res.Explanation.FailedExpressions) != MaxExplainLines {
		t.Fatalf("explanation: truncated %v, %d lines", res.Explanation.Truncated, len(res.Explanation.FailedExpressions))
	}
	res, err = long.Run(context.Background(), TestRequest{Policy: *regoSpec(keyedPolicy), Input: map[string]any{}, Config: fromConfig(testConfig)})
	if err != nil || res.Explanation.Truncated || res.Explanation.FailedExpressions == nil {
		t.Fatalf("small explanation: %+v %v", res, err)
	}
}

// TestTesterBoundsConcurrentTests: with every slot taken, a test waits the
// deadline and gets ErrBusy, or ErrWaitEnded when its caller gives up
// first; the slot is free again once the test that held it ends.
func TestTesterBoundsConcurrentTests(t *testing.T) {
	tr := newTester(t, 1, time.Second)
	held, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := tr.Run(context.Background(), TestRequest{Policy: *regoSpec(keyedPolicy), Input: map[string]any{},
			Config: func(context.Context) (*Config, error) {
				close(held) // the slot is held while the configuration loads
				<-release
				return testConfig(), nil
			}})
		done <- err
	}()
	<-held
	if n := tr.Running(); n != 1 {
		t.Errorf("running: %d", n)
	}
	noConfig := func(context.Context) (*Config, error) {
		t.Error("a test without a slot loaded the configuration")
		return nil, errors.New("no slot")
	}
	if _, err := tr.Run(context.Background(), TestRequest{Policy: *regoSpec(keyedPolicy), Input: map[string]any{}, Config: noConfig}); !errors.Is(err, ErrBusy) {
		t.Errorf("all slots taken: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := tr.Run(ctx, TestRequest{Policy: *regoSpec(keyedPolicy), Input: map[string]any{}, Config: noConfig}); !errors.Is(err, ErrWaitEnded) || !errors.Is(err, context.Canceled) {
		t.Errorf("the caller gave up: %v", err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("the test holding the slot: %v", err)
	}
	if n := tr.Running(); n != 0 {
		t.Errorf("running after the test: %d", n)
	}
	if _, err := tr.Run(context.Background(), TestRequest{Policy: *regoSpec(keyedPolicy), Input: map[string]any{}, Config: fromConfig(testConfig)}); err != nil {
		t.Errorf("after the slot was freed: %v", err)
	}
}
