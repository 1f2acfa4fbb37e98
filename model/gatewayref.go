package model

import (
	"fmt"
	"strings"
)

// GatewayRef names a gateway: its tenant and its id. Its string form,
// "tenant/gateway", is the gateway's xDS node id, the key of its engine
// in an authorizer and what --authz-default-gateway takes. Tenant and
// object ids never contain "/" (ValidTenantID, ValidObjectID), so the
// string parses back (ParseGatewayRef). The zero value names no gateway.
type GatewayRef struct {
	TenantID  string
	GatewayID string
}

// String returns "tenant/gateway".
func (r GatewayRef) String() string { return r.TenantID + "/" + r.GatewayID }

// IsZero reports whether r names no gateway.
func (r GatewayRef) IsZero() bool { return r == GatewayRef{} }

// ParseGatewayRef parses "tenant/gateway": exactly one '/', with a
// non-empty tenant and gateway on either side.
func ParseGatewayRef(s string) (GatewayRef, error) {
	t, g, ok := strings.Cut(s, "/")
	switch {
	case !ok:
		return GatewayRef{}, fmt.Errorf("%q: want <tenant>/<gateway>", s)
	case t == "" || g == "":
		return GatewayRef{}, fmt.Errorf("%q: tenant and gateway must not be empty", s)
	case strings.Contains(g, "/"):
		return GatewayRef{}, fmt.Errorf("%q: more than one '/'", s)
	}
	return GatewayRef{TenantID: t, GatewayID: g}, nil
}
