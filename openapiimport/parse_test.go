package openapiimport

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/gatehouse-dev/gatehouse/routing"
)

func TestSanitizeParams(t *testing.T) {
	for _, c := range []struct{ prefix, path, want string }{
		{"", "/pets/{id}", "/pets/{id}"},
		{"/api", "/pets/{pet-id}/x/{pet.id}", "/api/pets/{pet_id}/x/{pet_id_2}"},
		{"", "/a/{1st}/{}/{+path}", "/a/{_1st}/{_}/{_path}"},
		{"", "/files/{name}.json", "/files/{name}.json"},
		{"", "/", "/"},
	} {
		if got := sanitizeParams(c.prefix, c.path); got != c.want {
			t.Errorf("sanitizeParams(%q, %q) = %q, want %q", c.prefix, c.path, got, c.want)
		}
	}
}

func TestServerPrefix(t *testing.T) {
	for _, c := range []struct {
		url  string
		vars map[string]string
		want string
	}{
		{"https://api.example.com", nil, ""},
		{"https://api.example.com/", nil, ""},
		{"https://api.example.com/v1/", nil, "/v1"},
		{"https://{region}.example.com/{base}/v2", map[string]string{"region": "eu", "base": "api"}, "/api/v2"},
		{"/v3", nil, "/v3"},
		{"v3", nil, "/v3"},
		{"//cdn.example.com/x", nil, "/x"},
		{"http://h/a%20b", nil, "/a%20b"},
	} {
		sv := &openapi3.Server{URL: c.url, Variables: map[string]*openapi3.ServerVariable{}}
		for k, v := range c.vars {
			sv.Variables[k] = &openapi3.ServerVariable{Default: v}
		}
		got, err := serverPrefix(sv)
		if err != nil || got != c.want {
			t.Errorf("serverPrefix(%q) = %q, %v; want %q", c.url, got, err, c.want)
		}
	}
	if p, err := serverPrefix(nil); p != "" || err != nil {
		t.Errorf("no server: %q %v", p, err)
	}
}

// opSpec is one operation of a test document.
type opSpec struct{ path, method, operationID, extra string }

// op is an operation: extra is more YAML of the operation (lines after the
// first indented by 6).
func op(path, method, operationID, extra string) opSpec {
	return opSpec{path, method, operationID, extra}
}

// spec is an OpenAPI 3.0 document with top (top-level YAML, may be "") and
// the operations, grouped by path in order of first appearance.
func spec(top string, ops ...opSpec) []byte {
	var b strings.Builder
	b.WriteString("openapi: 3.0.3\ninfo: {title: t, version: '1'}\n" + top + "paths:\n")
	done := map[string]bool{}
	for _, o := range ops {
		if done[o.path] {
			continue
		}
		done[o.path] = true
		fmt.Fprintf(&b, "  %s:\n", o.path)
		for _, m := range ops {
			if m.path != o.path {
				continue
			}
			fmt.Fprintf(&b, "    %s:\n", m.method)
			if m.operationID != "" {
				fmt.Fprintf(&b, "      operationId: %q\n", m.operationID)
			}
			if m.extra != "" {
				b.WriteString("      " + m.extra + "\n")
			}
			b.WriteString("      responses: {'200': {description: ok}}\n")
		}
	}
	return []byte(b.String())
}

// pathParam declares a path parameter in op's extra.
func pathParam(name string) string {
	return "parameters: [{name: " + name + ", in: path, required: true, schema: {type: string}}]"
}

func mustParse(t *testing.T, data []byte) *Document {
	t.Helper()
	d, err := Parse(context.Background(), data)
	if err != nil {
		t.Fatalf("Parse: %v\n%s", err, data)
	}
	return d
}

func specErr(t *testing.T, data []byte) *SpecError {
	t.Helper()
	_, err := Parse(context.Background(), data)
	var se *SpecError
	if !errors.As(err, &se) {
		t.Fatalf("Parse = %v, want a *SpecError\n%s", err, data)
	}
	return se
}

