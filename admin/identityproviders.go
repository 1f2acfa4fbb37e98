package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/gatehouse-dev/gatehouse/directory"
	"github.com/gatehouse-dev/gatehouse/internal/field"
	"github.com/gatehouse-dev/gatehouse/internal/httpapi"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/resource"
	"github.com/gatehouse-dev/gatehouse/store"
)

// Identity providers (issue 14, WAVE2 §1.2 rows 14 and 20–23, §1.4 rows
// 8–13 and 19–23): the upstream OpenID Connect (or, for github, OAuth 2.0)
// providers a tenant's logins federate to. A tenant's own live at
// /api/admin/{tid}/identity-providers; the system-wide ones, usable by
// every tenant's logins, at /api/system/identity-providers (objects of
// the system tenant, so /api/admin/system/identity-providers is the same
// collection). The upstream client secret is write-only: sealed with the
// secret box (model.IdPSecretAAD) and never returned, exported or logged;
// GET says only client_secret_set. Nothing is fetched at write time: the
// login resolves discovery (oauth/federation.go).

// Bounds of an identity provider.
const (
	maxIdPURL          = 2048
	maxIdPClientID     = 256
	maxIdPClientSecret = 1024
	maxIdPScopes       = 50
	maxIdPDomains      = 100
	maxIdPExtraParams  = 32
)

// idpRequest is the body of create, PUT and (merged onto GET's) PATCH.
// client_secret is write-only: given, it replaces the stored secret; left
// out (or ""), a PUT keeps it. client_secret_set false removes a stored
// secret (the provider becomes a public client using PKCE); true or left
// out keeps it. active defaults to true on create and is kept by a PUT
// that leaves it out.
type idpRequest struct {
	ID                    string              `json:"id"`
	TenantID              string              `json:"tenant_id"`
	Name                  string              `json:"name"`
	Description           string              `json:"description"`
	Type                  string              `json:"type"`
	Issuer                string              `json:"issuer"`
	AuthorizationEndpoint string              `json:"authorization_endpoint"`
	TokenEndpoint         string              `json:"token_endpoint"`
	UserInfoEndpoint      string              `json:"user_info_endpoint"`
	JWKSURI               string              `json:"jwks_uri"`
	ClientID              string              `json:"client_id"`
	ClientSecret          string              `json:"client_secret"`
	ClientSecretSet       *bool               `json:"client_secret_set"`
	Scopes                []string            `json:"scopes"`
	Domains               []string            `json:"domains"`
	LinkByEmail           bool                `json:"link_by_email"`
	ExtraAuthParams       map[string]string   `json:"extra_auth_params"`
	Mappings              []model.AuthMapping `json:"mappings"`
	Active                *bool               `json:"active"`
	Labels                map[string]string   `json:"labels"`
	Metadata              json.RawMessage     `json:"metadata"`
}

// idpResponse is an identity provider as GET renders it (never its
// secret).
type idpResponse struct {
	ID                    string              `json:"id"`
	TenantID              string              `json:"tenant_id"`
	Name                  string              `json:"name"`
	Description           string              `json:"description"`
	Type                  string              `json:"type"`
	Issuer                string              `json:"issuer"`
	AuthorizationEndpoint string              `json:"authorization_endpoint"`
	TokenEndpoint         string              `json:"token_endpoint"`
	UserInfoEndpoint      string              `json:"user_info_endpoint"`
	JWKSURI               string              `json:"jwks_uri"`
	ClientID              string              `json:"client_id"`
	ClientSecretSet       bool                `json:"client_secret_set"`
	Scopes                []string            `json:"scopes"`
	Domains               []string            `json:"domains"`
	LinkByEmail           bool                `json:"link_by_email"`
	ExtraAuthParams       map[string]string   `json:"extra_auth_params"`
	Mappings              []model.AuthMapping `json:"mappings"`
	Active                bool                `json:"active"`
	Labels                map[string]string   `json:"labels"`
	Metadata              *Metadata           `json:"metadata"`
}

