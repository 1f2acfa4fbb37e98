package envoy

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	clusterservice "github.com/envoyproxy/go-control-plane/envoy/service/cluster/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	endpointservice "github.com/envoyproxy/go-control-plane/envoy/service/endpoint/v3"
	listenerservice "github.com/envoyproxy/go-control-plane/envoy/service/listener/v3"
	routeservice "github.com/envoyproxy/go-control-plane/envoy/service/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/log"
	"github.com/envoyproxy/go-control-plane/pkg/server/sotw/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"

	"github.com/gatehouse-dev/gatehouse/bundles"
)

// BundleSource is what the xDS server reads of the bundle manager
// (*bundles.Manager is one): every gateway's current bundle, whose
// Compiled configuration it translates, and a notification when they
// change.
type BundleSource interface {
	// Ready is closed once every gateway's first bundle is built.
	Ready() <-chan struct{}
	// All returns every gateway's current bundle.
	All() []*bundles.Bundle
	// Changed returns a channel closed at the next change of All.
	Changed() <-chan struct{}
}

var _ BundleSource = (*bundles.Manager)(nil)

// Options configure a Server.
type Options struct {
	// Bundles is the source of truth for gateways (required, and running).
	Bundles BundleSource
	// AuthorizerAddress is the authorizer's ext_authz gRPC address as the
	// gateways' Envoys reach it, "host:port" (required).
	AuthorizerAddress string
	// Logger is used as given: the caller names the component.
	Logger *slog.Logger
	// AuthorizerTimeout, AuthorizerTLS and UpstreamCAFile: see
	// TranslateOptions. New refuses an AuthorizerTLS with a certificate
	// file but no key file (or the reverse) or an inline CA bundle that is
	// not PEM certificates.
	AuthorizerTimeout time.Duration
	AuthorizerTLS     *TLSClient
	UpstreamCAFile    string
	// Credentials verifies the gateway credential every xDS call must carry
	// (required): a node may only ask for its own gateway's snapshot.
	Credentials CredentialVerifier
	// ClientCertificates, when set, checks the TLS client certificate chain
	// of every call (nil or empty when the client sent none) against the
	// gateway the call's credential belongs to; an error refuses the call
	// with PERMISSION_DENIED (package gatewaycert implements it).
	ClientCertificates func(chain []*x509.Certificate, tenantID, gatewayID string) error
}

// Server is the xDS control plane: it keeps one snapshot per gateway, keyed
// by the gateway's node id (NodeID), rebuilt from the bundle manager's
// change feed, and serves them over ADS and the per-type xDS services to
// clients authenticated with a credential of that gateway (see
// ServerOptions).
type Server struct {
	bundles  BundleSource
	opts     TranslateOptions
	log      *slog.Logger
	tracker  *tracker
	verifier CredentialVerifier
	certs    func(chain []*x509.Certificate, tenantID, gatewayID string) error
	guard    *guard
	// Envoy nodes are served by an ADS cache (responses ordered CDS, EDS,
	// LDS, RDS); other clients, such as proxyless gRPC, which subscribe to
	// subsets of a snapshot by name, by a non-ADS cache. Both hold every
	// snapshot.
	adsCache, plainCache cache.SnapshotCache
	xds                  server.Server
	// ctx ends the xDS streams when Run returns.
	ctx     context.Context
	cancel  context.CancelFunc
	counter atomic.Uint64
	ready   chan struct{}

	mu       sync.Mutex
	gateways map[string]*gatewayState // by node id
}

// gatewayState is what was last done for a gateway. It is replaced, never
// modified, so Status can read it under mu only.
type gatewayState struct {
	revision int64
	hash     string
	// set: a snapshot was served; version, key (translationKey of its
	// input) and updatedAt describe it.
	set       bool
	version   string
	key       [sha256.Size]byte
	updatedAt time.Time
	err       string
	// deleted: the gateway is gone; an empty snapshot is served until its
	// last node disconnects.
	deleted bool
}

