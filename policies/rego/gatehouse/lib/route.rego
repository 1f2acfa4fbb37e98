# Route matching: the same rules as the Go matcher (package routing).
# A request's host selects a virtual host (exact domain, else the longest
# "*.suffix" wildcard, else the default vhost); within it, the first route in
# priority order whose method and path template match wins.
package gatehouse.lib.route

import data.gatehouse.config.routing
import data.gatehouse.lib.request

vhost_index := i if {
	i := routing.exact[request.host]
} else := i if {
	some _ in wildcard_hits
	i := routing.wildcards[min(wildcard_hits)].vhost
} else := routing.default if {
	routing.default >= 0
}

wildcard_hits contains i if {
	some i, w in routing.wildcards
	endswith(request.host, w.suffix)
	count(request.host) > count(w.suffix)
}

# The route Envoy already selected, when its context extensions name an API
# of this bundle (and, if they name a tenant, this tenant).
extension_route := r if {
	request.path # a refused path is never routed
	api_id := request.context_extensions.api
	object.get(request.context_extensions, "tenant", data.gatehouse.config.tenant.id) == data.gatehouse.config.tenant.id
	loc := routing.by_api[api_id]
	r := routing.vhosts[loc.vhost].routes[loc.index]
}

matched_index := min(hits) if {
	hits := {i |
		some i, r in routing.vhosts[vhost_index].routes
		method_matches(r.method)
		path_matches(r)
	}
	count(hits) > 0
}

# The route of this request, if any.
route := r if {
	r := extension_route
} else := r if {
	r := routing.vhosts[vhost_index].routes[matched_index]
}

found if route

method_matches("*")

method_matches(m) if m == request.method

# HEAD follows GET's API (a HEAD API of the same path is ordered first).
method_matches("GET") if request.method == "HEAD"

path_matches(r) if {
	not r.catch_all
	count(r.segments) == count(request.segments)
	every i, s in r.segments {
		segment_matches(s, request.segments[i])
	}
}

path_matches(r) if {
	r.catch_all
	fixed := array.slice(r.segments, 0, count(r.segments) - 1)
	count(request.segments) >= count(fixed)
	every i, s in fixed {
		segment_matches(s, request.segments[i])
	}
}

segment_matches(s, v) if {
	s.kind == "literal"
	s.value == v
}

segment_matches(s, v) if {
	s.kind == "param"
	v != ""
}

segment_matches(s, v) if {
	s.kind == "pattern"
	pattern_value(s, v)
}

# The parameter of a pattern segment (prefix {name} suffix): what lies
# between its literal parts, not empty and not ending inside a
# percent-escape, as routing.MatchPattern.
pattern_value(s, v) := x if {
	prefix := object.get(s, "prefix", "")
	suffix := object.get(s, "suffix", "")
	count(v) > count(prefix) + count(suffix)
	startswith(v, prefix)
	endswith(v, suffix)
	x := substring(v, count(prefix), (count(v) - count(prefix)) - count(suffix))
	not regex.match(`%.?$`, x)
}

# Path parameters of the matched route. A route chosen by Envoy whose
# template does not match the path has none.
params := object.union(object.union(
	{name: value |
		path_matches(route)
		some i, s in route.segments
		s.kind == "param"
		name := s.value
		value := request.segments[i]
	},
	{name: value |
		path_matches(route)
		some i, s in route.segments
		s.kind == "pattern"
		name := s.value
		value := pattern_value(s, request.segments[i])
	}),
	{name: value |
		path_matches(route)
		some i, s in route.segments
		s.kind == "catch_all"
		name := s.value
		value := concat("/", array.slice(request.segments, i, count(request.segments)))
	},
)
