package grants

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"time"
)

// State kinds of the records (tenant-scoped runtime state).
const (
	KindAuthRequests    = "oauth-auth-requests"
	KindCodes           = "oauth-codes"
	KindCodesUsed       = "oauth-codes-used"
	KindAccessTokens    = "oauth-access-tokens"
	KindRefreshTokens   = "oauth-refresh-tokens"
	KindRefreshUsed     = "oauth-refresh-used"
	KindRevokedFamilies = "oauth-revoked-families"
	KindSessions        = "oauth-sessions"
	// KindAuthRequestSlots holds the slots that bound the auth requests
	// waiting for a login (AcquireAuthRequestSlot).
	KindAuthRequestSlots = "oauth-auth-request-slots"
	// KindAssertionsUsed holds the client assertions (private_key_jwt)
	// already used, until they expire (UseAssertion).
	KindAssertionsUsed = "oauth-assertions-used"
)

// Subject types (the gh_sub_type claim).
const (
	SubjectUser   = "user"
	SubjectClient = "client"
	// SubjectServiceAccount: a service account's client_credentials
	// token (sub = the service account id).
	SubjectServiceAccount = "service_account"
)

// LoginWindow is how long an auth request waits for its login; once
// logged in it lives on for the server's authorization_code_ttl.
const LoginWindow = 15 * time.Minute

// CredentialVersion is a short hash of a user's password hash: sessions
// and the tokens issued from them carry it, so that a changed password
// (or a user removed and added again) ends them.
func CredentialVersion(passwordHash string) string {
	sum := sha256.Sum256([]byte("gatehouse/credential\x00" + passwordHash))
	return hex.EncodeToString(sum[:8])
}

// Hash is the hex SHA-256 of a secret: the id of the records of codes,
// refresh tokens and session cookies.
func Hash(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// NewSecret returns 256 random bits, base64url without padding: refresh
// tokens and session cookie values.
func NewSecret() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generate a secret: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// NewID returns 128 random bits as hex: auth request ids, jtis and family
// ids (identifiers, not secrets).
func NewID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generate an id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// NewTimeOrderedID returns 128 bits as hex, like NewID, whose first 48
// are the Unix milliseconds of now and the other 80 random (the layout
// of a UUIDv7): ids made later sort later, so the records keyed by them
// (access tokens, by jti) are inserted next to each other in the store's
// B+tree instead of each in a random leaf — a commit of many of them
// writes few pages.
func NewTimeOrderedID(now time.Time) (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[6:]); err != nil {
		return "", fmt.Errorf("generate an id: %w", err)
	}
	ms := uint64(now.UnixMilli())
	for i := 5; i >= 0; i-- {
		b[i] = byte(ms)
		ms >>= 8
	}
	return hex.EncodeToString(b[:]), nil
}

