package model

import (
	"strings"
	"time"
)

// Kinds of the directory (WAVE2 part F), all tenant-scoped. Identity
// providers of the system tenant (SystemTenantID) are usable by every
// tenant's login.
const (
	// KindUser: the tenant's users. Soft-deleted (the email and subject
	// are freed); the envelope name is the user's email, lowercased.
	KindUser = "users"
	// KindUserSubject: internal marker keeping a live user's subject
	// unique: name = the subject, parent = the user id.
	KindUserSubject = "user-subjects"
	// KindIdentityMapping: an external identity (identity provider,
	// external subject) mapped to a user. Name = IdentityMappingName,
	// parent = the user id.
	KindIdentityMapping = "identity-mappings"
	// KindServiceAccount: the tenant's service accounts; name unique.
	KindServiceAccount = "service-accounts"
	// KindGroup: groups of users and service accounts (flat).
	KindGroup = "groups"
	// KindGroupMember: internal marker of one membership, maintained
	// with the group: name "<gid>/<principal>", parent = the principal
	// key (PrincipalKey), so "groups of X" is an index read.
	KindGroupMember = "group-members"
	// KindProject: projects (seed 001 spaces).
	KindProject = "projects"
	// KindProjectMember: a direct project assignment: name
	// "<pid>/<principal>", parent = the principal key.
	KindProjectMember = "project-members"
	// KindIdentityProvider: upstream OIDC (or OAuth 2.0) providers a
	// login federates to.
	KindIdentityProvider = "identity-providers"
	// KindInvitation: invitations into the tenant; name = the SHA-256
	// (hex) of the invitation key.
	KindInvitation = "invitations"
)

// Principal key prefixes (WAVE2 §3.1): "user:<id>", "service_account:<id>",
// "group:<id>".
const (
	PrincipalUser           = "user"
	PrincipalServiceAccount = "service_account"
	PrincipalGroup          = "group"
)

// PrincipalKey is the key of a principal of a type and id.
func PrincipalKey(typ, id string) string { return typ + ":" + id }

// ParsePrincipalKey splits a principal key.
func ParsePrincipalKey(key string) (typ, id string, ok bool) {
	typ, id, ok = strings.Cut(key, ":")
	switch typ {
	case PrincipalUser, PrincipalServiceAccount, PrincipalGroup:
	default:
		return "", "", false
	}
	return typ, id, ok && ValidObjectID(id)
}

// UserState is a user's lifecycle state.
type UserState string

// User states: only active users sign in and hold rights.
const (
	UserActive    UserState = "active"
	UserPending   UserState = "pending"
	UserSuspended UserState = "suspended"
)

// Valid reports whether s is a known user state.
func (s UserState) Valid() bool {
	return s == UserActive || s == UserPending || s == UserSuspended
}

// UserSpec is a user of a tenant. Its id is the sub of the tokens the
// tenant's servers issue for it (gh_sub_type "user").
type UserSpec struct {
	// Subject is the canonical external name (usually the email), unique
	// among the tenant's live users.
	Subject           string    `json:"subject"`
	Email             string    `json:"email"`
	EmailVerified     bool      `json:"email_verified,omitempty"`
	GivenName         string    `json:"given_name,omitempty"`
	FamilyName        string    `json:"family_name,omitempty"`
	PreferredUsername string    `json:"preferred_username,omitempty"`
	Locale            string    `json:"locale,omitempty"`
	State             UserState `json:"state"`
	// PasswordHash is the argon2id hash (PHC form) of the password, "" for
	// none (federated users, or not set yet).
	PasswordHash string `json:"password_hash,omitempty"`
	// TOTPSeed is the sealed TOTP secret (base64 of secretbox output,
	// AAD TOTPSealAAD), "" when not enrolled. TOTPConfirmed: the user
	// proved one code after enrolling.
	TOTPSeed      string `json:"totp_seed,omitempty"`
	TOTPConfirmed bool   `json:"totp_confirmed,omitempty"`
	// CredentialEpoch changes whenever the user's credentials are reset
	// (password set, MFA reset, recovery): sessions of an older epoch end.
	CredentialEpoch int64 `json:"credential_epoch,omitempty"`
}

