package policies

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/model"
)

func regoSpec(src string) *model.PolicySpec {
	return &model.PolicySpec{Language: model.LanguageRego, Definition: src}
}

func TestCheckerRefusesBuiltinsThatReachOutside(t *testing.T) {
	ch, err := NewChecker()
	if err != nil {
		t.Fatal(err)
	}
	calls := map[string]string{
		"http.send":                 `http.send({"method": "get", "url": "http://x"}).status_code == 200`,
		"net.lookup_ip_addr":        `count(net.lookup_ip_addr("example.com")) > 0`,
		"opa.runtime":               `opa.runtime().env.HOME == "/"`,
		"json.match_schema":         `json.match_schema(input, {"$ref": "file:///etc/hostname"})[0]`,
		"json.verify_schema":        `x := json.verify_schema({"$ref": "http://x/s.json"})`,
		"trace":                     `trace("hello")`,
		"bits.lsh":                  `bits.lsh(1, input.n) > 0`,
		"strings.render_template":   `strings.render_template("{{range .a}}{{range $.a}}x{{end}}{{end}}", {"a": [1]}) != ""`,
		"json.marshal_with_options": `json.marshal_with_options(input, {"pretty": true, "indent": "  "}) != ""`,
	}
	for _, name := range DeniedBuiltins() {
		call, ok := calls[name]
		if !ok {
			t.Fatalf("no test call for denied built-in %s", name)
		}
		src := "package policy\n\nallow if {\n\ttrue\n\t" + call + "\n}\n"
		p := ch.Check("p", regoSpec(src))
		if len(p) == 0 {
			t.Errorf("%s: accepted", name)
			continue
		}
		if p[0].Code != "rego_builtin_denied" || p[0].Line != 5 || p[0].Column < 2 ||
			!strings.Contains(p[0].Message, name+" is not available") || !strings.Contains(p[0].Message, "--policy-allow-builtins") {
			t.Errorf("%s: %+v", name, p[0])
		}
	}
	// Nested calls are found too, and pure built-ins (net.cidr_*) are fine.
	nested := "package policy\n\nallow if {\n\tx := [r | r := opa.runtime()]\n\tcount(x) > 0\n}\n"
	if p := ch.Check("p", regoSpec(nested)); len(p) == 0 || p[0].Code != "rego_builtin_denied" || p[0].Line != 4 {
		t.Errorf("nested call: %+v", p)
	}
	pure := "package policy\n\nallow if net.cidr_contains(\"10.0.0.0/8\", input.ip)\n"
	if p := ch.Check("p", regoSpec(pure)); len(p) != 0 {
		t.Errorf("a pure net built-in was refused: %+v", p)
	}

	// sprintf: literal formats with small widths only.
	for src, ok := range map[string]bool{
		`reason := sprintf("pet %s of %v: %5.2f%% %-10s %[1]s %x", ["a", 1, 2.5, "b", 3])`: true,
		`reason := sprintf("%0999999d", [1])`:                                              false,
		`reason := sprintf("%.1001f", [1])`:                                                false,
		`reason := sprintf("%*d", [1000000, 1])`:                                           false,
		`reason := sprintf("%.*f", [1000000, 1])`:                                          false,
		`reason := sprintf(input.format, [1])`:                                             false,
		`reason := concat("", [sprintf(input.format, [1])])`:                               false,
	} {
		p := ch.Check("p", regoSpec("package policy\n\nallow := true\n\n"+src+"\n"))
		if ok != (len(p) == 0) || (!ok && (p[0].Code != "rego_builtin_unbounded" || p[0].Line != 5)) {
			t.Errorf("%s: %+v", src, p)
		}
	}

	// The allow-list lets exactly the named ones through.
	allowing, err := NewChecker("http.send")
	if err != nil {
		t.Fatal(err)
	}
	send := "package policy\n\nallow if http.send({\"method\": \"get\", \"url\": \"http://x\"}).status_code == 200\n"
	if p := allowing.Check("p", regoSpec(send)); len(p) != 0 {
		t.Errorf("allowed http.send refused: %+v", p)
	}
	if p := allowing.Check("p", regoSpec("package policy\n\nallow if opa.runtime()\n")); len(p) == 0 || p[0].Code != "rego_builtin_denied" {
		t.Errorf("opa.runtime accepted with only http.send allowed: %+v", p)
	}
	for _, bad := range []string{"count", "http.sendx"} {
		if _, err := NewChecker(bad); err == nil {
			t.Errorf("allow-list %q accepted", bad)
		}
	}
}

