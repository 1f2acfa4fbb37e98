package admin

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"github.com/gatehouse-dev/gatehouse/directory"
	"github.com/gatehouse-dev/gatehouse/internal/field"
	"github.com/gatehouse-dev/gatehouse/internal/httpapi"
	"github.com/gatehouse-dev/gatehouse/internal/passwords"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/oauth/grants"
	"github.com/gatehouse-dev/gatehouse/oauth/keys"
	"github.com/gatehouse-dev/gatehouse/resource"
	"github.com/gatehouse-dev/gatehouse/store"
)

// Authorization servers (WAVE2 §1.1): /api/admin/{tid}/servers[/{aid}],
// their login methods (…/authentications), signing keys (…/keys,
// …/keys/rotate), dashboard links and per-server listings. The issuer of
// server aid is {public_url}/{tid}/{aid}.

var serverRepo = store.Repo[model.ServerSpec]{Kind: model.KindServer}

// Limits and rules of server fields.
const (
	// minServerSecret and maxServerSecret bound a given server secret.
	minServerSecret = 32
	maxServerSecret = 512
	maxAudiences    = 20
	maxAudienceLen  = 512
	maxLogoURILen   = 2048
	// Login methods (PUT …/authentications).
	maxAuthMethods      = 20
	maxStaticUsers      = 100
	minPasswordLen      = 8
	maxPasswordLen      = 256
	maxAuthAttributes   = 64
	maxAuthMappings     = 64
	maxAuthContextBytes = 16 << 10
)

// defaultGrantTypes are a new server's grant types (the seed's default
// without implicit, which is accepted when asked for).
var defaultGrantTypes = []string{model.GrantAuthorizationCode, model.GrantClientCredentials, model.GrantRefreshToken}

// serverTTL is one of a server's durations: its default and bounds.
type serverTTL struct {
	field    string
	def, max time.Duration
	// zero: 0 is allowed (key_activation_delay); the others are at least
	// a second.
	zero bool
	get  func(*serverSettings) json.RawMessage
	set  func(*model.ServerSpec, time.Duration)
}

var serverTTLs = []serverTTL{
	{field: "authorization_code_ttl", def: 10 * time.Minute, max: time.Hour,
		get: func(r *serverSettings) json.RawMessage { return r.AuthorizationCodeTTL },
		set: func(s *model.ServerSpec, d time.Duration) { s.AuthorizationCodeTTL = model.Duration(d) }},
	{field: "access_token_ttl", def: time.Hour, max: 24 * time.Hour,
		get: func(r *serverSettings) json.RawMessage { return r.AccessTokenTTL },
		set: func(s *model.ServerSpec, d time.Duration) { s.AccessTokenTTL = model.Duration(d) }},
	{field: "id_token_ttl", def: time.Hour, max: 24 * time.Hour,
		get: func(r *serverSettings) json.RawMessage { return r.IDTokenTTL },
		set: func(s *model.ServerSpec, d time.Duration) { s.IDTokenTTL = model.Duration(d) }},
	{field: "refresh_token_ttl", def: 720 * time.Hour, max: 8760 * time.Hour,
		get: func(r *serverSettings) json.RawMessage { return r.RefreshTokenTTL },
		set: func(s *model.ServerSpec, d time.Duration) { s.RefreshTokenTTL = model.Duration(d) }},
	{field: "cookie_max_age", def: time.Hour, max: 720 * time.Hour,
		get: func(r *serverSettings) json.RawMessage { return r.CookieMaxAge },
		set: func(s *model.ServerSpec, d time.Duration) { s.CookieMaxAge = model.Duration(d) }},
	{field: "key_activation_delay", def: 5 * time.Minute, max: 24 * time.Hour, zero: true,
		get: func(r *serverSettings) json.RawMessage { return r.KeyActivationDelay },
		set: func(s *model.ServerSpec, d time.Duration) { s.KeyActivationDelay = model.Duration(d) }},
}

// defaultServerSpec is a server with every default (and no secret).
func defaultServerSpec() model.ServerSpec {
	spec := model.ServerSpec{KeyType: "rsa", GrantTypes: slices.Clone(defaultGrantTypes), AccessTokenStrategy: model.AccessTokenJWT}
	for _, t := range serverTTLs {
		t.set(&spec, t.def)
	}
	return spec
}

// serverSettings are the settings of a server as a request carries them
// (the create and PUT bodies and configuration documents). Durations stay
// raw so a bad one is a 400 naming its field.
type serverSettings struct {
	KeyType                         string          `json:"key_type"`
	GrantTypes                      []string        `json:"grant_types"`
	AuthorizationCodeTTL            json.RawMessage `json:"authorization_code_ttl"`
	AccessTokenTTL                  json.RawMessage `json:"access_token_ttl"`
	IDTokenTTL                      json.RawMessage `json:"id_token_ttl"`
	RefreshTokenTTL                 json.RawMessage `json:"refresh_token_ttl"`
	CookieMaxAge                    json.RawMessage `json:"cookie_max_age"`
	KeyActivationDelay              json.RawMessage `json:"key_activation_delay"`
	EnforcePKCE                     bool            `json:"enforce_pkce"`
	Profiles                        []string        `json:"profiles"`
	LogoURI                         string          `json:"logo_uri"`
	AccessTokenStrategy             string          `json:"access_token_strategy"`
	SingleSessionPerClient          bool            `json:"single_session_per_client"`
	Audiences                       []string        `json:"audiences"`
	EnableDynamicClientRegistration bool            `json:"enable_dynamic_client_registration"`
	UserPolicyID                    string          `json:"user_policy_id"`
	DeveloperPolicyID               string          `json:"developer_policy_id"`
	AutoProvisionUsers              bool            `json:"auto_provision_users"`
}

// serverRequest is the body of POST /servers and PUT /servers/{aid}.
// system, issuer_url and authentications are read-only (a PUT may send
// them back unchanged); secret is write-only.
type serverRequest struct {
	ID              string            `json:"id"`
	TenantID        string            `json:"tenant_id"`
	Name            string            `json:"name"`
	Description     string            `json:"description"`
	Labels          map[string]string `json:"labels"`
	System          *bool             `json:"system"`
	IssuerURL       string            `json:"issuer_url"`
	Secret          string            `json:"secret"`
	Authentications json.RawMessage   `json:"authentications"`
	// JWKS imports private keys (write-only: sealed, never echoed).
	JWKS     json.RawMessage `json:"jwks"`
	Metadata json.RawMessage `json:"metadata"`
	// The settings (serverSettings' fields; not embedded, so decoding
	// errors name the field as the client wrote it).
	KeyType                         string          `json:"key_type"`
	GrantTypes                      []string        `json:"grant_types"`
	AuthorizationCodeTTL            json.RawMessage `json:"authorization_code_ttl"`
	AccessTokenTTL                  json.RawMessage `json:"access_token_ttl"`
	IDTokenTTL                      json.RawMessage `json:"id_token_ttl"`
	RefreshTokenTTL                 json.RawMessage `json:"refresh_token_ttl"`
	CookieMaxAge                    json.RawMessage `json:"cookie_max_age"`
	KeyActivationDelay              json.RawMessage `json:"key_activation_delay"`
	EnforcePKCE                     bool            `json:"enforce_pkce"`
	Profiles                        []string        `json:"profiles"`
	LogoURI                         string          `json:"logo_uri"`
	AccessTokenStrategy             string          `json:"access_token_strategy"`
	SingleSessionPerClient          bool            `json:"single_session_per_client"`
	Audiences                       []string        `json:"audiences"`
	EnableDynamicClientRegistration bool            `json:"enable_dynamic_client_registration"`
	UserPolicyID                    string          `json:"user_policy_id"`
	DeveloperPolicyID               string          `json:"developer_policy_id"`
	AutoProvisionUsers              bool            `json:"auto_provision_users"`
}

// settings are the request's settings.
func (r *serverRequest) settings() *serverSettings {
	return &serverSettings{KeyType: r.KeyType, GrantTypes: r.GrantTypes, AuthorizationCodeTTL: r.AuthorizationCodeTTL,
		AccessTokenTTL: r.AccessTokenTTL, IDTokenTTL: r.IDTokenTTL, RefreshTokenTTL: r.RefreshTokenTTL, CookieMaxAge: r.CookieMaxAge,
		KeyActivationDelay: r.KeyActivationDelay, EnforcePKCE: r.EnforcePKCE, Profiles: r.Profiles, LogoURI: r.LogoURI,
		AccessTokenStrategy: r.AccessTokenStrategy, SingleSessionPerClient: r.SingleSessionPerClient, Audiences: r.Audiences,
		EnableDynamicClientRegistration: r.EnableDynamicClientRegistration, UserPolicyID: r.UserPolicyID, DeveloperPolicyID: r.DeveloperPolicyID,
		AutoProvisionUsers: r.AutoProvisionUsers}
}

// serverSettingsView are the settings as GET shows them.
type serverSettingsView struct {
	KeyType                         string         `json:"key_type"`
	GrantTypes                      []string       `json:"grant_types"`
	AuthorizationCodeTTL            model.Duration `json:"authorization_code_ttl"`
	AccessTokenTTL                  model.Duration `json:"access_token_ttl"`
	IDTokenTTL                      model.Duration `json:"id_token_ttl"`
	RefreshTokenTTL                 model.Duration `json:"refresh_token_ttl"`
	CookieMaxAge                    model.Duration `json:"cookie_max_age"`
	KeyActivationDelay              model.Duration `json:"key_activation_delay"`
	EnforcePKCE                     bool           `json:"enforce_pkce"`
	Profiles                        []string       `json:"profiles"`
	LogoURI                         string         `json:"logo_uri,omitempty"`
	AccessTokenStrategy             string         `json:"access_token_strategy"`
	SingleSessionPerClient          bool           `json:"single_session_per_client"`
	Audiences                       []string       `json:"audiences"`
	EnableDynamicClientRegistration bool           `json:"enable_dynamic_client_registration"`
	AutoProvisionUsers              bool           `json:"auto_provision_users"`
}

