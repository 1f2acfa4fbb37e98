package policies

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/model"
)

func regoPolicy(id, src string) Object[model.PolicySpec] {
	return Object[model.PolicySpec]{ID: id, Name: id, Spec: *regoSpec(src)}
}

func newChecker(t *testing.T) *Checker {
	t.Helper()
	ch, err := NewChecker()
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

const keyCheck = `package policy

default allow := false

allow if input.attributes.request.http.headers["x-key"] == "k1"

reason := "no key" if not allow
`

// usesKeyCheck refers to key-check (an id that is not a Rego name, so its
// package is hashed) and to admins by their ids, in every form.
const usesKeyCheck = `package policy

import data.gatehouse.policies["key-check"] as kc
import data.gatehouse.policies["admins"]

default allow := false

allow if {
	kc.allow
	admins.allow
}

reason := data.gatehouse.policies[ "key-check" ].reason if not allow

from_name := data.gatehouse.policies.admins.allow
`

const admins = `package policy

default allow := false

allow if input.attributes.request.http.headers["x-role"] == "admin"
`

func stableConfig() *Config {
	cfg := testConfig()
	cfg.Policies = append(cfg.Policies, regoPolicy("key-check", keyCheck), regoPolicy("admins", admins), regoPolicy("uses", usesKeyCheck))
	return cfg
}

func TestPoliciesReferToEachOtherByID(t *testing.T) {
	cfg := stableConfig()
	c, err := Compile(cfg, "edge")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Skipped) > 0 {
		t.Fatalf("skipped: %v", c.Skipped)
	}
	var uses string
	for _, m := range c.Modules {
		if m.Path == Root+"/policies/"+PolicyPackage("uses")+".rego" {
			uses = m.Source
		}
	}
	kc := PolicyPackage("key-check")
	for _, want := range []string{
		"package gatehouse.policies.p_uses\n",
		"import data.gatehouse.policies." + kc + " as kc\n",
		"import data.gatehouse.policies.p_admins as admins\n", // a bare import keeps its name
		"reason := data.gatehouse.policies." + kc + ".reason if not allow\n",
		"from_name := data.gatehouse.policies.p_admins.allow\n",
	} {
		if !strings.Contains(uses, want) {
			t.Errorf("the bundle module lacks %q:\n%s", want, uses)
		}
	}
	if got, want := strings.Count(uses, "\n"), strings.Count(usesKeyCheck, "\n"); got != want {
		t.Errorf("%d lines, the author wrote %d", got, want)
	}
	eng, err := NewEngine(context.Background(), c.Modules, c.Data)
	if err != nil {
		t.Fatal(err)
	}
	pq, err := eng.Prepare(context.Background(), PolicyPackagePrefix+PolicyPackage("uses"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		headers map[string]any
		allow   bool
		reason  any
	}{
		{map[string]any{"x-key": "k1", "x-role": "admin"}, true, nil},
		{map[string]any{"x-role": "admin"}, false, "no key"},
		{map[string]any{"x-key": "k1"}, false, nil},
	} {
		res, err := EvalObject(context.Background(), pq, input("GET", "h", "/x", tc.headers, nil))
		if err != nil {
			t.Fatal(err)
		}
		if res["allow"] != tc.allow || res["reason"] != tc.reason {
			t.Errorf("%v: %v", tc.headers, res)
		}
	}
	// The closure of the policy tests follows references by id.
	got := PolicyClosure(cfg.Policies, "uses")
	if !got["uses"] || !got["key-check"] || !got["admins"] || len(got) != 3 {
		t.Errorf("closure %v", got)
	}
}

func TestAStableNameIsTheIDEvenWhenItLooksLikeAPackage(t *testing.T) {
	// "p_x" is both policy p_x's id and policy x's package name: the
	// string form is the id, the name form the package (what it meant
	// before ids could be used).
	all := []Object[model.PolicySpec]{
		regoPolicy("x", "package policy\n\nallow := false\n"),
		regoPolicy("p_x", "package policy\n\nallow := true\n"),
	}
	n := namesOf(all)
	if id, byID, ok := n.resolve("p_x", true); !ok || !byID || id != "p_x" {
		t.Errorf(`["p_x"]: %s %v %v`, id, byID, ok)
	}
	if id, byID, ok := n.resolve("p_x", false); !ok || byID || id != "x" {
		t.Errorf(".p_x: %s %v %v", id, byID, ok)
	}
	if _, _, ok := n.resolve("nope", true); ok {
		t.Error("an unknown id resolved")
	}
}

func TestSourceMapGivesTheAuthorsPositions(t *testing.T) {
	src := "ab[\"id\"]cd\nxy[\"id\"]z\n"
	out, sm := applyEdits(src, []edit{{off: 2, n: 6, text: ".p_long_name"}, {off: 13, n: 6, text: ".q"}})
	if out != "ab.p_long_namecd\nxy.qz\n" {
		t.Fatalf("%q", out)
	}
	for _, c := range []struct{ row, col, wantRow, wantCol int }{
		{1, 1, 1, 1},   // a
		{1, 5, 1, 3},   // inside the edit: its start
		{1, 15, 1, 9},  // c
		{2, 1, 2, 1},   // x
		{2, 5, 2, 9},   // z
		{9, 1, 3, 1},   // past the end
		{1, 16, 1, 10}, // d
	} {
		r, col := sm.position(c.row, c.col)
		if r != c.wantRow || col != c.wantCol {
			t.Errorf("%d:%d → %d:%d, want %d:%d", c.row, c.col, r, col, c.wantRow, c.wantCol)
		}
	}
}

func TestCheckInTenant(t *testing.T) {
	ch := newChecker(t)
	tenant := []Object[model.PolicySpec]{
		regoPolicy("key-check", keyCheck),
		regoPolicy("admins", admins),
		regoPolicy("stringy", "package policy\n\nallow := \"yes\" if input.x\n\ndefault allow := \"no\"\n"),
		regoPolicy("calls-draft", "package policy\n\nallow if data.gatehouse.policies[\"draft\"].allow\n"),
	}
	type want struct {
		code       string
		line, col  int
		field      string
		inMessage  string
		isolatedOK bool // Check alone accepts it
	}
	cases := []struct {
		name string
		src  string
		want *want
	}{
		{"boolean from another policy", "package policy\n\nallow := data.gatehouse.policies[\"admins\"].allow\n", nil},
		{"unknown policy id", "package policy\n\nallow if {\n\tdata.gatehouse.policies[\"admin\"].allow\n}\n",
			&want{"rego_policy_unknown", 4, 26, "", `no policy "admin"`, true}},
		{"unknown through an import", "package policy\n\nimport data.gatehouse.policies as ps\n\nallow if ps[\"nope\"].allow\n",
			&want{"rego_policy_unknown", 5, 13, "", `no policy "nope"`, true}},
		{"a cycle", "package policy\n\nallow if data.gatehouse.policies[\"calls-draft\"].allow\n",
			&want{"rego_policy_cycle", 3, 34, "", "draft → calls-draft → draft", true}},
		{"itself", "package policy\n\nallow := true\n\nx := data.gatehouse.policies[\"draft\"].allow\n",
			&want{"rego_policy_cycle", 5, 30, "", "may not refer to itself", true}},
		{"allow is a string", "package policy\n\nallow := \"yes\"\n",
			&want{"rego_result_type", 3, 1, "", "allow must be a boolean, but it is string", false}},
		{"allow is any value", "package policy\n\nallow := input.x\n",
			&want{"rego_result_type", 3, 1, "", "allow must be a boolean, but it can be any", true}},
		{"allow from another policy's string", "package policy\n\nallow := data.gatehouse.policies[\"stringy\"].allow\n",
			&want{"rego_result_type", 3, 1, "", "it is string", true}},
		{"allow is a set", "package policy\n\nallow contains 1\n",
			&want{"rego_result_type", 3, 1, "", "set[number]", false}},
		{"allow is a function", "package policy\n\nallow(x) := true\n",
			&want{"rego_result_type", 3, 1, "", "not a function", false}},
		{"http_status is a string", "package policy\n\nallow := false\n\nhttp_status := \"401\"\n",
			&want{"rego_result_type", 5, 1, "", "http_status must be a number", false}},
		{"a header value is a number", "package policy\n\nallow := false\n\nheaders := {\"x-n\": 1}\n",
			&want{"rego_result_type", 5, 1, "", "headers must be an object", false}},
		{"headers from input are fine", "package policy\n\nallow := false\n\nheaders := {\"x-n\": input.n}\nreason := input.r\n", nil},
		{"test rules in the definition", "package policy\n\nallow := true\n\ntest_it if allow\n",
			&want{"rego_test_in_definition", 5, 1, "", "belong in the policy's tests", false}},
		{"a type error after a reference is where the author wrote it",
			"package policy\n\nallow if { data.gatehouse.policies[\"key-check\"].allow; 1 + \"s\" == 2 }\n",
			&want{"rego_type_error", 3, 56, "", "plus", false}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			spec := regoSpec(c.src)
			problems := ch.CheckInTenant("draft", spec, tenant)
			if c.want == nil {
				if len(problems) > 0 {
					t.Fatalf("refused: %+v", problems)
				}
				return
			}
			if len(problems) == 0 {
				t.Fatal("accepted")
			}
			p := problems[0]
			if p.Code != c.want.code || p.Line != c.want.line || p.Column != c.want.col || p.Field != c.want.field || !strings.Contains(p.Message, c.want.inMessage) {
				t.Errorf("%+v, want %+v", p, *c.want)
			}
			if isolated := ch.Check("draft", spec); (len(isolated) == 0) != c.want.isolatedOK {
				t.Errorf("Check alone: %+v", isolated)
			}
		})
	}
}

