package openapiimport

import (
	"context"
	"errors"
	"fmt"

	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/store"
)

var (
	serviceRepo = store.Repo[model.ServiceSpec]{Kind: model.KindService}
	apiRepo     = store.Repo[model.APISpec]{Kind: model.KindAPI}
	scopeRepo   = store.Repo[model.ScopeSpec]{Kind: model.KindScope}
)

// Audit names who runs an import: the actor is the objects'
// created_by/updated_by and, with the request id, in every audit event.
type Audit struct {
	Actor     string
	RequestID string
}

// Result is what an import did; the objects are as written.
type Result struct {
	Created, Updated, Removed []*store.Typed[model.APISpec]
	Ignored                   []IgnoredAPI
	// Warnings are the operations imported with a fallback template.
	Warnings      []ImportWarning
	CreatedScopes []*store.Typed[model.ScopeSpec]
	IgnoredScopes []IgnoredScope
	Service       *store.Typed[model.ServiceSpec]
}

// Apply imports doc into the target service in tx: it reads the stored
// state, makes the plan (NewPlan) and writes it, with one audit event per
// write, and marks the service with_specification. Its errors are the
// store's (store.ErrNotFound for the service, store.ErrConflict for a
// stale Target.ServiceRevision), a *PlanError (policies), or what
// writing failed with; the caller's transaction must then be dropped.
func Apply(ctx context.Context, tx store.Tx, t Target, doc *Document, a Audit) (*Result, error) {
	svc, err := serviceRepo.Get(ctx, tx, t.TenantID, t.ServiceID)
	if err != nil {
		return nil, err
	}
	if t.ServiceRevision != 0 && svc.Meta.Revision != t.ServiceRevision {
		return nil, store.ErrConflict
	}
	st, err := ReadState(ctx, tx, t, doc)
	if err != nil {
		return nil, err
	}
	p, err := NewPlan(doc, t, st)
	if err != nil {
		return nil, err
	}
	res, err := p.write(ctx, tx, t.TenantID, a)
	if err != nil {
		return nil, err
	}
	svc.Spec.WithSpecification = true
	svc.Meta.UpdatedBy = a.Actor
	if err := serviceRepo.Update(ctx, tx, svc, 0); err != nil {
		return nil, err
	}
	res.Service = svc
	return res, record(ctx, tx, a, t.TenantID, "update", model.KindService, t.ServiceID)
}

// ReadState reads what NewPlan needs from rd: the service's APIs, which of
// the document's API ids other services hold, which named policies and
// declared scopes exist.
func ReadState(ctx context.Context, rd store.Reader, t Target, doc *Document) (State, error) {
	st := State{TakenIDs: map[string]bool{}, Policies: map[string]bool{}, Scopes: map[string]string{}}
	var err error
	if st.APIs, err = apiRepo.ListAll(ctx, rd, store.Query{TenantID: t.TenantID, ParentID: t.ServiceID}); err != nil {
		return st, err
	}
	for _, id := range doc.APIIDs() {
		o, err := rd.Get(ctx, model.KindAPI, t.TenantID, id)
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			return st, err
		case o.ParentID != t.ServiceID:
			st.TakenIDs[id] = true
		}
	}
	policies := doc.PolicyIDs()
	if t.DefaultPolicyID != "" {
		policies = append(policies, t.DefaultPolicyID)
	}
	for _, id := range policies {
		_, err := rd.Get(ctx, model.KindPolicy, t.TenantID, id)
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			return st, err
		default:
			st.Policies[id] = true
		}
	}
	for _, name := range doc.ScopeNames() {
		if !model.ValidScopeName(name) {
			continue
		}
		sc, err := scopeRepo.GetByName(ctx, rd, t.TenantID, name)
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			return st, err
		default:
			st.Scopes[name] = sc.Meta.ID
		}
	}
	return st, nil
}

