# Bearer token information for policies (input.gatehouse.token).
#
# The authorizer's fast path computes the same object in Go (package
# gateway/token, whose documentation and docs/bundles.md "Tokens" state the
# rules); a parity test checks that both agree token by token.
#
# Only inline JWK Sets (data.gatehouse.config.issuers[_].jwks) can be used
# here, Rego having no network: tokens of issuers whose keys are remote
# (jwks_uri, discovery) are never valid in pure Rego.
package gatehouse.lib.token

import data.gatehouse.lib.request

# Clock skew allowed on exp, nbf and iat, in seconds (token.Leeway in Go).
leeway := 30

# The accepted algorithms and the key each needs. An ES signature is r||s
# of the curve's size: sig_len is its base64url length; coord_len is the
# base64url length of the key's x and y.
algorithms := {
	"RS256": {"kty": "RSA"},
	"RS384": {"kty": "RSA"},
	"RS512": {"kty": "RSA"},
	"PS256": {"kty": "RSA"},
	"PS384": {"kty": "RSA"},
	"PS512": {"kty": "RSA"},
	"ES256": {"kty": "EC", "crv": "P-256", "coord_len": 43, "sig_len": 86},
	"ES384": {"kty": "EC", "crv": "P-384", "coord_len": 64, "sig_len": 128},
	"ES512": {"kty": "EC", "crv": "P-521", "coord_len": 88, "sig_len": 176},
}

info := i if {
	i := valid_info
} else := {"present": true, "valid": false} if {
	present
} else := {"present": false, "valid": false}

authorization := a if {
	a := request.headers.authorization
	is_string(a)
}

present if lower(substring(authorization, 0, 7)) == "bearer "

raw := substring(authorization, 7, -1) if present

parts := split(raw, ".")

# A non-empty unpadded base64url string.
segment_ok(s) if {
	is_string(s)
	regex.match(`^[A-Za-z0-9_-]+$`, s)
	count(s) % 4 != 1
}

# A segment decoded to a JSON object.
decode_object(s) := o if {
	segment_ok(s)
	j := base64url.decode(s)
	json.is_valid(j)
	o := json.unmarshal(j)
	is_object(o)
}

header := decode_object(parts[0]) if count(parts) == 3

payload := decode_object(parts[1]) if count(parts) == 3

alg := header.alg

spec := algorithms[alg]

has(o, name) if name in object.keys(o)

header_ok if {
	spec
	segment_ok(parts[2])
	every name in ["kid", "typ", "cty"] {
		is_string(object.get(header, name, ""))
	}
	not has(header, "crit")
	not has(header, "enc")
}

now := time.now_ns()

# floor(claim) + offset seconds, in nanoseconds.
instant(claim, offset) := (floor(claim) + offset) * 1000000000

times_ok if {
	is_number(payload.exp)
	now < instant(payload.exp, leeway)
	not_future("nbf")
	not_future("iat")
}

not_future(name) if not has(payload, name)

not_future(name) if {
	is_number(payload[name])
	instant(payload[name], 0 - leeway) <= now
}

audiences := [payload.aud] if {
	is_string(payload.aud)
} else := payload.aud if {
	is_array(payload.aud)
	every a in payload.aud {
		is_string(a)
	}
}

accepts(cfg) if {
	some a in audiences
	a in cfg.audiences
}

# Keys the token may be verified with: with a kid, only keys of that kid.
key_selected(k) if not has(header, "kid")

key_selected(k) if k.kid == header.kid

key_fits(k) if {
	k.kty == spec.kty
	spec.kty == "RSA"
}

key_fits(k) if {
	k.kty == spec.kty
	k.crv == spec.crv
}

# A key's public material alone, so that the verify builtins neither pick
# keys by kid or alg themselves nor see private members.
material(k) := {"kty": "RSA", "n": k.n, "e": k.e} if {
	k.kty == "RSA"
	segment_ok(k.n)
	segment_ok(k.e)
} else := {"kty": "EC", "crv": k.crv, "x": k.x, "y": k.y} if {
	k.kty == "EC"
	segment_ok(k.x)
	segment_ok(k.y)
	count(k.x) == spec.coord_len
	count(k.y) == spec.coord_len
}

candidate_keys(cfg) := [material(k) |
	cfg.jwks != ""
	json.is_valid(cfg.jwks)
	set := json.unmarshal(cfg.jwks)
	is_array(set.keys)
	some k in set.keys
	is_object(k)
	key_selected(k)
	key_fits(k)
	object.get(k, "alg", alg) == alg
	object.get(k, "use", "sig") == "sig"
]

signed_by(cfg) if {
	count(parts[2]) == object.get(spec, "sig_len", count(parts[2]))
	some m in candidate_keys(cfg)
	verify(alg, json.marshal({"keys": [m]}))
}

