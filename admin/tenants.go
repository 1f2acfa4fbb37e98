package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/mail"
	"slices"
	"strings"
	"time"

	"github.com/gatehouse-dev/gatehouse/oauth/keys"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/gatehouse-dev/gatehouse/directory"
	"github.com/gatehouse-dev/gatehouse/internal/field"
	"github.com/gatehouse-dev/gatehouse/internal/httpapi"
	"github.com/gatehouse-dev/gatehouse/internal/passwords"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/resource"
	"github.com/gatehouse-dev/gatehouse/store"
)

var tenantRepo = store.Repo[model.TenantSpec]{Kind: model.KindTenant, SoftDelete: true}

// tenantRequest is the body of POST /api/system/tenants and of the tenant
// PUTs. url, created and metadata are read-only: accepted unchanged (a PUT
// that changes url or created is a 400 naming it) so a GET response can
// be sent back as it is.
type tenantRequest struct {
	ID                            string                     `json:"id"`
	Name                          string                     `json:"name"`
	Description                   string                     `json:"description"`
	Status                        model.TenantStatus         `json:"status"`
	Labels                        map[string]string          `json:"labels"`
	AuthenticationContextSettings *model.AuthContextSettings `json:"authentication_context_settings"`
	URL                           string                     `json:"url"`
	Created                       *time.Time                 `json:"created"`
	Metadata                      json.RawMessage            `json:"metadata"`
	tenantDirectoryFields
	// IdentityProvider and AdminUser are accepted on create only: the
	// tenant's first identity provider and its first user, made in the
	// same transaction.
	IdentityProvider *idpRequest      `json:"identity_provider"`
	AdminUser        *tenantAdminUser `json:"admin_user"`
}

// tenantDirectoryFields are a tenant's directory settings (issue 14,
// WAVE2 §1.2 rows 16-19, §1.4 rows 1-5, §1.5 rows 1-5), on the wire as
// stored.
type tenantDirectoryFields struct {
	// OrganizationType is adhoc (default) or domain (users by their email
	// domains, which Domains lists).
	OrganizationType string `json:"organization_type"`
	// Domains are the tenant's email domains: lowercase DNS names, each
	// one tenant's at most (the login dispatches an email by its domain).
	Domains []string `json:"domains"`
	// ProviderScope says where ProviderID is: organization (default, the
	// tenant's own identity providers) or global (the system-wide ones).
	ProviderScope string `json:"provider_scope"`
	// ProviderID is the identity provider the tenant logs in with ("":
	// none named).
	ProviderID string `json:"provider_id"`
	// MFAProvider is "" (none) or totp.
	MFAProvider string `json:"mfa_provider"`
	// RealmName is a free label (seed 004), a list filter.
	RealmName string `json:"realm_name"`
}

// tenantAdminUser is the first user of a new tenant (POST
// /api/system/tenants admin_user): an active user of the tenant, with a
// password when one is given (argon2id). Its admin rights (the built-in
// tenant_admin role) come with issue G's role bindings.
type tenantAdminUser struct {
	Email      string `json:"email"`
	GivenName  string `json:"given_name"`
	FamilyName string `json:"family_name"`
	Password   string `json:"password"`
}

// Provider scopes of a tenant.
const (
	providerScopeGlobal       = "global"
	providerScopeOrganization = "organization"
)

// Organization types of a tenant.
const (
	organizationAdhoc  = "adhoc"
	organizationDomain = "domain"
)

// maxTenantDomains caps a tenant's email domains.
const maxTenantDomains = 100

// tenantResponse is how a tenant is rendered.
type tenantResponse struct {
	ID                            string                     `json:"id"`
	Name                          string                     `json:"name"`
	Description                   string                     `json:"description"`
	Status                        model.TenantStatus         `json:"status"`
	URL                           string                     `json:"url"`
	Labels                        map[string]string          `json:"labels"`
	AuthenticationContextSettings *model.AuthContextSettings `json:"authentication_context_settings,omitempty"`
	Created                       time.Time                  `json:"created"`
	Metadata                      *Metadata                  `json:"metadata"`
	tenantDirectoryFields
	// AdminUser is the user admin_user made, in the create response only.
	AdminUser *tenantAdminUserResponse `json:"admin_user,omitempty"`
}

