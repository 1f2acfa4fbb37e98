package main

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/gatehouse-dev/gatehouse/internal/tlsfiles"
)

// serverTLS is a process's listener TLS: one certificate, read from files
// and reloaded when they change (internal/tlsfiles). A nil *serverTLS is
// plaintext.
type serverTLS struct {
	files *tlsfiles.Server
	// certFile and keyFile are kept for listeners with their own client
	// verification (withClientAuth).
	certFile, keyFile string
	log               *slog.Logger
}

// newServerTLS reads --tls-cert-file and --tls-key-file; both empty is
// plaintext (nil).
func newServerTLS(certFile, keyFile string, log *slog.Logger) (*serverTLS, error) {
	if certFile == "" && keyFile == "" {
		return nil, nil
	}
	if certFile == "" || keyFile == "" {
		return nil, errors.New("--tls-cert-file and --tls-key-file go together")
	}
	files, err := tlsfiles.NewServer(tlsfiles.ServerOptions{CertFile: certFile, KeyFile: keyFile, Logger: log.With("component", "tls")})
	if err != nil {
		return nil, err
	}
	return &serverTLS{files: files, certFile: certFile, keyFile: keyFile, log: log}, nil
}

// withClientAuth is the same certificate verifying client certificates
// against caFile per mode (tlsfiles.ParseClientAuth); mode off returns t.
// Client verification needs server TLS.
func (t *serverTLS) withClientAuth(caFile, mode string) (*serverTLS, error) {
	auth, err := tlsfiles.ParseClientAuth(mode)
	if err != nil {
		return nil, err
	}
	if auth == tlsfiles.ClientAuthOff {
		if caFile != "" {
			return nil, errors.New("--client-ca-file needs --client-auth optional or require")
		}
		return t, nil
	}
	if t == nil {
		return nil, errors.New("--client-auth needs --tls-cert-file and --tls-key-file")
	}
	files, err := tlsfiles.NewServer(tlsfiles.ServerOptions{CertFile: t.certFile, KeyFile: t.keyFile, ClientCAFile: caFile,
		ClientAuth: auth, Logger: t.log.With("component", "tls")})
	if err != nil {
		return nil, err
	}
	return &serverTLS{files: files, certFile: t.certFile, keyFile: t.keyFile, log: t.log}, nil
}

// http wraps an HTTP listener (HTTP/2 and HTTP/1.1 over TLS).
func (t *serverTLS) http(ln net.Listener) net.Listener {
	if t == nil {
		return ln
	}
	return tls.NewListener(ln, t.files.Config("h2", "http/1.1"))
}

// grpc are the gRPC server options of a listener.
func (t *serverTLS) grpc() []grpc.ServerOption {
	if t == nil {
		return nil
	}
	return []grpc.ServerOption{grpc.Creds(credentials.NewTLS(t.files.Config("h2")))}
}

// scheme is the URL scheme of the HTTP listeners.
func (t *serverTLS) scheme() string {
	if t == nil {
		return "http"
	}
	return "https"
}

// warnPlaintext logs loudly when a plaintext listener is reachable from
// other machines.
func (t *serverTLS) warnPlaintext(log *slog.Logger, listener string, ln net.Listener) {
	if t != nil {
		return
	}
	if tcp, ok := ln.Addr().(*net.TCPAddr); ok && !tcp.IP.IsLoopback() {
		log.Warn("PLAINTEXT listener reachable from other machines: credentials and bundles cross it unencrypted; give --tls-cert-file and --tls-key-file",
			"listener", listener, "addr", ln.Addr().String())
	}
}
