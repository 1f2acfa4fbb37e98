package policies

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
)

// What a draft may read of its input, found once per replay, so that the
// replay can say which logged decisions it judged on fields the decision
// log masked or erased (ReplayMasked.Read).

// inputReads are the parts of the input a policy's rules may read: each
// a path into input whose "" elements stand for any member (a key chosen
// at run time); an empty path is the whole input.
type inputReads [][]string

// policyInputReads compiles the modules of a bundle the policy needs
// (those Tester.Prepare compiles: the library and the policies it refers
// to), finds the rules the policy's package depends on through OPA's
// dependency graph (functions of the library included), and collects the
// input references of those rules as written — compilation moves uses of
// input into local variables (x = input; object.get(x, …)), so the rules
// are read in a second, uncompiled copy of the modules, found by their
// location. It errs on the side of reading: a reference whose key is a
// variable reads every member, a bare input (passed to a function,
// compared whole) reads it all.
func policyInputReads(ctx context.Context, compiled *Compiled, closure map[string]bool, policyID string) (inputReads, error) {
	mods := map[string]*ast.Module{}
	written := map[string]*ast.Rule{}
	aliases := map[string]map[ast.Var][]string{}
	for _, m := range compiled.Modules {
		if strings.HasPrefix(m.Path, Root+"/policies/") && !closure[m.Path] {
			continue
		}
		pm, err := ast.ParseModuleWithOpts(m.Path, m.Source, parserOptions)
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", m.Path, err)
		}
		mods[m.Path] = pm
		copied, err := ast.ParseModuleWithOpts(m.Path, m.Source, parserOptions)
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", m.Path, err)
		}
		ast.WalkRules(copied, func(r *ast.Rule) bool {
			written[ruleKey(r)] = r
			return false
		})
		aliases[m.Path] = inputImports(copied)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c, err := compileModules(mods, compiled.Data)
	if err != nil {
		return nil, err
	}
	seen := map[*ast.Rule]bool{}
	queue := c.GetRulesWithPrefix(ast.MustParseRef(PolicyPackagePrefix + PolicyPackage(policyID)))
	var reads inputReads
	for len(queue) > 0 {
		r := queue[len(queue)-1]
		queue = queue[:len(queue)-1]
		if seen[r] {
			continue
		}
		seen[r] = true
		if w, ok := written[ruleKey(r)]; ok {
			reads = append(reads, ruleInputReads(w, aliases[r.Location.File])...)
		} else {
			reads = append(reads, ruleInputReads(r, nil)...)
		}
		for dep := range c.Graph.Dependencies(r) {
			if d, ok := dep.(*ast.Rule); ok && !seen[d] {
				queue = append(queue, d)
			}
		}
		if r.Else != nil {
			queue = append(queue, r.Else)
		}
	}
	return reads.compact(), nil
}

// ruleKey identifies a rule by where it is written.
func ruleKey(r *ast.Rule) string {
	if r.Location == nil {
		return ""
	}
	return fmt.Sprintf("%s:%d:%d", r.Location.File, r.Location.Row, r.Location.Col)
}

// inputImports are a module's imports of input (import input.a.b as x):
// alias → path.
func inputImports(m *ast.Module) map[ast.Var][]string {
	out := map[ast.Var][]string{}
	for _, imp := range m.Imports {
		ref, ok := imp.Path.Value.(ast.Ref)
		if !ok || ref[0].Value.Compare(ast.InputRootDocument.Value) != 0 {
			continue
		}
		alias := imp.Alias
		if alias == "" {
			if len(ref) == 1 {
				alias = ast.Var("input")
			} else if s, ok := ref[len(ref)-1].Value.(ast.String); ok {
				alias = ast.Var(s)
			}
		}
		out[alias] = refPath(ref)
	}
	return out
}