func TestCheckerLimits(t *testing.T) {
	ch, err := NewChecker()
	if err != nil {
		t.Fatal(err)
	}
	big := "package policy\n\nallow := true\n" + strings.Repeat("# padding\n", MaxDefinitionBytes/10)
	if p := ch.Check("p", regoSpec(big)); len(p) != 1 || p[0].Field != "definition" || p[0].Code != "limit_exceeded" {
		t.Errorf("oversized definition: %+v", p)
	}
	fits := "package policy\n\nallow := true\n"
	fits += strings.Repeat("#", MaxDefinitionBytes-len(fits))
	if p := ch.Check("p", regoSpec(fits)); len(p) != 0 {
		t.Errorf("a definition of exactly the limit: %+v", p)
	}
	vals := func(n int) *model.PolicySpec {
		vs := make([]model.ValidatorConfig, n)
		for i := range vs {
			vs[i] = model.ValidatorConfig{Name: "true"}
		}
		return &model.PolicySpec{Language: model.LanguageValidators, Validators: vs}
	}
	if p := ch.Check("v", vals(MaxValidators)); len(p) != 0 {
		t.Errorf("%d validators: %+v", MaxValidators, p)
	}
	if p := ch.Check("v", vals(MaxValidators+1)); len(p) != 1 || p[0].Field != "validators" || p[0].Code != "limit_exceeded" {
		t.Errorf("%d validators: %+v", MaxValidators+1, p)
	}
}

// heavyPolicy never finishes in reasonable time or memory unless its
// evaluation is cancelled.
const heavyPolicy = `package policy

default allow := false

allow if count([x | some x in numbers.range(1, 1000000000000)]) > 0
`

func heavyEngine(t *testing.T) (*Engine, string) {
	t.Helper()
	cfg := testConfig()
	cfg.Policies = append(cfg.Policies, Object[model.PolicySpec]{ID: "heavy", Name: "heavy", Spec: *regoSpec(heavyPolicy)})
	c, err := Compile(cfg, "edge")
	if err != nil {
		t.Fatal(err)
	}
	eng, err := NewEngine(context.Background(), c.Modules, c.Data)
	if err != nil {
		t.Fatal(err)
	}
	return eng, PolicyPackagePrefix + PolicyPackage("heavy")
}

// withinReason runs fn and fails the test if it has not returned after a
// bound far above any deadline used here (the outcome is what is
// asserted, not the time).
func withinReason(t *testing.T, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); fn() }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("evaluation was not stopped by its deadline")
	}
}

