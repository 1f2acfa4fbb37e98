package admin

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"

	"github.com/gatehouse-dev/gatehouse/directory"
	"github.com/gatehouse-dev/gatehouse/internal/httpapi"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/store"
)

// Identity providers in the configuration document (issue 14 item 9):
// every field of the identity provider routes except the client secret,
// which never leaves the server, not even sealed (its sealing binds the
// tenant and the provider's id). The export says client_secret_set. An
// import keeps the stored secret of a provider it updates unless the
// item says client_secret_set false (the secret is removed, as PUT does);
// a provider it creates has none (a public client using PKCE) unless the
// item carries client_secret in clear — write-only, sealed by the import
// for the target tenant, never exported, echoed or put in an event; a
// clear secret equal to the stored one changes nothing. The document's
// providers come before its servers (the servers' Unlink reference), and
// importResolve checks what names them: the servers' login methods and
// the tenant's provider_id must resolve to a provider of the document (in
// merge mode also a stored one) or a system-wide one, and a replace may
// not drop a provider something the document does not hold still uses (a
// system server the document leaves out; for the system tenant, another
// tenant's servers or provider_id).

// idpDocumentItem is an identity provider of the configuration document:
// the route's body without tenant_id and metadata. ClientSecret is
// write-only (documents written for an import); an export never has it.
type idpDocumentItem struct {
	ID                    string              `json:"id"`
	Name                  string              `json:"name"`
	Description           string              `json:"description"`
	Type                  string              `json:"type"`
	Issuer                string              `json:"issuer"`
	AuthorizationEndpoint string              `json:"authorization_endpoint"`
	TokenEndpoint         string              `json:"token_endpoint"`
	UserInfoEndpoint      string              `json:"user_info_endpoint"`
	JWKSURI               string              `json:"jwks_uri"`
	ClientID              string              `json:"client_id"`
	ClientSecret          string              `json:"client_secret,omitempty"`
	ClientSecretSet       *bool               `json:"client_secret_set"`
	Scopes                []string            `json:"scopes"`
	Domains               []string            `json:"domains"`
	LinkByEmail           bool                `json:"link_by_email"`
	ExtraAuthParams       map[string]string   `json:"extra_auth_params"`
	Mappings              []model.AuthMapping `json:"mappings"`
	Active                *bool               `json:"active"`
	Labels                map[string]string   `json:"labels"`
}

// idpDocumentSpec is an identity provider's spec as an import compares
// and carries it: the stored spec without the sealed secret and the role
// mapping (issue G's, kept by the import as by PUT), with whether it has
// a secret and, from a document, the secret in clear until importWrite
// seals it.
type idpDocumentSpec struct {
	model.IdentityProviderSpec
	// SecretSet is whether the provider has a client secret after the
	// import; nil (a document that leaves client_secret_set out or says
	// true) until importResolve knows the stored provider's.
	SecretSet *bool `json:"client_secret_set,omitempty"`
	// ClientSecret is a document's secret in clear (importResolve drops
	// it when it is the stored one).
	ClientSecret string `json:"client_secret,omitempty"`
}

// idpCanonical is the identity providers' resource.Kind.Canonical: a
// stored spec in the form of idpDocumentSpec, so that an import
// recognises an unchanged provider.
func idpCanonical(raw json.RawMessage) ([]byte, error) {
	var spec model.IdentityProviderSpec
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &spec); err != nil {
			return nil, err
		}
	}
	set := spec.ClientSecretSealed != ""
	spec.ClientSecretSealed, spec.RoleMapping = "", nil
	return json.Marshal(idpDocumentSpec{IdentityProviderSpec: spec, SecretSet: &set})
}

// exportIdP renders a stored provider (or, for an import's list of
// changed fields, a document's) as a document item. A document's secret
// in clear is never rendered: an item about to set one shows
// client_secret masked, which only the changed fields ever see (stored
// providers hold no secret in clear).
func exportIdP(o *store.Object) (any, error) {
	var spec idpDocumentSpec
	if err := decodeSpec(o, &spec); err != nil {
		return nil, err
	}
	set := spec.ClientSecretSealed != ""
	if spec.SecretSet != nil {
		set = *spec.SecretSet
	}
	item := idpDocumentItem{
		ID: o.ID, Name: o.Name, Description: o.Description, Type: spec.Type, Issuer: spec.Issuer,
		AuthorizationEndpoint: spec.AuthorizationEndpoint, TokenEndpoint: spec.TokenEndpoint, UserInfoEndpoint: spec.UserInfoEndpoint,
		JWKSURI: spec.JWKSURI, ClientID: spec.ClientID, ClientSecretSet: &set, Scopes: nonNilStrings(spec.Scopes),
		Domains: nonNilStrings(spec.Domains), LinkByEmail: spec.LinkByEmail, ExtraAuthParams: spec.ExtraAuthParams,
		Mappings: spec.Mappings, Active: &spec.Active, Labels: labelsOrEmpty(o.Labels),
	}
	if item.ExtraAuthParams == nil {
		item.ExtraAuthParams = map[string]string{}
	}
	if item.Mappings == nil {
		item.Mappings = []model.AuthMapping{}
	}
	if spec.ClientSecret != "" {
		item.ClientSecret = maskedValue
	}
	return item, nil
}

