// Package tlsfiles builds TLS configurations from PEM files on disk:
// server certificates and client CA bundles that are reloaded when their
// files change (no restart), client configurations that verify the server
// against a CA bundle, and throwaway development certificates.
package tlsfiles

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// ClientAuth is how a server treats client certificates.
type ClientAuth string

// The client certificate modes.
const (
	// ClientAuthOff neither requests nor verifies client certificates.
	ClientAuthOff ClientAuth = "off"
	// ClientAuthOptional verifies a client certificate if one is given.
	ClientAuthOptional ClientAuth = "optional"
	// ClientAuthRequire refuses clients without a valid certificate.
	ClientAuthRequire ClientAuth = "require"
)

// ParseClientAuth parses a mode: "off", "optional" or "require"; "" is off.
func ParseClientAuth(s string) (ClientAuth, error) {
	switch ClientAuth(s) {
	case "", ClientAuthOff:
		return ClientAuthOff, nil
	case ClientAuthOptional, ClientAuthRequire:
		return ClientAuth(s), nil
	}
	return "", fmt.Errorf("client auth mode %q: must be off, optional or require", s)
}

func (a ClientAuth) tlsType() tls.ClientAuthType {
	switch a {
	case ClientAuthOptional:
		return tls.VerifyClientCertIfGiven
	case ClientAuthRequire:
		return tls.RequireAndVerifyClientCert
	}
	return tls.NoClientCert
}

// ServerOptions configures a Server.
type ServerOptions struct {
	CertFile, KeyFile string // PEM; both required
	ClientCAFile      string // PEM bundle; required unless ClientAuth is off (ignored when off)
	ClientAuth        ClientAuth
	Logger            *slog.Logger // reload successes/failures (default: discard)
}

// defaultCheckInterval is how often handshakes look at the files.
const defaultCheckInterval = time.Second

// material is what one successful load produced.
type material struct {
	cert *tls.Certificate
	pool *x509.CertPool // nil when client auth is off
}

// Server serves certificates read from files, reloaded when they change.
// Handshakes look at the files at most once per check interval (a second);
// Reload looks at once.
type Server struct {
	opts ServerOptions
	log  *slog.Logger

	current atomic.Pointer[material]

	// checkInterval is the minimum time between file checks made by
	// handshakes; tests set it to 0 to check on every handshake.
	checkInterval time.Duration
	lastCheck     atomic.Int64 // unix nanoseconds of the last handshake check

	mu      sync.Mutex // serialises loads; guards seen and lastErr
	seen    [][]byte   // contents of the files at the last load attempt
	lastErr error      // result of the last load attempt
}

