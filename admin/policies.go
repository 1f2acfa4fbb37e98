package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/gatehouse-dev/gatehouse/bundles"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/policies"
	"github.com/gatehouse-dev/gatehouse/store"
)

var policyRepo = store.Repo[model.PolicySpec]{Kind: model.KindPolicy}

// CodeInvalidPolicy: a policy that does not parse, compile or validate.
const CodeInvalidPolicy = "invalid_policy"

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
		if len(r.Definition) > 256<<10 {
			return model.PolicySpec{}, fieldError("definition", "must be at most 256 KiB")
		}
	case model.LanguageValidators:
		if r.Definition != "" {
			return model.PolicySpec{}, fieldError("definition", "a validators policy has validators, not a definition")
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
	return newError(http.StatusBadRequest, CodeInvalidPolicy, msg,
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
	Allowed     bool              `json:"allowed"`
	Result      map[string]any    `json:"result"`
	Explanation policyExplanation `json:"explanation"`
}

type policyExplanation struct {
	// Validators says, for a validators policy, which passed.
	Validators []validatorOutcome `json:"validators,omitempty"`
	// FailedExpressions are the Rego expressions that evaluated false
	// (file:line: expression), from OPA's trace.
	FailedExpressions []string `json:"failed_expressions"`
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
// configuration as data.gatehouse.config, as a bundle would.
func (s *Server) runPolicyTest(c *gin.Context, tid, id string, spec model.PolicySpec, input map[string]any) {
	ctx := c.Request.Context()
	if input == nil {
		abort(c, missingField("input"))
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
	compiled, err := policies.Compile(cfg, "policy-test")
	if err != nil {
		abort(c, internalError(err))
		return
	}
	if why, skipped := compiled.Skipped[id]; skipped {
		abort(c, newError(http.StatusBadRequest, CodeInvalidPolicy, why, map[string]any{"field": "definition"}))
		return
	}
	eng, err := policies.NewEngine(ctx, compiled.Modules, compiled.Data)
	if err != nil {
		abort(c, internalError(err))
		return
	}
	pq, err := eng.Prepare(ctx, policies.PolicyPackagePrefix+policies.PolicyPackage(id))
	if err != nil {
		abort(c, internalError(err))
		return
	}
	result, err := policies.EvalObject(ctx, pq, input)
	if err != nil {
		abort(c, newError(http.StatusBadRequest, CodeEvaluation, "the policy failed to evaluate: "+err.Error(), map[string]any{"field": "input"}))
		return
	}
	failed, err := policies.Explain(ctx, pq, input)
	if err != nil {
		failed = []string{"explanation unavailable: " + err.Error()}
	}
	if failed == nil {
		failed = []string{}
	}
	module, _ := policies.PolicyModule(id, &spec)
	out := policyTestResponse{Allowed: result["allow"] == true, Result: result,
		Explanation: policyExplanation{FailedExpressions: failed, Module: module}}
	for i, v := range spec.Validators {
		out.Explanation.Validators = append(out.Explanation.Validators,
			validatorOutcome{Index: i, Name: v.Name, Passed: result[fmt.Sprintf("check_%d", i)] == true})
	}
	c.JSON(http.StatusOK, out)
}
