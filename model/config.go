package model

import "encoding/json"

// Tenant configuration kinds (tenant-scoped).
const (
	KindService           = "services"
	KindAPI               = "apis"
	KindPolicy            = "policies"
	KindScope             = "scopes"
	KindGateway           = "gateways"
	KindGatewayCredential = "gateway-credentials" // child of a gateway
	KindSigningKey        = "signing-keys"        // the tenant's bundle signing key
	KindIssuer            = "issuers"             // trusted token issuers
)

// ServiceSpec is a protected upstream. Name (unique per tenant) and
// description live in the envelope.
type ServiceSpec struct {
	// URL is the upstream base URL (http or https).
	URL string `json:"url"`
	// Hosts are the domains the gateway serves this service under (exact or
	// "*.suffix"); none means any host not claimed by another service.
	Hosts    []string `json:"hosts,omitempty"`
	ServerID string   `json:"server_id,omitempty"`
	// WithSpecification is set when the APIs were imported from OpenAPI.
	WithSpecification bool `json:"with_specification,omitempty"`
	// CORS, when set, lets browsers of other origins call the service
	// (preflights of allowed origins are answered without authorization).
	CORS *CORSSettings `json:"cors,omitempty"`
}

// APISpec is one operation of a service: a method and a path template.
// The envelope's ParentID is the service id.
type APISpec struct {
	ServiceID string `json:"service_id"`
	Method    string `json:"method"`
	Path      string `json:"path"`
	PolicyID  string `json:"policy_id,omitempty"`
	// CanHavePolicy false forbids binding a policy (seed 003).
	CanHavePolicy       bool     `json:"can_have_policy"`
	DataClassifications []string `json:"data_classifications,omitempty"`
	// Public APIs are allowed without a policy (and get ext_authz disabled
	// at the route); other APIs without a policy are denied.
	Public bool `json:"public,omitempty"`
	// Imported APIs came from an OpenAPI document.
	Imported bool `json:"imported,omitempty"`
	// OperationID is the OpenAPI operationId of an imported API.
	OperationID string `json:"operation_id,omitempty"`
	// Position is the operation's position in its service (import order).
	Position int `json:"position,omitempty"`
	// ClaimsToHeaders forwards validated token claims to the upstream:
	// claim (dotted path) -> header name.
	ClaimsToHeaders map[string]string `json:"claims_to_headers,omitempty"`
}

// APIName is the envelope name of an API: unique per service, method and
// template shape, so equivalent routes conflict.
func APIName(serviceID, method, shape string) string {
	return serviceID + " " + method + " " + shape
}

// Policy languages.
const (
	LanguageRego       = "rego"
	LanguageValidators = "validators"
)

// ValidatorConfig is one declarative check of a validators policy (seed 003).
type ValidatorConfig struct {
	Name     string           `json:"name"`
	Conf     map[string]any   `json:"conf,omitempty"`
	Recovery []RecoveryConfig `json:"recovery,omitempty"`
}

// RecoveryConfig is carried through from the seed; it has no effect on
// decisions.
type RecoveryConfig struct {
	ID   string `json:"id"`
	Type string `json:"type"`
}

// PolicySpec is a policy. Its policy_name is the envelope name.
type PolicySpec struct {
	Language   string            `json:"language"`
	Definition string            `json:"definition,omitempty"`
	Validators []ValidatorConfig `json:"validators,omitempty"`
	Type       string            `json:"type,omitempty"`
	// Tests is the policy's tests module: Rego test_ rules, run when the
	// policy is saved and by `gatehouse policy test`, never part of a
	// bundle (docs/bundles.md, "Tests").
	Tests string `json:"tests,omitempty"`
	// DryRun policies are evaluated and logged, but their denials do not
	// block requests.
	DryRun bool `json:"dry_run,omitempty"`
}

// ScopeSpec is an OAuth scope policies can require. Its name is the
// envelope name.
type ScopeSpec struct {
	DisplayName string `json:"display_name,omitempty"`
	ServiceID   string `json:"service_id,omitempty"`
	ServerID    string `json:"server_id,omitempty"`
}

