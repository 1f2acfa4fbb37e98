package admin

import (
	"regexp"

	"github.com/gatehouse-dev/gatehouse/internal/field"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/resource"
	"github.com/gatehouse-dev/gatehouse/store"
)

var scopeRepo = store.Repo[model.ScopeSpec]{Kind: model.KindScope}

// scopeNamePattern: OAuth scope tokens (RFC 6749 §3.3: printable ASCII
// without space, '"' and '\').
var scopeNamePattern = regexp.MustCompile(`^[\x21\x23-\x5B\x5D-\x7E]{1,256}$`)

// scopeBody is a scope on the wire (seed 003 ScopeWithServiceID): the
// body of create and PUT and what GET returns. tenant_id, with_service and
// metadata are read-only.
type scopeBody struct {
	ID          string `json:"id"`
	TenantID    string `json:"tenant_id"`
	Name        string `json:"name"`
	DisplayName string `json:"display_name"`
	Description string `json:"description"`
	ServiceID   string `json:"service_id,omitempty"`
	ServerID    string `json:"server_id,omitempty"`
	// AuthorizationServerID is the seed's name of server_id, accepted in
	// request bodies (never rendered).
	AuthorizationServerID string            `json:"authorization_server_id,omitempty"`
	WithService           bool              `json:"with_service"`
	Labels                map[string]string `json:"labels"`
	Metadata              *Metadata         `json:"metadata,omitempty"`
}

func renderScope(t *store.Typed[model.ScopeSpec]) scopeBody {
	return scopeBody{
		ID: t.Meta.ID, TenantID: t.Meta.TenantID, Name: t.Meta.Name, DisplayName: t.Spec.DisplayName,
		Description: t.Meta.Description, ServiceID: t.Spec.ServiceID, ServerID: t.Spec.ServerID,
		WithService: t.Spec.ServiceID != "", Labels: labelsOrEmpty(t.Meta.Labels), Metadata: metadataOf(&t.Meta),
	}
}

// addScopeKind registers scopes: OAuth scopes, optionally bound to a
// service (which cannot be deleted while they are). PUT replaces the
// scope; with_service is read-only.
func addScopeKind(sch *resource.Scheme) {
	simpleKind[model.ScopeSpec, scopeBody, scopeBody]{
		Kind: &resource.Kind{
			Name: model.KindScope, Singular: "scope", Bundled: true, Exported: true,
			Refs: []resource.Ref{
				{Field: "service_id", Kind: model.KindService, OnDelete: resource.Restrict,
					IDs: specIDs(func(s *model.ScopeSpec) []string { return []string{s.ServiceID} })},
				{Field: "server_id", Kind: model.KindServer, OnDelete: resource.Restrict,
					IDs: specIDs(func(s *model.ScopeSpec) []string { return []string{s.ServerID} })},
			},
		},
		Param: "scp", ReadOnly: []string{"with_service"}, NameField: "name",
		Render: renderScope, ID: func(r *scopeBody) string { return r.ID },
		Build: func(_ *Server, tid, _ string, r *scopeBody) (store.Object, model.ScopeSpec, error) {
			errs := r.validate(tid) // resolves authorization_server_id first
			return store.Object{Name: r.Name, Description: r.Description, Labels: r.Labels},
				model.ScopeSpec{DisplayName: r.DisplayName, ServiceID: r.ServiceID, ServerID: r.ServerID}, errs.OrNil()
		},
	}.register(sch)
}

// serverIDErrors checks a body's server binding: server_id, or its seed
// alias authorization_server_id (the same value when both are given),
// which is resolved into server_id. Configuration documents carry
// server_id only (their references are checked by that name). Whether
// the server exists is the scheme's reference check.
func serverIDErrors(serverID, alias *string, tid string) field.ErrorList {
	var errs field.ErrorList
	if *alias != "" {
		switch {
		case tid == "":
			errs.Add(field.Invalid(field.NewPath("authorization_server_id"), "configuration documents name the server in server_id"))
		case *serverID != "" && *serverID != *alias:
			errs.Add(field.Invalid(field.NewPath("authorization_server_id"), "differs from server_id (%q); give one of them", *serverID))
		default:
			*serverID = *alias
		}
		*alias = ""
	}
	if *serverID != "" && !model.ValidObjectID(*serverID) {
		errs.Add(field.Invalid(field.NewPath("server_id"), "invalid id %q (%s)", *serverID, model.ObjectIDRule))
	}
	return errs
}

// validate lists every problem of a scope body (tid "": from a
// configuration document, no tenant to match).
func (r *scopeBody) validate(tid string) field.ErrorList {
	var errs field.ErrorList
	switch {
	case r.Name == "":
		errs.Add(field.Required(field.NewPath("name")))
	case !scopeNamePattern.MatchString(r.Name):
		errs.Add(field.Invalid(field.NewPath("name"), "must be 1-256 printable ASCII characters without spaces, '\"' or '\\'"))
	}
	errs.Extend(textErrors("display_name", r.DisplayName, false, 256))
	errs.Extend(textErrors("description", r.Description, false, 4096))
	if tid != "" && r.TenantID != "" && r.TenantID != tid {
		errs.Add(field.Invalid(field.NewPath("tenant_id"), "does not match the tenant in the path"))
	}
	if r.ServiceID != "" && !model.ValidObjectID(r.ServiceID) {
		errs.Add(field.Invalid(field.NewPath("service_id"), "invalid id (%s)", model.ObjectIDRule))
	}
	errs.Extend(serverIDErrors(&r.ServerID, &r.AuthorizationServerID, tid))
	errs.Extend(labelErrors(r.Labels))
	return errs
}
