package policies

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/tester"
	"github.com/open-policy-agent/opa/v1/topdown"

	"github.com/gatehouse-dev/gatehouse/model"
)

// A policy's tests module (model.PolicySpec.Tests) is Rego with test_
// rules, as `opa test` runs them: it is in package policy (beside the
// policy's rules) or policy_test (reading them as data.policy…), and sees
// the policy as its author wrote it, at data.policy, with the library,
// the policies it refers to and the tenant's data.gatehouse.config; input
// comes from fixtures (test_x if allow with input as {…}). The tests run
// when the policy is saved, under the policy tests' slots and deadline,
// and from `gatehouse policy test`. They are never part of a bundle: the
// compiler does not read them, so no request can evaluate them.

// Packages of a tests module.
const (
	// TestsPackage is the package of a tests module that reads the
	// policy as data.policy.
	TestsPackage = UserPackage + "_test"
	// testsFile is the file name problems in a tests module are
	// reported under.
	testsFile = "tests.rego"
)

// Outcomes of a test.
const (
	TestPass  = "pass"
	TestFail  = "fail"
	TestError = "error"
	TestSkip  = "skip"
)

// Codes of the tests module's problems (Problem.Code; Field "tests").
const (
	// CodeTestFailed: a test_ rule that is false or undefined.
	CodeTestFailed = "test_failed"
	// CodeTestError: a test_ rule whose evaluation failed (a conflict,
	// a built-in error, the deadline).
	CodeTestError = "test_error"
)

// testPackages are the packages a tests module may declare.
var testPackages = map[string]bool{"data." + UserPackage: true, "data." + TestsPackage: true}

// testName is the name of a test rule (test_x, todo_test_x; "" for any
// other rule).
func testName(r *ast.Rule) string {
	ref := r.Head.Ref()
	if len(ref) == 0 {
		return ""
	}
	var n string
	switch v := ref[0].Value.(type) {
	case ast.Var:
		n = string(v)
	case ast.String:
		n = string(v)
	}
	if strings.HasPrefix(n, tester.TestPrefix) || strings.HasPrefix(n, tester.SkipTestPrefix) {
		return n
	}
	return ""
}

// testRulesIn refuses test rules in a policy's definition: the gateway
// evaluates the policy's whole package on every request, test rules
// included; they belong in the tests module.
func testRulesIn(m *ast.Module) []Problem {
	var out []Problem
	for _, r := range m.Rules {
		if n := testName(r); n != "" {
			p := Problem{Code: "rego_test_in_definition",
				Message: fmt.Sprintf("%s: test rules belong in the policy's tests, not its definition (which every request evaluates)", n)}
			if r.Location != nil {
				p.Line, p.Column = r.Location.Row, r.Location.Col
			}
			out = append(out, p)
		}
	}
	return out
}

// tenantPolicies is the tenant a draft policy is checked in: its policies,
// the draft in place of its stored version.
type tenantPolicies struct {
	all   []Object[model.PolicySpec]
	names *policyNames
	graph *policyGraph
}

func newTenantPolicies(id string, spec *model.PolicySpec, tenant []Object[model.PolicySpec]) *tenantPolicies {
	all := make([]Object[model.PolicySpec], 0, len(tenant)+1)
	for _, p := range tenant {
		if p.ID != id {
			all = append(all, p)
		}
	}
	all = append(all, Object[model.PolicySpec]{ID: id, Name: id, Spec: *spec})
	return &tenantPolicies{all: all, names: namesOf(all), graph: newPolicyGraph(all, true)}
}

// needed are the policies the references refs need: those they name and,
// transitively, those these refer to (every policy when one reference may
// reach any).
func (tp *tenantPolicies) needed(refs []policyRef) map[string]bool {
	ids, dynamic := referencedPolicies(refs, tp.names)
	need := map[string]bool{}
	if dynamic {
		for id := range tp.names.ids {
			need[id] = true
		}
		return need
	}
	for _, id := range ids {
		for pid := range tp.graph.closure(id) {
			need[pid] = true
		}
	}
	return need
}

