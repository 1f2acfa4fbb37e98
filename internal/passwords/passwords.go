// Package passwords hashes and verifies login passwords with argon2id
// (RFC 9106), stored in the PHC string format:
//
//	$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>
//
// salt and hash are unpadded standard base64. Hash uses the parameters
// OWASP's Password Storage Cheat Sheet recommends as the minimum for
// argon2id — 19 MiB of memory (m=19456 KiB), 2 passes (t=2), 1 lane (p=1)
// — with a 16-byte random salt and a 32-byte tag. Verify reads the
// parameters from the string, so hashes made with other parameters keep
// verifying; it refuses parameters beyond the bounds below (a stored or
// imported hash cannot make a login cost unbounded memory or time) and
// any string that is not exactly this format.
package passwords

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
)

// The parameters of new hashes.
const (
	// Memory is argon2id's memory cost in KiB (19 MiB).
	Memory uint32 = 19456
	// Time is the number of passes.
	Time uint32 = 2
	// Threads is the degree of parallelism (lanes).
	Threads uint8 = 1
	// SaltLen is the length of the random salt in bytes.
	SaltLen = 16
	// KeyLen is the length of the tag in bytes.
	KeyLen = 32
)

// Bounds of the parameters Verify accepts: a stored or imported hash
// may cost a login at most about 3.4× a new hash's memory and 2× its
// passes, so a process's concurrent verifications stay bounded in
// memory.
const (
	// MaxMemory is the largest memory cost accepted (64 MiB, in KiB).
	MaxMemory uint32 = 64 << 10
	// MaxTime is the largest number of passes accepted.
	MaxTime uint32 = 4
	// MaxThreads is the largest degree of parallelism accepted.
	MaxThreads = 4
	// MinSaltLen and MaxSaltLen bound the salt (bytes).
	MinSaltLen, MaxSaltLen = 8, 64
	// MinKeyLen and MaxKeyLen bound the tag (bytes).
	MinKeyLen, MaxKeyLen = 16, 64
	// MaxPasswordBytes caps the passwords Hash and Verify take.
	MaxPasswordBytes = 4096
)

// Errors, for errors.Is.
var (
	// ErrMalformed: the string is not an argon2id PHC hash this package
	// accepts (its message says what is wrong).
	ErrMalformed = errors.New("not an argon2id PHC hash")
	// ErrPasswordTooLong: the password exceeds MaxPasswordBytes.
	ErrPasswordTooLong = errors.New("password too long")
	// ErrEmptyPassword: Hash was given an empty password.
	ErrEmptyPassword = errors.New("empty password")
)

var b64 = base64.RawStdEncoding

// Hash returns the argon2id hash of password in PHC string form, with a
// new random salt and the package's parameters.
func Hash(password string) (string, error) {
	switch {
	case password == "":
		return "", ErrEmptyPassword
	case len(password) > MaxPasswordBytes:
		return "", fmt.Errorf("%w: at most %d bytes", ErrPasswordTooLong, MaxPasswordBytes)
	}
	salt := make([]byte, SaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("passwords: read a salt: %w", err)
	}
	p := params{memory: Memory, time: Time, threads: Threads, salt: salt, keyLen: KeyLen}
	p.hash = p.derive(password)
	return p.String(), nil
}

// Verify reports whether password matches the PHC hash phc, comparing in
// constant time. A malformed hash is an error wrapping ErrMalformed (and
// never matches).
func Verify(phc, password string) (bool, error) {
	p, err := parse(phc)
	if err != nil {
		return false, err
	}
	if len(password) > MaxPasswordBytes {
		return false, nil
	}
	return subtle.ConstantTimeCompare(p.derive(password), p.hash) == 1, nil
}

// Check validates phc as Verify would read it (for hashes that arrive
// from a configuration document), without deriving anything.
func Check(phc string) error {
	_, err := parse(phc)
	return err
}

type params struct {
	memory, time uint32
	threads      uint8
	salt, hash   []byte
	keyLen       uint32
}

func (p *params) derive(password string) []byte {
	return argon2.IDKey([]byte(password), p.salt, p.time, p.memory, p.threads, p.keyLen)
}

// String is the PHC form.
func (p *params) String() string {
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.memory, p.time, p.threads,
		b64.EncodeToString(p.salt), b64.EncodeToString(p.hash))
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// parse reads "$argon2id$v=19$m=…,t=…,p=…$salt$hash", strictly: the
// version must be 19, the parameters in that order, each within bounds,
// salt and hash unpadded base64 of bounded length.
func parse(phc string) (*params, error) {
	parts := strings.Split(phc, "$")
	if len(parts) != 6 || parts[0] != "" {
		return nil, malformed("want $argon2id$v=19$m=<KiB>,t=<passes>,p=<lanes>$<salt>$<hash>")
	}
	if parts[1] != "argon2id" {
		return nil, malformed("algorithm %q is not argon2id", parts[1])
	}
	if parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return nil, malformed("version %q is not v=%d", parts[2], argon2.Version)
	}
	kv := strings.Split(parts[3], ",")
	if len(kv) != 3 {
		return nil, malformed("parameters %q are not m=…,t=…,p=…", parts[3])
	}
	var vals [3]uint64
	for i, name := range []string{"m", "t", "p"} {
		v, ok := strings.CutPrefix(kv[i], name+"=")
		if !ok || v == "" || (len(v) > 1 && v[0] == '0') {
			return nil, malformed("parameters %q are not m=…,t=…,p=…", parts[3])
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return nil, malformed("parameter %s=%q is not a number", name, v)
		}
		vals[i] = n
	}
	p := &params{memory: uint32(vals[0]), time: uint32(vals[1])}
	switch {
	case vals[2] < 1 || vals[2] > MaxThreads:
		return nil, malformed("p=%d is not between 1 and %d", vals[2], MaxThreads)
	case p.time < 1 || p.time > MaxTime:
		return nil, malformed("t=%d is not between 1 and %d", p.time, MaxTime)
	case p.memory < 8*uint32(vals[2]) || p.memory > MaxMemory:
		return nil, malformed("m=%d is not between 8·p and %d KiB", p.memory, MaxMemory)
	}
	p.threads = uint8(vals[2])
	var err error
	if p.salt, err = b64.Strict().DecodeString(parts[4]); err != nil || len(p.salt) < MinSaltLen || len(p.salt) > MaxSaltLen {
		return nil, malformed("the salt is not %d-%d bytes of unpadded base64", MinSaltLen, MaxSaltLen)
	}
	if p.hash, err = b64.Strict().DecodeString(parts[5]); err != nil || len(p.hash) < MinKeyLen || len(p.hash) > MaxKeyLen {
		return nil, malformed("the hash is not %d-%d bytes of unpadded base64", MinKeyLen, MaxKeyLen)
	}
	p.keyLen = uint32(len(p.hash))
	return p, nil
}
