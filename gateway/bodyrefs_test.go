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
		name string
		rego string
		want bool
	}{
		{"member", `allow if input.parsed_body.x == 1`, true},
		{"nested under a member chosen by the body", `allow if input.attributes[input.parsed_body.k]`, true},
		{"whole input", `allow if { x := input; x.parsed_body.a }`, true},
		{"whole input passed to a function", `f(x) := x.parsed_body
allow if f(input)`, true},
		{"member chosen at run time", `allow if { some k; input[k].a == 1 }`, true},
		{"member named by a variable", `allow if { k := "parsed_body"; input[k] }`, true},
		{"walk", `allow if { walk(input, [p, v]); v == 1 }`, true},
		{"import", `import input.parsed_body as body
allow if body.a == 1`, true},
		{"the entrypoint package", `allow if data.gatehouse.authz.policy_input.parsed_body`, true},
		{"all of data", `allow if data[x].a`, true},
		{"data.gatehouse chosen at run time", `allow if data.gatehouse[x].a`, true},
		{"object.get of the body", `allow if object.get(input, ["parsed_body", "a"], 0) == 1`, true},
		{"object.get with a path chosen at run time", `allow if { p := ["parsed_body"]; object.get(input, p, 0) }`, true},
		{"object.get of a member", `allow if object.get(input, ["attributes", "request"], {}).http`, false},
		{"object.get's default reads the body", `allow if object.get(input, "x", input.parsed_body)`, true},
		{"request members only", `allow if input.attributes.request.http.method == "GET"`, false},
		{"raw body string", `allow if input.attributes.request.http.body == "{}"`, false},
		{"token and config", `allow if { input.gatehouse.token.valid; data.gatehouse.config.tenant.id == "t" }`, false},
		{"truncated flag", `allow if not input.truncated_body`, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			src := "package gatehouse.policies.p\n" + c.rego + "\n"
			m, err := ast.ParseModuleWithOpts("p.rego", src, ast.ParserOptions{RegoVersion: ast.RegoV1})
			if err != nil {
				t.Fatal(err)
			}
			if got := readsParsedBody(map[string]*ast.Module{"p.rego": m}); got != c.want {
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
