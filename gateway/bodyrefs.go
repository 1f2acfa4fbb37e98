package gateway

import (
	"github.com/open-policy-agent/opa/v1/ast"
)

// entrypointPackage is the bundle's pure-Rego entrypoint, which reads the
// whole input to build what policies see; the fast path evaluates policies
// without it.
var entrypointPackage = ast.MustParseRef("data.gatehouse.authz")

// readsParsedBody reports whether any module a policy may evaluate could
// read input.parsed_body: a reference to it, to the whole input, to an
// input member chosen at run time, or to the entrypoint package (which
// passes the whole input on). The fast path parses request bodies only
// when this holds; the answer errs on the side of parsing.
//
// It reads the parsed modules: compilation would move every use of input
// into a local variable (x = input; object.get(x, …)).
func readsParsedBody(modules map[string]*ast.Module) bool {
	// object.get(input, "member", d) is the library's way of reading one
	// member; it is taken at its word only when no module could make
	// "object.get" mean something else (a rule or an import so named).
	trustObjectGet := true
	for _, m := range modules {
		if namesObject(m) {
			trustObjectGet = false
		}
	}
	for _, m := range modules {
		if m.Package != nil && m.Package.Path.Equal(entrypointPackage) {
			continue
		}
		if moduleReadsParsedBody(m, trustObjectGet) {
			return true
		}
	}
	return false
}

// moduleReadsParsedBody applies readsParsedBody's rules to one module. A
// bare input (a variable, before compilation resolves it) counts as the
// whole input.
func moduleReadsParsedBody(m *ast.Module, trustObjectGet bool) bool {
	found := false
	var vis *ast.GenericVisitor
	vis = ast.NewGenericVisitor(func(x any) bool {
		if found {
			return true
		}
		switch v := x.(type) {
		case ast.Call:
			return trustObjectGet && objectGet(vis, v)
		case *ast.Expr:
			// The shortcut for object.get must not skip the expression's
			// with modifiers (with input as input.parsed_body).
			if terms, ok := v.Terms.([]*ast.Term); ok && v.IsCall() && len(v.With) == 0 && trustObjectGet {
				return objectGet(vis, ast.Call(terms))
			}
		case ast.Ref:
			if refReadsParsedBody(v) {
				found = true
				return true
			}
			// A head that is not a variable ([input][0], f(input).x, a
			// comprehension) and nested references (input.a[input.b]).
			if _, isVar := v[0].Value.(ast.Var); !isVar {
				vis.Walk(v[0])
			}
			for _, t := range v[1:] {
				vis.Walk(t)
			}
			return true
		case ast.Var:
			found = v.Equal(ast.InputRootDocument.Value)
			return found
		}
		return false
	})
	vis.Walk(m)
	return found
}

// namesObject reports whether a module defines a rule, or imports a name,
// that a reference starting with "object" could resolve to.
func namesObject(m *ast.Module) bool {
	object := ast.Var("object")
	for _, imp := range m.Imports {
		if imp.Alias == object {
			return true
		}
		if r, ok := imp.Path.Value.(ast.Ref); ok && imp.Alias == "" && len(r) > 0 {
			last := r[len(r)-1].Value
			if s, ok := last.(ast.String); ok && ast.Var(s) == object || last.Compare(object) == 0 {
				return true
			}
		}
	}
	for _, r := range m.Rules {
		if ref := r.Head.Ref(); len(ref) > 0 && ref[0].Value.Compare(object) == 0 {
			return true
		}
	}
	return false
}

// objectGetRef is the object.get builtin.
var objectGetRef = ast.MustParseRef("object.get")

// objectGet walks the arguments of object.get(input, path, default) with a
// constant path other than parsed_body (the library's way of reading input
// members) without counting the input as read whole; it returns false (walk
// on as usual) for any other call.
func objectGet(vis *ast.GenericVisitor, call ast.Call) bool {
	if len(call) != 4 || !isRef(call[0], objectGetRef) {
		return false
	}
	if !isInput(call[1]) {
		return false
	}
	var first ast.Value
	switch p := call[2].Value.(type) {
	case ast.String:
		first = p
	case *ast.Array:
		if p.Len() > 0 && p.IsGround() {
			first = p.Elem(0).Value
		}
	}
	if s, ok := first.(ast.String); !ok || s == "parsed_body" {
		return false
	}
	vis.Walk(call[3])
	return true
}

func isRef(t *ast.Term, r ast.Ref) bool {
	ref, ok := t.Value.(ast.Ref)
	return ok && ref.Equal(r)
}

func isInput(t *ast.Term) bool {
	switch v := t.Value.(type) {
	case ast.Var:
		return v.Equal(ast.InputRootDocument.Value)
	case ast.Ref:
		return len(v) == 1 && v[0].Value.Compare(ast.InputRootDocument.Value) == 0
	}
	return false
}

func refReadsParsedBody(r ast.Ref) bool {
	switch {
	case r.HasPrefix(ast.InputRootRef):
		if len(r) < 2 {
			return true
		}
		s, ok := r[1].Value.(ast.String)
		return !ok || s == "parsed_body"
	case r.HasPrefix(ast.DefaultRootRef):
		// data.gatehouse.authz…, data, data[x], data.gatehouse[x].
		for i := 1; i < len(r) && i < len(entrypointPackage); i++ {
			s, ok := r[i].Value.(ast.String)
			if !ok {
				return true
			}
			if entrypointPackage[i].Value.Compare(s) != 0 {
				return false
			}
		}
		return true
	}
	return false
}
