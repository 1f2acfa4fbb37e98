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
// to) and collects the input references of every rule the policy's
// package depends on, through OPA's dependency graph (functions of the
// library included). It errs on the side of reading: a reference whose
// key is a variable reads every member, a bare input (passed to a
// function, compared whole) reads it all.
func policyInputReads(ctx context.Context, compiled *Compiled, closure map[string]bool, policyID string) (inputReads, error) {
	mods := map[string]*ast.Module{}
	for _, m := range compiled.Modules {
		if strings.HasPrefix(m.Path, Root+"/policies/") && !closure[m.Path] {
			continue
		}
		pm, err := ast.ParseModuleWithOpts(m.Path, m.Source, parserOptions)
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", m.Path, err)
		}
		mods[m.Path] = pm
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
		reads = append(reads, ruleInputReads(r)...)
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

// ruleInputReads are the input references of one rule (its head, body
// and with modifiers; not its else branches).
func ruleInputReads(r *ast.Rule) inputReads {
	var reads inputReads
	var vis *ast.GenericVisitor
	vis = ast.NewGenericVisitor(func(x any) bool {
		switch v := x.(type) {
		case *ast.Rule:
			if v != r {
				return true // an else branch: its own rule
			}
		case ast.Ref:
			if v[0].Value.Compare(ast.InputRootDocument.Value) == 0 {
				reads = append(reads, refPath(v))
			} else if _, isVar := v[0].Value.(ast.Var); !isVar {
				vis.Walk(v[0])
			}
			for _, t := range v[1:] {
				vis.Walk(t)
			}
			return true
		case ast.Var:
			if v.Equal(ast.InputRootDocument.Value) {
				reads = append(reads, []string{})
			}
		}
		return false
	})
	vis.Walk(r)
	return reads
}

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