const adminsTests = `package policy_test

import data.policy

test_admin_allowed if policy.allow with input as {"attributes": {"request": {"http": {"headers": {"x-role": "admin"}}}}}

test_guest_denied if not policy.allow with input as {"attributes": {"request": {"http": {"headers": {}}}}}

test_wrong if policy.allow with input as {}

x := 1 if input.a

x := 2 if input.a

test_conflict if x with input as {"a": true}

test_tenant if data.gatehouse.config.tenant.id == "acme"

test_uses_key_check if data.gatehouse.policies["key-check"].reason == "no key" with input as {}

todo_test_later if false

test_mocked if data.gatehouse.policies["key-check"].allow with data.gatehouse.policies["key-check"].allow as true
`

func TestRunTestsReportsEachTest(t *testing.T) {
	tr := newTester(t, 0, 10*time.Second)
	spec := model.PolicySpec{Language: model.LanguageRego, Definition: admins, Tests: adminsTests}
	if p := tr.checker.CheckInTenant("admins", &spec, stableConfig().Policies); len(p) > 0 {
		t.Fatalf("checks: %+v", p)
	}
	report, err := tr.RunTests(context.Background(), TestsRequest{PolicyID: "admins", Policy: spec, Config: fromConfig(stableConfig)})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]TestCase{}
	for _, tc := range report.Tests {
		got[tc.Name] = tc
	}
	for name, w := range map[string]struct {
		outcome string
		line    int
	}{
		"test_admin_allowed": {TestPass, 5}, "test_guest_denied": {TestPass, 7}, "test_wrong": {TestFail, 9},
		"test_conflict": {TestError, 15}, "test_tenant": {TestPass, 17}, "test_uses_key_check": {TestPass, 19},
		"todo_test_later": {TestSkip, 21}, "test_mocked": {TestPass, 23},
	} {
		tc, ok := got[name]
		if !ok || tc.Outcome != w.outcome || tc.Line != w.line || tc.Package != TestsPackage {
			t.Errorf("%s: %+v, want %s at line %d", name, tc, w.outcome, w.line)
		}
	}
	if len(report.Tests) != 8 {
		t.Errorf("%d tests: %+v", len(report.Tests), report.Tests)
	}
	problems := report.Problems()
	if len(problems) != 2 || problems[0].Code != CodeTestFailed || problems[0].Field != "tests" || problems[0].Line != 9 ||
		problems[0].Message != "test_wrong failed" || problems[1].Code != CodeTestError || !strings.Contains(problems[1].Message, "test_conflict errored") {
		t.Errorf("problems %+v", problems)
	}
	if report.Passed() {
		t.Error("a failing report passed")
	}
	// --run selects tests by their full name.
	only, err := tr.RunTests(context.Background(), TestsRequest{PolicyID: "admins", Policy: spec, Config: fromConfig(stableConfig),
		Run: regexp.MustCompile(`guest`)})
	if err != nil || len(only.Tests) != 1 || only.Tests[0].Name != "test_guest_denied" || !only.Passed() {
		t.Errorf("--run: %+v %v", only, err)
	}
}