func viewSettings(s *model.ServerSpec) serverSettingsView {
	return serverSettingsView{
		KeyType: s.KeyType, GrantTypes: nonNilStrings(s.GrantTypes),
		AuthorizationCodeTTL: s.AuthorizationCodeTTL, AccessTokenTTL: s.AccessTokenTTL, IDTokenTTL: s.IDTokenTTL,
		RefreshTokenTTL: s.RefreshTokenTTL, CookieMaxAge: s.CookieMaxAge, KeyActivationDelay: s.KeyActivationDelay,
		EnforcePKCE: s.EnforcePKCE, Profiles: nonNilStrings(s.Profiles), LogoURI: s.LogoURI,
		AccessTokenStrategy: s.AccessTokenStrategy, SingleSessionPerClient: s.SingleSessionPerClient,
		Audiences: nonNilStrings(s.Audiences), AutoProvisionUsers: s.AutoProvisionUsers,
	}
}

// serverBody is a server as GET shows it. Secret is only in the answer
// to create (shown once).
type serverBody struct {
	ID          string `json:"id"`
	TenantID    string `json:"tenant_id"`
	Name        string `json:"name"`
	Description string `json:"description"`
	System      bool   `json:"system"`
	IssuerURL   string `json:"issuer_url"`
	Secret      string `json:"secret,omitempty"`
	serverSettingsView
	Authentications authenticationsBody `json:"authentications"`
	Labels          map[string]string   `json:"labels"`
	Metadata        *Metadata           `json:"metadata,omitempty"`
}

func (s *Server) renderServer(t *store.Typed[model.ServerSpec]) serverBody {
	return serverBody{
		ID: t.Meta.ID, TenantID: t.Meta.TenantID, Name: t.Meta.Name, Description: t.Meta.Description, System: t.Spec.System,
		IssuerURL: model.IssuerURL(s.public, t.Meta.TenantID, t.Meta.ID), serverSettingsView: viewSettings(&t.Spec),
		Authentications: viewAuthentications(t.Spec.Authentications), Labels: labelsOrEmpty(t.Meta.Labels), Metadata: metadataOf(&t.Meta),
	}
}

// addServerKinds registers authorization servers. Deleting one is refused
// while it is a system server or clients, gateways, services or scopes
// name it (400 in_use); its claims and signing keys go with it. PUT
// replaces the settings and keeps the login methods (PUT
// …/authentications) and, unless a new one is given, the secret.
func addServerKinds(sch *resource.Scheme) {
	sch.MustRegister(&resource.Kind{
		Name: model.KindServer, Singular: "server", Bundled: true, Exported: true,
		Canonical: resource.SpecCodec[model.ServerSpec],
		// The login methods name identity providers (oidc, azure,
		// cognito): an Unlink reference, so that a document's identity
		// providers come before its servers. Deleting a provider in use
		// is refused by its own idpDeletable, and what a method names
		// resolves also to the system tenant's providers: the identity
		// providers' importResolve checks the document's methods.
		Refs: []resource.Ref{{Field: "authentications", Kind: model.KindIdentityProvider, Many: true, OnDelete: resource.Unlink,
			IDs: specIDs(serverIdPIDs)}},
		API: &kindAPI{
			param: "aid", readOnly: []string{"system", "issuer_url", "authentications"}, nameField: "name",
			current: func(s *Server, c *gin.Context, tid, id string) (any, int64, error) {
				t, err := serverRepo.Get(c.Request.Context(), s.store, tid, id)
				if err != nil {
					return nil, 0, err
				}
				return s.renderServer(t), t.Meta.Revision, nil
			},
			list:   func(s *Server, c *gin.Context) { listKind(s, c, serverRepo, "server", "servers", s.renderServer) },
			get:    func(s *Server, c *gin.Context) { getKind(s, c, serverRepo, "aid", "server", s.renderServer) },
			create: (*Server).createServer, put: (*Server).updateServer,
			deletable: func(ctx context.Context, tx store.Tx, o *store.Object) error {
				return serverDeletable(ctx, tx, sch, o)
			},
			// However it is deleted (a route, an import), its keys go too.
			onRemove: func(_ *Server, ctx context.Context, tx store.Tx, o *store.Object) error {
				return deleteServerKeys(ctx, tx, o.TenantID, o.ID)
			},
			routes:      (*Server).serverRoutes,
			export:      exportServer,
			importItem:  importOfServer(configServerObject),
			importCheck: checkConfigServers,
		},
	})
}

func (s *Server) serverRoutes(_, adm *gin.RouterGroup) {
	adm.GET("/servers/:aid/authentications", s.getAuthentications)
	adm.PUT("/servers/:aid/authentications", s.putAuthentications)
	adm.GET("/servers/:aid/dashboards", s.serverDashboards)
	adm.GET("/servers/:aid/keys", s.serverKeysList)
	adm.POST("/servers/:aid/keys/rotate", s.rotateServerKeys)
	adm.GET("/servers/:aid/apis", s.serverAPIs)
	adm.GET("/servers/:aid/services", func(c *gin.Context) {
		serverListing(s, c, serviceRepo, "services", func(sp *model.ServiceSpec) string { return sp.ServerID }, renderService)
	})
	adm.GET("/servers/:aid/gateways", func(c *gin.Context) {
		serverListing(s, c, gatewayRepo, "gateways", func(sp *model.GatewaySpec) string { return sp.ServerID },
			func(t *store.Typed[model.GatewaySpec]) gatewayBody { return s.renderGateway(c, t, false) })
	})
	adm.GET("/servers/:aid/scopes", s.serverScopes)
	adm.GET("/servers/:aid/clients", func(c *gin.Context) {
		serverListing(s, c, clientRepo, "clients", func(sp *model.ClientSpec) string { return sp.ServerID }, renderServerClient)
	})
	adm.GET("/servers/:aid/claims", func(c *gin.Context) {
		serverListing(s, c, claimRepo, "claims", func(sp *model.ClaimSpec) string { return sp.ServerID }, renderServerClaim)
	})
}

// ---- validation ----

// spec validates the settings into a server spec (with every default for
// what is left out); tid-independent. Every problem is listed.
func (r *serverSettings) spec() (model.ServerSpec, field.ErrorList) {
	var errs field.ErrorList
	spec := defaultServerSpec()
	switch r.KeyType {
	case "":
	case "rsa", "ecdsa":
		spec.KeyType = r.KeyType
	default:
		errs.Add(field.Invalid(field.NewPath("key_type"), "must be rsa (RS256) or ecdsa (ES256), not %q", r.KeyType))
	}
	if r.GrantTypes != nil {
		spec.GrantTypes = r.GrantTypes
		errs.Extend(grantTypeErrors(r.GrantTypes))
	}
	for _, t := range serverTTLs {
		d, ok, err := parseServerDuration(t.get(r))
		switch {
		case err != nil:
			errs.Add(field.Invalid(field.NewPath(t.field), "%s", err.Error()))
		case !ok:
		case d < 0 && t.zero:
			errs.Add(field.Invalid(field.NewPath(t.field), "must not be negative (0 activates a new key at once; default %s)", t.def))
		case d <= 0 && !t.zero:
			errs.Add(field.Invalid(field.NewPath(t.field), "must be more than 0 (default %s)", t.def))
		case d > 0 && d < time.Second:
			errs.Add(field.Invalid(field.NewPath(t.field), "must be at least 1s (tokens count in seconds)"))
		case d > t.max:
			errs.Add(field.Invalid(field.NewPath(t.field), "must be at most %s", t.max))
		default:
			t.set(&spec, d)
		}
	}
	spec.EnforcePKCE = r.EnforcePKCE
	for i, p := range r.Profiles {
		reason := "not supported (no profiles are; send [] or leave it out)"
		if p == "fapi_rw" {
			reason = "not supported: FAPI read-write needs PAR, JARM and mutual TLS, which Gatehouse does not offer"
		}
		errs.Add(field.Invalid(field.NewPath("profiles").Index(i), "%s", reason))
	}
	if r.LogoURI != "" {
		errs.Add(httpsURLError("logo_uri", r.LogoURI, maxLogoURILen))
		spec.LogoURI = r.LogoURI
	}
	switch r.AccessTokenStrategy {
	case "":
	case model.AccessTokenJWT, model.AccessTokenOpaque:
		spec.AccessTokenStrategy = r.AccessTokenStrategy
	default:
		errs.Add(field.Invalid(field.NewPath("access_token_strategy"), "must be jwt or opaque, not %q", r.AccessTokenStrategy))
	}
	spec.SingleSessionPerClient = r.SingleSessionPerClient
	spec.AutoProvisionUsers = r.AutoProvisionUsers
	if len(r.Audiences) > maxAudiences {
		errs.Add(field.Invalid(field.NewPath("audiences"), "at most %d audiences are allowed", maxAudiences))
	}
	for i, a := range r.Audiences {
		p := field.NewPath("audiences").Index(i)
		switch {
		case strings.TrimSpace(a) == "":
			errs.Add(field.Invalid(p, "must not be empty"))
		case utf8.RuneCountInString(a) > maxAudienceLen || !utf8.ValidString(a):
			errs.Add(field.Invalid(p, "must be valid UTF-8 of at most %d characters", maxAudienceLen))
		case slices.Index(r.Audiences, a) < i:
			errs.Add(field.Invalid(p, "%q is listed twice", a))
		}
	}
	if len(r.Audiences) > 0 {
		spec.Audiences = r.Audiences
	}
	if r.EnableDynamicClientRegistration {
		errs.Add(field.Invalid(field.NewPath("enable_dynamic_client_registration"), "not supported yet (dynamic client registration comes with developer self-service, part H); send false"))
	}
	if r.UserPolicyID != "" {
		errs.Add(field.Invalid(field.NewPath("user_policy_id"), "not supported yet (server policies come with part H); leave it empty"))
	}
	if r.DeveloperPolicyID != "" {
		errs.Add(field.Invalid(field.NewPath("developer_policy_id"), "not supported yet (server policies come with part H); leave it empty"))
	}
	return spec, errs
}

// parseServerDuration reads a duration field: ok false when it is absent
// or null.
func parseServerDuration(raw json.RawMessage) (time.Duration, bool, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return 0, false, nil
	}
	var d model.Duration
	if err := d.UnmarshalJSON(raw); err != nil {
		return 0, false, err
	}
	return d.D(), true, nil
}

