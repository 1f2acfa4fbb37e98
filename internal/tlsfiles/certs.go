package tlsfiles

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"
)

// DevCertOptions configures DevCerts.
type DevCertOptions struct {
	Dir       string        // created if missing
	DNSNames  []string      // server SANs; with IPs both empty: localhost, 127.0.0.1, ::1
	IPs       []net.IP      // server SANs
	ClientURI string        // the client certificate's SAN URI, e.g. spiffe://gatehouse/tenant/acme/gateway/edge; "" for none
	Valid     time.Duration // validity of all three certificates; default 30 days
}

// The files DevCerts writes, relative to its Dir.
const (
	DevCAFile        = "ca.pem"
	DevCAKeyFile     = "ca-key.pem"
	DevServerFile    = "server.pem"
	DevServerKeyFile = "server-key.pem"
	DevClientFile    = "client.pem"
	DevClientKeyFile = "client-key.pem"
	defaultDevValid  = 30 * 24 * time.Hour
)

// DevCertFiles lists the files DevCerts writes, relative to its Dir.
func DevCertFiles() []string {
	return []string{DevCAFile, DevCAKeyFile, DevServerFile, DevServerKeyFile, DevClientFile, DevClientKeyFile}
}

// DevCerts writes a throwaway CA, a server certificate and a client
// certificate signed by it (ECDSA P-256) into opts.Dir: ca.pem,
// ca-key.pem, server.pem, server-key.pem, client.pem, client-key.pem; the
// keys are written 0600. Existing files are replaced.
//
// For development and tests only: the CA key lies next to the
// certificates and nothing revokes them. Do not use them in production.
func DevCerts(opts DevCertOptions) error {
	if opts.Dir == "" {
		return errors.New("dev certs: no directory")
	}
	valid := opts.Valid
	if valid == 0 {
		valid = defaultDevValid
	}
	if valid < 0 {
		return fmt.Errorf("dev certs: validity %s is negative", valid)
	}
	dns, ips := opts.DNSNames, opts.IPs
	if len(dns) == 0 && len(ips) == 0 {
		dns, ips = []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	}
	var uris []*url.URL
	if opts.ClientURI != "" {
		u, err := url.Parse(opts.ClientURI)
		if err != nil || u.Scheme == "" {
			return fmt.Errorf("dev certs: client URI %q is not an absolute URI", opts.ClientURI)
		}
		uris = []*url.URL{u}
	}
	notBefore := time.Now().Add(-5 * time.Minute) // tolerate small clock skew
	notAfter := notBefore.Add(valid)

	ca, err := newCA("gatehouse development CA", notBefore, notAfter)
	if err != nil {
		return err
	}
	server, err := ca.issue(&x509.Certificate{
		Subject:     pkix.Name{CommonName: "gatehouse dev server"},
		DNSNames:    dns,
		IPAddresses: ips,
		NotBefore:   notBefore,
		NotAfter:    notAfter,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		return err
	}
	client, err := ca.issue(&x509.Certificate{
		Subject:     pkix.Name{CommonName: "gatehouse dev client"},
		URIs:        uris,
		NotBefore:   notBefore,
		NotAfter:    notAfter,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return err
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return fmt.Errorf("dev certs: %w", err)
	}
	for _, f := range []struct {
		name string
		pair *keyPair
	}{{DevCAFile, ca}, {DevServerFile, server}, {DevClientFile, client}} {
		if err := f.pair.write(opts.Dir, f.name, keyFileName(f.name)); err != nil {
			return err
		}
	}
	return nil
}

// keyFileName maps "x.pem" to "x-key.pem".
func keyFileName(certFile string) string {
	return certFile[:len(certFile)-len(".pem")] + "-key.pem"
}

// keyPair is a certificate and its private key.
type keyPair struct {
	cert *x509.Certificate
	der  []byte
	key  *ecdsa.PrivateKey
}

// newCA creates a self-signed CA certificate.
func newCA(name string, notBefore, notAfter time.Time) (*keyPair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("dev certs: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	return sign(tmpl, tmpl, key, key)
}

// issue signs a leaf certificate from tmpl (a fresh key and serial number
// are filled in).
func (ca *keyPair) issue(tmpl *x509.Certificate) (*keyPair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("dev certs: %w", err)
	}
	if tmpl.SerialNumber, err = randomSerial(); err != nil {
		return nil, err
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.BasicConstraintsValid = true
	return sign(tmpl, ca.cert, key, ca.key)
}

func sign(tmpl, parent *x509.Certificate, key *ecdsa.PrivateKey, signer crypto.Signer) (*keyPair, error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), signer)
	if err != nil {
		return nil, fmt.Errorf("dev certs: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("dev certs: %w", err)
	}
	return &keyPair{cert: cert, der: der, key: key}, nil
}

func randomSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("dev certs: serial number: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}

// certPEM and keyPEM encode the pair.
func (p *keyPair) certPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.der})
}