// tenantAdminUserResponse names the user a tenant's create made.
type tenantAdminUserResponse struct {
	ID    string `json:"id"`
	Email string `json:"email"`
}

// tenantURL is the URL a tenant advertises: its own admin route
// (GET /api/admin/{tid}/tenant), which answers the tenant's credentials
// and system-wide tokens.
func tenantURL(public, tid string) string {
	return strings.TrimSuffix(public, "/") + "/api/admin/" + tid + "/tenant"
}

func (s *Server) renderTenant(t *store.Typed[model.TenantSpec]) tenantResponse {
	labels := t.Meta.Labels
	if labels == nil {
		labels = map[string]string{}
	}
	return tenantResponse{
		ID: t.Meta.ID, Name: t.Spec.Name, Description: t.Meta.Description, Status: t.Spec.Status,
		URL: tenantURL(s.public, t.Meta.ID), Labels: labels,
		AuthenticationContextSettings: t.Spec.AuthenticationContextSettings,
		Created:                       t.Meta.CreatedAt, Metadata: metadataOf(&t.Meta),
		tenantDirectoryFields: directoryFieldsOf(&t.Spec),
	}
}

// directoryFieldsOf renders a tenant's directory settings, the defaults
// named.
func directoryFieldsOf(sp *model.TenantSpec) tenantDirectoryFields {
	return tenantDirectoryFields{
		OrganizationType: cmpOr(sp.OrganizationType, organizationAdhoc), Domains: nonNilStrings(sp.Domains),
		ProviderScope: cmpOr(sp.ProviderScope, providerScopeOrganization), ProviderID: sp.ProviderID,
		MFAProvider: sp.MFAProvider, RealmName: sp.RealmName,
	}
}

