package keys

import (
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/store"
)

// Published is the public half of a stored key set (an object of Kind),
// read without the master key: what the compiler puts into bundles.
// retention is the server's Policy.Retention.
func Published(o *store.Object, retention time.Duration) (*Set, error) {
	if o.Kind != Kind {
		return nil, fmt.Errorf("keys: object of kind %q is not a key set", o.Kind)
	}
	var spec setSpec
	if len(o.Spec) > 0 {
		if err := json.Unmarshal(o.Spec, &spec); err != nil {
			return nil, fmt.Errorf("keys: decode key set %s/%s: %w", o.TenantID, o.ID, err)
		}
	}
	s := &Set{TenantID: o.TenantID, ServerID: o.ID, Revision: o.Revision, retention: retention, keys: spec.Keys}
	s.open = func(*storedKey) (crypto.Signer, error) { return nil, errPublicOnly }
	return s, nil
}

// errPublicOnly: a Published set has no private keys.
var errPublicOnly = errors.New("keys: a published key set has no private keys")

// RetentionOf is the retention of a server's retiring keys: its longest
// token TTL, max(access_token_ttl, id_token_ttl).
func RetentionOf(s *model.ServerSpec) time.Duration {
	return max(s.AccessTokenTTL.D(), s.IDTokenTTL.D())
}

// PolicyOf is the key policy of a server's configuration.
func PolicyOf(s *model.ServerSpec) Policy {
	return Policy{KeyType: KeyType(s.KeyType), ActivationDelay: s.KeyActivationDelay.D(), Retention: RetentionOf(s)}
}
