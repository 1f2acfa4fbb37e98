package tests

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	"github.com/gatehouse-dev/gatehouse/internal/tlsfiles"
)

// TestTLSEndToEnd: serve with --tls-cert-file serves its admin API (and
// bundle service) over HTTPS and its gRPC listeners over TLS; an authorizer
// trusting the control plane's CA follows it over HTTPS and serves
// ext_authz over TLS; plaintext and untrusting clients are refused.
func TestTLSEndToEnd(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer upstream.Close()
	certs := newTestCerts(t)
	cp := startServe(t, serveOptions{DataDir: t.TempDir(), Token: testToken, TLS: certs, Args: []string{"--metrics-addr", "127.0.0.1:0"}})
	if !strings.HasPrefix(cp.URL, "https://") {
		t.Fatalf("control plane URL %s", cp.URL)
	}
	c := newClient(t, cp.URL, testToken)
	g := setupGateway(t, c, upstream.URL)
	testkit.Eventually(t, 10*time.Second, func() error {
		return testkit.Check(strings.Contains(cp.stdout.String(), "TLS       : admin API and bundles TLS; xDS TLS; ext_authz TLS; metrics TLS"), "no TLS line in the banner")
	}, "the banner says TLS is on")

	t.Run("the admin API refuses plaintext and clients that do not trust its CA", func(t *testing.T) {
		plain := "http://" + strings.TrimPrefix(cp.URL, "https://")
		if res, err := (&http.Client{Timeout: 10 * time.Second}).Get(plain + "/healthz"); err == nil && res.StatusCode == 200 {
			t.Fatal("plaintext HTTP answered 200 on the TLS listener")
		}
		if _, err := (&http.Client{Timeout: 10 * time.Second}).Get(cp.URL + "/healthz"); err == nil {
			t.Fatal("a client without the CA trusted the certificate")
		}
		res, err := httpClientFor(cp.URL).Get(cp.URL + "/healthz")
		if err != nil || res.StatusCode != 200 {
			t.Fatalf("trusted client: %v %v", res, err)
		}
		metrics, err := httpClientFor(cp.URL).Get("https://" + cp.waitLog(t, "metrics listening", "addr") + "/metrics")
		if err != nil || metrics.StatusCode != 200 {
			t.Fatalf("metrics over TLS: %v %v", metrics, err)
		}
		metrics.Body.Close()
		if res.TLS == nil || res.TLS.Version < tls.VersionTLS12 {
			t.Fatalf("TLS state %+v", res.TLS)
		}
	})

	t.Run("the in-process ext_authz and xDS listeners speak TLS", func(t *testing.T) {
		cfg, err := tlsfiles.ClientConfig(certs.CAFile, "", "")
		if err != nil {
			t.Fatal(err)
		}
		cfg.NextProtos = []string{"h2"}
		for _, listener := range []string{"ext_authz listening", "xDS listening"} {
			conn, err := tls.Dial("tcp", cp.waitLog(t, listener, "addr"), cfg.Clone())
			if err != nil {
				t.Fatalf("%s: %v", listener, err)
			}
			if p := conn.ConnectionState().NegotiatedProtocol; p != "h2" {
				t.Errorf("%s: ALPN %q, want h2", listener, p)
			}
			conn.Close()
		}
	})

	authzCerts := newTestCerts(t)
	authz, addr := startAuthorizer(t, cp.URL, g, t.TempDir(), "--control-plane-ca-file", certs.CAFile,
		"--tls-cert-file", authzCerts.CertFile, "--tls-key-file", authzCerts.KeyFile)
	cfg, err := tlsfiles.ClientConfig(authzCerts.CAFile, "", "")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ac := authv3.NewAuthorizationClient(conn)
	t.Run("an authorizer trusting the CA follows the control plane over HTTPS and decides over TLS", func(t *testing.T) {
		testkit.Eventually(t, 30*time.Second, decides(t, ac, "k1", nil, code.Code_OK), "the authorizer's first bundle over HTTPS")
		if got := checkKey(t, ac, "k2", nil); got != code.Code_UNAUTHENTICATED {
			t.Fatalf("wrong key: %v", got)
		}
		health := authz.waitLog(t, "authorizer health listening", "addr")
		if res, err := (&http.Client{Transport: &http.Transport{TLSClientConfig: cfg.Clone()}}).Get("https://" + health + "/readyz"); err != nil || res.StatusCode != 200 {
			t.Fatalf("readyz over TLS: %v %v", res, err)
		}
	})

	t.Run("an authorizer with --client-auth require answers only callers with a certificate of its client CA", func(t *testing.T) {
		_, mtlsAddr := startAuthorizer(t, cp.URL, g, t.TempDir(), "--control-plane-ca-file", certs.CAFile,
			"--tls-cert-file", authzCerts.CertFile, "--tls-key-file", authzCerts.KeyFile,
			"--client-auth", "require", "--client-ca-file", authzCerts.CAFile)
		other := newTestCerts(t)
		caller := func(certFile, keyFile string) authv3.AuthorizationClient {
			cfg, err := tlsfiles.ClientConfig(authzCerts.CAFile, certFile, keyFile)
			if err != nil {
				t.Fatal(err)
			}
			conn, err := grpc.NewClient(mtlsAddr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { conn.Close() })
			return authv3.NewAuthorizationClient(conn)
		}
		testkit.Eventually(t, 30*time.Second, decides(t, caller(authzCerts.ClientCertFile, authzCerts.ClientKeyFile), "k1", nil, code.Code_OK),
			"a caller with a client certificate")
		for name, c := range map[string]authv3.AuthorizationClient{
			"no certificate":              caller("", ""),
			"a certificate of another CA": caller(other.ClientCertFile, other.ClientKeyFile),
		} {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, err := c.Check(ctx, &authv3.CheckRequest{})
			cancel()
			if err == nil {
				t.Errorf("%s: the check was answered", name)
			}
		}
	})

	t.Run("per-listener certificates: the proxy serves its own, ext_authz the default one", func(t *testing.T) {
		proxyCerts := newTestCerts(t)
		p, authzAddr := startAuthorizer(t, cp.URL, g, t.TempDir(), "--control-plane-ca-file", certs.CAFile,
			"--tls-cert-file", authzCerts.CertFile, "--tls-key-file", authzCerts.KeyFile,
			"--proxy-addr", "127.0.0.1:0", "--proxy-tls-cert-file", proxyCerts.CertFile, "--proxy-tls-key-file", proxyCerts.KeyFile)
		proxy := p.waitLog(t, "reverse proxy listening", "addr")
		pcfg, err := tlsfiles.ClientConfig(proxyCerts.CAFile, "", "")
		if err != nil {
			t.Fatal(err)
		}
		pc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: pcfg}}
		testkit.Eventually(t, 30*time.Second, func() error {
			res, err := pc.Get("https://" + proxy + "/healthz")
			if err != nil {
				return err
			}
			res.Body.Close()
			return testkit.Check(res.StatusCode == 200, "proxy: %s", res.Status)
		}, "the public API through the proxy over TLS with the proxy's certificate")
		// The proxy's CA does not vouch for ext_authz, the default's does.
		if conn, err := tls.Dial("tcp", authzAddr, pcfg.Clone()); err == nil {
			conn.Close()
			t.Fatal("ext_authz serves the proxy's certificate")
		}
		if conn, err := tls.Dial("tcp", authzAddr, cfg.Clone()); err != nil {
			t.Fatalf("ext_authz with the default certificate: %v", err)
		} else {
			conn.Close()
		}
	})

	t.Run("an authorizer that does not trust the control plane's certificate gets no bundle", func(t *testing.T) {
		other := newTestCerts(t)
		untrusting, _ := startAuthorizer(t, cp.URL, g, t.TempDir(), "--control-plane-ca-file", other.CAFile)
		msg := untrusting.waitLog(t, "bundle download failed; enforcing the last good bundle", "error")
		if !strings.Contains(msg, "certificate") {
			t.Fatalf("download error %q does not name the certificate", msg)
		}
	})
}
