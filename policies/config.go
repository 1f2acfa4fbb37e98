package policies

import (
	"sort"
	"time"

	"github.com/gatehouse-dev/gatehouse/model"
)

// Object is one configuration object as the compiler sees it.
type Object[S any] struct {
	ID          string
	Name        string
	Description string
	Spec        S
}

// Config is one tenant's configuration as the compiler reads it: a
// consistent snapshot at Revision.
type Config struct {
	Revision int64
	Tenant   Object[model.TenantSpec]
	Services []Object[model.ServiceSpec]
	APIs     []Object[model.APISpec]
	Policies []Object[model.PolicySpec]
	Scopes   []Object[model.ScopeSpec]
	Gateways []Object[model.GatewaySpec]
	Issuers  []Object[model.IssuerSpec]
	// Servers are the tenant's authorization servers: each is a token
	// issuer of the bundles ("server:<id>", issuer PublicURL/tid/id) with
	// the public keys of ServerKeys (by server id) inline.
	Servers    []Object[model.ServerSpec]
	ServerKeys map[string]KeySet
	// PublicURL is the base of the servers' issuer URLs.
	PublicURL string
	// KeysAt is the time the servers' published keys are taken at (zero:
	// the time of compiling).
	KeysAt time.Time
	// AllowedBuiltins are the denied built-ins (DeniedBuiltins) the
	// control plane lets policies call; they go into the bundle so the
	// authorizer compiles with the same capabilities.
	AllowedBuiltins []string
	// Revocations are the tenant's token revocations, which every gateway
	// enforces (data.gatehouse.config.revocations; nil: none).
	Revocations *RevocationsData
}

// Gateway returns the gateway with that id, or nil.
func (c *Config) Gateway(id string) *Object[model.GatewaySpec] {
	for i := range c.Gateways {
		if c.Gateways[i].ID == id {
			return &c.Gateways[i]
		}
	}
	return nil
}

// servicesOf returns the services a gateway enforces, sorted by id: the
// ones it lists, or all of them when it lists none.
func (c *Config) servicesOf(gw *Object[model.GatewaySpec]) []Object[model.ServiceSpec] {
	var out []Object[model.ServiceSpec]
	want := map[string]bool{}
	for _, id := range gw.Spec.ServiceIDs {
		want[id] = true
	}
	for _, s := range c.Services {
		if len(want) == 0 || want[s.ID] {
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}