// unsupportedGrants are grant types a server cannot allow, with why.
var unsupportedGrants = map[string]string{
	"password": "not supported (OAuth 2.0 security BCP)",
	"urn:ietf:params:oauth:grant-type:device_code": "not supported (device authorization grant)",
	"device_code": "not supported (device authorization grant)",
	"urn:ietf:params:oauth:grant-type:token-exchange": "not supported (token exchange)",
	"token_exchange": "not supported (token exchange)",
	"urn:ietf:params:oauth:grant-type:jwt-bearer": "not supported (JWT bearer grant)",
	"jwt_bearer": "not supported (JWT bearer grant)",
}

func grantTypeErrors(grants []string) field.ErrorList {
	var errs field.ErrorList
	if len(grants) == 0 {
		errs.Add(field.Invalid(field.NewPath("grant_types"), "at least one grant type is needed (leave it out for the default %v)", defaultGrantTypes))
	}
	for i, g := range grants {
		p := field.NewPath("grant_types").Index(i)
		switch g {
		case model.GrantAuthorizationCode, model.GrantImplicit, model.GrantClientCredentials, model.GrantRefreshToken:
			if slices.Index(grants, g) < i {
				errs.Add(field.Invalid(p, "%q is listed twice", g))
			}
		default:
			if why, ok := unsupportedGrants[g]; ok {
				errs.Add(field.Invalid(p, "%s", why))
			} else {
				errs.Add(field.Invalid(p, "unknown grant type %q (one of authorization_code, implicit, client_credentials, refresh_token)", g))
			}
		}
	}
	return errs
}

// httpsURLError checks an absolute https URL with a host, without
// credentials or fragment.
func httpsURLError(name, raw string, max int) *field.Error {
	if len(raw) > max {
		return field.Invalid(field.NewPath(name), "must be at most %d characters", max)
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "https" || u.Hostname() == "" || u.User != nil || u.Fragment != "" || strings.ContainsAny(raw, " \t\r\n") {
		return field.Invalid(field.NewPath(name), "must be an absolute https URL without credentials or fragment")
	}
	return nil
}

// envelopeErrors checks a server's name, description and labels.
func envelopeErrors(name, description string, labels map[string]string) field.ErrorList {
	var errs field.ErrorList
	errs.Extend(textErrors("name", name, true, 256))
	errs.Extend(textErrors("description", description, false, 4096))
	errs.Extend(labelErrors(labels))
	return errs
}

// secretErrors checks a given server secret.
func secretErrors(secret string) field.ErrorList {
	if secret == "" {
		return nil
	}
	p := field.NewPath("secret")
	switch {
	case len(secret) < minServerSecret:
		return field.ErrorList{field.Invalid(p, "must be at least %d characters (or leave it out to have a 256-bit one generated)", minServerSecret)}
	case len(secret) > maxServerSecret:
		return field.ErrorList{field.Invalid(p, "must be at most %d characters", maxServerSecret)}
	}
	for _, r := range secret {
		if r < 0x21 || r > 0x7e {
			return field.ErrorList{field.Invalid(p, "must be printable ASCII without spaces")}
		}
	}
	return nil
}

// newServerSecret is a 256-bit random secret and its SHA-256 (hex).
func newServerSecret() (secret, hash string, err error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", "", fmt.Errorf("generate a server secret: %w", err)
	}
	secret = base64.RawURLEncoding.EncodeToString(b)
	return secret, secretHash(secret), nil
}

func secretHash(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// validate checks a create or PUT body (create: a new server, which
// cannot be a system one) and returns the spec without secret, system or
// login methods.
func (r *serverRequest) validate(s *Server, tid, id string, create bool) (model.ServerSpec, *Error) {
	if r.Name == "" {
		r.Name = id
	}
	spec, errs := r.settings().spec()
	errs = append(envelopeErrors(r.Name, r.Description, r.Labels), errs...)
	errs.Extend(secretErrors(r.Secret))
	if tid != "" && r.TenantID != "" && r.TenantID != tid {
		errs.Add(field.Invalid(field.NewPath("tenant_id"), "does not match the tenant in the path"))
	}
	if create {
		if r.System != nil && *r.System {
			errs.Add(field.ReadOnly(field.NewPath("system"), "is read-only: system servers (admin, developer, default) are made by Gatehouse with their tenant"))
		}
		if r.IssuerURL != "" && r.IssuerURL != model.IssuerURL(s.public, tid, id) {
			errs.Add(field.ReadOnly(field.NewPath("issuer_url"), "is read-only: it is %s", model.IssuerURL(s.public, tid, id)))
		}
		if a := strings.TrimSpace(string(r.Authentications)); a != "" && a != "null" && a != `{"methods":[]}` && a != "{}" {
			errs.Add(field.ReadOnly(field.NewPath("authentications"), "is set with PUT /api/admin/{tid}/servers/{aid}/authentications"))
		}
	}
	return spec, fieldErrors(errs)
}

// ---- handlers ----

func (s *Server) createServer(c *gin.Context) {
	var secret string
	createKind(s, c, s.scheme.MustKind(model.KindServer), func(t *store.Typed[model.ServerSpec]) serverBody {
		out := s.renderServer(t)
		out.Secret = secret
		return out
	}, nil, func(c *gin.Context, tid string) (*store.Typed[model.ServerSpec], func(context.Context, store.Tx, *store.Typed[model.ServerSpec]) error, *Error) {
		var req serverRequest
		if apiErr := decodeJSON(c, &req); apiErr != nil {
			return nil, nil, apiErr
		}
		id, apiErr := newObjectID("id", req.ID)
		if apiErr != nil {
			return nil, nil, apiErr
		}
		spec, apiErr := req.validate(s, tid, id, true)
		if apiErr != nil {
			return nil, nil, apiErr
		}
		imported, apiErr := s.parseKeyImport(req.JWKS, &spec)
		if apiErr != nil {
			return nil, nil, apiErr
		}
		secret = req.Secret
		spec.SecretHash = secretHash(secret)
		if secret == "" {
			var err error
			if secret, spec.SecretHash, err = newServerSecret(); err != nil {
				return nil, nil, internalError(err)
			}
		}
		// The secret is in the answer once: never cached.
		c.Header("Cache-Control", "no-store")
		return &store.Typed[model.ServerSpec]{
			Meta: store.Object{ID: id, Name: req.Name, Description: req.Description, Labels: req.Labels},
			Spec: spec,
		}, s.importKeys(c, tid, id, imported), nil
	})
}

// parseKeyImport reads a request's jwks: private keys to import, of the
// server's key type (none when absent).
func (s *Server) parseKeyImport(raw json.RawMessage, spec *model.ServerSpec) ([]crypto.Signer, *Error) {
	if len(bytes.TrimSpace(raw)) == 0 || string(bytes.TrimSpace(raw)) == "null" {
		return nil, nil
	}
	if s.serverKeys == nil {
		return nil, fieldError("jwks", "key import is not available on this control plane")
	}
	signers, err := keys.ParseImport(raw, keys.KeyType(spec.KeyType))
	if err != nil {
		return nil, fieldError("jwks", "%s", strings.TrimPrefix(err.Error(), keys.ErrInvalidImport.Error()+": "))
	}
	return signers, nil
}

// importKeys is the in-transaction step that seals and adds imported keys
// to the server's key set (nil when there are none).
func (s *Server) importKeys(c *gin.Context, tid, aid string, signers []crypto.Signer) func(context.Context, store.Tx, *store.Typed[model.ServerSpec]) error {
	if len(signers) == 0 {
		return nil
	}
	return func(ctx context.Context, tx store.Tx, t *store.Typed[model.ServerSpec]) error {
		_, err := s.serverKeys.ImportInTx(ctx, tx, tid, aid, signers, keys.PolicyOf(&t.Spec), time.Now(), actor(c))
		if errors.Is(err, keys.ErrInvalidImport) {
			return fieldError("jwks", "%s", strings.TrimPrefix(err.Error(), keys.ErrInvalidImport.Error()+": "))
		}
		return err
	}
}

func (s *Server) updateServer(c *gin.Context) {
	tid := tenantID(c)
	updateKind(s, c, serverRepo, "aid", "server", s.renderServer, func(c *gin.Context, id string) (func(context.Context, store.Tx, *store.Typed[model.ServerSpec]) error, *Error) {
		var req serverRequest
		if apiErr := decodeUpdate(c, &req, func() string { return req.ID }, id); apiErr != nil {
			return nil, apiErr
		}
		spec, apiErr := req.validate(s, tid, id, false)
		if apiErr != nil {
			return nil, apiErr
		}
		imported, apiErr := s.parseKeyImport(req.JWKS, &spec)
		if apiErr != nil {
			return nil, apiErr
		}
		importKeys := s.importKeys(c, tid, id, imported)
		return func(ctx context.Context, tx store.Tx, t *store.Typed[model.ServerSpec]) error {
			// What the settings do not carry stays: system-ness, the login
			// methods and (unless a new one is given) the secret.
			spec.System, spec.Authentications, spec.SecretHash = t.Spec.System, t.Spec.Authentications, t.Spec.SecretHash
			if req.Secret != "" {
				spec.SecretHash = secretHash(req.Secret)
			}
			t.Meta.Name, t.Meta.Description, t.Meta.Labels = req.Name, req.Description, req.Labels
			t.Spec = spec
			if importKeys != nil {
				return importKeys(ctx, tx, t)
			}
			return nil
		}, nil
	})
}

// loadServer reads the server of the path (404 when the tenant has none
// of that id); the answer is written when it fails.
func (s *Server) loadServer(ctx context.Context, c *gin.Context, rd store.Reader) (*store.Typed[model.ServerSpec], bool) {
	aid, apiErr := objectIDParam(c, "aid")
	if apiErr != nil {
		abort(c, apiErr)
		return nil, false
	}
	t, err := serverRepo.Get(ctx, rd, tenantID(c), aid)
	if err != nil {
		fail(c, err, "server", aid)
		return nil, false
	}
	return t, true
}

// serverInUse is the 400 in_use of a server delete that is refused.
func serverInUse(id, reason string, users map[string][]string) *Error {
	details := map[string]any{"kind": "server", "id": id, "reason": reason}
	if users != nil {
		details["used_by"] = users
	}
	return newError(http.StatusBadRequest, httpapi.CodeInUse, fmt.Sprintf("server %q is in use: %s", id, reason), details)
}

// serverDeletable runs in the delete's transaction: a system server, or
// one that clients, gateways, services or scopes name, is refused (400
// in_use, listing them); otherwise its key set goes, and its claims
// (unless the claims kind cascades them itself: then the scheme deletes
// and audits them).
func serverDeletable(ctx context.Context, tx store.Tx, sch *resource.Scheme, o *store.Object) error {
	var spec model.ServerSpec
	if err := json.Unmarshal(o.Spec, &spec); err != nil {
		return fmt.Errorf("decode server %q: %w", o.ID, err)
	}
	if spec.System {
		return serverInUse(o.ID, "it is a system server, made by Gatehouse with its tenant; system servers cannot be deleted", nil)
	}
	users := map[string][]string{}
	for _, ref := range []struct {
		kind     string
		serverOf func(raw json.RawMessage) (string, error)
	}{
		{model.KindClient, specField(func(s *model.ClientSpec) string { return s.ServerID })},
		{model.KindGateway, specField(func(s *model.GatewaySpec) string { return s.ServerID })},
		{model.KindService, specField(func(s *model.ServiceSpec) string { return s.ServerID })},
		{model.KindScope, specField(func(s *model.ScopeSpec) string { return s.ServerID })},
	} {
		ids, err := referrerIDs(ctx, tx, ref.kind, o.TenantID, o.ID, ref.serverOf)
		if err != nil {
			return err
		}
		if len(ids) > 0 {
			users[ref.kind] = ids
		}
	}
	if len(users) > 0 {
		kinds := make([]string, 0, len(users))
		for _, k := range []string{model.KindClient, model.KindGateway, model.KindService, model.KindScope} {
			if len(users[k]) > 0 {
				kinds = append(kinds, fmt.Sprintf("%s %s", k, strings.Join(users[k], ", ")))
			}
		}
		return serverInUse(o.ID, "named by "+strings.Join(kinds, "; ")+"; unbind or delete them first", users)
	}
	if !claimsCascade(sch) {
		claims, err := referrerIDs(ctx, tx, model.KindClaim, o.TenantID, o.ID, specField(func(s *model.ClaimSpec) string { return s.ServerID }))
		if err != nil {
			return err
		}
		for _, id := range claims {
			if _, err := tx.Delete(ctx, model.KindClaim, o.TenantID, id, 0, false); err != nil {
				return err
			}
			// The deleting request's actor is not known here (the scheme
			// records it for cascades it runs itself).
			if err := tx.AppendEvent(ctx, &store.Event{TenantID: o.TenantID, Actor: "system", Action: "delete", Kind: model.KindClaim, ObjectID: id}); err != nil {
				return err
			}
		}
	}
	return deleteServerKeys(ctx, tx, o.TenantID, o.ID)
}

// claimsCascade reports whether the claims kind declares that its claims
// are deleted with their server.
func claimsCascade(sch *resource.Scheme) bool {
	for _, r := range sch.Referrers(model.KindServer) {
		if r.Kind.Name == model.KindClaim && r.Ref.OnDelete == resource.Cascade {
			return true
		}
	}
	return false
}

// specField decodes a spec S and returns one of its fields.
func specField[S any](get func(*S) string) func(json.RawMessage) (string, error) {
	return func(raw json.RawMessage) (string, error) {
		var spec S
		if len(raw) > 0 {
			if err := json.Unmarshal(raw, &spec); err != nil {
				return "", err
			}
		}
		return get(&spec), nil
	}
}

// referrerIDs lists the ids of the tenant's objects of kind whose server
// (serverOf) is aid.
func referrerIDs(ctx context.Context, rd store.Reader, kind, tid, aid string, serverOf func(json.RawMessage) (string, error)) ([]string, error) {
	pg, err := rd.List(ctx, store.Query{Kind: kind, TenantID: tid})
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", kind, err)
	}
	var ids []string
	for _, o := range pg.Items {
		sid, err := serverOf(o.Spec)
		if err != nil {
			return nil, fmt.Errorf("decode %s %q: %w", kind, o.ID, err)
		}
		if sid == aid {
			ids = append(ids, o.ID)
		}
	}
	slices.Sort(ids)
	return ids, nil
}

