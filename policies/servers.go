package policies

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/gatehouse-dev/gatehouse/model"
)

// KeySet is a server's published key set (oauth/keys.Set), as the
// compiler reads it: the number of keys it holds and the public ones
// published at a time.
type KeySet interface {
	Len() int
	JSONWebKeySet(now time.Time) (jose.JSONWebKeySet, error)
}

// ServerIssuerPrefix starts the issuer id of an authorization server of
// the tenant in bundles: "server:<server id>".
const ServerIssuerPrefix = "server:"

// ServerIssuers are the tenant's authorization servers as token issuers:
// issuer {PublicURL}/{tid}/{aid}, audiences the issuer URL and the
// server's audiences, and the server's published keys inline (pending,
// active and retiring, sorted by kid so that replicas compile the same
// content). A server without keys yet is left out: it has issued no
// token, and the key it gets first rebuilds the bundle.
func (c *Config) ServerIssuers() ([]Object[model.IssuerSpec], error) {
	if len(c.Servers) == 0 {
		return nil, nil
	}
	now := c.KeysAt
	if now.IsZero() {
		now = time.Now()
	}
	var out []Object[model.IssuerSpec]
	for _, srv := range c.Servers {
		set := c.ServerKeys[srv.ID]
		if set == nil || set.Len() == 0 {
			continue
		}
		jwks, err := set.JSONWebKeySet(now)
		if err != nil {
			return nil, fmt.Errorf("compile: server %s: %w", srv.ID, err)
		}
		if len(jwks.Keys) == 0 {
			continue
		}
		if c.PublicURL == "" {
			return nil, fmt.Errorf("compile: server %s has keys but no public URL was given for its issuer URL", srv.ID)
		}
		slices.SortFunc(jwks.Keys, func(a, b jose.JSONWebKey) int { return strings.Compare(a.KeyID, b.KeyID) })
		raw, err := json.Marshal(jwks)
		if err != nil {
			return nil, fmt.Errorf("compile: server %s: encode keys: %w", srv.ID, err)
		}
		iss := model.IssuerURL(c.PublicURL, c.Tenant.ID, srv.ID)
		auds := append([]string{iss}, srv.Spec.Audiences...)
		slices.Sort(auds)
		out = append(out, Object[model.IssuerSpec]{ID: ServerIssuerPrefix + srv.ID, Name: ServerIssuerPrefix + srv.ID,
			Spec: model.IssuerSpec{Issuer: iss, Audiences: slices.Compact(auds), JWKS: raw}})
	}
	return out, nil
}
