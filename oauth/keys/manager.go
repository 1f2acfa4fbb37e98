package keys

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/gatehouse-dev/gatehouse/internal/secretbox"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/store"
)

// Kind is the store kind of key sets: one tenant-scoped object per server,
// its id the server id. It is internal (no routes, not exported).
const Kind = "server-keys"

var repo = store.Repo[setSpec]{Kind: Kind}

// writeAttempts bounds the retries of a write that lost a race.
const writeAttempts = 8

// Manager reads and writes key sets in a store, sealing private keys with
// the master key, and caches opened private keys. It is safe for
// concurrent use; several Managers (replicas) may share one store.
type Manager struct {
	store store.Store
	box   *secretbox.Box

	mu    sync.Mutex
	cache map[cacheKey]crypto.Signer
}

type cacheKey struct{ tenant, server, kid string }

// NewManager returns a manager over s sealing with box.
func NewManager(s store.Store, box *secretbox.Box) *Manager {
	return &Manager{store: s, box: box, cache: map[cacheKey]crypto.Signer{}}
}

// Rotation says how a write to a key set is made.
type Rotation struct {
	// Policy is the server's key policy (key type of the new key, its
	// activation delay, and the retention used to prune removed keys).
	Policy Policy
	// Now is the time of the rotation.
	Now time.Time
	// IfMatch, when not 0, is the revision the caller last saw (If-Match);
	// another revision fails with an error wrapping store.ErrConflict and
	// writes nothing.
	IfMatch int64
	// Actor is recorded as the set's created_by/updated_by ("system" when
	// empty).
	Actor string
	// InTx, when set, runs in the write transaction after the set is
	// written, with the new set and the new key (for an audit event, or a
	// check that the server still exists); an error aborts the write.
	InTx func(ctx context.Context, tx store.Tx, s *Set, added KeyInfo) error
}

// Load returns the key set of a server, with p's retention; a server
// without keys has an empty set (Revision 0, Signer → ErrNoKeys).
func (m *Manager) Load(ctx context.Context, tenantID, serverID string, p Policy) (*Set, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	t, err := repo.Get(ctx, m.store, tenantID, serverID)
	if errors.Is(err, store.ErrNotFound) {
		return m.set(tenantID, serverID, 0, p, nil), nil
	}
	if err != nil {
		return nil, fmt.Errorf("load the keys of server %s/%s: %w", tenantID, serverID, err)
	}
	s := m.set(tenantID, serverID, t.Meta.Revision, p, t.Spec.Keys)
	m.evict(s)
	return s, nil
}

// Rotate generates a key of r.Policy.KeyType and adds it to the server's
// set, pending until r.Now + the activation delay (active at once when it
// is the set's first key), and prunes removed keys. Concurrent rotations
// each add their key. It returns the new set and the added key's
// metadata. The tenant must exist.
func (m *Manager) Rotate(ctx context.Context, tenantID, serverID string, r Rotation) (*Set, KeyInfo, error) {
	return m.write(ctx, tenantID, serverID, r, false)
}

// Ensure returns the server's key set, first creating its first key (as
// Rotate does) when it has none. Concurrent calls create one key only.
func (m *Manager) Ensure(ctx context.Context, tenantID, serverID string, r Rotation) (*Set, error) {
	s, err := m.Load(ctx, tenantID, serverID, r.Policy)
	if err != nil || len(s.keys) > 0 {
		return s, err
	}
	s, _, err = m.write(ctx, tenantID, serverID, r, true)
	return s, err
}

// Prune deletes the keys removed at now (per p's retention) from the store
// and returns how many; a set left unchanged is not written.
func (m *Manager) Prune(ctx context.Context, tenantID, serverID string, p Policy, now time.Time) (int, error) {
	if err := p.Validate(); err != nil {
		return 0, err
	}
	removed := 0
	_, err := m.store.Update(ctx, func(ctx context.Context, tx store.Tx) error {
		removed = 0
		t, err := repo.Get(ctx, tx, tenantID, serverID)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		kept := prune(m.set(tenantID, serverID, 0, p, t.Spec.Keys), now)
		removed = len(t.Spec.Keys) - len(kept)
		if removed == 0 {
			return nil
		}
		t.Spec.Keys = kept
		t.Meta.UpdatedBy = "system"
		return repo.Update(ctx, tx, t, t.Meta.Revision)
	})
	if err != nil {
		return 0, fmt.Errorf("prune the keys of server %s/%s: %w", tenantID, serverID, err)
	}
	return removed, nil
}

