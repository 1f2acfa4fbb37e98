package policies

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/gatehouse-dev/gatehouse/model"
)

// Policies refer to each other under data.gatehouse.policies, by the
// stable name — the policy's id, data.gatehouse.policies["<id>"] — or by
// the generated package name (data.gatehouse.policies.<pkg>, PolicyPackage),
// which is what bundles carry. The compiler rewrites every static
// reference by id into the package name, in place and on the same line,
// so a stock OPA, the authorizer and the policy tests all evaluate the
// same Rego (docs/bundles.md, "Policies that use other policies").
//
// A segment after data.gatehouse.policies names, in order:
//
//   - written as a string ("<id>", the stable form): the policy with that
//     id; else the policy with that package name (Rego does not tell
//     ["p_x"] from .p_x);
//   - written as a name (.<name>): the policy with that package name; else
//     the policy with that id (ids that are Rego names: .admins).
//
// A segment that is not static (data.gatehouse.policies[x]) is left alone.

// policiesPrefix is data.gatehouse.policies as a reference.
var policiesPrefix = ast.MustParseRef("data.gatehouse.policies")

// policyNames resolves the names a tenant's policies go by.
type policyNames struct {
	ids  map[string]bool   // the policy ids
	pkgs map[string]string // package name → policy id
}

// namesOf are the names of all (nil when the tenant is not known: a
// stable name then resolves to its id whether or not such a policy
// exists).
func namesOf(all []Object[model.PolicySpec]) *policyNames {
	n := &policyNames{ids: make(map[string]bool, len(all)), pkgs: make(map[string]string, len(all))}
	for _, p := range all {
		n.ids[p.ID] = true
		n.pkgs[PolicyPackage(p.ID)] = p.ID
	}
	return n
}

// resolve returns the policy id a static segment names and whether the
// segment must be rewritten (it names the policy by id); ok is false when
// it names no policy of the tenant.
func (n *policyNames) resolve(seg string, quoted bool) (id string, byID, ok bool) {
	if n == nil {
		if quoted {
			return seg, true, true
		}
		return "", false, false
	}
	pkgID, isPkg := n.pkgs[seg]
	switch {
	case quoted && n.ids[seg]:
		return seg, true, true
	case isPkg:
		return pkgID, false, true
	case n.ids[seg]:
		return seg, true, true
	}
	return "", false, false
}

// policyRef is one reference of a module under data.gatehouse.policies
// (or to a part of data that holds it).
type policyRef struct {
	// ref is the reference and loc where it is.
	ref ast.Ref
	loc *ast.Location
	// name is the policy segment when it is static ("" when dynamic:
	// data.gatehouse.policies[x], the whole of data.gatehouse.policies or
	// of a document above it); quoted says it is written as a string, seg
	// locates it.
	name   string
	quoted bool
	seg    *ast.Location
	// bareImport is the import whose path ends with the segment and that
	// has no alias (its name is the segment, which a rewrite must keep).
	bareImport *ast.Import
}

// dynamic says the reference may reach any policy.
func (r policyRef) dynamic() bool { return r.name == "" }

// String names the policy reference in messages.
func (r policyRef) String() string {
	if r.dynamic() {
		return r.ref.String()
	}
	return fmt.Sprintf("data.gatehouse.policies[%q]", r.name)
}

// policyRefs returns m's references to other policies, in source order
// (each once).
func policyRefs(m *ast.Module) []policyRef {
	var out []policyRef
	seen := map[int]bool{}
	visit := func(r ast.Ref, imp *ast.Import, loc *ast.Location) {
		pr, ok := classifyRef(r)
		if !ok {
			return
		}
		pr.loc = loc
		key := -1
		if pr.seg != nil {
			key = pr.seg.Offset
		} else if pr.loc != nil {
			key = -2 - pr.loc.Offset
		}
		if key != -1 && seen[key] {
			return
		}
		seen[key] = true
		if imp != nil && imp.Alias == "" && len(r) == len(policiesPrefix)+1 && !pr.dynamic() {
			pr.bareImport = imp
		}
		out = append(out, pr)
	}
	imported := map[ast.Var]ast.Ref{} // import name → its path, under data
	for _, imp := range m.Imports {
		if r, ok := imp.Path.Value.(ast.Ref); ok {
			visit(r, imp, imp.Path.Location)
			if r[0].Equal(ast.DefaultRootDocument) {
				imported[imp.Name()] = r
			}
		}
	}
	for _, rule := range m.Rules {
		ast.WalkRefs(rule, func(r ast.Ref) bool {
			if v, ok := r[0].Value.(ast.Var); ok && !r[0].Equal(ast.DefaultRootDocument) {
				if path, ok := imported[v]; ok { // an imported name stands for its path
					loc := r[0].Location
					r = append(append(ast.Ref(nil), path...), r[1:]...)
					visit(r, nil, loc)
					return false
				}
			}
			visit(r, nil, r[0].Location)
			return false
		})
	}
	sort.SliceStable(out, func(i, j int) bool { return offsetOf(out[i].loc) < offsetOf(out[j].loc) })
	return out
}

