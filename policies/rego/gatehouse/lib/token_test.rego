package gatehouse.lib.token_test

import data.gatehouse.lib.token

# Test keys (P-256), private parts included for signing.
k1 := {"kty": "EC", "kid": "k1", "crv": "P-256", "x": "jVBetlieGjThnKp8K5F9UEyThEOJCMfIo0KLgPkNNeg", "y": "ci0DI41JiucRzzf7pbHEFf71oJoqdTY0_dtzp_KLnRY", "d": "wWhSpmHIqEG1xy6dwFj8eaQooeu42mDFskwLokkhksg"}

k2 := {"kty": "EC", "kid": "k2", "crv": "P-256", "x": "8RKgU8Y8Jxhd2ydvc7gYvijuQSV0aw_2Q6-HfffWp4Q", "y": "2TVhCVpUCfnXHQuadMQSKHsEBWW-FWlV43rdVAsCBps", "d": "bzn3ne6l64q_j7CQssLusMyMHqfw4dcq9gGEVOUrKlw"}

iss := "https://idp.example.com"

issuers := [
	{"id": "idp", "name": "idp", "issuer": iss, "audiences": ["api", "other"], "jwks_uri": "", "discovery": false,
		"jwks": json.marshal({"keys": [object.remove(k1, ["d"]), object.union(object.remove(k2, ["d"]), {"use": "sig", "alg": "ES256"})]})},
	{"id": "remote", "name": "remote", "issuer": "https://remote.example.com", "audiences": ["api"], "jwks": "",
		"jwks_uri": "https://remote.example.com/keys", "discovery": false},
]

t0 := 1700000000

claims(extra) := object.union({"iss": iss, "sub": "alice", "aud": "api", "exp": t0 + 300, "iat": t0}, extra)

# A token signed with key, its header naming kid (none when kid is "").
signed(key, kid, payload) := io.jwt.encode_sign({"alg": "ES256", "kid": kid}, payload, key) if kid != ""

signed(key, "", payload) := io.jwt.encode_sign({"alg": "ES256"}, payload, key)

info_of(authorization) := i if {
	i := token.info with input.attributes.request.http.headers as {"authorization": authorization}
		with data.gatehouse.config.issuers as issuers
		with time.now_ns as t0 * 1000000000
}

valid(tok) if info_of(concat(" ", ["Bearer", tok])).valid

invalid(tok) if info_of(concat(" ", ["Bearer", tok])) == {"present": true, "valid": false}

test_absent if {
	token.info == {"present": false, "valid": false} with input as {}
	info_of("Basic YTpi") == {"present": false, "valid": false}
	info_of("Bearer") == {"present": false, "valid": false}
	info_of("Bearer ") == {"present": true, "valid": false}
}

test_valid_token if {
	c := claims({"scope": " read  write ", "nested": {"a": [1, 2]}})
	info_of(concat(" ", ["bEaReR", signed(k1, "k1", c)])) == {
		"present": true, "valid": true, "issuer": iss, "subject": "alice",
		"claims": c, "scopes": ["read", "write"],
	}
}

test_kid_selects_the_key if {
	valid(signed(k2, "k2", claims({})))
	valid(signed(k2, "", claims({})))
	invalid(signed(k1, "k2", claims({})))
	invalid(signed(k1, "k3", claims({})))
}

test_times_with_leeway if {
	valid(signed(k1, "k1", claims({"exp": t0 - 29})))
	invalid(signed(k1, "k1", claims({"exp": t0 - 30})))
	invalid(signed(k1, "k1", object.remove(claims({}), ["exp"])))
	invalid(signed(k1, "k1", claims({"exp": "2100-01-01"})))
	valid(signed(k1, "k1", claims({"nbf": t0 + 30, "iat": t0 + 30})))
	invalid(signed(k1, "k1", claims({"nbf": t0 + 31})))
	invalid(signed(k1, "k1", claims({"iat": t0 + 31})))
	invalid(signed(k1, "k1", claims({"iat": null})))
}

