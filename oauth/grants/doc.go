// Package grants keeps the runtime records of the OAuth provider — auth
// requests, authorization codes, access tokens, refresh tokens and login
// sessions — in the store's runtime state (store.Runtime), and writes token
// revocations (model.KindTokenRevocation configuration objects, which the
// bundles carry to every gateway as data.gatehouse.config.revocations).
//
// # Records
//
// Every record is one tenant-scoped state entry holding the JSON of a type
// of this package, written with an expiry (PutStateTTL) so that nothing
// outlives the secret it describes; expired entries are invisible to every
// read at once and swept later by the store's StateSweeper. Secrets are
// never stored: entries of secrets are keyed by the hex SHA-256 of the
// secret (Hash).
//
//	kind                    id                        value          expires
//	oauth-auth-requests     auth request id (random)  AuthRequest    LoginWindow; authorization_code_ttl once logged in
//	oauth-auth-request-slots  server id "/" slot      {}             LoginWindow, or until its login
//	oauth-codes             Hash(code)                Code           authorization_code_ttl
//	oauth-codes-used        Hash(code)                CodeUse        longest token TTL of the server
//	oauth-access-tokens     jti                       AccessToken    the token's exp
//	oauth-refresh-tokens    Hash(refresh token)       RefreshToken   the token's expiry
//	oauth-refresh-used      Hash(refresh token)       RefreshUse     the token's expiry
//	oauth-revoked-families  family id                 FamilyRevoked  the family's longest expiry
//	oauth-sessions          Hash(cookie value)        Session        cookie_max_age
//	oauth-assertions-used   Hash(server, client, jti) {}             the assertion's exp
//
// An access token record (kind KindAccessTokens, id = the token's jti, in
// the tenant of the server that issued it) is what in-process verifiers
// (the admin API's token authentication) and introspection read: the
// token is valid only while its record exists, its ServerID and Issuer are
// the verifier's, ExpiresAt is in the future, and its jti is not revoked.
// Its JSON is
//
//	{"jti": "…", "server_id": "default", "issuer": "https://…/acme/default",
//	 "client_id": "web", "client_uid": "…", "sub": "…", "sub_type": "user"|"client",
//	 "scopes": ["openid", …], "audience": ["…"], "family_id": "…",
//	 "issued_at": "RFC 3339", "expires_at": "RFC 3339"}
//
// # Families
//
// Every token issued from one authorization code, and every token rotated
// from those, shares a family id: a replayed code, a reused refresh token,
// a revocation or a logout revokes the whole family (RevokeFamily): its
// refresh tokens are deleted, the jti of each unexpired access token is
// added to the revocation list, and a FamilyRevoked marker refuses any
// token of the family issued concurrently.
//
// # Revocations
//
// RevokeJTI and RevokeSubject write model.KindTokenRevocation objects in a
// configuration transaction; the object id is the hex SHA-256 of the key
// fields (issuer and jti; issuer, subject and client), so writing the same
// revocation again changes nothing (or only moves not_before and the
// expiry later). ExpiresAt is when no token the revocation matches can be
// valid any more.
//
// Runtime writes are never made inside a configuration transaction (the
// embedded store has one writer: a runtime write inside Store.Update would
// wait for itself). Functions taking a store.Tx only read runtime state.
package grants
