package gatehouse.authz_test

import data.gatehouse.authz

# A small compiled configuration, in the shape the compiler writes.
cfg := {
	"tenant": {"id": "acme", "name": "Acme"},
	"gateway": {"id": "gw", "name": "gw", "type": "envoy", "dry_run": false, "allow_unmatched_routes": false},
	"services": {"pets": {"id": "pets", "name": "pets", "url": "http://pets.internal", "hosts": []}},
	"apis": {
		"get-pet": {"id": "get-pet", "service_id": "pets", "method": "GET", "path": "/pets/{id}", "policy_id": "by-header", "public": false},
		"list": {"id": "list", "service_id": "pets", "method": "GET", "path": "/pets", "policy_id": "", "public": true},
		"del": {"id": "del", "service_id": "pets", "method": "DELETE", "path": "/pets/{id}", "policy_id": "", "public": false},
		"dry": {"id": "dry", "service_id": "pets", "method": "POST", "path": "/pets", "policy_id": "deny-dry", "public": false},
	},
	"policies": {
		"by-header": {"id": "by-header", "name": "by header", "package": "fixture_header", "dry_run": false},
		"deny-dry": {"id": "deny-dry", "name": "deny", "package": "fixture_deny", "dry_run": true},
	},
	"scopes": {},
	"routing": {
		"exact": {},
		"wildcards": [],
		"default": 0,
		"by_api": {"get-pet": {"vhost": 0, "index": 1}, "list": {"vhost": 0, "index": 0}, "del": {"vhost": 0, "index": 2}, "dry": {"vhost": 0, "index": 3}},
		"vhosts": [{"name": "default", "domains": ["*"], "routes": [
			{"api_id": "list", "service_id": "pets", "method": "GET", "catch_all": false, "segments": [{"kind": "literal", "value": "pets"}]},
			{"api_id": "get-pet", "service_id": "pets", "method": "GET", "catch_all": false, "segments": [{"kind": "literal", "value": "pets"}, {"kind": "param", "value": "id"}]},
			{"api_id": "del", "service_id": "pets", "method": "DELETE", "catch_all": false, "segments": [{"kind": "literal", "value": "pets"}, {"kind": "param", "value": "id"}]},
			{"api_id": "dry", "service_id": "pets", "method": "POST", "catch_all": false, "segments": [{"kind": "literal", "value": "pets"}]},
		]}],
	},
}

req(method, path, headers) := {"attributes": {"request": {"http": {"method": method, "path": path, "host": "pets.example.com", "headers": headers}}}}

test_policy_allows_with_header if {
	d := authz.decision with data.gatehouse.config as cfg with input as req("GET", "/pets/7?x=1", {"x-pet-key": "ok"})
	d.allowed == true
	d.http_status == 200
	d.api_id == "get-pet"
	d.policy_id == "by-header"
	d.headers == {"x-pet-id": "7"}
	d.reason == "key accepted"
}

test_policy_denies_with_its_status_and_body if {
	d := authz.decision with data.gatehouse.config as cfg with input as req("GET", "/pets/7", {})
	d.allowed == false
	d.http_status == 401
	d.body == "need a key"
	d.reason == "denied by policy by-header"
	d.headers == {"www-authenticate": "Key"}
}

test_public_api_without_policy_is_allowed if {
	d := authz.decision with data.gatehouse.config as cfg with input as req("GET", "/pets", {})
	d.allowed == true
	d.api_id == "list"
	d.reason == "public API"
}

test_api_without_policy_is_denied if {
	d := authz.decision with data.gatehouse.config as cfg with input as req("DELETE", "/pets/7", {})
	d.allowed == false
	d.http_status == 403
	d.api_id == "del"
}

test_unmatched_route_is_denied_with_404 if {
	d := authz.decision with data.gatehouse.config as cfg with input as req("GET", "/cats", {})
	d.allowed == false
	d.http_status == 404
	d.api_id == ""
	d.reason == "no API matches GET /cats"
}

test_unmatched_route_allowed_when_the_gateway_says_so if {
	d := authz.decision with data.gatehouse.config as json.patch(cfg, [{"op": "replace", "path": "/gateway/allow_unmatched_routes", "value": true}])
		with input as req("GET", "/cats", {})
	d.allowed == true
}

test_dry_run_policy_allows_and_keeps_the_real_outcome if {
	d := authz.decision with data.gatehouse.config as cfg with input as req("POST", "/pets", {})
	d.allowed == true
	d.dry_run == true
	d.policy_allowed == false
	d.reason == "denied by policy deny-dry"
	d.http_status == 200
	d.body == ""
}

test_dry_run_gateway_allows_everything if {
	d := authz.decision with data.gatehouse.config as json.patch(cfg, [{"op": "replace", "path": "/gateway/dry_run", "value": true}])
		with input as req("DELETE", "/pets/1", {})
	d.allowed == true
	d.dry_run == true
	d.policy_allowed == false
}

test_context_extensions_select_the_api if {
	inp := json.patch(req("GET", "/anything/else", {}), [{"op": "add", "path": "/attributes/contextExtensions", "value": {"tenant": "acme", "api": "list"}}])
	d := authz.decision with data.gatehouse.config as cfg with input as inp
	d.api_id == "list"
	d.allowed == true
}

test_context_extensions_of_another_tenant_are_ignored if {
	inp := json.patch(req("GET", "/cats", {}), [{"op": "add", "path": "/attributes/context_extensions", "value": {"tenant": "other", "api": "list"}}])
	d := authz.decision with data.gatehouse.config as cfg with input as inp
	d.api_id == ""
	d.allowed == false
}

test_policy_sees_path_params_and_tenant if {
	g := authz.gatehouse with data.gatehouse.config as cfg with input as req("GET", "/pets/42", {})
	g.path_params == {"id": "42"}
	g.tenant == "acme"
	g.api_id == "get-pet"
	g.service_id == "pets"
}

test_unnormalized_paths_are_refused if {
	every p in ["/pets/../admin", "/pets/%2e%2e/x", "/pets/a%2Fb", "/./pets", "/pets\\x"] {
		d := authz.decision with data.gatehouse.config as cfg with input as req("GET", p, {"x-pet-key": "ok"})
		d.allowed == false
		d.http_status == 400
	}
}
