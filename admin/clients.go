package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/gin-gonic/gin"

	"github.com/gatehouse-dev/gatehouse/internal/field"
	"github.com/gatehouse-dev/gatehouse/internal/httpapi"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/oauth/clientauth"
	"github.com/gatehouse-dev/gatehouse/resource"
	"github.com/gatehouse-dev/gatehouse/store"
)

// OAuth clients (WAVE2 §1.1 createClient …): /api/admin/{tid}/clients[/{cid}]
// and POST …/clients/{cid}/secret (rotation). A client belongs to one
// authorization server of the tenant (which cannot be deleted while it
// has clients). Its secret is 256 random bits (or a caller's, at least 32
// characters), returned only by create and rotate and stored as SHA-256
// (oauth/clientauth); GET and lists show client_secret "". The
// configuration document carries the hashes, never a secret.

var oauthClientRepo = store.Repo[model.ClientSpec]{Kind: model.KindClient}

// Limits on client fields.
const (
	maxClientURIs      = 100
	maxClientAudiences = 32
	maxClientScopes    = 256
	maxClientURLLength = 2048
	// maxClientGracePeriod bounds a rotation's grace period.
	maxClientGracePeriod = 720 * time.Hour
)

// clientStandardScopes are the OpenID Connect scopes every server has:
// a client may list them without a scope object of that name.
var clientStandardScopes = []string{"openid", "profile", "email", "address", "phone", "offline_access"}

// clientServerDefaultGrants are the grant types of a server whose stored
// grant_types is empty (the servers API's default, WAVE2 §1.1).
var clientServerDefaultGrants = []string{model.GrantAuthorizationCode, model.GrantClientCredentials, model.GrantRefreshToken}

// clientSigningAlgs are the JWS algorithms a client's signing settings
// may name (those of the servers' keys: rsa → RS256, ecdsa → ES256).
var clientSigningAlgs = []string{"RS256", "ES256"}

// clientBody is an OAuth client on the wire (seed 003 Client, with
// Gatehouse's rules): the body of create and PUT and what GET returns.
// tenant_id, system, client_id_issued_at, previous_secret_expires_at,
// gateway_id and metadata are read-only; client_secret is shown by create
// and rotate only ("" everywhere else) and cannot be set by PUT.
type clientBody struct {
	// ID is client_id again (every kind's objects have an id); either
	// names the client, and they must agree when both are given.
	ID                        string          `json:"id"`
	ClientID                  string          `json:"client_id"`
	TenantID                  string          `json:"tenant_id"`
	ClientSecret              string          `json:"client_secret"`
	ClientName                string          `json:"client_name"`
	Description               string          `json:"description"`
	ServerID                  string          `json:"authorization_server_id"`
	DeveloperID               string          `json:"developer_id"`
	System                    bool            `json:"system"`
	Trusted                   bool            `json:"trusted"`
	Public                    bool            `json:"public"`
	Audience                  []string        `json:"audience"`
	GrantTypes                []string        `json:"grant_types"`
	ResponseTypes             []string        `json:"response_types"`
	RedirectURIs              []string        `json:"redirect_uris"`
	PostLogoutRedirectURIs    []string        `json:"post_logout_redirect_uris"`
	Scope                     string          `json:"scope"`
	Scopes                    []string        `json:"scopes"`
	TokenEndpointAuthMethod   string          `json:"token_endpoint_auth_method"`
	TokenEndpointSigningAlg   string          `json:"token_endpoint_signing_alg"`
	RequestObjectSigningAlg   string          `json:"request_object_signing_alg"`
	UserinfoSignedResponseAlg string          `json:"userinfo_signed_response_alg"`
	JWKS                      json.RawMessage `json:"jwks,omitempty"`
	JWKSURI                   string          `json:"jwks_uri"`
	RequestURIs               []string        `json:"request_uris"`
	SectorIdentifierURI       string          `json:"sector_identifier_uri"`
	ClientURI                 string          `json:"client_uri"`
	LogoURI                   string          `json:"logo_uri"`
	PolicyURI                 string          `json:"policy_uri"`
	TosURI                    string          `json:"tos_uri"`
	ClientIDIssuedAt          int64           `json:"client_id_issued_at"`
	ClientSecretExpiresAt     int64           `json:"client_secret_expires_at"`
	// PreviousSecretExpiresAt is the end of the last rotation's grace
	// period, while the previous secret still works.
	PreviousSecretExpiresAt *time.Time `json:"previous_secret_expires_at,omitempty"`
	// The mutual-TLS fields of RFC 8705: refused when set (no mTLS).
	TLSClientAuthSubjectDN                string            `json:"tls_client_auth_subject_dn,omitempty"`
	TLSClientAuthSANDNS                   string            `json:"tls_client_auth_san_dns,omitempty"`
	TLSClientAuthSANURI                   string            `json:"tls_client_auth_san_uri,omitempty"`
	TLSClientAuthSANIP                    string            `json:"tls_client_auth_san_ip,omitempty"`
	TLSClientAuthSANEmail                 string            `json:"tls_client_auth_san_email,omitempty"`
	TLSClientCertificateBoundAccessTokens bool              `json:"tls_client_certificate_bound_access_tokens"`
	Privacy                               *clientPrivacy    `json:"privacy,omitempty"`
	GatewayID                             string            `json:"gateway_id,omitempty"`
	Labels                                map[string]string `json:"labels"`
	Metadata                              *Metadata         `json:"metadata,omitempty"`
}

// clientPrivacy is seed 003 ClientPrivacy: per scope, the personal data
// it gives access to and why.
type clientPrivacy struct {
	Scopes map[string]clientScopePrivacy `json:"scopes"`
}

type clientScopePrivacy struct {
	PIICategories []clientPIICategory `json:"pii_categories"`
	Purpose       string              `json:"purpose"`
}

type clientPIICategory struct {
	Name string `json:"name"`
}

// clientDocumentItem is a client of the configuration document: the wire
// body without its secret, plus the secret hashes (an import restores
// them; a document written by hand may give client_secret instead).
type clientDocumentItem struct {
	clientBody
	SecretHash         string `json:"secret_hash,omitempty"`
	PreviousSecretHash string `json:"previous_secret_hash,omitempty"`
}

