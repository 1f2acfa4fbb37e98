package bundles

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/gatehouse-dev/gatehouse/internal/secretbox"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/policies"
	"github.com/gatehouse-dev/gatehouse/store"
)

// signingKeyID is the id of the tenant's current signing key object.
const signingKeyID = "bundle"

var signingKeyRepo = store.Repo[model.SigningKeySpec]{Kind: model.KindSigningKey}

// KeyStore keeps each tenant's signing key in the store, the private half
// sealed with the master key, and caches opened keys.
type KeyStore struct {
	store store.Store
	box   *secretbox.Box

	mu    sync.Mutex
	cache map[string]*policies.SigningKey // by tenant
}

// NewKeyStore returns a key store sealing with box.
func NewKeyStore(s store.Store, box *secretbox.Box) *KeyStore {
	return &KeyStore{store: s, box: box, cache: map[string]*policies.SigningKey{}}
}

// Key returns the tenant's signing key, creating it on first use. Several
// replicas racing to create it agree on the one that was stored first.
func (ks *KeyStore) Key(ctx context.Context, tenantID string) (*policies.SigningKey, error) {
	ks.mu.Lock()
	k := ks.cache[tenantID]
	ks.mu.Unlock()
	if k != nil {
		return k, nil
	}
	k, err := ks.load(ctx, tenantID)
	if errors.Is(err, store.ErrNotFound) {
		k, err = ks.create(ctx, tenantID)
	}
	if err != nil {
		return nil, err
	}
	ks.mu.Lock()
	ks.cache[tenantID] = k
	ks.mu.Unlock()
	return k, nil
}

// Forget drops a tenant's cached key (when the tenant is deleted).
func (ks *KeyStore) Forget(tenantID string) {
	ks.mu.Lock()
	delete(ks.cache, tenantID)
	ks.mu.Unlock()
}

func (ks *KeyStore) load(ctx context.Context, tenantID string) (*policies.SigningKey, error) {
	t, err := signingKeyRepo.Get(ctx, ks.store, tenantID, signingKeyID)
	if err != nil {
		return nil, err
	}
	priv, err := ks.box.Open(t.Spec.SealedPrivateKey, []byte(tenantID))
	if err != nil {
		return nil, fmt.Errorf("open the signing key of tenant %s: %w", tenantID, err)
	}
	return policies.ParseSigningKey(t.Spec.KeyID, t.Spec.Algorithm, t.Spec.PublicKeyPEM, string(priv))
}

func (ks *KeyStore) create(ctx context.Context, tenantID string) (*policies.SigningKey, error) {
	k, err := policies.GenerateSigningKey(tenantID)
	if err != nil {
		return nil, err
	}
	sealed, err := ks.box.Seal([]byte(k.PrivateKeyPEM()), []byte(tenantID))
	if err != nil {
		return nil, err
	}
	obj := &store.Typed[model.SigningKeySpec]{
		Meta: store.Object{TenantID: tenantID, ID: signingKeyID, CreatedBy: "system"},
		Spec: model.SigningKeySpec{KeyID: k.KeyID, Algorithm: k.Algorithm, PublicKeyPEM: k.PublicKeyPEM, SealedPrivateKey: sealed},
	}
	_, err = ks.store.Update(ctx, func(ctx context.Context, tx store.Tx) error {
		if _, err := tx.Get(ctx, model.KindTenant, "", tenantID); err != nil {
			return fmt.Errorf("tenant %s: %w", tenantID, err)
		}
		return signingKeyRepo.Create(ctx, tx, obj)
	})
	if errors.Is(err, store.ErrAlreadyExists) {
		return ks.load(ctx, tenantID) // another replica won
	}
	if err != nil {
		return nil, fmt.Errorf("store the signing key of tenant %s: %w", tenantID, err)
	}
	return k, nil
}
