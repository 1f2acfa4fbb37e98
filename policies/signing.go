package policies

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
)

// SigningAlgorithm signs bundles. RS256 (PKCS#1 v1.5) is deterministic, so
// the same bundle content always gives the same bytes.
const SigningAlgorithm = "RS256"

// SigningKey is a tenant's bundle signing key.
type SigningKey struct {
	KeyID        string
	Algorithm    string
	PublicKeyPEM string
	privatePEM   string
}

// PrivateKeyPEM is the private key, PEM-encoded (to seal it for storage).
func (k *SigningKey) PrivateKeyPEM() string { return k.privatePEM }

// GenerateSigningKey makes a new RSA-2048 key. Its id is the tenant plus a
// short fingerprint of the public key.
func GenerateSigningKey(tenantID string) (*SigningKey, error) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("generate signing key: %w", err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		return nil, err
	}
	return &SigningKey{
		KeyID:        signingKeyID(tenantID, pub),
		Algorithm:    SigningAlgorithm,
		PublicKeyPEM: string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})),
		privatePEM:   string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})),
	}, nil
}

// signingKeyID is the id of a tenant's key: the tenant plus a short
// fingerprint of the public key (PKIX DER).
func signingKeyID(tenantID string, pub []byte) string {
	sum := sha256.Sum256(pub)
	return tenantID + "-" + hex.EncodeToString(sum[:6])
}

// ParseSigningKey rebuilds a stored key, checking the halves belong together.
func ParseSigningKey(keyID, alg, publicPEM, privatePEM string) (*SigningKey, error) {
	block, _ := pem.Decode([]byte(privatePEM))
	if block == nil {
		return nil, errors.New("signing key: no PEM block in the private key")
	}
	priv, err := x509.ParsePKCS1PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	if err != nil {
		return nil, err
	}
	if string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})) != publicPEM {
		return nil, errors.New("signing key: the public key does not match the private key")
	}
	return &SigningKey{KeyID: keyID, Algorithm: alg, PublicKeyPEM: publicPEM, privatePEM: privatePEM}, nil
}