// write applies the plan: removals first, so no id or name is briefly held
// twice, then the APIs, then the scopes. An API taking a name another API
// is giving up waits until that one is written (a cycle, such as two APIs
// swapping routes, is broken by clearing one name first).
func (p *Plan) write(ctx context.Context, tx store.Tx, tid string, a Audit) (*Result, error) {
	res := &Result{
		Created: []*store.Typed[model.APISpec]{}, Updated: []*store.Typed[model.APISpec]{}, Removed: []*store.Typed[model.APISpec]{},
		Ignored: p.Ignored, Warnings: p.Warnings, CreatedScopes: []*store.Typed[model.ScopeSpec]{}, IgnoredScopes: p.IgnoredScopes,
	}
	for _, r := range p.Remove {
		if _, err := apiRepo.Delete(ctx, tx, tid, r.Meta.ID, 0); err != nil {
			return nil, err
		}
		if err := record(ctx, tx, a, tid, "delete", model.KindAPI, r.Meta.ID); err != nil {
			return nil, err
		}
		res.Removed = append(res.Removed, r)
	}
	// leaving: the names updated APIs still hold and will give up.
	leaving := map[string]bool{}
	for _, pa := range p.APIs {
		if !pa.Create && pa.StoredName != "" && pa.StoredName != pa.API.Meta.Name {
			leaving[pa.StoredName] = true
		}
	}
	pending := make([]PlannedAPI, len(p.APIs))
	copy(pending, p.APIs)
	for len(pending) > 0 {
		var waiting []PlannedAPI
		for _, pa := range pending {
			if leaving[pa.API.Meta.Name] {
				waiting = append(waiting, pa)
				continue
			}
			if err := writeAPI(ctx, tx, a, tid, pa); err != nil {
				return nil, err
			}
			delete(leaving, pa.StoredName)
		}
		if len(waiting) == len(pending) {
			// A cycle: every waiting API wants a name another one holds.
			// Clear the first updated one's name, so its own can be taken.
			if err := clearName(ctx, tx, waiting, leaving); err != nil {
				return nil, err
			}
		}
		pending = waiting
	}
	for _, pa := range p.APIs {
		if pa.Create {
			res.Created = append(res.Created, pa.API)
		} else {
			res.Updated = append(res.Updated, pa.API)
		}
	}
	for _, sc := range p.CreateScopes {
		sc.Meta.CreatedBy = a.Actor
		if err := scopeRepo.Create(ctx, tx, sc); err != nil {
			return nil, err
		}
		if err := record(ctx, tx, a, tid, "create", model.KindScope, sc.Meta.ID); err != nil {
			return nil, err
		}
		res.CreatedScopes = append(res.CreatedScopes, sc)
	}
	return res, nil
}

// clearName writes the name of the first updated API among waiting that
// holds a name another one wants as "" (names are unique only when set).
func clearName(ctx context.Context, tx store.Tx, waiting []PlannedAPI, leaving map[string]bool) error {
	for _, pa := range waiting {
		if pa.Create || !leaving[pa.StoredName] {
			continue
		}
		tmp := *pa.API
		tmp.Meta.Name = ""
		if err := apiRepo.Update(ctx, tx, &tmp, 0); err != nil {
			return err
		}
		delete(leaving, pa.StoredName)
		return nil
	}
	return fmt.Errorf("openapiimport: no API name to clear among %d waiting APIs", len(waiting))
}

func writeAPI(ctx context.Context, tx store.Tx, a Audit, tid string, pa PlannedAPI) error {
	api := pa.API
	api.Meta.UpdatedBy = a.Actor
	if pa.Create {
		api.Meta.CreatedBy = a.Actor
		if err := apiRepo.Create(ctx, tx, api); err != nil {
			return fmt.Errorf("create API %q: %w", api.Meta.ID, err)
		}
		return record(ctx, tx, a, tid, "create", model.KindAPI, api.Meta.ID)
	}
	if err := apiRepo.Update(ctx, tx, api, 0); err != nil {
		return fmt.Errorf("update API %q: %w", api.Meta.ID, err)
	}
	return record(ctx, tx, a, tid, "update", model.KindAPI, api.Meta.ID)
}

// record appends the audit event of one write to the transaction.
func record(ctx context.Context, tx store.Tx, a Audit, tid, action, kind, objectID string) error {
	return tx.AppendEvent(ctx, &store.Event{
		TenantID: tid, Actor: a.Actor, Action: action, Kind: kind, ObjectID: objectID, RequestID: a.RequestID,
	})
}
