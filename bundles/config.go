package bundles

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/oauth/keys"
	"github.com/gatehouse-dev/gatehouse/policies"
	"github.com/gatehouse-dev/gatehouse/store"
)

// compiledKinds are the kinds LoadConfig compiles bundles from, in the
// order it reads them.
var compiledKinds = []string{
	model.KindTenant, model.KindService, model.KindAPI, model.KindPolicy, model.KindScope, model.KindGateway, model.KindIssuer,
	model.KindServer, keys.Kind, model.KindTokenRevocation,
}

// CompiledKinds are the kinds bundles are compiled from. The kind
// registry must declare exactly these Bundled (CheckInputs).
func CompiledKinds() []string { return slices.Clone(compiledKinds) }

// CheckInputs reports whether the kinds a registry declares Bundled are
// exactly the kinds the compiler reads: a bundled kind it does not read
// would never reach a gateway, a read kind not declared would not rebuild
// bundles when it changes.
func CheckInputs(bundled []string) error {
	want := map[string]bool{}
	for _, k := range compiledKinds {
		want[k] = true
	}
	for _, k := range bundled {
		if !want[k] {
			return fmt.Errorf("bundles: kind %q is declared bundled, but the compiler does not read it (bundles/config.go)", k)
		}
		delete(want, k)
	}
	for _, k := range compiledKinds {
		if want[k] {
			return fmt.Errorf("bundles: the compiler reads kind %q, but it is not declared bundled", k)
		}
	}
	return nil
}

func decodeAll[S any](objs []*store.Object) ([]policies.Object[S], error) {
	out := make([]policies.Object[S], len(objs))
	for i, o := range objs {
		var spec S
		if len(o.Spec) > 0 {
			if err := json.Unmarshal(o.Spec, &spec); err != nil {
				return nil, fmt.Errorf("decode %s %q: %w", o.Kind, o.ID, err)
			}
		}
		out[i] = policies.Object[S]{ID: o.ID, Name: o.Name, Description: o.Description, Spec: spec}
	}
	return out, nil
}

// LoadConfig reads a tenant's configuration from r, which should be a
// consistent snapshot (store.View) so that the revision matches the objects.
func LoadConfig(ctx context.Context, r store.Reader, tenantID string) (*policies.Config, error) {
	cfg, objs, err := loadObjects(ctx, r, tenantID, compiledKinds[1:])
	if err != nil {
		return nil, err
	}
	if cfg.Services, err = decodeAll[model.ServiceSpec](objs[model.KindService]); err != nil {
		return nil, err
	}
	if cfg.APIs, err = decodeAll[model.APISpec](objs[model.KindAPI]); err != nil {
		return nil, err
	}
	if cfg.Policies, err = decodeAll[model.PolicySpec](objs[model.KindPolicy]); err != nil {
		return nil, err
	}
	if cfg.Scopes, err = decodeAll[model.ScopeSpec](objs[model.KindScope]); err != nil {
		return nil, err
	}
	if cfg.Gateways, err = decodeAll[model.GatewaySpec](objs[model.KindGateway]); err != nil {
		return nil, err
	}
	if cfg.Issuers, err = decodeAll[model.IssuerSpec](objs[model.KindIssuer]); err != nil {
		return nil, err
	}
	return cfg, decodeServers(cfg, objs)
}

// LoadTokenConfig reads what verifying a tenant's own tokens needs, and
// nothing else: the tenant, its authorization servers, their published
// keys and the token revocations (ServerIssuers and Revocations of the
// result are what the tenant's bundles carry).
func LoadTokenConfig(ctx context.Context, r store.Reader, tenantID string) (*policies.Config, error) {
	cfg, objs, err := loadObjects(ctx, r, tenantID, []string{model.KindServer, keys.Kind, model.KindTokenRevocation})
	if err != nil {
		return nil, err
	}
	return cfg, decodeServers(cfg, objs)
}

// loadObjects reads the revision, the tenant and its objects of kinds.
func loadObjects(ctx context.Context, r store.Reader, tenantID string, kinds []string) (*policies.Config, map[string][]*store.Object, error) {
	rev, err := r.Revision(ctx)
	if err != nil {
		return nil, nil, err
	}
	t, err := r.Get(ctx, model.KindTenant, "", tenantID)
	if err != nil {
		return nil, nil, fmt.Errorf("load tenant %s: %w", tenantID, err)
	}
	tenant, err := decodeAll[model.TenantSpec]([]*store.Object{t})
	if err != nil {
		return nil, nil, err
	}
	cfg := &policies.Config{Revision: rev, Tenant: tenant[0]}
	objs := map[string][]*store.Object{}
	for _, kind := range kinds {
		pg, err := r.List(ctx, store.Query{Kind: kind, TenantID: tenantID})
		if err != nil {
			return nil, nil, fmt.Errorf("load %s of %s: %w", kind, tenantID, err)
		}
		objs[kind] = pg.Items
	}
	return cfg, objs, nil
}

// decodeServers sets the servers, their published keys and the token
// revocations of cfg from objs.
func decodeServers(cfg *policies.Config, objs map[string][]*store.Object) error {
	var err error
	if cfg.Servers, err = decodeAll[model.ServerSpec](objs[model.KindServer]); err != nil {
		return err
	}
	if cfg.ServerKeys, err = publishedKeys(cfg.Servers, objs[keys.Kind]); err != nil {
		return err
	}
	revs, err := decodeAll[model.TokenRevocationSpec](objs[model.KindTokenRevocation])
	if err != nil {
		return err
	}
	cfg.Revocations = revocationsOf(revs)
	return nil
}