func (p *keyPair) keyPEM() ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(p.key)
	if err != nil {
		return nil, fmt.Errorf("dev certs: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// write writes the certificate (0644) and key (0600) into dir, each
// through a temporary file renamed into place.
func (p *keyPair) write(dir, certName, keyName string) error {
	key, err := p.keyPEM()
	if err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(dir, keyName), key, 0o600); err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, certName), p.certPEM(), 0o644)
}

// writeFileAtomic writes data to a temporary file in path's directory with
// mode perm and renames it to path, so readers see the old or the new
// content, never a partial one.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("dev certs: %w", err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(perm)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("dev certs: writing %s: %w", path, err)
	}
	return nil
}

// DevIssueOptions describe a certificate DevIssue signs.
type DevIssueOptions struct {
	// Server makes a server certificate (default: a client certificate).
	Server   bool
	URIs     []string // SAN URIs, e.g. spiffe://gatehouse/tenant/acme/gateway/edge
	DNSNames []string // SAN DNS names
	IPs      []net.IP // SAN IP addresses
	// NotBefore and NotAfter bound its validity (default: from five
	// minutes ago for DevCertOptions' default validity); a NotAfter in the
	// past makes an expired certificate.
	NotBefore, NotAfter time.Time
}

// DevIssue signs one more certificate with the CA DevCerts wrote into dir
// and writes it as dir/certName (a "….pem" name) with its key beside it
// ("…-key.pem", 0600), the key first, each file renamed into place. For
// development and tests only.
func DevIssue(dir, certName string, opts DevIssueOptions) error {
	if filepath.Ext(certName) != ".pem" || filepath.Base(certName) != certName {
		return fmt.Errorf("dev certs: client certificate name %q: want a file name ending in .pem", certName)
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, DevCAFile), filepath.Join(dir, DevCAKeyFile))
	if err != nil {
		return fmt.Errorf("dev certs: the CA in %s: %w", dir, err)
	}
	key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
	if !ok {
		return fmt.Errorf("dev certs: the CA key in %s is not ECDSA", dir)
	}
	ca := &keyPair{cert: pair.Leaf, der: pair.Certificate[0], key: key}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "gatehouse dev client"},
		DNSNames:    opts.DNSNames,
		IPAddresses: opts.IPs,
		NotBefore:   opts.NotBefore,
		NotAfter:    opts.NotAfter,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if opts.Server {
		tmpl.Subject.CommonName = "gatehouse dev server"
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	}
	if tmpl.NotBefore.IsZero() {
		tmpl.NotBefore = time.Now().Add(-5 * time.Minute)
	}
	if tmpl.NotAfter.IsZero() {
		tmpl.NotAfter = tmpl.NotBefore.Add(defaultDevValid)
	}
	for _, s := range opts.URIs {
		u, err := url.Parse(s)
		if err != nil || u.Scheme == "" {
			return fmt.Errorf("dev certs: client URI %q is not an absolute URI", s)
		}
		tmpl.URIs = append(tmpl.URIs, u)
	}
	client, err := ca.issue(tmpl)
	if err != nil {
		return err
	}
	return client.write(dir, certName, keyFileName(certName))
}
