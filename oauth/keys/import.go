package keys

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/store"
)

// MaxImportedKeys bounds the keys of one import.
const MaxImportedKeys = 8

// ErrInvalidImport: a JWK Set given to import is not one this server can
// sign with; the message names the key ("keys[1]: …").
var ErrInvalidImport = errors.New("invalid key import")

// ParseImport reads a JSON Web Key Set of private keys to import into a
// server of key type t: RSA keys of at least RSABits bits for rsa, P-256
// ECDSA keys for ecdsa. Public-only keys, other types and curves are
// refused (the error wraps ErrInvalidImport and names the key).
func ParseImport(raw json.RawMessage, t KeyType) ([]crypto.Signer, error) {
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(raw, &set); err != nil {
		return nil, fmt.Errorf("%w: not a JSON Web Key Set: %v", ErrInvalidImport, err)
	}
	if len(set.Keys) == 0 || len(set.Keys) > MaxImportedKeys {
		return nil, fmt.Errorf("%w: keys: give 1 to %d keys", ErrInvalidImport, MaxImportedKeys)
	}
	alg, err := t.alg()
	if err != nil {
		return nil, err
	}
	out := make([]crypto.Signer, 0, len(set.Keys))
	for i, k := range set.Keys {
		var s crypto.Signer
		switch priv := k.Key.(type) {
		case *rsa.PrivateKey:
			if alg != jose.RS256 {
				return nil, fmt.Errorf("%w: keys[%d]: an RSA key, but the server's key_type is %s", ErrInvalidImport, i, KeyTypeOr(t))
			}
			if priv.N.BitLen() < RSABits {
				return nil, fmt.Errorf("%w: keys[%d]: RSA keys must have at least %d bits", ErrInvalidImport, i, RSABits)
			}
			if err := priv.Validate(); err != nil {
				return nil, fmt.Errorf("%w: keys[%d]: %v", ErrInvalidImport, i, err)
			}
			s = priv
		case *ecdsa.PrivateKey:
			if alg != jose.ES256 {
				return nil, fmt.Errorf("%w: keys[%d]: an ECDSA key, but the server's key_type is %s", ErrInvalidImport, i, KeyTypeOr(t))
			}
			if priv.Curve != elliptic.P256() {
				return nil, fmt.Errorf("%w: keys[%d]: ECDSA keys must be on P-256", ErrInvalidImport, i)
			}
			s = priv
		default:
			return nil, fmt.Errorf("%w: keys[%d]: not a private RSA or ECDSA key (public keys cannot sign)", ErrInvalidImport, i)
		}
		out = append(out, s)
	}
	return out, nil
}

// KeyTypeOr is t, or rsa when t is empty (the default).
func KeyTypeOr(t KeyType) KeyType {
	if t == "" {
		return KeyTypeRSA
	}
	return t
}

// ImportInTx adds signers (ParseImport) to the key set of a server in tx,
// sealed like generated keys: the first key of an empty set is active at
// once, the others activate after p's activation delay, in order (as
// rotations). A key already in the set is refused (ErrInvalidImport).
// It returns the imported keys as the set shows them at now.
func (m *Manager) ImportInTx(ctx context.Context, tx store.Tx, tenantID, serverID string, signers []crypto.Signer, p Policy, now time.Time, actor string) ([]KeyInfo, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if actor == "" {
		actor = "system"
	}
	now = now.UTC()
	t, err := repo.Get(ctx, tx, tenantID, serverID)
	exists := err == nil
	switch {
	case errors.Is(err, store.ErrNotFound):
		if _, err := tx.Get(ctx, model.KindTenant, "", tenantID); err != nil {
			return nil, fmt.Errorf("tenant %s: %w", tenantID, err)
		}
		t = &store.Typed[setSpec]{Meta: store.Object{TenantID: tenantID, ID: serverID, CreatedBy: actor}}
	case err != nil:
		return nil, err
	}
	keys := prune(m.set(tenantID, serverID, 0, p, t.Spec.Keys), now)
	var kids []string
	for i, s := range signers {
		gen, err := fromSigner(s)
		if err != nil {
			return nil, fmt.Errorf("%w: keys[%d]: %v", ErrInvalidImport, i, err)
		}
		for _, old := range keys {
			if old.KID == gen.kid {
				return nil, fmt.Errorf("%w: keys[%d]: key %s is already a key of the server", ErrInvalidImport, i, gen.kid)
			}
		}
		sealed, err := m.box.Seal(gen.pkcs8, aad(tenantID, serverID, gen.kid))
		clear(gen.pkcs8)
		if err != nil {
			return nil, fmt.Errorf("seal an imported key of server %s/%s: %w", tenantID, serverID, err)
		}
		k := storedKey{Seq: t.Spec.NextSeq, KID: gen.kid, Alg: string(gen.alg), CreatedAt: now, ActivatesAt: now,
			PublicKey: gen.pkix, SealedPrivateKey: sealed}
		if len(keys) > 0 {
			k.ActivatesAt = now.Add(p.ActivationDelay)
			if last := keys[len(keys)-1].ActivatesAt; k.ActivatesAt.Before(last) {
				k.ActivatesAt = last
			}
		}
		t.Spec.NextSeq++
		keys = append(keys, k)
		kids = append(kids, k.KID)
	}
	t.Spec.Keys = keys
	t.Meta.UpdatedBy = actor
	if exists {
		err = repo.Update(ctx, tx, t, t.Meta.Revision)
	} else {
		err = repo.Create(ctx, tx, t)
	}
	if err != nil {
		return nil, fmt.Errorf("import keys of server %s/%s: %w", tenantID, serverID, err)
	}
	set := m.set(tenantID, serverID, t.Meta.Revision, p, t.Spec.Keys)
	var out []KeyInfo
	for _, info := range set.Keys(now) {
		for _, kid := range kids {
			if info.KID == kid {
				out = append(out, info)
			}
		}
	}
	return out, nil
}

// fromSigner is the stored form of an existing private key.
func fromSigner(priv crypto.Signer) (*generated, error) {
	var alg jose.SignatureAlgorithm
	switch priv.(type) {
	case *rsa.PrivateKey:
		alg = jose.RS256
	case *ecdsa.PrivateKey:
		alg = jose.ES256
	default:
		return nil, fmt.Errorf("unsupported key type %T", priv)
	}
	pkix, err := x509.MarshalPKIXPublicKey(priv.Public())
	if err != nil {
		return nil, err
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, err
	}
	tp, err := (&jose.JSONWebKey{Key: priv.Public()}).Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, err
	}
	return &generated{kid: base64.RawURLEncoding.EncodeToString(tp), alg: alg, pkix: pkix, pkcs8: pkcs8}, nil
}