func renderIdP(t *store.Typed[model.IdentityProviderSpec]) idpResponse {
	sp := &t.Spec
	params := sp.ExtraAuthParams
	if params == nil {
		params = map[string]string{}
	}
	mappings := sp.Mappings
	if mappings == nil {
		mappings = []model.AuthMapping{}
	}
	return idpResponse{
		ID: t.Meta.ID, TenantID: t.Meta.TenantID, Name: t.Meta.Name, Description: t.Meta.Description,
		Type: sp.Type, Issuer: sp.Issuer, AuthorizationEndpoint: sp.AuthorizationEndpoint, TokenEndpoint: sp.TokenEndpoint,
		UserInfoEndpoint: sp.UserInfoEndpoint, JWKSURI: sp.JWKSURI, ClientID: sp.ClientID, ClientSecretSet: sp.ClientSecretSealed != "",
		Scopes: nonNilStrings(sp.Scopes), Domains: nonNilStrings(sp.Domains), LinkByEmail: sp.LinkByEmail,
		ExtraAuthParams: params, Mappings: mappings, Active: sp.Active,
		Labels: labelsOrEmpty(t.Meta.Labels), Metadata: metadataOf(&t.Meta),
	}
}

// addIdentityProviderKinds registers identity providers: tenant-scoped,
// soft-deleted (a deleted one keeps its active flag; its name and
// domains are freed), in the configuration document without their
// secrets (identityproviders_config.go).
func addIdentityProviderKinds(sch *resource.Scheme) {
	k := &resource.Kind{Name: model.KindIdentityProvider, Singular: "identity provider", SoftDelete: true, Exported: true,
		Canonical: idpCanonical}
	repo := directory.IdentityProviders
	k.API = &kindAPI{
		param: "idp", nameField: "name", patchNullKeeps: true, current: typedCurrent(repo, renderIdP),
		list:      (*Server).listIdPs,
		get:       func(s *Server, c *gin.Context) { getKind(s, c, repo, "idp", k.Singular, renderIdP) },
		create:    func(s *Server, c *gin.Context) { s.createIdP(c, k) },
		put:       (*Server).putIdP,
		deletable: idpDeletable,
		routes:    (*Server).idpRoutes,
		export:    exportIdP, importItem: importOfServer(configIdPObject),
		importWrite: (*Server).importIdPWrite, importResolve: (*Server).resolveConfigIdPs,
	}
	sch.MustRegister(k)
}

// idpRoutes: PUT …/{idp}/state, and the system-wide collection (the
// system tenant's, through the same handlers).
func (s *Server) idpRoutes(sys, adm *gin.RouterGroup) {
	k := s.scheme.MustKind(model.KindIdentityProvider)
	api := apiOf(k)
	adm.PUT("/identity-providers/:idp/state", s.putIdPState)
	g := sys.Group("/identity-providers", s.systemTenantContext)
	g.GET("", func(c *gin.Context) { api.list(s, c) })
	g.POST("", func(c *gin.Context) { api.create(s, c) })
	g.GET("/:idp", func(c *gin.Context) { api.get(s, c) })
	g.PUT("/:idp", s.replaceObject(api, tenantObject("idp"), api.put))
	g.PATCH("/:idp", s.patchObject(k, api, tenantObject("idp"), api.put))
	g.DELETE("/:idp", s.deleteObject(k, api))
	g.PUT("/:idp/state", s.putIdPState)
}

// systemTenantContext makes the system tenant the current tenant of an
// /api/system route (after requireSystem), so the tenant handlers serve
// its objects.
func (s *Server) systemTenantContext(c *gin.Context) {
	t, err := tenantRepo.Get(c.Request.Context(), s.store, "", model.SystemTenantID)
	if err != nil {
		fail(c, err, "tenant", model.SystemTenantID)
		return
	}
	c.Set(ctxTenant, t)
	c.Next()
}

// idpSecretChange is what a write does to the stored client secret.
type idpSecretChange int

const (
	idpSecretKeep idpSecretChange = iota
	idpSecretSet
	idpSecretRemove
)

// idpBuild is a validated identity provider request.
type idpBuild struct {
	meta   store.Object
	spec   model.IdentityProviderSpec
	secret idpSecretChange
	// plain is the new secret (idpSecretSet), sealed in the write.
	plain  string
	active *bool
}

