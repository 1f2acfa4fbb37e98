package tests

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	yaml "go.yaml.in/yaml/v3"
	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/gatehouse-dev/gatehouse/envoy"
	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	"github.com/gatehouse-dev/gatehouse/internal/tlsfiles"
	"github.com/gatehouse-dev/gatehouse/model"
)

// clientCert is a client certificate and its key, as files.
type clientCert struct{ cert, key string }

// gatewayClientCerts are the client certificates the mutual TLS tests
// present: the gateway's own, another gateway's, one naming no gateway,
// an expired one, and the gateway's name signed by another CA.
type gatewayClientCerts struct {
	none, edge, other, anonymous, expired, foreign clientCert
}

func newGatewayClientCerts(t *testing.T, certs *testCerts) gatewayClientCerts {
	t.Helper()
	issue := func(dir, name string, opts tlsfiles.DevIssueOptions) clientCert {
		t.Helper()
		if err := tlsfiles.DevIssue(dir, name, opts); err != nil {
			t.Fatal(err)
		}
		return clientCert{filepath.Join(dir, name), filepath.Join(dir, strings.TrimSuffix(name, ".pem")+"-key.pem")}
	}
	edgeURI := []string{"spiffe://test.gatehouse/tenant/acme/gateway/edge"}
	foreign := newTestCerts(t)
	return gatewayClientCerts{
		edge: issue(certs.Dir, "edge.pem", tlsfiles.DevIssueOptions{URIs: edgeURI}),
		other: issue(certs.Dir, "other.pem", tlsfiles.DevIssueOptions{
			DNSNames: []string{"other.acme.gateway.test.internal"}}),
		anonymous: clientCert{certs.ClientCertFile, certs.ClientKeyFile},
		expired: issue(certs.Dir, "expired.pem", tlsfiles.DevIssueOptions{URIs: edgeURI,
			NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: time.Now().Add(-time.Hour)}),
		foreign: issue(foreign.Dir, "edge.pem", tlsfiles.DevIssueOptions{URIs: edgeURI}),
	}
}

