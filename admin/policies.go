package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/gatehouse-dev/gatehouse/bundles"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/policies"
	"github.com/gatehouse-dev/gatehouse/store"
)

var policyRepo = store.Repo[model.PolicySpec]{Kind: model.KindPolicy}

// Error codes of the policy endpoints.
const (
	// CodeInvalidPolicy: a policy that does not parse, compile or validate.
	CodeInvalidPolicy = "invalid_policy"
	// CodeLimitExceeded: a policy (or the tenant's policies) over a
	// documented limit (policies.MaxDefinitionBytes, MaxValidators,
	// MaxPoliciesPerTenant).
	CodeLimitExceeded = "limit_exceeded"
	// CodeEvaluationTimeout: a policy test that did not finish within the
	// test deadline.
	CodeEvaluationTimeout = "evaluation_timeout"
)

// limitError is a 400 naming the field over a limit.
func limitError(field string, limit int, format string, args ...any) *Error {
	msg := fmt.Sprintf(format, args...)
	return newError(http.StatusBadRequest, CodeLimitExceeded, field+": "+msg,
		map[string]any{"field": field, "reason": msg, "limit": limit})
}

// policyRequest is the body of policy create and update (seed 003 Policy
// plus language, definition, type and dry_run).
type policyRequest struct {
	ID          string                  `json:"id"`
	PolicyName  string                  `json:"policy_name"`
	Description string                  `json:"description"`
	Language    string                  `json:"language"`
	Definition  string                  `json:"definition"`
	Validators  []model.ValidatorConfig `json:"validators"`
	Type        string                  `json:"type"`
	DryRun      bool                    `json:"dry_run"`
	Labels      map[string]string       `json:"labels"`
	TenantID    string                  `json:"tenant_id"`
	Metadata    json.RawMessage         `json:"metadata"`
}

type policyResponse struct {
	ID          string                  `json:"id"`
	TenantID    string                  `json:"tenant_id"`
	PolicyName  string                  `json:"policy_name"`
	Description string                  `json:"description"`
	Language    string                  `json:"language"`
	Definition  string                  `json:"definition,omitempty"`
	Validators  []model.ValidatorConfig `json:"validators,omitempty"`
	Type        string                  `json:"type"`
	DryRun      bool                    `json:"dry_run"`
	Labels      map[string]string       `json:"labels"`
	Metadata    *Metadata               `json:"metadata"`
}

func renderPolicy(t *store.Typed[model.PolicySpec]) policyResponse {
	return policyResponse{
		ID: t.Meta.ID, TenantID: t.Meta.TenantID, PolicyName: t.Meta.Name, Description: t.Meta.Description,
		Language: t.Spec.Language, Definition: t.Spec.Definition, Validators: t.Spec.Validators, Type: t.Spec.Type,
		DryRun: t.Spec.DryRun, Labels: labelsOrEmpty(t.Meta.Labels), Metadata: metadataOf(&t.Meta),
	}
}

func (s *Server) policyRoutes(_, adm *gin.RouterGroup) {
	adm.GET("/policies", s.listPolicies)
	adm.POST("/policies", s.createPolicy)
	adm.POST("/policies/test", s.testUnsavedPolicy)
	adm.GET("/policies/:pid", s.getPolicy)
	adm.PUT("/policies/:pid", s.updatePolicy)
	adm.DELETE("/policies/:pid", s.deletePolicy)
	adm.POST("/policies/:pid/test", s.testPolicy)
}

