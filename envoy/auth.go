package envoy

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// CredentialMetadataKey is the gRPC metadata key xDS clients send their
// gateway credential in: "authorization: Bearer ghg_…".
const CredentialMetadataKey = "authorization"

// GatewayIdentity is the gateway an xDS client's credential belongs to.
type GatewayIdentity struct {
	TenantID  string
	GatewayID string
	// CredentialID names the credential (logs only; may be empty).
	CredentialID string
}

// NodeID is the only node id the identity may use.
func (g GatewayIdentity) NodeID() string { return NodeID(g.TenantID, g.GatewayID) }

// ErrInvalidCredential is what a CredentialVerifier returns (possibly
// wrapped) for a token that is not a gateway credential in force: malformed,
// unknown, wrong secret, or revoked.
var ErrInvalidCredential = errors.New("invalid gateway credential")

// CredentialVerifier verifies gateway credentials for the xDS server. It is
// implemented on the control-plane side (gatewaycred.Verifier), with
// the check the bundle service applies.
type CredentialVerifier interface {
	// VerifyGateway returns the gateway token is a credential of, an error
	// wrapping ErrInvalidCredential when it is none, or another error when
	// it cannot tell (the store is unreachable, …).
	VerifyGateway(ctx context.Context, token string) (GatewayIdentity, error)
}

type identityKey struct{}

// GatewayIdentityFrom returns the identity the xDS server's interceptors
// authenticated the call as.
func GatewayIdentityFrom(ctx context.Context) (GatewayIdentity, bool) {
	id, ok := ctx.Value(identityKey{}).(GatewayIdentity)
	return id, ok
}

// Errors of refused calls. Their messages never echo a token.
var (
	errNoCredential = status.Error(codes.Unauthenticated,
		"an xDS stream needs a gateway credential: gRPC metadata \"authorization: Bearer ghg_…\"")
	errBadCredential = status.Error(codes.Unauthenticated, "invalid gateway credential")
	errRevoked       = status.Error(codes.Unauthenticated, "the gateway credential was revoked")
	errNoIdentity    = status.Error(codes.Unauthenticated,
		"the call was not authenticated (the xDS server's interceptors are not installed: see Server.ServerOptions)")
)

// ServerOptions are the gRPC server options the xDS services need: the
// stream and unary interceptors that authenticate every call with a
// gateway credential. Pass them to grpc.NewServer together with your own
// (transport credentials, more interceptors: each grpc.ChainStreamInterceptor
// option appends to the chain). Without them every xDS call is refused.
func (s *Server) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.ChainStreamInterceptor(s.StreamInterceptor), grpc.ChainUnaryInterceptor(s.UnaryInterceptor)}
}

// StreamInterceptor authenticates a stream: a missing, malformed, unknown
// or revoked credential is refused with UNAUTHENTICATED before the xDS
// server sees the stream. The identity goes into the stream's context
// (GatewayIdentityFrom); the xDS callbacks then refuse, with
// PERMISSION_DENIED, any request whose node id is not that gateway's.
// Reverify ends the stream once its credential is revoked.
func (s *Server) StreamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	id, token, err := s.authenticate(ss.Context(), info.FullMethod)
	if err != nil {
		return err
	}
	as := &authStream{ServerStream: ss, ctx: context.WithValue(ss.Context(), identityKey{}, id), id: id, token: token,
		done: make(chan struct{})}
	s.guard.add(as)
	defer s.guard.remove(as)
	err = handler(srv, as)
	if as.revoked() {
		return as.cause
	}
	return err
}

// UnaryInterceptor authenticates a unary call (the Fetch* RPCs) as
// StreamInterceptor does a stream.
func (s *Server) UnaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	id, _, err := s.authenticate(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	return handler(context.WithValue(ctx, identityKey{}, id), req)
}

