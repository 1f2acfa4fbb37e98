package policies

import (
	"fmt"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/types"
)

// The members of a policy's result that have a meaning for the gateway
// (gateway/engine.go's evalPolicy, the bundle's authz.rego) and the types
// they must have; a member of another type is ignored by both (allow is
// then false, the others as if absent), so a policy that defines one is
// refused when it is saved, with the rule's line (docs/bundles.md,
// "Writing a Rego policy").
var resultMembers = []struct {
	name string
	// what is the required type, for messages; fits says whether one
	// possible type of the member can be it.
	what string
	fits func(types.Type) bool
}{
	{"allow", "a boolean", func(t types.Type) bool { return types.Compare(t, types.B) == 0 }},
	{"http_status", "a number (an HTTP status)", func(t types.Type) bool { return types.Compare(t, types.N) == 0 }},
	{"reason", "a string", func(t types.Type) bool { return types.Compare(t, types.S) == 0 }},
	{"body", "a string", func(t types.Type) bool { return types.Compare(t, types.S) == 0 }},
	{"headers", "an object of header names to strings (or arrays of strings)", headersFit},
	{"response_headers_to_add", "an object of header names to strings (or arrays of strings)", headersFit},
	{"request_headers_to_remove", "an array of header names", func(t types.Type) bool { _, ok := t.(*types.Array); return ok }},
	{"dynamic_metadata", "an object", func(t types.Type) bool { _, ok := t.(*types.Object); return ok }},
}

// headersFit says whether t can be a headers object: an object whose
// values can be strings or arrays.
func headersFit(t types.Type) bool {
	obj, ok := t.(*types.Object)
	if !ok {
		return false
	}
	value := func(v types.Type) bool {
		return anyFits(v, func(x types.Type) bool {
			_, arr := x.(*types.Array)
			return arr || types.Compare(x, types.S) == 0
		})
	}
	for _, p := range obj.StaticProperties() {
		if !value(p.Value) {
			return false
		}
	}
	if d := obj.DynamicProperties(); d != nil && !value(d.Value) {
		return false
	}
	return true
}

// alternatives are the types t may be (nil when t is unknown: any value).
func alternatives(t types.Type) []types.Type {
	a, ok := t.(types.Any)
	if !ok {
		return []types.Type{t}
	}
	if len(a) == 0 {
		return nil
	}
	var out []types.Type
	for _, x := range a {
		alt := alternatives(x)
		if alt == nil {
			return nil
		}
		out = append(out, alt...)
	}
	return out
}

// anyFits says whether some value of type t fits (always when t is
// unknown).
func anyFits(t types.Type, fits func(types.Type) bool) bool {
	alt := alternatives(t)
	if alt == nil {
		return true
	}
	for _, x := range alt {
		if fits(x) {
			return true
		}
	}
	return false
}

// allFit says whether every value of type t fits (never when t is
// unknown).
func allFit(t types.Type, fits func(types.Type) bool) bool {
	alt := alternatives(t)
	if alt == nil {
		return false
	}
	for _, x := range alt {
		if !fits(x) {
			return false
		}
	}
	return true
}

// resultTypeProblems checks the types comp inferred for the members of
// the policy in package pkg (a data reference), whose user module is m:
// a member none of whose possible values has the type it needs is
// refused. With strict, allow must be boolean whatever happens (a value
// of unknown type, such as input.x, is refused too): strict needs the
// policies m refers to compiled alongside, since their rules' types flow
// into m's.
func resultTypeProblems(comp *ast.Compiler, m *ast.Module, pkg string, strict bool) []Problem {
	base := ast.MustParseRef(pkg)
	var out []Problem
	for _, member := range resultMembers {
		rules := rulesNamed(m, member.name)
		if len(rules) == 0 {
			continue
		}
		t := comp.TypeEnv.Get(base.Append(ast.StringTerm(member.name)))
		if t == nil {
			continue
		}
		var why string
		switch {
		case isFunction(rules):
			why = fmt.Sprintf("%s must be a rule holding %s, not a function", member.name, member.what)
		case !anyFits(t, member.fits):
			why = fmt.Sprintf("%s must be %s, but it is %s", member.name, member.what, types.Sprint(t))
		case strict && member.name == "allow" && !allFit(t, member.fits):
			why = fmt.Sprintf("allow must be a boolean, but it can be %s: a value of unknown type (from input, data or a function) is not enough; compare it (allow if x == true)",
				types.Sprint(t))
		default:
			continue
		}
		loc := rules[0].Location
		p := Problem{Code: "rego_result_type", Message: why}
		if loc != nil {
			p.Line, p.Column = loc.Row, loc.Col
		}
		out = append(out, p)
	}
	return out
}

// isFunction says whether the rules define a function (allow(x) := …).
func isFunction(rules []*ast.Rule) bool {
	for _, r := range rules {
		if len(r.Head.Args) > 0 {
			return true
		}
	}
	return false
}