// configIdPObject validates a document's identity provider with the
// rules of the routes (buildIdP); active defaults to true. A secret in
// clear needs the server's secret box.
func configIdPObject(s *Server, in *idpDocumentItem) (*configObject, *Error) {
	if apiErr := configID(in.ID); apiErr != nil {
		return nil, apiErr
	}
	req := idpRequest{Name: in.Name, Description: in.Description, Type: in.Type, Issuer: in.Issuer,
		AuthorizationEndpoint: in.AuthorizationEndpoint, TokenEndpoint: in.TokenEndpoint, UserInfoEndpoint: in.UserInfoEndpoint,
		JWKSURI: in.JWKSURI, ClientID: in.ClientID, ClientSecret: in.ClientSecret, ClientSecretSet: in.ClientSecretSet,
		Scopes: in.Scopes, Domains: in.Domains, LinkByEmail: in.LinkByEmail, ExtraAuthParams: in.ExtraAuthParams,
		Mappings: in.Mappings, Active: in.Active, Labels: in.Labels}
	b, errs := s.buildIdP("", &req)
	if len(errs) > 0 {
		return nil, fieldErrors(errs)
	}
	if apiErr := s.needsBox(b, "client_secret"); apiErr != nil {
		return nil, apiErr
	}
	doc := idpDocumentSpec{IdentityProviderSpec: b.spec}
	doc.Active = b.active == nil || *b.active
	switch b.secret {
	case idpSecretSet:
		doc.ClientSecret = b.plain
	case idpSecretRemove:
		doc.SecretSet = new(bool)
	}
	return newConfigObject(model.KindIdentityProvider, in.ID, b.meta.Name, "", b.meta.Description, b.meta.Labels, doc)
}

// importIdPWrite is the identity providers' importWrite: the provider is
// stored with its secret — a document's in clear sealed for this tenant
// and id, else the stored one kept (importResolve said it stays) or none
// — and the role mapping it had.
func (s *Server) importIdPWrite(_ context.Context, _ store.Tx, tid string, cur, want *store.Object) error {
	var doc idpDocumentSpec
	if err := decodeSpec(want, &doc); err != nil {
		return err
	}
	spec := doc.IdentityProviderSpec
	spec.ClientSecretSealed = ""
	if cur != nil {
		var old model.IdentityProviderSpec
		if err := decodeSpec(cur, &old); err != nil {
			return err
		}
		spec.RoleMapping = old.RoleMapping
		if doc.ClientSecret == "" && doc.SecretSet != nil && *doc.SecretSet {
			spec.ClientSecretSealed = old.ClientSecretSealed
		}
	}
	if doc.ClientSecret != "" {
		sealed, err := directory.SealIdPSecret(s.box, tid, want.ID, doc.ClientSecret)
		if err != nil {
			return fmt.Errorf("seal the client secret of identity provider %q: %w", want.ID, err)
		}
		spec.ClientSecretSealed = sealed
	}
	raw, err := json.Marshal(spec)
	if err != nil {
		return err
	}
	want.Spec = raw
	return nil
}

// serverIdPIDs are the identity providers a server's login methods name.
func serverIdPIDs(sp *model.ServerSpec) []string {
	var ids []string
	for _, m := range sp.Authentications {
		if m.OIDC != nil && m.OIDC.IdentityProviderID != "" {
			ids = append(ids, m.OIDC.IdentityProviderID)
		}
	}
	return ids
}

// configIdP is an identity provider as the import leaves it: its spec
// and where the document has it ("" for a stored one a merge keeps).
type configIdP struct {
	spec  *model.IdentityProviderSpec
	field string
}

