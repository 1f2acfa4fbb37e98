package admin

import (
	"context"
	"fmt"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/policies"
	"github.com/gatehouse-dev/gatehouse/resource"
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

// policyBody is a policy on the wire (seed 003 Policy plus language,
// definition, type and dry_run): the body of create and PUT and what GET
// returns. tenant_id and metadata are read-only.
type policyBody struct {
	ID          string                  `json:"id"`
	TenantID    string                  `json:"tenant_id"`
	PolicyName  string                  `json:"policy_name"`
	Description string                  `json:"description"`
	Language    string                  `json:"language"`
	Definition  string                  `json:"definition,omitempty"`
	Validators  []model.ValidatorConfig `json:"validators,omitempty"`
	Tests       string                  `json:"tests,omitempty"`
	Type        string                  `json:"type"`
	DryRun      bool                    `json:"dry_run"`
	Labels      map[string]string       `json:"labels"`
	Metadata    *Metadata               `json:"metadata,omitempty"`
}

func renderPolicy(t *store.Typed[model.PolicySpec]) policyBody {
	return policyBody{
		ID: t.Meta.ID, TenantID: t.Meta.TenantID, PolicyName: t.Meta.Name, Description: t.Meta.Description,
		Language: t.Spec.Language, Definition: t.Spec.Definition, Validators: t.Spec.Validators, Tests: t.Spec.Tests, Type: t.Spec.Type,
		DryRun: t.Spec.DryRun, Labels: labelsOrEmpty(t.Meta.Labels), Metadata: metadataOf(&t.Meta),
	}
}

// addPolicyKind registers policies (Rego or validators, compiled on
// every write; APIs bound to one keep it from being deleted). PUT
// replaces the policy.
func addPolicyKind(sch *resource.Scheme) {
	simpleKind[model.PolicySpec, policyBody, policyBody]{
		Kind:  &resource.Kind{Name: model.KindPolicy, Singular: "policy", Bundled: true, Exported: true},
		Param: "pid", NameField: "policy_name", Render: renderPolicy, ID: func(r *policyBody) string { return r.ID },
		Build: func(s *Server, tid, id string, r *policyBody) (store.Object, model.PolicySpec, error) {
			spec, apiErr := r.spec(tid)
			if apiErr == nil && tid == "" { // a create or PUT checks in Precheck, in the tenant
				apiErr = s.check(id, &spec)
			}
			if apiErr != nil {
				return store.Object{}, spec, apiErr
			}
			return store.Object{Name: r.PolicyName, Description: r.Description, Labels: r.Labels}, spec, nil
		},
		// The authoring rules in the tenant and the tests (policycheck.go).
		Precheck: func(ctx context.Context, s *Server, tid, id string, spec *model.PolicySpec) error {
			return s.precheckPolicy(ctx, tid, id, spec)
		},
		Check: checkPolicyReferences,
		AfterCreate: func(ctx context.Context, tx store.Tx, t *store.Typed[model.PolicySpec]) error {
			return checkPolicyCount(ctx, tx, t.Meta.TenantID)
		},
	}.register(sch)
	api := apiOf(sch.MustKind(model.KindPolicy))
	api.routes = (*Server).policyTestRoutes
	api.deletable = policyDeletable
	api.importCheck = func(want []*configObject, stored configState, merge bool) *Error {
		if apiErr := checkConfigPolicyCount(want, stored, merge); apiErr != nil {
			return apiErr
		}
		return checkImportedPolicyReferences(want, stored, merge)
	}
	// Compiling every policy of a document takes seconds: not while the
	// import's transaction holds the store's writer.
	api.importPrecheck = checkImportedPolicies
	api.importLimit = func(n int) *Error {
		if n > policies.MaxPoliciesPerTenant {
			return limitError("policies", policies.MaxPoliciesPerTenant, "a tenant may have at most %d policies (the document has %d)",
				policies.MaxPoliciesPerTenant, n)
		}
		return nil
	}
}

// policyDeletable refuses deleting a policy other policies of the tenant
// refer to by id (data.gatehouse.policies["<id>"]): they would stop
// evaluating it (409 in_use, naming them).
func policyDeletable(ctx context.Context, tx store.Tx, o *store.Object) error {
	tenant, err := listTenantPolicies(ctx, tx, o.TenantID)
	if err != nil {
		return err
	}
	if users := policies.Referrers(o.ID, tenant); len(users) > 0 {
		return inUse("policy", o.ID, map[string][]string{model.KindPolicy: users})
	}
	return nil
}

// policyTestRoutes: running a policy (saved or not) against an input, a
// request or logged decisions, and checking one — each tenant one at a
// time (oneAtATime).
func (s *Server) policyTestRoutes(_, adm *gin.RouterGroup) {
	adm.POST("/policies/test", s.oneAtATime(s.testUnsavedPolicy))
	adm.POST("/policies/check", s.oneAtATime(s.checkPolicy))
	adm.POST("/policies/:pid/test", s.oneAtATime(s.testPolicy))
	adm.POST("/policies/:pid/replay", s.oneAtATime(s.replayPolicy))
}

// spec validates the request into a policy spec. The language defaults
// from what is given: validators, or a Rego definition.
func (r *policyBody) spec(tid string) (model.PolicySpec, *Error) {
	if err := collect(
		validateText("policy_name", r.PolicyName, true, 256),
		validateText("description", r.Description, false, 4096),
		tenantMatch(r.TenantID, tid),
		validateLabels(r.Labels),
		validateText("type", r.Type, false, 64),
	); err != nil {
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
	if len(r.Tests) > policies.MaxTestsBytes {
		return model.PolicySpec{}, limitError("tests", policies.MaxTestsBytes,
			"must be at most %d KiB (these are %d bytes)", policies.MaxTestsBytes>>10, len(r.Tests))
	}
	typ := r.Type
	if typ == "" {
		typ = "api"
	}
	return model.PolicySpec{Language: lang, Definition: r.Definition, Validators: r.Validators, Tests: r.Tests, Type: typ, DryRun: r.DryRun}, nil
}

// check compiles the policy on its own (a configuration document's;
// creates and PUTs check in the tenant: precheckPolicy); problems are a
// 400 listing line, column and message (Rego) or the offending validator
// field.
func (s *Server) check(id string, spec *model.PolicySpec) *Error {
	if problems := s.checker.Check(id, spec); len(problems) > 0 {
		return policyProblemsError(spec, problems)
	}
	return nil
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
func checkConfigPolicyCount(want []*configObject, stored configState, merge bool) *Error {
	n := len(want)
	if merge {
		named := map[string]bool{}
		for _, o := range want {
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
