package authzbench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"runtime/metrics"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/code"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
)

// Empty is an ext_authz service that allows everything without looking:
// the floor of what gRPC and the load generator cost.
type Empty struct {
	authv3.UnimplementedAuthorizationServer
}

// Check answers OK.
func (Empty) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return &authv3.CheckResponse{Status: &rpcstatus.Status{Code: int32(code.Code_OK)}}, nil
}

// PluginServerOptions are the gRPC server options opa-envoy-plugin uses
// (its default message size limits; no tracing configured).
func PluginServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.MaxRecvMsgSize(4 << 20), grpc.MaxSendMsgSize(math.MaxInt32)}
}

// ServeUntil serves srv over gRPC on authzAddr, and /readyz and /metrics
// (WriteAllocMetrics) on httpAddr, until ctx ends.
func ServeUntil(ctx context.Context, srv authv3.AuthorizationServer, authzAddr, httpAddr string, opts ...grpc.ServerOption) error {
	gl, err := net.Listen("tcp", authzAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", authzAddr, err)
	}
	hl, err := net.Listen("tcp", httpAddr)
	if err != nil {
		gl.Close()
		return fmt.Errorf("listen on %s: %w", httpAddr, err)
	}
	gs := grpc.NewServer(opts...)
	authv3.RegisterAuthorizationServer(gs, srv)
	mux := http.NewServeMux()
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ready\n") })
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, _ *http.Request) { WriteAllocMetrics(w) })
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	errs := make(chan error, 2)
	go func() { errs <- gs.Serve(gl) }()
	go func() { errs <- hs.Serve(hl) }()
	select {
	case <-ctx.Done():
	case err = <-errs:
	}
	gs.Stop()
	_ = hs.Close()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// Metric names of the allocation counters, as Prometheus' Go collector
// (the gatehouse authorizer's /metrics) names them.
const (
	MallocsMetric    = "go_memstats_mallocs_total"
	AllocBytesMetric = "go_memstats_alloc_bytes_total"
)

// WriteAllocMetrics writes the process's cumulative heap allocations
// (objects, tiny ones included, and bytes, from runtime/metrics) in the
// Prometheus text format under the names of Prometheus' Go collector,
// which derives them the same way.
func WriteAllocMetrics(w io.Writer) {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:objects"}, {Name: "/gc/heap/tiny/allocs:objects"}, {Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	fmt.Fprintf(w, "%s %d\n%s %d\n", MallocsMetric, s[0].Value.Uint64()+s[1].Value.Uint64(), AllocBytesMetric, s[2].Value.Uint64())
}

// Remote is an ext_authz service reached through client (for Agree).
func Remote(client authv3.AuthorizationClient) authv3.AuthorizationServer {
	return remote{client: client}
}

type remote struct {
	authv3.UnimplementedAuthorizationServer
	client authv3.AuthorizationClient
}

func (r remote) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return r.client.Check(ctx, req)
}
