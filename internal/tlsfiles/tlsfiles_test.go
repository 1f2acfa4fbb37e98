package tlsfiles

import (
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// devDir writes development certificates into a fresh directory.
func devDir(t *testing.T, clientURI string) string {
	t.Helper()
	dir := t.TempDir()
	if err := DevCerts(DevCertOptions{Dir: dir, ClientURI: clientURI}); err != nil {
		t.Fatal(err)
	}
	return dir
}

// loadPair reads a certificate and key DevCerts wrote.
func loadPair(t *testing.T, dir, certName string) *keyPair {
	t.Helper()
	c, err := tls.LoadX509KeyPair(filepath.Join(dir, certName), filepath.Join(dir, keyFileName(certName)))
	if err != nil {
		t.Fatal(err)
	}
	return &keyPair{cert: c.Leaf, der: c.Certificate[0], key: c.PrivateKey.(*ecdsa.PrivateKey)}
}

// issueInto signs a new certificate with the CA in dir and writes it (key
// first, then certificate, each renamed into place) as certName.
func issueInto(t *testing.T, dir, certName string, tmpl *x509.Certificate) *keyPair {
	t.Helper()
	p, err := loadPair(t, dir, DevCAFile).issue(tmpl)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.write(dir, certName, keyFileName(certName)); err != nil {
		t.Fatal(err)
	}
	return p
}

func serverTemplate() *x509.Certificate {
	return &x509.Certificate{
		Subject:     pkix.Name{CommonName: "rotated"},
		DNSNames:    []string{"localhost"},
		NotBefore:   time.Now().Add(-time.Minute),
		NotAfter:    time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
}

func newServer(t *testing.T, dir string, mode ClientAuth, caFile string) *Server {
	t.Helper()
	s, err := NewServer(ServerOptions{
		CertFile:     filepath.Join(dir, DevServerFile),
		KeyFile:      filepath.Join(dir, DevServerKeyFile),
		ClientCAFile: caFile,
		ClientAuth:   mode,
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// serveHTTPS serves "ok" over TLS with s on a loopback port and returns
// the URL.
func serveHTTPS(t *testing.T, s *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler:  http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }),
		ErrorLog: log.New(io.Discard, "", 0), // refused handshakes
	}
	go srv.Serve(tls.NewListener(ln, s.Config("http/1.1")))
	t.Cleanup(func() { srv.Close() })
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return "https://localhost:" + port + "/"
}

// get makes one request on a fresh connection and returns the serial
// number of the server's certificate.
func get(url string, cfg *tls.Config) (*big.Int, error) {
	tr := &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true,
		DialContext: (&net.Dialer{}).DialContext}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 30 * time.Second}).Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK || string(b) != "ok" {
		return nil, errors.New("unexpected response " + resp.Status)
	}
	return resp.TLS.PeerCertificates[0].SerialNumber, nil
}

