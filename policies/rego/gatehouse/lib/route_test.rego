package gatehouse.lib.route_test

import data.gatehouse.lib.route

seg(kind, value) := {"kind": kind, "value": value}

r(api, method, segments, catch_all) := {"api_id": api, "service_id": "s", "method": method, "segments": segments, "catch_all": catch_all}

routing := {
	"exact": {"api.example.com": 1},
	"wildcards": [{"suffix": ".eu.example.com", "vhost": 2}, {"suffix": ".example.com", "vhost": 3}],
	"default": 0,
	"by_api": {},
	"vhosts": [
		{"name": "default", "domains": ["*"], "routes": [
			r("mine", "GET", [seg("literal", "pets"), seg("literal", "mine")], false),
			r("get", "GET", [seg("literal", "pets"), seg("param", "id")], false),
			r("any", "*", [seg("literal", "pets"), seg("param", "id")], false),
			r("files", "GET", [seg("literal", "files"), seg("catch_all", "p")], true),
			r("root", "*", [seg("catch_all", "all")], true),
		]},
		{"name": "api.example.com", "domains": ["api.example.com"], "routes": [r("exact", "GET", [seg("literal", "x")], false)]},
		{"name": "*.eu.example.com", "domains": ["*.eu.example.com"], "routes": [r("eu", "GET", [seg("literal", "x")], false)]},
		{"name": "*.example.com", "domains": ["*.example.com"], "routes": [r("wild", "GET", [seg("literal", "x")], false)]},
	],
}

match(method, host, path) := id if {
	id := route.route.api_id with data.gatehouse.config.routing as routing
		with input as {"attributes": {"request": {"http": {"method": method, "host": host, "path": path}}}}
}

params(method, path) := p if {
	p := route.params with data.gatehouse.config.routing as routing
		with input as {"attributes": {"request": {"http": {"method": method, "host": "h", "path": path}}}}
}

test_first_match_in_priority_order if {
	match("GET", "h", "/pets/mine") == "mine"
	match("GET", "h", "/pets/7") == "get"
	match("POST", "h", "/pets/7") == "any"
	match("GET", "h", "/files/a/b") == "files"
	match("GET", "h", "/files") == "files"
	match("PUT", "h", "/files/a") == "root"
	match("GET", "h", "/pets/") == "root"
}

test_path_params if {
	params("GET", "/pets/7?q=1") == {"id": "7"}
	params("GET", "/files/a/b/c") == {"p": "a/b/c"}
	params("GET", "/files") == {"p": ""}
	params("GET", "/pets/mine") == {}
}

test_virtual_hosts if {
	match("GET", "API.example.com:443", "/x") == "exact"
	match("GET", "a.b.eu.example.com", "/x") == "eu"
	match("GET", "web.example.com", "/x") == "wild"
	match("GET", "other.org", "/pets/1") == "get"
	match("GET", "[::1]:8080", "/pets/1") == "get"
}

test_no_fallback_between_vhosts if {
	not match("GET", "api.example.com", "/pets/1")
}

test_no_default_vhost if {
	not route.route with data.gatehouse.config.routing as json.patch(routing, [{"op": "replace", "path": "/default", "value": -1}])
		with input as {"attributes": {"request": {"http": {"method": "GET", "host": "other.org", "path": "/pets/1"}}}}
}

pattern_routing := {
	"exact": {},
	"wildcards": [],
	"default": 0,
	"by_api": {},
	"vhosts": [{"name": "default", "domains": ["*"], "routes": [
		r("head-list", "HEAD", [seg("literal", "pets")], false),
		r("get-list", "GET", [seg("literal", "pets")], false),
		r("tgz", "GET", [seg("literal", "files"), {"kind": "pattern", "value": "name", "suffix": ".tar.gz"}], false),
		r("json", "GET", [seg("literal", "files"), {"kind": "pattern", "value": "name", "suffix": ".json"}], false),
		r("ver", "*", [{"kind": "pattern", "value": "v", "prefix": "v"}, seg("literal", "x")], false),
		r("esc", "GET", [{"kind": "pattern", "value": "x", "suffix": "C3"}], false),
		r("get-file", "GET", [seg("literal", "files"), seg("param", "id")], false),
	]}],
}

pmatch(method, path) := id if {
	id := route.route.api_id with data.gatehouse.config.routing as pattern_routing
		with input as {"attributes": {"request": {"http": {"method": method, "host": "h", "path": path}}}}
}

pparams(method, path) := p if {
	p := route.params with data.gatehouse.config.routing as pattern_routing
		with input as {"attributes": {"request": {"http": {"method": method, "host": "h", "path": path}}}}
}

test_head_follows_get if {
	pmatch("HEAD", "/files/7") == "get-file"
	pmatch("HEAD", "/pets") == "head-list"
	pmatch("GET", "/pets") == "get-list"
	not pmatch("POST", "/files/7")
}

test_pattern_segments if {
	pmatch("GET", "/files/a.json") == "json"
	pparams("GET", "/files/a.b.json") == {"name": "a.b"}
	pmatch("GET", "/files/a.tar.gz") == "tgz"
	pmatch("GET", "/files/.json") == "get-file"
	pmatch("POST", "/v2/x") == "ver"
	pparams("POST", "/v2/x") == {"v": "2"}
	not pmatch("POST", "/v/x")
	not pmatch("GET", "/a%C3")
	pparams("GET", "/ab%C3C3") == {"x": "ab%C3"}
}