// resolveConfigIdPs is the identity providers' importResolve: it settles
// each document provider's secret (kept, removed, new, or a clear one
// that is already the stored one: then dropped, so an unchanged provider
// stays unchanged), then checks, before anything is written, that the
// providers' domains are unique in the tenant (409 naming
// identity_providers[i].domains[j]), that every login method of the
// document's servers and the tenant's provider_id name a provider of the
// document (merge: or a stored one) or a system-wide one (400 naming the
// document path; azure's must be Entra ID, cognito's a user pool), and
// that a replace drops no provider still in use where the document does
// not decide (409 in_use): by a system server the document leaves out
// (kept), or, for the system tenant, by another tenant.
func (s *Server) resolveConfigIdPs(ctx context.Context, tx store.Tx, tid string, plan *configPlan, stored map[string]configState, merge bool) error {
	want, have := plan.objects[model.KindIdentityProvider], stored[model.KindIdentityProvider]
	after := map[string]configIdP{}
	if merge {
		for id, o := range have {
			var spec model.IdentityProviderSpec
			if err := decodeSpec(o, &spec); err != nil {
				return err
			}
			after[id] = configIdP{spec: &spec}
		}
	}
	for _, o := range want {
		doc, err := s.resolveIdPSecret(tid, o, have[o.obj.ID])
		if err != nil {
			return err
		}
		after[o.obj.ID] = configIdP{spec: &doc.IdentityProviderSpec, field: o.field}
	}
	if apiErr := configIdPDomains(want, after); apiErr != nil {
		return apiErr
	}
	lookup := func(id string) (*model.IdentityProviderSpec, error) {
		if p, ok := after[id]; ok {
			return p.spec, nil
		}
		if tid == model.SystemTenantID {
			return nil, nil
		}
		p, err := directory.IdentityProviders.Get(ctx, tx, model.SystemTenantID, id)
		switch {
		case errors.Is(err, store.ErrNotFound):
			return nil, nil
		case err != nil:
			return nil, err
		}
		return &p.Spec, nil
	}
	for _, o := range plan.objects[model.KindServer] {
		if err := configServerIdPRefs(o, lookup); err != nil {
			return err
		}
	}
	if err := configTenantDirectory(ctx, tx, tid, &plan.tenant, after); err != nil {
		return err
	}
	if merge {
		return nil // nothing is dropped
	}
	return configIdPsDropped(ctx, tx, tid, plan, have, after)
}

// resolveIdPSecret settles the secret of document provider o (cur: the
// stored one, or nil) in its spec, and returns the spec.
func (s *Server) resolveIdPSecret(tid string, o *configObject, cur *store.Object) (*idpDocumentSpec, error) {
	var doc idpDocumentSpec
	if err := decodeSpec(&o.obj, &doc); err != nil {
		return nil, err
	}
	sealed := ""
	if cur != nil {
		var old model.IdentityProviderSpec
		if err := decodeSpec(cur, &old); err != nil {
			return nil, err
		}
		sealed = old.ClientSecretSealed
	}
	var set bool
	switch {
	case doc.ClientSecret != "":
		set = true
		if sealed != "" && s.box != nil {
			// The stored secret, when it opens, is compared in constant
			// time; one that does not open is replaced.
			if v, err := directory.OpenIdPSecret(s.box, tid, o.obj.ID, sealed); err == nil &&
				subtle.ConstantTimeCompare([]byte(v), []byte(doc.ClientSecret)) == 1 {
				doc.ClientSecret = ""
			}
		}
	case doc.SecretSet == nil:
		set = sealed != ""
	}
	doc.SecretSet = &set
	raw, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	o.obj.Spec = raw
	return &doc, nil
}

// configIdPDomains refuses (409) a domain two providers of the tenant
// would have after the import: the document's, and the stored ones a
// merge keeps.
func configIdPDomains(want []*configObject, after map[string]configIdP) *Error {
	owner := map[string]string{} // domain -> provider id
	for _, id := range slices.Sorted(maps.Keys(after)) {
		if after[id].field == "" {
			for _, d := range after[id].spec.Domains {
				owner[d] = id
			}
		}
	}
	for _, o := range want {
		for j, d := range after[o.obj.ID].spec.Domains {
			other, taken := owner[d]
			if !taken {
				owner[d] = o.obj.ID
				continue
			}
			f := fmt.Sprintf("%s.domains[%d]", o.field, j)
			where := fmt.Sprintf("identity provider %q", other)
			if p := after[other].field; p != "" {
				where += " (" + p + ")"
			} else {
				where += ", which a merge keeps"
			}
			return newError(http.StatusConflict, httpapi.CodeAlreadyExists, fmt.Sprintf("%s: %q is also a domain of %s", f, d, where),
				map[string]any{"field": f, "value": d, "reason": "already a domain of another identity provider", "kind": "identity provider", "id": other})
		}
	}
	return nil
}