// cmpOr is v, or def when v is "".
func cmpOr(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// directoryErrors checks the directory settings (every problem; the
// references are checkProvider's).
func (f *tenantDirectoryFields) directoryErrors() field.ErrorList {
	var errs field.ErrorList
	add := func(name, format string, args ...any) { errs.Add(field.Invalid(field.NewPath(name), format, args...)) }
	switch f.OrganizationType {
	case "", organizationAdhoc:
	case organizationDomain:
		if len(f.Domains) == 0 {
			add("domains", "organization_type domain needs at least one domain")
		}
	default:
		add("organization_type", "unknown organization type %q (adhoc or domain)", f.OrganizationType)
	}
	errs.Extend(domainErrors(field.NewPath("domains"), f.Domains, maxTenantDomains))
	switch f.ProviderScope {
	case "", providerScopeGlobal, providerScopeOrganization:
	default:
		add("provider_scope", "unknown provider scope %q (global or organization)", f.ProviderScope)
	}
	if f.ProviderID != "" && !model.ValidObjectID(f.ProviderID) {
		add("provider_id", "invalid id %q (%s)", f.ProviderID, model.ObjectIDRule)
	}
	switch f.MFAProvider {
	case model.MFANone, model.MFATOTP:
	default:
		add("mfa_provider", "unknown MFA provider %q (totp, or empty for none)", f.MFAProvider)
	}
	errs.Extend(textErrors("realm_name", f.RealmName, false, 256))
	return errs
}

// apply writes the settings onto a tenant's spec (defaults stored as "").
func (f *tenantDirectoryFields) apply(sp *model.TenantSpec) {
	sp.OrganizationType, sp.ProviderScope = f.OrganizationType, f.ProviderScope
	if sp.OrganizationType == organizationAdhoc {
		sp.OrganizationType = ""
	}
	if sp.ProviderScope == providerScopeOrganization {
		sp.ProviderScope = ""
	}
	sp.Domains, sp.ProviderID, sp.MFAProvider, sp.RealmName = f.Domains, f.ProviderID, f.MFAProvider, f.RealmName
	if len(sp.Domains) == 0 {
		sp.Domains = nil
	}
}

// checkTenantDirectory checks, in tx, a tenant's settings against the
// other objects: provider_id names a live identity provider of the tenant
// (organization) or of the system tenant (global) — inline is the id of
// the identity provider the same create makes — and no other live tenant
// has one of its domains (409).
func checkTenantDirectory(ctx context.Context, tx store.Tx, tid string, sp *model.TenantSpec, inline string) error {
	if id := sp.ProviderID; id != "" {
		owner := tid
		if sp.ProviderScope == providerScopeGlobal {
			owner = model.SystemTenantID
		}
		if !(owner == tid && id == inline) {
			if _, err := directory.IdentityProviders.Get(ctx, tx, owner, id); errors.Is(err, store.ErrNotFound) {
				where := "of this tenant (provider_scope organization)"
				if owner == model.SystemTenantID && tid != model.SystemTenantID {
					where = "among the system-wide ones (provider_scope global)"
				}
				return fieldError("provider_id", "identity provider %q does not exist %s", id, where)
			} else if err != nil {
				return err
			}
		}
	}
	if len(sp.Domains) == 0 {
		return nil
	}
	all, err := tenantRepo.ListAll(ctx, tx, store.Query{})
	if err != nil {
		return err
	}
	for _, other := range all {
		if other.Meta.ID == tid {
			continue
		}
		for i, d := range sp.Domains {
			if slices.Contains(other.Spec.Domains, d) {
				f := fmt.Sprintf("domains[%d]", i)
				return newError(http.StatusConflict, httpapi.CodeAlreadyExists,
					fmt.Sprintf("%s: %q is already a domain of tenant %q", f, d, other.Meta.ID),
					map[string]any{"field": f, "value": d, "reason": "already a domain of another tenant", "kind": "tenant", "id": other.Meta.ID})
			}
		}
	}
	return nil
}

// adminUserErrors checks the admin_user of a tenant's create.
func (u *tenantAdminUser) errors() field.ErrorList {
	var errs field.ErrorList
	p := field.NewPath("admin_user")
	errs.Extend(emailErrors(p.Child("email"), u.Email))
	errs.Extend(textErrors("given_name", u.GivenName, false, 256).Under(p))
	errs.Extend(textErrors("family_name", u.FamilyName, false, 256).Under(p))
	if u.Password != "" && (len(u.Password) < minTenantAdminPassword || len(u.Password) > passwords.MaxPasswordBytes) {
		errs.Add(field.Invalid(p.Child("password"), "must be %d to %d bytes", minTenantAdminPassword, passwords.MaxPasswordBytes))
	}
	return errs
}

// minTenantAdminPassword is the shortest admin_user password.
const minTenantAdminPassword = 8

// emailErrors checks an email address: one addr-spec (no display name)
// with a domain, at most 320 characters.
func emailErrors(p *field.Path, email string) field.ErrorList {
	if strings.TrimSpace(email) == "" {
		return field.ErrorList{field.Required(p)}
	}
	a, err := mail.ParseAddress(email)
	if err != nil || a.Name != "" || a.Address != strings.TrimSpace(email) || len(email) > 320 || model.EmailDomain(email) == "" {
		return field.ErrorList{field.Invalid(p, "%q is not an email address (name@domain, at most 320 characters)", email)}
	}
	return nil
}

// addTenantKinds registers tenants (system-level, soft-deleted: a deleted
// tenant frees its id and takes everything under it along) and the
// tenant-bound objects without routes of their own: admin credentials and
// the bundle signing key.
func addTenantKinds(sch *resource.Scheme) {
	sch.MustRegister(&resource.Kind{
		Name: model.KindTenant, Singular: "tenant", System: true, SoftDelete: true, Bundled: true,
		API: &kindAPI{param: "tid", readOnly: []string{"url", "created"}, routes: (*Server).tenantRoutes,
			current: func(s *Server, c *gin.Context, _, id string) (any, int64, error) {
				t, err := tenantRepo.Get(c.Request.Context(), s.store, "", id)
				if err != nil {
					return nil, 0, err
				}
				return s.renderTenant(t), t.Meta.Revision, nil
			}},
	})
	sch.MustRegister(&resource.Kind{Name: model.KindAdminCredential, Singular: "admin credential", Internal: true})
	sch.MustRegister(&resource.Kind{Name: model.KindSigningKey, Singular: "signing key", Internal: true})
	// Authorization servers' signing key sets (oauth/keys), sealed; their
	// public keys are the servers' inline JWKS in bundles.
	sch.MustRegister(&resource.Kind{Name: keys.Kind, Singular: "server key set", Internal: true, Bundled: true})
	// Token revocations (written by the OAuth endpoints and by deletes),
	// enforced by every gateway: data.gatehouse.config.revocations.
	sch.MustRegister(&resource.Kind{Name: model.KindTokenRevocation, Singular: "token revocation", Internal: true, Bundled: true})
}

func (s *Server) tenantRoutes(sys, adm *gin.RouterGroup) {
	sys.GET("/tenants", s.listTenants)
	sys.POST("/tenants", s.createTenant)
	sys.GET("/tenants/:tid", s.getTenant)
	// PUT and PATCH of a tenant, system-wide or through its own route,
	// go through the kind's read-only and merge-patch handling.
	api := apiOf(s.scheme.MustKind(model.KindTenant))
	k := s.scheme.MustKind(model.KindTenant)
	systemTenant := func(c *gin.Context) (string, string, *Error) {
		id, apiErr := tenantIDParam(c)
		return "", id, apiErr
	}
	ownTenant := func(c *gin.Context) (string, string, *Error) { return "", tenantID(c), nil }
	sys.PUT("/tenants/:tid", s.replaceObject(api, systemTenant, (*Server).updateTenant))
	sys.PATCH("/tenants/:tid", s.patchObject(k, api, systemTenant, (*Server).updateTenant))
	sys.DELETE("/tenants/:tid", s.deleteTenant)
	sys.GET("/tenants/:tid/credentials", s.listCredentials)
	sys.POST("/tenants/:tid/credentials", s.createCredential)
	sys.DELETE("/tenants/:tid/credentials/:cid", s.deleteCredential)
	adm.GET("/tenant", s.getAdminTenant)
	adm.PUT("/tenant", s.replaceObject(api, ownTenant, (*Server).updateAdminTenant))
	adm.PATCH("/tenant", s.patchObject(k, api, ownTenant, (*Server).updateAdminTenant))
}

func (r *tenantRequest) validate() *Error {
	if err := validateText("name", r.Name, true, 256); err != nil {
		return err
	}
	if err := validateText("description", r.Description, false, 4096); err != nil {
		return err
	}
	if err := validateLabels(r.Labels); err != nil {
		return err
	}
	if r.Status != "" && !r.Status.Valid() {
		return fieldError("status", "unknown status %q (one of CREATING, AVAILABLE, UPDATING, DISABLED, DELETED)", r.Status)
	}
	if a := r.AuthenticationContextSettings; a != nil {
		seen := map[string]bool{}
		for i, attr := range a.Attributes {
			field := fmt.Sprintf("authentication_context_settings.attributes[%d].name", i)
			if err := validateText(field, attr.Name, true, 256); err != nil {
				return err
			}
			if seen[attr.Name] {
				return fieldError(field, "duplicate attribute %q", attr.Name)
			}
			seen[attr.Name] = true
		}
	}
	return nil
}

func tenantIDParam(c *gin.Context) (string, *Error) {
	tid := c.Param("tid")
	if !model.ValidTenantID(tid) {
		return "", fieldError("tid", "invalid tenant id (%s)", model.TenantIDRule)
	}
	return tid, nil
}

func (s *Server) listTenants(c *gin.Context) {
	withDeleted, apiErr := boolQuery(c, "include_deleted")
	if apiErr != nil {
		abort(c, apiErr)
		return
	}
	name, status, mfa, realm := c.Query("name"), model.TenantStatus(c.Query("status")), c.Query("mfa_provider"), c.Query("realm_name")
	_, hasMFA := c.GetQuery("mfa_provider")
	if status != "" && !status.Valid() {
		abort(c, fieldError("status", "unknown status %q (one of CREATING, AVAILABLE, UPDATING, DISABLED, DELETED)", status))
		return
	}
	if name == "" && status == "" && !hasMFA && realm == "" {
		listObjects(s, c, tenantRepo, "tenant", "tenants", store.Query{IncludeDeleted: withDeleted}, s.renderTenant)
		return
	}
	pageWhere(s, c, tenantRepo, "tenant", "tenants", store.Query{IncludeDeleted: withDeleted}, func(t *store.Typed[model.TenantSpec]) bool {
		return (name == "" || t.Spec.Name == name) && (status == "" || t.Spec.Status == status) &&
			(!hasMFA || t.Spec.MFAProvider == mfa) && (realm == "" || t.Spec.RealmName == realm)
	}, s.renderTenant)
}

func (s *Server) createTenant(c *gin.Context) {
	var req tenantRequest
	if apiErr := decodeJSON(c, &req); apiErr != nil {
		abort(c, apiErr)
		return
	}
	if req.ID == "" {
		req.ID = uuid.NewString()
	} else if !model.ValidTenantID(req.ID) {
		abort(c, fieldError("id", "invalid tenant id %q (%s)", req.ID, model.TenantIDRule))
		return
	} else if model.ReservedTenantID(req.ID) {
		abort(c, fieldError("id", "tenant id %q is reserved (reserved: %s): the process serves those paths itself", req.ID,
			strings.Join(model.ReservedTenantIDs(), ", ")))
		return
	}
	var errs field.ErrorList
	if apiErr := req.validate(); apiErr != nil {
		if errs = apiErr.Fields(); len(errs) == 0 {
			abort(c, apiErr)
			return
		}
	}
	errs.Extend(req.directoryErrors())
	// The inline identity provider and first user: checked with the rest,
	// so a bad one creates nothing.
	var (
		idp   *idpBuild
		idpID string
	)
	if r := req.IdentityProvider; r != nil {
		p := field.NewPath("identity_provider")
		id, idErr := newObjectID("id", r.ID)
		if idErr != nil {
			errs.Extend(idErr.Fields().Under(p))
		}
		b, idpErrs := s.buildIdP(req.ID, r)
		errs.Extend(idpErrs.Under(p))
		idp, idpID = b, id
	}
	if req.AdminUser != nil {
		errs.Extend(req.AdminUser.errors())
	}
	if len(errs) > 0 {
		abort(c, fieldErrors(errs))
		return
	}
	if idp != nil {
		if apiErr := s.needsBox(idp, "identity_provider.client_secret"); apiErr != nil {
			abort(c, apiErr)
			return
		}
	}
	if req.Status == "" {
		req.Status = model.TenantAvailable
	}
	if !model.ClientSettableStatus(req.Status) {
		abort(c, fieldError("status", "a new tenant can be AVAILABLE or DISABLED, not %s", req.Status))
		return
	}
	var user *store.Typed[model.UserSpec]
	if u := req.AdminUser; u != nil {
		user = &store.Typed[model.UserSpec]{
			Meta: store.Object{TenantID: req.ID, ID: uuid.NewString(), CreatedBy: actor(c)},
			Spec: model.UserSpec{Email: strings.TrimSpace(u.Email), GivenName: u.GivenName, FamilyName: u.FamilyName, State: model.UserActive},
		}
		if u.Password != "" { // hashed before the transaction: argon2id takes a while
			h, err := passwords.Hash(u.Password)
			if err != nil {
				abort(c, internalError(fmt.Errorf("hash the admin user's password: %w", err)))
				return
			}
			user.Spec.PasswordHash = h
		}
	}
	t := &store.Typed[model.TenantSpec]{
		Meta: store.Object{ID: req.ID, Description: req.Description, Labels: req.Labels, CreatedBy: actor(c)},
		Spec: model.TenantSpec{Name: req.Name, Status: req.Status, AuthenticationContextSettings: req.AuthenticationContextSettings},
	}
	req.tenantDirectoryFields.apply(&t.Spec)
	if idp != nil && t.Spec.ProviderID == "" && t.Spec.ProviderScope == "" {
		t.Spec.ProviderID = idpID // the tenant logs in with its first identity provider
	}
	_, err := s.update(c.Request.Context(), func(ctx context.Context, tx store.Tx) error {
		if err := tenantRepo.Create(ctx, tx, t); err != nil {
			return err
		}
		// Its system servers come with it (the tenant's event records
		// them: they are part of its creation).
		if err := createSystemServers(ctx, tx, t.Meta.ID, actor(c), tenantSystemServers...); err != nil {
			return err
		}
		if idp != nil {
			it := &store.Typed[model.IdentityProviderSpec]{Meta: store.Object{TenantID: t.Meta.ID, ID: idpID, CreatedBy: actor(c)}}
			if err := s.applyIdP(it, idp, true); err != nil {
				return err
			}
			if err := directory.IdentityProviders.Create(ctx, tx, it); err != nil {
				return err
			}
			if err := record(ctx, tx, c, t.Meta.ID, "create", model.KindIdentityProvider, it.Meta.ID); err != nil {
				return err
			}
		}
		if err := checkTenantDirectory(ctx, tx, t.Meta.ID, &t.Spec, idpID); err != nil {
			return err
		}
		if user != nil {
			if err := directory.CreateUser(ctx, tx, user); err != nil {
				return fmt.Errorf("create the admin user: %w", err)
			}
			if err := record(ctx, tx, c, t.Meta.ID, "create", model.KindUser, user.Meta.ID); err != nil {
				return err
			}
		}
		return record(ctx, tx, c, t.Meta.ID, "create", model.KindTenant, t.Meta.ID)
	})
	if err != nil {
		fail(c, err, "tenant", req.ID)
		return
	}
	c.Header("Location", "/api/system/tenants/"+t.Meta.ID)
	out := s.renderTenant(t)
	if user != nil {
		out.AdminUser = &tenantAdminUserResponse{ID: user.Meta.ID, Email: user.Meta.Name}
	}
	respondObject(c, http.StatusCreated, t.Meta.Revision, out)
}

func (s *Server) getTenant(c *gin.Context) {
	tid, apiErr := tenantIDParam(c)
	if apiErr != nil {
		abort(c, apiErr)
		return
	}
	t, err := tenantRepo.Get(c.Request.Context(), s.store, "", tid)
	if err != nil {
		fail(c, err, "tenant", tid)
		return
	}
	respondObject(c, http.StatusOK, t.Meta.Revision, s.renderTenant(t))
}

func (s *Server) updateTenant(c *gin.Context) {
	tid, apiErr := tenantIDParam(c)
	if apiErr != nil {
		abort(c, apiErr)
		return
	}
	s.putTenant(c, tid, false)
}

func (s *Server) getAdminTenant(c *gin.Context) {
	t := currentTenant(c)
	respondObject(c, http.StatusOK, t.Meta.Revision, s.renderTenant(t))
}

func (s *Server) updateAdminTenant(c *gin.Context) {
	s.putTenant(c, currentTenant(c).Meta.ID, true)
}

// putTenant replaces a tenant's mutable fields. Through the tenant's own
// admin route, a DISABLED tenant may only be re-enabled.
func (s *Server) putTenant(c *gin.Context, tid string, adminRoute bool) {
	var req tenantRequest
	if apiErr := decodeJSON(c, &req); apiErr != nil {
		abort(c, apiErr)
		return
	}
	if req.ID != "" && req.ID != tid {
		abort(c, fieldError("id", "does not match the tenant in the path (%q); tenant ids cannot be changed", tid))
		return
	}
	var errs field.ErrorList
	if apiErr := req.validate(); apiErr != nil {
		if errs = apiErr.Fields(); len(errs) == 0 {
			abort(c, apiErr)
			return
		}
	}
	errs.Extend(req.directoryErrors())
	if req.IdentityProvider != nil {
		errs.Add(field.Invalid(field.NewPath("identity_provider"), "is accepted on create only; use the identity providers API"))
	}
	if req.AdminUser != nil {
		errs.Add(field.Invalid(field.NewPath("admin_user"), "is accepted on create only; use the users API"))
	}
	if len(errs) > 0 {
		abort(c, fieldErrors(errs))
		return
	}
	expect, apiErr := ifMatch(c)
	if apiErr != nil {
		abort(c, apiErr)
		return
	}
	var t *store.Typed[model.TenantSpec]
	_, err := s.update(c.Request.Context(), func(ctx context.Context, tx store.Tx) error {
		var err error
		if t, err = tenantRepo.Get(ctx, tx, "", tid); err != nil {
			return err
		}
		if expect != 0 && t.Meta.Revision != expect {
			return store.ErrConflict
		}
		from, to := t.Spec.Status, req.Status
		if to == "" {
			to = from
		}
		if adminRoute && from == model.TenantDisabled && to != model.TenantAvailable {
			return newError(http.StatusForbidden, httpapi.CodeTenantDisabled,
				fmt.Sprintf("tenant %q is disabled; the only change allowed is setting status to AVAILABLE", tid), map[string]any{"tenant_id": tid})
		}
		if from != to && (!model.ClientSettableStatus(to) || !model.CanTransition(from, to)) {
			return newError(http.StatusConflict, httpapi.CodeInvalidTransition, (&model.TransitionError{From: from, To: to}).Error(),
				map[string]any{"field": "status", "from": string(from), "to": string(to)})
		}
		t.Meta.Description, t.Meta.Labels, t.Meta.UpdatedBy = req.Description, req.Labels, actor(c)
		t.Spec.Name, t.Spec.Status, t.Spec.AuthenticationContextSettings = req.Name, to, req.AuthenticationContextSettings
		req.tenantDirectoryFields.apply(&t.Spec)
		if err := checkTenantDirectory(ctx, tx, tid, &t.Spec, ""); err != nil {
			return err
		}
		if err := tenantRepo.Update(ctx, tx, t, expect); err != nil {
			return err
		}
		return record(ctx, tx, c, tid, "update", model.KindTenant, tid)
	})
	if err != nil {
		fail(c, err, "tenant", tid)
		return
	}
	respondObject(c, http.StatusOK, t.Meta.Revision, s.renderTenant(t))
}

// EnsureSystemTenant creates, when they do not exist, the reserved tenant
// system (AVAILABLE; its id is refused to tenant creation) and its
// authorization server system, whose tokens act system-wide. It is
// idempotent and safe for concurrent callers (replicas starting at once);
// gatehouse serve calls it at start.
func EnsureSystemTenant(ctx context.Context, st store.Store) error {
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		_, err = st.Update(ctx, func(ctx context.Context, tx store.Tx) error {
			return ensureSystemTenant(ctx, tx)
		})
		if !errors.Is(err, store.ErrAlreadyExists) {
			break // a concurrent caller's create is retried: then it exists
		}
	}
	if err != nil {
		return fmt.Errorf("ensure the system tenant: %w", err)
	}
	return nil
}

