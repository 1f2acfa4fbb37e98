package bundles

import (
	"context"
	"fmt"

	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/policies"
	"github.com/gatehouse-dev/gatehouse/store"
)

// Repositories of the kinds bundles are compiled from.
var (
	tenantRepo  = store.Repo[model.TenantSpec]{Kind: model.KindTenant}
	serviceRepo = store.Repo[model.ServiceSpec]{Kind: model.KindService}
	apiRepo     = store.Repo[model.APISpec]{Kind: model.KindAPI}
	policyRepo  = store.Repo[model.PolicySpec]{Kind: model.KindPolicy}
	scopeRepo   = store.Repo[model.ScopeSpec]{Kind: model.KindScope}
	gatewayRepo = store.Repo[model.GatewaySpec]{Kind: model.KindGateway}
	issuerRepo  = store.Repo[model.IssuerSpec]{Kind: model.KindIssuer}
)

// InputKinds are the kinds whose changes can change a tenant's bundles.
var InputKinds = map[string]bool{
	model.KindTenant: true, model.KindService: true, model.KindAPI: true,
	model.KindPolicy: true, model.KindScope: true, model.KindGateway: true, model.KindIssuer: true,
}

func objects[S any](items []*store.Typed[S]) []policies.Object[S] {
	out := make([]policies.Object[S], len(items))
	for i, t := range items {
		out[i] = policies.Object[S]{ID: t.Meta.ID, Name: t.Meta.Name, Description: t.Meta.Description, Spec: t.Spec}
	}
	return out
}

// LoadConfig reads a tenant's configuration from r, which should be a
// consistent snapshot (store.View) so that the revision matches the objects.
func LoadConfig(ctx context.Context, r store.Reader, tenantID string) (*policies.Config, error) {
	rev, err := r.Revision(ctx)
	if err != nil {
		return nil, err
	}
	t, err := tenantRepo.Get(ctx, r, "", tenantID)
	if err != nil {
		return nil, fmt.Errorf("load tenant %s: %w", tenantID, err)
	}
	cfg := &policies.Config{Revision: rev, Tenant: objects([]*store.Typed[model.TenantSpec]{t})[0]}
	q := store.Query{TenantID: tenantID}
	services, err := serviceRepo.ListAll(ctx, r, q)
	if err != nil {
		return nil, fmt.Errorf("load services of %s: %w", tenantID, err)
	}
	apis, err := apiRepo.ListAll(ctx, r, q)
	if err != nil {
		return nil, fmt.Errorf("load APIs of %s: %w", tenantID, err)
	}
	pols, err := policyRepo.ListAll(ctx, r, q)
	if err != nil {
		return nil, fmt.Errorf("load policies of %s: %w", tenantID, err)
	}
	scopes, err := scopeRepo.ListAll(ctx, r, q)
	if err != nil {
		return nil, fmt.Errorf("load scopes of %s: %w", tenantID, err)
	}
	gateways, err := gatewayRepo.ListAll(ctx, r, q)
	if err != nil {
		return nil, fmt.Errorf("load gateways of %s: %w", tenantID, err)
	}
	issuers, err := issuerRepo.ListAll(ctx, r, q)
	if err != nil {
		return nil, fmt.Errorf("load issuers of %s: %w", tenantID, err)
	}
	cfg.Issuers = objects(issuers)
	cfg.Services, cfg.APIs, cfg.Policies = objects(services), objects(apis), objects(pols)
	cfg.Scopes, cfg.Gateways = objects(scopes), objects(gateways)
	return cfg, nil
}
