package policies

import (
	"fmt"
	"slices"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/gatehouse-dev/gatehouse/model"
)

// CheckInTenant returns the problems of a policy about to be saved in a
// tenant whose policies are tenant (the stored version of policyID, if
// any, is replaced by spec): Check's, then its references to other
// policies (a policy id the tenant does not have, a cycle), its compile
// together with the policies it refers to, the types of its result
// members there (allow must be boolean) and its tests module compiled in
// the same company. None means it can be saved. It runs no test
// (Tester.RunTests does) and reads only the policies, so a tenant can
// never reach another's.
func (c *Checker) CheckInTenant(policyID string, spec *model.PolicySpec, tenant []Object[model.PolicySpec]) []Problem {
	if problems := c.Check(policyID, spec); len(problems) > 0 {
		return problems
	}
	return c.checkInTenant(policyID, spec, newTenantPolicies(policyID, spec, tenant))
}

// CheckPoliciesInTenant is CheckInTenant for the policies ids of all, a
// tenant's whole set of policies (a configuration import), each of which
// a Checker's Check accepts already: their problems by policy id (none:
// absent). Since Check held them to the operator's built-ins, these
// checks compile with every built-in available.
func CheckPoliciesInTenant(all []Object[model.PolicySpec], ids []string) (map[string][]Problem, error) {
	c, err := NewChecker(DeniedBuiltins()...)
	if err != nil {
		return nil, err
	}
	tp := &tenantPolicies{all: all, names: namesOf(all), graph: newPolicyGraph(all, true)}
	out := map[string][]Problem{}
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	for i := range all {
		if p := &all[i]; want[p.ID] {
			if problems := c.checkInTenant(p.ID, &p.Spec, tp); len(problems) > 0 {
				out[p.ID] = problems
			}
		}
	}
	return out, nil
}

// CheckReferences returns the problems of a policy's references to the
// other policies of its tenant (the stored version of policyID replaced
// by spec): a policy id the tenant does not have, a cycle. It is the part
// of CheckInTenant that concurrent writes of other policies can change,
// cheap enough to run again in the write's transaction.
func CheckReferences(policyID string, spec *model.PolicySpec, tenant []Object[model.PolicySpec]) []Problem {
	if spec.Language != model.LanguageRego {
		return nil
	}
	m, err := ast.ParseModuleWithOpts(policyFile, spec.Definition, parserOptions)
	if err != nil {
		return astProblems(err)
	}
	all := make([]Object[model.PolicySpec], 0, len(tenant)+1)
	for _, p := range tenant {
		if p.ID != policyID {
			all = append(all, p)
		}
	}
	all = append(all, Object[model.PolicySpec]{ID: policyID, Name: policyID, Spec: *spec})
	g := newPolicyGraph(all, false)
	refs := policyRefs(m)
	problems := unknownRefs(refs, g.names)
	if cycle := g.cycleFrom(policyID); cycle != nil {
		problems = append(problems, cycleProblem(refs, g.names, cycle))
	}
	return problems
}

func (c *Checker) checkInTenant(policyID string, spec *model.PolicySpec, tp *tenantPolicies) []Problem {
	if spec.Language == model.LanguageRego {
		if problems := c.checkRegoInTenant(policyID, spec, tp); len(problems) > 0 {
			return problems
		}
	}
	return c.checkTests(policyID, spec, tp)
}

func (c *Checker) checkRegoInTenant(policyID string, spec *model.PolicySpec, tp *tenantPolicies) []Problem {
	m, err := ast.ParseModuleWithOpts(policyFile, spec.Definition, parserOptions)
	if err != nil {
		return astProblems(err) // Check parsed it
	}
	refs := policyRefs(m)
	problems := unknownRefs(refs, tp.names)
	_, notInPlace := refEdits(spec.Definition, refs, tp.names)
	problems = append(problems, notInPlace...)
	if cycle := tp.graph.cycleFrom(policyID); cycle != nil {
		problems = append(problems, cycleProblem(refs, tp.names, cycle))
	}
	if len(problems) > 0 {
		return problems
	}
	if p := closureSizeProblem(policyID, tp); p != nil {
		return []Problem{*p}
	}
	pkg := strings.TrimPrefix(PolicyPackagePrefix+PolicyPackage(policyID), "data.")
	src, _, sm, err := policyModuleAt(policyID, spec, pkg, tp.names)
	if err != nil {
		return astProblems(err)
	}
	pm, err := ast.ParseModuleWithOpts(policyFile, src, parserOptions)
	if err != nil {
		return compileProblems(err, map[string]*sourceMap{policyFile: sm})
	}
	mods := map[string]*ast.Module{policyFile: pm}
	need := tp.needed(refs)
	delete(need, policyID)
	tp.modules(mods, need)
	comp, err := c.compileParsed(mods)
	if err != nil {
		return compileProblems(err, map[string]*sourceMap{policyFile: sm})
	}
	return resultTypeProblems(comp, m, PolicyPackagePrefix+PolicyPackage(policyID), true)
}

// unknownRefs are the static references that name no policy of the
// tenant.
func unknownRefs(refs []policyRef, names *policyNames) []Problem {
	var out []Problem
	for _, r := range refs {
		if r.dynamic() {
			continue
		}
		if _, _, ok := names.resolve(r.name, r.quoted); !ok {
			out = append(out, refProblem(r, "rego_policy_unknown",
				fmt.Sprintf("this tenant has no policy %q (policies are named by id: data.gatehouse.policies[\"<id>\"])", r.name)))
		}
	}
	return out
}

// cycleProblem is the problem of a cycle path[0] → … → path[0], at the
// reference of the policy that starts it.
func cycleProblem(refs []policyRef, names *policyNames, path []string) Problem {
	msg := fmt.Sprintf("policies may not refer to each other in a cycle: %s", strings.Join(path, " → "))
	if len(path) == 2 {
		msg = fmt.Sprintf("a policy may not refer to itself (%s): use its rules directly", path[0])
	}
	for _, r := range refs {
		if r.dynamic() {
			continue
		}
		if id, _, ok := names.resolve(r.name, r.quoted); ok && id == path[1] {
			return refProblem(r, "rego_policy_cycle", msg)
		}
	}
	return Problem{Code: "rego_policy_cycle", Message: msg}
}

// Referrers are the ids of the tenant's policies, policyID aside, whose
// Rego refers to policyID by name (statically), sorted: the policies that
// would stop evaluating it if it were deleted.
func Referrers(policyID string, tenant []Object[model.PolicySpec]) []string {
	g := newPolicyGraph(tenant, false)
	var out []string
	for id, edges := range g.edges {
		if id != policyID && slices.Contains(edges, policyID) {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// closureSizeProblem refuses a policy whose Rego, with that of the
// policies it uses (transitively; every policy for a dynamic reference),
// is over MaxClosureBytes: compiling it — at every save, check, test,
// simulated request and replay — would cost the control plane seconds of
// CPU.
func closureSizeProblem(policyID string, tp *tenantPolicies) *Problem {
	need := tp.graph.closure(policyID)
	size := 0
	for _, p := range tp.all {
		if need[p.ID] {
			size += len(p.Spec.Definition)
		}
	}
	if size <= MaxClosureBytes {
		return nil
	}
	return &Problem{Field: "definition", Code: "limit_exceeded", Message: fmt.Sprintf(
		"the policy and the %d policies it uses come to %d bytes of Rego; at most %d (MaxClosureBytes)", len(need)-1, size, MaxClosureBytes)}
}
