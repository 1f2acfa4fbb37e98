package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"syscall"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/gatehouse-dev/gatehouse/gatewaycert"
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
	// clientAuth is how client certificates are verified.
	clientAuth tlsfiles.ClientAuth
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
	return &serverTLS{files: files, certFile: certFile, keyFile: keyFile, log: log, clientAuth: tlsfiles.ClientAuthOff}, nil
}

// listenerTLS is one listener's TLS: its own certificate when an override
// pair (--<listener>-tls-cert-file and -key-file) is given, else def.
func listenerTLS(def *serverTLS, flagPrefix, certFile, keyFile string, log *slog.Logger) (*serverTLS, error) {
	if certFile == "" && keyFile == "" {
		return def, nil
	}
	if certFile == "" || keyFile == "" {
		return nil, fmt.Errorf("--%s-tls-cert-file and --%s-tls-key-file go together", flagPrefix, flagPrefix)
	}
	t, err := newServerTLS(certFile, keyFile, log)
	if err != nil {
		return nil, fmt.Errorf("--%s-tls-cert-file: %w", flagPrefix, err)
	}
	return t, nil
}

// describe is the banner's word for the listener's TLS.
func (t *serverTLS) describe() string {
	switch {
	case t == nil:
		return "plaintext"
	case t.clientAuth == tlsfiles.ClientAuthRequire:
		return "TLS, client certificates required"
	case t.clientAuth == tlsfiles.ClientAuthOptional:
		return "TLS, client certificates optional"
	}
	return "TLS"
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
	return &serverTLS{files: files, certFile: t.certFile, keyFile: t.keyFile, log: t.log, clientAuth: auth}, nil
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

// gatewayPeers is the TLS of the listeners whose peers are gateways (xDS,
// the bundle service, ext_authz) under --client-auth and --client-ca-file:
// each listener's own TLS with client certificates verified, and the
// check that a verified certificate names the gateway of the peer's
// credential (nil when client auth is off).
type gatewayPeers struct {
	auth  tlsfiles.ClientAuth
	check func(chain []*x509.Certificate, tenantID, gatewayID string) error
}

func newGatewayPeers(mode, caFile string) (gatewayPeers, error) {
	auth, err := tlsfiles.ParseClientAuth(mode)
	if err != nil {
		return gatewayPeers{}, fmt.Errorf("--client-auth: %w", err)
	}
	if auth == tlsfiles.ClientAuthOff {
		if caFile != "" {
			return gatewayPeers{}, errors.New("--client-ca-file needs --client-auth optional or require")
		}
		return gatewayPeers{auth: auth}, nil
	}
	if caFile == "" {
		return gatewayPeers{}, fmt.Errorf("--client-auth %s needs --client-ca-file", auth)
	}
	return gatewayPeers{auth: auth, check: gatewaycert.Checker{Require: auth == tlsfiles.ClientAuthRequire}.Check}, nil
}

// listener applies the mode to a listener's TLS; shared says the listener
// also serves people (the admin API beside the bundle service), so a
// certificate is only asked for there and required by the route.
func (p gatewayPeers) listener(t *serverTLS, caFile, name string, shared bool) (*serverTLS, error) {
	if p.auth == tlsfiles.ClientAuthOff {
		return t, nil
	}
	if t == nil {
		return nil, fmt.Errorf("--client-auth %s needs TLS on the %s listener (--tls-cert-file and --tls-key-file)", p.auth, name)
	}
	mode := p.auth
	if shared {
		mode = tlsfiles.ClientAuthOptional
	}
	return t.withClientAuth(caFile, string(mode))
}

// listen listens on addr, given by flag. An address in use says so and
// what to do: two processes on one host (a second authorizer, or one
// beside gatehouse serve, whose in-process ext_authz takes
// 127.0.0.1:9191) need their own addresses.
func listen(flag, addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		return nil, fmt.Errorf("listen on %s %s: the address is in use (by another gatehouse on this host? gatehouse serve's ext_authz takes 127.0.0.1:9191, an authorizer 127.0.0.1:9191 and 127.0.0.1:9192): give this process its own %s", flag, addr, flag)
	case err != nil:
		return nil, fmt.Errorf("listen on %s %s: %w", flag, addr, err)
	}
	return ln, nil
}

// extAuthzCertificates is the check of ext_authz callers' certificates
// under the listener's client auth (nil when off): a certificate that
// names a gateway must name the one the call asks about; one that names
// none passes on its CA (gatewaycert.Checker.AllowUnnamed).
func (t *serverTLS) extAuthzCertificates() func(chain []*x509.Certificate, tenantID, gatewayID string) error {
	if t == nil || t.clientAuth == tlsfiles.ClientAuthOff {
		return nil
	}
	return gatewaycert.Checker{Require: t.clientAuth == tlsfiles.ClientAuthRequire, AllowUnnamed: true}.Check
}
