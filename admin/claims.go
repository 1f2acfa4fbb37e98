package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"

	"github.com/gatehouse-dev/gatehouse/internal/field"
	"github.com/gatehouse-dev/gatehouse/internal/httpapi"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/resource"
	"github.com/gatehouse-dev/gatehouse/store"
)

// Claims (WAVE2 §1.1 createClaim …): /api/admin/{tid}/claims[/{claim}].
// A claim maps a value of the authentication context (mapping, a dotted
// path) into the ID or access tokens of one server (type), when one of
// its scopes is granted (none: always). Its name is unique per server and
// token type; the names Gatehouse sets itself (model.ReservedClaimNames)
// are refused. Claims go with their server.

var oauthClaimRepo = store.Repo[model.ClaimSpec]{Kind: model.KindClaim}

// claimMappingPattern: a dotted path of identifier segments ("email",
// "address.country", "groups").
var claimMappingPattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_][A-Za-z0-9_-]*)*$`)

// claimBody is a claim on the wire (seed 003 Claim): the body of create
// and PUT and what GET returns. tenant_id and metadata are read-only.
type claimBody struct {
	ID          string            `json:"id"`
	TenantID    string            `json:"tenant_id"`
	ServerID    string            `json:"authorization_server_id"`
	Name        string            `json:"name"`
	Mapping     string            `json:"mapping"`
	Type        string            `json:"type"`
	Scopes      []string          `json:"scopes"`
	Description string            `json:"description"`
	Labels      map[string]string `json:"labels"`
	Metadata    *Metadata         `json:"metadata,omitempty"`
}

func renderClaim(t *store.Typed[model.ClaimSpec]) claimBody {
	return claimBody{
		ID: t.Meta.ID, TenantID: t.Meta.TenantID, ServerID: t.Spec.ServerID, Name: t.Spec.Name, Mapping: t.Spec.Mapping,
		Type: t.Spec.Type, Scopes: nonNilStrings(t.Spec.Scopes), Description: t.Meta.Description,
		Labels: labelsOrEmpty(t.Meta.Labels), Metadata: metadataOf(&t.Meta),
	}
}

// claimKey is a claim's envelope name: its server, token type and name,
// unique in the tenant (the store keeps envelope names unique, and the
// configuration document recognises duplicates by them).
func claimKey(spec *model.ClaimSpec) string {
	return spec.ServerID + "/" + spec.Type + "/" + spec.Name
}

// addClaimKind registers claims (called by addClientKinds).
func addClaimKind(sch *resource.Scheme) {
	simpleKind[model.ClaimSpec, claimBody, claimBody]{
		Kind: &resource.Kind{
			Name: model.KindClaim, Singular: "claim", Exported: true,
			Refs: []resource.Ref{{Field: "authorization_server_id", Kind: model.KindServer, OnDelete: resource.Cascade,
				IDs: specIDs(func(s *model.ClaimSpec) []string { return []string{s.ServerID} })}},
		},
		Param: "claim", NameField: "name",
		Render: renderClaim, ID: func(r *claimBody) string { return r.ID },
		Build: func(_ *Server, tid, _ string, r *claimBody) (store.Object, model.ClaimSpec, error) {
			spec := model.ClaimSpec{ServerID: r.ServerID, Name: r.Name, Mapping: r.Mapping, Type: r.Type, Scopes: nilIfEmpty(r.Scopes)}
			return store.Object{Name: claimKey(&spec), Description: r.Description, Labels: r.Labels}, spec, r.validate(tid).OrNil()
		},
		Check: func(ctx context.Context, tx store.Tx, t *store.Typed[model.ClaimSpec]) error {
			return uniqueClaim(ctx, tx, t)
		},
	}.register(sch)
}

// validate lists every problem of a claim body (tid "": from a
// configuration document).
func (r *claimBody) validate(tid string) field.ErrorList {
	var errs field.ErrorList
	if tid != "" && r.TenantID != "" && r.TenantID != tid {
		errs.Add(field.Invalid(field.NewPath("tenant_id"), "does not match the tenant in the path"))
	}
	switch {
	case r.ServerID == "":
		errs.Add(field.Required(field.NewPath("authorization_server_id")))
	case !model.ValidObjectID(r.ServerID):
		errs.Add(field.Invalid(field.NewPath("authorization_server_id"), "invalid id %q (%s)", r.ServerID, model.ObjectIDRule))
	}
	switch {
	case r.Name == "":
		errs.Add(field.Required(field.NewPath("name")))
	case !model.ValidScopeName(r.Name):
		errs.Add(field.Invalid(field.NewPath("name"), "%q is not a claim name (%s)", r.Name, model.ScopeNameRule))
	case slices.Contains(model.ReservedClaimNames, r.Name):
		errs.Add(field.Invalid(field.NewPath("name"), "%q is reserved: Gatehouse sets it in every token (reserved: %v)", r.Name, model.ReservedClaimNames))
	}
	switch {
	case r.Mapping == "":
		errs.Add(field.Required(field.NewPath("mapping")))
	case len(r.Mapping) > 256 || !claimMappingPattern.MatchString(r.Mapping):
		errs.Add(field.Invalid(field.NewPath("mapping"), "must be a dotted path into the authentication context, such as email or address.country (segments of letters, digits, '_' and '-', not starting with a digit; at most 256 characters)"))
	}
	switch r.Type {
	case "":
		errs.Add(field.Required(field.NewPath("type")))
	case model.ClaimIDToken, model.ClaimAccessToken:
	default:
		errs.Add(field.Invalid(field.NewPath("type"), "must be %s or %s, not %q", model.ClaimIDToken, model.ClaimAccessToken, r.Type))
	}
	seen := map[string]bool{}
	for i, sc := range r.Scopes {
		switch {
		case !model.ValidScopeName(sc):
			errs.Add(field.Invalid(field.NewPath("scopes").Index(i), "%q is not a scope name (%s)", sc, model.ScopeNameRule))
		case seen[sc]:
			errs.Add(field.Invalid(field.NewPath("scopes").Index(i), "%q is listed twice", sc))
		}
		seen[sc] = true
	}
	errs.Extend(textErrors("description", r.Description, false, 4096))
	errs.Extend(labelErrors(r.Labels))
	return errs
}

// uniqueClaim refuses a claim whose name another claim of the same
// server and token type already has (409 naming name).
func uniqueClaim(ctx context.Context, tx store.Tx, t *store.Typed[model.ClaimSpec]) error {
	o, err := tx.GetByName(ctx, model.KindClaim, t.Meta.TenantID, claimKey(&t.Spec))
	switch {
	case err == nil && o.ID != t.Meta.ID:
		return newError(http.StatusConflict, httpapi.CodeAlreadyExists,
			fmt.Sprintf("name: server %q already has the %s claim %q (claim %q)", t.Spec.ServerID, t.Spec.Type, t.Spec.Name, o.ID),
			map[string]any{"field": "name", "reason": "already a claim of this server and token type", "kind": "claim", "id": o.ID})
	case err != nil && !errors.Is(err, store.ErrNotFound):
		return err
	}
	return nil
}