// modules adds the bundle modules of the policies ids to mods (those that
// do not compile into bundles are left out, as bundles leave them).
func (tp *tenantPolicies) modules(mods map[string]*ast.Module, ids map[string]bool) {
	for i := range tp.all {
		p := &tp.all[i]
		if !ids[p.ID] {
			continue
		}
		src, _, err := policyModule(p.ID, &p.Spec, tp.names)
		if err != nil {
			continue
		}
		path := Root + "/policies/" + PolicyPackage(p.ID) + ".rego"
		if m, err := ast.ParseModuleWithOpts(path, src, parserOptions); err == nil {
			mods[path] = m
		}
	}
}

// testSetup is what a policy's tests compile with (the library aside).
type testSetup struct {
	modules map[string]*ast.Module
	maps    map[string]*sourceMap
	tests   *ast.Module // the tests module, as parsed
}

// testSetup parses the tests module and assembles its modules: the policy
// at data.policy, the tests, and (tp set) the policies either refers to.
func (c *Checker) testSetup(policyID string, spec *model.PolicySpec, tp *tenantPolicies) (*testSetup, []Problem) {
	if len(spec.Tests) > MaxTestsBytes {
		return nil, []Problem{{Field: "tests", Code: "limit_exceeded",
			Message: fmt.Sprintf("must be at most %d KiB (these are %d bytes)", MaxTestsBytes>>10, len(spec.Tests))}}
	}
	tm, err := ast.ParseModuleWithOpts(testsFile, spec.Tests, parserOptions)
	if err != nil {
		return nil, inField("tests", compileProblems(err, map[string]*sourceMap{testsFile: nil}))
	}
	if !testPackages[tm.Package.Path.String()] {
		p := Problem{Field: "tests", Code: "rego_package_error", Message: fmt.Sprintf("the package of the tests must be %q or %q, not %q",
			UserPackage, TestsPackage, strings.TrimPrefix(tm.Package.Path.String(), "data."))}
		if tm.Package.Location != nil {
			p.Line, p.Column = tm.Package.Location.Row, tm.Package.Location.Col
		}
		return nil, []Problem{p}
	}
	hasTests := false
	for _, r := range tm.Rules {
		hasTests = hasTests || testName(r) != ""
	}
	if !hasTests {
		return nil, []Problem{{Field: "tests", Line: tm.Package.Location.Row, Column: tm.Package.Location.Col, Code: "rego_tests_missing",
			Message: "the tests define no test rule (test_… if …)"}}
	}
	if problems := deniedCalls(tm, c.allowed); len(problems) > 0 {
		return nil, inField("tests", problems)
	}
	var names *policyNames
	if tp != nil {
		names = tp.names
	}
	testsRefs := policyRefs(tm)
	if tp != nil {
		if problems := unknownRefs(testsRefs, names); len(problems) > 0 {
			return nil, inField("tests", problems)
		}
	}
	s := &testSetup{modules: map[string]*ast.Module{}, maps: map[string]*sourceMap{}, tests: tm}
	src, pm, sm, err := policyModuleAt(policyID, spec, UserPackage, names)
	if err != nil {
		return nil, astProblems(err)
	}
	if s.modules[policyFile], err = ast.ParseModuleWithOpts(policyFile, src, parserOptions); err != nil {
		return nil, astProblems(err)
	}
	s.maps[policyFile] = sm
	testsSrc, tsm, err := rewriteRego(spec.Tests, tm, "", names)
	if err != nil {
		return nil, inField("tests", astProblems(err))
	}
	if s.modules[testsFile], err = ast.ParseModuleWithOpts(testsFile, testsSrc, parserOptions); err != nil {
		return nil, inField("tests", astProblems(err))
	}
	s.maps[testsFile] = tsm
	if tp != nil {
		refs := testsRefs
		if pm != nil {
			refs = append(refs, policyRefs(pm)...)
		}
		tp.modules(s.modules, tp.needed(refs))
	}
	return s, nil
}

// inField puts problems of a module other than the definition in their
// field.
func inField(name string, problems []Problem) []Problem {
	for i := range problems {
		problems[i].Field = name
	}
	return problems
}