func clientConfig(t *testing.T, caDir, certDir string) *tls.Config {
	t.Helper()
	var cert, key string
	if certDir != "" {
		cert, key = filepath.Join(certDir, DevClientFile), filepath.Join(certDir, DevClientKeyFile)
	}
	c, err := ClientConfig(filepath.Join(caDir, DevCAFile), cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func serialOf(t *testing.T, dir, certName string) *big.Int {
	t.Helper()
	return loadPair(t, dir, certName).cert.SerialNumber
}

func TestHandshake(t *testing.T) {
	dir := devDir(t, "")
	url := serveHTTPS(t, newServer(t, dir, ClientAuthOff, ""))
	serial, err := get(url, clientConfig(t, dir, ""))
	if err != nil {
		t.Fatal(err)
	}
	if want := serialOf(t, dir, DevServerFile); serial.Cmp(want) != 0 {
		t.Fatalf("serial %s, want %s", serial, want)
	}
	cfg := newServer(t, dir, ClientAuthOff, "").Config("h2", "http/1.1")
	if cfg.MinVersion != tls.VersionTLS12 || len(cfg.NextProtos) != 2 || cfg.InsecureSkipVerify || cfg.CipherSuites != nil {
		t.Fatalf("config: %+v", cfg)
	}
}

func TestClientRejectsUntrustedServer(t *testing.T) {
	dir := devDir(t, "")
	url := serveHTTPS(t, newServer(t, dir, ClientAuthOff, ""))
	if _, err := get(url, clientConfig(t, devDir(t, ""), "")); err == nil {
		t.Fatal("a server signed by another CA was trusted")
	}
	system, err := ClientConfig("", "", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := get(url, system); err == nil {
		t.Fatal("the system pool trusted a development CA")
	}
}

func TestRotationUnderLoad(t *testing.T) {
	dir := devDir(t, "")
	s := newServer(t, dir, ClientAuthOff, "")
	s.checkInterval = 0 // handshakes race the rotation too
	url := serveHTTPS(t, s)
	client := clientConfig(t, dir, "")

	var (
		done      atomic.Int64
		current   atomic.Int64 // index in published of the certificate Reload last installed
		stop      = make(chan struct{})
		wg        sync.WaitGroup
		mu        sync.Mutex
		published = []*big.Int{serialOf(t, dir, DevServerFile)} // serials, oldest first
		failures  []string
	)
	fail := func(msg string) {
		mu.Lock()
		defer mu.Unlock()
		failures = append(failures, msg)
	}
	// seenSince reports whether serial was installed at or after index i.
	seenSince := func(i int64, serial *big.Int) bool {
		mu.Lock()
		defer mu.Unlock()
		for _, p := range published[i:] {
			if p.Cmp(serial) == 0 {
				return true
			}
		}
		return false
	}
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				i := current.Load()
				serial, err := get(url, client)
				switch {
				case err != nil:
					fail(err.Error())
				case !seenSince(i, serial):
					fail("serial " + serial.String() + ": older than the certificate installed when the request started")
				}
				done.Add(1)
			}
		})
	}
	waitFor := func(n int64) {
		for target := done.Load() + n; done.Load() < target; {
			time.Sleep(time.Millisecond)
		}
	}
	waitFor(20)
	for range 3 {
		// The serial is published before the files change: handshakes
		// (checkInterval 0) may pick the new certificate up before Reload.
		p, err := loadPair(t, dir, DevCAFile).issue(serverTemplate())
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		published = append(published, p.cert.SerialNumber)
		mu.Unlock()
		if err := p.write(dir, DevServerFile, keyFileName(DevServerFile)); err != nil {
			t.Fatal(err)
		}
		if err := s.Reload(); err != nil {
			t.Fatal(err)
		}
		current.Add(1)
		waitFor(20)
	}
	close(stop)
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("%d of %d requests failed, first: %s", len(failures), done.Load(), failures[0])
	}
	serial, err := get(url, client)
	if err != nil {
		t.Fatal(err)
	}
	if want := published[len(published)-1]; serial.Cmp(want) != 0 {
		t.Fatalf("after rotation: serial %s, want %s", serial, want)
	}
}