// spec validates the request into a policy spec. The language defaults
// from what is given: validators, or a Rego definition.
func (r *policyRequest) spec(tid string) (model.PolicySpec, *Error) {
	if err := validateText("policy_name", r.PolicyName, true, 256); err != nil {
		return model.PolicySpec{}, err
	}
	if err := validateText("description", r.Description, false, 4096); err != nil {
		return model.PolicySpec{}, err
	}
	if r.TenantID != "" && r.TenantID != tid {
		return model.PolicySpec{}, fieldError("tenant_id", "does not match the tenant in the path")
	}
	if err := validateLabels(r.Labels); err != nil {
		return model.PolicySpec{}, err
	}
	if err := validateText("type", r.Type, false, 64); err != nil {
		return model.PolicySpec{}, err
	}
	lang := r.Language
	if lang == "" {
		switch {
		case r.Definition != "" && len(r.Validators) == 0:
			lang = model.LanguageRego
		case r.Definition == "":
			lang = model.LanguageValidators
		}
	}
	switch lang {
	case model.LanguageRego:
		if len(r.Validators) > 0 {
			return model.PolicySpec{}, fieldError("validators", "a rego policy has a definition, not validators")
		}
		if r.Definition == "" {
			return model.PolicySpec{}, missingField("definition")
		}
		if len(r.Definition) > policies.MaxDefinitionBytes {
			return model.PolicySpec{}, limitError("definition", policies.MaxDefinitionBytes,
				"must be at most %d KiB (this one is %d bytes)", policies.MaxDefinitionBytes>>10, len(r.Definition))
		}
	case model.LanguageValidators:
		if r.Definition != "" {
			return model.PolicySpec{}, fieldError("definition", "a validators policy has validators, not a definition")
		}
		if len(r.Validators) > policies.MaxValidators {
			return model.PolicySpec{}, limitError("validators", policies.MaxValidators,
				"a policy may have at most %d validators (this one has %d)", policies.MaxValidators, len(r.Validators))
		}
	case "":
		return model.PolicySpec{}, fieldError("language", "give either a definition (rego) or validators, not both")
	default:
		return model.PolicySpec{}, fieldError("language", "must be %q or %q", model.LanguageRego, model.LanguageValidators)
	}
	typ := r.Type
	if typ == "" {
		typ = "api"
	}
	return model.PolicySpec{Language: lang, Definition: r.Definition, Validators: r.Validators, Type: typ, DryRun: r.DryRun}, nil
}

// check compiles the policy; problems are a 400 listing line, column and
// message (Rego) or the offending validator field.
func (s *Server) check(id string, spec *model.PolicySpec) *Error {
	problems := s.checker.Check(id, spec)
	if len(problems) == 0 {
		return nil
	}
	field := "definition"
	if spec.Language == model.LanguageValidators {
		field = "validators"
	}
	if problems[0].Field != "" {
		field = problems[0].Field
	}
	msgs := make([]string, len(problems))
	for i, p := range problems {
		msgs[i] = p.String()
	}
	msg := strings.Join(msgs, "; ")
	if problems[0].Field == "" {
		msg = field + ": " + msg // Rego problems carry line:column, not the field
	}
	code := CodeInvalidPolicy
	if problems[0].Code == CodeLimitExceeded {
		code = CodeLimitExceeded
	}
	return newError(http.StatusBadRequest, code, msg,
		map[string]any{"field": field, "errors": problems})
}

func (s *Server) listPolicies(c *gin.Context) {
	listKind(s, c, policyRepo, "policy", "policies", renderPolicy)
}

func (s *Server) createPolicy(c *gin.Context) {
	tid := tenantID(c)
	var req policyRequest
	if apiErr := decodeJSON(c, &req); apiErr != nil {
		abort(c, apiErr)
		return
	}
	id, apiErr := newObjectID("id", req.ID)
	if apiErr != nil {
		abort(c, apiErr)
		return
	}
	spec, apiErr := req.spec(tid)
	if apiErr == nil {
		apiErr = s.check(id, &spec)
	}
	if apiErr != nil {
		abort(c, apiErr)
		return
	}
	t := &store.Typed[model.PolicySpec]{
		Meta: store.Object{TenantID: tid, ID: id, Name: req.PolicyName, Description: req.Description, Labels: req.Labels, CreatedBy: actor(c)},
		Spec: spec,
	}
	ok := s.write(c, "policy", id, func(ctx context.Context, tx store.Tx) error {
		if err := policyRepo.Create(ctx, tx, t); err != nil {
			return err
		}
		if err := checkPolicyCount(ctx, tx, tid); err != nil {
			return err
		}
		return record(ctx, tx, c, tid, "create", model.KindPolicy, id)
	})
	if ok {
		respondObject(c, http.StatusCreated, t.Meta.Revision, renderPolicy(t))
	}
}

func (s *Server) getPolicy(c *gin.Context) {
	getKind(s, c, policyRepo, "pid", "policy", renderPolicy)
}

