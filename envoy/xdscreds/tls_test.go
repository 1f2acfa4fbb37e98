package xdscreds

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/xds/bootstrap"

	"github.com/gatehouse-dev/gatehouse/internal/tlsfiles"
)

func devCerts(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := tlsfiles.DevCerts(tlsfiles.DevCertOptions{Dir: dir}); err != nil {
		t.Fatal(err)
	}
	return dir
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func serialOf(t *testing.T, certFile string) *big.Int {
	t.Helper()
	b, _ := pem.Decode(readFile(t, certFile))
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c.SerialNumber
}

// config is a "gatehouse" channel_creds config with a "tls" object.
func config(t *testing.T, tc TLSConfig) string {
	t.Helper()
	b, err := json.Marshal(Config{Credential: "ghg_acme.c1.s", TLS: &tc})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func build(t *testing.T, cfg string) (credentials.Bundle, error) {
	t.Helper()
	b, cleanup, err := bootstrap.GetChannelCredentials(Type).Build([]byte(cfg))
	if err == nil {
		cleanup()
	}
	return b, err
}

// tlsServer accepts TLS connections on loopback with dir's server
// certificate (ALPN h2), asks for any client certificate and reports the
// serial number of the one each client presented (nil for none).
func tlsServer(t *testing.T, dir string) (addr string, serials <-chan *big.Int) {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, tlsfiles.DevServerFile), filepath.Join(dir, tlsfiles.DevServerKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	lis, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2"},
		ClientAuth: tls.RequestClientCert, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lis.Close() })
	out := make(chan *big.Int, 16)
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			tc := c.(*tls.Conn)
			_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
			if tc.Handshake() == nil {
				var serial *big.Int
				if pc := tc.ConnectionState().PeerCertificates; len(pc) > 0 {
					serial = pc[0].SerialNumber
				}
				out <- serial
			}
			tc.Close()
		}
	}()
	return lis.Addr().String(), out
}

// handshake runs the bundle's client handshake to addr.
func handshake(t *testing.T, b credentials.Bundle, addr string) (credentials.AuthInfo, error) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, info, err := b.TransportCredentials().ClientHandshake(ctx, addr, conn)
	if err == nil {
		c.Close()
	}
	return info, err
}

