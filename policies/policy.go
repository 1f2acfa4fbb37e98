package policies

import (
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/gatehouse-dev/gatehouse/model"
)

// UserPackage is the package line users write: Gatehouse replaces it with
// the policy's own package.
const UserPackage = "policy"

// Problem is one thing wrong with a policy, located in its Rego source
// (Line/Column, 1-based) or in its validators (Field).
type Problem struct {
	Line    int    `json:"line,omitempty"`
	Column  int    `json:"column,omitempty"`
	Field   string `json:"field,omitempty"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (p Problem) String() string {
	switch {
	case p.Field != "" && p.Line > 0:
		return fmt.Sprintf("%s:%d:%d: %s", p.Field, p.Line, p.Column, p.Message)
	case p.Field != "":
		return p.Field + ": " + p.Message
	case p.Line > 0:
		return fmt.Sprintf("%d:%d: %s", p.Line, p.Column, p.Message)
	}
	return p.Message
}

// ProblemsError carries a policy's problems.
type ProblemsError struct{ Problems []Problem }

func (e *ProblemsError) Error() string {
	parts := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		parts[i] = p.String()
	}
	return strings.Join(parts, "; ")
}

// PolicyModule returns the bundle module of a policy: the user's Rego with
// its package line replaced (and its references to other policies by id
// using their package names: refs.go), or the Rego translation of its
// validators.
func PolicyModule(policyID string, spec *model.PolicySpec) (string, error) {
	src, _, err := policyModule(policyID, spec, nil)
	return src, err
}

// policyModule is PolicyModule with the tenant's policy names (nil: not
// known) that also returns, for a Rego policy, the user's module as
// parsed (nil for validators, which only call the library).
func policyModule(policyID string, spec *model.PolicySpec, names *policyNames) (string, *ast.Module, error) {
	src, m, _, err := policyModuleAt(policyID, spec, strings.TrimPrefix(PolicyPackagePrefix+PolicyPackage(policyID), "data."), names)
	return src, m, err
}

// policyModuleAt is policyModule for the policy in package pkg (without
// "data."), with the map from the module's positions to the author's.
// A reference by id it cannot rewrite in place stays as written (the save
// checks refuse it; in a bundle it is undefined).
func policyModuleAt(policyID string, spec *model.PolicySpec, pkg string, names *policyNames) (string, *ast.Module, *sourceMap, error) {
	switch spec.Language {
	case model.LanguageRego:
		m, err := ast.ParseModuleWithOpts(policyFile, spec.Definition, parserOptions)
		if err != nil {
			return "", nil, nil, err
		}
		if p := checkUserPackage(m); p != nil {
			return "", nil, nil, p
		}
		src, sm, err := rewriteRego(spec.Definition, m, pkg, names)
		return src, m, sm, err
	case model.LanguageValidators:
		src, err := translateValidators(pkg, policyID, spec.Validators)
		return src, nil, nil, err
	}
	return "", nil, nil, fmt.Errorf("unknown policy language %q", spec.Language)
}

// PolicyClosure returns the ids of the policies a bundle needs for
// policyID to evaluate: itself and, transitively, the policies its Rego
// refers to (data.gatehouse.policies.<pkg>… or ["<id>"]…, imports
// included). A reference it cannot resolve statically (a variable
// package, data.gatehouse as a whole) needs every policy.
func PolicyClosure(all []Object[model.PolicySpec], policyID string) map[string]bool {
	return newPolicyGraph(all, true).closure(policyID)
}

func checkUserPackage(m *ast.Module) *Problem {
	if m.Package.Path.String() == "data."+UserPackage {
		return nil
	}
	p := &Problem{Code: "rego_package_error", Message: fmt.Sprintf("the package must be %q (Gatehouse assigns the real one), not %q",
		UserPackage, strings.TrimPrefix(m.Package.Path.String(), "data."))}
	if m.Package.Location != nil {
		p.Line, p.Column = m.Package.Location.Row, m.Package.Location.Col
	}
	return p
}

func (p *Problem) Error() string { return p.String() }

// Validator names and the comparators they accept.
var (
	validatorNames = []string{"true", "false", "header", "query", "method", "path", "claim", "identity-context", "scope"}
	comparators    = map[string]bool{
		"equals": true, "not_equals": true, "one_of": true, "not_one_of": true, "contains": true,
		"prefix": true, "suffix": true, "regex": true, "present": true, "absent": true,
		"gt": true, "gte": true, "lt": true, "lte": true,
	}
	headerName = regexp.MustCompile(`^[!#$%&'*+.^_` + "`" + `|~0-9A-Za-z-]+$`)
)

// validator is a validated, normalised validator ready for translation.
type validator struct {
	kind       string // header, query, method, path, claim, scope, true, false
	name       string // header/query/claim name
	comparator string
	value      any
	match      string // scope: all|any
	scopes     []string
}

// parseValidators checks every validator's configuration and reports
// problems by field (validators[i].conf.x).
func parseValidators(vs []model.ValidatorConfig) ([]validator, []Problem) {
	var out []validator
	var problems []Problem
	if len(vs) == 0 {
		return nil, []Problem{{Field: "validators", Code: "invalid_validator", Message: "at least one validator is required"}}
	}
	for i, v := range vs {
		field := fmt.Sprintf("validators[%d]", i)
		bad := func(sub, format string, args ...any) {
			problems = append(problems, Problem{Field: field + sub, Code: "invalid_validator", Message: fmt.Sprintf(format, args...)})
		}
		conf := v.Conf
		str := func(key string) (string, bool) {
			x, ok := conf[key]
			if !ok {
				return "", false
			}
			s, isStr := x.(string)
			if !isStr {
				bad(".conf."+key, "must be a string")
				return "", false
			}
			return s, true
		}
		val := validator{kind: v.Name}
		switch v.Name {
		case "true", "false":
			if len(conf) > 0 {
				bad(".conf", "the %s validator takes no configuration", v.Name)
			}
		case "header", "query", "claim", "identity-context":
			key := "name"
			if v.Name == "claim" || v.Name == "identity-context" {
				val.kind, key = "claim", "claim"
				if _, ok := conf["claim"]; !ok {
					if _, ok := conf["field"]; ok {
						key = "field"
					}
				}
			}
			name, ok := str(key)
			if !ok || name == "" {
				if _, present := conf[key]; !present {
					bad(".conf."+key, "is required")
				}
				continue
			}
			if v.Name == "header" && !headerName.MatchString(name) {
				bad(".conf.name", "%q is not a valid header name", name)
				continue
			}
			val.name = name
			if p := parseComparison(&val, conf, val.kind == "claim"); p != "" {
				bad(".conf", "%s", p)
				continue
			}
		case "method", "path":
			if p := parseComparison(&val, conf, false); p != "" {
				bad(".conf", "%s", p)
				continue
			}
			if val.comparator == "present" || val.comparator == "absent" {
				bad(".conf.comparator", "%s is always present", v.Name)
				continue
			}
		case "scope":
			val.match = "all"
			if m, ok := str("match"); ok {
				if m != "all" && m != "any" {
					bad(".conf.match", "must be all or any")
					continue
				}
				val.match = m
			}
			if s, ok := str("scope"); ok && s != "" {
				val.scopes = []string{s}
			} else if raw, ok := conf["scopes"]; ok {
				list, ok := raw.([]any)
				if !ok || len(list) == 0 {
					bad(".conf.scopes", "must be a non-empty array of strings")
					continue
				}
				for _, x := range list {
					s, ok := x.(string)
					if !ok || s == "" {
						bad(".conf.scopes", "must be a non-empty array of strings")
						break
					}
					val.scopes = append(val.scopes, s)
				}
			}
			if len(val.scopes) == 0 {
				bad(".conf.scope", "a scope (or scopes) is required")
				continue
			}
		default:
			bad(".name", "unknown validator %q (one of %s)", v.Name, strings.Join(validatorNames, ", "))
			continue
		}
		out = append(out, val)
	}
	return out, problems
}

// parseComparison reads comparator (default equals) and value/values.
func parseComparison(v *validator, conf map[string]any, anyValue bool) string {
	v.comparator = "equals"
	if c, ok := conf["comparator"]; ok {
		s, isStr := c.(string)
		if !isStr || !comparators[s] {
			keys := make([]string, 0, len(comparators))
			for k := range comparators {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			return fmt.Sprintf("comparator must be one of %s", strings.Join(keys, ", "))
		}
		v.comparator = s
	}
	switch v.comparator {
	case "present", "absent":
		if _, ok := conf["value"]; ok {
			return "value is not used with " + v.comparator
		}
		return ""
	case "one_of", "not_one_of":
		raw, ok := conf["values"].([]any)
		if !ok || len(raw) == 0 {
			return "values (a non-empty array) is required with " + v.comparator
		}
		for _, x := range raw {
			if !scalar(x, anyValue) {
				return "values must hold strings" + map[bool]string{true: ", numbers or booleans", false: ""}[anyValue]
			}
		}
		v.value = raw
		return ""
	case "gt", "gte", "lt", "lte":
		n, ok := conf["value"].(float64)
		if !ok || !anyValue {
			return v.comparator + " compares numbers and needs a numeric value (claims only)"
		}
		v.value = n
		return ""
	case "regex":
		s, ok := conf["value"].(string)
		if !ok {
			return "value (a string) is required"
		}
		if _, err := regexp.Compile(s); err != nil {
			return fmt.Sprintf("value is not a valid regular expression: %v", err)
		}
		v.value = s
		return ""
	}
	x, ok := conf["value"]
	if !ok {
		return "value is required with " + v.comparator
	}
	if !scalar(x, anyValue) || (v.comparator != "equals" && v.comparator != "not_equals" && !isString(x)) {
		return "value must be a string" + map[bool]string{true: " (or, for equals/not_equals, a number or boolean)", false: ""}[anyValue]
	}
	v.value = x
	return ""
}

func scalar(x any, anyValue bool) bool {
	switch x.(type) {
	case string:
		return true
	case float64, bool:
		return anyValue
	}
	return false
}

func isString(x any) bool { _, ok := x.(string); return ok }

// ValidateValidators reports the problems of a validators policy.
func ValidateValidators(vs []model.ValidatorConfig) []Problem {
	_, problems := parseValidators(vs)
	return problems
}

// TranslateValidators writes the Rego module of a validators policy: allow
// holds when every validator passes; reason names the first that fails.
func TranslateValidators(policyID string, vs []model.ValidatorConfig) (string, error) {
	return translateValidators(strings.TrimPrefix(PolicyPackagePrefix+PolicyPackage(policyID), "data."), policyID, vs)
}

// translateValidators is TranslateValidators into package pkg (without
// "data.").
func translateValidators(pkg, policyID string, vs []model.ValidatorConfig) (string, error) {
	parsed, problems := parseValidators(vs)
	if len(problems) > 0 {
		return "", &ProblemsError{Problems: problems}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# Generated by Gatehouse from the validators of policy %s.\n", lit(policyID))
	fmt.Fprintf(&b, "package %s\n\nimport data.gatehouse.lib.validators as v\n\ndefault allow := false\n\nallow if {\n", pkg)
	for i := range parsed {
		fmt.Fprintf(&b, "\tcheck_%d\n", i)
	}
	b.WriteString("}\n")
	for i, v := range parsed {
		fmt.Fprintf(&b, "\n# validators[%d]: %s\n%s\n", i, v.describe(), v.rule(i))
	}
	for i, v := range parsed {
		prefix := "reason := "
		if i > 0 {
			prefix = "} else := "
		}
		fmt.Fprintf(&b, "\n%s%s if {\n\tnot check_%d\n", prefix, lit(fmt.Sprintf("validator %d of %d (%s) failed", i+1, len(parsed), v.describe())), i)
	}
	b.WriteString("}\n")
	return b.String(), nil
}

func (v validator) describe() string {
	switch v.kind {
	case "true", "false":
		return v.kind
	case "scope":
		return fmt.Sprintf("scope %s of %s", v.match, strings.Join(v.scopes, " "))
	case "method", "path":
		return v.kind + " " + v.comparator
	}
	return fmt.Sprintf("%s %s %s", v.kind, v.name, v.comparator)
}

func (v validator) rule(i int) string {
	head := fmt.Sprintf("check_%d", i)
	switch v.kind {
	case "true":
		return head + " := true"
	case "false":
		return head + " := false"
	case "scope":
		return fmt.Sprintf("%s if v.scope_%s(%s)", head, v.match, lit(v.scopes))
	case "method", "path":
		return fmt.Sprintf("%s if v.%s(%s, %s)", head, v.kind, lit(v.comparator), lit(v.value))
	}
	switch v.comparator {
	case "present", "absent":
		return fmt.Sprintf("%s if v.%s_%s(%s)", head, v.kind, v.comparator, lit(v.name))
	}
	return fmt.Sprintf("%s if v.%s(%s, %s, %s)", head, v.kind, lit(v.name), lit(v.comparator), lit(v.value))
}

// lit renders a JSON value as a Rego literal (Rego's string, number, array
// and boolean literals are JSON's).
func lit(x any) string {
	b, err := json.Marshal(x)
	if err != nil {
		panic(fmt.Sprintf("policies: unencodable literal %T", x))
	}
	return string(b)
}