func (s *Server) updatePolicy(c *gin.Context) {
	tid := tenantID(c)
	updateKind(s, c, policyRepo, "pid", "policy", renderPolicy, func(c *gin.Context, id string) (func(context.Context, store.Tx, *store.Typed[model.PolicySpec]) error, *Error) {
		var req policyRequest
		if apiErr := decodeUpdate(c, &req, func() string { return req.ID }, id); apiErr != nil {
			return nil, apiErr
		}
		spec, apiErr := req.spec(tid)
		if apiErr == nil {
			apiErr = s.check(id, &spec)
		}
		if apiErr != nil {
			return nil, apiErr
		}
		return func(ctx context.Context, tx store.Tx, t *store.Typed[model.PolicySpec]) error {
			t.Meta.Name, t.Meta.Description, t.Meta.Labels = req.PolicyName, req.Description, req.Labels
			t.Spec = spec
			return nil
		}, nil
	})
}

// checkPolicyCount refuses (400 naming "policies") a tenant with more
// than policies.MaxPoliciesPerTenant policies. It runs after the write, so
// the transaction holds the store's write lock and concurrent creates
// cannot both slip under the limit.
func checkPolicyCount(ctx context.Context, tx store.Tx, tid string) error {
	pg, err := tx.List(ctx, store.Query{Kind: model.KindPolicy, TenantID: tid, Limit: 1})
	if err != nil {
		return err
	}
	if pg.Total > policies.MaxPoliciesPerTenant {
		return limitError("policies", policies.MaxPoliciesPerTenant, "a tenant may have at most %d policies", policies.MaxPoliciesPerTenant)
	}
	return nil
}

// checkConfigPolicyCount applies MaxPoliciesPerTenant to a configuration
// import: the document's policies plus, in merge mode, the stored ones it
// does not name.
func checkConfigPolicyCount(plan *configPlan, stored configState, merge bool) *Error {
	n := len(plan.objects[model.KindPolicy])
	if merge {
		named := map[string]bool{}
		for _, o := range plan.objects[model.KindPolicy] {
			named[o.obj.ID] = true
		}
		for id := range stored {
			if !named[id] {
				n++
			}
		}
	}
	if n > policies.MaxPoliciesPerTenant {
		return limitError("policies", policies.MaxPoliciesPerTenant, "a tenant may have at most %d policies (the import would leave %d)",
			policies.MaxPoliciesPerTenant, n)
	}
	return nil
}

// deletePolicy refuses (409 in_use) while APIs are bound to the policy.
func (s *Server) deletePolicy(c *gin.Context) {
	deleteKind(s, c, policyRepo, "pid", "policy", func(ctx context.Context, tx store.Tx, tid, id string) error {
		apis, err := store.Repo[model.APISpec]{Kind: model.KindAPI}.ListAll(ctx, tx, store.Query{TenantID: tid})
		if err != nil {
			return err
		}
		var users []string
		for _, a := range apis {
			if a.Spec.PolicyID == id {
				users = append(users, a.Meta.ID)
			}
		}
		if len(users) > 0 {
			return inUse("policy", id, map[string][]string{"apis": users})
		}
		return nil
	})
}

// policyTestRequest evaluates a policy against an input document. For
// POST /policies/test the policy itself is in the body.
type policyTestRequest struct {
	Input  map[string]any `json:"input"`
	Policy *policyRequest `json:"policy"`
}

// policyTestResponse is the decision of the policy plus an explanation.
type policyTestResponse struct {
	Allowed bool           `json:"allowed"`
	Result  map[string]any `json:"result"`
	// Request is the canonical request the policy saw (when the input has
	// a request path).
	Request     *testRequestView  `json:"request,omitempty"`
	Explanation policyExplanation `json:"explanation"`
}

// testRequestView is what a gateway makes of the test input's request: the
// canonical path and query it would decide on and forward, the owned
// headers it removed, or why it refuses the path.
type testRequestView struct {
	Path           string   `json:"path"`
	Query          string   `json:"query"`
	RemovedHeaders []string `json:"removed_headers"`
	RefusedStatus  int      `json:"refused_status,omitempty"`
	RefusedReason  string   `json:"refused_reason,omitempty"`
}