// clientReadOnly are the GET fields a PUT may send back unchanged.
var clientReadOnly = []string{"system", "client_id_issued_at", "previous_secret_expires_at", "gateway_id"}

func renderClient(t *store.Typed[model.ClientSpec]) clientBody {
	sp := &t.Spec
	aud := sp.Audience
	if sp.GatewayID != "" {
		// A gateway's client speaks for that gateway of its own tenant
		// (computed, so that a copied configuration stays right).
		aud = []string{model.GatewayAudience(t.Meta.TenantID, sp.GatewayID)}
	}
	out := clientBody{
		ID: t.Meta.ID, ClientID: t.Meta.ID, TenantID: t.Meta.TenantID, ClientName: sp.Name, Description: t.Meta.Description, ServerID: sp.ServerID,
		DeveloperID: sp.DeveloperID, System: sp.System, Trusted: sp.Trusted, Public: sp.Public,
		Audience: nonNilStrings(aud), GrantTypes: nonNilStrings(sp.GrantTypes), ResponseTypes: nonNilStrings(sp.ResponseTypes),
		RedirectURIs: nonNilStrings(sp.RedirectURIs), PostLogoutRedirectURIs: nonNilStrings(sp.PostLogoutRedirectURIs),
		Scope: strings.Join(sp.Scopes, " "), Scopes: nonNilStrings(sp.Scopes),
		TokenEndpointAuthMethod: sp.TokenEndpointAuthMethod, TokenEndpointSigningAlg: sp.TokenEndpointSigningAlg,
		RequestObjectSigningAlg: sp.RequestObjectSigningAlg, UserinfoSignedResponseAlg: sp.UserinfoSignedAlg,
		JWKS: sp.JWKS, JWKSURI: sp.JWKSURI, RequestURIs: nonNilStrings(sp.RequestURIs), SectorIdentifierURI: sp.SectorIdentifierURI,
		ClientURI: sp.ClientURI, LogoURI: sp.LogoURI, PolicyURI: sp.PolicyURI, TosURI: sp.TosURI,
		ClientIDIssuedAt: sp.ClientIDIssuedAt, ClientSecretExpiresAt: sp.ClientSecretExpiresAt,
		GatewayID: sp.GatewayID, Labels: labelsOrEmpty(t.Meta.Labels), Metadata: metadataOf(&t.Meta),
	}
	if sp.PreviousSecretHash != "" && sp.PreviousSecretExpiresAt != nil {
		at := sp.PreviousSecretExpiresAt.UTC()
		out.PreviousSecretExpiresAt = &at
	}
	if len(sp.Privacy) > 0 {
		var p clientPrivacy
		if json.Unmarshal(sp.Privacy, &p) == nil {
			out.Privacy = &p
		}
	}
	return out
}

// addClientKinds registers OAuth clients and claims. A client references
// its server (Restrict: a server with clients cannot be deleted) and, for
// a gateway's client, its gateway (Cascade: the client goes with it).
func addClientKinds(sch *resource.Scheme) {
	sch.MustRegister(&resource.Kind{
		Name: model.KindClient, Singular: "client", Exported: true,
		Canonical: resource.SpecCodec[model.ClientSpec],
		Refs: []resource.Ref{
			{Field: "authorization_server_id", Kind: model.KindServer, OnDelete: resource.Restrict,
				IDs: specIDs(func(s *model.ClientSpec) []string { return []string{s.ServerID} })},
			{Field: "gateway_id", Kind: model.KindGateway, OnDelete: resource.Cascade,
				IDs: specIDs(func(s *model.ClientSpec) []string { return []string{s.GatewayID} })},
		},
		API: &kindAPI{
			param: "cid", readOnly: clientReadOnly, current: typedCurrent(oauthClientRepo, renderClient),
			list:   func(s *Server, c *gin.Context) { listKind(s, c, oauthClientRepo, "client", "clients", renderClient) },
			get:    func(s *Server, c *gin.Context) { getKind(s, c, oauthClientRepo, "cid", "client", renderClient) },
			create: (*Server).createClient, put: (*Server).updateClient,
			deletable: clientDeletable, onRemove: (*Server).revokeClientTokens,
			routes: func(s *Server, _, adm *gin.RouterGroup) {
				adm.POST("/clients/:cid/secret", s.rotateClientSecret)
			},
			export:     exportClient,
			importItem: importClient,
			nameField:  "client_id",
		},
	})
	addClaimKind(sch)
}

// clientDeletable refuses deleting a system client on its own: a
// gateway's client goes with its gateway.
func clientDeletable(_ context.Context, _ store.Tx, o *store.Object) error {
	var spec model.ClientSpec
	if err := json.Unmarshal(o.Spec, &spec); err != nil {
		return fmt.Errorf("decode client %q: %w", o.ID, err)
	}
	if !spec.System {
		return nil
	}
	msg := fmt.Sprintf("client %q is a system client and cannot be deleted on its own", o.ID)
	details := map[string]any{"kind": "client", "id": o.ID, "reason": "system client"}
	if spec.GatewayID != "" {
		msg = fmt.Sprintf("client %q is the client of gateway %q; delete the gateway", o.ID, spec.GatewayID)
		details["used_by"] = map[string][]string{model.KindGateway: {spec.GatewayID}}
	}
	if spec.ServiceAccountID != "" {
		msg = fmt.Sprintf("client %q is the client of service account %q; delete the service account", o.ID, spec.ServiceAccountID)
		details["used_by"] = map[string][]string{model.KindServiceAccount: {spec.ServiceAccountID}}
	}
	return newError(http.StatusBadRequest, httpapi.CodeInUse, msg, details)
}