// buildIdP validates r (tid "" for an inline provider of a new tenant,
// whose tenant_id is not checked): every problem, field by field.
func (s *Server) buildIdP(tid string, r *idpRequest) (*idpBuild, field.ErrorList) {
	var errs field.ErrorList
	add := func(f, format string, args ...any) { errs.Add(field.Invalid(field.NewPath(f), format, args...)) }
	errs.Extend(textErrors("name", r.Name, true, 256))
	errs.Extend(textErrors("description", r.Description, false, 4096))
	if e := tenantMatch(r.TenantID, tid); e != nil {
		errs.Extend(e.Fields())
	}
	errs.Extend(labelErrors(r.Labels))
	b := &idpBuild{
		meta:   store.Object{Name: r.Name, Description: r.Description, Labels: r.Labels},
		active: r.Active,
		spec: model.IdentityProviderSpec{Type: r.Type, Issuer: r.Issuer, AuthorizationEndpoint: r.AuthorizationEndpoint,
			TokenEndpoint: r.TokenEndpoint, UserInfoEndpoint: r.UserInfoEndpoint, JWKSURI: r.JWKSURI, ClientID: r.ClientID,
			Scopes: r.Scopes, Domains: r.Domains, LinkByEmail: r.LinkByEmail, ExtraAuthParams: r.ExtraAuthParams, Mappings: r.Mappings},
	}
	sp := &b.spec
	switch sp.Type {
	case "":
		errs.Add(field.Required(field.NewPath("type")))
	case model.IdPOIDC:
		if sp.Issuer == "" {
			errs.Add(field.Required(field.NewPath("issuer")))
		}
	case model.IdPGoogle:
		if sp.Issuer == "" {
			sp.Issuer = directory.GoogleIssuer
		} else if sp.Issuer != directory.GoogleIssuer {
			add("issuer", "type google has the issuer %s (leave it out)", directory.GoogleIssuer)
		}
	case model.IdPMicrosoft:
		if !microsoftIssuer(sp.Issuer) {
			add("issuer", "type microsoft needs the issuer %s{directory tenant id}%s of the Entra ID tenant (common, organizations and consumers are not issuers)",
				directory.MicrosoftIssuerPrefix, directory.MicrosoftIssuerSuffix)
		}
	case model.IdPGitHub:
		if sp.Issuer != "" {
			add("issuer", "type github has no issuer (GitHub issues no ID tokens); leave it out")
		}
		if sp.JWKSURI != "" {
			add("jwks_uri", "type github has no key set (GitHub issues no ID tokens); leave it out")
		}
		for f, v := range map[string]string{"authorization_endpoint": sp.AuthorizationEndpoint, "token_endpoint": sp.TokenEndpoint,
			"user_info_endpoint": sp.UserInfoEndpoint} {
			if v == "" {
				errs.Add(field.Invalid(field.NewPath(f), "is required for type github (it is OAuth 2.0, without discovery)"))
			}
		}
	default:
		add("type", "unknown type %q (oidc, google, microsoft or github)", sp.Type)
	}
	if sp.Issuer != "" && sp.Type != model.IdPGitHub {
		errs.Extend(idpURLErrors("issuer", sp.Issuer, true, s.allowPrivateIdPURLs))
	}
	for _, u := range []struct{ f, v string }{
		{"authorization_endpoint", sp.AuthorizationEndpoint}, {"token_endpoint", sp.TokenEndpoint},
		{"user_info_endpoint", sp.UserInfoEndpoint}, {"jwks_uri", sp.JWKSURI},
	} {
		if u.v != "" {
			errs.Extend(idpURLErrors(u.f, u.v, false, s.allowPrivateIdPURLs))
		}
	}
	switch {
	case sp.ClientID == "":
		errs.Add(field.Required(field.NewPath("client_id")))
	case len(sp.ClientID) > maxIdPClientID:
		add("client_id", "must be at most %d characters", maxIdPClientID)
	case !printableASCII(sp.ClientID):
		add("client_id", "must be printable ASCII")
	}
	switch {
	case r.ClientSecret != "" && r.ClientSecretSet != nil && !*r.ClientSecretSet:
		add("client_secret_set", "false removes the client secret; do not give client_secret with it")
	case r.ClientSecret != "":
		if len(r.ClientSecret) > maxIdPClientSecret || !printableASCII(r.ClientSecret) {
			add("client_secret", "must be at most %d printable ASCII characters", maxIdPClientSecret)
		}
		b.secret, b.plain = idpSecretSet, r.ClientSecret
	case r.ClientSecretSet != nil && !*r.ClientSecretSet:
		b.secret = idpSecretRemove
	}
	if len(sp.Scopes) == 0 {
		sp.Scopes = slices.Clone(directory.DefaultIdPScopes)
		if sp.Type == model.IdPGitHub {
			sp.Scopes = []string{"read:user", "user:email"}
		}
	}
	errs.Extend(idpScopeErrors(sp.Type, sp.Scopes))
	errs.Extend(domainErrors(field.NewPath("domains"), sp.Domains, maxIdPDomains))
	errs.Extend(extraAuthParamErrors(sp.ExtraAuthParams))
	errs.Extend(mappingErrors(nil, sp.Mappings))
	if len(sp.ExtraAuthParams) == 0 {
		sp.ExtraAuthParams = nil
	}
	return b, errs
}