func TestEvaluationStopsAtItsDeadline(t *testing.T) {
	eng, query := heavyEngine(t)
	pq, err := eng.Prepare(context.Background(), query)
	if err != nil {
		t.Fatal(err)
	}
	// The query of the incident, on its own.
	incident, err := eng.Prepare(context.Background(), "count([x | some x in numbers.range(1, 1000000)])")
	if err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for _, explain := range []bool{false, true} {
		withinReason(t, func() {
			ctx, cancel := WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			if explain {
				_, _, err = Explain(ctx, pq, map[string]any{})
			} else {
				_, err = EvalObject(ctx, pq, map[string]any{})
			}
			if err == nil || !TimedOut(ctx) {
				t.Errorf("explain=%v: err %v, timed out %v", explain, err, TimedOut(ctx))
			}
		})
	}
	withinReason(t, func() {
		ctx, cancel := WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		if _, err := incident.Eval(ctx); err == nil || !TimedOut(ctx) {
			t.Errorf("incident query: err %v, timed out %v", err, TimedOut(ctx))
		}
	})
	runtime.ReadMemStats(&after)
	// Without cancellation the range alone would be terabytes.
	if grown := after.TotalAlloc - before.TotalAlloc; grown > 2<<30 {
		t.Errorf("evaluations allocated %d MiB", grown>>20)
	}

	// The caller's own cancellation is not a policy timeout.
	parent, stop := context.WithCancel(context.Background())
	ctx, cancel := WithTimeout(parent, time.Hour)
	defer cancel()
	stop()
	withinReason(t, func() {
		if _, err := EvalObject(ctx, pq, map[string]any{}); err == nil || TimedOut(ctx) {
			t.Errorf("cancelled by the caller: err %v, timed out %v", err, TimedOut(ctx))
		}
	})
	var te error = &TimeoutError{PolicyID: "heavy", Timeout: 50 * time.Millisecond}
	var target *TimeoutError
	if !errors.As(fmt.Errorf("wrapped: %w", te), &target) || !strings.Contains(te.Error(), "timed out after 50ms") {
		t.Errorf("TimeoutError: %v", te)
	}
}

func TestExplanationIsBounded(t *testing.T) {
	var b strings.Builder
	b.WriteString("package policy\n\ndefault allow := false\n\n")
	for i := range 3 * MaxExplainLines {
		fmt.Fprintf(&b, "allow if input.n == %d\n", i)
	}
	cfg := testConfig()
	cfg.Policies = append(cfg.Policies, Object[model.PolicySpec]{ID: "many", Name: "many", Spec: *regoSpec(b.String())})
	c, err := Compile(cfg, "edge")
	if err != nil {
		t.Fatal(err)
	}
	eng, err := NewEngine(context.Background(), c.Modules, c.Data)
	if err != nil {
		t.Fatal(err)
	}
	pq, err := eng.Prepare(context.Background(), PolicyPackagePrefix+PolicyPackage("many"))
	if err != nil {
		t.Fatal(err)
	}
	lines, truncated, err := Explain(context.Background(), pq, map[string]any{"n": -1})
	if err != nil {
		t.Fatal(err)
	}
	size := 0
	for _, l := range lines {
		size += len(l)
	}
	if !truncated || len(lines) != MaxExplainLines || size > MaxExplainBytes || !strings.Contains(lines[0], "input.n == 0") {
		t.Fatalf("truncated %v, %d lines, %d bytes: %v", truncated, len(lines), size, lines[:3])
	}
	// A small policy's explanation is whole.
	pets, err := eng.Prepare(context.Background(), PolicyPackagePrefix+PolicyPackage("pets-rego"))
	if err != nil {
		t.Fatal(err)
	}
	lines, truncated, err = Explain(context.Background(), pets, input("GET", "x", "/pets/1", map[string]any{"x-pet-key": "no"}, nil))
	if err != nil || truncated || len(lines) == 0 {
		t.Fatalf("small explanation: %v %v %v", lines, truncated, err)
	}
}

