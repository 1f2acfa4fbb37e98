package envoy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	"github.com/gatehouse-dev/gatehouse/internal/tlsfiles"
	"github.com/gatehouse-dev/gatehouse/model"
)

// serveTLS serves srv's xDS services on another loopback port, over TLS
// with certs' server certificate; with requireClientCert, clients must
// present a certificate certs' CA signed.
func serveTLS(t testing.TB, srv *Server, certs devCerts, requireClientCert bool) string {
	t.Helper()
	opts := tlsfiles.ServerOptions{CertFile: certs.file(tlsfiles.DevServerFile), KeyFile: certs.file(tlsfiles.DevServerKeyFile)}
	if requireClientCert {
		opts.ClientAuth, opts.ClientCAFile = tlsfiles.ClientAuthRequire, certs.file(tlsfiles.DevCAFile)
	}
	ts, err := tlsfiles.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := srv.NewGRPCServer(grpc.Creds(credentials.NewTLS(ts.Config("h2"))))
	done := make(chan struct{})
	go func() { _ = gs.Serve(lis); close(done) }()
	t.Cleanup(func() { gs.Stop(); <-done })
	return lis.Addr().String()
}

// envoyTLS is the client TLS configuration Envoy would use for the xDS
// cluster of a bootstrap: the trusted CA (inline or file), the subject
// alternative name verified, ALPN, the client certificate files.
func envoyTLS(t testing.TB, raw []byte) *tls.Config {
	t.Helper()
	b := parseBootstrap(t, raw)
	ctx := clusterTLS(t, b.GetStaticResources().GetClusters()[0])
	if ctx == nil {
		t.Fatal("the xds cluster has no TLS transport socket")
	}
	common := ctx.GetCommonTlsContext()
	vc := common.GetValidationContext()
	ca := []byte(vc.GetTrustedCa().GetInlineString())
	if f := vc.GetTrustedCa().GetFilename(); f != "" {
		var err error
		if ca, err = os.ReadFile(f); err != nil {
			t.Fatal(err)
		}
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		t.Fatalf("trusted_ca %v holds no certificate", vc.GetTrustedCa())
	}
	sans := vc.GetMatchTypedSubjectAltNames()
	if len(sans) != 1 {
		t.Fatalf("match_typed_subject_alt_names %v", sans)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool, ServerName: sans[0].GetMatcher().GetExact(),
		NextProtos: common.GetAlpnProtocols()}
	for _, c := range common.GetTlsCertificates() {
		kp, err := tls.LoadX509KeyPair(c.GetCertificateChain().GetFilename(), c.GetPrivateKey().GetFilename())
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = append(cfg.Certificates, kp)
	}
	return cfg
}

// adsClusters opens an ADS stream as Envoy node nodeID with the gateway
// credential token over TLS (cfg) and returns the clusters of the first
// CDS response.
func adsClusters(t testing.TB, addr string, cfg *tls.Config, nodeID, token string) ([]*clusterv3.Cluster, error) {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(withCredential(context.Background(), token), 5*time.Second)
	defer cancel()
	s, err := discoverygrpc.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.Send(&discoverygrpc.DiscoveryRequest{TypeUrl: resource.ClusterType,
		Node: &corev3.Node{Id: nodeID, Cluster: "test", UserAgentName: "envoy"}}); err != nil {
		return nil, err
	}
	r, err := s.Recv()
	if err != nil {
		return nil, err
	}
	return unpack(r, func() *clusterv3.Cluster { return &clusterv3.Cluster{} })
}

// refusedFor says whether err is a TLS handshake failure for reason: a
// message containing it or, when the server refuses a client certificate,
// the connection's end (with TLS 1.3 the client's handshake is over
// before the server checks its certificate: the server's alert may be
// lost in the connection being closed under a write).
func refusedFor(err error, reason string) bool {
	msg := err.Error()
	if strings.Contains(msg, reason) {
		return true
	}
	if reason != "certificate required" && reason != "unknown certificate authority" {
		return false
	}
	for _, closed := range []string{"broken pipe", "connection reset by peer", "EOF"} {
		if strings.Contains(msg, closed) {
			return true
		}
	}
	return false
}

