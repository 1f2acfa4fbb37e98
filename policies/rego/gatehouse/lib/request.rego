# The request being authorized, read from the opa-envoy-plugin input
# document (input.attributes.request.http, plus context extensions).
package gatehouse.lib.request

http := object.get(input, ["attributes", "request", "http"], {})

method := object.get(http, "method", "")

# The request target as sent, without fragment, and the path without query.
raw_target := split(object.get(http, "path", ""), "#")[0]

raw_path := split(raw_target, "?")[0]

has_query if contains(raw_target, "?")

# The query string as sent (the query is never rewritten).
raw_query := substring(raw_target, indexof(raw_target, "?") + 1, -1) if has_query

# The canonical path: the rules of routing.CanonicalPath in Go, which its
# documentation and docs/authorizer.md state. Percent-escapes of unreserved
# characters are decoded, other escapes upper-cased, runs of '/' merged; a
# path with an invalid or refused escape, a refused raw character, or a
# segment that is a dot segment or ends with '.' is refused with 400, one
# longer than max_path_length bytes with 414. path is undefined for a
# refused path (path_error says why), so it is never routed.
max_path_length := 8192

reason_non_canonical := "the request path is not canonical (dot segments, encoded '/', '\\', '.' or ';', control characters, ';' parameters or invalid escapes)"

reason_too_long := "the request path is longer than 8192 bytes"

pct_parts := split(raw_path, "%")

# Raw characters allowed besides escapes: RFC 3986 pchar without ';', and '/'.
raw_ok(s) if regex.match(`^[A-Za-z0-9._~!$&'()*+,=:@/-]*$`, s)

escape_hex(p) := upper(substring(p, 0, 2)) if regex.match(`^[0-9A-Fa-f]{2}`, p)

# Encoded control characters, '/', '\', '.' and ';' are refused.
refused_escape(h) if regex.match(`^([01][0-9A-F]|7F|2F|5C|2E|3B)$`, h)

# Escapes of ALPHA, DIGIT, '-', '_' and '~' are decoded.
unreserved_escape(h) if regex.match(`^(3[0-9]|4[1-9A-F]|5[0-9A]|6[1-9A-F]|7[0-9A]|2D|5F|7E)$`, h)

piece_ok(0, p) if raw_ok(p)

piece_ok(i, p) if {
	i > 0
	h := escape_hex(p)
	not refused_escape(h)
	raw_ok(substring(p, 2, -1))
}

decoded_piece(0, p) := p

decoded_piece(i, p) := concat("", [hex.decode(h), substring(p, 2, -1)]) if {
	i > 0
	h := escape_hex(p)
	unreserved_escape(h)
}

decoded_piece(i, p) := concat("", ["%", h, substring(p, 2, -1)]) if {
	i > 0
	h := escape_hex(p)
	not unreserved_escape(h)
}

well_formed if {
	startswith(raw_path, "/")
	every i, p in pct_parts {
		piece_ok(i, p)
	}
}

normalized := regex.replace(concat("", [decoded_piece(i, p) | some i, p in pct_parts]), `/{2,}`, "/") if well_formed

path_error := {"status": 400, "reason": reason_non_canonical} if {
	not well_formed
} else := {"status": 400, "reason": reason_non_canonical} if {
	regex.match(`[.](/|$)`, normalized)
} else := {"status": 414, "reason": reason_too_long} if {
	count(raw_path) > max_path_length
}

# The canonical path, without query string and fragment.
path := normalized if not path_error

# Other refusals (policies.ReasonUnderscoreHeader, ReasonNonCanonicalQuery):
# a header name with '_', a query with ';' or an invalid escape.
reason_underscore_header := "request header names may not contain '_'"

reason_non_canonical_query := "the request query is not canonical (';' or invalid escapes)"

header_error := {"status": 400, "reason": reason_underscore_header} if {
	some k, _ in raw_headers
	contains(k, "_")
}

query_pieces := split(raw_query, "%")

query_ok if {
	not contains(raw_query, ";")
	every i, p in query_pieces {
		query_piece_ok(i, p)
	}
}

query_piece_ok(0, _)

query_piece_ok(i, p) if {
	i > 0
	regex.match(`^[0-9A-Fa-f]{2}`, p)
}

query_error := {"status": 400, "reason": reason_non_canonical_query} if {
	has_query
	not query_ok
}

# Why the request is refused before any policy runs, if it is.
refusal := e if {
	e := path_error
} else := e if {
	e := header_error
} else := e if {
	e := query_error
}

# opa-envoy-plugin's parsed_query, of the query as sent.
parsed_query := urlquery.decode_object(raw_query) if has_query else := {}

# The canonical request target: the canonical path and the query as sent.
target := concat("?", [path, raw_query]) if {
	has_query
} else := path

# Path segments: "/" is [""], "/a/b/" is ["a", "b", ""].
segments := split(trim_prefix(path, "/"), "/")

# opa-envoy-plugin's parsed_path, of the canonical path: the unescaped
# segments after the leading '/'.
parsed_path := [urlquery.decode(replace(s, "+", "%2B")) | some s in split(trim_left(path, "/"), "/")]

# The host, lower-cased, without port ("[::1]:8080" is "[::1]").
host := regex.replace(lower(object.get(http, "host", "")), ":[0-9]*$", "")

# Request headers the gateway owns (policies.OwnedHeaderPrefix and the
# bundle's request_headers.owned): what a client sends under these names is
# removed before any policy sees the request, and upstream.
owned_prefix := "x-gatehouse-"

owned_names := {lower(h) | some h in owned_list}

# The bundle's request_headers.owned. A reference to just that member (not
# object.get of the whole configuration) lets the authorizer keep only it
# for policies (policies.readableData).
default owned_list := []

owned_list := data.gatehouse.config.request_headers.owned

owned(name) if lower(name) in owned_names

owned(name) if startswith(lower(name), owned_prefix)

raw_headers := object.get(http, "headers", {})

# The owned headers the client sent, lower-cased and sorted.
owned_present := sort({lower(k) | some k, _ in raw_headers; owned(k)})

# The request headers without the owned ones.
headers := {k: v | some k, v in raw_headers; not owned(k)}

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
