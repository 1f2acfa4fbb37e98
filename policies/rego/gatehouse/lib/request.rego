# The request being authorized, read from the opa-envoy-plugin input
# document (input.attributes.request.http, plus context extensions).
package gatehouse.lib.request

http := object.get(input, ["attributes", "request", "http"], {})

method := object.get(http, "method", "")

# The path without query string and fragment.
path := split(split(object.get(http, "path", ""), "?")[0], "#")[0]

# Path segments: "/" is [""], "/a/b/" is ["a", "b", ""].
segments := split(trim_prefix(path, "/"), "/")

# A path that still holds dot segments, or encoded slashes, backslashes or
# dots an upstream might decode, is refused: what routing and the upstream
# see must be the same path (Envoy normalises paths before both).
unsafe_path if {
	some s in segments
	s in {".", ".."}
}

unsafe_path if regex.match(`(?i)%2e|%2f|%5c`, path)

unsafe_path if contains(path, "\\")

# The host, lower-cased, without port ("[::1]:8080" is "[::1]").
host := regex.replace(lower(object.get(http, "host", "")), ":[0-9]*$", "")

headers := object.get(http, "headers", {})

# Query parameters (name -> list of values): the input's parsed_query, as
# opa-envoy-plugin provides it, else decoded from the path.
query := q if {
	q := input.parsed_query
} else := q if {
	parts := split(object.get(http, "path", ""), "?")
	count(parts) > 1
	q := urlquery.decode_object(split(parts[1], "#")[0])
} else := {}

# Context extensions set on Envoy routes by the xDS control plane. The
# opa-envoy-plugin spells the key contextExtensions; both are accepted.
context_extensions := object.union(
	object.get(input, ["attributes", "context_extensions"], {}),
	object.get(input, ["attributes", "contextExtensions"], {}),
)