// checkTests compiles the tests module (none: no problem).
func (c *Checker) checkTests(policyID string, spec *model.PolicySpec, tp *tenantPolicies) []Problem {
	if spec.Tests == "" {
		return nil
	}
	setup, problems := c.testSetup(policyID, spec, tp)
	if len(problems) > 0 {
		return problems
	}
	if _, err := c.compileParsed(setup.modules); err != nil {
		return compileProblems(err, setup.maps)
	}
	return nil
}

// TestsRequest runs the tests module of one policy.
type TestsRequest struct {
	// PolicyID is the policy's id (empty: UnsavedPolicyID); Policy is the
	// version tested, in place of the one in the configuration. It should
	// be one the Checker accepts (CheckInTenant).
	PolicyID string
	Policy   model.PolicySpec
	// Config loads the tenant's configuration (data.gatehouse.config and
	// the policies the tests may use). It is called once the run holds a
	// slot, and RunTests changes what it returns.
	Config func(ctx context.Context) (*Config, error)
	// Timeout, when positive and shorter than the Tester's, bounds this
	// run (the wait for a slot and every test together) instead.
	Timeout time.Duration
	// Run, when set, runs only the tests whose full name
	// (data.policy_test.test_x) it matches, as opa test --run.
	Run *regexp.Regexp
}

// TestCase is the outcome of one test rule.
type TestCase struct {
	// Name is the rule (test_x) and Package its package (policy or
	// policy_test).
	Name    string `json:"name"`
	Package string `json:"package"`
	// Line and Column locate the rule in the tests module.
	Line   int `json:"line"`
	Column int `json:"column"`
	// Outcome is TestPass, TestFail, TestError or TestSkip.
	Outcome string `json:"outcome"`
	// Message says why a test errored.
	Message  string        `json:"message,omitempty"`
	Duration time.Duration `json:"duration_ns"`
	// Output is what the test printed (print()).
	Output string `json:"output,omitempty"`
}

// FullName is the test's data reference (data.policy_test.test_x).
func (tc TestCase) FullName() string { return "data." + tc.Package + "." + tc.Name }

// TestsReport is the outcome of a tests module, its tests in source
// order.
type TestsReport struct {
	Tests []TestCase `json:"tests"`
}

// Passed says whether no test failed or errored.
func (r *TestsReport) Passed() bool { return len(r.Problems()) == 0 }

// Problems are the failed and errored tests, as problems of field tests.
func (r *TestsReport) Problems() []Problem {
	var out []Problem
	for _, tc := range r.Tests {
		p := Problem{Field: "tests", Line: tc.Line, Column: tc.Column}
		switch tc.Outcome {
		case TestFail:
			p.Code, p.Message = CodeTestFailed, tc.Name+" failed"
		case TestError:
			p.Code, p.Message = CodeTestError, tc.Name+" errored: "+tc.Message
		default:
			continue
		}
		out = append(out, p)
	}
	return out
}