// DisplayName is given and family name joined ("" when both are empty).
func (u *UserSpec) DisplayName() string {
	return strings.TrimSpace(u.GivenName + " " + u.FamilyName)
}

// TOTPSealAAD is the additional data sealing a user's TOTP seed: the
// tenant and user ids, so a sealed seed cannot be moved to another user.
func TOTPSealAAD(tenantID, userID string) []byte {
	return []byte("gatehouse/totp\x00" + tenantID + "\x00" + userID)
}

// NormalizeEmail is the form emails are compared and indexed in.
func NormalizeEmail(email string) string { return strings.ToLower(strings.TrimSpace(email)) }

// EmailDomain is the lowercased domain of an email ("" when none).
func EmailDomain(email string) string {
	i := strings.LastIndexByte(email, '@')
	if i < 0 {
		return ""
	}
	return NormalizeEmail(email[i+1:])
}

// IdentityMappingSpec maps an external identity to a user.
type IdentityMappingSpec struct {
	UserID             string `json:"user_id"`
	IdentityProviderID string `json:"identity_provider_id"`
	ExternalSubject    string `json:"external_subject"`
}

// IdentityMappingName is the unique envelope name of the mapping of
// externalSubject at identity provider idp.
func IdentityMappingName(idp, externalSubject string) string { return idp + "|" + externalSubject }

// ServiceAccountState is a service account's state.
type ServiceAccountState string

// Service account states.
const (
	ServiceAccountActive    ServiceAccountState = "active"
	ServiceAccountSuspended ServiceAccountState = "suspended"
)

// ServiceAccountSpec is a service account: a client_credentials client
// (ClientID) on the tenant's default server; tokens have sub = the
// service account id and gh_sub_type "service_account".
type ServiceAccountSpec struct {
	ContactEmail      string              `json:"contact_email,omitempty"`
	TokenDuration     Duration            `json:"token_duration,omitempty"`
	State             ServiceAccountState `json:"state"`
	ClientID          string              `json:"client_id"`
	GrantDefaultRoles bool                `json:"grant_default_roles,omitempty"`
	// Expiry, when set, ends the account's credentials (seed 000
	// status.expiry).
	Expiry *time.Time `json:"expiry,omitempty"`
}

// GroupSpec is a flat group of principals.
type GroupSpec struct {
	UserIDs           []string `json:"user_ids,omitempty"`
	ServiceAccountIDs []string `json:"service_account_ids,omitempty"`
	// RoleIDs is the group's tenant role binding (issue G).
	RoleIDs []string `json:"role_ids,omitempty"`
}

// GroupMemberSpec is one membership marker (KindGroupMember).
type GroupMemberSpec struct {
	GroupID   string `json:"group_id"`
	Principal string `json:"principal"`
}

// ProjectStatusReady is the only project status (READY at once).
const ProjectStatusReady = "READY"

// ProjectSpec is a project; its groups are project members.
type ProjectSpec struct {
	GroupIDs []string `json:"group_ids,omitempty"`
	Status   string   `json:"status"`
}

// ProjectMemberSpec is one direct project assignment.
type ProjectMemberSpec struct {
	ProjectID string `json:"project_id"`
	Principal string `json:"principal"`
}

// Identity provider types.
const (
	IdPOIDC      = "oidc"
	IdPGoogle    = "google"
	IdPMicrosoft = "microsoft"
	IdPGitHub    = "github"
)