// ---- system servers ----

// systemServerNames are the names of the servers Gatehouse makes.
var systemServerNames = map[string]string{
	model.AdminServerID:     "Admin",
	model.DeveloperServerID: "Developer",
	model.DefaultServerID:   "Default",
	model.SystemServerID:    "System",
}

// systemServerDescriptions say what each is for.
var systemServerDescriptions = map[string]string{
	model.AdminServerID:     "Made by Gatehouse: its tokens act on the tenant's admin API.",
	model.DeveloperServerID: "Made by Gatehouse: developer self-service.",
	model.DefaultServerID:   "Made by Gatehouse: the tenant's default authorization server.",
	model.SystemServerID:    "Made by Gatehouse: its tokens act system-wide on the admin API.",
}

// createSystemServers creates system servers ids of tenant tid in tx
// (with defaults and a generated secret nobody is shown). No signing key
// is made: a server's first key is made when it is first needed.
func createSystemServers(ctx context.Context, tx store.Tx, tid, createdBy string, ids ...string) error {
	for _, id := range ids {
		spec := defaultServerSpec()
		spec.System = true
		var err error
		if _, spec.SecretHash, err = newServerSecret(); err != nil {
			return err
		}
		t := &store.Typed[model.ServerSpec]{
			Meta: store.Object{TenantID: tid, ID: id, Name: systemServerNames[id], Description: systemServerDescriptions[id], CreatedBy: createdBy},
			Spec: spec,
		}
		if err := serverRepo.Create(ctx, tx, t); err != nil {
			return fmt.Errorf("create system server %s/%s: %w", tid, id, err)
		}
	}
	return nil
}

// tenantSystemServers are the servers every tenant gets at creation.
var tenantSystemServers = []string{model.AdminServerID, model.DeveloperServerID, model.DefaultServerID}

// ---- dashboards ----

// serverDashboards answers GET /servers/{aid}/dashboards: Gatehouse has no
// dashboards, only its metrics and each gateway's decision log.
func (s *Server) serverDashboards(c *gin.Context) {
	if _, ok := s.loadServer(c.Request.Context(), c, s.store); !ok {
		return
	}
	c.JSON(http.StatusOK, gin.H{"enabled": false, "links": gin.H{
		"metrics":       "/metrics",
		"decision_logs": "/api/admin/" + tenantID(c) + "/gateways/{gw}/decisions",
	}})
}

// ---- per-server listings ----

// serverListing answers GET /servers/{aid}/{plural}: one page (by id) of
// the tenant's objects of repo's kind bound to the server.
func serverListing[S, R any](s *Server, c *gin.Context, repo store.Repo[S], plural string, serverOf func(*S) string, render func(*store.Typed[S]) R) {
	limit, after, apiErr := page(c)
	if apiErr != nil {
		abort(c, apiErr)
		return
	}
	var items []*store.Typed[S]
	var srv *store.Typed[model.ServerSpec]
	err := s.store.View(c.Request.Context(), func(ctx context.Context, rd store.Reader) error {
		var ok bool
		if srv, ok = s.loadServer(ctx, c, rd); !ok {
			return errAnswered
		}
		all, err := repo.ListAll(ctx, rd, store.Query{TenantID: tenantID(c)})
		items = slices.DeleteFunc(all, func(t *store.Typed[S]) bool { return serverOf(&t.Spec) != srv.Meta.ID })
		return err
	})
	if errors.Is(err, errAnswered) {
		return
	}
	if err != nil {
		fail(c, err, "server", c.Param("aid"))
		return
	}
	slices.SortFunc(items, func(a, b *store.Typed[S]) int { return strings.Compare(a.Meta.ID, b.Meta.ID) })
	total := len(items)
	if after != "" {
		i, _ := slices.BinarySearchFunc(items, after, func(t *store.Typed[S], id string) int { return strings.Compare(t.Meta.ID, id) })
		for i < len(items) && items[i].Meta.ID <= after {
			i++
		}
		items = items[i:]
	}
	next := ""
	if len(items) > limit {
		items = items[:limit]
		next = items[limit-1].Meta.ID
	}
	out := make([]R, 0, len(items))
	for _, t := range items {
		out = append(out, render(t))
	}
	c.JSON(http.StatusOK, gin.H{plural: out, "total": total, "next": next})
}

// errAnswered ends a read whose answer was already written.
var errAnswered = errors.New("answered")

var (
	clientRepo = store.Repo[model.ClientSpec]{Kind: model.KindClient}
	claimRepo  = store.Repo[model.ClaimSpec]{Kind: model.KindClaim}
)

// serverClientItem is a client in GET /servers/{aid}/clients (no secret).
type serverClientItem struct {
	ClientID   string `json:"client_id"`
	ClientName string `json:"client_name"`
	ServerID   string `json:"authorization_server_id"`
}

func renderServerClient(t *store.Typed[model.ClientSpec]) serverClientItem {
	return serverClientItem{ClientID: t.Meta.ID, ClientName: t.Spec.Name, ServerID: t.Spec.ServerID}
}

// serverClaimItem is a claim in GET /servers/{aid}/claims.
type serverClaimItem struct {
	ID       string   `json:"id"`
	ServerID string   `json:"authorization_server_id"`
	Name     string   `json:"name"`
	Mapping  string   `json:"mapping"`
	Type     string   `json:"type"`
	Scopes   []string `json:"scopes"`
}

func renderServerClaim(t *store.Typed[model.ClaimSpec]) serverClaimItem {
	return serverClaimItem{ID: t.Meta.ID, ServerID: t.Spec.ServerID, Name: t.Spec.Name, Mapping: t.Spec.Mapping, Type: t.Spec.Type,
		Scopes: nonNilStrings(t.Spec.Scopes)}
}

// scopeWithService is a scope of GET /servers/{aid}/scopes (seed
// ScopeWithService): the scope and the service it is bound to.
type scopeWithService struct {
	scopeBody
	Service *serviceBody `json:"service,omitempty"`
}

