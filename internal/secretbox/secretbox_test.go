package secretbox

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func TestSealOpen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "master.key")
	key, created, err := LoadOrCreateKeyFile(path)
	if err != nil || !created {
		t.Fatalf("create: %v %v", created, err)
	}
	if info, _ := os.Stat(path); info.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", info.Mode().Perm())
	}
	again, created, err := LoadOrCreateKeyFile(path)
	if err != nil || created || !bytes.Equal(key, again) {
		t.Fatalf("reload: %v %v", created, err)
	}
	box, err := New(key)
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := box.Seal([]byte("private key"), []byte("acme"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte("private key")) {
		t.Fatal("plaintext visible in the sealed value")
	}
	if got, err := box.Open(sealed, []byte("acme")); err != nil || string(got) != "private key" {
		t.Fatalf("open: %q %v", got, err)
	}
	if _, err := box.Open(sealed, []byte("other")); err == nil {
		t.Fatal("opened with the wrong associated data")
	}
	sealed[len(sealed)-1] ^= 1
	if _, err := box.Open(sealed, []byte("acme")); err == nil {
		t.Fatal("opened a tampered value")
	}
	other, _ := New(bytes.Repeat([]byte{1}, KeySize))
	s2, _ := box.Seal([]byte("x"), nil)
	if _, err := other.Open(s2, nil); err == nil {
		t.Fatal("opened with another key")
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadOrCreateKeyFile(path); err == nil {
		t.Fatal("a world-readable key file must be refused")
	}
	if _, err := ParseKey("c2hvcnQ="); err == nil {
		t.Fatal("short key accepted")
	}
}

func TestDeriveKey(t *testing.T) {
	k1, k2 := make([]byte, KeySize), make([]byte, KeySize)
	k2[0] = 1
	a, _ := New(k1)
	a2, _ := New(k1)
	b, _ := New(k2)
	if a.DeriveKey("oauth") != a2.DeriveKey("oauth") {
		t.Fatal("the same master key derives different keys")
	}
	if a.DeriveKey("oauth") == a.DeriveKey("other") {
		t.Fatal("two purposes derive the same key")
	}
	if a.DeriveKey("oauth") == b.DeriveKey("oauth") {
		t.Fatal("two master keys derive the same key")
	}
}