verify("RS256", jwks) if io.jwt.verify_rs256(raw, jwks)

verify("RS384", jwks) if io.jwt.verify_rs384(raw, jwks)

verify("RS512", jwks) if io.jwt.verify_rs512(raw, jwks)

verify("PS256", jwks) if io.jwt.verify_ps256(raw, jwks)

verify("PS384", jwks) if io.jwt.verify_ps384(raw, jwks)

verify("PS512", jwks) if io.jwt.verify_ps512(raw, jwks)

verify("ES256", jwks) if io.jwt.verify_es256(raw, jwks)

verify("ES384", jwks) if io.jwt.verify_es384(raw, jwks)

verify("ES512", jwks) if io.jwt.verify_es512(raw, jwks)

subject := s if {
	s := payload.sub
	is_string(s)
} else := ""

split_spaces(s) := [p | some p in split(s, " "); p != ""]

scopes := split_spaces(payload.scope) if {
	is_string(payload.scope)
} else := split_spaces(payload.scp) if {
	is_string(payload.scp)
} else := payload.scp if {
	is_array(payload.scp)
	every s in payload.scp {
		is_string(s)
	}
} else := []

valid_info := {
	"present": true,
	"valid": true,
	"issuer": payload.iss,
	"subject": subject,
	"claims": payload,
	"scopes": scopes,
} if {
	header_ok
	is_string(payload.iss)
	times_ok
	some cfg in data.gatehouse.config.issuers
	cfg.issuer == payload.iss
	accepts(cfg)
	signed_by(cfg)
	not revoked
}

# Revocations (data.gatehouse.config.revocations; policies.RevocationsData
# in Go states the rules): iss → jti → exp, iss → sub → not_before and
# iss → sub → client id → not_before, in Unix seconds. A bundle built
# before revocations existed has none (every lookup is undefined).
revocations := data.gatehouse.config.revocations

# The token's jti is listed for its iss, while the entry lasts.
revoked if {
	is_string(payload.jti)
	exp := revocations.jti[payload.iss][payload.jti]
	not instant_after(exp)
}

# Its sub has a not_before it was not issued since.
revoked if {
	is_string(payload.sub)
	nb := revocations.not_before[payload.iss][payload.sub]
	not issued_since(nb)
}

# Its sub and its client_id or azp have a not_before it was not issued
# since.
revoked if {
	is_string(payload.sub)
	some name in ["client_id", "azp"]
	client := payload[name]
	is_string(client)
	nb := revocations.client_not_before[payload.iss][payload.sub][client]
	not issued_since(nb)
}

# A jti entry has lapsed: now >= exp + leeway (a non-number never lapses).
instant_after(exp) if {
	is_number(exp)
	now >= instant(exp, leeway)
}

issued_since(nb) if {
	is_number(payload.iat)
	is_number(nb)
	floor(payload.iat) >= nb
}

# Why a present token is invalid, as the Go verifier's token.Reason says
# it (the first check that fails, in the verifier's order). Rego verifies
# only inline key sets: a token of a remote issuer is signature_invalid
# here (the Go fast path fetches the keys; jwks_unavailable is Go's
# alone).
reason := r if {
	present
	not valid_info
	r := first_failure
}

first_failure := "malformed" if {
	not well_formed
} else := "unsupported_algorithm" if {
	not spec
} else := "malformed" if {
	not header_ok
} else := "malformed" if {
	not payload
} else := "issuer_unknown" if {
	not known_issuer
} else := "audience_mismatch" if {
	not audience_accepted
} else := "malformed" if {
	not exp_is_number
} else := "expired" if {
	not now < instant(payload.exp, leeway)
} else := "malformed" if {
	has(payload, "nbf")
	not is_number(payload.nbf)
} else := "not_yet_valid" if {
	not not_future("nbf")
} else := "malformed" if {
	has(payload, "iat")
	not is_number(payload.iat)
} else := "not_yet_valid" if {
	not not_future("iat")
} else := "revoked" if {
	revoked
	some cfg in data.gatehouse.config.issuers
	cfg.issuer == payload.iss
	accepts(cfg)
	signed_by(cfg)
} else := "signature_invalid"

# (A rule: in a negated call the compiler would bind payload.exp first,
# and an absent exp would make the whole branch fail.)
exp_is_number if is_number(payload.exp)

# Three non-empty base64url segments, the first a JSON object.
well_formed if {
	count(parts) == 3
	every p in parts {
		segment_ok(p)
	}
	header
}

known_issuer if {
	is_string(payload.iss)
	some cfg in data.gatehouse.config.issuers
	cfg.issuer == payload.iss
}

audience_accepted if {
	some cfg in data.gatehouse.config.issuers
	cfg.issuer == payload.iss
	accepts(cfg)
}
