package passwords_test

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/passwords"
)

func TestHashVerifies(t *testing.T) {
	h, err := passwords.Hash("correct horse battery staple")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("hash %q does not carry the documented parameters", h)
	}
	if strings.Contains(h, "correct horse") {
		t.Fatal("the hash contains the password")
	}
	ok, err := passwords.Verify(h, "correct horse battery staple")
	if err != nil || !ok {
		t.Fatalf("Verify(right password) = %v, %v", ok, err)
	}
	for _, wrong := range []string{"", "correct horse battery stapl", "Correct horse battery staple", "correct horse battery staple "} {
		if ok, err := passwords.Verify(h, wrong); err != nil || ok {
			t.Errorf("Verify(%q) = %v, %v; want false, nil", wrong, ok, err)
		}
	}
	if err := passwords.Check(h); err != nil {
		t.Fatalf("Check of a fresh hash: %v", err)
	}
}

func TestHashesAreSalted(t *testing.T) {
	a, err := passwords.Hash("same password")
	if err != nil {
		t.Fatal(err)
	}
	b, err := passwords.Hash("same password")
	if err != nil {
		t.Fatal(err)
	}
	if a == b {
		t.Fatal("two hashes of one password are equal: no random salt")
	}
}

// TestReferenceVector: a hash made by another implementation (the
// reference argon2 test vector for argon2id, t=2, m=64 KiB, p=2, salt
// "somesalt", 24-byte tag) verifies: parameters are read from the string.
func TestReferenceVector(t *testing.T) {
	tag, _ := hex.DecodeString("350ac37222f436ccb5c0972f1ebd3bf6b958bf2071841362")
	b64 := base64.RawStdEncoding
	phc := "$argon2id$v=19$m=64,t=2,p=2$" + b64.EncodeToString([]byte("somesalt")) + "$" + b64.EncodeToString(tag)
	ok, err := passwords.Verify(phc, "password")
	if err != nil || !ok {
		t.Fatalf("reference vector: %v, %v", ok, err)
	}
	if ok, _ := passwords.Verify(phc, "passwore"); ok {
		t.Fatal("reference vector matched a wrong password")
	}
}

func TestMalformedHashesAreRefused(t *testing.T) {
	good, err := passwords.Hash("password1")
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(good, "$")
	salt, hash := parts[4], parts[5]
	cases := map[string]string{
		"empty":                "",
		"plain text":           "password1",
		"bcrypt":               "$2a$10$abcdefghijklmnopqrstuuRrX0j6F6CqD4mGJvjG3L6H2Jx1Wc1mS",
		"argon2i":              "$argon2i$v=19$m=19456,t=2,p=1$" + salt + "$" + hash,
		"old version":          "$argon2id$v=16$m=19456,t=2,p=1$" + salt + "$" + hash,
		"no version":           "$argon2id$m=19456,t=2,p=1$" + salt + "$" + hash,
		"parameters reordered": "$argon2id$v=19$t=2,m=19456,p=1$" + salt + "$" + hash,
		"leading zero":         "$argon2id$v=19$m=019456,t=2,p=1$" + salt + "$" + hash,
		"huge memory":          "$argon2id$v=19$m=4194304,t=2,p=1$" + salt + "$" + hash,
		"memory over 64 MiB":   "$argon2id$v=19$m=65537,t=2,p=1$" + salt + "$" + hash,
		"five passes":          "$argon2id$v=19$m=19456,t=5,p=1$" + salt + "$" + hash,
		"five lanes":           "$argon2id$v=19$m=19456,t=2,p=5$" + salt + "$" + hash,
		"zero passes":          "$argon2id$v=19$m=19456,t=0,p=1$" + salt + "$" + hash,
		"many passes":          "$argon2id$v=19$m=19456,t=1000,p=1$" + salt + "$" + hash,
		"zero lanes":           "$argon2id$v=19$m=19456,t=2,p=0$" + salt + "$" + hash,
		"many lanes":           "$argon2id$v=19$m=19456,t=2,p=255$" + salt + "$" + hash,
		"negative":             "$argon2id$v=19$m=-1,t=2,p=1$" + salt + "$" + hash,
		"padded salt":          "$argon2id$v=19$m=19456,t=2,p=1$" + salt + "==$" + hash,
		"short salt":           "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$" + hash,
		"short hash":           "$argon2id$v=19$m=19456,t=2,p=1$" + salt + "$c2hvcnQ",
		"bad base64":           "$argon2id$v=19$m=19456,t=2,p=1$" + salt + "$" + hash[:len(hash)-1] + "!",
		"extra field":          good + "$x",
		"missing hash":         "$argon2id$v=19$m=19456,t=2,p=1$" + salt,
		"no leading dollar":    strings.TrimPrefix(good, "$"),
	}
	for name, phc := range cases {
		if err := passwords.Check(phc); !errors.Is(err, passwords.ErrMalformed) {
			t.Errorf("%s: Check = %v, want ErrMalformed", name, err)
		}
		ok, err := passwords.Verify(phc, "password1")
		if ok || !errors.Is(err, passwords.ErrMalformed) {
			t.Errorf("%s: Verify = %v, %v, want false, ErrMalformed", name, ok, err)
		}
	}
}

func TestPasswordLimits(t *testing.T) {
	if _, err := passwords.Hash(""); !errors.Is(err, passwords.ErrEmptyPassword) {
		t.Errorf("Hash(\"\") = %v", err)
	}
	long := strings.Repeat("x", passwords.MaxPasswordBytes+1)
	if _, err := passwords.Hash(long); !errors.Is(err, passwords.ErrPasswordTooLong) {
		t.Errorf("Hash(too long) = %v", err)
	}
	h, err := passwords.Hash("password1")
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := passwords.Verify(h, long); ok || err != nil {
		t.Errorf("Verify(too long) = %v, %v; want false, nil", ok, err)
	}
}

// TestBoundsAccepted: the largest parameters accepted (m=64 MiB, t=4,
// p=4) are well-formed, one more of any is not (TestMalformedHashes).
func TestBoundsAccepted(t *testing.T) {
	b64 := base64.RawStdEncoding
	phc := "$argon2id$v=19$m=65536,t=4,p=4$" + b64.EncodeToString([]byte("somesalt")) + "$" + b64.EncodeToString(make([]byte, 32))
	if err := passwords.Check(phc); err != nil {
		t.Fatalf("Check(m=65536,t=4,p=4) = %v, want nil", err)
	}
	if passwords.MaxMemory != 65536 || passwords.MaxTime != 4 || passwords.MaxThreads != 4 {
		t.Fatalf("bounds m≤%d t≤%d p≤%d, want 65536, 4, 4", passwords.MaxMemory, passwords.MaxTime, passwords.MaxThreads)
	}
}
