package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"
)

// listenMetrics listens on addr (--metrics-addr) for /metrics without
// authentication, for a Prometheus that cannot send the admin token. The
// metrics name every tenant and gateway: only trusted scrapers may reach
// it. The component serves it until its context ends.
func listenMetrics(addr string, metrics http.Handler, tlsServer *serverTLS, log *slog.Logger, stdout io.Writer, deadline func() context.Context) (*httpServerComponent, error) {
	ln, err := listen("--metrics-addr", addr)
	if err != nil {
		return nil, err
	}
	tlsServer.warnPlaintext(log, "metrics", ln)
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metrics)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	log.Info("metrics listening", "addr", ln.Addr().String())
	fmt.Fprintf(stdout, "  metrics   : %s://%s/metrics (no token: keep it on a trusted network)\n", tlsServer.scheme(), ln.Addr())
	return &httpServerComponent{srv: srv, ln: tlsServer.http(ln), deadline: deadline}, nil
}
