package oauth

import (
	"net/url"

	"github.com/zitadel/oidc/v3/pkg/oidc"

	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/store"
)

// The web console's built-in client (docs/oauth.md, "The console's
// client"). Every admin server — each tenant's admin server and
// system/system (model.IsAdminServer) — has the public client
// model.ConsoleClientID: authorization_code only, token endpoint
// authentication none (so PKCE S256 is required, as for every public
// client), its one redirect URI and post-logout redirect URI the console
// under the public URL ({public_url}/console/), matched exactly. It is
// made here from the public URL, never stored: every tenant, old or new,
// has it without a migration, a changed public URL moves it along, and
// no tenant admin can change, delete or replace it (the admin API
// refuses the id for a stored client; the provider resolves it to the
// built-in client on admin servers and to nothing on any other server,
// never reading the store for it). Its tokens are the server's like any
// other client's: the admin API accepts them as the tenant's (or the
// system's) admins, and its users are the server's login methods.

// consoleClientUID is the UID of the built-in client (kept in the
// records of its tokens): it is never re-created, so it never changes.
const consoleClientUID = "builtin:" + model.ConsoleClientID

// consoleClientName is what the login page says it signs in to.
const consoleClientName = "the Gatehouse console"

// consoleRedirect is the console's redirect URI under a public URL, or ""
// when the URL cannot have one: plain http to a host other than a
// loopback one (redirect URIs are https, or http on loopback).
func consoleRedirect(public *url.URL) string {
	if public.Scheme != "https" && !(public.Scheme == "http" && model.LoopbackRedirectHost(public.Hostname())) {
		return ""
	}
	return model.ConsoleRedirectURI(public.String())
}

// consoleClient is the built-in client of the request's server, or nil
// when the server is not an admin server or the public URL gives the
// console no redirect URI.
func (p *Provider) consoleClient(rq *request) *store.Typed[model.ClientSpec] {
	if p.console == "" || !model.IsAdminServer(rq.tenantID, rq.serverID) {
		return nil
	}
	return &store.Typed[model.ClientSpec]{
		Meta: store.Object{Kind: model.KindClient, TenantID: rq.tenantID, ID: model.ConsoleClientID, UID: consoleClientUID,
			Name: model.ConsoleClientID, Description: "Built in: the web console's sign-in."},
		Spec: model.ClientSpec{
			Name: consoleClientName, ServerID: rq.serverID, System: true, Public: true,
			GrantTypes: []string{model.GrantAuthorizationCode}, ResponseTypes: []string{string(oidc.ResponseTypeCode)},
			RedirectURIs: []string{p.console}, PostLogoutRedirectURIs: []string{p.console},
			// The OpenID scopes only: the admin API needs none of the
			// server's scopes (any access token of an admin server is
			// an admin's).
			Scopes:                  []string{oidc.ScopeOpenID},
			TokenEndpointAuthMethod: model.AuthMethodNone,
		},
	}
}

// consoleOrigin is the origin of the built-in client's redirect URI on
// the request's server ("" when it has no such client), for CORS.
func (p *Provider) consoleOrigin(rq *request) string {
	if p.consoleClient(rq) == nil {
		return ""
	}
	u, err := url.Parse(p.console)
	if err != nil {
		return ""
	}
	return u.Scheme + "://" + u.Host
}
