package admin

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/store"
)

// Principal is the authenticated caller of an admin request.
type Principal struct {
	// Subject names the caller in audit events ("bootstrap-admin",
	// "credential:<id>").
	Subject string
	// TenantID binds the caller to one tenant; empty means system-wide.
	TenantID string
}

// System reports whether the principal has system-wide rights.
func (p Principal) System() bool { return p.TenantID == "" }

// CanAccessTenant reports whether the principal may act on tenant tid.
func (p Principal) CanAccessTenant(tid string) bool { return p.System() || p.TenantID == tid }

// errBadCredentials is returned for any token that does not authenticate,
// without saying why (no oracle for guessing).
var errBadCredentials = errors.New("invalid bearer token")

// Authenticator turns a bearer token into a principal.
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (Principal, error)
}

// tokenAuth accepts the bootstrap token, tenant-bound admin credentials
// and, when jwt is set, access tokens of the admin servers (JWTs).
type tokenAuth struct {
	bootstrapHash [32]byte
	store         store.Reader
	jwt           TokenVerifier
}

// credentialPrefix starts every tenant-bound admin token:
// ghc_<tenant>.<credential id>.<secret>.
const credentialPrefix = "ghc_"

func (a *tokenAuth) Authenticate(ctx context.Context, token string) (Principal, error) {
	if token == "" {
		return Principal{}, errBadCredentials
	}
	if rest, ok := strings.CutPrefix(token, credentialPrefix); ok {
		return a.credential(ctx, rest)
	}
	if a.jwt != nil && strings.HasPrefix(token, "eyJ") && strings.Count(token, ".") == 2 {
		sub, tid, accepted, err := a.jwt.VerifyAdminToken(ctx, token)
		switch {
		case err != nil:
			return Principal{}, fmt.Errorf("verify an access token: %w", err)
		case !accepted:
			return Principal{}, errBadCredentials
		}
		return Principal{Subject: sub, TenantID: tid}, nil
	}
	sum := sha256.Sum256([]byte(token))
	if subtle.ConstantTimeCompare(sum[:], a.bootstrapHash[:]) == 1 {
		return Principal{Subject: "bootstrap-admin"}, nil
	}
	return Principal{}, errBadCredentials
}

func (a *tokenAuth) credential(ctx context.Context, rest string) (Principal, error) {
	parts := strings.Split(rest, ".")
	if len(parts) != 3 || !model.ValidTenantID(parts[0]) || !model.ValidObjectID(parts[1]) {
		return Principal{}, errBadCredentials
	}
	tid, id, secret := parts[0], parts[1], parts[2]
	cred, err := credentialRepo.Get(ctx, a.store, tid, id)
	if errors.Is(err, store.ErrNotFound) {
		return Principal{}, errBadCredentials
	}
	if err != nil {
		return Principal{}, fmt.Errorf("look up credential: %w", err)
	}
	want, err := hex.DecodeString(cred.Spec.SecretHash)
	if err != nil {
		return Principal{}, errBadCredentials
	}
	sum := sha256.Sum256([]byte(secret))
	if subtle.ConstantTimeCompare(sum[:], want) != 1 {
		return Principal{}, errBadCredentials
	}
	return Principal{Subject: "credential:" + id, TenantID: tid}, nil
}

var credentialRepo = store.Repo[model.AdminCredentialSpec]{Kind: model.KindAdminCredential}

// newSecret returns 32 random bytes, base64url-encoded.
func newSecret() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate secret: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// hashSecret is the at-rest form of a high-entropy secret.
func hashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// BootstrapTokenFile is where a generated bootstrap token is kept.
const BootstrapTokenFile = "admin-token"

// BootstrapToken resolves the system-wide bootstrap admin token. When
// fromEnv (GATEHOUSE_ADMIN_TOKEN) is set it wins. Otherwise the token in
// dataDir/admin-token is used, generated (mode 0600) on first start.
// It returns the token, the file it lives in ("" when from the environment)
// and whether it was generated just now.
func BootstrapToken(dataDir, fromEnv string) (token, path string, generated bool, err error) {
	if fromEnv != "" {
		if len(fromEnv) < 16 {
			return "", "", false, errors.New("GATEHOUSE_ADMIN_TOKEN must be at least 16 characters")
		}
		return fromEnv, "", false, nil
	}
	path = filepath.Join(dataDir, BootstrapTokenFile)
	if b, err := os.ReadFile(path); err == nil {
		tok := strings.TrimSpace(string(b))
		if len(tok) < 16 {
			return "", "", false, fmt.Errorf("bootstrap token in %s is too short", path)
		}
		if info, err := os.Stat(path); err == nil && info.Mode().Perm()&0o077 != 0 {
			return "", "", false, fmt.Errorf("bootstrap token file %s is readable by others (mode %v); chmod 600 it", path, info.Mode().Perm())
		}
		return tok, path, false, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", "", false, fmt.Errorf("read bootstrap token: %w", err)
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return "", "", false, fmt.Errorf("create data dir: %w", err)
	}
	secret, err := newSecret()
	if err != nil {
		return "", "", false, err
	}
	tok := "gha_" + secret
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", "", false, fmt.Errorf("write bootstrap token: %w", err)
	}
	if _, err := f.WriteString(tok + "\n"); err != nil {
		f.Close()
		return "", "", false, fmt.Errorf("write bootstrap token: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return "", "", false, fmt.Errorf("write bootstrap token: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", "", false, fmt.Errorf("write bootstrap token: %w", err)
	}
	return tok, path, true, nil
}