test_audience_and_issuer if {
	valid(signed(k1, "k1", claims({"aud": ["x", "other"]})))
	invalid(signed(k1, "k1", claims({"aud": "x"})))
	invalid(signed(k1, "k1", claims({"aud": ["api", 1]})))
	invalid(signed(k1, "k1", object.remove(claims({}), ["aud"])))
	invalid(signed(k1, "k1", claims({"iss": "https://other.example.com"})))
}

test_remote_keys_are_not_usable_in_rego if {
	invalid(signed(k1, "k1", claims({"iss": "https://remote.example.com"})))
}

test_algorithms if {
	c := claims({})
	invalid(io.jwt.encode_sign({"alg": "HS256", "kid": "k1"}, c, {"kty": "oct", "k": base64url.encode_no_pad(json.marshal(object.remove(k1, ["d"])))}))
	invalid(concat(".", [base64url.encode_no_pad(`{"alg":"none"}`), base64url.encode_no_pad(json.marshal(c)), ""]))
	invalid(io.jwt.encode_sign({"alg": "ES256", "kid": "k1", "crit": ["exp"], "exp": 1}, c, k1))
}

test_malformed if {
	tok := signed(k1, "k1", claims({}))
	parts := split(tok, ".")
	valid(tok)
	invalid(concat(".", [parts[0], parts[1]]))
	invalid(concat(".", [tok, "x"]))
	invalid(concat(".", [parts[0], concat("", [parts[1], "="]), parts[2]]))
	invalid(concat(".", [parts[0], base64url.encode_no_pad(`{"iss": 1} x`), parts[2]]))
}

test_scopes if {
	scopes({"scp": ["a", "b c"]}) == ["a", "b c"]
	scopes({"scp": "a b"}) == ["a", "b"]
	scopes({"scope": ["x"], "scp": "a"}) == ["a"]
	scopes({"scope": "s", "scp": "a"}) == ["s"]
	scopes({"scp": ["a", 1]}) == []
	scopes({}) == []
}

scopes(extra) := info_of(concat(" ", ["Bearer", signed(k1, "k1", claims(extra))])).scopes

test_subject if {
	info_of(concat(" ", ["Bearer", signed(k1, "k1", claims({"sub": 42}))])).subject == ""
}

revocations := {
	"jti": {iss: {"j1": t0 + 300, "old": t0 - 31}},
	"not_before": {iss: {"bob": t0 - 100}},
	"client_not_before": {iss: {"carol": {"app1": t0 - 100}}},
}

revoked_info(tok) := i if {
	i := token.info with input.attributes.request.http.headers as {"authorization": concat(" ", ["Bearer", tok])}
		with data.gatehouse.config.issuers as issuers
		with data.gatehouse.config.revocations as revocations
		with time.now_ns as t0 * 1000000000
}

test_revocations if {
	not revoked_info(signed(k1, "k1", claims({"jti": "j1"}))).valid
	revoked_info(signed(k1, "k1", claims({"jti": "old"}))).valid
	revoked_info(signed(k1, "k1", claims({"jti": "j2"}))).valid
	not revoked_info(signed(k1, "k1", claims({"sub": "bob", "iat": t0 - 101}))).valid
	revoked_info(signed(k1, "k1", claims({"sub": "bob", "iat": t0 - 100}))).valid
	not revoked_info(signed(k1, "k1", object.remove(claims({"sub": "bob"}), ["iat"]))).valid
	not revoked_info(signed(k1, "k1", claims({"sub": "carol", "iat": t0 - 101, "azp": "app1"}))).valid
	revoked_info(signed(k1, "k1", claims({"sub": "carol", "iat": t0 - 101, "client_id": "app2"}))).valid
	revoked_info(signed(k1, "k1", claims({"sub": "carol", "iat": t0 - 50, "client_id": "app1"}))).valid

	# Without revocations in the bundle, the same tokens are valid.
	valid(signed(k1, "k1", claims({"jti": "j1"})))
}
