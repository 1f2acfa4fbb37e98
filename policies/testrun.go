package policies

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/rego"

	"github.com/gatehouse-dev/gatehouse/internal/field"
	"github.com/gatehouse-dev/gatehouse/model"
)

// Policy tests: one policy evaluated against an input document, with its
// tenant's configuration as data.gatehouse.config, as the bundle of a
// gateway over every service would carry it (the admin API's
// POST …/policies/test and POST …/policies/{pid}/test; docs/bundles.md,
// "Limits, built-ins and deadlines").

// Codes of the field errors Run returns (field.Error.Code), besides
// field.CodeRequired for a missing input.
const (
	// CodeInvalidPolicy: the policy does not compile into the tenant's
	// configuration (it is left out of the bundle), on field definition.
	CodeInvalidPolicy = "invalid_policy"
	// CodeEvaluationError: the policy failed to evaluate on the input, on
	// field input.
	CodeEvaluationError = "evaluation_error"
	// CodeEvaluationTimeout: the policy did not finish within the test
	// deadline (Tester.Timeout), on field definition (or validators).
	CodeEvaluationTimeout = "evaluation_timeout"
)

// UnsavedPolicyID is the id an unsaved policy (TestRequest.PolicyID empty)
// is tested under.
const UnsavedPolicyID = "unsaved-policy"

// testGatewayID is the gateway a test compiles for: it serves every
// service of the tenant. Its id is none a tenant can give a gateway (ids
// start with a letter or digit), so it never stands for one of theirs.
const testGatewayID = "_policy-test"

var (
	// ErrBusy: every test slot stayed taken for the whole test deadline.
	ErrBusy = errors.New("too many policy tests are running")
	// ErrWaitEnded: the caller's context ended while the test waited for
	// a slot.
	ErrWaitEnded = errors.New("the request ended while waiting to run the policy test")
)

// CheckError is an unsaved policy that the Checker refuses: Problems as
// Checker.Check returns them, Field the field the first one concerns (its
// own, else definition or validators).
type CheckError struct {
	Field    string
	Problems []Problem
}

// Error renders every problem, after the field when the first problem
// does not name it (Rego problems carry line:column instead).
func (e *CheckError) Error() string {
	msg := (&ProblemsError{Problems: e.Problems}).Error()
	if len(e.Problems) > 0 && e.Problems[0].Field == "" {
		msg = e.Field + ": " + msg
	}
	return msg
}

// LimitExceeded reports whether the first problem is a limit (MaxValidators,
// MaxDefinitionBytes) rather than a policy that does not compile.
func (e *CheckError) LimitExceeded() bool {
	return len(e.Problems) > 0 && e.Problems[0].Code == "limit_exceeded"
}

// ConfigError is a failure of TestRequest.Config, as it returned it (Err).
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string {
	return "policy test: loading the configuration: " + e.Err.Error()
}

// Unwrap is the error of TestRequest.Config.
func (e *ConfigError) Unwrap() error { return e.Err }

// TestRequest is one policy test.
type TestRequest struct {
	// PolicyID is the saved policy tested (Policy is its stored version,
	// checked when it was saved; it replaces the one in the
	// configuration). Empty for an unsaved policy: Policy is checked first
	// and tested as UnsavedPolicyID.
	PolicyID string
	Policy   model.PolicySpec
	// Input is the input document (required). It is canonicalised in
	// place, as the authorizer does.
	Input map[string]any
	// Config loads the tenant's configuration. It is called once the test
	// holds a slot, and Run changes what it returns.
	Config func(ctx context.Context) (*Config, error)
}

// TestResult is the decision of the policy plus an explanation.
type TestResult struct {
	Allowed bool           `json:"allowed"`
	Result  map[string]any `json:"result"`
	// Request is the canonical request the policy saw (when the input has
	// a request path).
	Request     *RequestView    `json:"request,omitempty"`
	Explanation TestExplanation `json:"explanation"`
}

// RequestView is what a gateway makes of the test input's request: the
// canonical path and query it would decide on and forward, the owned
// headers it removed, or why it refuses the path.
type RequestView struct {
	Path           string   `json:"path"`
	Query          string   `json:"query"`
	RemovedHeaders []string `json:"removed_headers"`
	RefusedStatus  int      `json:"refused_status,omitempty"`
	RefusedReason  string   `json:"refused_reason,omitempty"`
}

// TestExplanation says why the policy decided as it did.
type TestExplanation struct {
	// Validators says, for a validators policy, which passed.
	Validators []ValidatorOutcome `json:"validators,omitempty"`
	// FailedExpressions are the Rego expressions that evaluated false
	// (file:line: expression), from OPA's trace, at most MaxExplainLines
	// lines and MaxExplainBytes bytes.
	FailedExpressions []string `json:"failed_expressions"`
	// Truncated says failed_expressions is not the whole list (the bounds,
	// or the deadline, were reached).
	Truncated bool `json:"truncated"`
	// Module is the Rego the policy compiles to (for validators, the
	// generated translation).
	Module string `json:"module"`
}

