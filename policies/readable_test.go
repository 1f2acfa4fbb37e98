package policies

import (
	"context"
	"reflect"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/gatehouse-dev/gatehouse/model"
)

// TestEngineForQueriesDecidesAsTheFullEngine evaluates policies that read
// the bundle's data in every way Rego allows, each on an engine made for
// its query alone, and on one with all of the data.
func TestEngineForQueriesDecidesAsTheFullEngine(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig()
	cfg.Issuers = []Object[model.IssuerSpec]{{ID: "idp", Name: "idp", Spec: model.IssuerSpec{Issuer: "https://idp.example", JWKS: []byte(`{"keys":[]}`)}}}
	policies := map[string]string{
		"by-api":    "allow if data.gatehouse.config.apis[input.gatehouse.api_id].method == \"GET\"\n",
		"dynamic":   "allow if data.gatehouse.config[input.k]\n",
		"whole":     "n := count(data.gatehouse.config)\n\nallow if n > 0\n",
		"walked":    "allow if {\n\twalk(data.gatehouse.config.tenant, [path, v])\n\tv == input.k\n}\n",
		"with":      "allow if data.gatehouse.policies." + PolicyPackage("by-api") + ".allow with data.gatehouse.config.apis as {\"x\": {\"method\": \"GET\"}}\n",
		"object":    "allow if object.get(data.gatehouse.config, [\"tenant\", \"id\"], \"none\") == input.k\n",
		"owned":     "import data.gatehouse.lib.request\n\nallow if request.owned(input.k)\n",
		"token":     "import data.gatehouse.lib.token\n\nallow if token.valid\n",
		"issuers":   "allow if some i in data.gatehouse.config.issuers\n\nids := [i.id | some i in data.gatehouse.config.issuers]\n",
		"other":     "allow if data.gatehouse.policies." + PolicyPackage("by-api") + ".allow\n",
		"input":     "allow if input.k == \"tenant\"\n",
		"array":     "allow if data.gatehouse.config.issuers[0].id == \"idp\"\n",
		"undefined": "allow if data.gatehouse.config.nothing.here == 1\n\ndeny if not data.gatehouse.config.nothing\n",
	}
	for id, body := range policies {
		cfg.Policies = append(cfg.Policies, Object[model.PolicySpec]{ID: id, Name: id, Spec: model.PolicySpec{
			Language: model.LanguageRego, Definition: "package policy\n\n" + body}})
	}
	for i := range cfg.APIs {
		cfg.APIs[i].Spec.PolicyID = "input" // every policy is in the bundle, bound or not
	}
	c, err := Compile(cfg, "edge")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Skipped) > 0 {
		t.Fatalf("skipped: %v", c.Skipped)
	}
	modules := map[string]*ast.Module{}
	for _, m := range c.Modules {
		modules[m.Path] = ast.MustParseModuleWithOpts(m.Source, parserOptions)
	}
	full, err := NewEngineFromModules(ctx, modules, c.Data)
	if err != nil {
		t.Fatal(err)
	}
	inputs := []map[string]any{
		{},
		{"k": "tenant", "gatehouse": map[string]any{"api_id": "get-pet"}},
		{"k": "acme", "gatehouse": map[string]any{"api_id": "del-pet"}},
		{"k": "x-original-url", "gatehouse": map[string]any{"api_id": "x"}},
		{"k": "nope", "attributes": map[string]any{"request": map[string]any{"http": map[string]any{"headers": map[string]any{"authorization": "Bearer abc"}}}}},
	}
	ids := []string{"by-validators", "deny-all", "pets-rego"}
	for id := range policies {
		ids = append(ids, id)
	}
	for _, id := range ids {
		query := PolicyPackagePrefix + PolicyPackage(id)
		lean, err := NewEngineForQueries(ctx, modules, c.Data, []string{query}, false)
		if err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		want, err := full.Prepare(ctx, query)
		if err != nil {
			t.Fatal(err)
		}
		got, err := lean.Prepare(ctx, query)
		if err != nil {
			t.Fatal(err)
		}
		allowed := false
		for _, in := range inputs {
			w, err := EvalObject(ctx, want, in)
			if err != nil {
				t.Fatalf("%s: %v", id, err)
			}
			g, err := EvalObject(ctx, got, in)
			if err != nil {
				t.Fatalf("%s: %v", id, err)
			}
			if !reflect.DeepEqual(g, w) {
				t.Errorf("%s, input %v: %v, with all the data %v", id, in, g, w)
			}
			allowed = allowed || w["allow"] == true
		}
		if !allowed && id != "pets-rego" && id != "deny-all" && id != "token" && id != "undefined" && id != "by-validators" {
			t.Errorf("%s: no input is allowed; the test does not test it", id)
		}
	}
	if _, err := (&Engine{}).Decision(ctx, map[string]any{}); err == nil {
		t.Error("an engine without the entrypoint decided")
	}
}

func TestReadableDataKeepsWhatPoliciesRead(t *testing.T) {
	for _, c := range []struct {
		body string
		want []string // data.gatehouse.config's members kept
	}{
		{"allow if input.x == 1\n", nil},
		{"import data.gatehouse.lib.validators as v\n\nallow if v.header(\"x\", \"equals\", \"y\")\n", []string{"request_headers"}},
		{"allow if data.gatehouse.config.apis[input.id]\n", []string{"apis"}},
		{"allow if data.gatehouse.config.tenant.id == \"acme\"\n", []string{"tenant"}},
		{"import data.gatehouse.lib.token\n\nallow if token.valid\n", []string{"issuers", "request_headers", "revocations"}},
		{"allow if data.gatehouse.config[input.k]\n", []string{"*"}},
		{"allow if data.gatehouse.lib[input.k].x\n", []string{"issuers", "request_headers", "revocations", "routing", "tenant"}}, // every library module
	} {
		cfg := testConfig()
		cfg.Policies = []Object[model.PolicySpec]{{ID: "p", Name: "p", Spec: model.PolicySpec{Language: model.LanguageRego, Definition: "package policy\n\n" + c.body}}}
		for i := range cfg.APIs {
			cfg.APIs[i].Spec.PolicyID = "p"
		}
		compiled, err := Compile(cfg, "edge")
		if err != nil || len(compiled.Skipped) > 0 {
			t.Fatal(err, compiled.Skipped)
		}
		modules := map[string]*ast.Module{}
		for _, m := range compiled.Modules {
			modules[m.Path] = ast.MustParseModuleWithOpts(m.Source, parserOptions)
		}
		comp, err := compileModules(modules, compiled.Data)
		if err != nil {
			t.Fatal(err)
		}
		kept := readableData(comp, []ast.Ref{ast.MustParseRef(PolicyPackagePrefix + PolicyPackage("p"))}, compiled.Data)
		var got []string
		if gh, ok := kept[Root].(map[string]any); ok {
			if conf, ok := gh["config"].(map[string]any); ok {
				if reflect.DeepEqual(conf, configOf(compiled.Data)) {
					got = []string{"*"}
				} else {
					got = keysOf(conf)
				}
			}
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%q keeps %v, want %v", c.body, got, c.want)
		}
	}
}