// AuthRequest is an authorization request between /oauth2/authorize and
// the code exchange (KindAuthRequests, id = ID).
type AuthRequest struct {
	ID                  string   `json:"id"`
	ServerID            string   `json:"server_id"`
	ClientID            string   `json:"client_id"`
	RedirectURI         string   `json:"redirect_uri"`
	ResponseType        string   `json:"response_type"`
	ResponseMode        string   `json:"response_mode,omitempty"`
	Scopes              []string `json:"scopes"`
	State               string   `json:"state,omitempty"`
	Nonce               string   `json:"nonce,omitempty"`
	CodeChallenge       string   `json:"code_challenge,omitempty"`
	CodeChallengeMethod string   `json:"code_challenge_method,omitempty"`
	Prompt              []string `json:"prompt,omitempty"`
	// MaxAge is max_age in seconds (nil: not sent).
	MaxAge    *uint  `json:"max_age,omitempty"`
	LoginHint string `json:"login_hint,omitempty"`
	// HintSubject is the sub of a valid id_token_hint.
	HintSubject string    `json:"hint_subject,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	ExpiresAt   time.Time `json:"expires_at"`

	// Set by the login.
	Done        bool           `json:"done,omitempty"`
	Subject     string         `json:"sub,omitempty"`
	SubjectType string         `json:"sub_type,omitempty"`
	AuthTime    time.Time      `json:"auth_time,omitzero"`
	AMR         []string       `json:"amr,omitempty"`
	AuthContext map[string]any `json:"authentication_context,omitempty"`
	// CodeIssued: a code was issued for it (one code per auth request).
	CodeIssued bool `json:"code_issued,omitempty"`

	// BrowserHash is the Hash of the nonce of the browser that started
	// the request (its binding cookie): only that browser may log in for
	// it and take its code.
	BrowserHash string `json:"browser_hash,omitempty"`
	// SessionHash is the Hash of the session cookie of the login that
	// completed it: the callback requires that session too.
	SessionHash string `json:"session_hash,omitempty"`
	// Credential is the CredentialVersion of the user's password at the
	// login.
	Credential string `json:"credential,omitempty"`
	// Slot is the slot it holds while it waits for its login ("" once
	// logged in).
	Slot string `json:"slot,omitempty"`
	// InvitationKeyHash is set on the auth requests an invitation's
	// accept link starts (oauth/invitations.go): the login's identity
	// resolution then accepts that invitation.
	InvitationKeyHash string `json:"invitation_key_hash,omitempty"`
}

// Code is an issued authorization code (KindCodes, id = Hash(code)).
type Code struct {
	AuthRequestID string `json:"auth_request_id"`
	ServerID      string `json:"server_id"`
	ClientID      string `json:"client_id"`
	// FamilyID is the family of the tokens the code's exchange issues.
	FamilyID  string    `json:"family_id"`
	ExpiresAt time.Time `json:"expires_at"`
}

// CodeUse records a redeemed code (KindCodesUsed, id = Hash(code)): a
// replay revokes its family.
type CodeUse struct {
	ServerID string    `json:"server_id"`
	ClientID string    `json:"client_id"`
	FamilyID string    `json:"family_id"`
	UsedAt   time.Time `json:"used_at"`
	// FamilyExpiresAt bounds the family's tokens (for RevokeFamily).
	FamilyExpiresAt time.Time `json:"family_expires_at"`
}

// AccessToken is an issued access token (KindAccessTokens, id = JTI); see
// the package documentation for its JSON.
type AccessToken struct {
	JTI      string `json:"jti"`
	ServerID string `json:"server_id"`
	Issuer   string `json:"issuer"`
	ClientID string `json:"client_id"`
	// ClientUID is the store UID of the client object it was issued to: a
	// client deleted and created again with the same id is another client.
	ClientUID   string   `json:"client_uid,omitempty"`
	Subject     string   `json:"sub"`
	SubjectType string   `json:"sub_type"`
	Scopes      []string `json:"scopes,omitempty"`
	Audience    []string `json:"audience,omitempty"`
	FamilyID    string   `json:"family_id,omitempty"`
	// Credential is the CredentialVersion of a user's password at the
	// login the token comes from ("" for clients).
	Credential string    `json:"credential,omitempty"`
	IssuedAt   time.Time `json:"issued_at"`
	ExpiresAt  time.Time `json:"expires_at"`
}

// RefreshToken is an issued refresh token (KindRefreshTokens, id =
// Hash(token)). It is single-use: RefreshUse marks it used.
type RefreshToken struct {
	ServerID    string         `json:"server_id"`
	Issuer      string         `json:"issuer"`
	ClientID    string         `json:"client_id"`
	ClientUID   string         `json:"client_uid,omitempty"`
	Subject     string         `json:"sub"`
	SubjectType string         `json:"sub_type"`
	Scopes      []string       `json:"scopes,omitempty"`
	Audience    []string       `json:"audience,omitempty"`
	FamilyID    string         `json:"family_id"`
	AuthTime    time.Time      `json:"auth_time,omitzero"`
	AMR         []string       `json:"amr,omitempty"`
	AuthContext map[string]any `json:"authentication_context,omitempty"`
	// Credential: as AccessToken.Credential.
	Credential string    `json:"credential,omitempty"`
	IssuedAt   time.Time `json:"issued_at"`
	// ExpiresAt is the token's expiry: refresh_token_ttl after the login
	// the family comes from, never later (rotation does not extend it).
	ExpiresAt time.Time `json:"expires_at"`
}

// RefreshUse marks a refresh token used (KindRefreshUsed, id =
// Hash(token)); it is created once (PutStateIfAbsent).
type RefreshUse struct {
	FamilyID string    `json:"family_id"`
	UsedAt   time.Time `json:"used_at"`
}

// FamilyRevoked marks a revoked family (KindRevokedFamilies, id = family id).
type FamilyRevoked struct {
	RevokedAt time.Time `json:"revoked_at"`
	Reason    string    `json:"reason"`
}

// Session is a login session of the browser holding the cookie
// (KindSessions, id = Hash(cookie value)).
type Session struct {
	ServerID    string         `json:"server_id"`
	Subject     string         `json:"sub"`
	MethodID    string         `json:"method_id"`
	Username    string         `json:"username"`
	AuthTime    time.Time      `json:"auth_time"`
	AMR         []string       `json:"amr,omitempty"`
	AuthContext map[string]any `json:"authentication_context,omitempty"`
	// Credential is the CredentialVersion of the user's password at the
	// login.
	Credential string    `json:"credential,omitempty"`
	ExpiresAt  time.Time `json:"expires_at"`
}