// tlsConfig trusts caFile and presents c (if any).
func (c clientCert) tlsConfig(t *testing.T, caFile string) *tls.Config {
	t.Helper()
	cfg, err := tlsfiles.ClientConfig(caFile, c.cert, c.key)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestGatewayMutualTLS: with --client-auth require, the bundle service,
// xDS and ext_authz admit a gateway only with a certificate of the client
// CA that names the gateway of its credential; the admin API, which shares
// the bundle service's listener, still serves people without one; and a
// gateway package carries what its authorizer and Envoy need to reach the
// control plane over mutual TLS.
func TestGatewayMutualTLS(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer upstream.Close()
	certs := newTestCerts(t)
	peers := newGatewayClientCerts(t, certs)
	cp := startServe(t, serveOptions{DataDir: t.TempDir(), Token: testToken, TLS: certs,
		Args: []string{"--client-auth", "require", "--client-ca-file", certs.CAFile, "--package-ca-file", certs.CAFile}})
	c := newClient(t, cp.URL, testToken) // no client certificate
	g := setupGateway(t, c, upstream.URL)
	testkit.Eventually(t, 10*time.Second, func() error {
		return testkit.Check(strings.Contains(cp.stdout.String(), "xDS TLS, client certificates required"), "banner: %s", cp.stdout.String())
	}, "the banner says xDS requires client certificates")

	// handshakeFailed: the TLS handshake refused the certificate (the
	// server's alert, or the connection closed on it).
	handshakeFailed := func(err error) bool {
		var alert tls.AlertError
		var opErr *net.OpError
		return err != nil && (errors.As(err, &alert) || errors.As(err, &opErr) || strings.Contains(err.Error(), "tls") ||
			errors.Is(err, io.EOF) || strings.Contains(err.Error(), "connection reset"))
	}

	t.Run("bundle service", func(t *testing.T) {
		get := func(c clientCert) (int, string, error) {
			tr := &http.Transport{TLSClientConfig: c.tlsConfig(t, certs.CAFile), DisableKeepAlives: true}
			defer tr.CloseIdleConnections()
			req, _ := http.NewRequest("GET", cp.URL+"/api/system/acme/gateways/edge/opa/bundle", nil)
			req.Header.Set("Authorization", "Bearer "+g.token)
			res, err := (&http.Client{Transport: tr, Timeout: 20 * time.Second}).Do(req)
			if err != nil {
				return 0, "", err
			}
			defer res.Body.Close()
			b, _ := io.ReadAll(res.Body)
			return res.StatusCode, string(b), nil
		}
		testkit.Eventually(t, 30*time.Second, func() error {
			st, body, err := get(peers.edge)
			return testkit.Check(err == nil && st == 200, "the gateway's own certificate: %d %s %v", st, body, err)
		}, "a bundle for the gateway's certificate")
		for name, cc := range map[string]clientCert{"no certificate": peers.none, "another gateway's": peers.other,
			"one naming no gateway": peers.anonymous} {
			st, body, err := get(cc)
			if err != nil || st != 403 || !strings.Contains(body, `"client_certificate_refused"`) {
				t.Errorf("%s: %d %s %v, want 403 client_certificate_refused", name, st, body, err)
			}
		}
		for name, cc := range map[string]clientCert{"expired": peers.expired, "of another CA": peers.foreign} {
			if st, _, err := get(cc); !handshakeFailed(err) {
				t.Errorf("%s certificate: %d %v, want a refused handshake", name, st, err)
			}
		}
		// People use the admin API on the same listener without one.
		c.must(200, "GET", "/api/admin/acme/gateways/edge", nil)
	})

	xdsAddr := cp.waitLog(t, "xDS listening", "addr")
	t.Run("xDS", func(t *testing.T) {
		stream := func(cc clientCert, nodeID string) error {
			conn, err := grpc.NewClient(xdsAddr, grpc.WithTransportCredentials(credentials.NewTLS(cc.tlsConfig(t, certs.CAFile))))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+g.token)
			s, err := discoverygrpc.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
			if err != nil {
				return err
			}
			if err := s.Send(&discoverygrpc.DiscoveryRequest{Node: &corev3.Node{Id: nodeID, UserAgentName: "envoy"}, TypeUrl: resource.ClusterType}); err != nil {
				return err
			}
			res, err := s.Recv()
			if err == nil && len(res.GetResources()) == 0 {
				return errors.New("no clusters")
			}
			return err
		}
		testkit.Eventually(t, 30*time.Second, func() error { return stream(peers.edge, "acme/edge") }, "clusters for the gateway's certificate")
		for name, tc := range map[string]struct {
			cc   clientCert
			node string
		}{"another gateway's": {peers.other, "acme/edge"},
			"one naming no gateway": {peers.anonymous, "acme/edge"}, "the right certificate, another node id": {peers.edge, "acme/other"}} {
			if err := stream(tc.cc, tc.node); status.Code(err) != codes.PermissionDenied {
				t.Errorf("%s: %v, want PERMISSION_DENIED", name, err)
			}
		}
		// Without a certificate, or with one the client CA did not sign or
		// that expired, the TLS handshake fails.
		for name, cc := range map[string]clientCert{"no certificate": peers.none, "expired": peers.expired, "of another CA": peers.foreign} {
			if err := stream(cc, "acme/edge"); status.Code(err) != codes.Unavailable {
				t.Errorf("%s certificate: %v, want the handshake refused (UNAVAILABLE)", name, err)
			}
		}
	})

	t.Run("ext_authz", func(t *testing.T) {
		authzAddr := cp.waitLog(t, "ext_authz listening", "addr")
		client := func(cc clientCert) authv3.AuthorizationClient {
			conn, err := grpc.NewClient(authzAddr, grpc.WithTransportCredentials(credentials.NewTLS(cc.tlsConfig(t, certs.CAFile))))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { conn.Close() })
			return authv3.NewAuthorizationClient(conn)
		}
		ext := map[string]string{envoy.ExtGateway: "edge", envoy.ExtTenant: "acme"}
		testkit.Eventually(t, 30*time.Second, decides(t, client(peers.edge), "k1", ext, code.Code_OK), "a check over mutual TLS")
		// A certificate naming no gateway passes on its CA; one naming a
		// gateway gets that gateway's decisions only.
		if got := checkKey(t, client(peers.anonymous), "k1", ext); got != code.Code_OK {
			t.Errorf("a certificate naming no gateway: %v", got)
		}
		for name, tc := range map[string]struct {
			cc  clientCert
			ext map[string]string
		}{
			"another gateway's certificate":              {peers.other, ext},
			"the gateway's certificate, another gateway": {peers.edge, map[string]string{envoy.ExtGateway: "other", envoy.ExtTenant: "acme"}},
		} {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			res, err := client(tc.cc).Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{ContextExtensions: tc.ext,
				Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/pets/1",
					Host: "pets.example.com", Headers: map[string]string{"x-api-key": "k1"}}}}})
			cancel()
			if err != nil || res.GetDeniedResponse().GetStatus().GetCode() != 403 ||
				!strings.Contains(res.GetDeniedResponse().GetBody(), `"client_certificate_refused"`) {
				t.Errorf("%s: %v %v, want 403 client_certificate_refused", name, res, err)
			}
		}
		for name, cc := range map[string]clientCert{"no certificate": peers.none, "expired": peers.expired, "of another CA": peers.foreign} {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, err := client(cc).Check(ctx, &authv3.CheckRequest{})
			cancel()
			if status.Code(err) != codes.Unavailable {
				t.Errorf("%s: %v, want the handshake refused", name, err)
			}
		}
	})

	t.Run("package to authorizer to control plane over mutual TLS", func(t *testing.T) {
		download := func(query string) (string, map[string][]byte) {
			t.Helper()
			raw := c.must(200, "GET", "/api/admin/acme/gateways/edge/package"+query, nil).Body
			zipFile := filepath.Join(t.TempDir(), "edge.zip")
			if err := os.WriteFile(zipFile, raw, 0o600); err != nil {
				t.Fatal(err)
			}
			return zipFile, unzipBytes(t, raw)
		}
		q := "?" + url.Values{"client_cert_file": {peers.edge.cert}, "client_key_file": {peers.edge.key}}.Encode()
		zipFile, files := download(q)
		ca, _ := os.ReadFile(certs.CAFile)
		if string(files[model.PackageControlPlaneCA]) != string(ca) {
			t.Fatal("the package does not carry the control plane's CA")
		}
		// The authorizer needs nothing but the package: the CA and the
		// client certificate come from it.
		authz := start(t, []string{"PATH=" + os.Getenv("PATH")}, "authorizer", "--package", zipFile, "--cache-dir", t.TempDir(),
			"--authz-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--long-poll", "20s")
		ac := authzClient(t, authz.waitLog(t, "ext_authz listening", "addr"))
		testkit.Eventually(t, 60*time.Second, decides(t, ac, "k1", nil, code.Code_OK), "the packaged authorizer's first bundle over mutual TLS")

		// Without the client certificate the bundle service refuses it.
		bare, _ := download("")
		refused := start(t, []string{"PATH=" + os.Getenv("PATH")}, "authorizer", "--package", bare, "--cache-dir", t.TempDir(),
			"--authz-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0")
		if msg := refused.waitLog(t, "bundle download failed; enforcing the last good bundle", "error"); !strings.Contains(msg, "403") {
			t.Fatalf("download error %q, want the 403", msg)
		}

		// Envoy's ADS cluster in the package's bootstrap: TLS with the
		// inline CA, the SNI of the xDS address and the client certificate
		// files; an ADS client configured from it gets its clusters.
		boot := bootstrapOf(t, files[model.PackageEnvoyBootstrap])
		var xdsCluster *tlsv3.UpstreamTlsContext
		for _, cl := range boot.GetStaticResources().GetClusters() {
			if cl.GetName() == envoy.XDSClusterName && cl.GetTransportSocket() != nil {
				xdsCluster = &tlsv3.UpstreamTlsContext{}
				if err := cl.GetTransportSocket().GetTypedConfig().UnmarshalTo(xdsCluster); err != nil {
					t.Fatal(err)
				}
			}
		}
		if xdsCluster == nil {
			t.Fatal("the bootstrap's xDS cluster has no TLS")
		}
		common := xdsCluster.GetCommonTlsContext()
		tc := common.GetTlsCertificates()
		if len(tc) != 1 || tc[0].GetCertificateChain().GetFilename() != peers.edge.cert || tc[0].GetPrivateKey().GetFilename() != peers.edge.key {
			t.Fatalf("client certificate of the xDS cluster: %v", tc)
		}
		cfg, err := tlsfiles.NewClientConfig(tlsfiles.ClientOptions{CAPEM: common.GetValidationContext().GetTrustedCa().GetInlineString(),
			CertFile: tc[0].GetCertificateChain().GetFilename(), KeyFile: tc[0].GetPrivateKey().GetFilename()})
		if err != nil {
			t.Fatal(err)
		}
		cfg.ServerName = xdsCluster.GetSni()
		md := boot.GetDynamicResources().GetAdsConfig().GetGrpcServices()[0].GetInitialMetadata()[0]
		conn, err := grpc.NewClient(xdsAddr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), md.GetKey(), md.GetValue()), 20*time.Second)
		defer cancel()
		s, err := discoverygrpc.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Send(&discoverygrpc.DiscoveryRequest{Node: &corev3.Node{Id: boot.GetNode().GetId(), UserAgentName: "envoy"}, TypeUrl: resource.ClusterType}); err != nil {
			t.Fatal(err)
		}
		if res, err := s.Recv(); err != nil || len(res.GetResources()) == 0 {
			t.Fatalf("ADS from the package's bootstrap: %v %v", res, err)
		}
	})
}

