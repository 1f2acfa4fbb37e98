package main

import (
	"context"
	"net/http"

	"google.golang.org/grpc"
)

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
