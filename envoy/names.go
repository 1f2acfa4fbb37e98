package envoy

import (
	"errors"
	"fmt"
	"strings"

	"github.com/gatehouse-dev/gatehouse/model"
)

// Resource names. They are derived from ids only, so they stay stable
// across rebuilds, restarts and control-plane replicas.
const (
	// AuthorizerClusterName is the cluster of the authorizer's ext_authz
	// gRPC server.
	AuthorizerClusterName = "gatehouse_authorizer"
	// XDSClusterName is the bootstrap's static cluster of the control plane.
	XDSClusterName = "gatehouse_xds"

	serviceClusterPrefix = "service_"
	gatewayPrefix        = "gateway_"
	grpcRoutePrefix      = "grpc_"
)

// NodeID is the xDS node id of a gateway: its model.GatewayRef,
// "tenant/gateway". The gateway's Envoy (or proxyless gRPC) bootstrap
// carries it, and the control plane keys the gateway's snapshot by it.
func NodeID(tenantID, gatewayID string) string {
	return model.GatewayRef{TenantID: tenantID, GatewayID: gatewayID}.String()
}

// ParseNodeID splits a node id made by NodeID (model.ParseGatewayRef).
func ParseNodeID(nodeID string) (tenantID, gatewayID string, err error) {
	ref, err := model.ParseGatewayRef(nodeID)
	if err != nil {
		return "", "", fmt.Errorf("node id %w", err)
	}
	return ref.TenantID, ref.GatewayID, nil
}

// checkNodePart validates one half of a node id.
func checkNodePart(what, v string) error {
	if v == "" {
		return fmt.Errorf("%s id is empty", what)
	}
	if strings.Contains(v, "/") {
		return fmt.Errorf("%s id %q contains '/'", what, v)
	}
	return nil
}

// ServiceClusterName is the cluster of a service's upstream.
func ServiceClusterName(serviceID string) string { return serviceClusterPrefix + serviceID }

// ListenerName is the listener of an envoy gateway.
func ListenerName(gatewayID string) string { return gatewayPrefix + gatewayID }

// RouteConfigName is the RouteConfiguration (served by RDS) of an envoy
// gateway.
func RouteConfigName(gatewayID string) string { return gatewayPrefix + gatewayID }

var errNoCompiled = errors.New("no compiled gateway configuration")