func offsetOf(l *ast.Location) int {
	if l == nil {
		return -1
	}
	return l.Offset
}

// classifyRef reads a reference: ok is false when it cannot reach a
// policy (it is not under data, or under data but beside
// data.gatehouse.policies).
func classifyRef(r ast.Ref) (policyRef, bool) {
	if len(r) == 0 || !r[0].Equal(ast.DefaultRootDocument) {
		return policyRef{}, false
	}
	pr := policyRef{ref: r, loc: r[0].Location}
	for i := 1; i < len(policiesPrefix); i++ {
		if len(r) <= i {
			return pr, true // data or data.gatehouse as a whole
		}
		s, ok := r[i].Value.(ast.String)
		if !ok {
			return pr, true // data[x]…: any document, policies included
		}
		if string(s) != string(policiesPrefix[i].Value.(ast.String)) {
			return policyRef{}, false
		}
	}
	if len(r) == len(policiesPrefix) {
		return pr, true // data.gatehouse.policies as a whole
	}
	s, ok := r[len(policiesPrefix)].Value.(ast.String)
	if !ok {
		return pr, true
	}
	pr.name, pr.seg = string(s), r[len(policiesPrefix)].Location
	if pr.seg != nil && len(pr.seg.Text) > 0 {
		pr.quoted = pr.seg.Text[0] == '"' || pr.seg.Text[0] == '`'
	}
	return pr, true
}

// edit replaces src[off:off+n] with text.
type edit struct {
	off, n int
	text   string
}

// sourceMap maps positions in a rewritten source back to the author's.
type sourceMap struct {
	orig, out string
	edits     []edit // sorted by off, not overlapping
}

// apply writes src with edits (sorted, not overlapping) applied.
func applyEdits(src string, edits []edit) (string, *sourceMap) {
	sort.Slice(edits, func(i, j int) bool { return edits[i].off < edits[j].off })
	var b strings.Builder
	at := 0
	for _, e := range edits {
		b.WriteString(src[at:e.off])
		b.WriteString(e.text)
		at = e.off + e.n
	}
	b.WriteString(src[at:])
	return b.String(), &sourceMap{orig: src, out: b.String(), edits: edits}
}

// position maps a 1-based row and column of the rewritten source to the
// author's (a position inside a rewritten span maps to its start).
func (m *sourceMap) position(row, col int) (int, int) {
	if m == nil || row <= 0 {
		return row, col
	}
	off := offsetAt(m.out, row, col)
	delta := 0
	for _, e := range m.edits {
		start := e.off + delta // where the edit's text starts in out
		if off < start {
			break
		}
		if off < start+len(e.text) {
			off = start
			break
		}
		delta += len(e.text) - e.n
	}
	return rowColAt(m.orig, off-delta)
}

// offsetAt is the byte offset of a 1-based row and column in s.
func offsetAt(s string, row, col int) int {
	off := 0
	for r := 1; r < row; r++ {
		i := strings.IndexByte(s[off:], '\n')
		if i < 0 {
			return len(s)
		}
		off += i + 1
	}
	return min(off+max(col-1, 0), len(s))
}

// rowColAt is the 1-based row and column of a byte offset of s.
func rowColAt(s string, off int) (int, int) {
	off = min(max(off, 0), len(s))
	row := 1 + strings.Count(s[:off], "\n")
	return row, off - strings.LastIndexByte(s[:off], '\n')
}

