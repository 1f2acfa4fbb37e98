package policies

import (
	"encoding/json"
	"strings"

	"github.com/gatehouse-dev/gatehouse/model"
)

// ParseEngineConfig reads data.gatehouse.config as ParseBundleConfig does,
// except that Routing is left empty (the authorizer builds its routing
// index from Services and APIs), and without encoding the configuration to
// JSON and back: services, APIs and policies, the large part, are read
// straight from the data document (sharing its strings); the rest goes
// through ParseBundleConfig. Whenever the document holds anything the
// direct reading does not expect (a value of another type, a key that
// differs from a field's only in case), the whole configuration is parsed
// by ParseBundleConfig instead, so the result (or error) is always the one
// ParseBundleConfig gives, Routing aside.
func ParseEngineConfig(data map[string]any) (*BundleConfig, error) {
	gh, _ := data[Root].(map[string]any)
	cfg, ok := gh["config"].(map[string]any)
	if !ok {
		return parseWithoutRouting(data)
	}
	rest := make(map[string]any, len(cfg))
	for k, v := range cfg {
		switch k {
		case "services", "apis", "policies", "routing":
			continue
		}
		for _, big := range []string{"services", "apis", "policies", "routing"} {
			if strings.EqualFold(k, big) {
				return parseWithoutRouting(data) // encoding/json would merge it into that field
			}
		}
		rest[k] = v
	}
	out, err := ParseBundleConfig(map[string]any{Root: map[string]any{"config": rest}})
	if err != nil {
		return nil, err
	}
	var okS, okA, okP bool
	out.Services, okS = readObjects(cfg["services"], serviceFields)
	out.APIs, okA = readObjects(cfg["apis"], apiFields)
	out.Policies, okP = readObjects(cfg["policies"], policyFields)
	if !okS || !okA || !okP {
		return parseWithoutRouting(data)
	}
	return out, nil
}

func parseWithoutRouting(data map[string]any) (*BundleConfig, error) {
	cfg, err := ParseBundleConfig(data)
	if err != nil {
		return nil, err
	}
	cfg.Routing = RoutingData{}
	return cfg, nil
}

// fieldReader sets one field from a JSON-typed value, reporting false for a
// value encoding/json would not decode into it without an error.
type fieldReader[T any] func(*T, any) bool

// readObjects reads a JSON object of objects into a map, as encoding/json
// would (null is a nil map, or a zero element; unknown keys are ignored).
// It reports false for anything else.
func readObjects[T any](v any, fields map[string]fieldReader[T]) (map[string]T, bool) {
	if v == nil {
		return nil, true
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, false
	}
	out := make(map[string]T, len(m))
	for id, x := range m {
		var t T
		if x != nil {
			obj, ok := x.(map[string]any)
			if !ok {
				return nil, false
			}
			for k, fv := range obj {
				set, known := fields[k]
				if !known {
					for name := range fields {
						if strings.EqualFold(name, k) {
							return nil, false // encoding/json matches it case-insensitively
						}
					}
					continue
				}
				if !set(&t, fv) {
					return nil, false
				}
			}
		}
		out[id] = t
	}
	return out, true
}

// The fields of ServiceData, APIData and PolicyData by JSON name (a test
// holds them to the structs' tags).
var (
	serviceFields = map[string]fieldReader[ServiceData]{
		"id":    func(s *ServiceData, v any) bool { return readString(&s.ID, v) },
		"name":  func(s *ServiceData, v any) bool { return readString(&s.Name, v) },
		"url":   func(s *ServiceData, v any) bool { return readString(&s.URL, v) },
		"hosts": func(s *ServiceData, v any) bool { return readStrings(&s.Hosts, v) },
		"cors":  func(s *ServiceData, v any) bool { return readCORS(&s.CORS, v) },
	}
	apiFields = map[string]fieldReader[APIData]{
		"id":                   func(a *APIData, v any) bool { return readString(&a.ID, v) },
		"service_id":           func(a *APIData, v any) bool { return readString(&a.ServiceID, v) },
		"method":               func(a *APIData, v any) bool { return readString(&a.Method, v) },
		"path":                 func(a *APIData, v any) bool { return readString(&a.Path, v) },
		"policy_id":            func(a *APIData, v any) bool { return readString(&a.PolicyID, v) },
		"public":               func(a *APIData, v any) bool { return readBool(&a.Public, v) },
		"data_classifications": func(a *APIData, v any) bool { return readStrings(&a.DataClassifications, v) },
		"claims_to_headers":    func(a *APIData, v any) bool { return readStringMap(&a.ClaimsToHeaders, v) },
	}
	policyFields = map[string]fieldReader[PolicyData]{
		"id":       func(p *PolicyData, v any) bool { return readString(&p.ID, v) },
		"name":     func(p *PolicyData, v any) bool { return readString(&p.Name, v) },
		"package":  func(p *PolicyData, v any) bool { return readString(&p.Package, v) },
		"language": func(p *PolicyData, v any) bool { return readString(&p.Language, v) },
		"dry_run":  func(p *PolicyData, v any) bool { return readBool(&p.DryRun, v) },
	}
)

// readString, readBool, readStrings and readStringMap decode as
// encoding/json does into a fresh value: null leaves the zero value.
func readString(dst *string, v any) bool {
	switch x := v.(type) {
	case nil:
		return true
	case string:
		*dst = x
		return true
	}
	return false
}

func readBool(dst *bool, v any) bool {
	switch x := v.(type) {
	case nil:
		return true
	case bool:
		*dst = x
		return true
	}
	return false
}

func readStrings(dst *[]string, v any) bool {
	if v == nil {
		return true
	}
	list, ok := v.([]any)
	if !ok {
		return false
	}
	out := make([]string, len(list))
	for i, x := range list {
		if !readString(&out[i], x) {
			return false
		}
	}
	*dst = out
	return true
}

func readStringMap(dst *map[string]string, v any) bool {
	if v == nil {
		return true
	}
	m, ok := v.(map[string]any)
	if !ok {
		return false
	}
	out := make(map[string]string, len(m))
	for k, x := range m {
		var s string
		if !readString(&s, x) {
			return false
		}
		out[k] = s
	}
	*dst = out
	return true
}

// readCORS reads a service's cors settings (rare and small: through JSON).
func readCORS(dst **model.CORSSettings, v any) bool {
	if v == nil {
		*dst = nil
		return true
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return false
	}
	c := &model.CORSSettings{}
	if err := json.Unmarshal(raw, c); err != nil {
		return false
	}
	*dst = c
	return true
}
