// Package oauth is Gatehouse's OAuth 2.0 / OpenID Connect provider: one
// zitadel/oidc v3 op.Provider for the process (the stable NewProvider +
// Storage API) serving every authorization server of every tenant at its
// issuer {public_url}/{tid}/{aid}.
//
// # Wiring
//
//	p, err := oauth.New(oauth.Options{Store: st, Keys: serverKeys, PublicURL: public, CryptoKey: key, Logger: log})
//	p.Register(engine)      // gin: r.Any("/:tid/:aid/*rest", …), beside /api/…
//	admin.Options{Tokens: p} // TokenRevoker: a client's deletion revokes its tokens
//
// The gin handler resolves the tenant (404 unknown, 403 DISABLED) and the
// server (404), puts them in the request context — the issuer function
// and every storage call read them there — and serves, under the issuer:
//
//	/.well-known/openid-configuration, /.well-known/oauth-authorization-server  discovery (ours, per server)
//	/.well-known/jwks.json    published keys (pending, active, retiring)
//	/oauth2/authorize         (+ /callback) code flow; implicit only on servers that allow it
//	/oauth2/token             authorization_code, refresh_token, client_credentials
//	/oauth2/introspect        RFC 7662 (client_secret_basic or private_key_jwt)
//	/oauth2/revoke            RFC 7009
//	/userinfo                 GET/POST
//	/oauth2/logout            end_session (id_token_hint, post_logout_redirect_uri exact)
//	/login                    the login page (static users of the server)
//
// Everything else is zitadel's, behind one storage type (storage) that
// implements every optional interface it uses (asserted by a test:
// zitadel finds them by type assertion) and not those of grants Gatehouse
// does not offer (token exchange, device code, JWT bearer), which the
// token endpoint refuses by name before zitadel sees them.
//
// # Rules enforced here
//
//   - PKCE S256 for public clients, and for all with enforce_pkce; plain
//     refused. Redirect URIs match exactly (ports included). Unknown
//     client or redirect_uri → an HTML 400 page, never a redirect; later
//     errors go to the redirect with the state. Scopes ⊆ the standard
//     OpenID scopes and the server's scopes (the client's list when it
//     has one), else invalid_scope.
//   - An auth request belongs to the browser that started it (binding.go):
//     a binding cookie whose nonce's hash the request keeps; the login
//     page, its form (CSRF token: HMAC of the id and that nonce) and the
//     callback refuse any other browser (HTML 403), and the callback also
//     requires the session that completed the login. /authorize takes at
//     most 16 KiB and bounds what it stores (state, nonce, login_hint,
//     code_challenge, scopes); a request waits LoginWindow for its login,
//     at most Options.MaxPendingAuthRequests per server.
//   - Password verifications run at most Options.PasswordVerifications at
//     once per process (503 with Retry-After beyond the wait).
//   - Sessions and tokens of a user carry its credential version: a user
//     removed, disabled or with a new password is refused at refresh,
//     introspection, userinfo and session reuse. A refresh family ends
//     refresh_token_ttl after its code exchange, whatever the rotations.
//   - Revocation revokes only a token zitadel identified (a refresh token
//     found, a verified JWT, a decrypted opaque token): a bare jti does
//     nothing.
//   - Codes (AES-GCM of the auth request id, by zitadel) are stored
//     hashed, redeemed once (TakeState) when tokens are issued — after
//     the client, the verifier and the redirect_uri were checked, so a
//     refused exchange changes nothing — and a replay revokes every token
//     issued from the code.
//   - Refresh tokens are 256-bit random, stored hashed, single-use: the
//     exchange marks the token used atomically (PutStateIfAbsent); a
//     reuse answers invalid_grant "refresh token reuse" and revokes the
//     whole family. A refresh checks the token's client still exists with
//     the same UID.
//   - Revocation, logout, reuse, replay and single_session_per_client
//     revoke families: refresh tokens deleted, access tokens' jti on the
//     revocation list (model.KindTokenRevocation, carried by bundles).
//   - Access tokens: JWT {iss, sub, aud, exp, iat, nbf, jti, client_id,
//     scope, gh_tid, gh_sub_type} + the server's access_token claims, or
//     opaque (access_token_strategy). aud is the client's audience, else
//     the server's audiences, else the issuer URL; ID tokens get aud =
//     [client_id] only, so an ID token never passes for an access token.
//   - Subjects: static users "static/<method id>/<username>" (see
//     subjects.go), gh_sub_type user; clients their client id,
//     gh_sub_type client.
//   - OAuth errors are RFC 6749 {error, error_description}, the
//     description naming the parameter; zitadel's plain-text errors are
//     rewritten (errors.go).
//   - CORS only from the origins of the server's clients' redirect URIs,
//     without credentials (zitadel's default, every origin with
//     credentials, is off).
//   - The web console's client (console.go): every admin server (each
//     tenant's admin, and system/system) has the built-in public client
//     model.ConsoleClientID, authorization_code with PKCE only, redirect
//     URI {public_url}/console/ exactly; made from the public URL, never
//     read from the store, unknown on every other server.
//
// The runtime records (auth requests, codes, tokens, sessions) and the
// revocation writers are package grants.
package oauth