func TestTestsInPackagePolicySeeItsRules(t *testing.T) {
	tr := newTester(t, 0, 10*time.Second)
	spec := model.PolicySpec{Language: model.LanguageValidators, Validators: []model.ValidatorConfig{
		{Name: "header", Conf: map[string]any{"name": "X-Key", "value": "k"}}},
		Tests: "package policy\n\ntest_key if allow with input as {\"attributes\": {\"request\": {\"http\": {\"headers\": {\"x-key\": \"k\"}}}}}\n" +
			"test_no_key if not allow with input as {}\n"}
	if p := tr.checker.CheckInTenant("v", &spec, nil); len(p) > 0 {
		t.Fatalf("checks: %+v", p)
	}
	report, err := tr.RunTests(context.Background(), TestsRequest{PolicyID: "v", Policy: spec, Config: fromConfig(testConfig)})
	if err != nil || len(report.Tests) != 2 || !report.Passed() {
		t.Fatalf("%+v %v", report, err)
	}
}

func TestTestsStopAtTheDeadline(t *testing.T) {
	tr := newTester(t, 0, 100*time.Millisecond)
	spec := model.PolicySpec{Language: model.LanguageRego, Definition: admins,
		Tests: "package policy_test\n\ntest_slow if count([x | some x in numbers.range(1, 100000000)]) > 0\n"}
	start := time.Now()
	report, err := tr.RunTests(context.Background(), TestsRequest{PolicyID: "admins", Policy: spec, Config: fromConfig(testConfig)})
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("took %v", took)
	}
	if len(report.Tests) != 1 || report.Tests[0].Outcome != TestError || !strings.Contains(report.Tests[0].Message, "did not finish within 100ms") ||
		report.Tests[0].Line != 3 {
		t.Errorf("%+v", report.Tests)
	}
}

