package directory

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/gatehouse-dev/gatehouse/internal/secretbox"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/store"
)

// Presets of the identity provider types (docs/identity.md).
const (
	// GoogleIssuer is the issuer of type google (discovery at
	// {issuer}/.well-known/openid-configuration).
	GoogleIssuer = "https://accounts.google.com"
	// MicrosoftIssuerPrefix starts the issuer of type microsoft, which is
	// https://login.microsoftonline.com/{directory tenant id}/v2.0: the
	// iss of the v2.0 ID tokens of that Entra ID tenant. The multi-tenant
	// aliases (common, organizations, consumers) are no issuer: their ID
	// tokens carry the user's own directory tenant.
	MicrosoftIssuerPrefix = "https://login.microsoftonline.com/"
	// MicrosoftIssuerSuffix ends it.
	MicrosoftIssuerSuffix = "/v2.0"
)

// ReservedAuthParams are the authorization request parameters the
// federation sets itself: an identity provider's extra_auth_params may
// not name them.
var ReservedAuthParams = []string{
	"client_id", "redirect_uri", "response_type", "scope", "state", "nonce", "code_challenge", "code_challenge_method",
}

// DefaultIdPScopes are the scopes asked of an identity provider that
// names none.
var DefaultIdPScopes = []string{"openid", "email", "profile"}

// SealIdPSecret seals the upstream client secret of identity provider
// idpID of tenant tid (its owner: model.SystemTenantID for system-wide
// providers) for IdentityProviderSpec.ClientSecretSealed: base64 of the
// secretbox output, bound to tenant and provider (model.IdPSecretAAD), so
// a sealed value copied to another provider does not open.
func SealIdPSecret(box *secretbox.Box, tid, idpID, secret string) (string, error) {
	if box == nil {
		return "", errors.New("seal an identity provider's client secret: no secret box")
	}
	sealed, err := box.Seal([]byte(secret), model.IdPSecretAAD(tid, idpID))
	if err != nil {
		return "", fmt.Errorf("seal the client secret of identity provider %q: %w", idpID, err)
	}
	return base64.StdEncoding.EncodeToString(sealed), nil
}

// OpenIdPSecret opens what SealIdPSecret made for the same tenant and
// provider; "" (a public client, PKCE only) opens to "".
func OpenIdPSecret(box *secretbox.Box, tid, idpID, sealed string) (string, error) {
	if sealed == "" {
		return "", nil
	}
	if box == nil {
		return "", errors.New("open an identity provider's client secret: no secret box")
	}
	raw, err := base64.StdEncoding.DecodeString(sealed)
	if err != nil {
		return "", fmt.Errorf("open the client secret of identity provider %q: not base64", idpID)
	}
	out, err := box.Open(raw, model.IdPSecretAAD(tid, idpID))
	if err != nil {
		return "", fmt.Errorf("open the client secret of identity provider %q: %w", idpID, err)
	}
	return string(out), nil
}

// IdentityProviderFor is the live identity provider id that tenant tid's
// logins may use: the tenant's own, else the system tenant's (system-wide
// providers serve every tenant). The result's Meta.TenantID is the owner,
// which opens its secret (OpenIdPSecret). store.ErrNotFound when neither
// has it. Inactive providers are returned too: the caller checks Active.
func IdentityProviderFor(ctx context.Context, rd store.Reader, tid, id string) (*store.Typed[model.IdentityProviderSpec], error) {
	t, err := IdentityProviders.Get(ctx, rd, tid, id)
	if !errors.Is(err, store.ErrNotFound) || tid == model.SystemTenantID {
		return t, err
	}
	return IdentityProviders.Get(ctx, rd, model.SystemTenantID, id)
}

// GitHubSubject is the external subject of a GitHub identity (type
// github, which is OAuth 2.0 without ID tokens): the numeric "id" of the
// user_info_endpoint's answer (GET https://api.github.com/user), in
// decimal. The login name is not used: GitHub users can rename themselves
// and a freed login can be taken by someone else; the id never changes.
func GitHubSubject(userInfo []byte) (string, error) {
	var u struct {
		ID json.Number `json:"id"`
	}
	if err := json.Unmarshal(userInfo, &u); err != nil {
		return "", fmt.Errorf("github user info: %w", err)
	}
	n, err := strconv.ParseInt(u.ID.String(), 10, 64)
	if err != nil || n <= 0 {
		return "", errors.New("github user info: no numeric id")
	}
	return strconv.FormatInt(n, 10), nil
}
