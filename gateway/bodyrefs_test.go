package gateway

import (
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/gatehouse-dev/gatehouse/policies"
)

// TestReadsParsedBody: a policy is taken to read the parsed body for every
// way Rego can reach it, and only then.
func TestReadsParsedBody(t *testing.T) {
	for _, c := range []struct {
		name  string
		rego  string
		want  bool
		extra string // another module, package q
	}{
		{"member", `allow if input.parsed_body.x == 1`, true, ""},
		{"nested under a member chosen by the body", `allow if input.attributes[input.parsed_body.k]`, true, ""},
		{"whole input", `allow if { x := input; x.parsed_body.a }`, true, ""},
		{"whole input passed to a function", `f(x) := x.parsed_body
allow if f(input)`, true, ""},
		{"member chosen at run time", `allow if { some k; input[k].a == 1 }`, true, ""},
		{"member named by a variable", `allow if { k := "parsed_body"; input[k] }`, true, ""},
		{"walk", `allow if { walk(input, [p, v]); v == 1 }`, true, ""},
		{"import", `import input.parsed_body as body
allow if body.a == 1`, true, ""},
		{"the entrypoint package", `allow if data.gatehouse.authz.policy_input.parsed_body`, true, ""},
		{"all of data", `allow if data[x].a`, true, ""},
		{"data.gatehouse chosen at run time", `allow if data.gatehouse[x].a`, true, ""},
		{"object.get of the body", `allow if object.get(input, ["parsed_body", "a"], 0) == 1`, true, ""},
		{"object.get with a path chosen at run time", `allow if { p := ["parsed_body"]; object.get(input, p, 0) }`, true, ""},
		{"object.get of a member", `allow if object.get(input, ["attributes", "request"], {}).http`, false, ""},
		{"object.get's default reads the body", `allow if object.get(input, "x", input.parsed_body)`, true, ""},
		// Found in review: a reference whose head is not a variable.
		{"array head", `allow if not [input][0].parsed_body.dangerous`, true, ""},
		{"object head", `allow if not {"a": input}.a.parsed_body.dangerous`, true, ""},
		{"comprehension head", `allow if not [x | x := input][0].parsed_body.dangerous`, true, ""},
		{"call head", `allow if not json.filter(input, ["parsed_body"]).parsed_body.dangerous`, true, ""},
		{"object.union head", `allow if not object.union({}, input).parsed_body.dangerous`, true, ""},
		// ... object.get's with modifiers, and names that only look like it.
		{"object.get with input replaced", `allow if not object.get(input, "dangerous", false) with input as input.parsed_body`, true, ""},
		{"a local rule named object.get", `object.get(i, _, _) := i.parsed_body.dangerous
allow if not object.get(input, "headers", false)`, true, ""},
		{"an import named object", `import data.q as object
allow if not object.get(input, "headers", false)`, true, "get(i, _, _) := i.parsed_body.dangerous"},
		{"request members only", `allow if input.attributes.request.http.method == "GET"`, false, ""},
		{"raw body string", `allow if input.attributes.request.http.body == "{}"`, false, ""},
		{"token and config", `allow if { input.gatehouse.token.valid; data.gatehouse.config.tenant.id == "t" }`, false, ""},
		{"truncated flag", `allow if not input.truncated_body`, false, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			mods := map[string]*ast.Module{}
			for name, src := range map[string]string{"p.rego": "package gatehouse.policies.p\n" + c.rego + "\n",
				"q.rego": "package q\n" + c.extra + "\n"} {
				m, err := ast.ParseModuleWithOpts(name, src, ast.ParserOptions{RegoVersion: ast.RegoV1})
				if err != nil {
					t.Fatal(err)
				}
				mods[name] = m
			}
			comp := ast.NewCompiler() // only valid Rego counts
			if comp.Compile(mods); comp.Failed() {
				t.Fatal(comp.Errors)
			}
			if got := readsParsedBody(mods); got != c.want {
				t.Fatalf("readsParsedBody = %v, want %v", got, c.want)
			}
		})
	}
}

// TestLibraryDoesNotReadTheBody: the bundle's own library (entrypoint
// aside) never makes every gateway parse bodies.
func TestLibraryDoesNotReadTheBody(t *testing.T) {
	files, err := policies.Library(false)
	if err != nil {
		t.Fatal(err)
	}
	mods := map[string]*ast.Module{}
	for _, f := range files {
		m, err := ast.ParseModuleWithOpts(f.Path, f.Source, ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			t.Fatal(err)
		}
		mods[f.Path] = m
	}
	if readsParsedBody(mods) {
		t.Fatal("the library reads input.parsed_body (or the whole input) outside the entrypoint")
	}
}
