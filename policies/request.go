package policies

import (
	"iter"
	"maps"
	"net/url"
	"slices"
	"sort"
	"strings"

	"github.com/gatehouse-dev/gatehouse/routing"
)

// CanonicalRequest is what CanonicalizeInput made of an input document.
type CanonicalRequest struct {
	// Path is the canonical path (routing.CanonicalPath) and RawQuery the
	// query as sent: what the decision is made on and what is forwarded.
	// With PathError set, Path is the raw path and nothing is routed.
	Path     string
	RawQuery string
	// Target is the request target policies see (path and, when the client
	// sent a '?', "?" and the query); empty with PathError set.
	Target    string
	PathError *routing.PathError
	// Refused is the first reason the request is refused before any policy
	// runs: PathError, else a header name with '_', else a query that is not
	// canonical. Nil for a request that goes on.
	Refused *routing.PathError
	// OwnedPresent are the owned header names the client sent, lower-cased
	// and sorted; they were removed from the input.
	OwnedPresent []string
}

// OwnedHeaders is the set of a bundle's owned header names.
func (c *BundleConfig) OwnedHeaders() map[string]bool {
	set := make(map[string]bool, len(c.RequestHeaders.Owned))
	for _, h := range c.RequestHeaders.Owned {
		set[h] = true
	}
	return set
}

// IsOwnedHeader reports whether a header name (any case) is the gateway's.
func IsOwnedHeader(owned map[string]bool, name string) bool {
	n := strings.ToLower(name)
	return owned[n] || strings.HasPrefix(n, OwnedHeaderPrefix)
}

// CanonicalizeInput turns an opa-envoy-plugin input document into the
// canonical request that policies see, in place, exactly as the Rego
// entrypoint does (data.gatehouse.authz.policy_input): the request path
// (attributes.request.http.path) becomes the canonical path followed by
// the query as sent, parsed_path is computed from it, and the owned
// request headers are removed (attributes.request.http.headers is always
// present afterwards). A refused path is left as it is.
func CanonicalizeInput(input map[string]any, owned map[string]bool) CanonicalRequest {
	http := childMap(childMap(childMap(input, "attributes"), "request"), "http")
	raw, _ := http["path"].(string)
	headers, _ := http["headers"].(map[string]any)
	out := Canonicalize(raw, maps.Keys(headers), owned)
	if out.PathError == nil {
		http["path"] = out.Target
		input["parsed_path"] = ParsedPath(out.Path)
		input["parsed_query"] = ParsedQuery(out.RawQuery)
	}
	kept := make(map[string]any, len(headers))
	for k, v := range headers {
		if !IsOwnedHeader(owned, k) {
			kept[k] = v
		}
	}
	http["headers"] = kept
	return out
}

// Canonicalize computes the canonical request of a raw request target and
// the names of its headers, without building any document: the authorizer
// builds the policy input from it directly (CanonicalizeInput applies it to
// a document).
func Canonicalize(rawTarget string, headerNames iter.Seq[string], owned map[string]bool) CanonicalRequest {
	var out CanonicalRequest
	path, query, err := routing.CanonicalTarget(rawTarget)
	if err != nil {
		out.PathError, _ = err.(*routing.PathError)
		out.Path = routing.RequestPath(rawTarget)
	} else {
		out.Path, out.RawQuery, out.Target = path, query, path
		if before, _, _ := strings.Cut(rawTarget, "#"); strings.Contains(before, "?") {
			out.Target += "?" + query
		}
	}
	underscore := false
	for k := range headerNames {
		if strings.Contains(k, "_") {
			underscore = true
		}
		if IsOwnedHeader(owned, k) {
			n := strings.ToLower(k)
			if !slices.Contains(out.OwnedPresent, n) {
				out.OwnedPresent = append(out.OwnedPresent, n)
			}
		}
	}
	sort.Strings(out.OwnedPresent)
	switch {
	case out.PathError != nil:
		out.Refused = out.PathError
	case underscore:
		out.Refused = &routing.PathError{Status: 400, Reason: ReasonUnderscoreHeader, Detail: "header name with '_'"}
	case !canonicalQuery(out.RawQuery):
		out.Refused = &routing.PathError{Status: 400, Reason: ReasonNonCanonicalQuery, Detail: out.RawQuery}
	}
	return out
}

// Reasons of refused requests besides their path, shared word for word
// with the Rego library.
const (
	// ReasonUnderscoreHeader: CGI-style servers (WSGI, Rack, PHP) read '_'
	// as '-' ("X_User" is HTTP_X_USER, as is "X-User"), so such a name
	// could smuggle a header the gateway owns. Envoy is configured to reject
	// them too (headers_with_underscores_action).
	ReasonUnderscoreHeader = "request header names may not contain '_'"
	// ReasonNonCanonicalQuery: a query that parsers read differently (';'
	// as a separator, invalid escapes dropped) is refused.
	ReasonNonCanonicalQuery = "the request query is not canonical (';' or invalid escapes)"
)

// canonicalQuery reports whether a raw query parses the same everywhere:
// no ';' and every '%' followed by two hex digits.
func canonicalQuery(q string) bool {
	if strings.Contains(q, ";") {
		return false
	}
	for i := 0; i < len(q); i++ {
		if q[i] == '%' && (i+2 >= len(q) || !isHex(q[i+1]) || !isHex(q[i+2])) {
			return false
		}
	}
	return true
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// ParsedQuery is opa-envoy-plugin's parsed_query of a raw query: name →
// list of values.
func ParsedQuery(raw string) map[string]any {
	q, _ := url.ParseQuery(raw)
	out := make(map[string]any, len(q))
	for k, vs := range q {
		l := make([]any, len(vs))
		for i, v := range vs {
			l[i] = v
		}
		out[k] = l
	}
	return out
}

// ParsedPath is opa-envoy-plugin's parsed_path of a canonical path: the
// unescaped segments after the leading '/' ("/" is [""]).
func ParsedPath(path string) []any {
	parts := strings.Split(strings.TrimLeft(path, "/"), "/")
	out := make([]any, len(parts))
	for i, p := range parts {
		if u, err := url.PathUnescape(p); err == nil {
			p = u
		}
		out[i] = p
	}
	return out
}

// OwnedHeadersToRemove are the owned headers the client sent that an
// allowed decision must remove upstream: those neither set by the decision
// (which overwrites them) nor already listed in its removals. The Rego
// entrypoint computes the same list.
func OwnedHeadersToRemove(present []string, set map[string]any, removed []any) []any {
	skip := map[string]bool{}
	for k := range set {
		skip[strings.ToLower(k)] = true
	}
	for _, r := range removed {
		if s, ok := r.(string); ok {
			skip[strings.ToLower(s)] = true
		}
	}
	var out []any
	for _, h := range present {
		if !skip[h] {
			out = append(out, h)
		}
	}
	return out
}

func childMap(m map[string]any, key string) map[string]any {
	c, ok := m[key].(map[string]any)
	if !ok {
		c = map[string]any{}
		m[key] = c
	}
	return c
}
