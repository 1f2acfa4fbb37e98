package model

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Kinds of the authorization servers (tenant-scoped).
const (
	// KindServer: the tenant's OAuth2/OIDC authorization servers; the
	// issuer of server aid is {public_url}/{tid}/{aid}.
	KindServer = "servers"
	// KindClient: OAuth clients of a server.
	KindClient = "clients"
	// KindClaim: claims a server maps into its tokens.
	KindClaim = "claims"
	// KindTokenRevocation: one revoked access token (by jti) or one
	// not-before cut-off, enforced by every gateway until it expires
	// (data.gatehouse.config.revocations). Internal: written by the OAuth
	// endpoints and by deletes, never through a route.
	KindTokenRevocation = "token-revocations"
)

// System tenant and servers.
const (
	// SystemTenantID is the reserved tenant of the system-wide server; it
	// exists from the first start.
	SystemTenantID = "system"
	// SystemServerID is the server of SystemTenantID whose tokens act
	// system-wide on the admin API.
	SystemServerID = "system"
	// AdminServerID, DeveloperServerID and DefaultServerID are the
	// servers every tenant gets at creation (AdminServerID's tokens act
	// on the tenant's admin API).
	AdminServerID     = "admin"
	DeveloperServerID = "developer"
	DefaultServerID   = "default"
)

// Grant types a server may allow.
const (
	GrantAuthorizationCode = "authorization_code"
	GrantImplicit          = "implicit"
	GrantClientCredentials = "client_credentials"
	GrantRefreshToken      = "refresh_token"
)

// Access token strategies.
const (
	AccessTokenJWT    = "jwt"
	AccessTokenOpaque = "opaque"
)

// Token endpoint authentication methods of clients.
const (
	AuthMethodBasic         = "client_secret_basic"
	AuthMethodPost          = "client_secret_post"
	AuthMethodPrivateKeyJWT = "private_key_jwt"
	AuthMethodNone          = "none"
)

// Claim types.
const (
	ClaimIDToken     = "id_token"
	ClaimAccessToken = "access_token"
)

// Login methods (servers' authentications[].method).
const (
	LoginStatic = "static"
)

// Duration is a time.Duration that JSON carries as a Go duration string
// ("1h0m0s"); it also reads a plain number of seconds.
type Duration time.Duration

// D is the duration as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// MarshalJSON writes the Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads a Go duration string or a number of seconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := time.ParseDuration(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("not a duration (say \"1h\", \"30m\" or \"90s\"): %q", s)
		}
		*d = Duration(v)
		return nil
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return fmt.Errorf("not a duration (a string such as \"1h\", or seconds)")
	}
	*d = Duration(time.Duration(f * float64(time.Second)))
	return nil
}

// ServerSpec is an authorization server (WAVE2 §1.1). Its name is the
// envelope name; the id is part of its issuer URL.
type ServerSpec struct {
	// System servers (admin, developer, default, and system/system) are
	// made by Gatehouse and cannot be deleted.
	System bool `json:"system,omitempty"`
	// SecretHash is the SHA-256 (hex) of the server secret.
	SecretHash string `json:"secret_hash,omitempty"`
	// KeyType is rsa (RS256) or ecdsa (ES256).
	KeyType string `json:"key_type"`
	// GrantTypes the server allows (⊆ the Grant* constants).
	GrantTypes             []string `json:"grant_types"`
	AuthorizationCodeTTL   Duration `json:"authorization_code_ttl"`
	AccessTokenTTL         Duration `json:"access_token_ttl"`
	IDTokenTTL             Duration `json:"id_token_ttl"`
	RefreshTokenTTL        Duration `json:"refresh_token_ttl"`
	CookieMaxAge           Duration `json:"cookie_max_age"`
	KeyActivationDelay     Duration `json:"key_activation_delay"`
	EnforcePKCE            bool     `json:"enforce_pkce,omitempty"`
	Profiles               []string `json:"profiles,omitempty"`
	LogoURI                string   `json:"logo_uri,omitempty"`
	AccessTokenStrategy    string   `json:"access_token_strategy"`
	SingleSessionPerClient bool     `json:"single_session_per_client,omitempty"`
	// Audiences are accepted in access tokens' aud by the tenant's
	// gateways besides the issuer URL; tokens of clients without an
	// audience carry them (or the issuer URL when there are none).
	Audiences []string `json:"audiences,omitempty"`
	// Authentications are the login methods (PUT …/authentications).
	Authentications []AuthenticationMethod `json:"authentications,omitempty"`
	// AutoProvisionUsers: a federated login whose identity maps to no
	// user creates one (else access_denied).
	AutoProvisionUsers bool `json:"auto_provision_users,omitempty"`
}

