package tlsfiles

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// serveClientURI serves, over TLS with s, the first SAN URI of each
// request's client certificate, and returns the URL.
func serveClientURI(t *testing.T, s *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, r.TLS.PeerCertificates[0].URIs[0].String())
		}),
		ErrorLog: log.New(io.Discard, "", 0),
	}
	go srv.Serve(tls.NewListener(ln, s.Config("http/1.1")))
	t.Cleanup(func() { srv.Close() })
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return "https://localhost:" + port + "/"
}

// clientURI makes a request on a fresh connection and returns what the
// server saw.
func clientURI(t *testing.T, url string, cfg *tls.Config) string {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 30 * time.Second}).Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestNewClientConfigInlineCAAndReloadedClientCertificate(t *testing.T) {
	dir := devDir(t, "spiffe://gatehouse/tenant/acme/gateway/edge")
	srv := newServer(t, dir, ClientAuthRequire, filepath.Join(dir, DevCAFile))
	url := serveClientURI(t, srv)
	caPEM, err := os.ReadFile(filepath.Join(dir, DevCAFile))
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "gw.pem"), filepath.Join(dir, "gw-key.pem")
	if err := DevIssue(dir, "gw.pem", DevIssueOptions{URIs: []string{"spiffe://gatehouse/tenant/acme/gateway/one"}}); err != nil {
		t.Fatal(err)
	}
	cfg, err := NewClientConfig(ClientOptions{CAPEM: string(caPEM), CertFile: certFile, KeyFile: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	if got := clientURI(t, url, cfg); got != "spiffe://gatehouse/tenant/acme/gateway/one" {
		t.Fatalf("client certificate %s", got)
	}
	// The files change: the next handshake after the check interval uses
	// the new certificate, without a new config.
	if err := DevIssue(dir, "gw.pem", DevIssueOptions{URIs: []string{"spiffe://gatehouse/tenant/acme/gateway/two"}}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for clientURI(t, url, cfg) != "spiffe://gatehouse/tenant/acme/gateway/two" {
		if time.Now().After(deadline) {
			t.Fatal("the rotated client certificate was never presented")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestNewClientConfigTrust(t *testing.T) {
	dir := devDir(t, "")
	other := devDir(t, "")
	url := serveHTTPS(t, newServer(t, dir, ClientAuthOff, ""))
	otherPEM, err := os.ReadFile(filepath.Join(other, DevCAFile))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := NewClientConfig(ClientOptions{CAPEM: string(otherPEM), CAFile: filepath.Join(dir, DevCAFile)})
	if err != nil {
		t.Fatal(err)
	}
	// CAPEM wins over CAFile: the server's CA is not trusted.
	var unknown x509.UnknownAuthorityError
	if _, err := get(url, cfg); err == nil || !errors.As(err, &unknown) {
		t.Fatalf("a server of another CA: err = %v, want an unknown authority error", err)
	}
	if _, err := NewClientConfig(ClientOptions{CAPEM: "not pem"}); err == nil || !strings.Contains(err.Error(), "no PEM certificates") {
		t.Fatalf("bad inline CA: %v", err)
	}
	if _, err := NewClientConfig(ClientOptions{CertFile: filepath.Join(dir, DevClientFile)}); err == nil {
		t.Fatal("a certificate without a key was accepted")
	}
	if err := DevIssue(dir, "../x.pem", DevIssueOptions{}); err == nil {
		t.Fatal("a path as certificate name was accepted")
	}
	if err := DevIssue(t.TempDir(), "x.pem", DevIssueOptions{}); err == nil {
		t.Fatal("issued without a CA")
	}
}
