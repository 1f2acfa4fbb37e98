// Package secretbox encrypts secrets at rest (AES-256-GCM) under a master
// key kept outside the store.
package secretbox

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// KeySize is the master key length in bytes.
const KeySize = 32

// Box seals and opens secrets with one master key.
type Box struct {
	aead cipher.AEAD
	// root is HMAC-SHA256(master key, "gatehouse/secretbox/derive"): the
	// root of DeriveKey, so the master key itself is kept only inside aead.
	root [32]byte
}

// New makes a box from a 32-byte key.
func New(key []byte) (*Box, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("secretbox: the master key must be %d bytes, got %d", KeySize, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	b := &Box{aead: aead}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte("gatehouse/secretbox/derive"))
	copy(b.root[:], mac.Sum(nil))
	return b, nil
}

// DeriveKey is a 32-byte key for one purpose ("oauth/crypto-key"), derived
// from the master key (HMAC-SHA256): stable across restarts and replicas
// sharing the master key, different per purpose, and revealing nothing of
// the master key or of other purposes' keys.
func (b *Box) DeriveKey(purpose string) [32]byte {
	mac := hmac.New(sha256.New, b.root[:])
	mac.Write([]byte(purpose))
	var out [32]byte
	copy(out[:], mac.Sum(nil))
	return out
}

// Seal encrypts plaintext bound to aad (e.g. the owning tenant, so a sealed
// value cannot be moved to another owner). The result is nonce||ciphertext.
func (b *Box) Seal(plaintext, aad []byte) ([]byte, error) {
	nonce := make([]byte, b.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("secretbox: nonce: %w", err)
	}
	return b.aead.Seal(nonce, nonce, plaintext, aad), nil
}

// Open decrypts a value made by Seal with the same aad.
func (b *Box) Open(sealed, aad []byte) ([]byte, error) {
	n := b.aead.NonceSize()
	if len(sealed) < n+b.aead.Overhead() {
		return nil, errors.New("secretbox: sealed value is too short")
	}
	out, err := b.aead.Open(nil, sealed[:n], sealed[n:], aad)
	if err != nil {
		return nil, errors.New("secretbox: cannot decrypt (wrong master key or tampered value)")
	}
	return out, nil
}

// ParseKey decodes a base64 (standard or URL, padded or not) master key.
func ParseKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if k, err := enc.DecodeString(s); err == nil && len(k) == KeySize {
			return k, nil
		}
	}
	return nil, fmt.Errorf("secretbox: the master key must be %d bytes, base64-encoded", KeySize)
}

// LoadOrCreateKeyFile reads the master key from path, or generates one
// there (mode 0600) when the file does not exist. created reports which.
func LoadOrCreateKeyFile(path string) (key []byte, created bool, err error) {
	if b, err := os.ReadFile(path); err == nil {
		if info, err := os.Stat(path); err == nil && info.Mode().Perm()&0o077 != 0 {
			return nil, false, fmt.Errorf("master key file %s is readable by others (mode %v); chmod 600 it", path, info.Mode().Perm())
		}
		k, err := ParseKey(string(b))
		return k, false, err
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, false, fmt.Errorf("read master key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, false, fmt.Errorf("create master key dir: %w", err)
	}
	key = make([]byte, KeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, false, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, false, fmt.Errorf("write master key: %w", err)
	}
	_, werr := f.WriteString(base64.StdEncoding.EncodeToString(key) + "\n")
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		return nil, false, fmt.Errorf("write master key: %w", err)
	}
	return key, true, nil
}
