package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// metricsListener serves /metrics without authentication on its own
// address (--metrics-addr), for a Prometheus that cannot send the admin
// token. The metrics name every tenant and gateway: only trusted scrapers
// may reach it.
type metricsListener struct {
	srv *http.Server
	ln  net.Listener
}

func startMetrics(addr string, metrics http.Handler, log *slog.Logger, stdout io.Writer) (*metricsListener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on --metrics-addr %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metrics)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	log.Info("metrics listening", "addr", ln.Addr().String())
	fmt.Fprintf(stdout, "  metrics   : http://%s/metrics (no token: keep it on a trusted network)\n", ln.Addr())
	return &metricsListener{srv: srv, ln: ln}, nil
}

// serve runs until stop; a closed server is not an error.
func (m *metricsListener) serve() error {
	if err := m.srv.Serve(m.ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("metrics listener: %w", err)
	}
	return nil
}

// stop drains the listener until ctx ends; false: it was cut off.
func (m *metricsListener) stop(ctx context.Context) bool { return stopHTTP(ctx, m.srv) }
