package gatewaycert

import (
	"crypto/x509"
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/model"
)

func cert(t *testing.T, uris []string, dns ...string) *x509.Certificate {
	t.Helper()
	c := &x509.Certificate{DNSNames: dns}
	for _, s := range uris {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		c.URIs = append(c.URIs, u)
	}
	return c
}

func TestIdentities(t *testing.T) {
	edge := model.GatewayRef{TenantID: "acme", GatewayID: "edge"}
	for _, tc := range []struct {
		name string
		uris []string
		dns  []string
		want []model.GatewayRef
	}{
		{"spiffe uri", []string{"spiffe://example.org/tenant/acme/gateway/edge"}, nil, []model.GatewayRef{edge}},
		{"uri with a prefix path", []string{"https://ca.example/x/y/tenant/acme/gateway/edge"}, nil, []model.GatewayRef{edge}},
		{"uri trailing slash", []string{"spiffe://td/tenant/acme/gateway/edge/"}, nil, []model.GatewayRef{edge}},
		{"object id characters", []string{"spiffe://td/tenant/acme/gateway/Edge.v2_~x"}, nil,
			[]model.GatewayRef{{TenantID: "acme", GatewayID: "Edge.v2_~x"}}},
		{"dns", nil, []string{"edge.acme.gateway.example.org"}, []model.GatewayRef{edge}},
		{"uri and dns agree", []string{"spiffe://td/tenant/acme/gateway/edge"}, []string{"edge.acme.gateway.internal"}, []model.GatewayRef{edge}},
		{"two gateways", []string{"spiffe://td/tenant/acme/gateway/edge"}, []string{"other.acme.gateway.internal"},
			[]model.GatewayRef{edge, {TenantID: "acme", GatewayID: "other"}}},
		{"plural words are not the form", []string{"spiffe://td/tenants/acme/gateways/edge"}, nil, nil},
		{"segments out of place", []string{"spiffe://td/tenant/acme/gateway/edge/extra"}, nil, nil},
		{"escaped slash is no segment", []string{"spiffe://td/tenant/acme/gateway/a%2Fb"}, nil, nil},
		{"query", []string{"spiffe://td/tenant/acme/gateway/edge?x=1"}, nil, nil},
		{"invalid tenant id", []string{"spiffe://td/tenant/ACME/gateway/edge"}, nil, nil},
		{"dns without the marker", nil, []string{"edge.acme.example.org"}, nil},
		{"dns too short", nil, []string{"edge.acme.gateway"}, nil},
		{"wildcard dns", nil, []string{"*.acme.gateway.example.org"}, nil},
		{"server name", nil, []string{"cp.example.org", "localhost"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Identities(cert(t, tc.uris, tc.dns...))
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("got %v, want %v", got, tc.want)
				}
			}
		})
	}
}

func TestCheck(t *testing.T) {
	edge := []*x509.Certificate{cert(t, []string{"spiffe://td/tenant/acme/gateway/edge"})}
	other := []*x509.Certificate{cert(t, []string{"spiffe://td/tenant/acme/gateway/other"})}
	otherTenant := []*x509.Certificate{cert(t, nil, "edge.globex.gateway.example.org")}
	anonymous := []*x509.Certificate{cert(t, nil, "client.example.org")}
	two := []*x509.Certificate{cert(t, []string{"spiffe://td/tenant/acme/gateway/edge", "spiffe://td/tenant/acme/gateway/other"})}
	for _, tc := range []struct {
		name    string
		require bool
		chain   []*x509.Certificate
		wantErr string
	}{
		{"required and right", true, edge, ""},
		{"optional and right", false, edge, ""},
		{"optional without certificate", false, nil, ""},
		{"required without certificate", true, nil, ErrNoCertificate.Error()},
		{"another gateway", true, other, "gateway acme/other's, not acme/edge's"},
		{"another gateway, optional", false, other, "gateway acme/other's"},
		{"another tenant", true, otherTenant, "gateway globex/edge's"},
		{"names no gateway", true, anonymous, "names no gateway"},
		{"names no gateway, optional", false, anonymous, "names no gateway"},
		{"names two", true, two, "names 2 gateways"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Checker{Require: tc.require}.Check(tc.chain, "acme", "edge")
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
	// ext_authz callers: a certificate naming no gateway passes on its CA;
	// one naming another gateway does not.
	unnamed := Checker{Require: true, AllowUnnamed: true}
	if err := unnamed.Check(anonymous, "acme", "edge"); err != nil {
		t.Fatalf("unnamed certificate with AllowUnnamed: %v", err)
	}
	if err := unnamed.Check(other, "acme", "edge"); err == nil {
		t.Fatal("another gateway's certificate passed with AllowUnnamed")
	}
	if err := unnamed.Check(nil, "acme", "edge"); !errors.Is(err, ErrNoCertificate) {
		t.Fatalf("no certificate, required: %v", err)
	}
	if err := (Checker{Require: true}).Check(nil, "acme", "edge"); !errors.Is(err, ErrNoCertificate) {
		t.Fatalf("err = %v, want ErrNoCertificate", err)
	}
}