func TestBuildTLS(t *testing.T) {
	dir := devCerts(t)
	other := devCerts(t)
	ca := string(readFile(t, filepath.Join(dir, tlsfiles.DevCAFile)))
	caFile := filepath.Join(dir, tlsfiles.DevCAFile)
	clientFile, clientKey := filepath.Join(dir, tlsfiles.DevClientFile), filepath.Join(dir, tlsfiles.DevClientKeyFile)
	addr, serials := tlsServer(t, dir)

	plain, err := build(t, `{"credential": "ghg_acme.c1.s"}`)
	if err != nil {
		t.Fatal(err)
	}
	if p := plain.TransportCredentials().Info().SecurityProtocol; p != "insecure" || plain.PerRPCCredentials().RequireTransportSecurity() {
		t.Fatalf("without tls: %q transport, transport security required %v", p, plain.PerRPCCredentials().RequireTransportSecurity())
	}

	t.Run("the channel verifies the server and sends the credential over TLS only", func(t *testing.T) {
		for name, tc := range map[string]TLSConfig{
			"inline CA":          {CAPEM: ca},
			"CA file":            {CAFile: caFile},
			"inline CA wins":     {CAPEM: ca, CAFile: filepath.Join(other, tlsfiles.DevCAFile)},
			"server name":        {CAPEM: ca, ServerName: "localhost"},
			"client certificate": {CAPEM: ca, CertFile: clientFile, KeyFile: clientKey},
		} {
			b, err := build(t, config(t, tc))
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if p := b.TransportCredentials().Info().SecurityProtocol; p != "tls" || !b.PerRPCCredentials().RequireTransportSecurity() {
				t.Fatalf("%s: %q transport, transport security required %v", name, p, b.PerRPCCredentials().RequireTransportSecurity())
			}
			md, err := b.PerRPCCredentials().GetRequestMetadata(context.Background())
			if err != nil || md["authorization"] != "Bearer ghg_acme.c1.s" {
				t.Fatalf("%s: metadata %v %v", name, md, err)
			}
			info, err := handshake(t, b, addr)
			if err != nil {
				t.Fatalf("%s: handshake: %v", name, err)
			}
			st := info.(credentials.TLSInfo).State
			if st.Version < tls.VersionTLS12 || st.NegotiatedProtocol != "h2" {
				t.Fatalf("%s: version %x, ALPN %q", name, st.Version, st.NegotiatedProtocol)
			}
			serial := <-serials
			if want := tc.CertFile != ""; (serial != nil) != want {
				t.Fatalf("%s: client certificate presented: %v, want %v", name, serial != nil, want)
			}
		}
	})

	credFile := filepath.Join(t.TempDir(), "credential")
	if err := os.WriteFile(credFile, []byte("ghg_acme.c1.f\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := build(t, `{"credential_file": "`+credFile+`", "tls": {}}`); err != nil || !b.PerRPCCredentials().RequireTransportSecurity() {
		t.Fatalf("credential_file with tls: %v", err)
	}

	t.Run("a server the CA or the name does not vouch for is refused", func(t *testing.T) {
		for name, tc := range map[string]TLSConfig{
			"another CA":          {CAPEM: string(readFile(t, filepath.Join(other, tlsfiles.DevCAFile)))},
			"system roots":        {},
			"another server name": {CAPEM: ca, ServerName: "cp.example"},
		} {
			b, err := build(t, config(t, tc))
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if _, err := handshake(t, b, addr); err == nil || !strings.Contains(err.Error(), "certificate") {
				t.Fatalf("%s: handshake: %v", name, err)
			}
		}
	})

	t.Run("the client certificate files are read again when they change", func(t *testing.T) {
		work := t.TempDir()
		cert, key := filepath.Join(work, "client.pem"), filepath.Join(work, "client-key.pem")
		install := func(from string) {
			t.Helper()
			for src, dst := range map[string]string{tlsfiles.DevClientFile: cert, tlsfiles.DevClientKeyFile: key} {
				if err := os.WriteFile(dst, readFile(t, filepath.Join(from, src)), 0o600); err != nil {
					t.Fatal(err)
				}
			}
		}
		install(dir)
		b, err := build(t, config(t, TLSConfig{CAPEM: ca, CertFile: cert, KeyFile: key}))
		if err != nil {
			t.Fatal(err)
		}
		for i, from := range []string{dir, other, other} {
			if i == 2 { // a broken pair keeps the previous one
				if err := os.WriteFile(key, []byte("not a key"), 0o600); err != nil {
					t.Fatal(err)
				}
			} else {
				install(from)
			}
			// The files are looked at, at most once a second, by handshakes.
			want := serialOf(t, filepath.Join(from, tlsfiles.DevClientFile))
			deadline := time.Now().Add(10 * time.Second)
			for {
				if _, err := handshake(t, b, addr); err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				got := <-serials
				if got != nil && got.Cmp(want) == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("step %d: the client presented %v, want %v", i, got, want)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
	})

	for _, bad := range []string{
		`{"credential": "c", "tls": {"ca": "x"}}`,
		`{"credential": "c", "tls": {"ca_pem": "not PEM"}}`,
		`{"credential": "c", "tls": {"ca_file": "/does/not/exist"}}`,
		`{"credential": "c", "tls": {"ca_file": "` + clientKey + `"}}`,
		`{"credential": "c", "tls": {"cert_file": "` + clientFile + `"}}`,
		`{"credential": "c", "tls": {"key_file": "` + clientKey + `"}}`,
		`{"credential": "c", "tls": {"cert_file": "/does/not/exist", "key_file": "` + clientKey + `"}}`,
		`{"credential": "c", "tls": {"cert_file": "` + clientFile + `", "key_file": "` + filepath.Join(other, tlsfiles.DevClientKeyFile) + `"}}`,
		`{"credential": "c", "tls": {"insecure_skip_verify": true}}`,
		`{"credential": "c", "tls": "yes"}`,
		`{"tls": {}}`,
	} {
		if _, err := build(t, bad); err == nil {
			t.Errorf("config %s accepted", bad)
		}
	}
}
