package routing

import (
	"fmt"
	"strings"
)

// The canonical request path. Every enforcement point — the authorizer's Go
// fast path, the bundle's Rego library, the reverse proxy and the policy
// test endpoint — routes, decides and forwards on the canonical form of a
// request path, computed by CanonicalPath (and, in Rego, by
// gatehouse.lib.request, which follows the same rules):
//
//  1. Percent-encoding normalisation (RFC 3986 §6.2.2.1–2): an escape of an
//     unreserved character (ALPHA, DIGIT, '-', '_', '~') is decoded; every
//     other escape is kept, with upper-case hex digits.
//  2. Runs of '/' are merged into one ("//a///b" is "/a/b").
//  3. Refused (HTTP 400): an invalid escape ('%' not followed by two hex
//     digits); an encoded '/', '\', '.', ';', NUL or other control character
//     (%2F %5C %2E %3B %00–%1F %7F); a raw '\', ';' or control character, or
//     any raw character outside RFC 3986's pchar; a segment that is "." or
//     "..", or that ends with '.' (some upstreams strip trailing dots); a
//     path not starting with '/'.
//  4. Refused (HTTP 414): an otherwise acceptable path longer than
//     MaxPathLength bytes.
//
// Refusing instead of resolving keeps one rule simple and exact: what the
// gateway routed on is what the upstream receives, whatever the upstream
// does with dot segments, matrix parameters (";") or encoded separators.
// The generated Envoy configuration normalises paths the same way
// (normalize_path, merge_slashes, escaped slashes rejected) and answers 400
// for the refused classes Envoy does not reject itself.

// MaxPathLength is the longest request path (without query) accepted.
const MaxPathLength = 8192

// Reasons of refused paths, shared word for word with the Rego library.
const (
	ReasonNonCanonicalPath = "the request path is not canonical (dot segments, encoded '/', '\\', '.' or ';', control characters, ';' parameters or invalid escapes)"
	ReasonPathTooLong      = "the request path is longer than 8192 bytes"
)

// PathError is a refused request path.
type PathError struct {
	// Status is the HTTP status of the refusal: 400 or 414.
	Status int
	// Reason is the decision reason (ReasonNonCanonicalPath or
	// ReasonPathTooLong).
	Reason string
	// Detail says what exactly was refused (for logs and tests).
	Detail string
}

func (e *PathError) Error() string { return e.Reason + ": " + e.Detail }

func refused(format string, args ...any) *PathError {
	return &PathError{Status: 400, Reason: ReasonNonCanonicalPath, Detail: fmt.Sprintf(format, args...)}
}

// pcharRaw says which raw bytes may appear in a canonical path besides '/'
// and '%': RFC 3986's unreserved characters, sub-delimiters without ';',
// ':' and '@'.
var pcharRaw = func() (t [256]bool) {
	for _, c := range "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,=:@" {
		t[c] = true
	}
	return t
}()

// unreservedDecoded are the escaped bytes decoded by normalisation ('.' is
// not among them: an encoded dot is refused).
func unreservedDecoded(b byte) bool {
	return b >= 'A' && b <= 'Z' || b >= 'a' && b <= 'z' || b >= '0' && b <= '9' || b == '-' || b == '_' || b == '~'
}

// refusedEscape are escaped bytes that are refused.
func refusedEscape(b byte) bool {
	return b < 0x20 || b == 0x7f || b == '/' || b == '\\' || b == '.' || b == ';'
}

// CanonicalPath returns the canonical form of a request path (without query
// or fragment), or a *PathError saying why it is refused.
func CanonicalPath(path string) (string, error) {
	if !strings.HasPrefix(path, "/") {
		return "", refused("the path does not start with '/'")
	}
	var b strings.Builder
	b.Grow(len(path))
	for i := 0; i < len(path); i++ {
		c := path[i]
		switch {
		case c == '/':
			if b.Len() > 0 && strings.HasSuffix(b.String(), "/") {
				continue // merge slashes
			}
			b.WriteByte('/')
		case c == '%':
			if i+2 >= len(path) || !isHex(path[i+1]) || !isHex(path[i+2]) {
				return "", refused("invalid escape at byte %d", i)
			}
			v := unhex(path[i+1])<<4 | unhex(path[i+2])
			switch {
			case refusedEscape(v):
				return "", refused("encoded %q at byte %d", rune(v), i)
			case unreservedDecoded(v):
				b.WriteByte(v)
			default:
				b.WriteByte('%')
				b.WriteByte(upperHex(path[i+1]))
				b.WriteByte(upperHex(path[i+2]))
			}
			i += 2
		case pcharRaw[c]:
			b.WriteByte(c)
		default:
			return "", refused("character %q at byte %d", rune(c), i)
		}
	}
	out := b.String()
	for _, s := range SplitPath(out) {
		if strings.HasSuffix(s, ".") {
			return "", refused("segment %q is a dot segment or ends with '.'", s)
		}
	}
	// Checked last, so that a refused construct is a 400 whatever the
	// length (the Rego library counts characters, which are bytes here).
	if len(path) > MaxPathLength {
		return "", &PathError{Status: 414, Reason: ReasonPathTooLong, Detail: fmt.Sprintf("%d bytes", len(path))}
	}
	return out, nil
}

// CanonicalTarget canonicalises an HTTP request target ("/path?query"): the
// path as CanonicalPath does, the query kept as it is; a fragment is
// dropped. It returns the canonical path and the raw query.
func CanonicalTarget(target string) (path, rawQuery string, err error) {
	target, _, _ = strings.Cut(target, "#")
	p, q, _ := strings.Cut(target, "?")
	path, err = CanonicalPath(p)
	return path, q, err
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

func upperHex(c byte) byte {
	if c >= 'a' && c <= 'f' {
		return c - 'a' + 'A'
	}
	return c
}