// bootstrapOf parses an Envoy bootstrap in YAML.
func bootstrapOf(t *testing.T, raw []byte) *bootstrapv3.Bootstrap {
	t.Helper()
	var y any
	if err := yaml.Unmarshal(raw, &y); err != nil {
		t.Fatal(err)
	}
	js, err := json.Marshal(y)
	if err != nil {
		t.Fatal(err)
	}
	var boot bootstrapv3.Bootstrap
	if err := protojson.Unmarshal(js, &boot); err != nil {
		t.Fatalf("bootstrap: %v", err)
	}
	if err := boot.ValidateAll(); err != nil {
		t.Fatalf("bootstrap invalid: %v", err)
	}
	return &boot
}

// unzipBytes returns a zip's files by name.
func unzipBytes(t *testing.T, zipped []byte) map[string][]byte {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(zipped), int64(len(zipped)))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, f := range zr.File {
		raw, err := fs.ReadFile(zr, f.Name)
		if err != nil {
			t.Fatal(err)
		}
		out[f.Name] = raw
	}
	return out
}

// TestGatewayOptionalClientCertificates: with --client-auth optional a
// gateway may come without a certificate, but one it sends must name it.
func TestGatewayOptionalClientCertificates(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer upstream.Close()
	certs := newTestCerts(t)
	peers := newGatewayClientCerts(t, certs)
	cp := startServe(t, serveOptions{DataDir: t.TempDir(), Token: testToken, TLS: certs,
		Args: []string{"--client-auth", "optional", "--client-ca-file", certs.CAFile,
			// Envoy calls its authorizer over mutual TLS, with files on its host.
			"--authorizer-tls", "--authorizer-ca-file", "/etc/envoy/authz-ca.pem", "--authorizer-server-name", "authz.internal",
			"--authorizer-client-cert-file", "/etc/envoy/edge.pem", "--authorizer-client-key-file", "/etc/envoy/edge-key.pem"}})
	c := newClient(t, cp.URL, testToken)
	g := setupGateway(t, c, upstream.URL)
	bundle := func(cc clientCert) (int, error) {
		tr := &http.Transport{TLSClientConfig: cc.tlsConfig(t, certs.CAFile), DisableKeepAlives: true}
		defer tr.CloseIdleConnections()
		req, _ := http.NewRequest("GET", cp.URL+"/api/system/acme/gateways/edge/opa/bundle", nil)
		req.Header.Set("Authorization", "Bearer "+g.token)
		res, err := (&http.Client{Transport: tr, Timeout: 20 * time.Second}).Do(req)
		if err != nil {
			return 0, err
		}
		res.Body.Close()
		return res.StatusCode, nil
	}
	testkit.Eventually(t, 30*time.Second, func() error {
		st, err := bundle(peers.none)
		return testkit.Check(err == nil && st == 200, "no certificate: %d %v", st, err)
	}, "a bundle without a certificate")
	for name, tc := range map[string]struct {
		cc   clientCert
		want int
	}{"the gateway's": {peers.edge, 200}, "another gateway's": {peers.other, 403}, "one naming no gateway": {peers.anonymous, 403}} {
		if st, err := bundle(tc.cc); err != nil || st != tc.want {
			t.Errorf("%s certificate: %d %v, want %d", name, st, err, tc.want)
		}
	}
	if _, err := bundle(peers.foreign); err == nil {
		t.Error("a certificate of another CA was accepted")
	}
	xdsAddr := cp.waitLog(t, "xDS listening", "addr")
	var clusters *discoverygrpc.DiscoveryResponse
	stream := func(cc clientCert) error {
		conn, err := grpc.NewClient(xdsAddr, grpc.WithTransportCredentials(credentials.NewTLS(cc.tlsConfig(t, certs.CAFile))))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+g.token), 20*time.Second)
		defer cancel()
		s, err := discoverygrpc.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
		if err != nil {
			return err
		}
		if err := s.Send(&discoverygrpc.DiscoveryRequest{Node: &corev3.Node{Id: "acme/edge", UserAgentName: "envoy"}, TypeUrl: resource.ClusterType}); err != nil {
			return err
		}
		clusters, err = s.Recv()
		return err
	}
	if err := stream(peers.none); err != nil {
		t.Errorf("xDS without a certificate: %v", err)
	}
	if err := stream(peers.edge); err != nil {
		t.Errorf("xDS with the gateway's certificate: %v", err)
	}
	// The authorizer cluster the control plane serves Envoy is TLS with
	// the operator's files.
	var authzTLS *tlsv3.UpstreamTlsContext
	for _, r := range clusters.GetResources() {
		cl := &clusterv3.Cluster{}
		if err := r.UnmarshalTo(cl); err != nil {
			t.Fatal(err)
		}
		if cl.GetName() == envoy.AuthorizerClusterName && cl.GetTransportSocket() != nil {
			authzTLS = &tlsv3.UpstreamTlsContext{}
			if err := cl.GetTransportSocket().GetTypedConfig().UnmarshalTo(authzTLS); err != nil {
				t.Fatal(err)
			}
		}
	}
	if authzTLS == nil {
		t.Fatal("the authorizer cluster has no TLS")
	}
	common := authzTLS.GetCommonTlsContext()
	if authzTLS.GetSni() != "authz.internal" || common.GetValidationContext().GetTrustedCa().GetFilename() != "/etc/envoy/authz-ca.pem" ||
		len(common.GetTlsCertificates()) != 1 || common.GetTlsCertificates()[0].GetCertificateChain().GetFilename() != "/etc/envoy/edge.pem" ||
		common.GetTlsCertificates()[0].GetPrivateKey().GetFilename() != "/etc/envoy/edge-key.pem" {
		t.Fatalf("authorizer cluster TLS: %v", authzTLS)
	}
	if err := stream(peers.other); status.Code(err) != codes.PermissionDenied {
		t.Errorf("xDS with another gateway's certificate: %v, want PERMISSION_DENIED", err)
	}
}