// Gateway types.
const (
	GatewayEnvoy = "envoy"
	// GatewayGRPC is a proxyless gRPC gateway: gRPC clients and servers
	// consume the xDS resources themselves.
	GatewayGRPC = "grpc"
)

// GatewaySpec is an enforcement point. Its name is the envelope name.
type GatewaySpec struct {
	Type string `json:"type"`
	// ServiceIDs bound to the gateway; empty means every service of the
	// tenant.
	ServiceIDs []string `json:"service_ids,omitempty"`
	// DryRun gateways log real decisions but allow every request.
	DryRun bool `json:"dry_run,omitempty"`
	// AllowUnmatchedRoutes lets requests that match no API through (the
	// default denies them with 404).
	AllowUnmatchedRoutes bool `json:"allow_unmatched_routes,omitempty"`
	// ExposeTokenErrors lets the 401 of an invalid bearer token say why
	// (WWW-Authenticate error_description: expired, audience_mismatch, …);
	// by default only decision logs have the reason.
	ExposeTokenErrors bool   `json:"expose_token_errors,omitempty"`
	ServerID          string `json:"server_id,omitempty"`
	// ListenerAddress and ListenerPort are where the gateway's Envoy
	// listens (xDS); defaults 0.0.0.0 and 10000.
	ListenerAddress string `json:"listener_address,omitempty"`
	ListenerPort    int    `json:"listener_port,omitempty"`
	// RequestBody, when set, makes Envoy send request bodies to the
	// authorizer (ext_authz with_request_body).
	RequestBody *RequestBodySettings `json:"request_body,omitempty"`
	// PolicyTimeoutMS bounds one policy evaluation in the gateway's
	// authorizer, in milliseconds (0: DefaultPolicyTimeoutMS); a check
	// whose policy runs longer is denied.
	PolicyTimeoutMS int `json:"policy_timeout_ms,omitempty"`
	// DecisionLogs is which decisions the gateway's authorizers log, as
	// ParseDecisionLogMode reads it: on, off, denied or sample:N; empty is
	// on (DefaultDecisionLogs), which is stored as empty.
	DecisionLogs string `json:"decision_logs,omitempty"`
}

// Policy evaluation deadlines of gateways, in milliseconds.
const (
	DefaultPolicyTimeoutMS = 50
	MaxPolicyTimeoutMS     = 1000
)

// DecisionLogStream is the runtime log stream holding gateways' decision
// log events (keyed by gateway).
const DecisionLogStream = "decisions"

// Gateway listener defaults.
const (
	DefaultListenerAddress = "0.0.0.0"
	DefaultListenerPort    = 10000
)

// RequestBodySettings is ext_authz's with_request_body.
type RequestBodySettings struct {
	MaxRequestBytes     uint32 `json:"max_request_bytes"`
	AllowPartialMessage bool   `json:"allow_partial_message,omitempty"`
}

// IssuerSpec is a token issuer the tenant's gateways trust (an OIDC
// provider or an authorization server). Its name is the envelope name.
type IssuerSpec struct {
	// Issuer is the exact iss claim value (the issuer URL).
	Issuer string `json:"issuer"`
	// Audiences: a token's aud must contain at least one of them.
	Audiences []string `json:"audiences"`
	// Keys come from exactly one of: JWKS (inline JSON Web Key Set),
	// JWKSURI, or Discovery (the issuer's OIDC discovery document).
	JWKS      json.RawMessage `json:"jwks,omitempty"`
	JWKSURI   string          `json:"jwks_uri,omitempty"`
	Discovery bool            `json:"discovery,omitempty"`
}

// GatewayCredentialSpec is a gateway's bearer secret for the bundle
// service and the xDS server, stored as a SHA-256 hash. The envelope's
// ParentID is the gateway.
type GatewayCredentialSpec struct {
	GatewayID  string `json:"gateway_id"`
	SecretHash string `json:"secret_hash"`
}

// SigningKeySpec is a tenant's bundle signing key. The private key is sealed
// with the control plane's master key (AES-256-GCM, bound to the tenant).
type SigningKeySpec struct {
	KeyID            string `json:"key_id"`
	Algorithm        string `json:"algorithm"`
	PublicKeyPEM     string `json:"public_key_pem"`
	SealedPrivateKey []byte `json:"sealed_private_key"`
}
