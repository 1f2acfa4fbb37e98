package envoy

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/types/known/anypb"
)

// TLSClient is how a generated client (Envoy cluster, gRPC xDS client) verifies a server over TLS and, optionally, presents a client certificate.
type TLSClient struct {
	CAPEM      string // CA bundle, inline PEM (wins over CAFile)
	CAFile     string // CA bundle file on the client's host; both empty: the system bundle
	ServerName string // SNI and the name verified; default the address's host
	CertFile   string // client certificate chain file on the client's host (mTLS); with KeyFile
	KeyFile    string
}

// validate checks what can be checked where the configuration is written:
// a client certificate has both files, an inline CA bundle is PEM
// certificates only, the server name is a host name or an IP address. The
// files live on the client's host and are not read.
func (c *TLSClient) validate() error {
	if c == nil {
		return nil
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return errors.New("tls: a client certificate needs both a certificate file and a key file")
	}
	if c.CAPEM != "" {
		if err := CheckPEMCertificates(c.CAPEM); err != nil {
			return fmt.Errorf("tls: inline CA bundle: %w", err)
		}
	}
	if n := c.ServerName; n != "" && !isIP(n) && strings.ContainsAny(n, " \t\r\n/:[]") {
		return fmt.Errorf("tls: server name %q is neither a host name nor an IP address", n)
	}
	return nil
}

// CheckPEMCertificates accepts one or more PEM CERTIFICATE blocks that
// parse as X.509 certificates, and nothing else but whitespace.
func CheckPEMCertificates(s string) error {
	rest := []byte(s)
	n := 0
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return fmt.Errorf("PEM block %d is a %q, not a CERTIFICATE", n+1, b.Type)
		}
		if _, err := x509.ParseCertificate(b.Bytes); err != nil {
			return fmt.Errorf("PEM block %d: %w", n+1, err)
		}
		n++
	}
	if strings.TrimSpace(string(rest)) != "" {
		return errors.New("text that is not PEM")
	}
	if n == 0 {
		return errors.New("no PEM certificates")
	}
	return nil
}

// clone copies c, so that a caller changing its value later changes
// nothing.
func (c *TLSClient) clone() *TLSClient {
	if c == nil {
		return nil
	}
	cc := *c
	return &cc
}

func isIP(s string) bool {
	_, err := netip.ParseAddr(s)
	return err == nil
}

// serverName is the name c verifies for a server at host: ServerName, or
// the host; ip says whether it is an IP address (verified against IP
// SANs, and sent as no SNI).
func (c *TLSClient) serverName(host string) (name string, ip bool) {
	name = host
	if c.ServerName != "" {
		name = strings.ToLower(c.ServerName)
	}
	if a, err := netip.ParseAddr(name); err == nil {
		return a.Unmap().String(), true
	}
	return name, false
}

// tlsPeer is what an Envoy upstream TLS context says about the server and
// the client.
type tlsPeer struct {
	// name is the server's DNS name or IP address: the SNI (for a DNS
	// name) and the subject alternative name verified.
	name string
	ip   bool
	// ca is the trusted CA bundle.
	ca *corev3.DataSource
	// alpn lists the protocols offered (none: no ALPN).
	alpn []string
	// certFile and keyFile, when set, are the client certificate.
	certFile, keyFile string
}

// upstreamTLSSocket is an envoy.transport_sockets.tls transport socket
// with an UpstreamTlsContext for p.
func upstreamTLSSocket(p tlsPeer) (*corev3.TransportSocket, error) {
	san := &tlsv3.SubjectAltNameMatcher{SanType: tlsv3.SubjectAltNameMatcher_DNS,
		Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: p.name}}}
	if p.ip {
		san.SanType = tlsv3.SubjectAltNameMatcher_IP_ADDRESS
	}
	common := &tlsv3.CommonTlsContext{
		ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			TrustedCa:                 p.ca,
			MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{san},
		}},
		AlpnProtocols: p.alpn,
	}
	if p.certFile != "" {
		common.TlsCertificates = []*tlsv3.TlsCertificate{{
			CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: p.certFile}},
			PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: p.keyFile}},
		}}
	}
	ctx := &tlsv3.UpstreamTlsContext{CommonTlsContext: common}
	if !p.ip {
		ctx.Sni = p.name
	}
	a, err := anypb.New(ctx)
	if err != nil {
		return nil, fmt.Errorf("pack UpstreamTlsContext: %w", err)
	}
	return &corev3.TransportSocket{Name: wellknown.TransportSocketTLS,
		ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: a}}, nil
}

// grpcClusterTLS is the transport socket of an Envoy cluster that speaks
// gRPC to host over TLS as c says: ALPN h2, the CA bundle inline (CAPEM),
// from CAFile or DefaultUpstreamCAFile, and the client certificate files
// if any.
func grpcClusterTLS(c *TLSClient, host string) (*corev3.TransportSocket, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	name, ip := c.serverName(host)
	p := tlsPeer{name: name, ip: ip, alpn: []string{"h2"}, certFile: c.CertFile, keyFile: c.KeyFile}
	switch {
	case c.CAPEM != "":
		p.ca = &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: c.CAPEM}}
	case c.CAFile != "":
		p.ca = &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: c.CAFile}}
	default:
		p.ca = &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: DefaultUpstreamCAFile}}
	}
	return upstreamTLSSocket(p)
}