func TestParseReadsPolicyExtensions(t *testing.T) {
	d := mustParse(t, spec("x-gatehouse-policy: readers\n",
		op("/pets", "get", "listPets", "x-gatehouse-policy: admins"), op("/health", "get", "health", ""),
		// An ignored operation's policy is named too.
		op("/files;{name}", "get", "getFile", "x-gatehouse-policy: files\n      "+pathParam("name"))))
	if d.policy != "readers" || len(d.operations) != 2 || d.operations[0].policy != "admins" || d.operations[1].policy != "" {
		t.Fatalf("policies: %q %+v", d.policy, d.operations)
	}
	if got := fmt.Sprint(d.PolicyIDs()); got != "[readers admins files]" {
		t.Fatalf("PolicyIDs = %s", got)
	}
	if got := d.refs[1].field; got != "paths./pets.get.x-gatehouse-policy" {
		t.Fatalf("field of an operation's policy: %q", got)
	}
	if len(d.ignored) != 1 || d.ignored[0].OperationID != "getFile" {
		t.Fatalf("ignored: %+v", d.ignored)
	}

	// Swagger 2.0 extensions survive the conversion.
	d = mustParse(t, []byte("swagger: '2.0'\ninfo: {title: t, version: '1'}\nx-gatehouse-policy: readers\npaths:\n"+
		"  /pets:\n    get:\n      operationId: listPets\n      x-gatehouse-policy: admins\n      responses: {'200': {description: ok}}\n"))
	if d.policy != "readers" || len(d.operations) != 1 || d.operations[0].policy != "admins" {
		t.Fatalf("2.0: %q %+v", d.policy, d.operations)
	}
}

func TestParseRefusesBadPolicyExtensions(t *testing.T) {
	se := specErr(t, spec("x-gatehouse-policy: 42\n",
		op("/pets", "get", "listPets", "x-gatehouse-policy: 'not an id'"), op("/pets/new", "post", "createPet", "x-gatehouse-policy: [a]"), op("/toys", "get", "listToys", "x-gatehouse-policy: ''")))
	if !se.Gatehouse || len(se.Problems) != 4 {
		t.Fatalf("problems: %+v", se)
	}
	for i, want := range []string{
		"x-gatehouse-policy: must be a policy id",
		`paths./pets.get.x-gatehouse-policy: must be a policy id (letters, digits, '.', '_', '~' and '-', 1-128 characters, starting with a letter or digit), not "not an id"`,
		`paths./pets/new.post.x-gatehouse-policy: must be a policy id`,
		`paths./toys.get.x-gatehouse-policy: must be a policy id`,
	} {
		if !strings.HasPrefix(se.Problems[i], want) {
			t.Errorf("problem %d = %q, want it to start with %q", i, se.Problems[i], want)
		}
	}
	// Invalid OpenAPI is not Gatehouse's problem.
	if se := specErr(t, []byte(`{"hello": "world"}`)); se.Gatehouse {
		t.Fatalf("not OpenAPI: %+v", se)
	}
}

func TestParseGivesOperationsAPIIDs(t *testing.T) {
	d := mustParse(t, spec("", op("/pets", "get", "list pets", ""), op("/pets/new", "post", "", ""), op("/toys", "get", "日本", "")))
	var got []string
	for _, o := range d.operations {
		got = append(got, fmt.Sprintf("%s=%q", o.operationID, o.id))
	}
	if fmt.Sprint(got) != `[list pets="list-pets" ="" 日本=""]` {
		t.Fatalf("ids: %v", got)
	}
	if fmt.Sprint(d.APIIDs()) != "[list-pets]" {
		t.Fatalf("APIIDs: %v", d.APIIDs())
	}
}