// AuthenticationMethod is one login method of a server.
type AuthenticationMethod struct {
	ID         string          `json:"id"`
	Name       string          `json:"name,omitempty"`
	Method     string          `json:"method"`
	Disabled   bool            `json:"disabled,omitempty"`
	Attributes []AuthAttribute `json:"attributes,omitempty"`
	Mappings   []AuthMapping   `json:"mappings,omitempty"`
	Static     *StaticLogin    `json:"static,omitempty"`
	// Password, OIDC and Custom are the sub-objects of those methods
	// (issue F); azure and cognito are stored as OIDC with their issuer
	// translated.
	Password *PasswordLogin `json:"password,omitempty"`
	OIDC     *OIDCLogin     `json:"oidc,omitempty"`
	Custom   *CustomLogin   `json:"custom,omitempty"`
}

// AuthMapping copies a value of the login's result into the
// authentication context.
type AuthMapping struct {
	Source string `json:"source"`
	Target string `json:"target"`
}

// StaticLogin is the static login method: users in the configuration.
type StaticLogin struct {
	Hint  string       `json:"hint,omitempty"`
	Users []StaticUser `json:"users"`
}

// StaticUser is one user of a static login; only the argon2id hash of
// the password is stored (PHC string form).
type StaticUser struct {
	Username              string         `json:"username"`
	PasswordHash          string         `json:"password_hash"`
	AuthenticationContext map[string]any `json:"authentication_context,omitempty"`
}

// ClientSpec is an OAuth client of a server (WAVE2 §1.1). The client id
// is the object id; client_name is Name (not unique), the description
// lives in the envelope.
type ClientSpec struct {
	Name     string `json:"client_name,omitempty"`
	ServerID string `json:"authorization_server_id"`
	// SecretHash is the SHA-256 (hex) of the current secret; none for
	// public clients.
	SecretHash string `json:"secret_hash,omitempty"`
	// PreviousSecretHash stays valid until PreviousSecretExpiresAt (a
	// rotation's grace period).
	PreviousSecretHash      string     `json:"previous_secret_hash,omitempty"`
	PreviousSecretExpiresAt *time.Time `json:"previous_secret_expires_at,omitempty"`
	DeveloperID             string     `json:"developer_id,omitempty"`
	System                  bool       `json:"system,omitempty"`
	Trusted                 bool       `json:"trusted,omitempty"`
	Public                  bool       `json:"public,omitempty"`
	Audience                []string   `json:"audience,omitempty"`
	GrantTypes              []string   `json:"grant_types"`
	ResponseTypes           []string   `json:"response_types"`
	RedirectURIs            []string   `json:"redirect_uris,omitempty"`
	PostLogoutRedirectURIs  []string   `json:"post_logout_redirect_uris,omitempty"`
	Scopes                  []string   `json:"scopes,omitempty"`
	TokenEndpointAuthMethod string     `json:"token_endpoint_auth_method"`
	TokenEndpointSigningAlg string     `json:"token_endpoint_signing_alg,omitempty"`
	RequestObjectSigningAlg string     `json:"request_object_signing_alg,omitempty"`
	UserinfoSignedAlg       string     `json:"userinfo_signed_response_alg,omitempty"`
	// JWKS is the client's public key set (private_key_jwt).
	JWKS                  json.RawMessage `json:"jwks,omitempty"`
	JWKSURI               string          `json:"jwks_uri,omitempty"`
	RequestURIs           []string        `json:"request_uris,omitempty"`
	SectorIdentifierURI   string          `json:"sector_identifier_uri,omitempty"`
	ClientURI             string          `json:"client_uri,omitempty"`
	LogoURI               string          `json:"logo_uri,omitempty"`
	PolicyURI             string          `json:"policy_uri,omitempty"`
	TosURI                string          `json:"tos_uri,omitempty"`
	ClientIDIssuedAt      int64           `json:"client_id_issued_at,omitempty"`
	ClientSecretExpiresAt int64           `json:"client_secret_expires_at,omitempty"`
	Privacy               json.RawMessage `json:"privacy,omitempty"`
	// GatewayID is set on the client Gatehouse made for a gateway created
	// with a server: its tokens authenticate that gateway to the bundle
	// service (audience GatewayAudience).
	GatewayID string `json:"gateway_id,omitempty"`
	// ServiceAccountID is set on the client of a service account: its
	// tokens' subject is the service account.
	ServiceAccountID string `json:"service_account_id,omitempty"`
}