// authenticate verifies the call's bearer credential.
func (s *Server) authenticate(ctx context.Context, method string) (GatewayIdentity, string, error) {
	refuse := func(err error, reason string) (GatewayIdentity, string, error) {
		s.log.Warn("xds call refused", "method", method, "peer", peerAddr(ctx), "reason", reason)
		return GatewayIdentity{}, "", err
	}
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get(CredentialMetadataKey)
	if len(vals) == 0 {
		return refuse(errNoCredential, "no credential")
	}
	if len(vals) > 1 {
		return refuse(errBadCredential, "several authorization values")
	}
	scheme, token, _ := strings.Cut(strings.TrimSpace(vals[0]), " ")
	token = strings.TrimSpace(token)
	if !strings.EqualFold(scheme, "Bearer") || token == "" {
		return refuse(errNoCredential, "not a bearer credential")
	}
	id, err := s.verifier.VerifyGateway(ctx, token)
	switch {
	case errors.Is(err, ErrInvalidCredential):
		return refuse(errBadCredential, "invalid credential")
	case err != nil:
		s.log.Error("xds: cannot verify a gateway credential", "method", method, "peer", peerAddr(ctx), "error", err.Error())
		return GatewayIdentity{}, "", status.Error(codes.Unavailable, "the gateway credential cannot be verified now")
	}
	if _, _, err := ParseNodeID(id.NodeID()); err != nil {
		return refuse(errBadCredential, "the verifier returned no gateway")
	}
	if s.certs != nil {
		if err := s.certs(peerCertificates(ctx), id.TenantID, id.GatewayID); err != nil {
			s.log.Warn("xds call refused", "method", method, "peer", peerAddr(ctx), "node", id.NodeID(),
				"reason", "client certificate", "error", err.Error())
			return GatewayIdentity{}, "", status.Error(codes.PermissionDenied, "client certificate: "+err.Error())
		}
	}
	return id, token, nil
}

// Reverify checks the credential of every open xDS stream again and ends
// those whose credential is no longer in force (revoked, or deleted with
// its gateway or tenant) with UNAUTHENTICATED; it returns how many it
// ended. Call it after gateway credentials are deleted. A stream whose
// credential cannot be checked now (a store fault) stays open until the
// next call.
func (s *Server) Reverify(ctx context.Context) int {
	n := 0
	for _, as := range s.guard.all() {
		id, err := s.verifier.VerifyGateway(ctx, as.token)
		switch {
		case err == nil && id.TenantID == as.id.TenantID && id.GatewayID == as.id.GatewayID:
			continue
		case err == nil || errors.Is(err, ErrInvalidCredential):
			if as.revoke(errRevoked) {
				n++
				s.log.Info("xds stream ended: credential revoked", "node", as.id.NodeID(), "credential", as.id.CredentialID,
					"peer", peerAddr(as.ctx))
			}
		default:
			if ctx.Err() != nil {
				return n
			}
			s.log.Error("xds: cannot verify an open stream's credential; it stays open", "node", as.id.NodeID(),
				"error", err.Error())
		}
	}
	return n
}

// peerCertificates is the verified client certificate chain of the call's
// TLS connection, leaf first (nil without TLS or without a verified client
// certificate).
func peerCertificates(ctx context.Context) []*x509.Certificate {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil
	}
	// Only a chain the handshake verified counts: a certificate the
	// server requested but did not verify is no identity.
	if info, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(info.State.VerifiedChains) > 0 {
		return info.State.VerifiedChains[0]
	}
	return nil
}

func peerAddr(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return p.Addr.String()
	}
	return ""
}

// authStream is an authenticated stream: its context carries the identity,
// and revoke makes it stop receiving, so go-control-plane ends it and the
// interceptor returns the cause.
type authStream struct {
	grpc.ServerStream
	ctx   context.Context
	id    GatewayIdentity
	token string

	once  sync.Once
	done  chan struct{}
	cause error
}

func (a *authStream) Context() context.Context { return a.ctx }

// RecvMsg receives as the underlying stream does, but returns the
// revocation's cause at once when the stream is revoked. (A receive still
// pending underneath ends with the stream.)
func (a *authStream) RecvMsg(m any) error {
	if a.revoked() {
		return a.cause
	}
	ch := make(chan error, 1)
	go func() { ch <- a.ServerStream.RecvMsg(m) }()
	select {
	case err := <-ch:
		return err
	case <-a.done:
		return a.cause
	}
}

// revoke ends the stream with cause; it reports whether this call did.
func (a *authStream) revoke(cause error) bool {
	did := false
	a.once.Do(func() { a.cause, did = cause, true; close(a.done) })
	return did
}

func (a *authStream) revoked() bool {
	select {
	case <-a.done:
		return true
	default:
		return false
	}
}

// guard keeps the authenticated streams and checks that every request of
// a stream names its identity's node, before anything about it is
// recorded or served.
type guard struct {
	log *slog.Logger

	mu      sync.Mutex
	open    map[*authStream]bool
	streams map[streamKey]*guarded
}

type guarded struct {
	id GatewayIdentity
	// node is the node id the stream's first request named (later delta
	// requests may omit the node).
	node string
}

