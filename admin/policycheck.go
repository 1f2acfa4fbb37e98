package admin

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/gatehouse-dev/gatehouse/internal/httpapi"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/policies"
	"github.com/gatehouse-dev/gatehouse/store"
)

// The authoring rules a policy is held to when it is saved (issue 13,
// point 2; docs/bundles.md, "Authoring rules"), beyond its own Check in
// Build: in its tenant (references to other policies by id, cycles, the
// types of its result members, its tests module compiled) and its tests
// run. POST …/policies/check runs the same checks and saves nothing.

// CodeTestFailed: a policy whose tests fail or error; details.errors
// name each test (field tests, line, column).
const CodeTestFailed = "test_failed"

// checkTestsTimeout bounds the tests of POST …/policies/check (at most
// the policy tests' deadline), which the console calls as its author
// types.
const checkTestsTimeout = 500 * time.Millisecond

// policyProblemsError is the 400 of a policy's problems: invalid_policy,
// limit_exceeded or test_failed, naming the field of the first (or
// definition/validators), every problem in details.errors.
func policyProblemsError(spec *model.PolicySpec, problems []policies.Problem) *Error {
	fieldName := policyFieldOf(spec, problems[0])
	msgs := make([]string, len(problems))
	for i, p := range problems {
		msgs[i] = p.String()
	}
	msg := strings.Join(msgs, "; ")
	if problems[0].Field == "" {
		msg = fieldName + ": " + msg // Rego problems carry line:column, not the field
	}
	code := CodeInvalidPolicy
	switch problems[0].Code {
	case CodeLimitExceeded:
		code = CodeLimitExceeded
	case policies.CodeTestFailed, policies.CodeTestError:
		code = CodeTestFailed
	}
	return newError(http.StatusBadRequest, code, msg, map[string]any{"field": fieldName, "errors": problems})
}

// policyFieldOf is the field a problem concerns: its own, else the
// policy's source (definition or validators).
func policyFieldOf(spec *model.PolicySpec, p policies.Problem) string {
	switch {
	case p.Field != "":
		return p.Field
	case spec.Language == model.LanguageValidators:
		return "validators"
	}
	return "definition"
}

// tenantPolicyConfig reads what checking spec in its tenant needs, in one
// snapshot: the tenant's whole configuration, as the policy tests compile
// it, for a policy with tests; else only its policies.
func (s *Server) tenantPolicyConfig(ctx context.Context, tid string, spec *model.PolicySpec) (*policies.Config, error) {
	if spec.Tests != "" {
		return s.compilerConfig(ctx, tid)
	}
	var cfg *policies.Config
	err := s.store.View(ctx, func(ctx context.Context, r store.Reader) error {
		var err error
		cfg = &policies.Config{}
		cfg.Policies, err = listTenantPolicies(ctx, r, tid)
		return err
	})
	return cfg, err
}

// listTenantPolicies are the tenant's policies as the compiler sees them.
func listTenantPolicies(ctx context.Context, r store.Reader, tid string) ([]policies.Object[model.PolicySpec], error) {
	stored, err := policyRepo.ListAll(ctx, r, store.Query{TenantID: tid})
	if err != nil {
		return nil, err
	}
	out := make([]policies.Object[model.PolicySpec], 0, len(stored))
	for _, p := range stored {
		out = append(out, policies.Object[model.PolicySpec]{ID: p.Meta.ID, Name: p.Meta.Name, Description: p.Meta.Description, Spec: p.Spec})
	}
	return out, nil
}

// precheckPolicy is the policy kind's Precheck: the checks in the tenant
// (CheckInTenant) and the tests, against a snapshot of the tenant's
// configuration, before the write's transaction.
func (s *Server) precheckPolicy(ctx context.Context, tid, id string, spec *model.PolicySpec) error {
	release, err := s.policyJobs.acquire(ctx, tid, s.tester.Timeout())
	if err != nil {
		return newError(http.StatusServiceUnavailable, httpapi.CodeUnavailable, "the policy's checks could not run: "+err.Error(), nil).WithRetryAfter(1)
	}
	defer release()
	cfg, err := s.tenantPolicyConfig(ctx, tid, spec)
	if err != nil {
		return err
	}
	if problems := s.checker.CheckInTenant(id, spec, cfg.Policies); len(problems) > 0 {
		return policyProblemsError(spec, problems)
	}
	if spec.Tests == "" {
		return nil
	}
	report, err := s.tester.RunTests(ctx, policies.TestsRequest{PolicyID: id, Policy: *spec,
		Config: func(context.Context) (*policies.Config, error) { return cfg, nil }})
	if err != nil {
		return s.policyTestsError(spec, err)
	}
	if problems := report.Problems(); len(problems) > 0 {
		return policyProblemsError(spec, problems)
	}
	return nil
}

