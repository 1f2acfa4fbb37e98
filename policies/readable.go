package policies

import (
	"github.com/open-policy-agent/opa/v1/ast"
)

// readableData returns the part of data that evaluating the queries can
// read: the base documents under the ground prefix of every reference to
// data in the modules the queries reach. A module is reached when a
// reference's ground prefix and its package are one a prefix of the other
// (so a reference with a variable, data.gatehouse.lib[x], reaches every
// module under it); its rules' references are then followed in turn. The
// result keeps, whole, the subtree of data at each such prefix (up to the
// first key that is not a string or the first value that is not an
// object), and the objects on the way to it, so every reference the
// queries can evaluate reads what it reads in data. A bare data (or a
// reference whose ground prefix is data) keeps everything.
func readableData(c *ast.Compiler, queries []ast.Ref, data map[string]any) map[string]any {
	keep := &keepNode{}
	reached := map[*ast.Module]bool{}
	pending := append([]ast.Ref(nil), queries...)
	for len(pending) > 0 {
		p := pending[len(pending)-1].GroundPrefix()
		pending = pending[:len(pending)-1]
		keep.add(p[1:])
		for _, m := range c.Modules {
			if reached[m] || !(p.HasPrefix(m.Package.Path) || m.Package.Path.HasPrefix(p)) {
				continue
			}
			reached[m] = true
			pending = append(pending, dataRefs(m)...)
		}
	}
	out, _ := keep.materialize(data).(map[string]any)
	if out == nil {
		out = map[string]any{}
	}
	return out
}

// dataRefs returns the references to data in a module's rules.
func dataRefs(m *ast.Module) []ast.Ref {
	var out []ast.Ref
	var vis *ast.GenericVisitor
	vis = ast.NewGenericVisitor(func(x any) bool {
		switch x := x.(type) {
		case ast.Ref:
			if len(x) == 0 {
				return true
			}
			if x[0].Equal(ast.DefaultRootDocument) {
				out = append(out, x)
			}
			// The head is a variable (data, input, a local) or a term
			// of its own (a call) to look into.
			if _, isVar := x[0].Value.(ast.Var); !isVar {
				vis.Walk(x[0])
			}
			for _, t := range x[1:] {
				vis.Walk(t)
			}
			return true
		case ast.Var:
			if x.Equal(ast.DefaultRootDocument.Value) {
				out = append(out, ast.DefaultRootRef)
			}
		}
		return false
	})
	for _, r := range m.Rules {
		vis.Walk(r)
	}
	return out
}

// keepNode is the part of a data document to keep: all of it, or the
// listed members (each partly).
type keepNode struct {
	all  bool
	kids map[string]*keepNode
}

// add keeps the document at path (a ground reference without its head).
func (n *keepNode) add(path ast.Ref) {
	for ; !n.all; path = path[1:] {
		key, isString := ast.Value(nil), false
		if len(path) > 0 {
			key = path[0].Value
			_, isString = key.(ast.String)
		}
		if !isString {
			n.all, n.kids = true, nil
			return
		}
		if n.kids == nil {
			n.kids = map[string]*keepNode{}
		}
		k := string(key.(ast.String))
		child := n.kids[k]
		if child == nil {
			child = &keepNode{}
			n.kids[k] = child
		}
		n = child
	}
}

// materialize is the kept part of v: v itself when all of it is kept or it
// is not an object, else a new object of the kept members v has.
func (n *keepNode) materialize(v any) any {
	obj, ok := v.(map[string]any)
	if n.all || !ok {
		return v
	}
	out := make(map[string]any, len(n.kids))
	for k, kid := range n.kids {
		if cv, ok := obj[k]; ok {
			out[k] = kid.materialize(cv)
		}
	}
	return out
}