func TestBrokenReplacementKeepsCertificate(t *testing.T) {
	dir := devDir(t, "")
	s := newServer(t, dir, ClientAuthOff, "")
	s.checkInterval = 0
	url := serveHTTPS(t, s)
	client := clientConfig(t, dir, "")
	old := serialOf(t, dir, DevServerFile)
	certFile := filepath.Join(dir, DevServerFile)
	good, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, broken := range []string{"not a certificate", ""} {
		if err := writeFileAtomic(certFile, []byte(broken), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := s.Reload(); err == nil || !strings.Contains(err.Error(), certFile) {
			t.Fatalf("Reload of %q: %v, want an error naming %s", broken, err, certFile)
		}
		serial, err := get(url, client)
		if err != nil {
			t.Fatal(err)
		}
		if serial.Cmp(old) != 0 {
			t.Fatalf("serial %s, want the old %s", serial, old)
		}
	}
	// A missing file, and a key that does not match the certificate.
	os.Remove(certFile)
	if err := s.Reload(); err == nil || !strings.Contains(err.Error(), certFile) {
		t.Fatalf("Reload without the file: %v", err)
	}
	if _, err := get(url, client); err != nil {
		t.Fatal(err)
	}
	other := loadPair(t, devDir(t, ""), DevServerFile)
	key, _ := other.keyPEM()
	if err := writeFileAtomic(certFile, good, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeFileAtomic(filepath.Join(dir, DevServerKeyFile), key, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); err == nil {
		t.Fatal("Reload accepted a key of another certificate")
	}
	if serial, err := get(url, client); err != nil || serial.Cmp(old) != 0 {
		t.Fatalf("serial %v, err %v, want the old %s", serial, err, old)
	}
	p := issueInto(t, dir, DevServerFile, serverTemplate())
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if serial, err := get(url, client); err != nil || serial.Cmp(p.cert.SerialNumber) != 0 {
		t.Fatalf("serial %v, err %v, want the new %s", serial, err, p.cert.SerialNumber)
	}
}

func TestHandshakesPickUpChangedFiles(t *testing.T) {
	dir := devDir(t, "")
	s := newServer(t, dir, ClientAuthOff, "")
	s.checkInterval = time.Hour
	url := serveHTTPS(t, s)
	client := clientConfig(t, dir, "")
	old := serialOf(t, dir, DevServerFile)
	p := issueInto(t, dir, DevServerFile, serverTemplate())
	if serial, err := get(url, client); err != nil || serial.Cmp(old) != 0 {
		t.Fatalf("within the check interval: serial %v, err %v, want the old %s", serial, err, old)
	}
	s.checkInterval = 0
	if serial, err := get(url, client); err != nil || serial.Cmp(p.cert.SerialNumber) != 0 {
		t.Fatalf("after the check interval: serial %v, err %v, want the new %s", serial, err, p.cert.SerialNumber)
	}
}

func TestClientAuth(t *testing.T) {
	dir := devDir(t, "spiffe://gatehouse/tenant/acme/gateway/edge")
	otherCA := devDir(t, "spiffe://gatehouse/tenant/acme/gateway/edge")
	ca := filepath.Join(dir, DevCAFile)

	expiredDir := t.TempDir()
	expired, err := loadPair(t, dir, DevCAFile).issue(&x509.Certificate{
		Subject:     pkix.Name{CommonName: "expired"},
		NotBefore:   time.Now().Add(-2 * time.Hour),
		NotAfter:    time.Now().Add(-time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := expired.write(expiredDir, DevClientFile, DevClientKeyFile); err != nil {
		t.Fatal(err)
	}
	serverOnly := t.TempDir() // a certificate without the client auth usage
	for _, name := range []string{DevServerFile, DevServerKeyFile} {
		b, _ := os.ReadFile(filepath.Join(dir, name))
		os.WriteFile(filepath.Join(serverOnly, strings.Replace(name, "server", "client", 1)), b, 0o600)
	}

	clients := map[string]string{"none": "", "good": dir, "other CA": otherCA, "expired": expiredDir, "wrong usage": serverOnly}
	for _, tc := range []struct {
		mode ClientAuth
		ok   []string
		fail []string
	}{
		{ClientAuthRequire, []string{"good"}, []string{"none", "other CA", "expired", "wrong usage"}},
		{ClientAuthOptional, []string{"good", "none"}, []string{"other CA", "expired", "wrong usage"}},
		{ClientAuthOff, []string{"good", "none", "other CA", "expired", "wrong usage"}, nil},
	} {
		caFile := ca
		if tc.mode == ClientAuthOff {
			caFile = ""
		}
		url := serveHTTPS(t, newServer(t, dir, tc.mode, caFile))
		for _, name := range tc.ok {
			if _, err := get(url, clientConfig(t, dir, clients[name])); err != nil {
				t.Errorf("%s, client certificate %s: %v", tc.mode, name, err)
			}
		}
		for _, name := range tc.fail {
			if _, err := get(url, clientConfig(t, dir, clients[name])); err == nil {
				t.Errorf("%s, client certificate %s: accepted", tc.mode, name)
			}
		}
	}
}

func TestClientCAReload(t *testing.T) {
	dir := devDir(t, "")
	other := devDir(t, "")
	caFile := filepath.Join(t.TempDir(), "client-ca.pem")
	copyFile(t, filepath.Join(dir, DevCAFile), caFile)
	s := newServer(t, dir, ClientAuthRequire, caFile)
	url := serveHTTPS(t, s)
	if _, err := get(url, clientConfig(t, dir, dir)); err != nil {
		t.Fatal(err)
	}
	copyFile(t, filepath.Join(other, DevCAFile), caFile)
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, err := get(url, clientConfig(t, dir, dir)); err == nil {
		t.Fatal("a client of the replaced CA was accepted")
	}
	if _, err := get(url, clientConfig(t, dir, other)); err != nil {
		t.Fatalf("a client of the new CA: %v", err)
	}
	if err := writeFileAtomic(caFile, []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); err == nil || !strings.Contains(err.Error(), caFile) {
		t.Fatalf("Reload of a broken CA file: %v", err)
	}
	if _, err := get(url, clientConfig(t, dir, other)); err != nil {
		t.Fatalf("after a broken CA file: %v", err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := writeFileAtomic(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestNewServerErrors(t *testing.T) {
	dir := devDir(t, "")
	cert, key := filepath.Join(dir, DevServerFile), filepath.Join(dir, DevServerKeyFile)
	missing := filepath.Join(dir, "missing.pem")
	for _, tc := range []struct {
		opts ServerOptions
		want string
	}{
		{ServerOptions{CertFile: missing, KeyFile: key}, missing},
		{ServerOptions{CertFile: cert, KeyFile: missing}, missing},
		{ServerOptions{CertFile: cert}, "key file"},
		{ServerOptions{CertFile: key, KeyFile: key}, key},
		{ServerOptions{CertFile: cert, KeyFile: key, ClientAuth: ClientAuthRequire}, "client CA file"},
		{ServerOptions{CertFile: cert, KeyFile: key, ClientAuth: ClientAuthOptional, ClientCAFile: missing}, missing},
		{ServerOptions{CertFile: cert, KeyFile: key, ClientAuth: ClientAuthRequire, ClientCAFile: key}, key},
		{ServerOptions{CertFile: cert, KeyFile: key, ClientAuth: "sometimes"}, `"sometimes"`},
	} {
		if _, err := NewServer(tc.opts); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want an error containing %s", tc.opts, err, tc.want)
		}
	}
}

func TestParseClientAuth(t *testing.T) {
	for in, want := range map[string]ClientAuth{"": ClientAuthOff, "off": ClientAuthOff, "optional": ClientAuthOptional, "require": ClientAuthRequire} {
		if got, err := ParseClientAuth(in); err != nil || got != want {
			t.Errorf("ParseClientAuth(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := ParseClientAuth("required"); err == nil || !strings.Contains(err.Error(), `"required"`) {
		t.Errorf("ParseClientAuth(required): %v", err)
	}
}

func TestClientConfigErrors(t *testing.T) {
	dir := devDir(t, "")
	if _, err := ClientConfig(filepath.Join(dir, "missing.pem"), "", ""); err == nil || !strings.Contains(err.Error(), "missing.pem") {
		t.Errorf("missing CA file: %v", err)
	}
	if _, err := ClientConfig(filepath.Join(dir, DevCAKeyFile), "", ""); err == nil {
		t.Error("a key as CA file was accepted")
	}
	if _, err := ClientConfig("", filepath.Join(dir, DevClientFile), ""); err == nil {
		t.Error("a certificate without key was accepted")
	}
	if _, err := ClientConfig("", filepath.Join(dir, DevClientFile), filepath.Join(dir, DevServerKeyFile)); err == nil {
		t.Error("a mismatched key was accepted")
	}
}

func TestDevCerts(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	uri := "spiffe://gatehouse/tenant/acme/gateway/edge"
	if err := DevCerts(DevCertOptions{Dir: dir, ClientURI: uri, Valid: 48 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	for _, name := range DevCertFiles() {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		want := os.FileMode(0o644)
		if strings.HasSuffix(name, "-key.pem") {
			want = 0o600
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", name, fi.Mode().Perm(), want)
		}
	}
	ca := loadPair(t, dir, DevCAFile).cert
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	server := loadPair(t, dir, DevServerFile).cert
	for _, host := range []string{"localhost", "127.0.0.1", "::1"} {
		if _, err := server.Verify(x509.VerifyOptions{DNSName: host, Roots: roots}); err != nil {
			t.Errorf("server certificate for %s: %v", host, err)
		}
	}
	if _, err := server.Verify(x509.VerifyOptions{DNSName: "example.com", Roots: roots}); err == nil {
		t.Error("server certificate valid for example.com")
	}
	client := loadPair(t, dir, DevClientFile).cert
	if _, err := client.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("client certificate: %v", err)
	}
	if len(client.URIs) != 1 || client.URIs[0].String() != uri {
		t.Errorf("client URIs %v, want %s", client.URIs, uri)
	}
	if d := client.NotAfter.Sub(client.NotBefore); d != 48*time.Hour {
		t.Errorf("validity %s, want 48h", d)
	}
	if _, ok := client.PublicKey.(*ecdsa.PublicKey); !ok {
		t.Errorf("client key %T, want ECDSA", client.PublicKey)
	}

	custom := t.TempDir()
	if err := DevCerts(DevCertOptions{Dir: custom, DNSNames: []string{"cp.internal"}, IPs: []net.IP{net.ParseIP("10.0.0.7")}}); err != nil {
		t.Fatal(err)
	}
	server = loadPair(t, custom, DevServerFile).cert
	if len(server.DNSNames) != 1 || server.DNSNames[0] != "cp.internal" || len(server.IPAddresses) != 1 || !server.IPAddresses[0].Equal(net.ParseIP("10.0.0.7")) {
		t.Errorf("SANs %v %v", server.DNSNames, server.IPAddresses)
	}
	if len(loadPair(t, custom, DevClientFile).cert.URIs) != 0 {
		t.Error("client URI without ClientURI")
	}
	if err := DevCerts(DevCertOptions{Dir: custom, ClientURI: "not a uri"}); err == nil {
		t.Error("a relative client URI was accepted")
	}
}