// refEdits returns the edits that make m's references by id use package
// names, and a problem for each reference by id that cannot be rewritten
// in place (spread over lines). Only static references that names
// resolves by id change.
func refEdits(src string, refs []policyRef, names *policyNames) ([]edit, []Problem) {
	var edits []edit
	var problems []Problem
	for _, r := range refs {
		if r.dynamic() || r.seg == nil {
			continue
		}
		id, byID, ok := names.resolve(r.name, r.quoted)
		if !ok || !byID {
			continue
		}
		start, end := r.seg.Offset, r.seg.Offset+len(r.seg.Text)
		if end > len(src) || src[start:end] != string(r.seg.Text) {
			problems = append(problems, refProblem(r, "rego_policy_ref", "cannot locate this reference in the source"))
			continue
		}
		text := PolicyPackage(id)
		if r.quoted { // ["<id>"] becomes .<pkg>
			lb := start - 1
			for lb >= 0 && isSpace(src[lb]) {
				lb--
			}
			rb := end
			for rb < len(src) && isSpace(src[rb]) {
				rb++
			}
			if lb < 0 || src[lb] != '[' || rb >= len(src) || src[rb] != ']' {
				problems = append(problems, refProblem(r, "rego_policy_ref", "cannot locate this reference in the source"))
				continue
			}
			start, end, text = lb, rb+1, "."+text
		}
		if strings.ContainsRune(src[start:end], '\n') {
			problems = append(problems, refProblem(r, "rego_policy_ref",
				fmt.Sprintf("write the reference to policy %q on one line", id)))
			continue
		}
		if r.bareImport != nil && validVar(r.name) {
			text += " as " + r.name // the import keeps the name it had
		}
		edits = append(edits, edit{off: start, n: end - start, text: text})
	}
	return edits, problems
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// validVar says whether s can be a Rego variable (an import's name).
func validVar(s string) bool {
	if s == "" || ast.IsKeyword(s) {
		return false
	}
	for i, c := range s {
		letter := c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
		if !letter && (i == 0 || c < '0' || c > '9') {
			return false
		}
	}
	return true
}

func refProblem(r policyRef, code, msg string) Problem {
	p := Problem{Code: code, Message: r.String() + ": " + msg}
	loc := r.seg
	if loc == nil {
		loc = r.loc
	}
	if loc != nil {
		p.Line, p.Column = loc.Row, loc.Col
	}
	return p
}

// rewriteRego is the bundle module of a Rego policy: src (parsed as m)
// with its package line naming pkg (without "data."; "" keeps it) and its
// references by id using package names, every other line as the author
// wrote it. A reference it cannot rewrite in place stays as written
// (refProblems reports it).
func rewriteRego(src string, m *ast.Module, pkg string, names *policyNames) (string, *sourceMap, error) {
	var edits []edit
	if pkg != "" {
		first, last := m.Package.Path[1].Location, m.Package.Path[len(m.Package.Path)-1].Location
		if first == nil || last == nil || last.Offset+len(last.Text) > len(src) || src[last.Offset:last.Offset+len(last.Text)] != string(last.Text) {
			return "", nil, errors.New("cannot locate the package name in the source")
		}
		// "package a.b" is replaced from a to b.
		edits = append(edits, edit{off: first.Offset, n: last.Offset + len(last.Text) - first.Offset, text: pkg})
	}
	refEd, _ := refEdits(src, policyRefs(m), names)
	out, sm := applyEdits(src, append(edits, refEd...))
	return out, sm, nil
}

// referencedPolicies are the ids of the tenant's policies a module's
// references name statically (sorted) and whether it refers to
// policies dynamically (it may reach any).
func referencedPolicies(refs []policyRef, names *policyNames) (ids []string, dynamic bool) {
	set := map[string]bool{}
	for _, r := range refs {
		if r.dynamic() {
			dynamic = true
			continue
		}
		if id, _, ok := names.resolve(r.name, r.quoted); ok {
			set[id] = true
		}
	}
	for id := range set {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids, dynamic
}

// policyGraph is who refers to whom among a tenant's policies.
type policyGraph struct {
	names *policyNames
	edges map[string][]string // id → the ids it names statically
	// dynamic are the policies with a reference that may reach any.
	dynamic map[string]bool
}

// newPolicyGraph reads the references of every Rego policy of all.
// Policies that do not parse have no edges (they are left out of bundles).
// Without full, only the policies whose source has the word "policies"
// are read, which is every policy with a static reference to another
// (enough for cycles; not for closures, since a dynamic reference may be
// written without it).
func newPolicyGraph(all []Object[model.PolicySpec], full bool) *policyGraph {
	g := &policyGraph{names: namesOf(all), edges: map[string][]string{}, dynamic: map[string]bool{}}
	for _, p := range all {
		if p.Spec.Language != model.LanguageRego || (!full && !strings.Contains(p.Spec.Definition, "policies")) {
			continue
		}
		m, err := ast.ParseModuleWithOpts(policyFile, p.Spec.Definition, parserOptions)
		if err != nil {
			continue
		}
		g.edges[p.ID], g.dynamic[p.ID] = referencedPolicies(policyRefs(m), g.names)
	}
	return g
}

// closure is the set of policies id needs, itself included; every policy
// when one of them refers to policies dynamically.
func (g *policyGraph) closure(id string) map[string]bool {
	need := map[string]bool{}
	queue := []string{id}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		if need[cur] || !g.names.ids[cur] {
			continue
		}
		need[cur] = true
		if g.dynamic[cur] {
			for other := range g.names.ids {
				need[other] = true
			}
			return need
		}
		queue = append(queue, g.edges[cur]...)
	}
	return need
}

// cycleFrom returns a path id → … → id along static references (nil when
// there is none).
func (g *policyGraph) cycleFrom(id string) []string {
	visited := map[string]bool{}
	var path []string
	var walk func(cur string) bool
	walk = func(cur string) bool {
		path = append(path, cur)
		for _, next := range g.edges[cur] {
			if next == id {
				path = append(path, next)
				return true
			}
			if !visited[next] {
				visited[next] = true
				if walk(next) {
					return true
				}
			}
		}
		path = path[:len(path)-1]
		return false
	}
	if walk(id) {
		return path
	}
	return nil
}
