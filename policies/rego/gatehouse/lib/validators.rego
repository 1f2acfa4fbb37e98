# Building blocks for policies written as declarative validators (the
# compiler translates each validator into a call of one of these). Every
# comparison fails when the value is missing, except the *_absent checks.
package gatehouse.lib.validators

import data.gatehouse.lib.request

header(name, op, expected) if compare(op, request.headers[lower(name)], expected)

header_present(name) if request.headers[lower(name)]

header_absent(name) if not request.headers[lower(name)]

query(name, op, expected) if compare(op, request.query[name][0], expected)

query_present(name) if request.query[name]

query_absent(name) if not request.query[name]

method(op, expected) if compare(op, request.method, expected)

path(op, expected) if compare(op, request.path, expected)

claims := object.get(input, ["gatehouse", "token", "claims"], {})

claim_value(name) := v if {
	v := object.get(claims, split(name, "."), null)
	v != null
}

claim(name, op, expected) if compare(op, claim_value(name), expected)

claim_present(name) if claim_value(name)

claim_absent(name) if not claim_value(name)

scopes := object.get(input, ["gatehouse", "token", "scopes"], [])

scope_all(wanted) if {
	every s in wanted {
		s in scopes
	}
}

scope_any(wanted) if {
	some s in wanted
	s in scopes
}

compare("equals", a, b) if a == b

compare("not_equals", a, b) if a != b

compare("one_of", a, b) if a in b

compare("not_one_of", a, b) if not a in b

compare("contains", a, b) if {
	is_string(a)
	contains(a, b)
}

compare("contains", a, b) if {
	is_array(a)
	b in a
}

compare("prefix", a, b) if {
	is_string(a)
	startswith(a, b)
}

compare("suffix", a, b) if {
	is_string(a)
	endswith(a, b)
}

compare("regex", a, b) if {
	is_string(a)
	regex.match(b, a)
}

compare("gt", a, b) if {
	is_number(a)
	a > b
}

compare("gte", a, b) if {
	is_number(a)
	a >= b
}

compare("lt", a, b) if {
	is_number(a)
	a < b
}

compare("lte", a, b) if {
	is_number(a)
	a <= b
}