// serverScopes answers GET /servers/{aid}/scopes (seed ScopesWithServices).
func (s *Server) serverScopes(c *gin.Context) {
	services := map[string]*serviceBody{}
	if err := s.store.View(c.Request.Context(), func(ctx context.Context, rd store.Reader) error {
		all, err := serviceRepo.ListAll(ctx, rd, store.Query{TenantID: tenantID(c)})
		for _, t := range all {
			b := renderService(t)
			services[t.Meta.ID] = &b
		}
		return err
	}); err != nil {
		fail(c, err, "server", c.Param("aid"))
		return
	}
	serverListing(s, c, scopeRepo, "scopes", func(sp *model.ScopeSpec) string { return sp.ServerID },
		func(t *store.Typed[model.ScopeSpec]) scopeWithService {
			return scopeWithService{scopeBody: renderScope(t), Service: services[t.Spec.ServiceID]}
		})
}

// serverAPIs answers GET /servers/{aid}/apis: the APIs of the services
// bound to the server, by service ({"apis_by_services": {sid: [API]}},
// every bound service listed), filtered by data_classification or
// without_data_classifications, each list in the order of apiListKey.
func (s *Server) serverAPIs(c *gin.Context) {
	f, apiErr := parseAPIFilter(c, false)
	if apiErr != nil {
		abort(c, apiErr)
		return
	}
	out := map[string][]apiBody{}
	err := s.store.View(c.Request.Context(), func(ctx context.Context, rd store.Reader) error {
		srv, ok := s.loadServer(ctx, c, rd)
		if !ok {
			return errAnswered
		}
		services, err := serviceRepo.ListAll(ctx, rd, store.Query{TenantID: srv.Meta.TenantID})
		if err != nil {
			return err
		}
		for _, svc := range services {
			if svc.Spec.ServerID != srv.Meta.ID {
				continue
			}
			apis, err := serviceAPIs(ctx, rd, srv.Meta.TenantID, svc.Meta.ID)
			if err != nil {
				return err
			}
			apis = slices.DeleteFunc(apis, func(t *store.Typed[model.APISpec]) bool { return !f.match(t) })
			slices.SortFunc(apis, func(a, b *store.Typed[model.APISpec]) int { return listKeyOf(a).compare(listKeyOf(b)) })
			out[svc.Meta.ID] = renderAPIs(apis)
		}
		return nil
	})
	if errors.Is(err, errAnswered) {
		return
	}
	if err != nil {
		fail(c, err, "server", c.Param("aid"))
		return
	}
	c.JSON(http.StatusOK, gin.H{"apis_by_services": out})
}

// ---- login methods (PUT/GET /servers/{aid}/authentications) ----

// authenticationsBody is the server's login methods (seed Authentications):
// the body of PUT …/authentications and what GET shows (users without
// passwords).
type authenticationsBody struct {
	Methods []authMethodBody `json:"methods"`
}

// authMethodBody is one login method on the wire: the sub-object of its
// method and no other. The sub-objects other than static stay raw here
// and are read by methodSettings, so that a setting Gatehouse does not
// take (an upstream client given inline, azure's fetch_groups) is a 400
// naming it and saying what to do instead.
type authMethodBody struct {
	ID         string                `json:"id"`
	Name       string                `json:"name,omitempty"`
	Method     string                `json:"method"`
	Disabled   bool                  `json:"disabled"`
	Attributes []model.AuthAttribute `json:"attributes"`
	Mappings   []model.AuthMapping   `json:"mappings"`
	Static     *staticLoginBody      `json:"static,omitempty"`
	Password   json.RawMessage       `json:"password,omitempty"`
	OIDC       json.RawMessage       `json:"oidc,omitempty"`
	Custom     json.RawMessage       `json:"custom,omitempty"`
	Azure      json.RawMessage       `json:"azure,omitempty"`
	Cognito    json.RawMessage       `json:"cognito,omitempty"`
	// IdentityProviderID is accepted beside oidc, azure and cognito as
	// their identity_provider_id (the seed's reference form).
	IdentityProviderID string `json:"identity_provider_id,omitempty"`
}

// staticLoginBody is a static login: users in the configuration.
type staticLoginBody struct {
	Hint  string           `json:"hint,omitempty"`
	Users []staticUserBody `json:"users"`
}

// staticUserBody is one user of a static login. Password is write-only:
// hashed (argon2id) at write, never shown; left out, the user keeps the
// password it has.
type staticUserBody struct {
	Username              string         `json:"username"`
	Password              string         `json:"password,omitempty"`
	AuthenticationContext map[string]any `json:"authentication_context,omitempty"`
}

// The sub-objects of the methods of part F, as PUT takes and GET shows
// them: password{hint} (the tenant's users, by email), oidc, azure and
// cognito {identity_provider_id} (an identity provider of the tenant or
// of the system tenant; azure's must be a Microsoft Entra ID issuer,
// cognito's an Amazon Cognito user pool's), custom{login_url}.
type (
	passwordLoginBody struct {
		Hint string `json:"hint,omitempty"`
	}
	idpLoginBody struct {
		IdentityProviderID string `json:"identity_provider_id"`
	}
	customLoginBody struct {
		LoginURL string `json:"login_url"`
	}
)

// maxLoginURLLen bounds a custom method's login_url.
const maxLoginURLLen = 2048

// federatedMethods are the methods that log in at an identity provider.
var federatedMethods = []string{model.LoginOIDC, model.LoginAzure, model.LoginCognito}

// inlineProviderSettings are the seed's inline upstream settings of the
// federated methods, refused with what to do instead: Gatehouse keeps
// upstream clients (and their sealed secrets) as identity providers, one
// place for their rules, shared by every method and server naming them.
var inlineProviderSettings = map[string]struct {
	keys []string
	how  string
}{
	model.LoginOIDC: {[]string{"client_id", "client_secret", "issuer_url", "redirect_url", "scopes", "get_user_info"},
		"create an identity provider (POST /api/admin/{tid}/identity-providers with issuer, client_id and client_secret) and name it in oidc.identity_provider_id"},
	model.LoginAzure: {[]string{"tenant", "tenant_id", "client_id", "client_secret", "redirect_url", "scopes", "get_user_info"},
		"create an identity provider of type microsoft whose issuer is https://login.microsoftonline.com/{tenant}/v2.0 and name it in azure.identity_provider_id"},
	model.LoginCognito: {[]string{"client_id", "client_secret", "region", "user_pool_id", "pool_id", "domain", "redirect_url", "scopes", "get_user_info"},
		"create an identity provider whose issuer is https://cognito-idp.{region}.amazonaws.com/{user_pool_id} and name it in cognito.identity_provider_id"},
}

// unsupportedProviderSettings are seed settings Gatehouse does not offer.
var unsupportedProviderSettings = map[string]string{
	"fetch_groups":         "not supported: groups come from the upstream ID token's claims (the identity provider's mappings), not from a directory API",
	"only_security_groups": "not supported: groups come from the upstream ID token's claims (the identity provider's mappings), not from a directory API",
}

// rawObject renders v as a method's sub-object.
func rawObject(v any) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}

// methodBody is a stored method on the wire (static users without their
// password hashes).
func methodBody(m model.AuthenticationMethod) authMethodBody {
	b := authMethodBody{ID: m.ID, Name: m.Name, Method: m.Method, Disabled: m.Disabled, Attributes: m.Attributes, Mappings: m.Mappings}
	if m.Static != nil {
		st := &staticLoginBody{Hint: m.Static.Hint, Users: make([]staticUserBody, 0, len(m.Static.Users))}
		for _, u := range m.Static.Users {
			st.Users = append(st.Users, staticUserBody{Username: u.Username, AuthenticationContext: u.AuthenticationContext})
		}
		b.Static = st
	}
	if m.Password != nil {
		b.Password = rawObject(passwordLoginBody{Hint: m.Password.Hint})
	}
	if m.OIDC != nil {
		raw := rawObject(idpLoginBody{IdentityProviderID: m.OIDC.IdentityProviderID})
		switch m.Method {
		case model.LoginAzure:
			b.Azure = raw
		case model.LoginCognito:
			b.Cognito = raw
		default:
			b.OIDC = raw
		}
	}
	if m.Custom != nil {
		b.Custom = rawObject(customLoginBody{LoginURL: m.Custom.LoginURL})
	}
	return b
}

// viewAuthentications renders stored login methods (no password hashes).
func viewAuthentications(methods []model.AuthenticationMethod) authenticationsBody {
	out := authenticationsBody{Methods: make([]authMethodBody, 0, len(methods))}
	for _, m := range methods {
		b := methodBody(m)
		if b.Attributes == nil {
			b.Attributes = []model.AuthAttribute{}
		}
		if b.Mappings == nil {
			b.Mappings = []model.AuthMapping{}
		}
		out.Methods = append(out.Methods, b)
	}
	return out
}

// subObjects are the method sub-objects a body sets.
func (m *authMethodBody) subObjects() []struct {
	name string
	set  bool
} {
	return []struct {
		name string
		set  bool
	}{{model.LoginStatic, m.Static != nil}, {model.LoginPassword, len(m.Password) > 0}, {model.LoginOIDC, len(m.OIDC) > 0},
		{model.LoginCustom, len(m.Custom) > 0}, {model.LoginAzure, len(m.Azure) > 0}, {model.LoginCognito, len(m.Cognito) > 0}}
}

// decodeSettings reads a method's sub-object raw into v, whose fields
// are known; refused maps settings Gatehouse does not take to why. Every
// problem names its field.
func decodeSettings(p *field.Path, raw json.RawMessage, v any, known []string, refused map[string]string) field.ErrorList {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return field.ErrorList{field.Invalid(p, "must be an object")}
	}
	var errs field.ErrorList
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		switch {
		case refused[k] != "":
			errs.Add(field.Invalid(p.Child(k), "%s", refused[k]))
		case !slices.Contains(known, k):
			errs.Add(field.Invalid(p.Child(k), "unknown field (the settings are %s)", strings.Join(known, ", ")))
		}
	}
	if len(errs) > 0 {
		return errs
	}
	if err := json.Unmarshal(raw, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return field.ErrorList{field.Invalid(p.Child(te.Field), "must be a %s", te.Type.String())}
		}
		return field.ErrorList{field.Invalid(p, "%s", err.Error())}
	}
	return nil
}

