package oauth

import (
	"context"

	"github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/gatehouse-dev/gatehouse/model"
)

// SigningKey is the server's active key; a server without keys gets its
// first one (keys.Manager.Ensure).
func (s *storage) SigningKey(ctx context.Context) (op.SigningKey, error) {
	rq, err := requestFrom(ctx)
	if err != nil {
		return nil, err
	}
	set, err := rq.keySet(ctx, s.p, true)
	if err != nil {
		return nil, oidc.ErrServerError().WithParent(err)
	}
	k, err := set.Signer(s.p.now())
	if err != nil {
		return nil, oidc.ErrServerError().WithParent(err)
	}
	return k, nil
}

// SignatureAlgorithms is the server's algorithm: RS256 for key_type rsa,
// ES256 for ecdsa.
func (s *storage) SignatureAlgorithms(ctx context.Context) ([]jose.SignatureAlgorithm, error) {
	rq, err := requestFrom(ctx)
	if err != nil {
		return nil, err
	}
	return []jose.SignatureAlgorithm{signatureAlgorithm(rq.spec())}, nil
}

func signatureAlgorithm(s *model.ServerSpec) jose.SignatureAlgorithm {
	if s.KeyType == "ecdsa" {
		return jose.ES256
	}
	return jose.RS256
}

// KeySet is the server's published keys: pending, active and retiring.
func (s *storage) KeySet(ctx context.Context) ([]op.Key, error) {
	rq, err := requestFrom(ctx)
	if err != nil {
		return nil, err
	}
	set, err := rq.keySet(ctx, s.p, false)
	if err != nil {
		return nil, err
	}
	jwks, err := set.JSONWebKeySet(s.p.now())
	if err != nil {
		return nil, err
	}
	out := make([]op.Key, 0, len(jwks.Keys))
	for _, k := range jwks.Keys {
		out = append(out, publicKey{k})
	}
	return out, nil
}

// publicKey adapts a published key to op.Key.
type publicKey struct{ k jose.JSONWebKey }

func (k publicKey) ID() string                         { return k.k.KeyID }
func (k publicKey) Algorithm() jose.SignatureAlgorithm { return jose.SignatureAlgorithm(k.k.Algorithm) }
func (k publicKey) Use() string                        { return k.k.Use }
func (k publicKey) Key() any                           { return k.k.Key }