// Delete removes a server's key set in tx (when the server is deleted);
// a server without keys is not an error.
func Delete(ctx context.Context, tx store.Tx, tenantID, serverID string) error {
	_, err := repo.Delete(ctx, tx, tenantID, serverID, 0)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	return err
}

func (m *Manager) write(ctx context.Context, tenantID, serverID string, r Rotation, onlyIfEmpty bool) (*Set, KeyInfo, error) {
	if err := r.Policy.Validate(); err != nil {
		return nil, KeyInfo{}, err
	}
	if tenantID == "" || serverID == "" {
		return nil, KeyInfo{}, fmt.Errorf("%w: a key set needs a tenant and a server id", store.ErrInvalid)
	}
	actor := r.Actor
	if actor == "" {
		actor = "system"
	}
	now := r.Now.UTC()
	// Generating an RSA key takes a while: do it before the transaction,
	// once, whatever the retries.
	gen, err := generate(r.Policy.KeyType)
	if err != nil {
		return nil, KeyInfo{}, err
	}
	sealed, err := m.box.Seal(gen.pkcs8, aad(tenantID, serverID, gen.kid))
	if err != nil {
		return nil, KeyInfo{}, fmt.Errorf("seal the new key of server %s/%s: %w", tenantID, serverID, err)
	}
	clear(gen.pkcs8)

	var (
		out   *Set
		added KeyInfo
	)
	for attempt := 0; ; attempt++ {
		_, err = m.store.Update(ctx, func(ctx context.Context, tx store.Tx) error {
			t, err := repo.Get(ctx, tx, tenantID, serverID)
			exists := err == nil
			switch {
			case errors.Is(err, store.ErrNotFound):
				if _, err := tx.Get(ctx, model.KindTenant, "", tenantID); err != nil {
					return fmt.Errorf("tenant %s: %w", tenantID, err)
				}
				t = &store.Typed[setSpec]{Meta: store.Object{TenantID: tenantID, ID: serverID, CreatedBy: actor}}
			case err != nil:
				return err
			}
			if r.IfMatch != 0 && t.Meta.Revision != r.IfMatch {
				return fmt.Errorf("keys of server %s/%s are at revision %d, not %d: %w", tenantID, serverID, t.Meta.Revision, r.IfMatch, store.ErrConflict)
			}
			if onlyIfEmpty && len(t.Spec.Keys) > 0 {
				out = m.set(tenantID, serverID, t.Meta.Revision, r.Policy, t.Spec.Keys)
				return nil // another caller made the first key
			}
			keys := prune(m.set(tenantID, serverID, 0, r.Policy, t.Spec.Keys), now)
			k := storedKey{
				Seq: t.Spec.NextSeq, KID: gen.kid, Alg: string(gen.alg),
				CreatedAt: now, ActivatesAt: now,
				PublicKey: gen.pkix, SealedPrivateKey: sealed,
			}
			if len(keys) > 0 {
				k.ActivatesAt = now.Add(r.Policy.ActivationDelay)
				if last := keys[len(keys)-1].ActivatesAt; k.ActivatesAt.Before(last) {
					k.ActivatesAt = last // activate in rotation order
				}
			}
			for _, old := range keys {
				if old.KID == k.KID {
					return fmt.Errorf("server %s/%s: generated key id %s is already in the set", tenantID, serverID, k.KID)
				}
			}
			t.Spec.NextSeq++
			t.Spec.Keys = append(keys, k)
			t.Meta.UpdatedBy = actor
			if exists {
				err = repo.Update(ctx, tx, t, t.Meta.Revision)
			} else {
				err = repo.Create(ctx, tx, t)
			}
			if err != nil {
				return err
			}
			out = m.set(tenantID, serverID, t.Meta.Revision, r.Policy, t.Spec.Keys)
			for _, info := range out.Keys(now) {
				if info.KID == k.KID {
					added = info
				}
			}
			if r.InTx != nil {
				return r.InTx(ctx, tx, out, added)
			}
			return nil
		})
		lostRace := errors.Is(err, store.ErrAlreadyExists) || (errors.Is(err, store.ErrConflict) && r.IfMatch == 0)
		if !lostRace || attempt+1 >= writeAttempts {
			break
		}
	}
	if err != nil {
		return nil, KeyInfo{}, fmt.Errorf("rotate the keys of server %s/%s: %w", tenantID, serverID, err)
	}
	m.evict(out)
	return out, added, nil
}

