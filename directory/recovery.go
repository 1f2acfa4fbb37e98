package directory

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/gatehouse-dev/gatehouse/store"
)

// Recovery links (POST /api/admin/{tid}/users/{uid}/recover): a one-time
// key the user's browser presents at {public_url}/{tid}/default/login/
// recover/{key}. Only the key's SHA-256 is kept, as runtime state of kind
// RecoveryStateKind under the tenant, id = RecoveryKeyHash(key), expiring
// after RecoveryTTL; TakeRecovery consumes it once.
const (
	// RecoveryStateKind is the runtime state kind of pending recoveries.
	RecoveryStateKind = "user-recoveries"
	// RecoveryTTL is how long a recovery link stays usable.
	RecoveryTTL = 24 * time.Hour
	// RecoveryKeyBytes is the key's entropy in bytes (256 bits).
	RecoveryKeyBytes = 32
	// RecoveryServerID is the server whose login page serves the link.
	RecoveryServerID = "default"
	// RecoveryPathPrefix follows the issuer ({public_url}/{tid}/default)
	// in a recovery link; the key comes after it.
	RecoveryPathPrefix = "/login/recover/"
)

// Recovery is the runtime state of one pending recovery.
type Recovery struct {
	UserID string `json:"user_id"`
	// CredentialVersion is the user's CredentialVersion when the link was
	// made (informational: taking the link resets credentials anyway).
	CredentialVersion string    `json:"credential_version,omitempty"`
	CreatedAt         time.Time `json:"created_at"`
	ExpiresAt         time.Time `json:"expires_at"`
}

// RecoveryKeyHash is the state id of a recovery key: its SHA-256, hex.
func RecoveryKeyHash(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// RecoveryLink is the link a recovery key is used at.
func RecoveryLink(publicURL, tid, key string) string {
	return strings.TrimRight(publicURL, "/") + "/" + tid + "/" + RecoveryServerID + RecoveryPathPrefix + key
}

// CreateRecovery makes a new recovery key for user uid of tenant tid and
// stores its hash; it returns the key (to be shown once) and when it
// expires. credVersion is recorded as Recovery.CredentialVersion.
func CreateRecovery(ctx context.Context, rt store.Runtime, tid, uid, credVersion string, now time.Time) (key string, expires time.Time, err error) {
	b := make([]byte, RecoveryKeyBytes)
	if _, err := rand.Read(b); err != nil {
		return "", time.Time{}, fmt.Errorf("recovery key for user %q: %w", uid, err)
	}
	key = base64.RawURLEncoding.EncodeToString(b)
	expires = now.Add(RecoveryTTL).UTC()
	v, err := json.Marshal(Recovery{UserID: uid, CredentialVersion: credVersion, CreatedAt: now.UTC(), ExpiresAt: expires})
	if err != nil {
		return "", time.Time{}, fmt.Errorf("recovery of user %q: %w", uid, err)
	}
	if err := rt.PutStateTTL(ctx, RecoveryStateKind, tid, RecoveryKeyHash(key), v, RecoveryTTL); err != nil {
		return "", time.Time{}, fmt.Errorf("store the recovery of user %q: %w", uid, err)
	}
	return key, expires, nil
}

// LookupRecovery reads the pending recovery of key without consuming it
// (to show the recovery page), or store.ErrNotFound.
func LookupRecovery(ctx context.Context, rt store.Runtime, tid, key string) (*Recovery, error) {
	if !plausibleRecoveryKey(key) {
		return nil, store.ErrNotFound
	}
	e, err := rt.GetState(ctx, RecoveryStateKind, tid, RecoveryKeyHash(key))
	if err != nil {
		return nil, err
	}
	var r Recovery
	if err := json.Unmarshal(e.Value, &r); err != nil {
		return nil, fmt.Errorf("read a recovery: %w", err)
	}
	return &r, nil
}

// TakeRecovery consumes the recovery of key: it returns it once, and
// store.ErrNotFound for an unknown, expired or already used key.
func TakeRecovery(ctx context.Context, rt store.Runtime, tid, key string) (*Recovery, error) {
	if !plausibleRecoveryKey(key) {
		return nil, store.ErrNotFound
	}
	e, ok, err := rt.TakeState(ctx, RecoveryStateKind, tid, RecoveryKeyHash(key))
	if err != nil {
		return nil, fmt.Errorf("take a recovery: %w", err)
	}
	if !ok {
		return nil, store.ErrNotFound
	}
	var r Recovery
	if err := json.Unmarshal(e.Value, &r); err != nil {
		return nil, fmt.Errorf("read a recovery: %w", err)
	}
	return &r, nil
}

// plausibleRecoveryKey reports whether key has the form CreateRecovery
// makes (so junk never reaches the store).
func plausibleRecoveryKey(key string) bool {
	b, err := base64.RawURLEncoding.DecodeString(key)
	return err == nil && len(b) == RecoveryKeyBytes
}