// canonicalTestInput canonicalises a test input in place, as the
// authorizer does (policies.CanonicalizeInput), when it has a request path;
// for a refused path it returns the refusal as the policy result.
func canonicalTestInput(input map[string]any, owned []string) (*testRequestView, map[string]any) {
	attrs, _ := input["attributes"].(map[string]any)
	req, _ := attrs["request"].(map[string]any)
	h, _ := req["http"].(map[string]any)
	if _, ok := h["path"].(string); !ok {
		return nil, nil
	}
	set := map[string]bool{}
	for _, h := range owned {
		set[h] = true
	}
	canon := policies.CanonicalizeInput(input, set)
	view := &testRequestView{Path: canon.Path, Query: canon.RawQuery, RemovedHeaders: canon.OwnedPresent}
	if view.RemovedHeaders == nil {
		view.RemovedHeaders = []string{}
	}
	if e := canon.Refused; e != nil {
		view.Path, view.Query, view.RefusedStatus, view.RefusedReason = "", "", e.Status, e.Reason
		return view, map[string]any{"allow": false, "http_status": e.Status, "reason": e.Reason}
	}
	return view, nil
}

type policyExplanation struct {
	// Validators says, for a validators policy, which passed.
	Validators []validatorOutcome `json:"validators,omitempty"`
	// FailedExpressions are the Rego expressions that evaluated false
	// (file:line: expression), from OPA's trace, at most
	// policies.MaxExplainLines lines and MaxExplainBytes bytes.
	FailedExpressions []string `json:"failed_expressions"`
	// Truncated says failed_expressions is not the whole list (the bounds,
	// or the deadline, were reached).
	Truncated bool `json:"truncated"`
	// Module is the Rego the policy compiles to (for validators, the
	// generated translation).
	Module string `json:"module"`
}

type validatorOutcome struct {
	Index  int    `json:"index"`
	Name   string `json:"name"`
	Passed bool   `json:"passed"`
}

func (s *Server) testPolicy(c *gin.Context) {
	tid := tenantID(c)
	id, apiErr := objectIDParam(c, "pid")
	if apiErr != nil {
		abort(c, apiErr)
		return
	}
	var req policyTestRequest
	if apiErr := decodeJSON(c, &req); apiErr != nil {
		abort(c, apiErr)
		return
	}
	if req.Policy != nil {
		abort(c, fieldError("policy", "is only accepted by POST /policies/test (this policy is the saved one)"))
		return
	}
	t, err := policyRepo.Get(c.Request.Context(), s.store, tid, id)
	if err != nil {
		fail(c, err, "policy", id)
		return
	}
	s.runPolicyTest(c, tid, id, t.Spec, req.Input)
}

func (s *Server) testUnsavedPolicy(c *gin.Context) {
	tid := tenantID(c)
	var req policyTestRequest
	if apiErr := decodeJSON(c, &req); apiErr != nil {
		abort(c, apiErr)
		return
	}
	if req.Policy == nil {
		abort(c, missingField("policy"))
		return
	}
	if req.Policy.PolicyName == "" {
		req.Policy.PolicyName = "unsaved"
	}
	spec, apiErr := req.Policy.spec(tid)
	if apiErr != nil {
		apiErr.Details["field"] = "policy." + fmt.Sprint(apiErr.Details["field"])
		abort(c, apiErr)
		return
	}
	const unsavedID = "unsaved-policy"
	if apiErr := s.check(unsavedID, &spec); apiErr != nil {
		abort(c, apiErr)
		return
	}
	s.runPolicyTest(c, tid, unsavedID, spec, req.Input)
}