func ensureSystemTenant(ctx context.Context, tx store.Tx) error {
	const tid, by = model.SystemTenantID, "system"
	event := func(kind, id string) error {
		return tx.AppendEvent(ctx, &store.Event{TenantID: tid, Actor: by, Action: "create", Kind: kind, ObjectID: id})
	}
	switch _, err := tenantRepo.Get(ctx, tx, "", tid); {
	case errors.Is(err, store.ErrNotFound):
		t := &store.Typed[model.TenantSpec]{
			Meta: store.Object{ID: tid, Description: "The system tenant: its server system issues the system-wide tokens.", CreatedBy: by},
			Spec: model.TenantSpec{Name: "System", Status: model.TenantAvailable},
		}
		if err := tenantRepo.Create(ctx, tx, t); err != nil {
			return err
		}
		if err := event(model.KindTenant, tid); err != nil {
			return err
		}
	case err != nil:
		return err
	}
	switch _, err := serverRepo.Get(ctx, tx, tid, model.SystemServerID); {
	case errors.Is(err, store.ErrNotFound):
		if err := createSystemServers(ctx, tx, tid, by, model.SystemServerID); err != nil {
			return err
		}
		return event(model.KindServer, model.SystemServerID)
	case err != nil:
		return err
	}
	return nil
}

