package main

import (
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/tlsfiles"
)

func devCertDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := tlsfiles.DevCerts(tlsfiles.DevCertOptions{Dir: dir}); err != nil {
		t.Fatal(err)
	}
	return dir
}

// servedSerial serves HTTPS with t on loopback and returns the serial of
// the certificate a client sees.
func servedSerial(t *testing.T, st *serverTLS, caFile string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})}
	go srv.Serve(st.http(ln))
	defer srv.Close()
	cfg, err := tlsfiles.ClientConfig(caFile, "", "")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := tls.Dial("tcp", ln.Addr().String(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

func TestServeTLSPerListener(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	main, xds := devCertDir(t), devCertDir(t)
	j := filepath.Join
	cfg := serveConfig{TLSCertFile: j(main, tlsfiles.DevServerFile), TLSKeyFile: j(main, tlsfiles.DevServerKeyFile),
		XDSTLSCertFile: j(xds, tlsfiles.DevServerFile), XDSTLSKeyFile: j(xds, tlsfiles.DevServerKeyFile), XDSAddr: "x", AuthzAddr: "x"}
	lt, err := newServeTLS(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	// xDS serves its own certificate, the others the default one.
	if servedSerial(t, lt.xds, j(xds, tlsfiles.DevCAFile)) == servedSerial(t, lt.http, j(main, tlsfiles.DevCAFile)) {
		t.Fatal("xDS serves the default certificate")
	}
	if lt.authz != lt.http || lt.metrics != lt.http || lt.peers.check != nil {
		t.Fatal("listeners without overrides do not share the default certificate, or client auth is on")
	}
	// Only an override: that listener is TLS, the others plaintext.
	only := serveConfig{XDSTLSCertFile: cfg.XDSTLSCertFile, XDSTLSKeyFile: cfg.XDSTLSKeyFile, XDSAddr: "x"}
	if lt, err := newServeTLS(only, log); err != nil || lt.xds == nil || lt.http != nil {
		t.Fatalf("override alone: %+v %v", lt, err)
	}
	// Client auth: xDS and ext_authz as asked, the admin listener only asks.
	mtls := cfg
	mtls.ClientAuth, mtls.ClientCAFile = "require", j(main, tlsfiles.DevCAFile)
	lt, err = newServeTLS(mtls, log)
	if err != nil {
		t.Fatal(err)
	}
	if lt.xds.clientAuth != tlsfiles.ClientAuthRequire || lt.authz.clientAuth != tlsfiles.ClientAuthRequire ||
		lt.http.clientAuth != tlsfiles.ClientAuthOptional || lt.metrics.clientAuth != tlsfiles.ClientAuthOff || lt.peers.check == nil {
		t.Fatalf("client auth per listener: http %s, xds %s, authz %s, metrics %s", lt.http.clientAuth, lt.xds.clientAuth,
			lt.authz.clientAuth, lt.metrics.clientAuth)
	}

	for name, tc := range map[string]struct {
		edit func(*serveConfig)
		want string
	}{
		"override without its key": {func(c *serveConfig) { c.AuthzTLSKeyFile = ""; c.AuthzTLSCertFile = "a.pem" }, "--authz-tls-cert-file and --authz-tls-key-file go together"},
		"default without its key":  {func(c *serveConfig) { c.TLSKeyFile = "" }, "--tls-cert-file and --tls-key-file go together"},
		"missing override file": {func(c *serveConfig) {
			c.MetricsTLSCertFile, c.MetricsTLSKeyFile = "/nonexistent.pem", "/nonexistent-key.pem"
		}, "--metrics-tls-cert-file"},
		"client auth without TLS": {func(c *serveConfig) {
			*c = serveConfig{ClientAuth: "require", ClientCAFile: mtls.ClientCAFile, XDSAddr: "x"}
		}, "needs TLS on the admin API"},
		"client auth without a CA": {func(c *serveConfig) { c.ClientAuth = "optional" }, "--client-auth optional needs --client-ca-file"},
		"a CA without client auth": {func(c *serveConfig) { c.ClientCAFile = mtls.ClientCAFile }, "--client-ca-file needs --client-auth"},
		"unknown mode":             {func(c *serveConfig) { c.ClientAuth = "sometimes" }, "--client-auth"},
	} {
		c := cfg
		tc.edit(&c)
		if _, err := newServeTLS(c, log); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error containing %q", name, err, tc.want)
		}
	}
}

func TestAuthorizerTLSFlags(t *testing.T) {
	if tc, err := (serveConfig{}).authorizerTLS(); tc != nil || err != nil {
		t.Fatalf("off: %v %v", tc, err)
	}
	if _, err := (serveConfig{AuthorizerCAFile: "/etc/ca.pem"}).authorizerTLS(); err == nil || !strings.Contains(err.Error(), "--authorizer-tls") {
		t.Fatalf("a CA file without --authorizer-tls: %v", err)
	}
	tc, err := (serveConfig{AuthorizerTLS: true, AuthorizerCAFile: "/etc/ca.pem", AuthorizerServerName: "authz.internal",
		AuthorizerClientCertFile: "/etc/envoy.pem", AuthorizerClientKeyFile: "/etc/envoy-key.pem"}).authorizerTLS()
	if err != nil || tc.CAFile != "/etc/ca.pem" || tc.ServerName != "authz.internal" || tc.CertFile != "/etc/envoy.pem" || tc.KeyFile != "/etc/envoy-key.pem" {
		t.Fatalf("%+v %v", tc, err)
	}
}

func TestPackageCAReader(t *testing.T) {
	dir := devCertDir(t)
	if read, err := packageCAReader(""); read != nil || err != nil {
		t.Fatalf("no flag: %v", err)
	}
	read, err := packageCAReader(filepath.Join(dir, tlsfiles.DevCAFile))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile(filepath.Join(dir, tlsfiles.DevCAFile))
	if got, err := read(); err != nil || got != string(want) {
		t.Fatalf("read: %v", err)
	}
	if _, err := packageCAReader(filepath.Join(dir, tlsfiles.DevCAKeyFile)); err == nil || !strings.Contains(err.Error(), "--package-ca-file") {
		t.Fatalf("a key as CA bundle: %v", err)
	}
}

func TestControlPlaneTLS(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	dir := devCertDir(t)
	ca, _ := os.ReadFile(filepath.Join(dir, tlsfiles.DevCAFile))
	base := authorizerConfig{}
	base.ControlPlaneURL = "https://cp.example"
	base.ControlPlaneCA = string(ca)
	c, err := controlPlaneTLS(base, log)
	if err != nil || c.RootCAs == nil {
		t.Fatalf("the package's CA: %v", err)
	}
	withCert := base
	withCert.ControlPlaneClientCertFile, withCert.ControlPlaneClientKeyFile = filepath.Join(dir, tlsfiles.DevClientFile), filepath.Join(dir, tlsfiles.DevClientKeyFile)
	if c, err := controlPlaneTLS(withCert, log); err != nil || c.GetClientCertificate == nil {
		t.Fatalf("client certificate: %v", err)
	}
	plain := withCert
	plain.ControlPlaneURL = "http://cp.example"
	if _, err := controlPlaneTLS(plain, log); err == nil || !strings.Contains(err.Error(), "https://") {
		t.Fatalf("a client certificate for a plaintext control plane: %v", err)
	}
	bad := base
	bad.ControlPlaneURL = "cp.example:8080"
	if _, err := controlPlaneTLS(bad, log); err == nil || !strings.Contains(err.Error(), "--control-plane-url") {
		t.Fatalf("a URL without scheme: %v", err)
	}
	noKey := base
	noKey.ControlPlaneClientCertFile = withCert.ControlPlaneClientCertFile
	if _, err := controlPlaneTLS(noKey, log); err == nil {
		t.Fatal("a client certificate without its key was accepted")
	}
}

func TestListenNamesTheFlagOfAnAddressInUse(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	_, err = listen("--http-addr", busy.Addr().String())
	if err == nil || !strings.Contains(err.Error(), "in use") || !strings.Contains(err.Error(), "give this process its own --http-addr") {
		t.Fatalf("err = %v", err)
	}
	if _, err := listen("--authz-addr", "256.0.0.1:1"); err == nil || !strings.Contains(err.Error(), "--authz-addr 256.0.0.1:1") {
		t.Fatalf("err = %v", err)
	}
	ln, err := listen("--authz-addr", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
}

// A CA bundle with anything but certificates is refused at start, as the
// generated configurations that carry it inline would refuse it later.
func TestPackageCAReaderIsAsStrictAsTheConfigurations(t *testing.T) {
	dir := devCertDir(t)
	ca, err := os.ReadFile(filepath.Join(dir, tlsfiles.DevCAFile))
	if err != nil {
		t.Fatal(err)
	}
	trailing := filepath.Join(dir, "trailing.pem")
	if err := os.WriteFile(trailing, append(ca, []byte("# end of bundle\n")...), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := packageCAReader(trailing); err == nil || !strings.Contains(err.Error(), "not PEM") {
		t.Fatalf("a bundle with trailing text: %v", err)
	}
}