// configServerIdPRefs checks the identity providers the login methods of
// document server o name (lookup: the provider after the import, or nil).
func configServerIdPRefs(o *configObject, lookup func(string) (*model.IdentityProviderSpec, error)) error {
	var spec model.ServerSpec
	if err := decodeSpec(&o.obj, &spec); err != nil {
		return err
	}
	for j, m := range spec.Authentications {
		if m.OIDC == nil || m.OIDC.IdentityProviderID == "" {
			continue
		}
		id := m.OIDC.IdentityProviderID
		f := fmt.Sprintf("%s.authentications[%d].oidc.identity_provider_id", o.field, j)
		idp, err := lookup(id)
		switch {
		case err != nil:
			return err
		case idp == nil:
			return fieldError(f, "identity provider %q is neither in the document's identity_providers nor a system-wide one", id)
		}
		switch m.Method {
		case model.LoginAzure:
			if idp.Type != model.IdPMicrosoft && !azureIssuer(idp.Issuer) {
				return fieldError(f, "identity provider %q (issuer %q) is not Microsoft Entra ID: its type must be microsoft or its issuer https://login.microsoftonline.com/{tenant}/v2.0", id, idp.Issuer)
			}
		case model.LoginCognito:
			if !cognitoIssuer(idp.Issuer) {
				return fieldError(f, "identity provider %q (issuer %q) is not an Amazon Cognito user pool: its issuer must be https://cognito-idp.{region}.amazonaws.com/{user_pool_id}", id, idp.Issuer)
			}
		}
	}
	return nil
}

// configTenantDirectory checks the document tenant's directory settings
// against the import: provider_id names a provider the tenant has after
// it (provider_scope organization) or a system-wide one (global), 400
// tenant.provider_id; no other tenant has one of its domains (409
// tenant.domains[i]).
func configTenantDirectory(ctx context.Context, tx store.Tx, tid string, t *configTenant, after map[string]configIdP) error {
	if id := t.ProviderID; id != "" {
		if t.ProviderScope == providerScopeGlobal && tid != model.SystemTenantID {
			switch _, err := directory.IdentityProviders.Get(ctx, tx, model.SystemTenantID, id); {
			case errors.Is(err, store.ErrNotFound):
				return fieldError("tenant.provider_id", "identity provider %q is not a system-wide one (provider_scope global)", id)
			case err != nil:
				return err
			}
		} else if _, ok := after[id]; !ok {
			return fieldError("tenant.provider_id", "identity provider %q is not in the document's identity_providers (provider_scope organization)", id)
		}
	}
	var sp model.TenantSpec
	t.tenantDirectoryFields.apply(&sp)
	sp.ProviderID = "" // checked above
	if err := checkTenantDirectory(ctx, tx, tid, &sp, ""); err != nil {
		if apiErr := (*Error)(nil); errors.As(err, &apiErr) {
			return atPath("tenant", apiErr)
		}
		return err
	}
	return nil
}

// configIdPsDropped refuses (409 in_use) a replace that drops a stored
// provider something outside the document's decision still uses: a
// system server of the tenant the document leaves out (a replace keeps
// it, login methods and all), and, for the system tenant, other tenants'
// servers and provider_id (as idpDeletable).
func configIdPsDropped(ctx context.Context, tx store.Tx, tid string, plan *configPlan, have configState, after map[string]configIdP) error {
	var dropped []string
	for _, id := range slices.Sorted(maps.Keys(have)) {
		if _, kept := after[id]; !kept {
			dropped = append(dropped, id)
		}
	}
	if len(dropped) == 0 {
		return nil
	}
	named := map[string]bool{}
	for _, o := range plan.objects[model.KindServer] {
		named[o.obj.ID] = true
	}
	servers, err := serverRepo.ListAll(ctx, tx, store.Query{TenantID: tid})
	if err != nil {
		return err
	}
	for _, id := range dropped {
		users := map[string][]string{}
		if tid == model.SystemTenantID {
			if users, err = idpUsers(ctx, tx, tid, id, false); err != nil {
				return err
			}
		}
		for _, srv := range servers {
			if !named[srv.Meta.ID] && srv.Spec.System && slices.Contains(serverIdPIDs(&srv.Spec), id) {
				users["servers"] = append(users["servers"], tid+"/"+srv.Meta.ID)
			}
		}
		if len(users) > 0 {
			e := inUse("identity provider", id, users)
			e.Message = fmt.Sprintf("identity provider %q is in use (%s); the document cannot drop it", id, describeUsers(users))
			return e
		}
	}
	return nil
}

// describeUsers renders an in_use answer's users for its message.
func describeUsers(users map[string][]string) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(users)) {
		parts = append(parts, k+" "+strings.Join(users[k], ", "))
	}
	return strings.Join(parts, "; ")
}