// ruleInputReads are the input references of one rule (its head, body
// and with modifiers; not its else branches), aliases its module's
// imports of input. object.get(input…, key, d), the library's way of
// reading a member, reads input…[key] (object.get is the built-in: a rule
// or an import cannot take its name).
func ruleInputReads(r *ast.Rule, aliases map[ast.Var][]string) inputReads {
	var reads inputReads
	var vis *ast.GenericVisitor
	// inputPath is the input path a term reads (false when it reads none):
	// input, an alias of an input import, a reference from either.
	inputPath := func(t *ast.Term) ([]string, bool) {
		switch x := t.Value.(type) {
		case ast.Var:
			if x.Equal(ast.InputRootDocument.Value) {
				return []string{}, true
			}
			if p, ok := aliases[x]; ok {
				return slices.Clone(p), true
			}
		case ast.Ref:
			if base, ok := aliasOrInput(x[0].Value, aliases); ok {
				return append(base, refPath(x)...), true
			}
		}
		return nil, false
	}
	objectGet := func(call []*ast.Term) bool {
		if (len(call) != 4 && len(call) != 5) || !call[0].Equal(objectGetRef) {
			return false
		}
		base, ok := inputPath(call[1])
		if !ok {
			return false
		}
		switch k := call[2].Value.(type) {
		case ast.String:
			base = append(base, string(k))
		case *ast.Array:
			for i := range k.Len() {
				s, _ := k.Elem(i).Value.(ast.String)
				base = append(base, string(s)) // "" (any) for a key that is not a string
			}
		default:
			base = append(base, "")
		}
		reads = append(reads, base)
		if ref, ok := call[1].Value.(ast.Ref); ok {
			for _, t := range ref[1:] {
				vis.Walk(t)
			}
		}
		for _, t := range call[2:] {
			vis.Walk(t) // the default, and the output of a compiled call
		}
		return true
	}
	vis = ast.NewGenericVisitor(func(x any) bool {
		switch v := x.(type) {
		case *ast.Rule:
			if v != r {
				return true // an else branch: its own rule
			}
		case ast.Call:
			return objectGet(v)
		case *ast.Expr:
			if terms, ok := v.Terms.([]*ast.Term); ok && v.IsCall() && len(v.With) == 0 {
				return objectGet(terms)
			}
		case ast.Ref:
			if base, ok := aliasOrInput(v[0].Value, aliases); ok {
				reads = append(reads, append(base, refPath(v)...))
			} else if _, isVar := v[0].Value.(ast.Var); !isVar {
				vis.Walk(v[0])
			}
			for _, t := range v[1:] {
				vis.Walk(t)
			}
			return true
		case ast.Var:
			if base, ok := aliasOrInput(v, aliases); ok {
				reads = append(reads, base)
			}
		}
		return false
	})
	vis.Walk(r)
	return reads
}

// aliasOrInput is the input path of a reference's head: input itself, or
// an alias of an import of input.
func aliasOrInput(head ast.Value, aliases map[ast.Var][]string) ([]string, bool) {
	v, ok := head.(ast.Var)
	switch {
	case !ok:
		return nil, false
	case v.Equal(ast.InputRootDocument.Value):
		return []string{}, true
	}
	p, ok := aliases[v]
	return slices.Clone(p), ok
}

// objectGetRef is the built-in object.get.
var objectGetRef = ast.RefTerm(ast.VarTerm("object"), ast.StringTerm("get"))

// refPath is the path of a reference into input: its string members,
// "" for any other (a variable, a number).
func refPath(ref ast.Ref) []string {
	out := make([]string, 0, len(ref)-1)
	for _, t := range ref[1:] {
		s, ok := t.Value.(ast.String)
		if !ok {
			out = append(out, "")
			continue
		}
		out = append(out, string(s))
	}
	return out
}

// compact sorts and deduplicates the paths.
func (r inputReads) compact() inputReads {
	slices.SortFunc(r, func(a, b []string) int { return slices.Compare(a, b) })
	return slices.CompactFunc(r, func(a, b []string) bool { return slices.Equal(a, b) })
}

// touching returns the reads that may read the field at pointer (tokens
// of a JSON pointer into input): a read of it, of something inside it, or
// of an object it is in.
func (r inputReads) touching(pointer []string) [][]string {
	var out [][]string
	for _, path := range r {
		n := min(len(path), len(pointer))
		match := true
		for i := range n {
			if path[i] != "" && path[i] != pointer[i] {
				match = false
				break
			}
		}
		if match {
			out = append(out, path)
		}
	}
	return out
}

// renderRead writes a read as Rego: input.a.b[_].
func renderRead(path []string) string {
	var b strings.Builder
	b.WriteString("input")
	for _, p := range path {
		switch {
		case p == "":
			b.WriteString("[_]")
		case ast.IsVarCompatibleString(p) && !ast.IsKeyword(p):
			b.WriteString("." + p)
		default:
			b.WriteString("[" + strconv.Quote(p) + "]")
		}
	}
	return b.String()
}
