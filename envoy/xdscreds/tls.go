package xdscreds

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"

	"github.com/gatehouse-dev/gatehouse/internal/tlsfiles"
	"google.golang.org/grpc/credentials"
)

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

// clientConfig is the tls.Config of a TLS channel (tlsfiles): TLS 1.2 or
// later, RootCAs from CAPEM or CAFile (neither: the system roots), and the
// client certificate as it is on its files (looked at, at most once a
// second, at handshakes; a pair that does not load keeps the previous
// one). Everything is loaded once now, so that a bad file fails the
// bootstrap.
func (c *TLSConfig) clientConfig() (*tls.Config, error) {
	cfg, err := tlsfiles.NewClientConfig(tlsfiles.ClientOptions{CAPEM: c.CAPEM, CAFile: c.CAFile, CertFile: c.CertFile, KeyFile: c.KeyFile,
		Logger: slog.Default()}) // reload failures: the program's default logger
	if err != nil {
		return nil, fmt.Errorf("xdscreds: channel_creds tls: %w", err)
	}
	return cfg, nil
}
