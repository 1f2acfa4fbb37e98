package oauth

import (
	"encoding/json"
	"net/http"
	"slices"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/gatehouse-dev/gatehouse/model"
)

// discoveryDoc is the discovery document of one server (OpenID Connect
// Discovery 1.0, RFC 8414): the 16 fields of seed 000's
// openidConfiguration and the endpoints Gatehouse serves, narrowed to
// the server. Device authorization, token exchange and the JWT bearer
// grant are not offered, so not advertised.
type discoveryDoc struct {
	Issuer                                    string   `json:"issuer"`
	AuthorizationEndpoint                     string   `json:"authorization_endpoint"`
	TokenEndpoint                             string   `json:"token_endpoint"`
	UserinfoEndpoint                          string   `json:"userinfo_endpoint"`
	JWKSURI                                   string   `json:"jwks_uri"`
	IntrospectionEndpoint                     string   `json:"introspection_endpoint"`
	RevocationEndpoint                        string   `json:"revocation_endpoint"`
	EndSessionEndpoint                        string   `json:"end_session_endpoint"`
	ScopesSupported                           []string `json:"scopes_supported"`
	ResponseTypesSupported                    []string `json:"response_types_supported"`
	ResponseModesSupported                    []string `json:"response_modes_supported"`
	GrantTypesSupported                       []string `json:"grant_types_supported"`
	SubjectTypesSupported                     []string `json:"subject_types_supported"`
	IDTokenSigningAlgValuesSupported          []string `json:"id_token_signing_alg_values_supported"`
	TokenEndpointAuthMethodsSupported         []string `json:"token_endpoint_auth_methods_supported"`
	TokenEndpointAuthSigningAlgValues         []string `json:"token_endpoint_auth_signing_alg_values_supported"`
	IntrospectionEndpointAuthMethodsSupported []string `json:"introspection_endpoint_auth_methods_supported"`
	RevocationEndpointAuthMethodsSupported    []string `json:"revocation_endpoint_auth_methods_supported"`
	ClaimsSupported                           []string `json:"claims_supported"`
	CodeChallengeMethodsSupported             []string `json:"code_challenge_methods_supported"`
	ClaimsParameterSupported                  bool     `json:"claims_parameter_supported"`
	RequestParameterSupported                 bool     `json:"request_parameter_supported"`
	RequestURIParameterSupported              bool     `json:"request_uri_parameter_supported"`
}

// registeredClaims are the claims of Gatehouse's tokens beside the
// standard user claims and the server's mapped claims.
var registeredClaims = []string{"iss", "sub", "aud", "exp", "iat", "nbf", "jti", "auth_time", "nonce", "amr",
	"at_hash", "c_hash", "azp", "client_id", claimScope, claimTenant, claimSubType}

// discovery answers the server's discovery document.
func (p *Provider) discovery(w http.ResponseWriter, r *http.Request, rq *request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		writeOAuthError(w, http.StatusMethodNotAllowed, "invalid_request", "method: discovery takes GET")
		return
	}
	ctx := r.Context()
	base := op.CreateDiscoveryConfig(ctx, p.op, p.storage)
	spec := rq.spec()
	doc := discoveryDoc{
		Issuer:                rq.issuer,
		AuthorizationEndpoint: base.AuthorizationEndpoint, TokenEndpoint: base.TokenEndpoint,
		UserinfoEndpoint: base.UserinfoEndpoint, JWKSURI: base.JwksURI,
		IntrospectionEndpoint: base.IntrospectionEndpoint, RevocationEndpoint: base.RevocationEndpoint,
		EndSessionEndpoint:                        base.EndSessionEndpoint,
		ResponseTypesSupported:                    []string{string(oidc.ResponseTypeCode)},
		ResponseModesSupported:                    []string{string(oidc.ResponseModeQuery), string(oidc.ResponseModeFormPost)},
		SubjectTypesSupported:                     []string{"public"},
		IDTokenSigningAlgValuesSupported:          []string{string(signatureAlgorithm(spec))},
		TokenEndpointAuthMethodsSupported:         []string{model.AuthMethodBasic, model.AuthMethodPost, model.AuthMethodPrivateKeyJWT, model.AuthMethodNone},
		TokenEndpointAuthSigningAlgValues:         []string{"RS256"},
		IntrospectionEndpointAuthMethodsSupported: []string{model.AuthMethodBasic, model.AuthMethodPrivateKeyJWT},
		RevocationEndpointAuthMethodsSupported:    []string{model.AuthMethodBasic, model.AuthMethodPost, model.AuthMethodPrivateKeyJWT, model.AuthMethodNone},
		CodeChallengeMethodsSupported:             []string{string(oidc.CodeChallengeMethodS256)},
	}
	for _, g := range []string{model.GrantAuthorizationCode, model.GrantImplicit, model.GrantClientCredentials, model.GrantRefreshToken} {
		if serverAllows(spec, g) {
			doc.GrantTypesSupported = append(doc.GrantTypesSupported, g)
		}
	}
	if serverAllows(spec, model.GrantImplicit) {
		doc.ResponseTypesSupported = append(doc.ResponseTypesSupported, string(oidc.ResponseTypeIDToken), string(oidc.ResponseTypeIDTokenOnly))
		doc.ResponseModesSupported = append(doc.ResponseModesSupported, string(oidc.ResponseModeFragment))
	}
	for _, s := range standardScopes {
		if s != oidc.ScopeOfflineAccess || serverAllows(spec, model.GrantRefreshToken) {
			doc.ScopesSupported = append(doc.ScopesSupported, s)
		}
	}
	scopes, err := rq.cfg.serverScopes(ctx)
	if err != nil {
		p.serverError(w, "list the server's scopes", err)
		return
	}
	doc.ScopesSupported = appendNew(doc.ScopesSupported, scopes...)
	doc.ClaimsSupported = slices.Clone(registeredClaims)
	for _, names := range standardClaims {
		doc.ClaimsSupported = appendNew(doc.ClaimsSupported, names...)
	}
	claims, err := rq.cfg.serverClaims(ctx)
	if err != nil {
		p.serverError(w, "list the server's claims", err)
		return
	}
	for _, c := range claims {
		doc.ClaimsSupported = appendNew(doc.ClaimsSupported, c.Spec.Name)
	}
	slices.Sort(doc.ClaimsSupported[len(registeredClaims):])
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=60")
	_ = json.NewEncoder(w).Encode(doc)
}

// appendNew appends the values not in list yet.
func appendNew(list []string, values ...string) []string {
	for _, v := range values {
		if !slices.Contains(list, v) {
			list = append(list, v)
		}
	}
	return list
}