// TestParseRefusesCollidingAPIIDs: operationIds that differ only in what
// sanitising replaces give one API id: the document is refused, naming
// both operations (document order would be no stable way to choose).
func TestParseRefusesCollidingAPIIDs(t *testing.T) {
	se := specErr(t, spec("", op("/pets", "get", "get pet", ""), op("/pets/{id}", "get", "get/pet", pathParam("id")), op("/toys", "get", "get:pet", ""), op("/a", "get", "Café", ""), op("/b", "get", "Cafe\u0301", "")))
	if !se.Gatehouse || len(se.Problems) != 3 {
		t.Fatalf("problems: %+v", se)
	}
	for i, want := range [][]string{
		{`GET /pets (operationId "get pet")`, `GET /pets/{id} (operationId "get/pet")`, `"get-pet"`},
		{`GET /pets (operationId "get pet")`, `GET /toys (operationId "get:pet")`},
		{`GET /a (operationId "Café")`, "GET /b (operationId \"Cafe\u0301\")", `"Cafe"`},
	} {
		for _, w := range want {
			if !strings.Contains(se.Problems[i], w) {
				t.Errorf("problem %d = %q, want it to name %s", i, se.Problems[i], w)
			}
		}
	}
	// Operations without operationIds never collide.
	mustParse(t, spec("", op("/pets", "get", "", ""), op("/toys", "post", "", ""), op("/x", "get", "---", ""), op("/y", "get", "***", "")))
}

// TestParseImportsPatternSegments: a parameter with literal text in its
// segment is a Gatehouse template as it is; several parameters in one
// segment are imported with the documented fallback (one parameter over
// the text from the first to the last) and a warning naming the operation.
func TestParseImportsPatternSegments(t *testing.T) {
	d := mustParse(t, spec("",
		op("/files/{name}.json", "get", "getFile", pathParam("name")),
		op("/api/v{version}/pets", "get", "listPets", pathParam("version")),
		op("/files/{name}.{ext}", "put", "putFile", pathParams("name", "ext")),
		op("/img/x{a}-{b}.png", "get", "img", pathParams("a", "b")),
		op("/bad;{x}", "get", "bad", pathParam("x"))))
	var got []string
	for _, o := range d.operations {
		got = append(got, o.endpoint.Method+" "+o.endpoint.Template.Raw)
	}
	want := "[GET /files/{name}.json GET /api/v{version}/pets PUT /files/{name_ext} GET /img/x{a_b}.png]"
	if fmt.Sprint(got) != want {
		t.Fatalf("operations %v, want %s", got, want)
	}
	if len(d.ignored) != 1 || d.ignored[0].OperationID != "bad" {
		t.Fatalf("ignored: %+v", d.ignored)
	}
	if len(d.warnings) != 2 {
		t.Fatalf("warnings: %+v", d.warnings)
	}
	w := d.warnings[0]
	if w.Method != "PUT" || w.Path != "/files/{name_ext}" || w.DocumentPath != "/files/{name}.{ext}" || w.OperationID != "putFile" ||
		!strings.Contains(w.Message, `"{name}.{ext}" became {name_ext}`) || !strings.Contains(w.Message, "never fewer") {
		t.Fatalf("warning: %+v", w)
	}
	if w := d.warnings[1]; w.Path != "/img/x{a_b}.png" || !strings.Contains(w.Message, `"{a}-{b}" became {a_b}`) {
		t.Fatalf("warning: %+v", w)
	}
	// The fallback matches every path the document's template matches.
	tpl := d.operations[3].endpoint.Template
	for _, p := range []string{"/img/x1-2.png", "/img/xa-b-c.png"} {
		if _, ok := tpl.Match(routing.SplitPath(p)); !ok {
			t.Errorf("%s does not match %s", tpl.Raw, p)
		}
	}
	p, err := NewPlan(d, target, State{})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Warnings) != 2 || p.Warnings[0].OperationID != "putFile" {
		t.Fatalf("plan warnings: %+v", p.Warnings)
	}
}

// pathParams declares several path parameters in op's extra.
func pathParams(names ...string) string {
	var ps []string
	for _, n := range names {
		ps = append(ps, "{name: "+n+", in: path, required: true, schema: {type: string}}")
	}
	return "parameters: [" + strings.Join(ps, ", ") + "]"
}