// policyTestsError is the answer to an error of Tester.RunTests.
func (s *Server) policyTestsError(spec *model.PolicySpec, err error) error {
	var (
		check  *policies.CheckError
		cfgErr *policies.ConfigError
	)
	switch {
	case errors.As(err, &check):
		return policyProblemsError(spec, check.Problems)
	case errors.As(err, &cfgErr):
		return cfgErr.Err
	case errors.Is(err, policies.ErrBusy):
		return newError(http.StatusServiceUnavailable, httpapi.CodeUnavailable,
			"too many policy tests are running to run this policy's tests; retry shortly", nil).WithRetryAfter(1)
	case errors.Is(err, policies.ErrWaitEnded):
		return newError(http.StatusServiceUnavailable, httpapi.CodeUnavailable, "the request ended while waiting to run the policy's tests", nil)
	}
	return err
}

// checkPolicyReferences is the policy kind's Check, in the write's
// transaction: the references to other policies again (a policy they name
// may have gone, or come to refer to this one, since the Precheck).
func checkPolicyReferences(ctx context.Context, tx store.Tx, t *store.Typed[model.PolicySpec]) error {
	if t.Spec.Language != model.LanguageRego || !strings.Contains(t.Spec.Definition, "policies") {
		return nil // no static reference to a policy
	}
	tenant, err := listTenantPolicies(ctx, tx, t.Meta.TenantID)
	if err != nil {
		return err
	}
	if problems := policies.CheckReferences(t.Meta.ID, &t.Spec, tenant); len(problems) > 0 {
		return policyProblemsError(&t.Spec, problems)
	}
	return nil
}

// checkImportedPolicies is the policy kind's importCheck part for the
// authoring rules: the document's policies checked in the tenant they
// make (with, in merge mode, the stored policies it does not name). Their
// tests are compiled, not run (docs/bundles.md, "Tests").
func checkImportedPolicies(want []*configObject, stored configState, merge bool) *Error {
	all, ids, field, apiErr := importedPolicies(want, stored, merge)
	if apiErr != nil {
		return apiErr
	}
	problems, err := policies.CheckPoliciesInTenant(all, ids)
	if err != nil {
		return internalError(err)
	}
	return firstImportProblem(all, ids, field, problems)
}

// checkImportedPolicyReferences is what of checkImportedPolicies a
// concurrent write can change, run again in the import's transaction:
// the references between the policies (ids the tenant has, no cycle).
func checkImportedPolicyReferences(want []*configObject, stored configState, merge bool) *Error {
	all, ids, field, apiErr := importedPolicies(want, stored, merge)
	if apiErr != nil {
		return apiErr
	}
	problems := map[string][]policies.Problem{}
	for i := range all {
		if p := policies.CheckReferences(all[i].ID, &all[i].Spec, all); len(p) > 0 {
			problems[all[i].ID] = p
		}
	}
	return firstImportProblem(all, ids, field, problems)
}

// firstImportProblem is the error of the first policy of the document
// (ids in document order) with problems, nil when none has any.
func firstImportProblem(all []policies.Object[model.PolicySpec], ids []string, field map[string]string, problems map[string][]policies.Problem) *Error {
	for _, id := range ids {
		if p, bad := problems[id]; bad {
			for i := range all {
				if all[i].ID == id {
					return atPath(field[id], policyProblemsError(&all[i].Spec, p))
				}
			}
		}
	}
	return nil
}

// importedPolicies are the policies a document makes of the tenant (with,
// in merge mode, the stored ones it does not name), the document's ids in
// its order and the document path of each.
func importedPolicies(want []*configObject, stored configState, merge bool) ([]policies.Object[model.PolicySpec], []string, map[string]string, *Error) {
	var all []policies.Object[model.PolicySpec]
	var ids []string
	named := map[string]bool{}
	field := map[string]string{}
	decode := func(o *store.Object) (policies.Object[model.PolicySpec], error) {
		var spec model.PolicySpec
		err := json.Unmarshal(o.Spec, &spec)
		return policies.Object[model.PolicySpec]{ID: o.ID, Name: o.Name, Spec: spec}, err
	}
	for _, o := range want {
		p, err := decode(&o.obj)
		if err != nil {
			return nil, nil, nil, internalError(err)
		}
		all, ids, named[p.ID], field[p.ID] = append(all, p), append(ids, p.ID), true, o.field
	}
	if merge {
		for id, o := range stored {
			if named[id] {
				continue
			}
			p, err := decode(o)
			if err != nil {
				return nil, nil, nil, internalError(err)
			}
			all = append(all, p)
		}
	}
	return all, ids, field, nil
}