// IdentityProviderSpec is an upstream provider a login federates to.
// The envelope name is its unique name.
type IdentityProviderSpec struct {
	Type string `json:"type"`
	// Issuer must equal the upstream ID tokens' iss.
	Issuer                string `json:"issuer"`
	AuthorizationEndpoint string `json:"authorization_endpoint,omitempty"`
	TokenEndpoint         string `json:"token_endpoint,omitempty"`
	UserInfoEndpoint      string `json:"user_info_endpoint,omitempty"`
	JWKSURI               string `json:"jwks_uri,omitempty"`
	ClientID              string `json:"client_id"`
	// ClientSecretSealed is the sealed upstream client secret (base64,
	// AAD IdPSecretAAD); "" → a public client using PKCE.
	ClientSecretSealed string            `json:"client_secret_sealed,omitempty"`
	Scopes             []string          `json:"scopes,omitempty"`
	Domains            []string          `json:"domains,omitempty"`
	LinkByEmail        bool              `json:"link_by_email,omitempty"`
	ExtraAuthParams    map[string]string `json:"extra_auth_params,omitempty"`
	Mappings           []AuthMapping     `json:"mappings,omitempty"`
	Active             bool              `json:"active"`
	// RoleMapping binds roles at login (issue G).
	RoleMapping []IdPRoleMapping `json:"role_mapping,omitempty"`
}

// IdPRoleMapping binds RoleID when the upstream claim holds Value.
type IdPRoleMapping struct {
	Claim  string `json:"claim"`
	Value  string `json:"value"`
	RoleID string `json:"role_id"`
}

// IdPSecretAAD is the additional data sealing an identity provider's
// client secret.
func IdPSecretAAD(tenantID, idpID string) []byte {
	return []byte("gatehouse/idp-secret\x00" + tenantID + "\x00" + idpID)
}

// InvitationState is an invitation's derived state.
type InvitationState string

// Invitation states (seed 002).
const (
	InvitationOpen     InvitationState = "Open"
	InvitationAccepted InvitationState = "Accepted"
	InvitationDeclined InvitationState = "Declined"
	InvitationExpired  InvitationState = "Expired"
	InvitationRevoked  InvitationState = "Revoked"
)

// InvitationClientID is the built-in client of every tenant's default
// server whose sign-ins accept invitations (oauth/invitations.go): not
// stored, and refused as the id of a stored client.
const InvitationClientID = "gatehouse-invitations"

// InvitationTTL is how long an invitation stays open.
const InvitationTTL = 7 * 24 * time.Hour

// InvitationSpec is an invitation into the tenant (the tenant is
// to_tenant_id). KeyHash is the envelope name too.
type InvitationSpec struct {
	FromIdentityID       string     `json:"from_identity_id,omitempty"`
	InvitedEmailAddress  string     `json:"invited_email_address"`
	InvitationURL        string     `json:"invitation_url,omitempty"`
	TargetUserIdentityID string     `json:"target_user_identity_id,omitempty"`
	Expiration           time.Time  `json:"expiration"`
	Accepted             *bool      `json:"accepted,omitempty"`
	ResponseReceivedAt   *time.Time `json:"response_received_at,omitempty"`
	RevokedAt            *time.Time `json:"revoked_at,omitempty"`
	KeyHash              string     `json:"key_hash"`
}

// State derives the invitation's state at now.
func (i *InvitationSpec) State(now time.Time) InvitationState {
	switch {
	case i.RevokedAt != nil:
		return InvitationRevoked
	case i.Accepted != nil && *i.Accepted:
		return InvitationAccepted
	case i.Accepted != nil:
		return InvitationDeclined
	case !now.Before(i.Expiration):
		return InvitationExpired
	}
	return InvitationOpen
}

// Login methods beyond static (WAVE2 §1.1 updateAuthentications).
const (
	LoginPassword = "password"
	LoginOIDC     = "oidc"
	LoginCustom   = "custom"
	LoginAzure    = "azure"
	LoginCognito  = "cognito"
)

// MFA providers of a tenant (TenantSpec.MFAProvider).
const (
	MFANone = ""
	MFATOTP = "totp"
)

// PasswordLogin is the password method: the tenant's users (by email).
type PasswordLogin struct {
	Hint string `json:"hint,omitempty"`
}

// OIDCLogin federates to an upstream provider: a reference to an
// identity provider of the tenant (or of the system tenant).
type OIDCLogin struct {
	IdentityProviderID string `json:"identity_provider_id"`
}

// CustomLogin hands the login to an application at LoginURL, which
// finishes it through POST /api/system/{tid}/logins/{login}/accept|reject.
type CustomLogin struct {
	LoginURL string `json:"login_url"`
}
