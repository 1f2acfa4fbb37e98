# The Gatehouse decision. data.gatehouse.authz.decision is the entrypoint for
# a stock OPA or opa-envoy-plugin: it routes the request, evaluates the bound
# policy and returns a decision document shaped like opa-envoy-plugin's
# result object. The authorizer's fast path computes the same document in Go
# (routing with an index, then only the bound policy's prepared query).
package gatehouse.authz

import data.gatehouse.config
import data.gatehouse.lib.request
import data.gatehouse.lib.route
import data.gatehouse.lib.token

api := config.apis[route.route.api_id]

policy := config.policies[api.policy_id]

# What policies see as input.gatehouse.
gatehouse := {
	"tenant": config.tenant.id,
	"gateway": config.gateway.id,
	"service_id": api.service_id,
	"api_id": api.id,
	"path_params": route.params,
	"token": token.info,
}

# The input policies see: the canonical request (path and parsed_path in
# canonical form), plus input.gatehouse.
policy_input := object.union(json.remove(input, ["attributes/request/http/headers"]), {
	"gatehouse": gatehouse,
	"parsed_path": request.parsed_path,
	"parsed_query": request.parsed_query,
	"attributes": {"request": {"http": {"path": request.target, "headers": request.headers}}},
})

policy_result := r if {
	r := data.gatehouse.policies[policy.package] with input as policy_input
}

# The challenge of an invalid token: with the reason only when the gateway
# exposes token errors (expose_token_errors).
invalid_token_challenge := sprintf(`Bearer error="invalid_token", error_description="%s"`, [token.reason]) if {
	config.gateway.expose_token_errors == true
} else := `Bearer error="invalid_token"`

policy_allowed := true if {
	policy_result.allow == true
} else := false

# The outcome before dry-run is applied.
outcome := o if {
	e := request.refusal
	o := {"allowed": false, "http_status": e.status, "reason": e.reason}
} else := o if {
	not route.found
	config.gateway.allow_unmatched_routes
	o := {"allowed": true, "http_status": 200, "reason": sprintf("no API matches %s %s; the gateway allows unmatched routes", [request.method, request.path])}
} else := o if {
	not route.found
	o := {"allowed": false, "http_status": 404, "reason": sprintf("no API matches %s %s", [request.method, request.path])}
} else := o if {
	# Before the token: Envoy does not call the authorizer on public routes.
	api.policy_id == ""
	api.public
	o := {"allowed": true, "http_status": 200, "reason": "public API"}
} else := o if {
	token.info.present
	not token.info.valid
	o := {"allowed": false, "http_status": 401, "reason": "invalid bearer token",
		"headers": {"www-authenticate": invalid_token_challenge}}
} else := o if {
	api.policy_id == ""
	o := {"allowed": false, "http_status": 403, "reason": sprintf("API %s has no policy", [api.id])}
} else := o if {
	not policy
	o := {"allowed": false, "http_status": 403, "reason": sprintf("policy %s is missing from the bundle", [api.policy_id])}
} else := {
	"allowed": policy_allowed,
	"http_status": policy_status,
	"reason": policy_reason,
	"headers": policy_headers,
	"response_headers_to_add": object_or_empty(object.get(policy_result, "response_headers_to_add", {})),
	"request_headers_to_remove": array_or_empty(object.get(policy_result, "request_headers_to_remove", [])),
	"body": string_or_empty(object.get(policy_result, "body", "")),
	"dynamic_metadata": object_or_empty(object.get(policy_result, "dynamic_metadata", {})),
}

# A denial without a token is 401 (the request lacked credentials), with a
# token 403, unless the policy says otherwise.
policy_status := s if {
	s := policy_result.http_status
	is_number(s)
} else := 200 if {
	policy_allowed
} else := 401 if {
	not token.info.present
} else := 403

# Headers: allowed requests get the API's claims_to_headers, then the
# policy's headers (which win); a 401 — the default one or the policy's —
# asks for a bearer token (RFC 6750) unless the policy names a challenge
# of its own, in any letter case.
policy_headers := object.union(claim_headers, object_or_empty(object.get(policy_result, "headers", {}))) if {
	policy_allowed
} else := object.union({"www-authenticate": "Bearer"}, object_or_empty(object.get(policy_result, "headers", {}))) if {
	policy_status == 401
	not names_challenge(object_or_empty(object.get(policy_result, "headers", {})))
} else := object_or_empty(object.get(policy_result, "headers", {}))

names_challenge(h) if {
	some k, _ in h
	lower(k) == "www-authenticate"
}

# claims_to_headers: string claims as they are, arrays of strings joined
# with ","; other claim types are not forwarded.
claim_headers := {header: value |
	token.info.valid
	some claim, header in object.get(api, "claims_to_headers", {})
	v := object.get(object.get(token.info, "claims", {}), split(claim, "."), null)
	value := header_value(v)
}

header_value(v) := v if is_string(v)

header_value(v) := concat(",", v) if {
	is_array(v)
	every x in v {
		is_string(x)
	}
}

policy_reason := r if {
	r := policy_result.reason
	is_string(r)
} else := sprintf("allowed by policy %s", [api.policy_id]) if {
	policy_allowed
} else := sprintf("denied by policy %s", [api.policy_id])

object_or_empty(x) := x if is_object(x)

object_or_empty(x) := {} if not is_object(x)

array_or_empty(x) := x if is_array(x)

array_or_empty(x) := [] if not is_array(x)

string_or_empty(x) := x if is_string(x)

string_or_empty(x) := "" if not is_string(x)

dry_run if config.gateway.dry_run

dry_run if policy.dry_run

# In dry-run, a denial is logged (policy_allowed false, reason kept) but the
# request is allowed.
# Dry-run never lets a refused path through: there is no canonical path to
# forward.
final_allowed := true if {
	dry_run
	not request.refusal
} else := outcome.allowed

decision := {
	"allowed": final_allowed,
	"http_status": final_status,
	"headers": final_headers,
	"response_headers_to_add": object.get(outcome, "response_headers_to_add", {}),
	"request_headers_to_remove": final_request_headers_to_remove,
	"body": final_body,
	"dynamic_metadata": object.get(outcome, "dynamic_metadata", {}),
	"reason": outcome.reason,
	"api_id": route_api_id,
	"service_id": route_service_id,
	"policy_id": bound_policy_id,
	"dry_run": dry_run_applied,
	"policy_allowed": outcome.allowed,
}

dry_run_applied := true if {
	dry_run
	not request.refusal
} else := false

# An allowed request loses the owned headers the client sent that the
# decision neither sets nor already removes.
final_request_headers_to_remove := array.concat(outcome_removed, [h |
	some h in request.owned_present
	not h in decided_names
]) if {
	final_allowed
} else := outcome_removed

outcome_removed := object.get(outcome, "request_headers_to_remove", [])

decided_names := {lower(k) | some k, _ in final_headers} | {lower(x) | some x in outcome_removed; is_string(x)}

route_api_id := route.route.api_id if route.found else := ""

route_service_id := route.route.service_id if route.found else := ""

bound_policy_id := api.policy_id if api else := ""

final_status := 200 if final_allowed else := outcome.http_status

# Headers go upstream when allowed and to the client when denied; a
# dry-run denial sends neither.
final_headers := object.get(outcome, "headers", {}) if {
	outcome.allowed == final_allowed
} else := {}

final_body := "" if final_allowed else := object.get(outcome, "body", "")
