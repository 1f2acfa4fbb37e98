package policies

import (
	"net/url"
	"sort"
	"strings"

	"github.com/gatehouse-dev/gatehouse/routing"
)

// CanonicalRequest is what CanonicalizeInput made of an input document.
type CanonicalRequest struct {
	// Path is the canonical path (routing.CanonicalPath) and RawQuery the
	// query as sent: what the decision is made on and what is forwarded.
	// With PathError set, Path is the raw path and nothing is routed.
	Path      string
	RawQuery  string
	PathError *routing.PathError
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
	var out CanonicalRequest
	path, query, err := routing.CanonicalTarget(raw)
	if err != nil {
		out.PathError, _ = err.(*routing.PathError)
		out.Path = routing.RequestPath(raw)
	} else {
		out.Path, out.RawQuery = path, query
		target := path
		if strings.Contains(strings.SplitN(raw, "#", 2)[0], "?") {
			target += "?" + query
		}
		http["path"] = target
		input["parsed_path"] = ParsedPath(path)
	}
	headers, _ := http["headers"].(map[string]any)
	kept := make(map[string]any, len(headers))
	present := map[string]bool{}
	for k, v := range headers {
		if IsOwnedHeader(owned, k) {
			present[strings.ToLower(k)] = true
			continue
		}
		kept[k] = v
	}
	http["headers"] = kept
	for h := range present {
		out.OwnedPresent = append(out.OwnedPresent, h)
	}
	sort.Strings(out.OwnedPresent)
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
