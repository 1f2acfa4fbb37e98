package main

import (
	"context"
	"net"
	"net/http"

	"google.golang.org/grpc"

	"github.com/gatehouse-dev/gatehouse/gateway"
)

// httpServerComponent serves srv on ln. When ctx ends it first runs drain,
// if set (it releases the requests that only wait: the bundle service's
// long polls), then shuts srv down gracefully until the shutdown
// deadline, and closes what is still open then (errCutOff).
type httpServerComponent struct {
	srv      *http.Server
	ln       net.Listener
	drain    func()
	deadline func() context.Context
}

// Run implements component.
func (h *httpServerComponent) Run(ctx context.Context) error {
	served := make(chan error, 1)
	go func() { served <- h.srv.Serve(h.ln) }()
	select {
	case err := <-served: // Serve always returns an error, and only ErrServerClosed after Shutdown
		_ = h.srv.Close()
		return err
	case <-ctx.Done():
	}
	if h.drain != nil {
		h.drain()
	}
	graceful := stopHTTP(h.deadline(), h.srv)
	<-served
	if !graceful {
		return errCutOff
	}
	return nil
}

// grpcServerComponent serves srv on ln. When ctx ends it first runs
// drain, if set (it ends the streams that only wait: health watches),
// then stops srv gracefully (the calls in flight finish) until the
// shutdown deadline, and cuts what is left then (errCutOff).
type grpcServerComponent struct {
	srv      *grpc.Server
	ln       net.Listener
	drain    func()
	deadline func() context.Context
}

// Run implements component.
func (g *grpcServerComponent) Run(ctx context.Context) error {
	served := make(chan error, 1)
	go func() { served <- g.srv.Serve(g.ln) }()
	select {
	case err := <-served: // nil only after a stop, which is ours to make
		g.srv.Stop()
		return err
	case <-ctx.Done():
	}
	if g.drain != nil {
		g.drain()
	}
	graceful := stopGRPC(g.deadline(), g.srv)
	<-served
	if !graceful {
		return errCutOff
	}
	return nil
}

// decisionLogComponent flushes a decision logger when ctx ends: add it
// after the components whose requests log decisions, so their last
// decisions are in the flush. Past the shutdown deadline what is left is
// spilled or dropped (gateway.DecisionLogger.Close) and it is errCutOff.
type decisionLogComponent struct {
	logs     *gateway.DecisionLogger
	deadline func() context.Context
}

// Run implements component.
func (d *decisionLogComponent) Run(ctx context.Context) error {
	<-ctx.Done()
	stop := d.deadline()
	d.logs.Close(stop)
	if stop.Err() != nil {
		return errCutOff
	}
	return nil
}

// healthWatch keeps the ext_authz server's gRPC health status in step with
// its engines until ctx ends (then it reports NOT_SERVING).
func healthWatch(s *gateway.Server) component {
	return componentFunc(func(ctx context.Context) error {
		s.WatchHealth(ctx)
		return nil
	})
}

// streamDrainer ends the gRPC streams that only wait for events (the
// health service's Watch) when a shutdown begins, so a graceful stop does
// not wait for them: each stream's context ends on drain.
type streamDrainer struct {
	ctx   context.Context
	drain context.CancelFunc
}

func newStreamDrainer() *streamDrainer {
	ctx, cancel := context.WithCancel(context.Background())
	return &streamDrainer{ctx: ctx, drain: cancel}
}

// option is the server option that installs the drainer's interceptor.
func (d *streamDrainer) option() grpc.ServerOption {
	return grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx, cancel := context.WithCancel(ss.Context())
		defer cancel()
		stop := context.AfterFunc(d.ctx, cancel)
		defer stop()
		return handler(srv, drainedStream{ServerStream: ss, ctx: ctx})
	})
}

type drainedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s drainedStream) Context() context.Context { return s.ctx }

// stopGRPC stops gs gracefully (no new calls, the ones in flight finish)
// until ctx ends, then cuts what is left. It reports whether the graceful
// stop completed.
func stopGRPC(ctx context.Context, gs *grpc.Server) bool {
	done := make(chan struct{})
	go func() { gs.GracefulStop(); close(done) }()
	select {
	case <-done:
		return true
	case <-ctx.Done():
		gs.Stop()
		<-done
		return false
	}
}

// stopHTTP shuts srv down gracefully until ctx ends, then closes the
// connections still open. It reports whether the graceful shutdown
// completed.
func stopHTTP(ctx context.Context, srv *http.Server) bool {
	if err := srv.Shutdown(ctx); err != nil {
		_ = srv.Close()
		return false
	}
	return true
}