// deleteTenant marks the tenant DELETED (soft delete, freeing its id) and
// removes everything under it, in one transaction.
func (s *Server) deleteTenant(c *gin.Context) {
	tid, apiErr := tenantIDParam(c)
	if apiErr != nil {
		abort(c, apiErr)
		return
	}
	if tid == model.SystemTenantID {
		abort(c, fieldError("tid", "tenant %q is the system tenant (its server %q issues the system-wide tokens) and cannot be deleted",
			tid, model.SystemServerID))
		return
	}
	expect, apiErr := ifMatch(c)
	if apiErr != nil {
		abort(c, apiErr)
		return
	}
	_, err := s.update(c.Request.Context(), func(ctx context.Context, tx store.Tx) error {
		t, err := tenantRepo.Get(ctx, tx, "", tid)
		if err != nil {
			return err
		}
		if expect != 0 && t.Meta.Revision != expect {
			return store.ErrConflict
		}
		if _, err := tx.DeleteTenant(ctx, tid); err != nil {
			return fmt.Errorf("delete objects of tenant %s: %w", tid, err)
		}
		t.Spec.Status = model.TenantDeleted
		t.Meta.UpdatedBy = actor(c)
		if err := tenantRepo.Update(ctx, tx, t, 0); err != nil {
			return err
		}
		if _, err := tenantRepo.Delete(ctx, tx, "", tid, 0); err != nil {
			return err
		}
		return record(ctx, tx, c, tid, "delete", model.KindTenant, tid)
	})
	if err != nil {
		fail(c, err, "tenant", tid)
		return
	}
	c.Status(http.StatusNoContent)
}