// methodSettings checks the sub-object of a method of part F (password,
// oidc, azure, cognito, custom) and returns it in its stored form (the
// method's Password, OIDC or Custom).
func methodSettings(p *field.Path, m *authMethodBody) (model.AuthenticationMethod, field.ErrorList) {
	var (
		out  model.AuthenticationMethod
		errs field.ErrorList
	)
	switch m.Method {
	case model.LoginPassword:
		var b passwordLoginBody
		errs.Extend(decodeSettings(p.Child("password"), m.Password, &b, []string{"hint"}, nil))
		errs.Extend(textErrors(p.Child("password", "hint").String(), b.Hint, false, 1024))
		out.Password = &model.PasswordLogin{Hint: b.Hint}
	case model.LoginOIDC, model.LoginAzure, model.LoginCognito:
		raw := map[string]json.RawMessage{model.LoginOIDC: m.OIDC, model.LoginAzure: m.Azure, model.LoginCognito: m.Cognito}[m.Method]
		refused := maps.Clone(unsupportedProviderSettings)
		inline := inlineProviderSettings[m.Method]
		for _, k := range inline.keys {
			refused[k] = "upstream settings are not given inline: " + inline.how
		}
		var b idpLoginBody
		sub := p.Child(m.Method)
		errs.Extend(decodeSettings(sub, raw, &b, []string{"identity_provider_id"}, refused))
		id := b.IdentityProviderID
		switch {
		case id == "":
			id = m.IdentityProviderID
		case m.IdentityProviderID != "" && m.IdentityProviderID != id:
			errs.Add(field.Invalid(p.Child("identity_provider_id"), "differs from %s.identity_provider_id; give one of them", m.Method))
		}
		switch {
		case len(errs) > 0:
		case id == "":
			errs.Add(field.Required(sub.Child("identity_provider_id")))
		case !model.ValidObjectID(id):
			errs.Add(field.Invalid(sub.Child("identity_provider_id"), "invalid id %q (%s)", id, model.ObjectIDRule))
		}
		out.OIDC = &model.OIDCLogin{IdentityProviderID: id}
	case model.LoginCustom:
		var b customLoginBody
		sub := p.Child("custom")
		if len(m.Custom) == 0 || string(m.Custom) == "null" {
			errs.Add(field.Required(sub))
			break
		}
		errs.Extend(decodeSettings(sub, m.Custom, &b, []string{"login_url"}, nil))
		switch {
		case len(errs) > 0:
		case b.LoginURL == "":
			errs.Add(field.Required(sub.Child("login_url")))
		case len(b.LoginURL) > maxLoginURLLen:
			errs.Add(field.Invalid(sub.Child("login_url"), "must be at most %d characters", maxLoginURLLen))
		default:
			if msg := clientRedirectProblem(b.LoginURL); msg != "" {
				errs.Add(field.Invalid(sub.Child("login_url"), "%s", msg))
			}
		}
		out.Custom = &model.CustomLogin{LoginURL: b.LoginURL}
	}
	return out, errs
}

// authMethodErrors checks the login methods, field by field, without
// the stored state (passwords left out are checked against it later, the
// identity providers named by methodReferenceError).
func authMethodErrors(root *field.Path, methods []authMethodBody) field.ErrorList {
	var errs field.ErrorList
	if len(methods) > maxAuthMethods {
		errs.Add(field.Invalid(root, "at most %d login methods are allowed", maxAuthMethods))
		return errs
	}
	ids := map[string]bool{}
	for i := range methods {
		m := &methods[i]
		p := root.Index(i)
		switch {
		case m.ID == "":
			errs.Add(field.Required(p.Child("id")))
		case !model.ValidObjectID(m.ID):
			errs.Add(field.Invalid(p.Child("id"), "invalid id %q (%s)", m.ID, model.ObjectIDRule))
		case ids[m.ID]:
			errs.Add(field.Invalid(p.Child("id"), "%q is the id of another method; ids are unique", m.ID))
		}
		ids[m.ID] = true
		errs.Extend(textErrors(p.Child("name").String(), m.Name, false, 256))
		switch m.Method {
		case "":
			errs.Add(field.Required(p.Child("method")))
			continue
		case model.LoginStatic, model.LoginPassword, model.LoginOIDC, model.LoginCustom, model.LoginAzure, model.LoginCognito:
		default:
			errs.Add(field.Invalid(p.Child("method"), "unknown method %q (static, password, oidc, custom, azure or cognito)", m.Method))
			continue
		}
		for _, other := range m.subObjects() {
			if other.set && other.name != m.Method {
				errs.Add(field.Invalid(p.Child(other.name), "is not a setting of method %s", m.Method))
			}
		}
		if m.IdentityProviderID != "" && !slices.Contains(federatedMethods, m.Method) {
			errs.Add(field.Invalid(p.Child("identity_provider_id"), "is not a setting of method %s", m.Method))
		}
		errs.Extend(attributeErrors(p, m.Attributes))
		errs.Extend(mappingErrors(p, m.Mappings))
		if m.Method != model.LoginStatic {
			_, serrs := methodSettings(p, m)
			errs.Extend(serrs)
			continue
		}
		if m.Static == nil {
			errs.Add(field.Required(p.Child("static")))
			continue
		}
		errs.Extend(textErrors(p.Child("static", "hint").String(), m.Static.Hint, false, 1024))
		users := p.Child("static", "users")
		if len(m.Static.Users) > maxStaticUsers {
			errs.Add(field.Invalid(users, "at most %d users are allowed per method", maxStaticUsers))
			continue
		}
		names := map[string]bool{}
		for j, u := range m.Static.Users {
			up := users.Index(j)
			switch {
			case strings.TrimSpace(u.Username) == "":
				errs.Add(field.Required(up.Child("username")))
			case utf8.RuneCountInString(u.Username) > 256 || !utf8.ValidString(u.Username):
				errs.Add(field.Invalid(up.Child("username"), "must be valid UTF-8 of at most 256 characters"))
			case names[u.Username]:
				errs.Add(field.Invalid(up.Child("username"), "%q is listed twice in this method", u.Username))
			}
			names[u.Username] = true
			if u.Password != "" {
				if n := utf8.RuneCountInString(u.Password); n < minPasswordLen || n > maxPasswordLen || !utf8.ValidString(u.Password) {
					errs.Add(field.Invalid(up.Child("password"), "must be %d to %d characters", minPasswordLen, maxPasswordLen))
				}
			}
			if u.AuthenticationContext != nil {
				if raw, err := json.Marshal(u.AuthenticationContext); err != nil || len(raw) > maxAuthContextBytes {
					errs.Add(field.Invalid(up.Child("authentication_context"), "must be a JSON object of at most %d bytes", maxAuthContextBytes))
				}
			}
		}
	}
	return errs
}

// methodReferenceError checks the identity providers stored methods
// name: each must be a live identity provider of tenant tid or of the
// system tenant (404 naming the field otherwise); azure's must have a
// Microsoft Entra ID issuer (or be of type microsoft), cognito's an
// Amazon Cognito user pool's issuer (400 otherwise). root names the list.
func methodReferenceError(ctx context.Context, rd store.Reader, tid string, root *field.Path, methods []model.AuthenticationMethod) error {
	for i, m := range methods {
		if m.OIDC == nil {
			continue
		}
		f := root.Index(i).Child(m.Method, "identity_provider_id").String()
		idp, err := findIdentityProvider(ctx, rd, tid, m.OIDC.IdentityProviderID)
		switch {
		case errors.Is(err, store.ErrNotFound):
			return newError(http.StatusNotFound, httpapi.CodeNotFound,
				fmt.Sprintf("%s: identity provider %q does not exist in tenant %q or the system tenant", f, m.OIDC.IdentityProviderID, tid),
				map[string]any{"field": f, "kind": "identity provider", "id": m.OIDC.IdentityProviderID})
		case err != nil:
			return err
		}
		switch m.Method {
		case model.LoginAzure:
			if idp.Spec.Type != model.IdPMicrosoft && !azureIssuer(idp.Spec.Issuer) {
				return fieldError(f, "identity provider %q (issuer %q) is not Microsoft Entra ID: its type must be microsoft or its issuer https://login.microsoftonline.com/{tenant}/v2.0", idp.Meta.ID, idp.Spec.Issuer)
			}
		case model.LoginCognito:
			if !cognitoIssuer(idp.Spec.Issuer) {
				return fieldError(f, "identity provider %q (issuer %q) is not an Amazon Cognito user pool: its issuer must be https://cognito-idp.{region}.amazonaws.com/{user_pool_id}", idp.Meta.ID, idp.Spec.Issuer)
			}
		}
	}
	return nil
}

// findIdentityProvider is the live identity provider id of tenant tid,
// else of the system tenant, or store.ErrNotFound.
func findIdentityProvider(ctx context.Context, rd store.Reader, tid, id string) (*store.Typed[model.IdentityProviderSpec], error) {
	idp, err := directory.IdentityProviders.Get(ctx, rd, tid, id)
	if errors.Is(err, store.ErrNotFound) && tid != model.SystemTenantID {
		idp, err = directory.IdentityProviders.Get(ctx, rd, model.SystemTenantID, id)
	}
	return idp, err
}

// azureIssuer reports whether iss is a Microsoft Entra ID (v2.0) issuer.
func azureIssuer(iss string) bool {
	u, err := url.Parse(iss)
	return err == nil && u.Scheme == "https" && u.Host == "login.microsoftonline.com" && strings.HasSuffix(u.Path, "/v2.0")
}

// cognitoIssuer reports whether iss is an Amazon Cognito user pool's
// issuer (https://cognito-idp.{region}.amazonaws.com/{user_pool_id}).
func cognitoIssuer(iss string) bool {
	u, err := url.Parse(iss)
	if err != nil || u.Scheme != "https" {
		return false
	}
	region, ok := strings.CutPrefix(u.Host, "cognito-idp.")
	region, ok2 := strings.CutSuffix(region, ".amazonaws.com")
	pool := strings.TrimPrefix(u.Path, "/")
	return ok && ok2 && region != "" && !strings.Contains(region, ".") && pool != "" && !strings.Contains(pool, "/")
}

