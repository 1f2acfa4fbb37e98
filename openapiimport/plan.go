package openapiimport

import (
	"fmt"

	"github.com/google/uuid"

	"github.com/gatehouse-dev/gatehouse/internal/field"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/store"
)

// Target says where an import writes.
type Target struct {
	TenantID  string
	ServiceID string
	// ServiceRevision, when not 0, is the revision the service must be at
	// (the request's If-Match); otherwise the import is store.ErrConflict.
	ServiceRevision int64
	// DefaultPolicyID is the request's default policy for the operations
	// without their own x-gatehouse-policy ("" for none); it takes
	// precedence over the document's top-level x-gatehouse-policy.
	DefaultPolicyID string
}

// DefaultPolicyField names Target.DefaultPolicyID in errors: the admin API
// takes it from the policy_id query parameter.
const DefaultPolicyField = "policy_id"

// State is the stored state a plan is made against.
type State struct {
	// APIs are the service's APIs.
	APIs []*store.Typed[model.APISpec]
	// TakenIDs are API ids the document would use that APIs of other
	// services hold.
	TakenIDs map[string]bool
	// Policies are the policies the import names that exist.
	Policies map[string]bool
	// Scopes maps the names of the document's scopes that exist to the
	// scopes' ids.
	Scopes map[string]string
}

// Plan is what an import writes, in the order Apply writes it: removals,
// then the document's APIs (created or updated), then new scopes.
type Plan struct {
	// Remove are the service's APIs no operation matches.
	Remove []*store.Typed[model.APISpec]
	// APIs are the document's APIs, in document order (positions 0…n-1).
	APIs []PlannedAPI
	// Ignored are the operations that do not become APIs.
	Ignored []IgnoredAPI
	// Warnings are the operations imported with a fallback template.
	Warnings []ImportWarning
	// CreateScopes are the declared scopes to create.
	CreateScopes []*store.Typed[model.ScopeSpec]
	// IgnoredScopes are the declared scopes not created.
	IgnoredScopes []IgnoredScope
}

// PlannedAPI is the API an operation becomes.
type PlannedAPI struct {
	// API is the new content; for an update, Meta is the stored envelope
	// (uid, revision, created_at) with the new name.
	API *store.Typed[model.APISpec]
	// Create is set for a new API.
	Create bool
	// StoredName is an updated API's name before the import.
	StoredName string
}

// IgnoredScope is a declared OAuth2 scope the import does not create.
type IgnoredScope struct {
	Name    string `json:"name"`
	ScopeID string `json:"scope_id,omitempty"`
	Reason  string `json:"reason"`
}

// PolicyIDs are the policies the document names (x-gatehouse-policy at the
// top level and on operations, ignored operations included), each once.
func (d *Document) PolicyIDs() []string {
	var out []string
	seen := map[string]bool{}
	for _, r := range d.refs {
		if !seen[r.id] {
			seen[r.id] = true
			out = append(out, r.id)
		}
	}
	return out
}

// APIIDs are the ids the document's operations would give new APIs.
func (d *Document) APIIDs() []string {
	var out []string
	for _, op := range d.operations {
		if op.id != "" {
			out = append(out, op.id)
		}
	}
	return out
}

// ScopeNames are the OAuth2 scopes the document declares, sorted.
func (d *Document) ScopeNames() []string {
	out := make([]string, 0, len(d.scopes))
	for _, s := range d.scopes {
		out = append(out, s.name)
	}
	return out
}

// PlanError is an import refused for what only the stored state shows: a
// policy that does not exist, an operation's x-gatehouse-policy on an API
// that cannot take one. Errs (also what errors.As finds) names where each
// problem came from: "policy_id" (DefaultPolicyField), "x-gatehouse-policy"
// (the document's top level) or "paths.<path>.<method>.x-gatehouse-policy".
type PlanError struct{ Errs field.ErrorList }

func (e *PlanError) Error() string { return e.Errs.Error() }

// Unwrap returns Errs.
func (e *PlanError) Unwrap() error { return e.Errs }

