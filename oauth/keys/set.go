package keys

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// KeyType is a server's key_type.
type KeyType string

// Key types. The empty KeyType means KeyTypeRSA (the server default).
const (
	KeyTypeRSA   KeyType = "rsa"   // RSA 2048, RS256
	KeyTypeECDSA KeyType = "ecdsa" // P-256, ES256
)

// RSABits is the size of generated RSA keys.
const RSABits = 2048

// State is where a key is in its lifecycle at a given time.
type State string

// Key states. Removed keys have no state: they are not shown at all.
const (
	StatePending  State = "pending"
	StateActive   State = "active"
	StateRetiring State = "retiring"
)

// Errors, for errors.Is.
var (
	// ErrNoKeys: the server has no key yet (Ensure or Rotate makes one).
	ErrNoKeys = errors.New("the server has no signing key")
	// ErrInvalidPolicy: a Policy field is out of range; the message names
	// the server field (key_type, key_activation_delay, …).
	ErrInvalidPolicy = errors.New("invalid key policy")
)

// Policy is what a server's configuration says about its keys.
type Policy struct {
	// KeyType is the type of keys Rotate generates ("" = rsa).
	KeyType KeyType
	// ActivationDelay is key_activation_delay: how long a new key stays
	// pending. 0 activates it at once.
	ActivationDelay time.Duration
	// Retention is how long a retiring key stays published: the longest
	// token TTL of the server, max(access_token_ttl, id_token_ttl).
	Retention time.Duration
}

// Validate checks the policy's fields; the error wraps ErrInvalidPolicy
// and names the server field.
func (p Policy) Validate() error {
	if _, err := p.KeyType.alg(); err != nil {
		return err
	}
	if p.ActivationDelay < 0 {
		return fmt.Errorf("%w: key_activation_delay must not be negative", ErrInvalidPolicy)
	}
	if p.Retention < 0 {
		return fmt.Errorf("%w: the token TTLs must not be negative", ErrInvalidPolicy)
	}
	return nil
}

func (t KeyType) alg() (jose.SignatureAlgorithm, error) {
	switch t {
	case "", KeyTypeRSA:
		return jose.RS256, nil
	case KeyTypeECDSA:
		return jose.ES256, nil
	}
	return "", fmt.Errorf("%w: key_type %q is not rsa or ecdsa", ErrInvalidPolicy, string(t))
}