func attributeErrors(p *field.Path, attrs []model.AuthAttribute) field.ErrorList {
	var errs field.ErrorList
	if len(attrs) > maxAuthAttributes {
		return field.ErrorList{field.Invalid(p.Child("attributes"), "at most %d attributes are allowed", maxAuthAttributes)}
	}
	seen := map[string]bool{}
	for k, a := range attrs {
		ap := p.Child("attributes").Index(k)
		errs.Extend(textErrors(ap.Child("name").String(), a.Name, true, 256))
		if seen[a.Name] && a.Name != "" {
			errs.Add(field.Invalid(ap.Child("name"), "%q is listed twice", a.Name))
		}
		seen[a.Name] = true
		errs.Extend(textErrors(ap.Child("description").String(), a.Description, false, 1024))
		errs.Extend(textErrors(ap.Child("type").String(), a.Type, false, 64))
	}
	return errs
}

func mappingErrors(p *field.Path, maps []model.AuthMapping) field.ErrorList {
	var errs field.ErrorList
	if len(maps) > maxAuthMappings {
		return field.ErrorList{field.Invalid(p.Child("mappings"), "at most %d mappings are allowed", maxAuthMappings)}
	}
	for k, m := range maps {
		mp := p.Child("mappings").Index(k)
		errs.Extend(textErrors(mp.Child("source").String(), m.Source, true, 512))
		errs.Extend(textErrors(mp.Child("target").String(), m.Target, true, 512))
	}
	return errs
}

// storedHashes maps (method id, username) to the stored password hash.
func storedHashes(methods []model.AuthenticationMethod) map[[2]string]string {
	out := map[[2]string]string{}
	for _, m := range methods {
		if m.Static == nil {
			continue
		}
		for _, u := range m.Static.Users {
			out[[2]string{m.ID, u.Username}] = u.PasswordHash
		}
	}
	return out
}

// missingPasswords lists the users sent without a password that have no
// stored one to keep.
func missingPasswords(methods []authMethodBody, stored map[[2]string]string) field.ErrorList {
	var errs field.ErrorList
	for i, m := range methods {
		if m.Static == nil {
			continue
		}
		for j, u := range m.Static.Users {
			if u.Password == "" && stored[[2]string{m.ID, u.Username}] == "" {
				errs.Add(field.Invalid(field.NewPath("methods").Index(i).Child("static", "users").Index(j).Child("password"),
					"is required: user %q has no password yet (a password left out keeps the user's current one)", u.Username))
			}
		}
	}
	return errs
}

// storedMethods turns validated methods into their stored form: hashes
// holds the new passwords' hashes by [i][j]; users without one keep
// their stored hash. The other methods keep their sub-object
// (methodSettings): azure and cognito are stored with their oidc
// reference, under their own method name.
func storedMethods(methods []authMethodBody, hashes map[[2]int]string, stored map[[2]string]string) []model.AuthenticationMethod {
	out := make([]model.AuthenticationMethod, 0, len(methods))
	for i, m := range methods {
		sm := model.AuthenticationMethod{ID: m.ID, Name: m.Name, Method: m.Method, Disabled: m.Disabled, Attributes: m.Attributes, Mappings: m.Mappings}
		if m.Static != nil {
			st := &model.StaticLogin{Hint: m.Static.Hint, Users: make([]model.StaticUser, 0, len(m.Static.Users))}
			for j, u := range m.Static.Users {
				h := hashes[[2]int{i, j}]
				if h == "" {
					h = stored[[2]string{m.ID, u.Username}]
				}
				st.Users = append(st.Users, model.StaticUser{Username: u.Username, PasswordHash: h, AuthenticationContext: u.AuthenticationContext})
			}
			sm.Static = st
		}
		if m.Method != model.LoginStatic {
			settings, _ := methodSettings(field.NewPath("methods").Index(i), &methods[i])
			sm.Password, sm.OIDC, sm.Custom = settings.Password, settings.OIDC, settings.Custom
		}
		out = append(out, sm)
	}
	return out
}

func (s *Server) getAuthentications(c *gin.Context) {
	t, ok := s.loadServer(c.Request.Context(), c, s.store)
	if !ok {
		return
	}
	respondObject(c, http.StatusOK, t.Meta.Revision, viewAuthentications(t.Spec.Authentications))
}

// putAuthentications replaces the server's login methods (If-Match
// honoured): passwords are hashed (argon2id) before the transaction.
func (s *Server) putAuthentications(c *gin.Context) {
	tid := tenantID(c)
	aid, expect, ok := pathIDAndIfMatch(c, "aid")
	if !ok {
		return
	}
	var req authenticationsBody
	if apiErr := decodeJSON(c, &req); apiErr != nil {
		abort(c, apiErr)
		return
	}
	if apiErr := fieldErrors(authMethodErrors(field.NewPath("methods"), req.Methods)); apiErr != nil {
		abort(c, apiErr)
		return
	}
	// Users left without a password must have one to keep: checked
	// before hashing anything, and again in the transaction.
	cur, ok := s.loadServer(c.Request.Context(), c, s.store)
	if !ok {
		return
	}
	if apiErr := fieldErrors(missingPasswords(req.Methods, storedHashes(cur.Spec.Authentications))); apiErr != nil {
		abort(c, apiErr)
		return
	}
	if err := methodReferenceError(c.Request.Context(), s.store, tid, field.NewPath("methods"), storedMethods(req.Methods, nil, nil)); err != nil {
		fail(c, err, "server", aid)
		return
	}
	hashes := map[[2]int]string{}
	for i, m := range req.Methods {
		if m.Static == nil {
			continue
		}
		for j, u := range m.Static.Users {
			if u.Password == "" {
				continue
			}
			h, err := passwords.Hash(u.Password)
			if err != nil {
				abort(c, internalError(fmt.Errorf("hash the password of %s/%s: %w", m.ID, u.Username, err)))
				return
			}
			hashes[[2]int{i, j}] = h
		}
	}
	var t *store.Typed[model.ServerSpec]
	if s.write(c, "server", aid, func(ctx context.Context, tx store.Tx) error {
		var err error
		if t, err = serverRepo.Get(ctx, tx, tid, aid); err != nil {
			return err
		}
		if err := checkRevision(&t.Meta, expect); err != nil {
			return err
		}
		stored := storedHashes(t.Spec.Authentications)
		if apiErr := fieldErrors(missingPasswords(req.Methods, stored)); apiErr != nil {
			return apiErr
		}
		before := t.Spec.Authentications
		t.Spec.Authentications = storedMethods(req.Methods, hashes, stored)
		if err := methodReferenceError(ctx, tx, tid, field.NewPath("methods"), t.Spec.Authentications); err != nil {
			return err
		}
		// Users removed, disabled or with a new password lose their
		// tokens everywhere (gateways check them offline) in this write.
		if err := s.revokeChangedUsers(ctx, tx, tid, aid, &t.Spec, before); err != nil {
			return err
		}
		t.Meta.UpdatedBy = actor(c)
		if err := serverRepo.Update(ctx, tx, t, expect); err != nil {
			return err
		}
		return record(ctx, tx, c, tid, "update", model.KindServer, aid)
	}) {
		respondObject(c, http.StatusOK, t.Meta.Revision, viewAuthentications(t.Spec.Authentications))
	}
}

// ---- signing keys (GET /servers/{aid}/keys, POST …/keys/rotate) ----

// serverKeysBody is GET /servers/{aid}/keys: the keys that are not
// removed, oldest first, with their state now.
type serverKeysBody struct {
	Keys []keys.KeyInfo `json:"keys"`
}

// serverKeyManager is the key manager, or the 500 of a server built
// without one.
func (s *Server) serverKeyManager(c *gin.Context) (*keys.Manager, bool) {
	if s.serverKeys == nil {
		abort(c, internalError(errors.New("admin: no server key manager (Options.ServerKeys)")))
		return nil, false
	}
	return s.serverKeys, true
}

// serverStillThere fails a key write whose server was deleted meanwhile
// (the key set would outlive it).
func serverStillThere(ctx context.Context, tx store.Tx, tid, aid string) error {
	_, err := serverRepo.Get(ctx, tx, tid, aid)
	return err
}

// serverKeysList answers GET /servers/{aid}/keys, ETag the key set's
// revision. A server's first key is made here when it has none (and by
// the OAuth endpoints), so creating servers generates no keys.
func (s *Server) serverKeysList(c *gin.Context) {
	m, ok := s.serverKeyManager(c)
	if !ok {
		return
	}
	srv, ok := s.loadServer(c.Request.Context(), c, s.store)
	if !ok {
		return
	}
	tid, aid := srv.Meta.TenantID, srv.Meta.ID
	now := time.Now()
	set, err := m.Ensure(c.Request.Context(), tid, aid, keys.Rotation{
		Policy: keys.PolicyOf(&srv.Spec), Now: now, Actor: actor(c),
		InTx: func(ctx context.Context, tx store.Tx, _ *keys.Set, _ keys.KeyInfo) error {
			if err := serverStillThere(ctx, tx, tid, aid); err != nil {
				return err
			}
			return record(ctx, tx, c, tid, "create", keys.Kind, aid)
		},
	})
	if err != nil {
		fail(c, err, "server", aid)
		return
	}
	respondObject(c, http.StatusOK, set.Revision, serverKeysBody{Keys: set.Keys(now)})
}

// rotatedKeyBody is the answer of POST …/keys/rotate: the new key and
// the whole set as it is now.
type rotatedKeyBody struct {
	Key  keys.KeyInfo   `json:"key"`
	Keys []keys.KeyInfo `json:"keys"`
}

// rotateServerKeys answers POST /servers/{aid}/keys/rotate (If-Match: the
// key set's revision, optional): a new key of the server's key_type,
// pending for key_activation_delay (active at once when it is the first).
func (s *Server) rotateServerKeys(c *gin.Context) {
	m, ok := s.serverKeyManager(c)
	if !ok {
		return
	}
	expect, apiErr := ifMatch(c)
	if apiErr == nil {
		apiErr = optionalEmptyBody(c)
	}
	if apiErr != nil {
		abort(c, apiErr)
		return
	}
	srv, ok := s.loadServer(c.Request.Context(), c, s.store)
	if !ok {
		return
	}
	tid, aid := srv.Meta.TenantID, srv.Meta.ID
	now := time.Now()
	set, added, err := m.Rotate(c.Request.Context(), tid, aid, keys.Rotation{
		Policy: keys.PolicyOf(&srv.Spec), Now: now, IfMatch: expect, Actor: actor(c),
		InTx: func(ctx context.Context, tx store.Tx, _ *keys.Set, _ keys.KeyInfo) error {
			if err := serverStillThere(ctx, tx, tid, aid); err != nil {
				return err
			}
			return record(ctx, tx, c, tid, "rotate", keys.Kind, aid)
		},
	})
	if err != nil {
		if errors.Is(err, store.ErrConflict) {
			fail(c, store.ErrConflict, "server key set", aid)
			return
		}
		fail(c, err, "server", aid)
		return
	}
	c.Header("Cache-Control", "no-store")
	respondObject(c, http.StatusCreated, set.Revision, rotatedKeyBody{Key: added, Keys: set.Keys(now)})
}

