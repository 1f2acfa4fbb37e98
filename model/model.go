// Package model holds the domain types shared by the admin API, the compiler
// and the gateways: kind names, the specs stored in each object's envelope,
// identifier rules and lifecycle rules.
package model

import (
	"fmt"
	"regexp"
	"slices"
)

// Kind names used in the store. Tenant-scoped unless noted.
const (
	KindTenant          = "tenants"           // system-level
	KindAdminCredential = "admin-credentials" // tenant-bound admin API tokens
)

var (
	tenantIDPattern = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	// objectIDPattern is what the admin API accepts as the id of any object
	// other than a tenant: URL-safe, no separators, bounded.
	objectIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._~-]{0,127}$`)
)

// ValidTenantID reports whether id is a valid tenant id: lowercase letters,
// digits and dashes, 1-63 characters, not starting or ending with a dash
// (a DNS label, so it can appear in host names and URLs unescaped).
func ValidTenantID(id string) bool { return tenantIDPattern.MatchString(id) }

// reservedTenantIDs are the first path segments the process serves itself
// beside the tenants' authorization servers at /{tid}/{aid}/…: no tenant
// may take them ("system" is the reserved tenant of system-wide servers).
var reservedTenantIDs = []string{"api", "system", "healthz", "readyz", "metrics", "console", "static", "login"}

// ReservedTenantID reports whether id is reserved: it can never be a new
// tenant's id.
func ReservedTenantID(id string) bool { return slices.Contains(reservedTenantIDs, id) }

// ReservedTenantIDs lists the reserved tenant ids (for error messages).
func ReservedTenantIDs() []string { return slices.Clone(reservedTenantIDs) }

// ValidObjectID reports whether id is a valid object id: 1-128 characters of
// letters, digits, '.', '_', '~' and '-', starting with a letter or digit.
func ValidObjectID(id string) bool { return objectIDPattern.MatchString(id) }

// TenantIDRule and ObjectIDRule describe the id rules in error messages.
const (
	TenantIDRule = "lowercase letters, digits and dashes, 1-63 characters, not starting or ending with a dash"
	ObjectIDRule = "letters, digits, '.', '_', '~' and '-', 1-128 characters, starting with a letter or digit"
)

// TenantStatus is a tenant's lifecycle state (seed 004).
type TenantStatus string

// Tenant statuses.
const (
	TenantCreating  TenantStatus = "CREATING"
	TenantAvailable TenantStatus = "AVAILABLE"
	TenantUpdating  TenantStatus = "UPDATING"
	TenantDisabled  TenantStatus = "DISABLED"
	TenantDeleted   TenantStatus = "DELETED"
)

// Valid reports whether s is one of the known statuses.
func (s TenantStatus) Valid() bool {
	switch s {
	case TenantCreating, TenantAvailable, TenantUpdating, TenantDisabled, TenantDeleted:
		return true
	}
	return false
}

// tenantTransitions lists the status changes the system allows. CREATING and
// UPDATING are set by the system while it provisions; DELETED only by
// deleting the tenant. A caller may move between AVAILABLE and DISABLED.
var tenantTransitions = map[TenantStatus][]TenantStatus{
	TenantCreating:  {TenantAvailable, TenantDisabled, TenantDeleted},
	TenantAvailable: {TenantUpdating, TenantDisabled, TenantDeleted},
	TenantUpdating:  {TenantAvailable, TenantDisabled, TenantDeleted},
	TenantDisabled:  {TenantAvailable, TenantDeleted},
	TenantDeleted:   {},
}

// CanTransition reports whether a tenant may go from one status to another.
// Staying in the same status is always allowed, except in DELETED.
func CanTransition(from, to TenantStatus) bool {
	if from == to {
		return from != TenantDeleted
	}
	for _, s := range tenantTransitions[from] {
		if s == to {
			return true
		}
	}
	return false
}

// ClientSettableStatus reports whether an API caller may request status s on
// create or update (the others are set by the system).
func ClientSettableStatus(s TenantStatus) bool {
	return s == TenantAvailable || s == TenantDisabled
}

// TransitionError explains a refused status change.
type TransitionError struct{ From, To TenantStatus }

func (e *TransitionError) Error() string {
	return fmt.Sprintf("tenant status cannot change from %s to %s", e.From, e.To)
}

// AuthAttribute declares an authentication-context attribute available to
// policies and claims (seed 003 authentication_context_settings).
type AuthAttribute struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	Type        string `json:"type,omitempty"`
}

// AuthContextSettings lists a tenant's authentication-context attributes.
type AuthContextSettings struct {
	Attributes []AuthAttribute `json:"attributes"`
}

// TenantSpec is the stored spec of a tenant. The description lives in the
// envelope; the display name lives here because, unlike envelope names,
// tenant names need not be unique (the id is the unique label).
type TenantSpec struct {
	Name                          string               `json:"name"`
	Status                        TenantStatus         `json:"status"`
	AuthenticationContextSettings *AuthContextSettings `json:"authentication_context_settings,omitempty"`
	// Directory settings (issue F, seeds 000/002/004).
	// OrganizationType is adhoc or domain.
	OrganizationType string `json:"organization_type,omitempty"`
	// Domains are the tenant's email domains (login dispatch by email).
	Domains []string `json:"domains,omitempty"`
	// ProviderScope is global or organization; ProviderID an identity
	// provider the tenant logs in with.
	ProviderScope string `json:"provider_scope,omitempty"`
	ProviderID    string `json:"provider_id,omitempty"`
	// MFAProvider is "" (none) or totp.
	MFAProvider string `json:"mfa_provider,omitempty"`
	RealmName   string `json:"realm_name,omitempty"`
}

// AdminCredentialSpec is a tenant-bound admin API token. Only the SHA-256 of
// the secret is stored; the secret is shown once, when it is created.
type AdminCredentialSpec struct {
	SecretHash string `json:"secret_hash"`
}