// policyCheckProblem is one problem of POST …/policies/check: the field
// (definition, validators[2].conf.name, tests, policy_name, …), its line
// and column in that field's source when it has one (null otherwise), a
// machine-readable code and the message.
type policyCheckProblem struct {
	Field   string `json:"field"`
	Line    *int   `json:"line"`
	Column  *int   `json:"column"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

// policyCheckResult is the answer of POST …/policies/check.
type policyCheckResult struct {
	Problems []policyCheckProblem `json:"problems"`
	// Tests are the tests module's outcomes (empty when it has none or the
	// other problems kept them from running).
	Tests []policies.TestCase `json:"tests"`
}

// checkPolicy answers POST …/policies/check: the checks a save of the
// body runs (the body's fields, the policy on its own and in its tenant,
// its tests under checkTestsTimeout), as a list of problems, with nothing
// written. The body is a policy as created; policy_name may be left out,
// and id names the policy it would be (a stored one is replaced in the
// checks).
func (s *Server) checkPolicy(c *gin.Context) {
	tid := tenantID(c)
	var body policyBody
	if apiErr := decodeJSON(c, &body); apiErr != nil {
		abort(c, apiErr)
		return
	}
	res := policyCheckResult{Problems: []policyCheckProblem{}, Tests: []policies.TestCase{}}
	id := body.ID
	if id != "" {
		if _, apiErr := newObjectID("id", id); apiErr != nil {
			res.Problems = append(res.Problems, problemsOfError(apiErr)...)
			id = ""
		}
	}
	if id == "" {
		id = policies.UnsavedPolicyID
	}
	if body.PolicyName == "" {
		body.PolicyName = "unsaved"
	}
	spec, apiErr := body.spec(tid)
	if apiErr != nil {
		res.Problems = append(res.Problems, problemsOfError(apiErr)...)
		c.JSON(http.StatusOK, res)
		return
	}
	ctx := c.Request.Context()
	cfg, err := s.tenantPolicyConfig(ctx, tid, &spec)
	if err != nil {
		fail(c, err, "tenant", tid)
		return
	}
	if problems := s.checker.CheckInTenant(id, &spec, cfg.Policies); len(problems) > 0 {
		res.Problems = append(res.Problems, checkProblems(&spec, problems)...)
		c.JSON(http.StatusOK, res)
		return
	}
	if spec.Tests != "" {
		report, err := s.tester.RunTests(ctx, policies.TestsRequest{PolicyID: id, Policy: spec, Timeout: checkTestsTimeout,
			Config: func(context.Context) (*policies.Config, error) { return cfg, nil }})
		var check *policies.CheckError
		switch {
		case err == nil:
			res.Tests = report.Tests
			res.Problems = append(res.Problems, checkProblems(&spec, report.Problems())...)
		case errors.As(err, &check):
			res.Problems = append(res.Problems, checkProblems(&spec, check.Problems)...)
		case errors.Is(err, policies.ErrBusy), errors.Is(err, policies.ErrWaitEnded):
			res.Problems = append(res.Problems, policyCheckProblem{Field: "tests", Code: "tests_not_run",
				Message: "the tests were not run: too many policy tests are running (they run when the policy is saved)"})
		default:
			var cfgErr *policies.ConfigError
			if errors.As(err, &cfgErr) {
				err = cfgErr.Err
			}
			fail(c, err, "tenant", tid)
			return
		}
	}
	c.JSON(http.StatusOK, res)
}

// checkProblems renders the checker's problems for POST …/policies/check.
func checkProblems(spec *model.PolicySpec, problems []policies.Problem) []policyCheckProblem {
	out := make([]policyCheckProblem, 0, len(problems))
	for _, p := range problems {
		cp := policyCheckProblem{Field: policyFieldOf(spec, p), Code: p.Code, Message: p.Message}
		if p.Line > 0 {
			line, col := p.Line, p.Column
			cp.Line, cp.Column = &line, &col
		}
		out = append(out, cp)
	}
	return out
}

// problemsOfError renders a 400 of the body's fields (policyBody.spec) as
// problems.
func problemsOfError(e *Error) []policyCheckProblem {
	if l := e.Fields(); len(l) > 0 {
		out := make([]policyCheckProblem, 0, len(l))
		for _, f := range l {
			out = append(out, policyCheckProblem{Field: f.Field, Code: f.Code, Message: f.Message})
		}
		return out
	}
	name, _ := e.Details["field"].(string)
	msg := e.Message
	if name != "" {
		msg = strings.TrimPrefix(msg, name+": ")
	}
	return []policyCheckProblem{{Field: name, Code: e.Code, Message: msg}}
}
