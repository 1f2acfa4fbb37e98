package admin

import (
	"context"

	"github.com/gatehouse-dev/gatehouse/bundles"
	"github.com/gatehouse-dev/gatehouse/model"
)

// A gateway's runtime state — its OPA instances' status reports, when it
// last fetched its bundle, its decision log — is written by the bundle
// service (package bundleservice, which cmd/gatehouse mounts beside this
// API) and kept by package bundles, which both read: here it is shown in
// the gateway's status.opa and its decisions listing, and forgotten when
// the gateway is deleted (bundles.Manager.ForgetGateway).

// opaStatusView summarises the gateway's OPA instances (status.opa).
type opaStatusView = bundles.OPAStatus

// decisionStream is the runtime log stream of the gateways' decision logs.
const decisionStream = model.DecisionLogStream

// opaStatus assembles the gateway's status.opa from its instances'
// reports.
func (s *Server) opaStatus(ctx context.Context, tid, gw string) opaStatusView {
	return bundles.GatewayOPAStatus(ctx, s.store, tid, gw)
}
