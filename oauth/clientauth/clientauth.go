// Package clientauth holds the rules of OAuth client secrets that the
// admin API (which mints them) and the OAuth provider (which checks them)
// share: a secret is 256 random bits, base64url-encoded, stored only as
// its SHA-256 (hex); a rotation keeps the previous secret valid for a
// grace period; client_secret_expires_at (Unix seconds, 0 = never) ends
// both.
package clientauth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/gatehouse-dev/gatehouse/model"
)

// Secret length rules of caller-given secrets.
const (
	// MinSecretLength is the shortest client secret accepted from a caller.
	MinSecretLength = 32
	// MaxSecretLength is the longest.
	MaxSecretLength = 512
)

// NewSecret returns a new client secret: 32 random bytes, base64url
// (43 characters, no padding).
func NewSecret() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("clientauth: generate a client secret: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// HashSecret is the at-rest form of a client secret: its SHA-256, hex.
func HashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// ValidHash reports whether h has the form HashSecret writes (64
// lowercase hex digits).
func ValidHash(h string) bool {
	if len(h) != 2*sha256.Size {
		return false
	}
	for _, c := range h {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// ClientSecretValid reports whether secret authenticates the client at
// now: it hashes to the current secret hash, or to the previous one while
// its grace period (PreviousSecretExpiresAt) lasts, and the client's
// secrets have not expired (ClientSecretExpiresAt, Unix seconds; 0 never).
// Public clients and clients without a secret never match. The hashes are
// compared in constant time, both of them whatever the first gives.
func ClientSecretValid(spec *model.ClientSpec, secret string, now time.Time) bool {
	if spec == nil || spec.Public || spec.SecretHash == "" || secret == "" {
		return false
	}
	if spec.ClientSecretExpiresAt != 0 && now.Unix() >= spec.ClientSecretExpiresAt {
		return false
	}
	sum := sha256.Sum256([]byte(secret))
	current := hashEqual(sum[:], spec.SecretHash)
	previous := hashEqual(sum[:], spec.PreviousSecretHash)
	inGrace := spec.PreviousSecretExpiresAt != nil && now.Before(*spec.PreviousSecretExpiresAt)
	return current || (previous && inGrace)
}

// hashEqual compares a digest with a stored hex hash in constant time; a
// hash that is not 64 hex digits matches nothing.
func hashEqual(sum []byte, stored string) bool {
	want, err := hex.DecodeString(stored)
	if err != nil || len(want) != len(sum) {
		return false
	}
	return subtle.ConstantTimeCompare(sum, want) == 1
}
