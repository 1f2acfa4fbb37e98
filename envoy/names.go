package envoy

import (
	"errors"
	"fmt"
	"strings"
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

// NodeID is the xDS node id of a gateway: tenantID + "/" + gatewayID. The
// gateway's Envoy (or proxyless gRPC) bootstrap carries it, and the control
// plane keys the gateway's snapshot by it. Tenant and object ids never
// contain "/" (see model.ValidObjectID), so the id parses back.
func NodeID(tenantID, gatewayID string) string {
	return tenantID + "/" + gatewayID
}

// ParseNodeID splits a node id made by NodeID.
func ParseNodeID(nodeID string) (tenantID, gatewayID string, err error) {
	t, g, ok := strings.Cut(nodeID, "/")
	switch {
	case !ok:
		return "", "", fmt.Errorf("node id %q: want <tenant>/<gateway>", nodeID)
	case t == "" || g == "":
		return "", "", fmt.Errorf("node id %q: tenant and gateway must not be empty", nodeID)
	case strings.Contains(g, "/"):
		return "", "", fmt.Errorf("node id %q: more than one '/'", nodeID)
	}
	return t, g, nil
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
