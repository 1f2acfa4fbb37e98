package xdscreds

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/grpclog"
)

var logger = grpclog.Component("gatehouse-xdscreds")

// transportCredentials are the TLS credentials of a channel: see
// clientConfig, and the server name verified is ServerName, if set,
// rather than the host of the channel's authority (grpc-go's TLS
// credentials ignore tls.Config.ServerName).
func (c *TLSConfig) transportCredentials() (credentials.TransportCredentials, error) {
	cfg, err := c.clientConfig()
	if err != nil {
		return nil, err
	}
	creds := credentials.NewTLS(cfg)
	if c.ServerName == "" {
		return creds, nil
	}
	return serverNameCreds{TransportCredentials: creds, name: c.ServerName}, nil
}

// serverNameCreds hands the TLS credentials a fixed server name instead
// of the channel's authority.
type serverNameCreds struct {
	credentials.TransportCredentials
	name string
}

func (c serverNameCreds) ClientHandshake(ctx context.Context, _ string, conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return c.TransportCredentials.ClientHandshake(ctx, c.name, conn)
}

func (c serverNameCreds) Clone() credentials.TransportCredentials {
	return serverNameCreds{TransportCredentials: c.TransportCredentials.Clone(), name: c.name}
}

// clientConfig is the tls.Config of a TLS channel: TLS 1.2 or later,
// RootCAs from CAPEM or CAFile (nil: the system roots), and the client
// certificate read from its files at every handshake. Everything is
// loaded once now, so that a bad file fails the bootstrap.
func (c *TLSConfig) clientConfig() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	switch {
	case c.CAPEM != "":
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(c.CAPEM)) {
			return nil, errors.New("tls ca_pem: no PEM certificates in it")
		}
		cfg.RootCAs = pool
	case c.CAFile != "":
		b, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("tls ca_file %s: no PEM certificates in it", c.CAFile)
		}
		cfg.RootCAs = pool
	}
	switch {
	case c.CertFile == "" && c.KeyFile == "":
	case c.CertFile == "" || c.KeyFile == "":
		return nil, errors.New("tls: a client certificate needs both cert_file and key_file")
	default:
		kp := &keyPairFiles{certFile: c.CertFile, keyFile: c.KeyFile}
		if err := kp.load(); err != nil {
			return nil, err
		}
		cfg.GetClientCertificate = kp.get
	}
	return cfg, nil
}

// keyPairFiles is a client certificate read from its files, again at
// every handshake; a pair that does not load keeps the previous one.
type keyPairFiles struct {
	certFile, keyFile string

	mu              sync.Mutex
	certPEM, keyPEM []byte // what was last read
	cert            *tls.Certificate
	lastErr         string
}

// load reads the files and, when they changed, parses them.
func (k *keyPairFiles) load() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	err := func() error {
		certPEM, err := os.ReadFile(k.certFile)
		if err != nil {
			return fmt.Errorf("tls cert_file: %w", err)
		}
		keyPEM, err := os.ReadFile(k.keyFile)
		if err != nil {
			return fmt.Errorf("tls key_file: %w", err)
		}
		if k.cert != nil && bytes.Equal(certPEM, k.certPEM) && bytes.Equal(keyPEM, k.keyPEM) {
			return nil
		}
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return fmt.Errorf("tls: client certificate %s with key %s: %w", k.certFile, k.keyFile, err)
		}
		k.certPEM, k.keyPEM, k.cert = certPEM, keyPEM, &cert
		return nil
	}()
	if err != nil && k.cert != nil && err.Error() != k.lastErr {
		logger.Warningf("reloading the xDS client certificate failed; presenting the previous one: %v", err)
	}
	k.lastErr = ""
	if err != nil {
		k.lastErr = err.Error()
	}
	return err
}

// get is tls.Config.GetClientCertificate.
func (k *keyPairFiles) get(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	_ = k.load() // logged; the previous pair stays
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.cert, nil
}