// KeyInfo is the metadata of one key at a given time (GET /servers/{aid}/keys).
type KeyInfo struct {
	KID         string    `json:"kid"`
	Alg         string    `json:"alg"`
	State       State     `json:"state"`
	CreatedAt   time.Time `json:"created_at"`
	ActivatesAt time.Time `json:"activates_at"`
	// RetiresAt is when the next key activates (in the past for a
	// retiring key, planned for an active key with a pending successor);
	// nil while no later key exists.
	RetiresAt *time.Time `json:"retires_at,omitempty"`
	// ExpiresAt is RetiresAt plus the retention: when the key is removed.
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// SigningKey is the active key of a server: what tokens are signed with.
// Its methods match zitadel's op.SigningKey. It prints (fmt, slog) as its
// kid and algorithm only, never the private key.
type SigningKey struct {
	kid    string
	alg    jose.SignatureAlgorithm
	signer crypto.Signer
}

// ID is the key id (the JWS kid header).
func (k *SigningKey) ID() string { return k.kid }

// SignatureAlgorithm is RS256 or ES256.
func (k *SigningKey) SignatureAlgorithm() jose.SignatureAlgorithm { return k.alg }

// Key is the private key (*rsa.PrivateKey or *ecdsa.PrivateKey), as go-jose
// takes it in jose.SigningKey.Key.
func (k *SigningKey) Key() any { return k.signer }

// Signer is the private key as a crypto.Signer.
func (k *SigningKey) Signer() crypto.Signer { return k.signer }

// String names the key without its material.
func (k *SigningKey) String() string { return fmt.Sprintf("signing key %s (%s)", k.kid, k.alg) }

// GoString is String, so %#v shows no key material either.
func (k *SigningKey) GoString() string { return k.String() }

// LogValue is what slog records: the kid and algorithm.
func (k *SigningKey) LogValue() slog.Value {
	return slog.GroupValue(slog.String("kid", k.kid), slog.String("alg", string(k.alg)))
}

// storedKey is one key as the store keeps it (a JSON spec field).
type storedKey struct {
	Seq         int64     `json:"seq"`
	KID         string    `json:"kid"`
	Alg         string    `json:"alg"`
	CreatedAt   time.Time `json:"created_at"`
	ActivatesAt time.Time `json:"activates_at"`
	// PublicKey is PKIX DER.
	PublicKey []byte `json:"public_key"`
	// SealedPrivateKey is PKCS#8 DER sealed by secretbox (see aad).
	SealedPrivateKey []byte `json:"sealed_private_key"`
}

// setSpec is the spec of a Kind object.
type setSpec struct {
	// NextSeq numbers keys in the order they were rotated in.
	NextSeq int64       `json:"next_seq"`
	Keys    []storedKey `json:"keys"`
}

// Set is one server's key set as read from the store, with the retention
// of the policy it was loaded with. Its methods are pure functions of the
// time they are given. A Set is immutable and safe for concurrent use.
type Set struct {
	TenantID string
	ServerID string
	// Revision is the store revision of the set (the ETag / If-Match of
	// GET /keys), 0 when the server never had a key.
	Revision int64

	retention time.Duration
	keys      []storedKey // by Seq
	open      func(k *storedKey) (crypto.Signer, error)
}

// view is the state of keys[i] at some time.
type view struct {
	i         int
	state     State
	retiresAt *time.Time
	expiresAt *time.Time
}

// at computes every key's state at now, in key order; removed keys are
// left out. Key i is pending before its activates_at; from then on it is
// active until key i+1 activates (its retires_at), then retiring until
// retires_at+retention, then removed. When no key has activated by now the
// oldest key is active (the first key of a set is active at once; this
// only happens for a clock behind the writer's).
func (s *Set) at(now time.Time) []view {
	activated := -1 // the newest key whose activates_at has passed
	for i := range s.keys {
		if !now.Before(s.keys[i].ActivatesAt) {
			activated = i
		}
	}
	if activated < 0 && len(s.keys) > 0 {
		activated = 0
	}
	out := make([]view, 0, len(s.keys))
	for i := range s.keys {
		v := view{i: i}
		if i+1 < len(s.keys) {
			r := s.keys[i+1].ActivatesAt
			e := r.Add(s.retention)
			v.retiresAt, v.expiresAt = &r, &e
		}
		switch {
		case i == activated:
			v.state = StateActive
		case i > activated:
			v.state = StatePending
		case !now.Before(*v.expiresAt):
			continue // removed
		default:
			v.state = StateRetiring
		}
		out = append(out, v)
	}
	return out
}

// Len is the number of keys stored, removed ones included until the next
// write prunes them.
func (s *Set) Len() int { return len(s.keys) }

// Keys lists the metadata of the keys that are not removed at now, oldest
// first.
func (s *Set) Keys(now time.Time) []KeyInfo {
	views := s.at(now)
	out := make([]KeyInfo, 0, len(views))
	for _, v := range views {
		k := &s.keys[v.i]
		out = append(out, KeyInfo{
			KID: k.KID, Alg: k.Alg, State: v.state,
			CreatedAt: k.CreatedAt, ActivatesAt: k.ActivatesAt,
			RetiresAt: v.retiresAt, ExpiresAt: v.expiresAt,
		})
	}
	return out
}

// Signer returns the key active at now, or ErrNoKeys for an empty set.
func (s *Set) Signer(now time.Time) (*SigningKey, error) {
	for _, v := range s.at(now) {
		if v.state != StateActive {
			continue
		}
		k := &s.keys[v.i]
		signer, err := s.open(k)
		if err != nil {
			return nil, err
		}
		return &SigningKey{kid: k.KID, alg: jose.SignatureAlgorithm(k.Alg), signer: signer}, nil
	}
	return nil, fmt.Errorf("server %s/%s: %w", s.TenantID, s.ServerID, ErrNoKeys)
}

// JSONWebKeySet is the public key set published at now: the active key
// first, then the pending and retiring keys oldest first; each with kid,
// alg and use "sig".
func (s *Set) JSONWebKeySet(now time.Time) (jose.JSONWebKeySet, error) {
	views := s.at(now)
	set := jose.JSONWebKeySet{Keys: make([]jose.JSONWebKey, 0, len(views))}
	var rest []jose.JSONWebKey
	for _, v := range views {
		k := &s.keys[v.i]
		pub, err := x509.ParsePKIXPublicKey(k.PublicKey)
		if err != nil {
			return jose.JSONWebKeySet{}, fmt.Errorf("server %s/%s key %s: public key: %w", s.TenantID, s.ServerID, k.KID, err)
		}
		switch pub.(type) {
		case *rsa.PublicKey, *ecdsa.PublicKey:
		default:
			return jose.JSONWebKeySet{}, fmt.Errorf("server %s/%s key %s: unexpected public key type %T", s.TenantID, s.ServerID, k.KID, pub)
		}
		jwk := jose.JSONWebKey{Key: pub, KeyID: k.KID, Algorithm: k.Alg, Use: "sig"}
		if v.state == StateActive {
			set.Keys = append(set.Keys, jwk)
		} else {
			rest = append(rest, jwk)
		}
	}
	set.Keys = append(set.Keys, rest...)
	return set, nil
}

// JWKS is JSONWebKeySet(now) as JSON ({"keys":[…]}), public keys only.
func (s *Set) JWKS(now time.Time) ([]byte, error) {
	set, err := s.JSONWebKeySet(now)
	if err != nil {
		return nil, err
	}
	return json.Marshal(set)
}

// expired reports whether keys[i] is removed at now.
func (s *Set) expired(i int, now time.Time) bool {
	if i+1 >= len(s.keys) {
		return false
	}
	return !now.Before(s.keys[i+1].ActivatesAt.Add(s.retention))
}