// NewPlan matches the document's operations with the service's APIs (see
// the package documentation) and decides every write. Its errors are
// *PlanError.
func NewPlan(doc *Document, t Target, st State) (*Plan, error) {
	var errs field.ErrorList
	errs.Add(unknownPolicies(doc, t, st)...)

	// Match: by operationId, then by id, then by method and path shape.
	byOperationID, byID, byName := map[string]*store.Typed[model.APISpec]{}, map[string]*store.Typed[model.APISpec]{}, map[string]*store.Typed[model.APISpec]{}
	for _, a := range st.APIs {
		if a.Spec.OperationID != "" && byOperationID[a.Spec.OperationID] == nil {
			byOperationID[a.Spec.OperationID] = a
		}
		byID[a.Meta.ID] = a
		if a.Meta.Name != "" {
			byName[a.Meta.Name] = a
		}
	}
	ops := doc.operations
	matched := make([]*store.Typed[model.APISpec], len(ops))
	claimed := map[string]bool{} // API ids
	claim := func(lookup func(op *operation) *store.Typed[model.APISpec]) {
		for i := range ops {
			if matched[i] != nil {
				continue
			}
			if a := lookup(&ops[i]); a != nil && !claimed[a.Meta.ID] {
				matched[i], claimed[a.Meta.ID] = a, true
			}
		}
	}
	claim(func(op *operation) *store.Typed[model.APISpec] {
		if op.operationID == "" {
			return nil
		}
		return byOperationID[op.operationID]
	})
	claim(func(op *operation) *store.Typed[model.APISpec] {
		if op.id == "" {
			return nil
		}
		return byID[op.id]
	})
	claim(func(op *operation) *store.Typed[model.APISpec] { return byName[op.endpoint.Name(t.ServiceID)] })

	p := &Plan{APIs: make([]PlannedAPI, 0, len(ops)), Ignored: doc.ignored, Warnings: doc.warnings}
	if p.Ignored == nil {
		p.Ignored = []IgnoredAPI{}
	}
	if p.Warnings == nil {
		p.Warnings = []ImportWarning{}
	}
	for _, a := range st.APIs {
		if !claimed[a.Meta.ID] {
			p.Remove = append(p.Remove, a)
		}
	}
	for i := range ops {
		op := &ops[i]
		var pa PlannedAPI
		if stored := matched[i]; stored != nil {
			a := *stored
			pa = PlannedAPI{API: &a, StoredName: stored.Meta.Name}
		} else {
			// The id is free unless another service's API or one of this
			// service's APIs the import keeps has it (removals come first).
			id := op.id
			if id == "" || st.TakenIDs[id] || claimed[id] {
				id = uuid.NewString()
			}
			pa = PlannedAPI{Create: true, API: &store.Typed[model.APISpec]{
				Meta: store.Object{TenantID: t.TenantID, ID: id, ParentID: t.ServiceID},
				Spec: model.APISpec{ServiceID: t.ServiceID, CanHavePolicy: true},
			}}
		}
		a := pa.API
		a.Meta.Name = op.endpoint.Name(t.ServiceID)
		a.Spec.Method, a.Spec.Path = op.endpoint.Method, op.endpoint.Template.Raw
		a.Spec.Imported, a.Spec.OperationID, a.Spec.Position = true, op.operationID, i
		errs.Add(bindPolicy(a, op, t, doc))
		p.APIs = append(p.APIs, pa)
	}
	if len(errs) > 0 {
		// A pointer, not the list itself: errors are compared with == on
		// their way out of store transactions, and a slice cannot be.
		return nil, &PlanError{Errs: capErrors(errs)}
	}
	p.CreateScopes, p.IgnoredScopes = planScopes(doc, t, st)
	return p, nil
}

// bindPolicy sets the API's policy from the operation's x-gatehouse-policy,
// else the request's default, else the document's; with none, the API
// keeps the policy it has.
func bindPolicy(a *store.Typed[model.APISpec], op *operation, t Target, doc *Document) *field.Error {
	id, own := op.policy, true
	if id == "" {
		id, own = t.DefaultPolicyID, false
		if id == "" {
			id = doc.policy
		}
	}
	if id == "" {
		return nil
	}
	if a.Spec.Public || !a.Spec.CanHavePolicy {
		if !own {
			// Defaults protect the APIs that can take a policy.
			return nil
		}
		why := "is public (a public API is served without any policy); set public to false first"
		if !a.Spec.CanHavePolicy {
			why = "has can_have_policy false; set it to true first"
		}
		return field.Invalid(op.where.Child(PolicyExtension), "cannot bind policy %q to API %q of %s: the API %s, or remove %s",
			id, a.Meta.ID, op.what, why, PolicyExtension)
	}
	a.Spec.PolicyID = id
	return nil
}

// unknownPolicies lists the named policies that do not exist: the request's
// default first, then the document's, then the operations'.
func unknownPolicies(doc *Document, t Target, st State) field.ErrorList {
	var errs field.ErrorList
	if id := t.DefaultPolicyID; id != "" && !st.Policies[id] {
		errs.Add(field.Invalid(field.NewPath(DefaultPolicyField), "policy %q does not exist", id))
	}
	for _, r := range doc.refs {
		if st.Policies[r.id] {
			continue
		}
		if r.what == "" {
			errs.Add(&field.Error{Field: r.field, Code: field.CodeInvalid,
				Message: fmt.Sprintf("policy %q does not exist (the document's default policy)", r.id)})
			continue
		}
		errs.Add(&field.Error{Field: r.field, Code: field.CodeInvalid,
			Message: fmt.Sprintf("policy %q does not exist (operation %s)", r.id, r.what)})
	}
	return errs
}

// capErrors keeps the first maxSpecErrors problems.
func capErrors(errs field.ErrorList) field.ErrorList {
	if len(errs) <= maxSpecErrors {
		return errs
	}
	n := len(errs) - maxSpecErrors
	errs = errs[:maxSpecErrors:maxSpecErrors]
	return append(errs, &field.Error{Code: field.CodeInvalid, Message: fmt.Sprintf("… and %d more problems", n)})
}

// planScopes creates the declared OAuth2 scopes that do not exist yet,
// bound to the service.
func planScopes(doc *Document, t Target, st State) ([]*store.Typed[model.ScopeSpec], []IgnoredScope) {
	created, ignored := []*store.Typed[model.ScopeSpec]{}, []IgnoredScope{}
	for _, sc := range doc.scopes {
		if !model.ValidScopeName(sc.name) {
			ignored = append(ignored, IgnoredScope{Name: sc.name, Reason: "not a valid scope name (" + model.ScopeNameRule + ")"})
			continue
		}
		if id, ok := st.Scopes[sc.name]; ok {
			ignored = append(ignored, IgnoredScope{Name: sc.name, ScopeID: id, Reason: "a scope with this name already exists"})
			continue
		}
		desc := []rune(sc.description)
		if len(desc) > 4096 {
			desc = desc[:4096]
		}
		created = append(created, &store.Typed[model.ScopeSpec]{
			Meta: store.Object{TenantID: t.TenantID, ID: uuid.NewString(), Name: sc.name, Description: string(desc)},
			Spec: model.ScopeSpec{ServiceID: t.ServiceID},
		})
	}
	return created, ignored
}