// ValidatorOutcome is whether one validator of a validators policy passed.
type ValidatorOutcome struct {
	Index  int    `json:"index"`
	Name   string `json:"name"`
	Passed bool   `json:"passed"`
}

// Tester runs policy tests, a bounded number at once, each under a
// deadline. It is safe for concurrent use.
type Tester struct {
	checker *Checker
	slots   chan struct{}
	timeout time.Duration
}

// NewTester makes a Tester that checks unsaved policies with checker and
// compiles with its allowed built-ins. At most concurrency tests run at
// once (<= 0: GOMAXPROCS, at least 2); timeout (<= 0: DefaultTestTimeout)
// bounds both the wait for a turn and the evaluation (the decision and its
// explanation together).
func NewTester(checker *Checker, concurrency int, timeout time.Duration) *Tester {
	if concurrency <= 0 {
		concurrency = max(2, runtime.GOMAXPROCS(0))
	}
	if timeout <= 0 {
		timeout = DefaultTestTimeout
	}
	return &Tester{checker: checker, slots: make(chan struct{}, concurrency), timeout: timeout}
}

// Timeout is the deadline of one test.
func (t *Tester) Timeout() time.Duration { return t.timeout }

// Running is how many tests hold a slot.
func (t *Tester) Running() int { return len(t.slots) }

// Check is the *CheckError of an unsaved policy (nil when the Checker
// accepts it). It, Acquire and Prepare let other runs (Tester.Replay,
// replay.go) share the tests' check, slots and compile path.
func (t *Tester) Check(id string, spec *model.PolicySpec) error { return t.check(id, spec) }

// Acquire waits, at most the test deadline, for a test slot (ErrBusy,
// ErrWaitEnded); release frees it.
func (t *Tester) Acquire(ctx context.Context) (release func(), err error) { return t.acquire(ctx) }

// Prepare compiles cfg, as Run does, with spec in place of policy id and
// prepares the policy's query (a field.ErrorList for a policy left out of
// the bundle).
func (t *Tester) Prepare(ctx context.Context, cfg *Config, id string, spec model.PolicySpec) (rego.PreparedEvalQuery, *Compiled, error) {
	return t.prepare(ctx, cfg, id, spec)
}

// Run tests one policy. Its errors: a *CheckError (an unsaved policy the
// Checker refuses), a field.ErrorList (a missing input, CodeInvalidPolicy,
// CodeEvaluationError, CodeEvaluationTimeout), ErrBusy, ErrWaitEnded, a
// *ConfigError; anything else is a fault.
func (t *Tester) Run(ctx context.Context, req TestRequest) (*TestResult, error) {
	id, spec := req.PolicyID, req.Policy
	if id == "" {
		id = UnsavedPolicyID
		if err := t.check(id, &spec); err != nil {
			return nil, err
		}
	}
	if req.Input == nil {
		return nil, field.ErrorList{field.Required(field.NewPath("input"))}
	}
	release, err := t.acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	cfg, err := req.Config(ctx)
	if err != nil {
		return nil, &ConfigError{Err: err}
	}
	pq, compiled, err := t.prepare(ctx, cfg, id, spec)
	if err != nil {
		return nil, err
	}
	module, _ := PolicyModule(id, &spec)
	// The policy sees the request as a gateway would hand it over: the
	// canonical path, without the headers the gateway owns. A path the
	// gateway refuses never reaches the policy.
	view, refusal := canonicalTestInput(req.Input, compiled.OwnedHeaders)
	if refusal != nil {
		return &TestResult{Result: refusal, Request: view, Explanation: TestExplanation{
			FailedExpressions: []string{"the gateway refuses the request path before any policy runs: " + refusal["reason"].(string)},
			Module:            module}}, nil
	}
	evalCtx, cancel := WithTimeout(ctx, t.timeout)
	defer cancel()
	result, err := EvalObject(evalCtx, pq, req.Input)
	if err != nil {
		if TimedOut(evalCtx) {
			return nil, field.ErrorList{fieldErr(policyField(&spec), CodeEvaluationTimeout,
				fmt.Sprintf("the policy did not finish evaluating within %s (the policy test deadline); a gateway would deny such a request", t.timeout))}
		}
		return nil, field.ErrorList{fieldErr(field.NewPath("input"), CodeEvaluationError, "the policy failed to evaluate: "+err.Error())}
	}
	failed, truncated, err := Explain(evalCtx, pq, req.Input)
	switch {
	case err != nil && TimedOut(evalCtx):
		truncated = true // the lines found before the deadline
	case err != nil:
		failed, truncated = []string{"explanation unavailable: " + err.Error()}, false
	}
	if failed == nil {
		failed = []string{}
	}
	out := &TestResult{Allowed: result["allow"] == true, Result: result, Request: view,
		Explanation: TestExplanation{FailedExpressions: failed, Truncated: truncated, Module: module}}
	for i, v := range spec.Validators {
		out.Explanation.Validators = append(out.Explanation.Validators,
			ValidatorOutcome{Index: i, Name: v.Name, Passed: result[fmt.Sprintf("check_%d", i)] == true})
	}
	return out, nil
}