// NewServer loads the files now. A missing or bad file is an error naming
// it, as is a ClientAuth other than off without a ClientCAFile.
func NewServer(opts ServerOptions) (*Server, error) {
	if opts.ClientAuth == "" {
		opts.ClientAuth = ClientAuthOff
	}
	if _, err := ParseClientAuth(string(opts.ClientAuth)); err != nil {
		return nil, err
	}
	if opts.CertFile == "" || opts.KeyFile == "" {
		return nil, errors.New("tls: both a certificate file and a key file are required")
	}
	if opts.ClientAuth != ClientAuthOff && opts.ClientCAFile == "" {
		return nil, fmt.Errorf("tls: client auth %q needs a client CA file", opts.ClientAuth)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.ClientAuth == ClientAuthOff && opts.ClientCAFile != "" {
		log.Warn("tls: a client CA file is set but client auth is off: client certificates are not verified", "client_ca_file", opts.ClientCAFile)
	}
	s := &Server{opts: opts, log: log, checkInterval: defaultCheckInterval}
	s.mu.Lock()
	defer s.mu.Unlock()
	contents, err := s.readFiles()
	if err != nil {
		return nil, err
	}
	m, err := s.parse(contents)
	if err != nil {
		return nil, err
	}
	s.seen = contents
	s.current.Store(m)
	s.lastCheck.Store(time.Now().UnixNano())
	return s, nil
}

// files lists the files the server reads, in a fixed order.
func (s *Server) files() []string {
	f := []string{s.opts.CertFile, s.opts.KeyFile}
	if s.opts.ClientAuth != ClientAuthOff {
		f = append(f, s.opts.ClientCAFile)
	}
	return f
}

// readFiles returns the files' contents in the order of files.
func (s *Server) readFiles() ([][]byte, error) {
	var all [][]byte
	for _, name := range s.files() {
		b, err := os.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		all = append(all, b)
	}
	return all, nil
}

func sameContents(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// parse builds material from the contents readFiles returned.
func (s *Server) parse(parts [][]byte) (*material, error) {
	cert, err := tls.X509KeyPair(parts[0], parts[1])
	if err != nil {
		return nil, fmt.Errorf("tls: certificate %s with key %s: %w", s.opts.CertFile, s.opts.KeyFile, err)
	}
	m := &material{cert: &cert}
	if s.opts.ClientAuth != ClientAuthOff {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(parts[2]) {
			return nil, fmt.Errorf("tls: client CA file %s: no PEM certificates in it", s.opts.ClientCAFile)
		}
		m.pool = pool
	}
	return m, nil
}

// Reload checks the files now and loads them; on error it keeps the
// previous certificate and CA pool and returns the error.
func (s *Server) Reload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.loadLocked(true)
}

// loadLocked reads the files and, if force or they changed since the last
// attempt, parses them. A failed attempt is logged once per content.
func (s *Server) loadLocked(force bool) error {
	contents, err := s.readFiles()
	if err == nil && !force && sameContents(contents, s.seen) {
		return s.lastErr
	}
	if err == nil {
		s.seen = contents
		var m *material
		if m, err = s.parse(contents); err == nil {
			s.current.Store(m)
			s.lastErr = nil
			s.log.Info("tls: certificates reloaded", "cert_file", s.opts.CertFile, "serial", m.cert.Leaf.SerialNumber.String(), "not_after", m.cert.Leaf.NotAfter)
			return nil
		}
	}
	if force || err.Error() != errString(s.lastErr) {
		s.log.Warn("tls: reloading certificates failed; serving the previous ones", "err", err.Error())
	}
	s.lastErr = err
	return err
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// maybeReload checks the files if the check interval has passed, without
// blocking a handshake behind a load in progress.
func (s *Server) maybeReload() {
	now := time.Now().UnixNano()
	last := s.lastCheck.Load()
	if now-last < int64(s.checkInterval) || !s.lastCheck.CompareAndSwap(last, now) {
		return
	}
	if !s.mu.TryLock() {
		return
	}
	defer s.mu.Unlock()
	_ = s.loadLocked(false) // logged; the previous material stays
}

// Config returns a tls.Config for a listener: TLS 1.2 or later with Go's
// default cipher suites, the current certificate, the given ALPN protocols
// (e.g. "h2", "http/1.1") and client certificates verified per ClientAuth
// against the current client CA pool. Handshakes reload changed files at
// most once per second; a file that fails to load keeps the previous
// material and logs a warning.
func (s *Server) Config(nextProtos ...string) *tls.Config {
	protos := append([]string(nil), nextProtos...)
	getCert := func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		s.maybeReload()
		return s.current.Load().cert, nil
	}
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     protos,
		GetCertificate: getCert,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			s.maybeReload()
			m := s.current.Load()
			return &tls.Config{
				MinVersion: tls.VersionTLS12,
				NextProtos: protos,
				GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
					return m.cert, nil
				},
				ClientAuth: s.opts.ClientAuth.tlsType(),
				ClientCAs:  m.pool,
			}, nil
		},
	}
}

// ClientOptions configures a client's TLS (NewClientConfig).
type ClientOptions struct {
	// CAPEM is the CA bundle (PEM) the server is verified against; it wins
	// over CAFile. Both empty: the system pool.
	CAPEM  string
	CAFile string
	// CertFile and KeyFile are the client certificate (both or neither),
	// reloaded when the files change, as a Server's are.
	CertFile, KeyFile string
	Logger            *slog.Logger
}

// NewClientConfig returns a tls.Config for a client: TLS 1.2 or later,
// trusting the CAs of opts (the system pool when none is given) and
// presenting the client certificate of opts, if any, as it is on disk
// (checked at most once per second). It never skips verification.
func NewClientConfig(opts ClientOptions) (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	ca, what := []byte(opts.CAPEM), "CA bundle"
	if opts.CAPEM == "" && opts.CAFile != "" {
		b, err := os.ReadFile(opts.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls: CA file: %w", err)
		}
		ca, what = b, "CA file "+opts.CAFile
	}
	if len(ca) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(ca) {
			return nil, fmt.Errorf("tls: %s: no PEM certificates in it", what)
		}
		c.RootCAs = pool
	}
	switch {
	case opts.CertFile == "" && opts.KeyFile == "":
	case opts.CertFile == "" || opts.KeyFile == "":
		return nil, errors.New("tls: a client certificate needs both a certificate file and a key file")
	default:
		// A Server without client auth is a reloading key pair.
		pair, err := NewServer(ServerOptions{CertFile: opts.CertFile, KeyFile: opts.KeyFile, Logger: opts.Logger})
		if err != nil {
			return nil, fmt.Errorf("tls: client certificate: %w", err)
		}
		c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			pair.maybeReload()
			return pair.current.Load().cert, nil
		}
	}
	return c, nil
}

// ClientConfig is NewClientConfig with a CA file and a client certificate
// (each "" for none).
func ClientConfig(caFile, certFile, keyFile string) (*tls.Config, error) {
	return NewClientConfig(ClientOptions{CAFile: caFile, CertFile: certFile, KeyFile: keyFile})
}