// RunTests runs a policy's tests module (none: an empty report) with OPA's
// tester, in one of the Tester's slots and under its deadline (or
// req.Timeout's), one test at a time. The tests that fail, error or do
// not finish in time are in the report; its errors are a *CheckError (the
// tests do not compile), ErrBusy, ErrWaitEnded, a *ConfigError, or a
// fault.
func (t *Tester) RunTests(ctx context.Context, req TestsRequest) (*TestsReport, error) {
	if req.Policy.Tests == "" {
		return &TestsReport{Tests: []TestCase{}}, nil
	}
	id := req.PolicyID
	if id == "" {
		id = UnsavedPolicyID
	}
	timeout := t.timeout
	if req.Timeout > 0 && req.Timeout < timeout {
		timeout = req.Timeout
	}
	runCtx, cancel := WithTimeout(ctx, timeout)
	defer cancel()
	release, err := t.acquire(runCtx)
	if err != nil {
		if TimedOut(runCtx) {
			return nil, ErrBusy
		}
		return nil, err
	}
	defer release()
	cfg, err := req.Config(runCtx)
	if err != nil {
		return nil, &ConfigError{Err: err}
	}
	spec := req.Policy
	kept := cfg.Policies[:0:0]
	for _, p := range cfg.Policies {
		if p.ID != id {
			kept = append(kept, p)
		}
	}
	cfg.Policies = append(kept, Object[model.PolicySpec]{ID: id, Name: id, Spec: spec})
	cfg.Gateways = append(cfg.Gateways, Object[model.GatewaySpec]{ID: testGatewayID, Spec: model.GatewaySpec{Type: model.GatewayEnvoy}})
	cfg.AllowedBuiltins = t.checker.AllowedBuiltins()
	compiled, err := Compile(cfg, testGatewayID)
	if err != nil {
		return nil, fmt.Errorf("policy tests: compile: %w", err)
	}
	setup, problems := t.checker.testSetup(id, &spec, newTenantPolicies(id, &spec, cfg.Policies))
	if len(problems) > 0 {
		return nil, &CheckError{Field: "tests", Problems: problems}
	}
	t.checker.addLibrary(setup.modules)
	comp := ast.NewCompiler().WithCapabilities(t.checker.caps).WithEnablePrintStatements(true)
	runner := tester.NewRunner().SetCompiler(comp).SetStore(newStore(compiled.Data)).SetModules(setup.modules).
		SetTimeout(timeout).SetParallel(1).CapturePrintOutput(true).
		SetPrefixMatchers(ast.MustParseRef("data."+UserPackage), ast.MustParseRef("data."+TestsPackage))
	if req.Run != nil {
		runner = runner.Filter(req.Run.String())
	}
	ch, err := runner.RunTests(runCtx, nil)
	if err != nil {
		var errs ast.Errors
		if errors.As(err, &errs) {
			return nil, &CheckError{Field: "tests", Problems: compileProblems(err, setup.maps)}
		}
		return nil, fmt.Errorf("policy tests: %w", err)
	}
	report := &TestsReport{Tests: []TestCase{}}
	ran := map[string]bool{}
	for res := range ch {
		tc := TestCase{Name: res.Name, Package: strings.TrimPrefix(res.Package, "data."), Duration: res.Duration, Output: string(res.Output)}
		if l := res.Location; l != nil {
			tc.Line, tc.Column = l.Row, l.Col
			if sm := setup.maps[l.File]; sm != nil {
				tc.Line, tc.Column = sm.position(l.Row, l.Col)
			}
		}
		switch {
		case res.Skip:
			tc.Outcome = TestSkip
		case res.Error != nil && TimedOut(runCtx):
			tc.Outcome, tc.Message = TestError, fmt.Sprintf("did not finish within %s (the policy tests' deadline)", timeout)
		case res.Error != nil && topdown.IsCancel(res.Error):
			tc.Outcome, tc.Message = TestError, "cancelled: "+context.Cause(runCtx).Error()
		case res.Error != nil:
			tc.Outcome, tc.Message = TestError, res.Error.Error()
		case res.Fail:
			tc.Outcome = TestFail
		default:
			tc.Outcome = TestPass
		}
		ran[tc.FullName()] = true
		report.Tests = append(report.Tests, tc)
	}
	// Tests the deadline kept from starting are errors too.
	for _, r := range setup.tests.Rules {
		n := testName(r)
		tc := TestCase{Name: n, Package: strings.TrimPrefix(setup.tests.Package.Path.String(), "data."), Outcome: TestError,
			Message: fmt.Sprintf("did not run within %s (the policy tests' deadline)", timeout)}
		if n == "" || ran[tc.FullName()] || (req.Run != nil && !req.Run.MatchString(tc.FullName())) || !TimedOut(runCtx) {
			continue
		}
		if r.Location != nil {
			tc.Line, tc.Column = r.Location.Row, r.Location.Col
		}
		report.Tests = append(report.Tests, tc)
	}
	sort.SliceStable(report.Tests, func(i, j int) bool {
		a, b := report.Tests[i], report.Tests[j]
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Name < b.Name
	})
	return report, nil
}
