// Package gatewaycert maps TLS client certificates to gateways, for the
// listeners whose peers are gateways (xDS, the bundle service): a
// certificate names a gateway by a SAN, and a call is admitted only when
// that gateway is the one its gateway credential belongs to.
//
// A certificate names gateway G of tenant T with
//
//   - a URI SAN whose path ends in /tenant/T/gateway/G, for example the
//     SPIFFE id spiffe://example.org/tenant/acme/gateway/edge, or
//   - a DNS SAN G.T.gateway.<domain>, for example
//     edge.acme.gateway.example.org (only for gateway ids that are
//     lowercase DNS labels; ids are case-sensitive, so names are compared
//     exactly).
//
// Other SANs are ignored. A certificate naming two different gateways is
// refused: it is not clear which one it speaks for.
package gatewaycert

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/gatehouse-dev/gatehouse/model"
)

// Identities returns the distinct gateways cert names (see the package
// documentation), in SAN order.
func Identities(cert *x509.Certificate) []model.GatewayRef {
	var out []model.GatewayRef
	add := func(r model.GatewayRef, ok bool) {
		if !ok {
			return
		}
		for _, have := range out {
			if have == r {
				return
			}
		}
		out = append(out, r)
	}
	for _, u := range cert.URIs {
		add(fromURI(u))
	}
	for _, d := range cert.DNSNames {
		add(fromDNS(d))
	}
	return out
}

// fromURI reads …/tenant/T/gateway/G from a URI's path.
func fromURI(u *url.URL) (model.GatewayRef, bool) {
	if u == nil || u.Opaque != "" || u.RawQuery != "" || u.Fragment != "" {
		return model.GatewayRef{}, false
	}
	segs := strings.Split(strings.TrimSuffix(u.EscapedPath(), "/"), "/")
	if len(segs) < 5 { // "", …, "tenant", T, "gateway", G
		return model.GatewayRef{}, false
	}
	s := segs[len(segs)-4:]
	r := model.GatewayRef{TenantID: s[1], GatewayID: s[3]}
	if s[0] != "tenant" || s[2] != "gateway" || !model.ValidTenantID(r.TenantID) || !model.ValidObjectID(r.GatewayID) {
		return model.GatewayRef{}, false
	}
	return r, true
}

// fromDNS reads G.T.gateway.<domain>.
func fromDNS(name string) (model.GatewayRef, bool) {
	labels := strings.Split(name, ".")
	if len(labels) < 4 || labels[2] != "gateway" {
		return model.GatewayRef{}, false
	}
	r := model.GatewayRef{TenantID: labels[1], GatewayID: labels[0]}
	if !model.ValidTenantID(r.TenantID) || !model.ValidObjectID(r.GatewayID) {
		return model.GatewayRef{}, false
	}
	return r, true
}

// ErrNoCertificate is Check's error when a certificate is required and
// the peer sent none.
var ErrNoCertificate = errors.New("a client certificate is required")

// Checker checks a peer's verified client certificate chain against the
// gateway of its credential. The TLS handshake has already verified the
// chain against the client CA (expired and foreign certificates never get
// here).
type Checker struct {
	// Require refuses peers without a certificate; otherwise they are
	// admitted on their credential alone. A certificate that is sent must
	// name the credential's gateway either way.
	Require bool
	// AllowUnnamed admits a certificate that names no gateway on its CA
	// alone (ext_authz callers: Envoys may hold one certificate for every
	// gateway); a certificate that names a gateway must still name the
	// right one.
	AllowUnnamed bool
}

// Check returns nil when chain's leaf names exactly the gateway
// tenantID/gatewayID, or when chain is empty and no certificate is
// required. Its errors say what is wrong without echoing secrets.
func (c Checker) Check(chain []*x509.Certificate, tenantID, gatewayID string) error {
	if len(chain) == 0 {
		if c.Require {
			return ErrNoCertificate
		}
		return nil
	}
	want := model.GatewayRef{TenantID: tenantID, GatewayID: gatewayID}
	ids := Identities(chain[0])
	switch {
	case len(ids) == 0 && c.AllowUnnamed:
		return nil
	case len(ids) == 0:
		return errors.New("the client certificate names no gateway (SAN URI …/tenant/T/gateway/G or DNS G.T.gateway.<domain>)")
	case len(ids) > 1:
		return fmt.Errorf("the client certificate names %d gateways; it must name one", len(ids))
	case ids[0] != want:
		return fmt.Errorf("the client certificate is gateway %s's, not %s's", ids[0], want)
	}
	return nil
}