func newGuard(log *slog.Logger) *guard {
	return &guard{log: log, open: map[*authStream]bool{}, streams: map[streamKey]*guarded{}}
}

func (g *guard) add(as *authStream) {
	g.mu.Lock()
	g.open[as] = true
	g.mu.Unlock()
}

func (g *guard) remove(as *authStream) {
	g.mu.Lock()
	delete(g.open, as)
	g.mu.Unlock()
}

func (g *guard) all() []*authStream {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]*authStream, 0, len(g.open))
	for as := range g.open {
		out = append(out, as)
	}
	return out
}

// streamOpen admits a go-control-plane stream whose context carries an
// identity.
func (g *guard) streamOpen(ctx context.Context, stream streamKey) error {
	id, ok := GatewayIdentityFrom(ctx)
	if !ok {
		return errNoIdentity
	}
	g.mu.Lock()
	g.streams[stream] = &guarded{id: id}
	g.mu.Unlock()
	return nil
}

func (g *guard) streamClosed(stream streamKey) {
	g.mu.Lock()
	delete(g.streams, stream)
	g.mu.Unlock()
}

// request checks a request's node (or, when it has none, the stream's
// first one) against the stream's identity.
func (g *guard) request(stream streamKey, node *corev3.Node) error {
	g.mu.Lock()
	st := g.streams[stream]
	if st != nil && node != nil && st.node == "" {
		st.node = node.GetId()
	}
	var id GatewayIdentity
	nodeID := ""
	if st != nil {
		id, nodeID = st.id, st.node
		if node != nil {
			nodeID = node.GetId()
		}
	}
	g.mu.Unlock()
	if st == nil {
		return errNoIdentity
	}
	return g.check(id, nodeID)
}

// fetch checks a unary Fetch request.
func (g *guard) fetch(ctx context.Context, req *discoverygrpc.DiscoveryRequest) error {
	id, ok := GatewayIdentityFrom(ctx)
	if !ok {
		return errNoIdentity
	}
	return g.check(id, req.GetNode().GetId())
}

func (g *guard) check(id GatewayIdentity, nodeID string) error {
	if nodeID == id.NodeID() {
		return nil
	}
	g.log.Warn("xds request refused: node id of another gateway", "node", nodeID, "credential_gateway", id.NodeID(),
		"credential", id.CredentialID)
	return status.Error(codes.PermissionDenied, fmt.Sprintf("node id %q is not the node id of this credential's gateway (%q)",
		nodeID, id.NodeID()))
}

// callbacks are the xDS server's: the guard's checks first, then the
// tracker's records, so a refused request leaves no trace in the status.
func (s *Server) callbacks() server.CallbackFuncs {
	t, g := s.tracker.callbacks(), s.guard
	sotw := func(id int64) streamKey { return streamKey{id: id} }
	delta := func(id int64) streamKey { return streamKey{delta: true, id: id} }
	return server.CallbackFuncs{
		StreamOpenFunc: func(ctx context.Context, id int64, typeURL string) error {
			if err := g.streamOpen(ctx, sotw(id)); err != nil {
				return err
			}
			return t.StreamOpenFunc(ctx, id, typeURL)
		},
		StreamClosedFunc: func(id int64, n *corev3.Node) {
			g.streamClosed(sotw(id))
			t.StreamClosedFunc(id, n)
		},
		DeltaStreamOpenFunc: func(ctx context.Context, id int64, typeURL string) error {
			if err := g.streamOpen(ctx, delta(id)); err != nil {
				return err
			}
			return t.DeltaStreamOpenFunc(ctx, id, typeURL)
		},
		DeltaStreamClosedFunc: func(id int64, n *corev3.Node) {
			g.streamClosed(delta(id))
			t.DeltaStreamClosedFunc(id, n)
		},
		StreamRequestFunc: func(id int64, req *discoverygrpc.DiscoveryRequest) error {
			if err := g.request(sotw(id), req.GetNode()); err != nil {
				return err
			}
			return t.StreamRequestFunc(id, req)
		},
		StreamDeltaRequestFunc: func(id int64, req *discoverygrpc.DeltaDiscoveryRequest) error {
			if err := g.request(delta(id), req.GetNode()); err != nil {
				return err
			}
			return t.StreamDeltaRequestFunc(id, req)
		},
		StreamResponseFunc:      t.StreamResponseFunc,
		StreamDeltaResponseFunc: t.StreamDeltaResponseFunc,
		FetchRequestFunc:        g.fetch,
	}
}