// prune returns s's keys without those removed at now.
func prune(s *Set, now time.Time) []storedKey {
	kept := make([]storedKey, 0, len(s.keys)+1)
	for i := range s.keys {
		if !s.expired(i, now) {
			kept = append(kept, s.keys[i])
		}
	}
	return kept
}

func (m *Manager) set(tenantID, serverID string, rev int64, p Policy, keys []storedKey) *Set {
	s := &Set{TenantID: tenantID, ServerID: serverID, Revision: rev, retention: p.Retention, keys: keys}
	s.open = func(k *storedKey) (crypto.Signer, error) { return m.openKey(tenantID, serverID, k) }
	return s
}

// openKey returns the private key of k, from the cache or opened from its
// sealed form and checked against its public key.
func (m *Manager) openKey(tenantID, serverID string, k *storedKey) (crypto.Signer, error) {
	ck := cacheKey{tenantID, serverID, k.KID}
	m.mu.Lock()
	signer := m.cache[ck]
	m.mu.Unlock()
	if signer != nil {
		return signer, nil
	}
	fail := func(err error) (crypto.Signer, error) {
		return nil, fmt.Errorf("open key %s of server %s/%s: %w", k.KID, tenantID, serverID, err)
	}
	der, err := m.box.Open(k.SealedPrivateKey, aad(tenantID, serverID, k.KID))
	if err != nil {
		return fail(err)
	}
	priv, err := x509.ParsePKCS8PrivateKey(der)
	clear(der)
	if err != nil {
		return fail(errors.New("the sealed private key does not parse"))
	}
	pub, err := x509.ParsePKIXPublicKey(k.PublicKey)
	if err != nil {
		return fail(err)
	}
	switch key := priv.(type) {
	case *rsa.PrivateKey:
		if k.Alg != string(jose.RS256) || !key.PublicKey.Equal(pub) {
			return fail(errors.New("the private key does not match the published key"))
		}
		signer = key
	case *ecdsa.PrivateKey:
		if k.Alg != string(jose.ES256) || !key.PublicKey.Equal(pub) {
			return fail(errors.New("the private key does not match the published key"))
		}
		signer = key
	default:
		return fail(fmt.Errorf("unexpected private key type %T", priv))
	}
	m.mu.Lock()
	m.cache[ck] = signer
	m.mu.Unlock()
	return signer, nil
}

// evict drops the cached keys of s's server that s no longer holds.
func (m *Manager) evict(s *Set) {
	in := make(map[string]bool, len(s.keys))
	for _, k := range s.keys {
		in[k.KID] = true
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for ck := range m.cache {
		if ck.tenant == s.TenantID && ck.server == s.ServerID && !in[ck.kid] {
			delete(m.cache, ck)
		}
	}
}

// aad binds a sealed key to its tenant, server and key id.
func aad(tenantID, serverID, kid string) []byte {
	return []byte("gatehouse/server-keys\x00" + tenantID + "\x00" + serverID + "\x00" + kid)
}

type generated struct {
	kid   string
	alg   jose.SignatureAlgorithm
	pkix  []byte
	pkcs8 []byte
}

// generate makes a new key of type t with crypto/rand.
func generate(t KeyType) (*generated, error) {
	alg, err := t.alg()
	if err != nil {
		return nil, err
	}
	var priv crypto.Signer
	if alg == jose.RS256 {
		priv, err = rsa.GenerateKey(rand.Reader, RSABits)
	} else {
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		return nil, fmt.Errorf("generate a %s key: %w", alg, err)
	}
	return fromSigner(priv)
}