// revokeClientTokens revokes what a removed client was issued
// (Options.Tokens) in the transaction that deletes it, so the revocations
// commit with the delete and a failing revocation aborts it; it is for
// every removal of a client, on its own or with its gateway.
//
// Not wired yet: the generic delete (kinds.go) calls deletable without
// the *Server, so no kind can reach Options.Tokens there. It needs a
// kindAPI hook called with the server for each object a delete removes
// (cascades included), set here as onRemove: (*Server).revokeClientTokens.
func (s *Server) revokeClientTokens(ctx context.Context, tx store.Tx, o *store.Object) error {
	if s.tokens == nil || o.Kind != model.KindClient {
		return nil
	}
	var spec model.ClientSpec
	if err := json.Unmarshal(o.Spec, &spec); err != nil {
		return fmt.Errorf("decode client %q: %w", o.ID, err)
	}
	if err := s.tokens.RevokeClient(ctx, tx, o.TenantID, spec.ServerID, o.ID); err != nil {
		return fmt.Errorf("revoke the tokens of client %q: %w", o.ID, err)
	}
	return nil
}

// clientUsesSecret reports whether a client of that kind authenticates
// with a client secret (confidential, client_secret_basic or _post).
func clientUsesSecret(public bool, method string) bool {
	return !public && (method == model.AuthMethodBasic || method == model.AuthMethodPost)
}

// clientSpec validates a request (everything that needs no other object)
// into the client's spec; tid is "" for a configuration document. The
// secret, issue time and system fields are the caller's.
func (r *clientBody) clientSpec(s *Server, tid string) (model.ClientSpec, *Error) {
	var errs field.ErrorList
	add := func(p *field.Path, format string, args ...any) { errs.Add(field.Invalid(p, format, args...)) }
	errs.Extend(textErrors("client_name", r.ClientName, false, 256))
	errs.Extend(textErrors("description", r.Description, false, 4096))
	errs.Extend(textErrors("developer_id", r.DeveloperID, false, 256))
	if tid != "" && r.TenantID != "" && r.TenantID != tid {
		add(field.NewPath("tenant_id"), "does not match the tenant in the path")
	}
	switch {
	case r.ServerID == "":
		errs.Add(field.Required(field.NewPath("authorization_server_id")))
	case !model.ValidObjectID(r.ServerID):
		add(field.NewPath("authorization_server_id"), "invalid id %q (%s)", r.ServerID, model.ObjectIDRule)
	}
	errs.Extend(labelErrors(r.Labels))

	method := r.TokenEndpointAuthMethod
	if method == "" {
		method = model.AuthMethodBasic
		if r.Public {
			method = model.AuthMethodNone
		}
	}
	mp := field.NewPath("token_endpoint_auth_method")
	switch method {
	case model.AuthMethodBasic, model.AuthMethodPost, model.AuthMethodPrivateKeyJWT:
		if r.Public {
			add(mp, "a public client has no credentials: its method is none (or leave it out)")
		}
	case model.AuthMethodNone:
		if !r.Public {
			add(mp, "none is for public clients (set public: true), which use PKCE instead of a secret")
		}
	case "client_secret_jwt":
		add(mp, "client_secret_jwt is not supported (use private_key_jwt, or a secret with client_secret_basic or client_secret_post)")
	case "tls_client_auth", "self_signed_tls_client_auth":
		add(mp, "%s is not supported (Gatehouse has no mutual-TLS client authentication)", method)
	default:
		add(mp, "unknown method %q (client_secret_basic, client_secret_post, private_key_jwt or none)", method)
	}

	grants := r.GrantTypes
	if len(grants) == 0 {
		grants = []string{model.GrantAuthorizationCode}
	}
	seen := map[string]bool{}
	for i, g := range grants {
		p := field.NewPath("grant_types").Index(i)
		switch g {
		case model.GrantAuthorizationCode, model.GrantImplicit, model.GrantRefreshToken:
		case model.GrantClientCredentials:
			if r.Public {
				add(p, "a public client cannot use client_credentials (it cannot authenticate)")
			}
		case "password":
			add(p, "password is not supported (OAuth 2.0 security BCP)")
		default:
			add(p, "unknown or unsupported grant type %q (authorization_code, implicit, client_credentials, refresh_token)", g)
		}
		if seen[g] {
			add(p, "%q is listed twice", g)
		}
		seen[g] = true
	}
	code, implicit := slices.Contains(grants, model.GrantAuthorizationCode), slices.Contains(grants, model.GrantImplicit)

	responses := r.ResponseTypes
	if len(responses) == 0 && code {
		responses = []string{"code"}
	}
	if len(responses) == 0 && implicit {
		errs.Add(field.Required(field.NewPath("response_types")))
	}
	seen = map[string]bool{}
	for i, rt := range responses {
		p := field.NewPath("response_types").Index(i)
		switch rt {
		case "code":
			if !code {
				add(p, "code needs the authorization_code grant in grant_types")
			}
		case "token", "id_token", "id_token token":
			if !implicit {
				add(p, "%q needs the implicit grant in grant_types", rt)
			}
		default:
			add(p, "unknown response type %q (code; token, id_token or \"id_token token\" with the implicit grant)", rt)
		}
		if seen[rt] {
			add(p, "%q is listed twice", rt)
		}
		seen[rt] = true
	}

	errs.Extend(clientRedirectErrors("redirect_uris", r.RedirectURIs))
	if (code || implicit) && len(r.RedirectURIs) == 0 {
		errs.Add(field.Invalid(field.NewPath("redirect_uris"), "at least one redirect URI is required with the authorization_code or implicit grant"))
	}
	errs.Extend(clientRedirectErrors("post_logout_redirect_uris", r.PostLogoutRedirectURIs))

	scopes, scopeErrs := r.scopeList()
	errs.Extend(scopeErrs)

	for _, a := range []struct{ name, value string }{
		{"token_endpoint_signing_alg", r.TokenEndpointSigningAlg},
		{"request_object_signing_alg", r.RequestObjectSigningAlg},
		{"userinfo_signed_response_alg", r.UserinfoSignedResponseAlg},
	} {
		if a.value != "" && !slices.Contains(clientSigningAlgs, a.value) {
			add(field.NewPath(a.name), "must be RS256 or ES256 (or empty), not %q", a.value)
		}
	}

	if len(r.Audience) > maxClientAudiences {
		add(field.NewPath("audience"), "at most %d audiences are allowed", maxClientAudiences)
	}
	seen = map[string]bool{}
	for i, a := range r.Audience {
		errs.Extend(textErrors(fmt.Sprintf("audience[%d]", i), a, true, 512))
		if seen[a] {
			add(field.NewPath("audience").Index(i), "%q is listed twice", a)
		}
		seen[a] = true
	}

	hasJWKS := len(r.JWKS) > 0 && string(r.JWKS) != "null"
	var jwks json.RawMessage
	if hasJWKS {
		var apiErr *Error
		if jwks, apiErr = clientPublicJWKS(r.JWKS); apiErr != nil {
			errs.Extend(apiErr.Fields())
		}
	}
	if r.JWKSURI != "" {
		if len(r.JWKSURI) > maxClientURLLength {
			add(field.NewPath("jwks_uri"), "must be at most %d characters", maxClientURLLength)
		} else if apiErr := keyURL("jwks_uri", r.JWKSURI, s.allowPrivateJWKSURLs); apiErr != nil {
			errs.Extend(apiErr.Fields())
		}
		if hasJWKS {
			add(field.NewPath("jwks"), "give jwks or jwks_uri, not both")
		}
	}
	if method == model.AuthMethodPrivateKeyJWT && !hasJWKS && r.JWKSURI == "" {
		add(field.NewPath("jwks"), "a private_key_jwt client needs its public keys: give jwks or jwks_uri")
	}

	if len(r.RequestURIs) > maxClientURIs {
		add(field.NewPath("request_uris"), "at most %d URIs are allowed", maxClientURIs)
	}
	for i, u := range r.RequestURIs {
		if msg := clientURLProblem(u, true); msg != "" {
			add(field.NewPath("request_uris").Index(i), "%s", msg)
		}
	}
	for _, u := range []struct {
		name, value string
		https       bool
	}{
		{"sector_identifier_uri", r.SectorIdentifierURI, true},
		{"client_uri", r.ClientURI, false}, {"logo_uri", r.LogoURI, false},
		{"policy_uri", r.PolicyURI, false}, {"tos_uri", r.TosURI, false},
	} {
		if u.value == "" {
			continue
		}
		if msg := clientURLProblem(u.value, u.https); msg != "" {
			add(field.NewPath(u.name), "%s", msg)
		}
	}

	if r.ClientSecretExpiresAt < 0 {
		add(field.NewPath("client_secret_expires_at"), "must be Unix seconds, or 0 for never")
	}
	if r.Public && r.ClientSecretExpiresAt != 0 {
		add(field.NewPath("client_secret_expires_at"), "a public client has no secret; leave it 0")
	}
	for _, f := range []struct{ name, value string }{
		{"tls_client_auth_subject_dn", r.TLSClientAuthSubjectDN},
		{"tls_client_auth_san_dns", r.TLSClientAuthSANDNS},
		{"tls_client_auth_san_uri", r.TLSClientAuthSANURI},
		{"tls_client_auth_san_ip", r.TLSClientAuthSANIP},
		{"tls_client_auth_san_email", r.TLSClientAuthSANEmail},
	} {
		if f.value != "" {
			add(field.NewPath(f.name), "is not supported (Gatehouse has no mutual-TLS client authentication); leave it out")
		}
	}
	if r.TLSClientCertificateBoundAccessTokens {
		add(field.NewPath("tls_client_certificate_bound_access_tokens"), "must be false (no mutual-TLS certificate-bound tokens)")
	}
	privacy, privacyErrs := r.privacySpec()
	errs.Extend(privacyErrs)

	if len(errs) > 0 {
		return model.ClientSpec{}, fieldErrors(errs)
	}
	spec := model.ClientSpec{
		Name: r.ClientName, ServerID: r.ServerID, DeveloperID: r.DeveloperID, Trusted: r.Trusted, Public: r.Public,
		Audience: nilIfEmpty(r.Audience), GrantTypes: grants, ResponseTypes: nonNilStrings(responses),
		RedirectURIs: nilIfEmpty(r.RedirectURIs), PostLogoutRedirectURIs: nilIfEmpty(r.PostLogoutRedirectURIs), Scopes: scopes,
		TokenEndpointAuthMethod: method, TokenEndpointSigningAlg: r.TokenEndpointSigningAlg,
		RequestObjectSigningAlg: r.RequestObjectSigningAlg, UserinfoSignedAlg: r.UserinfoSignedResponseAlg,
		JWKS: jwks, JWKSURI: r.JWKSURI, RequestURIs: nilIfEmpty(r.RequestURIs), SectorIdentifierURI: r.SectorIdentifierURI,
		ClientURI: r.ClientURI, LogoURI: r.LogoURI, PolicyURI: r.PolicyURI, TosURI: r.TosURI,
		ClientSecretExpiresAt: r.ClientSecretExpiresAt, Privacy: privacy,
	}
	return spec, nil
}

