package model

import "strings"

// The web console and its built-in OAuth client (docs/oauth.md, "The
// console's client"): every admin server — each tenant's AdminServerID
// and SystemServerID of SystemTenantID — has a public client
// ConsoleClientID whose only redirect URI is ConsoleRedirectURI of the
// control plane's public URL. It is not stored: the provider makes it
// from the public URL, so no tenant can change it, and the admin API
// refuses the id for a client of its own.
const (
	// ConsoleClientID is the client id of the console's built-in client.
	ConsoleClientID = "gatehouse-console"
	// ConsolePath is where the console is served on the admin listener.
	ConsolePath = "/console/"
)

// ConsoleRedirectURI is the console's redirect URI (and post-logout
// redirect URI) under publicURL: {public_url}/console/.
func ConsoleRedirectURI(publicURL string) string {
	return strings.TrimRight(publicURL, "/") + ConsolePath
}

// IsAdminServer reports whether server aid of tenant tid issues admin API
// tokens the console signs in with: each tenant's admin server, and the
// system tenant's system server (system-wide). The system tenant has no
// tenant-bound admins, so its own admin server, if one were made, is not
// one.
func IsAdminServer(tid, aid string) bool {
	if tid == SystemTenantID {
		return aid == SystemServerID
	}
	return aid == AdminServerID
}

// LoopbackRedirectHost reports whether a redirect URI's host (a URL's
// Hostname) may be reached over plain http: 127.0.0.1, ::1 or localhost
// (OAuth 2.0 for Native Apps, RFC 8252 §7.3; everything else is https).
func LoopbackRedirectHost(host string) bool {
	return host == "127.0.0.1" || host == "::1" || strings.EqualFold(host, "localhost")
}