// GatewayAudience is the audience of a gateway client's tokens, which
// the bundle service requires.
func GatewayAudience(tenantID, gatewayID string) string {
	return "gatehouse:gateway:" + tenantID + ":" + gatewayID
}

// ClaimSpec maps a value of the authentication context into tokens.
type ClaimSpec struct {
	ServerID string `json:"authorization_server_id"`
	// Name is the claim's name in the token.
	Name string `json:"name"`
	// Mapping is a dotted path into the authentication context.
	Mapping string `json:"mapping"`
	// Type is id_token or access_token.
	Type string `json:"type"`
	// Scopes: the claim is added when one of them is granted; none means
	// always.
	Scopes []string `json:"scopes,omitempty"`
}

// ReservedClaimNames cannot be mapped claims.
var ReservedClaimNames = []string{"iss", "sub", "aud", "exp", "iat", "nbf", "jti", "azp", "nonce", "at_hash", "c_hash", "auth_time",
	"client_id", "scope", "gh_tid", "gh_sub_type"}

// TokenRevocationSpec is one revocation, in force until ExpiresAt (after
// which no token it could match is valid any more, and the sweeper deletes
// it). Exactly one form: JTI (one access token of Issuer), or NotBefore
// for Subject (and, when set, only ClientID's tokens of it): tokens of
// Issuer issued before NotBefore are revoked.
type TokenRevocationSpec struct {
	Issuer    string     `json:"issuer"`
	JTI       string     `json:"jti,omitempty"`
	Subject   string     `json:"sub,omitempty"`
	ClientID  string     `json:"client_id,omitempty"`
	NotBefore *time.Time `json:"not_before,omitempty"`
	ExpiresAt time.Time  `json:"expires_at"`
}

// IssuerURL is the issuer of server aid of tenant tid: {public_url}/{tid}/{aid}.
func IssuerURL(publicURL, tenantID, serverID string) string {
	return strings.TrimRight(publicURL, "/") + "/" + tenantID + "/" + serverID
}

// StaticSubject is the sub of a static login's user:
// "static/<method id>/<username>", the username with '%', '/', ':', '|'
// and control characters percent-encoded (opaque tokens join
// "<jti>:<sub>" and revocations key "<issuer>|<sub>").
func StaticSubject(methodID, username string) string {
	var b strings.Builder
	b.WriteString("static/")
	b.WriteString(methodID)
	b.WriteByte('/')
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(username); i++ {
		c := username[i]
		if c == '%' || c == '/' || c == ':' || c == '|' || c < 0x20 || c == 0x7f {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}