// scopeList is the client's scopes from scope (space-separated) and
// scopes[], which must name the same set when both are given.
func (r *clientBody) scopeList() ([]string, field.ErrorList) {
	var errs field.ErrorList
	check := func(p *field.Path, list []string) {
		if len(list) > maxClientScopes {
			errs.Add(field.Invalid(p, "at most %d scopes are allowed", maxClientScopes))
		}
		seen := map[string]bool{}
		for i, sc := range list {
			switch {
			case !model.ValidScopeName(sc):
				errs.Add(field.Invalid(p.Index(i), "%q is not a scope name (%s)", sc, model.ScopeNameRule))
			case seen[sc]:
				errs.Add(field.Invalid(p.Index(i), "%q is listed twice", sc))
			}
			seen[sc] = true
		}
	}
	fromScope := strings.Fields(r.Scope)
	check(field.NewPath("scopes"), r.Scopes)
	if len(errs) == 0 && r.Scope != "" {
		seen := map[string]bool{}
		for _, sc := range fromScope {
			if !model.ValidScopeName(sc) {
				errs.Add(field.Invalid(field.NewPath("scope"), "%q is not a scope name (%s)", sc, model.ScopeNameRule))
			} else if seen[sc] {
				errs.Add(field.Invalid(field.NewPath("scope"), "%q is listed twice", sc))
			}
			seen[sc] = true
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	if len(r.Scopes) > 0 && r.Scope != "" {
		a, b := slices.Clone(r.Scopes), slices.Clone(fromScope)
		slices.Sort(a)
		slices.Sort(b)
		if !slices.Equal(a, b) {
			return nil, field.ErrorList{field.Invalid(field.NewPath("scope"), "%q does not name the same scopes as scopes[]; give one of them, or both alike", r.Scope)}
		}
	}
	if len(r.Scopes) > 0 {
		return slices.Clone(r.Scopes), nil
	}
	return nilIfEmpty(fromScope), nil
}

// scopeField names scope i of the client's list as the request gave it.
func (r *clientBody) scopeField(i int) string {
	if len(r.Scopes) > 0 {
		return fmt.Sprintf("scopes[%d]", i)
	}
	return "scope"
}

// privacySpec checks privacy and returns it in stored form.
func (r *clientBody) privacySpec() (json.RawMessage, field.ErrorList) {
	if r.Privacy == nil || len(r.Privacy.Scopes) == 0 {
		return nil, nil
	}
	var errs field.ErrorList
	for _, name := range slices.Sorted(maps.Keys(r.Privacy.Scopes)) {
		p := field.NewPath("privacy", "scopes", name)
		if !model.ValidScopeName(name) {
			errs.Add(field.Invalid(p, "%q is not a scope name (%s)", name, model.ScopeNameRule))
		}
		info := r.Privacy.Scopes[name]
		for i, c := range info.PIICategories {
			errs.Extend(textErrors(p.Child("pii_categories").Index(i).Child("name").String(), c.Name, true, 256))
		}
		errs.Extend(textErrors(p.Child("purpose").String(), info.Purpose, false, 4096))
	}
	if len(errs) > 0 {
		return nil, errs
	}
	raw, err := json.Marshal(r.Privacy)
	if err != nil {
		return nil, field.ErrorList{field.Invalid(field.NewPath("privacy"), "cannot be encoded: %v", err)}
	}
	return raw, nil
}

// clientRedirectErrors checks a list of redirect URIs: absolute https
// URLs, or plain http to a loopback host (127.0.0.1, [::1], localhost),
// without fragment or credentials. They are matched exactly.
func clientRedirectErrors(name string, uris []string) field.ErrorList {
	var errs field.ErrorList
	p := field.NewPath(name)
	if len(uris) > maxClientURIs {
		errs.Add(field.Invalid(p, "at most %d URIs are allowed", maxClientURIs))
	}
	seen := map[string]bool{}
	for i, raw := range uris {
		if msg := clientRedirectProblem(raw); msg != "" {
			errs.Add(field.Invalid(p.Index(i), "%s", msg))
		} else if seen[raw] {
			errs.Add(field.Invalid(p.Index(i), "%q is listed twice", raw))
		}
		seen[raw] = true
	}
	return errs
}

// clientRedirectProblem is what is wrong with a redirect URI ("" nothing).
func clientRedirectProblem(raw string) string {
	u, msg := clientParseURL(raw)
	if msg != "" {
		return msg
	}
	if u.Fragment != "" || strings.Contains(raw, "#") {
		return "must not have a fragment"
	}
	switch u.Scheme {
	case "https":
		return ""
	case "http":
		if model.LoopbackRedirectHost(u.Hostname()) {
			return ""
		}
		return "plain http is allowed only to a loopback host (127.0.0.1, [::1] or localhost); use https"
	}
	return "must be an https URL (or http to a loopback host)"
}

// clientURLProblem is what is wrong with a client's informational or
// fetched URL ("" nothing): absolute http(s), or https only.
func clientURLProblem(raw string, httpsOnly bool) string {
	u, msg := clientParseURL(raw)
	switch {
	case msg != "":
		return msg
	case u.Scheme == "https":
		return ""
	case u.Scheme == "http" && !httpsOnly:
		return ""
	case httpsOnly:
		return "must be an https URL"
	}
	return "must be an http or https URL"
}

// clientParseURL parses an absolute URL with a host and no credentials.
func clientParseURL(raw string) (*url.URL, string) {
	if len(raw) > maxClientURLLength {
		return nil, fmt.Sprintf("must be at most %d characters", maxClientURLLength)
	}
	if raw == "" || strings.IndexFunc(raw, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
		return nil, "must be a URL without whitespace"
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Sprintf("is not a URL: %v", errors.Unwrap(err))
	}
	if !u.IsAbs() || u.Opaque != "" || u.Hostname() == "" {
		return nil, "must be an absolute URL with a host"
	}
	if u.User != nil {
		return nil, "must not contain credentials"
	}
	return u, ""
}

// clientPrivateMembers are the JWK members that hold private or
// symmetric key material.
var clientPrivateMembers = []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"}

// clientPublicJWKS checks a client's inline key set: public keys only (a
// private or symmetric member is refused, naming it), then the issuers'
// rules (publicJWKS).
func clientPublicJWKS(raw json.RawMessage) (json.RawMessage, *Error) {
	var set struct {
		Keys []map[string]json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(raw, &set); err != nil {
		return nil, fieldError("jwks", "is not a JSON Web Key Set: %v", err)
	}
	for i, k := range set.Keys {
		for _, m := range clientPrivateMembers {
			if _, ok := k[m]; ok {
				return nil, fieldError(fmt.Sprintf("jwks.keys[%d].%s", i, m), "is private key material; give the public keys only")
			}
		}
	}
	return publicJWKS(raw)
}

// nilIfEmpty stores empty lists as absent.
func nilIfEmpty(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return slices.Clone(s)
}

// checkClientSecret checks a caller-given secret.
func checkClientSecret(secret string) *Error {
	switch {
	case len(secret) < clientauth.MinSecretLength:
		return fieldError("client_secret", "must be at least %d characters (or leave it out to have one generated)", clientauth.MinSecretLength)
	case len(secret) > clientauth.MaxSecretLength:
		return fieldError("client_secret", "must be at most %d characters", clientauth.MaxSecretLength)
	case strings.IndexFunc(secret, func(r rune) bool { return r <= ' ' || r > '~' }) >= 0:
		return fieldError("client_secret", "must be printable ASCII without spaces")
	}
	return nil
}

// checkClientAgainstServer applies the rules that need the client's
// server and the tenant's scopes, inside the write's transaction (the
// server's existence is the reference check's): grant types the server
// allows, and scopes that are standard OpenID Connect scopes or scope
// objects of the tenant bound to this server or to none. scopeField names
// scope i in errors.
func checkClientAgainstServer(ctx context.Context, rd store.Reader, tid string, spec *model.ClientSpec, scopeField func(int) string) error {
	server, err := store.Repo[model.ServerSpec]{Kind: model.KindServer}.Get(ctx, rd, tid, spec.ServerID)
	if errors.Is(err, store.ErrNotFound) {
		return unknownReference("authorization_server_id", "server", spec.ServerID)
	}
	if err != nil {
		return err
	}
	allowed := server.Spec.GrantTypes
	if len(allowed) == 0 {
		allowed = clientServerDefaultGrants
	}
	var errs field.ErrorList
	for i, g := range spec.GrantTypes {
		if !slices.Contains(allowed, g) {
			errs.Add(field.Invalid(field.NewPath("grant_types").Index(i), "server %q does not allow the %s grant (it allows %s)",
				spec.ServerID, g, strings.Join(allowed, ", ")))
		}
	}
	for i, sc := range spec.Scopes {
		if slices.Contains(clientStandardScopes, sc) {
			continue
		}
		o, err := rd.GetByName(ctx, model.KindScope, tid, sc)
		if errors.Is(err, store.ErrNotFound) {
			errs.Add(field.Invalid(field.NewPath(scopeField(i)), "no scope %q in the tenant (besides the standard %s)", sc, strings.Join(clientStandardScopes, ", ")))
			continue
		}
		if err != nil {
			return err
		}
		var scope model.ScopeSpec
		if err := json.Unmarshal(o.Spec, &scope); err != nil {
			return fmt.Errorf("decode scope %q: %w", o.ID, err)
		}
		if scope.ServerID != "" && scope.ServerID != spec.ServerID {
			errs.Add(field.Invalid(field.NewPath(scopeField(i)), "scope %q belongs to server %q, not %q", sc, scope.ServerID, spec.ServerID))
		}
	}
	return errs.OrNil()
}

// createClient answers POST /clients: the client, with its secret shown
// this once.
func (s *Server) createClient(c *gin.Context) {
	k := s.scheme.MustKind(model.KindClient)
	var secret string
	render := func(t *store.Typed[model.ClientSpec]) clientBody {
		out := renderClient(t)
		out.ClientSecret = secret
		return out
	}
	var req clientBody
	c.Header("Cache-Control", "no-store")
	createKind(s, c, k, render, nil, func(c *gin.Context, tid string) (*store.Typed[model.ClientSpec], func(context.Context, store.Tx, *store.Typed[model.ClientSpec]) error, *Error) {
		if apiErr := decodeJSON(c, &req); apiErr != nil {
			return nil, nil, apiErr
		}
		id, idErr := req.requestedID()
		if idErr == nil {
			id, idErr = newObjectID("client_id", id)
		}
		if idErr == nil {
			idErr = reservedClientID(id)
		}
		spec, apiErr := req.clientSpec(s, tid)
		var errs field.ErrorList
		for _, e := range []*Error{idErr, apiErr, req.createOnlyErrors()} {
			if e != nil {
				errs.Extend(e.Fields())
			}
		}
		if secErr := req.secretErrors(spec); secErr != nil {
			errs.Extend(secErr.Fields())
		}
		if len(errs) > 0 {
			return nil, nil, fieldErrors(errs)
		}
		if clientUsesSecret(spec.Public, spec.TokenEndpointAuthMethod) {
			secret = req.ClientSecret
			if secret == "" {
				var err error
				if secret, err = clientauth.NewSecret(); err != nil {
					return nil, nil, internalError(err)
				}
			}
			spec.SecretHash = clientauth.HashSecret(secret)
		}
		spec.ClientIDIssuedAt = time.Now().Unix()
		t := &store.Typed[model.ClientSpec]{
			Meta: store.Object{ID: id, Name: id, Description: req.Description, Labels: req.Labels},
			Spec: spec,
		}
		return t, func(ctx context.Context, tx store.Tx, t *store.Typed[model.ClientSpec]) error {
			return checkClientAgainstServer(ctx, tx, t.Meta.TenantID, &t.Spec, req.scopeField)
		}, nil
	})
}

// reservedConsoleClientID refuses model.ConsoleClientID as the id of a
// client: it is the web console's built-in client of the admin servers,
// which the provider makes (docs/oauth.md), so no stored client may take
// its place or its name.
func reservedConsoleClientID() *Error {
	return fieldError("client_id", "%q is reserved for the web console's built-in client of the admin servers; choose another id", model.ConsoleClientID)
}

// reservedClientID refuses the ids of the provider's built-in clients:
// the console's, and model.InvitationClientID (the default servers'
// invitation sign-ins). nil for any other id.
func reservedClientID(id string) *Error {
	switch id {
	case model.ConsoleClientID:
		return reservedConsoleClientID()
	case model.InvitationClientID:
		return fieldError("client_id", "%q is reserved for the built-in client of the default servers' invitation sign-ins; choose another id", id)
	}
	return nil
}

// requestedID is the id the body names ("" none): client_id or id.
func (r *clientBody) requestedID() (string, *Error) {
	switch {
	case r.ID == "":
		return r.ClientID, nil
	case r.ClientID != "" && r.ClientID != r.ID:
		return "", fieldError("id", "names another client than client_id; give one of them")
	}
	return r.ID, nil
}

// createOnlyErrors refuses the read-only fields on create.
func (r *clientBody) createOnlyErrors() *Error {
	var errs field.ErrorList
	if r.System {
		errs.Add(field.ReadOnly(field.NewPath("system"), "is read-only: Gatehouse makes the system clients (a gateway's)"))
	}
	if r.ClientIDIssuedAt != 0 {
		errs.Add(field.ReadOnly(field.NewPath("client_id_issued_at"), "is read-only: set when the client is created"))
	}
	if r.PreviousSecretExpiresAt != nil {
		errs.Add(field.ReadOnly(field.NewPath("previous_secret_expires_at"), "is read-only: set by a secret rotation"))
	}
	if r.GatewayID != "" {
		errs.Add(field.ReadOnly(field.NewPath("gateway_id"), "is read-only: set on the client Gatehouse makes for a gateway"))
	}
	return fieldErrors(errs)
}

// secretErrors checks a caller-given secret against the client's kind.
func (r *clientBody) secretErrors(spec model.ClientSpec) *Error {
	if r.ClientSecret == "" {
		return nil
	}
	switch {
	case r.Public:
		return fieldError("client_secret", "a public client has no secret")
	case spec.TokenEndpointAuthMethod == model.AuthMethodPrivateKeyJWT:
		return fieldError("client_secret", "a private_key_jwt client authenticates with its keys, not a secret")
	}
	return checkClientSecret(r.ClientSecret)
}

// updateClient answers PUT /clients/{cid}: the body replaces the client;
// the secret, its server, the read-only fields and the issue time stay.
// A client switched to a method without a secret loses its secret; one
// switched to a secret method has none until POST …/secret.
func (s *Server) updateClient(c *gin.Context) {
	tid := tenantID(c)
	updateKind(s, c, oauthClientRepo, "cid", "client", renderClient, func(c *gin.Context, id string) (func(context.Context, store.Tx, *store.Typed[model.ClientSpec]) error, *Error) {
		var req clientBody
		if apiErr := decodeJSON(c, &req); apiErr != nil {
			return nil, apiErr
		}
		if given, apiErr := req.requestedID(); apiErr != nil {
			return nil, apiErr
		} else if given != "" && given != id {
			return nil, fieldError("client_id", "does not match the id in the path; ids cannot be changed")
		}
		spec, apiErr := req.clientSpec(s, tid)
		var errs field.ErrorList
		if apiErr != nil {
			errs.Extend(apiErr.Fields())
		}
		if req.ClientSecret != "" {
			errs.Add(field.Invalid(field.NewPath("client_secret"), "cannot be set by PUT; rotate it with POST /api/admin/{tid}/clients/{cid}/secret"))
		}
		// Sent unchanged, the read-only fields were removed before this
		// decode; what is left was not in the stored client.
		if ro := req.createOnlyErrors(); ro != nil {
			errs.Extend(ro.Fields())
		}
		if len(errs) > 0 {
			return nil, fieldErrors(errs)
		}
		return func(ctx context.Context, tx store.Tx, t *store.Typed[model.ClientSpec]) error {
			old := t.Spec
			if old.ServiceAccountID != "" {
				return fieldError("system", "client %q is the client of service account %q; change the service account instead", id, old.ServiceAccountID)
			}
			if old.System {
				return fieldError("system", "client %q is a system client, managed by Gatehouse; it cannot be replaced (its secret can be rotated)", id)
			}
			if spec.ServerID != old.ServerID {
				return newError(http.StatusBadRequest, httpapi.CodeInvalidField,
					fmt.Sprintf("authorization_server_id: cannot change from %q; create another client", old.ServerID),
					map[string]any{"field": "authorization_server_id", "reason": "cannot change"})
			}
			spec.ClientIDIssuedAt = old.ClientIDIssuedAt
			if clientUsesSecret(spec.Public, spec.TokenEndpointAuthMethod) {
				spec.SecretHash, spec.PreviousSecretHash, spec.PreviousSecretExpiresAt = old.SecretHash, old.PreviousSecretHash, old.PreviousSecretExpiresAt
			}
			t.Spec = spec
			t.Meta.Name, t.Meta.Description, t.Meta.Labels = t.Meta.ID, req.Description, req.Labels
			if err := checkReferencesOf(ctx, s, tx, model.KindClient, t); err != nil {
				return err
			}
			return checkClientAgainstServer(ctx, tx, tid, &t.Spec, req.scopeField)
		}, nil
	})
}

// clientRotateRequest is the optional body of POST /clients/{cid}/secret.
type clientRotateRequest struct {
	// GracePeriod keeps the previous secret valid that long (a Go
	// duration, default 0: it stops working at once; at most 720h).
	GracePeriod json.RawMessage `json:"grace_period"`
}

// rotateClientSecret answers POST /clients/{cid}/secret: a new secret,
// shown this once; the previous one stays valid for the grace period.
func (s *Server) rotateClientSecret(c *gin.Context) {
	tid := tenantID(c)
	id, expect, ok := pathIDAndIfMatch(c, "cid")
	if !ok {
		return
	}
	var req clientRotateRequest
	if c.Request.ContentLength != 0 {
		if apiErr := decodeJSON(c, &req); apiErr != nil {
			abort(c, apiErr)
			return
		}
	}
	var grace model.Duration
	if len(req.GracePeriod) > 0 && string(req.GracePeriod) != "null" {
		if err := grace.UnmarshalJSON(req.GracePeriod); err != nil {
			abort(c, fieldError("grace_period", "%v", err))
			return
		}
	}
	if grace < 0 || grace.D() > maxClientGracePeriod {
		abort(c, fieldError("grace_period", "must be between 0s and %s", maxClientGracePeriod))
		return
	}
	secret, err := clientauth.NewSecret()
	if err != nil {
		abort(c, internalError(err))
		return
	}
	var t *store.Typed[model.ClientSpec]
	if !s.write(c, "client", id, func(ctx context.Context, tx store.Tx) error {
		var err error
		if t, err = oauthClientRepo.Get(ctx, tx, tid, id); err != nil {
			return err
		}
		if err := checkRevision(&t.Meta, expect); err != nil {
			return err
		}
		switch {
		case t.Spec.ServiceAccountID != "":
			return fieldError("system", "client %q is the client of service account %q: rotate with POST /api/admin/{tid}/service-accounts/%s/rotate, which also revokes its tokens",
				id, t.Spec.ServiceAccountID, t.Spec.ServiceAccountID)
		case t.Spec.Public:
			return fieldError("public", "client %q is a public client: it has no secret to rotate", id)
		case !clientUsesSecret(false, t.Spec.TokenEndpointAuthMethod):
			return fieldError("token_endpoint_auth_method", "client %q authenticates with %s, not a secret", id, t.Spec.TokenEndpointAuthMethod)
		case t.Spec.ClientSecretExpiresAt != 0 && time.Now().Unix() >= t.Spec.ClientSecretExpiresAt:
			return fieldError("client_secret_expires_at", "client %q's secrets expired at %d; set a later client_secret_expires_at (or 0) before rotating, or the new secret would not work either",
				id, t.Spec.ClientSecretExpiresAt)
		}
		t.Spec.PreviousSecretHash, t.Spec.PreviousSecretExpiresAt = "", nil
		if grace > 0 && t.Spec.SecretHash != "" {
			until := time.Now().Add(grace.D()).UTC()
			t.Spec.PreviousSecretHash, t.Spec.PreviousSecretExpiresAt = t.Spec.SecretHash, &until
		}
		t.Spec.SecretHash = clientauth.HashSecret(secret)
		t.Meta.UpdatedBy = actor(c)
		if err := oauthClientRepo.Update(ctx, tx, t, expect); err != nil {
			return err
		}
		return record(ctx, tx, c, tid, "rotate", model.KindClient, id)
	}) {
		return
	}
	out := renderClient(t)
	out.ClientSecret = secret
	c.Header("Cache-Control", "no-store")
	respondObject(c, http.StatusOK, t.Meta.Revision, out)
}

// exportClient is a client of the configuration document: the GET body
// without metadata, tenant_id, client_secret and scope (scopes has them),
// with the secret hashes.
func exportClient(o *store.Object) (any, error) {
	var spec model.ClientSpec
	if len(o.Spec) > 0 {
		if err := json.Unmarshal(o.Spec, &spec); err != nil {
			return nil, fmt.Errorf("decode client %q: %w", o.ID, err)
		}
	}
	meta := *o
	meta.Spec = nil
	item := clientDocumentItem{clientBody: renderClient(&store.Typed[model.ClientSpec]{Meta: meta, Spec: spec}),
		SecretHash: spec.SecretHash, PreviousSecretHash: spec.PreviousSecretHash}
	item.Metadata, item.Scope = nil, ""
	if spec.PreviousSecretHash != "" {
		item.PreviousSecretExpiresAt = spec.PreviousSecretExpiresAt
	}
	raw, err := json.Marshal(item)
	if err != nil {
		return nil, err
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, err
	}
	for _, f := range []string{"tenant_id", "client_secret", "scope"} {
		delete(m, f)
	}
	return m, nil
}

// importClient decodes and validates a client of a configuration
// document. Its server and gateway are the document's references; the
// rules against the server's grant types and the tenant's scopes apply
// when the client is next written through the API (the OAuth endpoints
// narrow a client's grants and scopes to its server's anyway).
func importClient(s *Server, raw json.RawMessage) (*configObject, *Error) {
	var in clientDocumentItem
	if apiErr := decodeConfigItem(raw, &in); apiErr != nil {
		return nil, apiErr
	}
	given, apiErr := in.requestedID()
	if apiErr != nil {
		return nil, apiErr
	}
	in.ClientID = given
	switch {
	case in.ClientID == "":
		return nil, missingField("client_id")
	case !model.ValidObjectID(in.ClientID):
		return nil, fieldError("client_id", "invalid id %q (%s)", in.ClientID, model.ObjectIDRule)
	case reservedClientID(in.ClientID) != nil:
		return nil, reservedClientID(in.ClientID)
	}
	spec, apiErr := in.clientSpec(s, "")
	if apiErr != nil {
		return nil, apiErr
	}
	if in.GatewayID != "" && !model.ValidObjectID(in.GatewayID) {
		return nil, fieldError("gateway_id", "invalid id %q (%s)", in.GatewayID, model.ObjectIDRule)
	}
	if in.GatewayID != "" && !in.System {
		return nil, fieldError("system", "a gateway's client is a system client (system: true)")
	}
	if in.ClientIDIssuedAt < 0 {
		return nil, fieldError("client_id_issued_at", "must be Unix seconds")
	}
	spec.System, spec.GatewayID, spec.ClientIDIssuedAt = in.System, in.GatewayID, in.ClientIDIssuedAt
	if spec.GatewayID != "" {
		spec.Audience = nil // computed for the tenant it lands in (renderClient)
	}
	uses := clientUsesSecret(spec.Public, spec.TokenEndpointAuthMethod)
	for _, h := range []struct{ name, value string }{{"secret_hash", in.SecretHash}, {"previous_secret_hash", in.PreviousSecretHash}} {
		switch {
		case h.value == "":
		case !uses:
			return nil, fieldError(h.name, "a client authenticating with %s has no secret", spec.TokenEndpointAuthMethod)
		case !clientauth.ValidHash(h.value):
			return nil, fieldError(h.name, "must be the SHA-256 of the secret: 64 lowercase hex digits")
		}
	}
	switch {
	case in.ClientSecret != "" && in.SecretHash != "":
		return nil, fieldError("client_secret", "give client_secret or secret_hash, not both")
	case in.ClientSecret != "":
		if apiErr := in.secretErrors(spec); apiErr != nil {
			return nil, apiErr
		}
		spec.SecretHash = clientauth.HashSecret(in.ClientSecret)
	default:
		spec.SecretHash = in.SecretHash
	}
	if in.PreviousSecretHash != "" {
		if in.PreviousSecretExpiresAt == nil {
			return nil, missingField("previous_secret_expires_at")
		}
		at := in.PreviousSecretExpiresAt.UTC()
		spec.PreviousSecretHash, spec.PreviousSecretExpiresAt = in.PreviousSecretHash, &at
	}
	return newConfigObject(model.KindClient, in.ClientID, in.ClientID, in.GatewayID, in.Description, in.Labels, spec)
}
