package token

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/go-jose/go-jose/v4"
	"github.com/open-policy-agent/opa/v1/util"
)

// key is one member of a JWK Set, reduced to what the validity rules read.
type key struct {
	kid    string
	hasKid bool // kid is present and a string
	// anyAlg: the key has no alg member; otherwise alg is its value when a
	// string ("" otherwise, which matches no algorithm).
	anyAlg bool
	alg    string
	sigUse bool // use is absent or "sig"
	kty    string
	crv    string
	// public is the *rsa.PublicKey or *ecdsa.PublicKey of the key's public
	// material, nil when that material is unusable.
	public any
}

// usableFor applies the key selection rules for a token's alg and kid.
func (k *key) usableFor(alg string, spec algorithm, kid string, hasKid bool) bool {
	return k.public != nil && k.kty == spec.kty && k.crv == spec.crv &&
		(!hasKid || k.hasKid && k.kid == kid) &&
		(k.anyAlg || k.alg == alg) && k.sigUse
}

// keySet is a parsed JWK Set.
type keySet struct {
	keys   []key
	digest [32]byte // SHA-256 of the document
}

// hasKid reports whether a key of the set has this kid.
func (s *keySet) hasKid(kid string) bool {
	for i := range s.keys {
		if s.keys[i].hasKid && s.keys[i].kid == kid {
			return true
		}
	}
	return false
}

// usable counts the keys whose material parsed.
func (s *keySet) usable() int {
	n := 0
	for i := range s.keys {
		if s.keys[i].public != nil {
			n++
		}
	}
	return n
}

// coordinateLength is the base64url length of an EC coordinate of each
// supported curve (32, 48 and 66 bytes).
var coordinateLength = map[string]int{"P-256": 43, "P-384": 64, "P-521": 88}

// parseKeySet reads a JWK Set: a JSON object (read as Rego's json.unmarshal
// reads it) with a "keys" array. Members that are not objects are ignored;
// keys whose material does not parse are kept without a public key (their
// kid still counts as known).
func parseKeySet(data []byte) (*keySet, error) {
	var doc any
	if err := util.UnmarshalJSON(data, &doc); err != nil {
		return nil, fmt.Errorf("not a JWK Set: %w", err)
	}
	obj, _ := doc.(map[string]any)
	members, ok := obj["keys"].([]any)
	if !ok {
		return nil, errors.New(`not a JWK Set: no "keys" array`)
	}
	set := &keySet{keys: make([]key, 0, len(members)), digest: sha256.Sum256(data)}
	for _, m := range members {
		raw, ok := m.(map[string]any)
		if !ok {
			continue
		}
		set.keys = append(set.keys, parseKey(raw))
	}
	return set, nil
}

func parseKey(raw map[string]any) key {
	k := key{}
	k.kid, k.hasKid = raw["kid"].(string)
	alg, hasAlg := raw["alg"]
	k.anyAlg = !hasAlg
	k.alg, _ = alg.(string)
	use, hasUse := raw["use"]
	k.sigUse = !hasUse || use == "sig"
	k.kty, _ = raw["kty"].(string)
	var material map[string]any
	switch k.kty {
	case "RSA":
		if n, e := str(raw, "n"), str(raw, "e"); segmentOK(n) && segmentOK(e) {
			material = map[string]any{"kty": "RSA", "n": n, "e": e}
		}
	case "EC":
		k.crv, _ = raw["crv"].(string)
		size := coordinateLength[k.crv]
		if x, y := str(raw, "x"), str(raw, "y"); size > 0 && len(x) == size && len(y) == size && segmentOK(x) && segmentOK(y) {
			material = map[string]any{"kty": "EC", "crv": k.crv, "x": x, "y": y}
		}
	}
	if material == nil {
		return k
	}
	b, err := json.Marshal(material)
	if err != nil {
		return k
	}
	var jwk jose.JSONWebKey
	if err := jwk.UnmarshalJSON(b); err == nil && jwk.Valid() {
		k.public = jwk.Key
	}
	return k
}

func str(m map[string]any, name string) string {
	s, _ := m[name].(string)
	return s
}