// TestTLSRotationUnderLoad: the serving process's certificate is replaced
// on disk several times while clients keep making requests on new
// connections; every request succeeds and the new certificates are served
// without a restart.
func TestTLSRotationUnderLoad(t *testing.T) {
	certs := newTestCerts(t)
	cp := startServe(t, serveOptions{DataDir: t.TempDir(), Token: testToken, TLS: certs})
	cfg, err := tlsfiles.ClientConfig(certs.CAFile, "", "")
	if err != nil {
		t.Fatal(err)
	}
	// serial makes one request on a new connection and returns the
	// serial number of the certificate it was served.
	serial := func() (string, error) {
		tr := &http.Transport{TLSClientConfig: cfg.Clone(), DisableKeepAlives: true}
		defer tr.CloseIdleConnections()
		res, err := (&http.Client{Transport: tr, Timeout: 20 * time.Second}).Get(cp.URL + "/healthz")
		if err != nil {
			return "", err
		}
		defer res.Body.Close()
		if res.StatusCode != 200 {
			return "", errors.New(res.Status)
		}
		return res.TLS.PeerCertificates[0].SerialNumber.String(), nil
	}
	first, err := serial()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	type result struct {
		n    int
		errs []error
	}
	results := make(chan result)
	for range 4 {
		go func() {
			var r result
			for ctx.Err() == nil {
				if _, err := serial(); err != nil {
					r.errs = append(r.errs, err)
				}
				r.n++
			}
			results <- r
		}()
	}
	seen := map[string]bool{first: true}
	for i := range 3 {
		if err := tlsfiles.DevIssue(certs.Dir, filepath.Base(certs.CertFile), tlsfiles.DevIssueOptions{Server: true,
			DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}}); err != nil {
			t.Fatal(err)
		}
		testkit.Eventually(t, 30*time.Second, func() error {
			s, err := serial()
			if err != nil {
				return err
			}
			return testkit.Check(!seen[s], "rotation %d: still serving an earlier certificate (%s)", i+1, s)
		}, "the rotated certificate is served")
		s, _ := serial()
		seen[s] = true
	}
	cancel()
	total := 0
	for range 4 {
		r := <-results
		total += r.n
		for _, err := range r.errs {
			t.Errorf("a request failed during rotation: %v", err)
		}
	}
	if total < 4 || len(seen) != 4 {
		t.Fatalf("%d requests, %d certificates served", total, len(seen))
	}
}