// microsoftIssuer reports whether iss is the v2.0 issuer of one Entra ID
// tenant.
func microsoftIssuer(iss string) bool {
	t, ok := strings.CutPrefix(iss, directory.MicrosoftIssuerPrefix)
	if !ok {
		return false
	}
	t, ok = strings.CutSuffix(t, directory.MicrosoftIssuerSuffix)
	switch strings.ToLower(t) {
	case "", "common", "organizations", "consumers":
		return false
	}
	return ok && idpTenantSegment.MatchString(t)
}

var idpTenantSegment = regexp.MustCompile(`^[A-Za-z0-9.-]{1,128}$`)

// idpURLErrors checks an identity provider URL: absolute https without
// credentials or fragment (an issuer also without query). A loopback,
// private or link-local host (an IP literal, or localhost) needs
// allowPrivate (--idp-allow-private-urls), and then may be plain http; a
// public host must be https. Names that resolve to private addresses are
// refused when the login dials them (internal/netguard).
func idpURLErrors(name, raw string, issuer, allowPrivate bool) field.ErrorList {
	p := field.NewPath(name)
	if len(raw) > maxIdPURL {
		return field.ErrorList{field.Invalid(p, "must be at most %d characters", maxIdPURL)}
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Hostname() == "" || u.User != nil ||
		u.Fragment != "" || strings.ContainsAny(raw, " \t\r\n") || (issuer && (u.RawQuery != "" || u.ForceQuery)) {
		what := "an absolute https URL without credentials or fragment"
		if issuer {
			what = "an absolute https URL without credentials, query or fragment (the iss of the provider's ID tokens)"
		}
		return field.ErrorList{field.Invalid(p, "must be %s", what)}
	}
	kind := hostKind(u.Hostname())
	switch {
	case kind != "" && !allowPrivate:
		return field.ErrorList{field.Invalid(p, "names a %s address; such URLs are allowed only with --idp-allow-private-urls", kind)}
	case u.Scheme != "https" && kind == "":
		return field.ErrorList{field.Invalid(p, "must be an https URL (plain http is allowed only to loopback and private addresses, with --idp-allow-private-urls)")}
	}
	return nil
}

// scopeToken is an OAuth scope token (RFC 6749 §3.3).
var scopeToken = regexp.MustCompile(`^[\x21\x23-\x5B\x5D-\x7E]{1,256}$`)

func idpScopeErrors(typ string, scopes []string) field.ErrorList {
	p := field.NewPath("scopes")
	if len(scopes) > maxIdPScopes {
		return field.ErrorList{field.Invalid(p, "at most %d scopes are allowed", maxIdPScopes)}
	}
	var errs field.ErrorList
	seen := map[string]bool{}
	for i, sc := range scopes {
		switch {
		case !scopeToken.MatchString(sc):
			errs.Add(field.Invalid(p.Index(i), "is not a scope token (1-256 printable ASCII characters without space, '\"' or '\\')"))
		case seen[sc]:
			errs.Add(field.Invalid(p.Index(i), "%q is listed twice", sc))
		}
		seen[sc] = true
	}
	if typ != model.IdPGitHub && typ != "" && !seen["openid"] && len(errs) == 0 {
		errs.Add(field.Invalid(p, "must include openid (the login needs the provider's ID token)"))
	}
	return errs
}

// dnsLabel is one lowercase DNS label.
var dnsLabel = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// validDomain reports whether d is a lowercase DNS name of at least two
// labels (an email domain).
func validDomain(d string) bool {
	if len(d) > 253 {
		return false
	}
	labels := strings.Split(d, ".")
	if len(labels) < 2 {
		return false
	}
	for _, l := range labels {
		if !dnsLabel.MatchString(l) {
			return false
		}
	}
	return true
}

// domainErrors checks a list of email domains: lowercase DNS names, each
// once, at most max.
func domainErrors(p *field.Path, domains []string, max int) field.ErrorList {
	if len(domains) > max {
		return field.ErrorList{field.Invalid(p, "at most %d domains are allowed", max)}
	}
	var errs field.ErrorList
	seen := map[string]bool{}
	for i, d := range domains {
		switch {
		case d != strings.ToLower(d) && validDomain(strings.ToLower(d)):
			errs.Add(field.Invalid(p.Index(i), "%q must be lowercase (%q)", d, strings.ToLower(d)))
		case !validDomain(d):
			errs.Add(field.Invalid(p.Index(i), "%q is not a DNS name (lowercase labels of letters, digits and '-', at least two)", d))
		case seen[d]:
			errs.Add(field.Invalid(p.Index(i), "%q is listed twice", d))
		}
		seen[d] = true
	}
	return errs
}

// paramName is an authorization request parameter name.
var paramName = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,128}$`)

func extraAuthParamErrors(params map[string]string) field.ErrorList {
	p := field.NewPath("extra_auth_params")
	if len(params) > maxIdPExtraParams {
		return field.ErrorList{field.Invalid(p, "at most %d parameters are allowed", maxIdPExtraParams)}
	}
	var errs field.ErrorList
	for _, k := range slices.Sorted(maps.Keys(params)) {
		switch {
		case !paramName.MatchString(k):
			errs.Add(field.Invalid(p.Child(k), "parameter names are 1-128 letters, digits, '_', '.' or '-'"))
		case slices.Contains(directory.ReservedAuthParams, k):
			errs.Add(field.Invalid(p.Child(k), "is set by the login itself (%s cannot be given)", strings.Join(directory.ReservedAuthParams, ", ")))
		case len(params[k]) > 1024 || !utf8Printable(params[k]):
			errs.Add(field.Invalid(p.Child(k), "values are at most 1024 printable characters"))
		}
	}
	return errs
}

// printableASCII reports whether s is printable ASCII (no spaces or
// controls).
func printableASCII(s string) bool {
	return strings.IndexFunc(s, func(r rune) bool { return r <= ' ' || r > '~' }) < 0
}

// utf8Printable reports whether s is valid UTF-8 without control
// characters.
func utf8Printable(s string) bool {
	return strings.ToValidUTF8(s, "\uFFFD") == s && strings.IndexFunc(s, func(r rune) bool { return r < ' ' || r == 0x7f }) < 0
}

// applyIdP writes a validated request onto t (a new provider, or the
// stored one for a PUT), sealing a new secret for t's tenant and id.
func (s *Server) applyIdP(t *store.Typed[model.IdentityProviderSpec], b *idpBuild, create bool) error {
	sealed := t.Spec.ClientSecretSealed
	active := t.Spec.Active || create
	if b.active != nil {
		active = *b.active
	}
	roles := t.Spec.RoleMapping
	t.Meta.Name, t.Meta.Description, t.Meta.Labels = b.meta.Name, b.meta.Description, b.meta.Labels
	t.Spec = b.spec
	t.Spec.Active, t.Spec.RoleMapping = active, roles
	switch b.secret {
	case idpSecretSet:
		v, err := directory.SealIdPSecret(s.box, t.Meta.TenantID, t.Meta.ID, b.plain)
		if err != nil {
			return err
		}
		sealed = v
	case idpSecretRemove:
		sealed = ""
	}
	t.Spec.ClientSecretSealed = sealed
	return nil
}

// needsBox refuses a secret when the server has no secret box.
func (s *Server) needsBox(b *idpBuild, name string) *Error {
	if b.secret == idpSecretSet && s.box == nil {
		return newError(http.StatusInternalServerError, httpapi.CodeInternal,
			"this server has no secret box to seal "+name+" (admin.Options.SecretBox)", map[string]any{"field": name})
	}
	return nil
}

func (s *Server) createIdP(c *gin.Context, k *resource.Kind) {
	createKind(s, c, k, renderIdP, nil, func(c *gin.Context, tid string) (*store.Typed[model.IdentityProviderSpec],
		func(context.Context, store.Tx, *store.Typed[model.IdentityProviderSpec]) error, *Error) {
		var req idpRequest
		if apiErr := decodeJSON(c, &req); apiErr != nil {
			return nil, nil, apiErr
		}
		id, idErr := newObjectID("id", req.ID)
		b, errs := s.buildIdP(tid, &req)
		if idErr != nil {
			errs = append(idErr.Fields(), errs...)
		}
		if len(errs) > 0 {
			return nil, nil, fieldErrors(errs)
		}
		if apiErr := s.needsBox(b, "client_secret"); apiErr != nil {
			return nil, nil, apiErr
		}
		t := &store.Typed[model.IdentityProviderSpec]{Meta: store.Object{TenantID: tid, ID: id}}
		if err := s.applyIdP(t, b, true); err != nil {
			return nil, nil, internalError(err)
		}
		return t, func(ctx context.Context, tx store.Tx, t *store.Typed[model.IdentityProviderSpec]) error {
			return uniqueIdPDomains(ctx, tx, t)
		}, nil
	})
}

func (s *Server) putIdP(c *gin.Context) {
	tid := tenantID(c)
	updateKind(s, c, directory.IdentityProviders, "idp", "identity provider", renderIdP,
		func(c *gin.Context, id string) (func(context.Context, store.Tx, *store.Typed[model.IdentityProviderSpec]) error, *Error) {
			var req idpRequest
			if apiErr := decodeUpdate(c, &req, func() string { return req.ID }, id); apiErr != nil {
				return nil, apiErr
			}
			b, errs := s.buildIdP(tid, &req)
			if len(errs) > 0 {
				return nil, fieldErrors(errs)
			}
			if apiErr := s.needsBox(b, "client_secret"); apiErr != nil {
				return nil, apiErr
			}
			return func(ctx context.Context, tx store.Tx, t *store.Typed[model.IdentityProviderSpec]) error {
				if err := s.applyIdP(t, b, false); err != nil {
					return err
				}
				return uniqueIdPDomains(ctx, tx, t)
			}, nil
		})
}

// idpStateRequest is the body of PUT …/{idp}/state.
type idpStateRequest struct {
	Active *bool `json:"active"`
}

// putIdPState answers PUT …/identity-providers/{idp}/state {active}.
func (s *Server) putIdPState(c *gin.Context) {
	updateKind(s, c, directory.IdentityProviders, "idp", "identity provider", renderIdP,
		func(c *gin.Context, _ string) (func(context.Context, store.Tx, *store.Typed[model.IdentityProviderSpec]) error, *Error) {
			var req idpStateRequest
			if apiErr := decodeJSON(c, &req); apiErr != nil {
				return nil, apiErr
			}
			if req.Active == nil {
				return nil, missingField("active")
			}
			return func(_ context.Context, _ store.Tx, t *store.Typed[model.IdentityProviderSpec]) error {
				t.Spec.Active = *req.Active
				return nil
			}, nil
		})
}

// uniqueIdPDomains refuses (409) a domain another live identity provider
// of the tenant already has: an email domain dispatches to one provider.
func uniqueIdPDomains(ctx context.Context, tx store.Tx, t *store.Typed[model.IdentityProviderSpec]) error {
	if len(t.Spec.Domains) == 0 {
		return nil
	}
	all, err := directory.IdentityProviders.ListAll(ctx, tx, store.Query{TenantID: t.Meta.TenantID})
	if err != nil {
		return err
	}
	for _, other := range all {
		if other.Meta.ID == t.Meta.ID {
			continue
		}
		for i, d := range t.Spec.Domains {
			if slices.Contains(other.Spec.Domains, d) {
				f := fmt.Sprintf("domains[%d]", i)
				return newError(http.StatusConflict, httpapi.CodeAlreadyExists,
					fmt.Sprintf("%s: %q is already a domain of identity provider %q", f, d, other.Meta.ID),
					map[string]any{"field": f, "value": d, "reason": "already a domain of another identity provider", "kind": "identity provider", "id": other.Meta.ID})
			}
		}
	}
	return nil
}

// idpDeletable refuses deleting an identity provider in use (409
// in_use): named as a tenant's provider_id (the tenant's own provider;
// for a system-wide one, by a tenant whose provider_scope is global), or
// by a login method of a server that resolves to it (the owner's
// servers; for a system-wide one, those of every tenant without a
// provider of the same id of its own).
func idpDeletable(ctx context.Context, tx store.Tx, o *store.Object) error {
	users, err := idpUsers(ctx, tx, o.TenantID, o.ID, true)
	if err != nil {
		return err
	}
	if len(users) > 0 {
		return inUse("identity provider", o.ID, users)
	}
	return nil
}

// idpUsers lists what uses identity provider id of tenant owner, as
// idpDeletable describes it: "tenants" (provider_id) and "servers"
// ("tid/server"). withOwner false leaves the owner tenant out (an import
// judges the owner's own use by its document).
func idpUsers(ctx context.Context, rd store.Reader, owner, id string, withOwner bool) (map[string][]string, error) {
	tenants := []string{owner}
	if owner == model.SystemTenantID {
		all, err := tenantRepo.ListAll(ctx, rd, store.Query{})
		if err != nil {
			return nil, err
		}
		tenants = tenants[:0]
		for _, t := range all {
			tenants = append(tenants, t.Meta.ID)
		}
	}
	users := map[string][]string{}
	for _, tid := range tenants {
		if tid == owner && !withOwner {
			continue
		}
		t, err := tenantRepo.Get(ctx, rd, "", tid)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if tid != owner {
			// A tenant's own provider of the same id shadows the system's.
			if _, err := directory.IdentityProviders.Get(ctx, rd, tid, id); err == nil {
				continue
			} else if !errors.Is(err, store.ErrNotFound) {
				return nil, err
			}
		}
		if global := t.Spec.ProviderScope == providerScopeGlobal; t.Spec.ProviderID == id && global == (owner == model.SystemTenantID) {
			users["tenants"] = append(users["tenants"], tid)
		}
		servers, err := serverRepo.ListAll(ctx, rd, store.Query{TenantID: tid})
		if err != nil {
			return nil, err
		}
		for _, srv := range servers {
			if slices.Contains(serverIdPIDs(&srv.Spec), id) {
				users["servers"] = append(users["servers"], tid+"/"+srv.Meta.ID)
			}
		}
	}
	return users, nil
}

// listIdPs answers GET …/identity-providers: include_deleted,
// only_deleted and active filter it.
func (s *Server) listIdPs(c *gin.Context) {
	withDeleted, e1 := boolQuery(c, "include_deleted")
	onlyDeleted, e2 := boolQuery(c, "only_deleted")
	_, hasActive := c.GetQuery("active")
	active, e3 := boolQuery(c, "active")
	if apiErr := collect(e1, e2, e3); apiErr != nil {
		abort(c, apiErr)
		return
	}
	q := store.Query{TenantID: tenantID(c), IncludeDeleted: withDeleted || onlyDeleted}
	pageWhere(s, c, directory.IdentityProviders, "identity provider", "identity_providers", q, func(t *store.Typed[model.IdentityProviderSpec]) bool {
		return (!onlyDeleted || t.Meta.DeletedAt != nil) && (!hasActive || t.Spec.Active == active)
	}, renderIdP)
}

// pageWhere answers one page (?limit=&after=) of the objects q selects
// that keep accepts, in the store's order, with the total of those
// accepted: a listing filtered on spec fields the store does not index.
func pageWhere[S, R any](s *Server, c *gin.Context, repo store.Repo[S], what, plural string, q store.Query,
	keep func(*store.Typed[S]) bool, render func(*store.Typed[S]) R) {
	limit, after, apiErr := page(c)
	if apiErr != nil {
		abort(c, apiErr)
		return
	}
	cur, err := store.DecodeObjectCursor(after)
	if err != nil {
		abort(c, cursorError(err, what))
		return
	}
	all, err := repo.ListAll(c.Request.Context(), s.store, q)
	if err != nil {
		abort(c, cursorError(err, what))
		return
	}
	out := make([]R, 0, min(limit, len(all)))
	total, next := 0, ""
	for _, t := range all {
		if !keep(t) {
			continue
		}
		total++
		switch {
		case cur.Passed(&t.Meta):
		case len(out) < limit:
			out = append(out, render(t))
			if len(out) == limit {
				next = store.EncodeObjectCursor(&t.Meta)
			}
		}
	}
	if len(out) < limit || total == 0 {
		next = ""
	} else if last := lastAccepted(all, keep); last != nil && store.EncodeObjectCursor(&last.Meta) == next {
		next = "" // the page ends with the last match
	}
	c.JSON(http.StatusOK, gin.H{plural: out, "total": total, "next": next})
}

// lastAccepted is the last of all that keep accepts, or nil.
func lastAccepted[S any](all []*store.Typed[S], keep func(*store.Typed[S]) bool) *store.Typed[S] {
	for i := len(all) - 1; i >= 0; i-- {
		if keep(all[i]) {
			return all[i]
		}
	}
	return nil
}