// check is the CheckError of a policy the Checker refuses (nil when it
// accepts it).
func (t *Tester) check(id string, spec *model.PolicySpec) error {
	problems := t.checker.Check(id, spec)
	if len(problems) == 0 {
		return nil
	}
	name := policyField(spec).String()
	if problems[0].Field != "" {
		name = problems[0].Field
	}
	return &CheckError{Field: name, Problems: problems}
}

// acquire waits, at most the test deadline, for a slot; release frees it.
func (t *Tester) acquire(ctx context.Context) (release func(), err error) {
	wait := time.NewTimer(t.timeout)
	defer wait.Stop()
	select {
	case t.slots <- struct{}{}:
		return func() { <-t.slots }, nil
	case <-wait.C:
		return nil, ErrBusy
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %w", ErrWaitEnded, context.Cause(ctx))
	}
}

// prepare compiles cfg for a gateway over every service, with spec in
// place of the saved version of policy id, and prepares the policy's
// query.
func (t *Tester) prepare(ctx context.Context, cfg *Config, id string, spec model.PolicySpec) (pq rego.PreparedEvalQuery, compiled *Compiled, err error) {
	cfg.Gateways = append(cfg.Gateways, Object[model.GatewaySpec]{ID: testGatewayID, Spec: model.GatewaySpec{Type: model.GatewayEnvoy}})
	kept := cfg.Policies[:0]
	for _, p := range cfg.Policies {
		if p.ID != id {
			kept = append(kept, p)
		}
	}
	cfg.Policies = append(kept, Object[model.PolicySpec]{ID: id, Name: id, Spec: spec})
	cfg.AllowedBuiltins = t.checker.AllowedBuiltins()
	compiled, err = Compile(cfg, testGatewayID)
	if err != nil {
		return pq, nil, fmt.Errorf("policy test: compile: %w", err)
	}
	if why, skipped := compiled.Skipped[id]; skipped {
		return pq, nil, field.ErrorList{fieldErr(field.NewPath("definition"), CodeInvalidPolicy, why)}
	}
	// Only the policy under test and the policies it refers to are
	// compiled (the data stays whole): OPA's compilation of a large tenant
	// costs far more than one policy's.
	needed := map[string]bool{}
	for pid := range PolicyClosure(cfg.Policies, id) {
		needed[Root+"/policies/"+PolicyPackage(pid)+".rego"] = true
	}
	modules := compiled.Modules[:0:0]
	for _, m := range compiled.Modules {
		if needed[m.Path] || !strings.HasPrefix(m.Path, Root+"/policies/") {
			modules = append(modules, m)
		}
	}
	eng, err := NewEngine(ctx, modules, compiled.Data)
	if err != nil {
		return pq, nil, fmt.Errorf("policy test: engine: %w", err)
	}
	pq, err = eng.Prepare(ctx, PolicyPackagePrefix+PolicyPackage(id))
	if err != nil {
		return pq, nil, fmt.Errorf("policy test: %w", err)
	}
	return pq, compiled, nil
}

// policyField is the field a policy's Rego comes from: definition, or
// validators for a validators policy.
func policyField(spec *model.PolicySpec) *field.Path {
	if spec.Language == model.LanguageValidators {
		return field.NewPath("validators")
	}
	return field.NewPath("definition")
}

// fieldErr is a field error with one of this package's codes.
func fieldErr(p *field.Path, code, msg string) *field.Error {
	return &field.Error{Field: p.String(), Code: code, Message: msg}
}

// canonicalTestInput canonicalises a test input in place, as the
// authorizer does (CanonicalizeInput), when it has a request path; for a
// refused path it returns the refusal as the policy result.
func canonicalTestInput(input map[string]any, owned []string) (*RequestView, map[string]any) {
	attrs, _ := input["attributes"].(map[string]any)
	req, _ := attrs["request"].(map[string]any)
	h, _ := req["http"].(map[string]any)
	if _, ok := h["path"].(string); !ok {
		return nil, nil
	}
	set := map[string]bool{}
	for _, h := range owned {
		set[h] = true
	}
	canon := CanonicalizeInput(input, set)
	view := &RequestView{Path: canon.Path, Query: canon.RawQuery, RemovedHeaders: canon.OwnedPresent}
	if view.RemovedHeaders == nil {
		view.RemovedHeaders = []string{}
	}
	if e := canon.Refused; e != nil {
		view.Path, view.Query, view.RefusedStatus, view.RefusedReason = "", "", e.Status, e.Reason
		return view, map[string]any{"allow": false, "http_status": e.Status, "reason": e.Reason}
	}
	return view, nil
}
