package policies

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
)

// SigningKeyFromPEM makes a bundle signing key of an RSA private key in
// PEM, PKCS#1 ("RSA PRIVATE KEY", what openssl genrsa -traditional and
// the control plane write) or PKCS#8 ("PRIVATE KEY"). An empty keyID
// gives the id the control plane gives a tenant's key: the tenant plus a
// fingerprint of the public key, so the same key signs alike offline
// (gatehouse bundle build --signing-key) and on the control plane.
func SigningKeyFromPEM(tenantID, keyID string, privatePEM []byte) (*SigningKey, error) {
	block, rest := pem.Decode(privatePEM)
	if block == nil {
		return nil, errors.New("signing key: no PEM block")
	}
	if b, _ := pem.Decode(rest); b != nil {
		return nil, errors.New("signing key: more than one PEM block; give the private key alone")
	}
	var priv *rsa.PrivateKey
	switch block.Type {
	case "RSA PRIVATE KEY":
		k, err := x509.ParsePKCS1PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("signing key: %w", err)
		}
		priv = k
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("signing key: %w", err)
		}
		rk, ok := k.(*rsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("signing key: a %T; bundles are signed with %s, which needs an RSA key", k, SigningAlgorithm)
		}
		priv = rk
	default:
		return nil, fmt.Errorf("signing key: a PEM %q block, not an RSA private key (RSA PRIVATE KEY or PRIVATE KEY)", block.Type)
	}
	if priv.N.BitLen() < 2048 {
		return nil, fmt.Errorf("signing key: RSA-%d is too short; use at least 2048 bits", priv.N.BitLen())
	}
	pub, err := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	if keyID == "" {
		keyID = signingKeyID(tenantID, pub)
	}
	return ParseSigningKey(keyID, SigningAlgorithm,
		string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})),
		string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(priv)})))
}