func TestTestsModuleChecks(t *testing.T) {
	ch := newChecker(t)
	for name, c := range map[string]struct {
		tests, code string
		line        int
	}{
		"parse error":     {"package policy_test\n\ntest_x if {\n", "rego_parse_error", 4},
		"wrong package":   {"package other\n\ntest_x if true\n", "rego_package_error", 1},
		"no test":         {"package policy_test\n\nx := 1\n", "rego_tests_missing", 1},
		"denied built-in": {"package policy_test\n\ntest_x if opa.runtime()\n", "rego_builtin_denied", 3},
		"compile error":   {"package policy_test\n\ntest_x if nope.allow\n", "rego_unsafe_var_error", 3},
		"unknown policy":  {"package policy_test\n\ntest_x if data.gatehouse.policies[\"ghost\"].allow\n", "rego_policy_unknown", 3},
		"too large":       {"package policy_test\n# " + strings.Repeat("x", MaxTestsBytes) + "\n", "limit_exceeded", 0},
	} {
		spec := &model.PolicySpec{Language: model.LanguageRego, Definition: admins, Tests: c.tests}
		p := ch.CheckInTenant("admins", spec, []Object[model.PolicySpec]{regoPolicy("admins", admins)})
		if len(p) == 0 || p[0].Field != "tests" || p[0].Code != c.code || p[0].Line != c.line {
			t.Errorf("%s: %+v", name, p)
		}
	}
}

func TestTestsAreNotInBundles(t *testing.T) {
	cfg := stableConfig()
	for i := range cfg.Policies {
		if cfg.Policies[i].ID == "admins" {
			cfg.Policies[i].Spec.Tests = adminsTests
		}
	}
	with, err := Compile(cfg, "edge")
	if err != nil {
		t.Fatal(err)
	}
	without, _ := Compile(stableConfig(), "edge")
	if with.Hash != without.Hash {
		t.Error("a tests module changed the bundle")
	}
	for _, m := range with.Modules {
		if strings.Contains(m.Source, "test_") {
			t.Errorf("%s holds tests", m.Path)
		}
	}
}

func TestRunTestsWaitsForASlot(t *testing.T) {
	tr := newTester(t, 1, 50*time.Millisecond)
	release, err := tr.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	spec := model.PolicySpec{Language: model.LanguageRego, Definition: admins, Tests: adminsTests}
	if _, err := tr.RunTests(context.Background(), TestsRequest{PolicyID: "admins", Policy: spec, Config: fromConfig(stableConfig)}); !errors.Is(err, ErrBusy) {
		t.Fatalf("%v", err)
	}
}
