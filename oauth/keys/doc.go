// Package keys keeps the signing keys of each authorization server: one key
// set per (tenant, server), its private keys sealed with the master key,
// stored in the store, and a clock-driven lifecycle.
//
// # Lifecycle
//
// Every key goes through pending → active → retiring → removed:
//
//   - Rotate adds a new key, pending until its activates_at, which is the
//     rotation time plus the server's key_activation_delay (never earlier
//     than the activates_at of the key rotated in before it, so keys
//     activate in the order they were rotated in). A pending key is
//     published in the JWKS (and so in bundles) but signs nothing: every
//     verifier has it before the first token it signs.
//   - At activates_at (inclusive) the key becomes active and the key that
//     was active becomes retiring; its retires_at is that instant.
//   - A retiring key stays published until retires_at plus the longest
//     token TTL the caller gives (Policy.Retention, i.e.
//     max(access_token_ttl, id_token_ttl)), so every token it signed can
//     still be verified; at that instant (inclusive) it is removed. Removed
//     keys are no longer shown or published, and their sealed private
//     halves are deleted from the store by the next write (Rotate, Prune).
//   - The first key of a set is active at once (there is no earlier key to
//     sign with), and after it there is always exactly one active key: the
//     newest key whose activates_at has passed, or the oldest key when none
//     has (which only happens when this replica's clock is behind the one
//     that wrote the set).
//
// The states are not stored: a Set holds each key's created_at and
// activates_at, and Set.Signer, Set.JWKS and Set.Keys derive the state of
// every key from the time they are given. Nothing has to run for a key to
// activate or retire, every replica agrees on the states for a given time,
// and tests drive the machine with a fake clock.
//
// # Storage and sealing
//
// A key set is one configuration object of kind Kind ("server-keys"),
// tenant-scoped, with the server id as its id — like the bundle signing key
// of package bundles (kind "signing-keys"), and as WAVE2 §2.4 asks for
// server-keys: configuration, so every change has a revision, enters the
// change feed (the bundle compiler republishes the JWKS) and goes away with
// its tenant. Writes are transactions that read the set, check the caller's
// If-Match revision and write it back with that revision expected, so
// concurrent rotations on one server (on any number of replicas) each add
// their key and never lose one another's.
//
// The private half of each key is PKCS#8 DER sealed with the master key
// (internal/secretbox, AES-256-GCM) with associated data naming the tenant,
// the server and the key id, so a sealed key cannot be moved to another
// server or tenant, or passed off as another key. Opened keys are cached in
// memory by the Manager; this package never logs, and SigningKey prints as
// its kid and algorithm only.
//
// Keys are RSA 2048 (alg RS256) for key_type rsa and P-256 (ES256) for
// ecdsa, generated with crypto/rand; the kid is the key's RFC 7638
// thumbprint (SHA-256, base64url).
package keys