// New returns a server; Register it on a gRPC server created with its
// ServerOptions, then Run it.
func New(opts Options) (*Server, error) {
	if opts.Bundles == nil {
		return nil, errors.New("envoy: a bundle source is required")
	}
	if opts.Credentials == nil {
		return nil, errors.New("envoy: a credential verifier is required")
	}
	if _, _, _, err := parseHostPort("envoy: authorizer address", opts.AuthorizerAddress); err != nil {
		return nil, err
	}
	if err := opts.AuthorizerTLS.validate(); err != nil {
		return nil, fmt.Errorf("envoy: authorizer %w", err)
	}
	lg := opts.Logger
	if lg == nil {
		lg = slog.Default()
	}
	s := &Server{
		bundles: opts.Bundles,
		opts: TranslateOptions{AuthorizerAddress: opts.AuthorizerAddress, AuthorizerTimeout: opts.AuthorizerTimeout,
			AuthorizerTLS: opts.AuthorizerTLS.clone(), UpstreamCAFile: opts.UpstreamCAFile}.withDefaults(),
		log:      lg,
		tracker:  newTracker(),
		verifier: opts.Credentials,
		certs:    opts.ClientCertificates,
		guard:    newGuard(lg),
		ready:    make(chan struct{}),
		gateways: map[string]*gatewayState{},
	}
	cl := cacheLogger(lg)
	s.adsCache = cache.NewSnapshotCache(true, cache.IDHash{}, cl)
	s.plainCache = cache.NewSnapshotCache(false, cache.IDHash{}, cl)
	mux := &cache.MuxCache{
		Classify:      func(r *cache.Request) string { return classify(r.GetNode().GetUserAgentName()) },
		ClassifyDelta: func(r *cache.DeltaRequest) string { return classify(r.GetNode().GetUserAgentName()) },
		Caches:        map[string]cache.Cache{"ads": s.adsCache, "plain": s.plainCache},
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.xds = server.NewServer(s.ctx, mux, s.callbacks(), sotw.WithOrderedADS(), sotw.WithLogger(cl))
	return s, nil
}

// classify picks the cache of a node by its user agent: "envoy" for Envoy.
func classify(userAgent string) string {
	if userAgent == "envoy" {
		return "ads"
	}
	return "plain"
}

// NewGRPCServer returns a gRPC server with the xDS services registered and
// ServerOptions applied before extra (transport credentials, further
// interceptors, limits).
func (s *Server) NewGRPCServer(extra ...grpc.ServerOption) *grpc.Server {
	gs := grpc.NewServer(append(s.ServerOptions(), extra...)...)
	s.Register(gs)
	return gs
}

// Register registers the aggregated (ADS) and the per-type (CDS, EDS, LDS,
// RDS) discovery services on gs, which must have been created with
// ServerOptions: calls that did not go through its interceptors are
// refused.
func (s *Server) Register(gs grpc.ServiceRegistrar) {
	discoverygrpc.RegisterAggregatedDiscoveryServiceServer(gs, s.xds)
	clusterservice.RegisterClusterDiscoveryServiceServer(gs, s.xds)
	endpointservice.RegisterEndpointDiscoveryServiceServer(gs, s.xds)
	listenerservice.RegisterListenerDiscoveryServiceServer(gs, s.xds)
	routeservice.RegisterRouteDiscoveryServiceServer(gs, s.xds)
}

// Ready is closed once every gateway's first snapshot has been built.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Run waits for the bundle source's first build, builds every gateway's
// snapshot, then follows its changes until ctx ends: only
// gateways whose bundle revision or hash changed are translated again, and
// a snapshot is set (with a new version) only when their resources changed.
// When Run returns, the open xDS streams end (so a graceful gRPC stop does
// not wait for them); a Server runs once.
func (s *Server) Run(ctx context.Context) error {
	defer s.cancel()
	select {
	case <-s.bundles.Ready():
	case <-ctx.Done():
		return nil
	}
	first := true
	for {
		changed := s.bundles.Changed()
		s.sync(ctx)
		if first {
			close(s.ready)
			first = false
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil
		}
	}
}

// sync brings every gateway's snapshot up to date with the bundles.
func (s *Server) sync(ctx context.Context) {
	present := map[string]bool{}
	for _, b := range s.bundles.All() {
		id := NodeID(b.TenantID, b.GatewayID)
		present[id] = true
		s.mu.Lock()
		prev := s.gateways[id]
		s.mu.Unlock()
		if prev != nil && !prev.deleted && prev.revision == b.Revision && prev.hash == b.Hash {
			continue
		}
		s.build(ctx, id, b, prev)
	}
	s.mu.Lock()
	var gone []string
	for id := range s.gateways {
		if !present[id] {
			gone = append(gone, id)
		}
	}
	s.mu.Unlock()
	for _, id := range gone {
		s.drop(ctx, id)
	}
}

// build translates a gateway's bundle and serves the result if it differs
// from what is served. On failure the previous snapshot stays.
func (s *Server) build(ctx context.Context, id string, b *bundles.Bundle, prev *gatewayState) {
	next := &gatewayState{revision: b.Revision, hash: b.Hash}
	if prev != nil && !prev.deleted {
		next.set, next.version, next.key, next.updatedAt = prev.set, prev.version, prev.key, prev.updatedAt
	}
	err := func() error {
		if b.Compiled == nil {
			return errNoCompiled
		}
		key := translationKey(b.Compiled, s.opts)
		if next.set && key == next.key {
			return nil // a change xDS does not see (a policy, a scope, …)
		}
		res, err := Translate(b.Compiled, s.opts)
		if err != nil {
			return err
		}
		version := fmt.Sprintf("%d.%d", b.Revision, s.counter.Add(1))
		snap, err := newSnapshot(version, res)
		if err != nil {
			return err
		}
		if err := s.setSnapshot(ctx, id, snap); err != nil {
			return err
		}
		next.set, next.version, next.key, next.updatedAt = true, version, key, time.Now().UTC()
		s.log.Info("xds snapshot set", "node", id, "version", version)
		return nil
	}()
	if err != nil {
		next.err = err.Error()
		s.log.Error("xds snapshot not updated", "node", id, "bundle_revision", b.Revision, "error", next.err)
	}
	s.mu.Lock()
	s.gateways[id] = next
	s.mu.Unlock()
}

// drop retires a deleted gateway: its nodes get an empty snapshot (Envoy
// removes its listener and clusters), and once none is connected the
// snapshot and its status are forgotten.
func (s *Server) drop(ctx context.Context, id string) {
	s.mu.Lock()
	g := s.gateways[id]
	s.mu.Unlock()
	if g != nil && !g.deleted && s.tracker.connected(id) {
		version := fmt.Sprintf("deleted.%d", s.counter.Add(1))
		snap, err := newSnapshot(version, Resources{})
		if err == nil {
			err = s.setSnapshot(ctx, id, snap)
		}
		if err != nil {
			s.log.Error("xds: cannot empty a deleted gateway's snapshot", "node", id, "error", err.Error())
		}
		s.mu.Lock()
		s.gateways[id] = &gatewayState{deleted: true, set: true, version: version, updatedAt: time.Now().UTC()}
		s.mu.Unlock()
		return
	}
	if s.tracker.connected(id) {
		return
	}
	s.adsCache.ClearSnapshot(id)
	s.plainCache.ClearSnapshot(id)
	s.tracker.forget(id)
	s.mu.Lock()
	delete(s.gateways, id)
	s.mu.Unlock()
	s.log.Info("xds snapshot dropped", "node", id)
}

func (s *Server) setSnapshot(ctx context.Context, id string, snap *cache.Snapshot) error {
	if err := s.adsCache.SetSnapshot(ctx, id, snap); err != nil {
		return fmt.Errorf("set snapshot: %w", err)
	}
	if err := s.plainCache.SetSnapshot(ctx, id, snap); err != nil {
		return fmt.Errorf("set snapshot: %w", err)
	}
	return nil
}

// Status returns what the control plane knows of a gateway's xDS state.
func (s *Server) Status(tenantID, gatewayID string) XDSStatus {
	id := NodeID(tenantID, gatewayID)
	st := XDSStatus{NodeID: id}
	s.mu.Lock()
	if g := s.gateways[id]; g != nil && !g.deleted {
		st.BundleRevision, st.Error = g.revision, g.err
		if g.set {
			at := g.updatedAt
			st.Version, st.UpdatedAt = g.version, &at
		}
	}
	s.mu.Unlock()
	st.Nodes, st.LastNack = s.tracker.node(id)
	return st
}

// GatewayStatus is Status as the admin API's status source wants it.
func (s *Server) GatewayStatus(tenantID, gatewayID string) any {
	return s.Status(tenantID, gatewayID)
}

// cacheLogger routes go-control-plane's logs to slog: its debug and info
// messages (one per request) at debug level.
func cacheLogger(l *slog.Logger) log.Logger {
	return log.LoggerFuncs{
		DebugFunc: func(f string, a ...any) { l.Debug(fmt.Sprintf(f, a...)) },
		InfoFunc:  func(f string, a ...any) { l.Debug(fmt.Sprintf(f, a...)) },
		WarnFunc:  func(f string, a ...any) { l.Warn(fmt.Sprintf(f, a...)) },
		ErrorFunc: func(f string, a ...any) { l.Error(fmt.Sprintf(f, a...)) },
	}
}
