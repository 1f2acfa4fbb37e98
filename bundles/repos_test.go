package bundles

import (
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/store"
)

// Typed repositories the tests write configuration with.
var (
	tenantRepo  = store.Repo[model.TenantSpec]{Kind: model.KindTenant, SoftDelete: true}
	serviceRepo = store.Repo[model.ServiceSpec]{Kind: model.KindService}
	apiRepo     = store.Repo[model.APISpec]{Kind: model.KindAPI}
	policyRepo  = store.Repo[model.PolicySpec]{Kind: model.KindPolicy}
	gatewayRepo = store.Repo[model.GatewaySpec]{Kind: model.KindGateway}
)