func TestAllowedBuiltinsReachTheBundle(t *testing.T) {
	const send = "package policy\n\nallow if http.send({\"method\": \"get\", \"url\": \"http://127.0.0.1:1/\", \"raise_error\": false}).status_code == 200\n"
	cfg := testConfig()
	cfg.Policies = append(cfg.Policies, Object[model.PolicySpec]{ID: "caller", Name: "caller", Spec: *regoSpec(send)})
	cfg.Gateways[0].Spec.PolicyTimeoutMS = 120

	// Not allowed (saved when it was): left out, the rest of the bundle works.
	c, err := Compile(cfg, "edge")
	if err != nil {
		t.Fatal(err)
	}
	if why := c.Skipped["caller"]; !strings.Contains(why, "http.send is not available") {
		t.Fatalf("skipped: %v", c.Skipped)
	}
	if _, err := NewEngine(context.Background(), c.Modules, c.Data); err != nil {
		t.Fatalf("bundle without the denied call: %v", err)
	}
	bc, err := ParseBundleConfig(c.Data)
	if err != nil {
		t.Fatal(err)
	}
	if len(bc.AllowedBuiltins) != 0 || bc.Gateway.PolicyTimeoutMS != 120 || bc.Gateway.PolicyTimeout() != 120*time.Millisecond {
		t.Fatalf("bundle config: allowed %v, timeout %d", bc.AllowedBuiltins, bc.Gateway.PolicyTimeoutMS)
	}
	other, _ := Compile(cfg, "pets-only")
	if ob, _ := ParseBundleConfig(other.Data); ob.Gateway.PolicyTimeoutMS != model.DefaultPolicyTimeoutMS {
		t.Fatalf("default timeout: %d", ob.Gateway.PolicyTimeoutMS)
	}

	// Allowed: in the bundle, which the authorizer's engine compiles.
	cfg.AllowedBuiltins = []string{"http.send"}
	c, err = Compile(cfg, "edge")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Skipped) != 0 {
		t.Fatalf("skipped: %v", c.Skipped)
	}
	if bc, _ := ParseBundleConfig(c.Data); len(bc.AllowedBuiltins) != 1 || bc.AllowedBuiltins[0] != "http.send" {
		t.Fatalf("allowed_builtins: %v", bc.AllowedBuiltins)
	}
	if _, err := NewEngine(context.Background(), c.Modules, c.Data); err != nil {
		t.Fatalf("engine with allowed http.send: %v", err)
	}
	// The same modules with data that does not allow it do not compile.
	if _, err := NewEngine(context.Background(), c.Modules, testData(t)); err == nil {
		t.Fatal("an engine compiled http.send its data does not allow")
	}
	cfg.AllowedBuiltins = []string{"count"}
	if _, err := Compile(cfg, "edge"); err == nil {
		t.Fatal("an allow-list naming a built-in that is not denied compiled")
	}
}

func testData(t *testing.T) map[string]any {
	t.Helper()
	c, err := Compile(testConfig(), "edge")
	if err != nil {
		t.Fatal(err)
	}
	return c.Data
}

func TestPolicyClosure(t *testing.T) {
	rego := func(id, src string) Object[model.PolicySpec] {
		return Object[model.PolicySpec]{ID: id, Spec: *regoSpec(src)}
	}
	all := []Object[model.PolicySpec]{
		rego("a", "package policy\n\nallow if data.gatehouse.policies."+PolicyPackage("b-1")+".allow\n"),
		rego("b-1", "package policy\n\nimport data.gatehouse.policies."+PolicyPackage("c")+" as c\n\nallow if c.allow\n"),
		rego("c", "package policy\n\nallow if data.gatehouse.config.tenant.id == \"acme\"\n"),
		rego("d", "package policy\n\nallow := true\n"),
		rego("dyn", "package policy\n\nallow if data.gatehouse.policies[input.p].allow\n"),
		{ID: "v", Spec: model.PolicySpec{Language: model.LanguageValidators, Validators: []model.ValidatorConfig{{Name: "true"}}}},
	}
	for _, c := range []struct {
		id   string
		want []string
	}{
		{"a", []string{"a", "b-1", "c"}},
		{"c", []string{"c"}},
		{"v", []string{"v"}},
		{"dyn", []string{"a", "b-1", "c", "d", "dyn", "v"}},
	} {
		got := PolicyClosure(all, c.id)
		if len(got) != len(c.want) {
			t.Errorf("%s: %v, want %v", c.id, got, c.want)
			continue
		}
		for _, w := range c.want {
			if !got[w] {
				t.Errorf("%s: %v, want %v", c.id, got, c.want)
			}
		}
	}
}