// optionalEmptyBody reads the body of an action that takes no options:
// none, or the empty JSON object (anything else, null included, is a
// 400; an unknown field is named).
func optionalEmptyBody(c *gin.Context) *Error {
	raw, apiErr := readBody(c)
	if apiErr != nil || len(bytes.TrimSpace(raw)) == 0 {
		return apiErr
	}
	setBody(c, raw)
	var none struct{}
	return decodeJSON(c, &none)
}

// deleteServerKeys removes a server's key set with it.
func deleteServerKeys(ctx context.Context, tx store.Tx, tid, aid string) error {
	if err := keys.Delete(ctx, tx, tid, aid); err != nil {
		return fmt.Errorf("delete the keys of server %s/%s: %w", tid, aid, err)
	}
	return nil
}

// ---- configuration documents ----

// configServerItem is a server of a configuration document: the settings,
// the secret's hash and the login methods with their password hashes (no
// signing keys: a copied server makes its own). system is informational:
// a stored system server stays one, and no other server can become one.
type configServerItem struct {
	ID                              string                       `json:"id"`
	Name                            string                       `json:"name"`
	Description                     string                       `json:"description"`
	Labels                          map[string]string            `json:"labels"`
	System                          bool                         `json:"system"`
	SecretHash                      string                       `json:"secret_hash"`
	Authentications                 []model.AuthenticationMethod `json:"authentications"`
	KeyType                         string                       `json:"key_type"`
	GrantTypes                      []string                     `json:"grant_types"`
	AuthorizationCodeTTL            json.RawMessage              `json:"authorization_code_ttl"`
	AccessTokenTTL                  json.RawMessage              `json:"access_token_ttl"`
	IDTokenTTL                      json.RawMessage              `json:"id_token_ttl"`
	RefreshTokenTTL                 json.RawMessage              `json:"refresh_token_ttl"`
	CookieMaxAge                    json.RawMessage              `json:"cookie_max_age"`
	KeyActivationDelay              json.RawMessage              `json:"key_activation_delay"`
	EnforcePKCE                     bool                         `json:"enforce_pkce"`
	Profiles                        []string                     `json:"profiles"`
	LogoURI                         string                       `json:"logo_uri"`
	AccessTokenStrategy             string                       `json:"access_token_strategy"`
	SingleSessionPerClient          bool                         `json:"single_session_per_client"`
	Audiences                       []string                     `json:"audiences"`
	EnableDynamicClientRegistration bool                         `json:"enable_dynamic_client_registration"`
	UserPolicyID                    string                       `json:"user_policy_id"`
	DeveloperPolicyID               string                       `json:"developer_policy_id"`
	AutoProvisionUsers              bool                         `json:"auto_provision_users"`
}

// settings are the item's settings.
func (r *configServerItem) settings() *serverSettings {
	return &serverSettings{KeyType: r.KeyType, GrantTypes: r.GrantTypes, AuthorizationCodeTTL: r.AuthorizationCodeTTL,
		AccessTokenTTL: r.AccessTokenTTL, IDTokenTTL: r.IDTokenTTL, RefreshTokenTTL: r.RefreshTokenTTL, CookieMaxAge: r.CookieMaxAge,
		KeyActivationDelay: r.KeyActivationDelay, EnforcePKCE: r.EnforcePKCE, Profiles: r.Profiles, LogoURI: r.LogoURI,
		AccessTokenStrategy: r.AccessTokenStrategy, SingleSessionPerClient: r.SingleSessionPerClient, Audiences: r.Audiences,
		EnableDynamicClientRegistration: r.EnableDynamicClientRegistration, UserPolicyID: r.UserPolicyID, DeveloperPolicyID: r.DeveloperPolicyID,
		AutoProvisionUsers: r.AutoProvisionUsers}
}

// configServerOut is how a server is exported (configServerItem's
// fields, durations as Go duration strings).
type configServerOut struct {
	ID          string            `json:"id"`
	Name        string            `json:"name"`
	Description string            `json:"description"`
	Labels      map[string]string `json:"labels"`
	System      bool              `json:"system"`
	SecretHash  string            `json:"secret_hash,omitempty"`
	serverSettingsView
	Authentications []model.AuthenticationMethod `json:"authentications"`
}

func exportServer(o *store.Object) (any, error) {
	var spec model.ServerSpec
	if len(o.Spec) > 0 {
		if err := json.Unmarshal(o.Spec, &spec); err != nil {
			return nil, err
		}
	}
	methods := spec.Authentications
	if methods == nil {
		methods = []model.AuthenticationMethod{}
	}
	return configServerOut{ID: o.ID, Name: o.Name, Description: o.Description, Labels: labelsOrEmpty(o.Labels), System: spec.System,
		SecretHash: spec.SecretHash, serverSettingsView: viewSettings(&spec), Authentications: methods}, nil
}

// configServerObject validates a document's server with the rules of the
// server endpoints; password hashes must be argon2id PHC strings.
func configServerObject(_ *Server, in *configServerItem) (*configObject, *Error) {
	if apiErr := configID(in.ID); apiErr != nil {
		return nil, apiErr
	}
	if in.Name == "" {
		in.Name = in.ID
	}
	spec, errs := in.settings().spec()
	errs = append(envelopeErrors(in.Name, in.Description, in.Labels), errs...)
	if h := in.SecretHash; h != "" {
		if b, err := hex.DecodeString(h); err != nil || len(b) != sha256.Size || strings.ToLower(h) != h {
			errs.Add(field.Invalid(field.NewPath("secret_hash"), "must be the SHA-256 of the secret in lowercase hex (64 characters), as exported"))
		}
	}
	methods := make([]authMethodBody, 0, len(in.Authentications))
	for _, m := range in.Authentications {
		methods = append(methods, methodBody(m))
	}
	root := field.NewPath("authentications")
	errs.Extend(authMethodErrors(root, methods))
	for i, m := range in.Authentications {
		if m.Static == nil {
			continue
		}
		for j, u := range m.Static.Users {
			if err := passwords.Check(u.PasswordHash); err != nil {
				errs.Add(field.Invalid(root.Index(i).Child("static", "users").Index(j).Child("password_hash"), "%s", err.Error()))
			}
		}
	}
	if len(errs) > 0 {
		return nil, fieldErrors(errs)
	}
	spec.System, spec.SecretHash = in.System, in.SecretHash
	if len(in.Authentications) > 0 {
		spec.Authentications = in.Authentications
	}
	return newConfigObject(model.KindServer, in.ID, in.Name, "", in.Description, in.Labels, spec)
}

// checkConfigServers applies the server rules an import needs the
// stored servers for: system-ness never changes (a stored system server
// stays one; no other can become one), a server without secret_hash keeps
// its secret (a new one gets a generated secret), and system servers are
// never deleted: a replace import that lacks them keeps them (they are
// left out of what the import compares against, so it does not delete
// them).
func checkConfigServers(want []*configObject, stored configState, merge bool) *Error {
	named := map[string]bool{}
	for _, o := range want {
		named[o.obj.ID] = true
		var spec, was model.ServerSpec
		if err := json.Unmarshal(o.obj.Spec, &spec); err != nil {
			return internalError(fmt.Errorf("decode server %q: %w", o.obj.ID, err))
		}
		cur := stored[o.obj.ID]
		if cur != nil {
			if err := json.Unmarshal(cur.Spec, &was); err != nil {
				return internalError(fmt.Errorf("decode server %q: %w", cur.ID, err))
			}
		}
		switch {
		case was.System:
			spec.System = true
		case spec.System:
			return fieldError(o.field+".system", "server %q is not a system server of this tenant; only Gatehouse makes system servers", o.obj.ID)
		}
		if spec.SecretHash == "" {
			spec.SecretHash = was.SecretHash
			if spec.SecretHash == "" {
				var err error
				if _, spec.SecretHash, err = newServerSecret(); err != nil {
					return internalError(err)
				}
			}
		}
		raw, err := json.Marshal(spec)
		if err != nil {
			return internalError(err)
		}
		o.obj.Spec = raw
	}
	if !merge {
		for id, cur := range stored {
			var spec model.ServerSpec
			if err := json.Unmarshal(cur.Spec, &spec); err != nil {
				return internalError(fmt.Errorf("decode server %q: %w", id, err))
			}
			if spec.System && !named[id] {
				delete(stored, id)
			}
		}
	}
	return nil
}

// revokeChangedUsers revokes, from now, the tokens of the static users of
// before whom the server's new login methods no longer let in with the
// same password (removed, method removed or disabled, password changed):
// a not-before for the subject, until no token issued now is valid.
func (s *Server) revokeChangedUsers(ctx context.Context, tx store.Tx, tid, aid string, spec *model.ServerSpec, before []model.AuthenticationMethod) error {
	live := map[string]string{} // subject → password hash
	for _, m := range spec.Authentications {
		if m.Disabled || m.Static == nil {
			continue
		}
		for _, u := range m.Static.Users {
			live[model.StaticSubject(m.ID, u.Username)] = u.PasswordHash
		}
	}
	now := time.Now()
	until := now.Add(max(spec.AccessTokenTTL.D(), spec.IDTokenTTL.D(), spec.RefreshTokenTTL.D()))
	issuer := model.IssuerURL(s.public, tid, aid)
	for _, m := range before {
		if m.Static == nil {
			continue
		}
		for _, u := range m.Static.Users {
			sub := model.StaticSubject(m.ID, u.Username)
			if hash, ok := live[sub]; ok && hash == u.PasswordHash {
				continue
			}
			if err := grants.RevokeSubject(ctx, tx, tid, issuer, sub, "", now, until); err != nil {
				return fmt.Errorf("revoke the tokens of %s: %w", sub, err)
			}
		}
	}
	return nil
}
