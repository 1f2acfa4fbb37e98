// Package pathcorpus is the table of request path classes that every
// enforcement point is tested with (the Go fast path, the Rego library, the
// reverse proxy, the policy test endpoint): each case gives a raw request
// target and what every point must make of it — the canonical path it
// routes on and forwards, or the status it refuses it with.
package pathcorpus

import "strings"

// Case is one raw request target.
type Case struct {
	// Class names the path class (for test names).
	Class string
	// Target is the raw request target (path and optional query).
	Target string
	// Canonical is the canonical path, when the path is accepted.
	Canonical string
	// Status is 0 for an accepted path, else the refusal's HTTP status.
	Status int
}

// Cases enumerates the path classes. The paths are written against a
// gateway where "GET /{p...}" is public and "* /admin/{p...}" is denied, so
// that every accepted variant of an /admin path must be denied and every
// refused one refused, never served by the public route.
func Cases() []Case {
	long := "/" + strings.Repeat("a", 8192)
	return []Case{
		{"plain", "/admin/secret.txt", "/admin/secret.txt", 0},
		{"plain public", "/public/page", "/public/page", 0},
		{"root", "/", "/", 0},
		{"query kept", "/admin/secret.txt?x=1&y=%2F", "/admin/secret.txt", 0},
		{"empty segment leading", "//admin/secret.txt", "/admin/secret.txt", 0},
		{"empty segment inner", "/admin//secret.txt", "/admin/secret.txt", 0},
		{"empty segments many", "///admin///secret.txt", "/admin/secret.txt", 0},
		{"empty segment trailing", "/admin/secret.txt//", "/admin/secret.txt/", 0},
		{"encoded unreserved first segment", "/%61dmin/secret.txt", "/admin/secret.txt", 0},
		{"encoded unreserved upper hex", "/%41dmin/x", "/Admin/x", 0},
		{"encoded unreserved every char", "/%61%64%6d%69%6e/secret", "/admin/secret", 0},
		{"encoded unreserved second segment", "/admin/%73ecret.txt", "/admin/secret.txt", 0},
		{"encoded tilde dash underscore", "/admin/%7E%2d%5F", "/admin/~-_", 0},
		{"double encoding kept", "/%2561dmin/secret.txt", "/%2561dmin/secret.txt", 0},
		{"mixed case escapes upper-cased", "/admin/caf%c3%a9", "/admin/caf%C3%A9", 0},
		{"reserved escape kept", "/admin/a%3ab", "/admin/a%3Ab", 0},
		{"encoded space kept", "/admin/a%20b", "/admin/a%20b", 0},
		{"sub-delims raw", "/admin/a!$&'()*+,=:@b", "/admin/a!$&'()*+,=:@b", 0},
		{"encoded slash", "/admin%2Fsecret.txt", "", 400},
		{"encoded slash lower", "/public/..%2fadmin", "", 400},
		{"encoded backslash", "/admin%5csecret", "", 400},
		{"encoded dot", "/%2e%2e/admin", "", 400},
		{"encoded dot in name", "/admin/a%2Eb", "", 400},
		{"encoded NUL", "/admin/a%00", "", 400},
		{"encoded control", "/admin/a%0d%0aX: y", "", 400},
		{"encoded DEL", "/admin/a%7f", "", 400},
		{"dot segment", "/public/../admin/secret.txt", "", 400},
		{"single dot segment", "/./admin/secret.txt", "", 400},
		{"trailing dot segment", "/admin/..", "", 400},
		{"trailing dot", "/admin./secret.txt", "", 400},
		{"trailing dots", "/admin/secret.txt...", "", 400},
		{"semicolon parameter", "/admin;x=1/secret.txt", "", 400},
		{"semicolon parameter last", "/public/page;jsessionid=1", "", 400},
		{"encoded semicolon", "/admin%3bx/secret.txt", "", 400},
		{"raw backslash", "/public\\..\\admin", "", 400},
		{"invalid escape", "/admin/%zz", "", 400},
		{"truncated escape", "/admin/%4", "", 400},
		{"trailing percent", "/admin/%", "", 400},
		{"raw space", "/admin/a b", "", 400},
		{"raw non-ascii", "/admin/caf\xc3\xa9", "", 400},
		{"raw control", "/admin/a\tb", "", 400},
		{"raw brace", "/admin/{x}", "", 400},
		{"overlong", long, "", 414},
		{"longest accepted", long[:8192], long[:8192], 0},
	}
}
