package policies

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/util"
)

// fieldNames are the JSON names of a struct's fields.
func fieldNames(t reflect.Type) []string {
	var out []string
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "-" {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

func keysOf[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// TestEngineConfigReadsEveryField holds the direct readers to the
// structs: a field added to one must be read too.
func TestEngineConfigReadsEveryField(t *testing.T) {
	for _, c := range []struct {
		typ  reflect.Type
		read []string
	}{
		{reflect.TypeFor[ServiceData](), keysOf(serviceFields)},
		{reflect.TypeFor[APIData](), keysOf(apiFields)},
		{reflect.TypeFor[PolicyData](), keysOf(policyFields)},
	} {
		if want := fieldNames(c.typ); !slices.Equal(c.read, want) {
			t.Errorf("%s: ParseEngineConfig reads %v, the struct has %v", c.typ.Name(), c.read, want)
		}
	}
}

// jsonCopy is a deep copy of a JSON-typed document.
func jsonCopy(t *testing.T, v map[string]any) map[string]any {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := util.UnmarshalJSON(raw, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func configOf(data map[string]any) map[string]any {
	return data[Root].(map[string]any)["config"].(map[string]any)
}

func TestParseEngineConfigIsParseBundleConfig(t *testing.T) {
	full := testConfig()
	full.APIs[0].Spec.ClaimsToHeaders = map[string]string{"sub": "X-User", "org.id": "x-org"}
	full.APIs[0].Spec.DataClassifications = []string{"pii", "pci"}
	full.Services[0].Spec.Hosts = []string{"pets.example.com", "*.pets.example.com"}
	full.Policies[0].Spec.DryRun = true
	base := map[string]map[string]any{}
	for name, cfg := range map[string]*Config{"test": full, "awkward": awkwardConfig(), "bench": benchConfig("acme", 200)} {
		c, err := Compile(cfg, "edge")
		if err != nil {
			t.Fatal(err)
		}
		base[name] = c.Data
	}
	api := func(d map[string]any) map[string]any {
		return configOf(d)["apis"].(map[string]any)["get-pet"].(map[string]any)
	}
	edits := map[string]func(d map[string]any){
		"as compiled":               func(map[string]any) {},
		"an unknown API key":        func(d map[string]any) { api(d)["added_later"] = []any{"x"} },
		"a key in another case":     func(d map[string]any) { api(d)["ID"] = "other" },
		"a null API":                func(d map[string]any) { configOf(d)["apis"].(map[string]any)["get-pet"] = nil },
		"null fields":               func(d map[string]any) { api(d)["path"], api(d)["public"], api(d)["claims_to_headers"] = nil, nil, nil },
		"null list members":         func(d map[string]any) { api(d)["data_classifications"] = []any{"a", nil} },
		"null map values":           func(d map[string]any) { api(d)["claims_to_headers"] = map[string]any{"sub": nil} },
		"a string for a bool":       func(d map[string]any) { api(d)["public"] = "yes" },
		"a number for a string":     func(d map[string]any) { api(d)["method"] = json.Number("1") },
		"a list for a map":          func(d map[string]any) { configOf(d)["services"] = []any{} },
		"null services":             func(d map[string]any) { configOf(d)["services"] = nil },
		"no policies":               func(d map[string]any) { delete(configOf(d), "policies") },
		"a big key in another case": func(d map[string]any) { configOf(d)["APIS"] = map[string]any{} },
		"a config that is a string": func(d map[string]any) { d[Root].(map[string]any)["config"] = "x" },
		"no config":                 func(d map[string]any) { delete(d[Root].(map[string]any), "config") },
	}
	for bname, b := range base {
		for ename, edit := range edits {
			if bname != "test" && ename != "as compiled" {
				continue
			}
			data := jsonCopy(t, b)
			edit(data)
			want, wantErr := ParseBundleConfig(data)
			got, err := ParseEngineConfig(data)
			if (err != nil) != (wantErr != nil) {
				t.Errorf("%s, %s: error %v, ParseBundleConfig's %v", bname, ename, err, wantErr)
				continue
			}
			if err != nil {
				continue
			}
			want.Routing = RoutingData{}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%s, %s:\n got %+v\nwant %+v", bname, ename, got, want)
			}
		}
	}
	if got, _ := ParseEngineConfig(base["test"]); got.Tenant.ID != "acme" || got.Gateway.ID != "edge" || len(got.APIs) != 5 {
		t.Errorf("the configuration is not read: %+v", got)
	}
}