// runPolicyTest evaluates one policy with the tenant's compiled
// configuration as data.gatehouse.config, as a bundle would. At most
// cap(s.policyTests) tests run at once; the evaluation (decision and
// explanation together) stops at s.policyTestTimeout.
func (s *Server) runPolicyTest(c *gin.Context, tid, id string, spec model.PolicySpec, input map[string]any) {
	ctx := c.Request.Context()
	if input == nil {
		abort(c, missingField("input"))
		return
	}
	wait := time.NewTimer(s.policyTestTimeout)
	defer wait.Stop()
	select {
	case s.policyTests <- struct{}{}:
		defer func() { <-s.policyTests }()
	case <-wait.C:
		c.Header("Retry-After", "1")
		abort(c, newError(http.StatusServiceUnavailable, CodeUnavailable, "too many policy tests are running; retry shortly", nil))
		return
	case <-ctx.Done():
		abort(c, newError(http.StatusServiceUnavailable, CodeUnavailable, "the request ended while waiting to run the policy test", nil))
		return
	}
	var cfg *policies.Config
	err := s.store.View(ctx, func(ctx context.Context, r store.Reader) error {
		var err error
		cfg, err = bundles.LoadConfig(ctx, r, tid)
		return err
	})
	if err != nil {
		fail(c, err, "tenant", tid)
		return
	}
	// A gateway over every service, with the policy under test in place
	// of its saved version.
	cfg.Gateways = append(cfg.Gateways, policies.Object[model.GatewaySpec]{ID: "policy-test", Spec: model.GatewaySpec{Type: model.GatewayEnvoy}})
	kept := cfg.Policies[:0]
	for _, p := range cfg.Policies {
		if p.ID != id {
			kept = append(kept, p)
		}
	}
	cfg.Policies = append(kept, policies.Object[model.PolicySpec]{ID: id, Name: id, Spec: spec})
	cfg.AllowedBuiltins = s.bundles.AllowedBuiltins()
	compiled, err := policies.Compile(cfg, "policy-test")
	if err != nil {
		abort(c, internalError(err))
		return
	}
	if why, skipped := compiled.Skipped[id]; skipped {
		abort(c, newError(http.StatusBadRequest, CodeInvalidPolicy, why, map[string]any{"field": "definition"}))
		return
	}
	// Only the policy under test and the policies it refers to are
	// compiled (the data stays whole): OPA's compilation of a large tenant
	// costs far more than one policy's.
	needed := map[string]bool{}
	for pid := range policies.PolicyClosure(cfg.Policies, id) {
		needed[policies.Root+"/policies/"+policies.PolicyPackage(pid)+".rego"] = true
	}
	modules := compiled.Modules[:0:0]
	for _, m := range compiled.Modules {
		if needed[m.Path] || !strings.HasPrefix(m.Path, policies.Root+"/policies/") {
			modules = append(modules, m)
		}
	}
	eng, err := policies.NewEngine(ctx, modules, compiled.Data)
	if err != nil {
		abort(c, internalError(err))
		return
	}
	pq, err := eng.Prepare(ctx, policies.PolicyPackagePrefix+policies.PolicyPackage(id))
	if err != nil {
		abort(c, internalError(err))
		return
	}
	// The policy sees the request as a gateway would hand it over: the
	// canonical path, without the headers the gateway owns. A path the
	// gateway refuses never reaches the policy.
	view, refusal := canonicalTestInput(input, compiled.OwnedHeaders)
	if refusal != nil {
		module, _ := policies.PolicyModule(id, &spec)
		c.JSON(http.StatusOK, policyTestResponse{Result: refusal, Request: view,
			Explanation: policyExplanation{FailedExpressions: []string{"the gateway refuses the request path before any policy runs: " + refusal["reason"].(string)},
				Module: module}})
		return
	}
	evalCtx, cancel := policies.WithTimeout(ctx, s.policyTestTimeout)
	defer cancel()
	result, err := policies.EvalObject(evalCtx, pq, input)
	if err != nil {
		if policies.TimedOut(evalCtx) {
			field := "definition"
			if spec.Language == model.LanguageValidators {
				field = "validators"
			}
			abort(c, newError(http.StatusBadRequest, CodeEvaluationTimeout,
				fmt.Sprintf("%s: the policy did not finish evaluating within %s (the policy test deadline); a gateway would deny such a request", field, s.policyTestTimeout),
				map[string]any{"field": field, "timeout_ms": s.policyTestTimeout.Milliseconds()}))
			return
		}
		abort(c, newError(http.StatusBadRequest, CodeEvaluation, "the policy failed to evaluate: "+err.Error(), map[string]any{"field": "input"}))
		return
	}
	failed, truncated, err := policies.Explain(evalCtx, pq, input)
	switch {
	case err != nil && policies.TimedOut(evalCtx):
		truncated = true // the lines found before the deadline
	case err != nil:
		failed, truncated = []string{"explanation unavailable: " + err.Error()}, false
	}
	if failed == nil {
		failed = []string{}
	}
	module, _ := policies.PolicyModule(id, &spec)
	out := policyTestResponse{Allowed: result["allow"] == true, Result: result, Request: view,
		Explanation: policyExplanation{FailedExpressions: failed, Truncated: truncated, Module: module}}
	for i, v := range spec.Validators {
		out.Explanation.Validators = append(out.Explanation.Validators,
			validatorOutcome{Index: i, Name: v.Name, Passed: result[fmt.Sprintf("check_%d", i)] == true})
	}
	c.JSON(http.StatusOK, out)
}