// An Envoy-like ADS client configured from a Bootstrap with XDSTLS gets
// its snapshot over TLS, with and without client certificates; a wrong CA
// or a missing client certificate gets nothing.
func TestADSOverTLS(t *testing.T) {
	certs, other := newDevCerts(t), newDevCerts(t)
	f := newFixture(t)
	seedShop(f, "acme")
	f.gateway("acme", "edge", model.GatewaySpec{Type: model.GatewayEnvoy})
	cp := f.start()
	tlsAddr := serveTLS(t, cp.xds, certs, false)
	mtlsAddr := serveTLS(t, cp.xds, certs, true)
	token := cp.token("acme", "edge")
	clientCert := &TLSClient{CAPEM: certs.caPEM, CertFile: certs.file(tlsfiles.DevClientFile), KeyFile: certs.file(tlsfiles.DevClientKeyFile)}

	ads := func(addr string, tc *TLSClient) ([]*clusterv3.Cluster, error) {
		t.Helper()
		raw, err := Bootstrap(BootstrapOptions{NodeID: "acme/edge", XDSAddress: addr, Credential: token, XDSTLS: tc})
		if err != nil {
			t.Fatal(err)
		}
		return adsClusters(t, addr, envoyTLS(t, raw), "acme/edge", token)
	}
	for name, tc := range map[string]struct {
		addr string
		tls  *TLSClient
	}{
		"inline CA":                           {tlsAddr, &TLSClient{CAPEM: certs.caPEM}},
		"CA file":                             {tlsAddr, &TLSClient{CAFile: certs.file(tlsfiles.DevCAFile)}},
		"client certificate, not asked for":   {tlsAddr, clientCert},
		"client certificate, required by the": {mtlsAddr, clientCert},
	} {
		cls, err := ads(tc.addr, tc.tls)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if byName(cls)[AuthorizerClusterName] == nil || byName(cls)[ServiceClusterName("store")] == nil {
			t.Fatalf("%s: clusters %v", name, cls)
		}
	}
	for name, tc := range map[string]struct {
		addr, want string
		tls        *TLSClient
	}{
		"another CA":            {tlsAddr, "certificate signed by unknown authority", &TLSClient{CAPEM: other.caPEM}},
		"another server name":   {tlsAddr, "certificate is valid for", &TLSClient{CAPEM: certs.caPEM, ServerName: "cp.example"}},
		"no client certificate": {mtlsAddr, "certificate required", &TLSClient{CAPEM: certs.caPEM}},
		"another CA's client cert": {mtlsAddr, "unknown certificate authority", &TLSClient{CAPEM: certs.caPEM,
			CertFile: other.file(tlsfiles.DevClientFile), KeyFile: other.file(tlsfiles.DevClientKeyFile)}},
	} {
		_, err := ads(tc.addr, tc.tls)
		if status.Code(err) != codes.Unavailable || !refusedFor(err, tc.want) {
			t.Errorf("%s: %v, want Unavailable with %q", name, err, tc.want)
		}
	}
}

// grpc-go's xDS client, from a GRPCBootstrap with XDSTLS, resolves over
// TLS (and mutual TLS); a wrong CA or a missing client certificate leaves
// it without resources.
func TestProxylessGRPCOverTLS(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	up := grpc.NewServer()
	healthpb.RegisterHealthServer(up, health.NewServer())
	go func() { _ = up.Serve(lis) }()
	defer up.Stop()

	certs, other := newDevCerts(t), newDevCerts(t)
	f := newFixture(t)
	f.tenant("acme")
	f.service("acme", "greeter", "http://"+lis.Addr().String(), "greeter.internal")
	f.apis("acme", api{id: "check", service: "greeter", method: "POST", path: "/grpc.health.v1.Health/Check"})
	f.gateway("acme", "mesh", model.GatewaySpec{Type: model.GatewayGRPC})
	cp := f.start()
	tlsAddr := serveTLS(t, cp.xds, certs, false)
	mtlsAddr := serveTLS(t, cp.xds, certs, true)
	token := cp.token("acme", "mesh")
	client := func(addr string, tc *TLSClient) healthpb.HealthClient {
		t.Helper()
		boot, err := GRPCBootstrap(GRPCBootstrapOptions{NodeID: "acme/mesh", XDSAddress: addr, Credential: token, XDSTLS: tc})
		if err != nil {
			t.Fatal(err)
		}
		return grpcDialer(t, boot)("xds:///greeter.internal")
	}
	clientCert := func(d devCerts) (string, string) {
		return d.file(tlsfiles.DevClientFile), d.file(tlsfiles.DevClientKeyFile)
	}
	cert, key := clientCert(certs)
	for name, tc := range map[string]struct {
		addr string
		tls  *TLSClient
	}{
		"inline CA":                         {tlsAddr, &TLSClient{CAPEM: certs.caPEM}},
		"CA file, server name":              {tlsAddr, &TLSClient{CAFile: certs.file(tlsfiles.DevCAFile), ServerName: "localhost"}},
		"client certificate, not asked for": {tlsAddr, &TLSClient{CAPEM: certs.caPEM, CertFile: cert, KeyFile: key}},
		"client certificate, required":      {mtlsAddr, &TLSClient{CAPEM: certs.caPEM, CertFile: cert, KeyFile: key}},
	} {
		if err := checkHealth(client(tc.addr, tc.tls)); err != nil {
			t.Fatalf("%s: Check via xds:///greeter.internal: %v", name, err)
		}
	}

	otherCert, otherKey := clientCert(other)
	for name, tc := range map[string]struct {
		addr, want string
		tls        *TLSClient
	}{
		"another CA":            {tlsAddr, "certificate signed by unknown authority", &TLSClient{CAPEM: other.caPEM}},
		"another server name":   {tlsAddr, "certificate is valid for", &TLSClient{CAPEM: certs.caPEM, ServerName: "cp.example"}},
		"no client certificate": {mtlsAddr, "certificate required", &TLSClient{CAPEM: certs.caPEM}},
		"another CA's client certificate": {mtlsAddr, "unknown certificate authority",
			&TLSClient{CAPEM: certs.caPEM, CertFile: otherCert, KeyFile: otherKey}},
	} {
		t.Run(name, func(t *testing.T) {
			c := client(tc.addr, tc.tls)
			testkit.Eventually(t, 5*time.Second, func() error {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				_, err := c.Check(ctx, &healthpb.HealthCheckRequest{})
				cancel()
				if err == nil {
					t.Fatal("the RPC went through")
				}
				return testkit.Check(status.Code(err) == codes.Unavailable && refusedFor(err, tc.want), "RPC error %v", err)
			}, "the RPC to fail Unavailable with %q", tc.want)
		})
	}
}
