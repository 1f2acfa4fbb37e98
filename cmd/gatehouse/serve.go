package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	"github.com/gatehouse-dev/gatehouse/admin"
	"github.com/gatehouse-dev/gatehouse/bundles"
	"github.com/gatehouse-dev/gatehouse/bundleservice"
	"github.com/gatehouse-dev/gatehouse/envoy"
	"github.com/gatehouse-dev/gatehouse/gateway"
	"github.com/gatehouse-dev/gatehouse/gatewaycred"
	"github.com/gatehouse-dev/gatehouse/internal/secretbox"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/policies"
	"github.com/gatehouse-dev/gatehouse/store"
	"github.com/gatehouse-dev/gatehouse/store/embedded"
	"github.com/gatehouse-dev/gatehouse/store/postgres"
)

// serveConfig is everything `gatehouse serve` can be told.
type serveConfig struct {
	HTTPAddr        string
	DataDir         string
	DatabaseURL     string
	PublicURL       string
	LogLevel        string
	ShutdownTimeout time.Duration
	MasterKeyFile   string
	// ImportAllowPrivateURLs lets OpenAPI URL imports reach private networks.
	ImportAllowPrivateURLs bool
	AuthzAddr              string
	AuthzDefault           string
	XDSAddr                string
	XDSPublicAddr          string
	AuthorizerAddress      string
	AllowPrivateJWKS       bool
	// PolicyAllowBuiltins are denied built-ins policies may call all the
	// same; PolicyTestTimeout bounds one policy test evaluation.
	PolicyAllowBuiltins []string
	PolicyTestTimeout   time.Duration
	// MetricsAddr serves /metrics without a token (empty: off).
	MetricsAddr string
	// DecisionLogsKept is how many decision log events are kept per gateway.
	DecisionLogsKept int
	// StoreTimeout bounds every store call (and PostgreSQL statements).
	StoreTimeout time.Duration
}

var serveEnv = []envFlag{
	{"http-addr", "GATEHOUSE_HTTP_ADDR"},
	{"data-dir", "GATEHOUSE_DATA_DIR"},
	{"database-url", "GATEHOUSE_DATABASE_URL"},
	{"public-url", "GATEHOUSE_PUBLIC_URL"},
	{"log-level", "GATEHOUSE_LOG_LEVEL"},
	{"shutdown-timeout", "GATEHOUSE_SHUTDOWN_TIMEOUT"},
	{"master-key-file", "GATEHOUSE_MASTER_KEY_FILE"},
	{"import-allow-private-urls", "GATEHOUSE_IMPORT_ALLOW_PRIVATE_URLS"},
	{"authz-addr", "GATEHOUSE_AUTHZ_ADDR"},
	{"authz-default-gateway", "GATEHOUSE_AUTHZ_DEFAULT_GATEWAY"},
	{"xds-addr", "GATEHOUSE_XDS_ADDR"},
	{"xds-public-addr", "GATEHOUSE_XDS_PUBLIC_ADDR"},
	{"authorizer-address", "GATEHOUSE_AUTHORIZER_ADDRESS"},
	{"jwks-allow-private-urls", "GATEHOUSE_JWKS_ALLOW_PRIVATE_URLS"},
	{"policy-allow-builtins", "GATEHOUSE_POLICY_ALLOW_BUILTINS"},
	{"policy-test-timeout", "GATEHOUSE_POLICY_TEST_TIMEOUT"},
	{"metrics-addr", "GATEHOUSE_METRICS_ADDR"},
	{"decision-logs-kept", "GATEHOUSE_DECISION_LOGS_KEPT"},
	{"store-timeout", "GATEHOUSE_STORE_TIMEOUT"},
}

func newServeCommand(stdout, stderr io.Writer) *cobra.Command {
	return newServerCommand(stdout, stderr, "serve", "Run Gatehouse in one process (admin API, bundles, xDS, authorizer)",
		`Run Gatehouse in one process: the admin API, the bundle service, the xDS
control plane and an in-process authorizer.`, "127.0.0.1:9191")
}

// newControlPlaneCommand is serve without the in-process authorizer: the
// stateless control plane that replicas on one PostgreSQL run.
func newControlPlaneCommand(stdout, stderr io.Writer) *cobra.Command {
	return newServerCommand(stdout, stderr, "control-plane", "Run the control plane (admin API, bundles, xDS) without an authorizer",
		`Run the control plane: the admin API, the bundle service and the xDS control
plane. It keeps no state of its own beyond the store: run several replicas on
one PostgreSQL (--database-url), sharing GATEHOUSE_ADMIN_TOKEN and
GATEHOUSE_MASTER_KEY. Gateways run gatehouse authorizer.`, "")
}

func newServerCommand(stdout, stderr io.Writer, use, short, intro, defaultAuthz string) *cobra.Command {
	var cfg serveConfig
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Long: intro + `

With no flags it stores its state in ./gatehouse-data (embedded store) and
serves the admin API on 127.0.0.1:8080. A postgres:// --database-url selects
PostgreSQL instead (migrations are applied at start).

The admin API needs a bearer token. Set GATEHOUSE_ADMIN_TOKEN to choose the
system-wide bootstrap token; when it is unset, one is generated on first start
and kept in <data-dir>/admin-token (mode 0600).

Bundle signing keys are stored sealed with a master key: GATEHOUSE_MASTER_KEY
(base64, 32 bytes), else the file --master-key-file, generated on first start
(mode 0600). Replicas sharing a database must share the master key.`,
		Args: cobra.NoArgs,
		PreRunE: func(cmd *cobra.Command, args []string) error {
			return bindEnv(cmd.Flags(), serveEnv)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return runServe(cmd.Context(), cfg, stdout, stderr)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&cfg.HTTPAddr, "http-addr", "127.0.0.1:8080", "admin API listen address")
	fs.StringVar(&cfg.DataDir, "data-dir", "./gatehouse-data", "directory of the embedded store and generated secrets")
	fs.StringVar(&cfg.DatabaseURL, "database-url", "", "PostgreSQL URL (postgres://…); empty uses the embedded store")
	fs.StringVar(&cfg.PublicURL, "public-url", "", "externally visible base URL (default http://<http-addr>)")
	fs.StringVar(&cfg.LogLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", 15*time.Second, "how long to drain in-flight requests on SIGTERM")
	fs.StringVar(&cfg.AuthzAddr, "authz-addr", defaultAuthz, "in-process ext_authz gRPC listen address (empty: off)")
	fs.StringVar(&cfg.XDSAddr, "xds-addr", "127.0.0.1:18000", "xDS (ADS) gRPC listen address (empty: off)")
	fs.StringVar(&cfg.XDSPublicAddr, "xds-public-addr", "", "xDS address written into gateway packages (default: the --xds-addr listener)")
	fs.StringVar(&cfg.AuthorizerAddress, "authorizer-address", "127.0.0.1:9191", "where the Envoys configured over xDS reach their authorizer (host:port)")
	fs.StringVar(&cfg.AuthzDefault, "authz-default-gateway", "", "tenant/gateway whose bundle decides requests whose context extensions name no gateway")
	fs.StringVar(&cfg.MasterKeyFile, "master-key-file", "", "file holding the master key that seals signing keys (default <data-dir>/master.key, generated; GATEHOUSE_MASTER_KEY gives the key itself)")
	fs.BoolVar(&cfg.ImportAllowPrivateURLs, "import-allow-private-urls", false, "let OpenAPI imports from a URL fetch from loopback, private and link-local addresses")
	fs.BoolVar(&cfg.AllowPrivateJWKS, "jwks-allow-private-urls", false, "let token issuers name loopback, private and link-local jwks_uri and discovery URLs (plain http only there), and the in-process authorizer fetch from them")
	fs.StringVar(&cfg.MetricsAddr, "metrics-addr", "", "serve /metrics without a token on this address, for trusted scrapers (empty: off; the admin API's /metrics needs a system-wide token)")
	fs.IntVar(&cfg.DecisionLogsKept, "decision-logs-kept", bundleservice.DefaultDecisionLogsKept, "decision log events kept per gateway (older ones are deleted)")
	fs.StringSliceVar(&cfg.PolicyAllowBuiltins, "policy-allow-builtins", nil, "built-ins policies may call although they reach outside the authorizer (comma-separated, of: "+
		strings.Join(policies.DeniedBuiltins(), ", ")+"; docs/bundles.md)")
	fs.DurationVar(&cfg.PolicyTestTimeout, "policy-test-timeout", policies.DefaultTestTimeout, "deadline of one evaluation of the policy test API (POST …/policies/test); at most 1m")
	fs.DurationVar(&cfg.StoreTimeout, "store-timeout", store.DefaultTimeout, "deadline of every store call (a whole transaction), and PostgreSQL's statement_timeout; past it a request answers 503 store_unavailable (at most 10m)")
	annotateEnv(fs, serveEnv)
	return cmd
}

// openStore picks the backend: PostgreSQL for a postgres:// URL, else the
// embedded store in dataDir.
func openStore(ctx context.Context, databaseURL, dataDir string, timeout time.Duration) (store.Store, string, error) {
	if databaseURL != "" {
		if !strings.HasPrefix(databaseURL, "postgres://") && !strings.HasPrefix(databaseURL, "postgresql://") {
			return nil, "", errors.New("--database-url must be a postgres:// or postgresql:// URL")
		}
		s, err := postgres.OpenWith(ctx, databaseURL, postgres.Options{Timeout: timeout})
		if err != nil {
			return nil, "", fmt.Errorf("open PostgreSQL store: %w", err)
		}
		return s, "postgres", nil
	}
	s, err := embedded.Open(ctx, dataDir)
	if err != nil {
		return nil, "", fmt.Errorf("open embedded store: %w", err)
	}
	return s, "embedded (" + filepath.Join(dataDir, embedded.FileName) + ")", nil
}

func runServe(ctx context.Context, cfg serveConfig, stdout, stderr io.Writer) error {
	log, err := newLogger(stderr, cfg.LogLevel)
	if err != nil {
		return err
	}
	allowBuiltins, err := policies.NormalizeAllowedBuiltins(cfg.PolicyAllowBuiltins)
	if err != nil {
		return fmt.Errorf("--policy-allow-builtins: %w", err)
	}
	if cfg.PolicyTestTimeout <= 0 || cfg.PolicyTestTimeout > time.Minute {
		return fmt.Errorf("--policy-test-timeout must be positive and at most 1m, not %s", cfg.PolicyTestTimeout)
	}
	if cfg.DecisionLogsKept < 1 {
		return fmt.Errorf("--decision-logs-kept must be at least 1, not %d", cfg.DecisionLogsKept)
	}
	if cfg.StoreTimeout <= 0 || cfg.StoreTimeout > 10*time.Minute {
		return fmt.Errorf("--store-timeout must be positive and at most 10m, not %s", cfg.StoreTimeout)
	}
	token, tokenPath, generated, err := admin.BootstrapToken(cfg.DataDir, os.Getenv("GATEHOUSE_ADMIN_TOKEN"))
	if err != nil {
		return err
	}
	box, err := masterKey(cfg)
	if err != nil {
		return err
	}
	backend, storeDesc, err := openStore(ctx, cfg.DatabaseURL, cfg.DataDir, cfg.StoreTimeout)
	if err != nil {
		return err
	}
	// Every store call, whoever makes it, runs under --store-timeout.
	st := store.WithDeadline(backend, cfg.StoreTimeout)
	defer st.Close()
	keys := bundles.NewKeyStore(st, box)
	mgr := bundles.NewManager(st, keys, log.With("component", "bundles"), bundles.WithAllowedBuiltins(allowBuiltins...))
	runCtx, stopRuns := context.WithCancel(context.Background())
	defer stopRuns()
	mgrDone := make(chan error, 1)
	go func() { mgrDone <- mgr.Run(runCtx) }()

	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen on --http-addr %s: %w", cfg.HTTPAddr, err)
	}
	addr := ln.Addr().String()
	public := cfg.PublicURL
	if public == "" {
		public = "http://" + addr
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if err := st.RegisterMetrics(reg); err != nil {
		ln.Close()
		return err
	}
	if err := mgr.RegisterMetrics(reg); err != nil {
		ln.Close()
		return err
	}
	// One verifier of gateway credentials for the bundle service and xDS.
	creds := gatewaycred.New(st, log.With("component", "gateway-credentials"))
	// The xDS control plane: one snapshot per gateway, from the bundles.
	var xds *xdsServer
	opts := admin.Options{Store: st, BootstrapToken: token, Logger: log, Registry: reg, PublicURL: public,
		Bundles: mgr, Keys: keys, AllowPrivateImportURLs: cfg.ImportAllowPrivateURLs, AllowPrivateJWKSURLs: cfg.AllowPrivateJWKS,
		PolicyTestTimeout: cfg.PolicyTestTimeout}
	// The bundle service shares the admin API's listener and engine (same
	// paths, middleware and metrics); admin does not import it.
	bundleService, err := bundleservice.New(bundleservice.Options{Store: st, Bundles: mgr, Credentials: creds, Registry: reg,
		Logger: log, DecisionLogsKept: cfg.DecisionLogsKept})
	if err != nil {
		ln.Close()
		return err
	}
	opts.Mount = bundleService.Register
	if cfg.XDSAddr != "" {
		if xds, err = startXDS(cfg, creds, mgr, log); err != nil {
			ln.Close()
			return err
		}
		opts.XDS, opts.XDSPublicAddress = xds.server, xds.public
	}
	api, err := admin.New(opts)
	if err != nil {
		ln.Close()
		return err
	}
	srv := &http.Server{
		Handler:           api.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	serveErr := make(chan error, 8)
	go func() { serveErr <- srv.Serve(ln) }()
	log.Info("admin API listening", "addr", addr, "store", storeDesc)
	printBanner(stdout, public, storeDesc, tokenPath, generated)

	if xds != nil {
		fmt.Fprintf(stdout, "  xDS       : %s (ADS gRPC; Envoys reach their authorizer at %s)\n", xds.ln.Addr(), cfg.AuthorizerAddress)
		go func() { serveErr <- xds.grpc.Serve(xds.ln) }()
		xdsCtx, endStreams := context.WithCancel(runCtx)
		xds.endStreams, xds.runDone = endStreams, make(chan struct{})
		go func() {
			defer close(xds.runDone)
			if err := xds.server.Run(xdsCtx); err != nil {
				serveErr <- fmt.Errorf("xDS: %w", err)
			}
		}()
	}
	// Revoked gateway credentials end their xDS streams and leave the
	// bundle service's cache of recently verified credentials.
	go func() {
		err := creds.FollowRevocations(runCtx, 0, func(ctx context.Context) {
			if xds != nil {
				xds.server.Reverify(ctx)
			}
		})
		if err != nil {
			serveErr <- fmt.Errorf("gateway credential revocations: %w", err)
		}
	}()

	// The in-process authorizer decides with the bundles straight from the
	// compiler, for every gateway (chosen by Envoy's context extensions).
	var authz *inProcessAuthorizer
	if cfg.AuthzAddr != "" {
		if authz, err = startInProcessAuthorizer(runCtx, cfg, st, mgr, reg, log, stdout); err != nil {
			return err
		}
		go func() { serveErr <- authz.serve() }()
	}
	var metrics *metricsListener
	if cfg.MetricsAddr != "" {
		if metrics, err = startMetrics(cfg.MetricsAddr, api.MetricsHandler(), log, stdout); err != nil {
			return err
		}
		go func() {
			if err := metrics.serve(); err != nil {
				serveErr <- err
			}
		}()
	}

	select {
	case err := <-serveErr:
		return fmt.Errorf("admin API: %w", err)
	case err := <-mgrDone:
		return fmt.Errorf("bundle manager stopped: %w", err)
	case <-ctx.Done():
	}
	return shutdownServe(log, cfg.ShutdownTimeout, servingParts{bundles: bundleService, http: srv, xds: xds, authz: authz, metrics: metrics},
		stopRuns, mgrDone)
}

// servingParts are what shutdownServe stops; xds, authz and metrics may be
// nil.
type servingParts struct {
	bundles *bundleservice.Service
	http    *http.Server
	xds     *xdsServer
	authz   *inProcessAuthorizer
	metrics *metricsListener
}

// shutdownServe stops serve within timeout: first whatever only waits (the
// bundle service's long polls are answered, the xDS streams and health
// watches end), then every listener drains its requests in flight
// concurrently (the in-process authorizer then flushes its decision logs),
// and last the background work stops. What is still in flight at the
// timeout is cut, and that is the error returned.
func shutdownServe(log *slog.Logger, timeout time.Duration, p servingParts, stopRuns func(), mgrDone <-chan error) error {
	start := time.Now()
	log.Info("shutting down", "timeout", timeout.String())
	sctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()

	p.bundles.Drain()
	if p.xds != nil {
		p.xds.endStreams()
		select {
		case <-p.xds.runDone:
		case <-sctx.Done():
		}
	}
	if p.authz != nil {
		p.authz.drain.drain()
	}

	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		stuck []string
	)
	stop := func(name string, fn func(context.Context) bool) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if !fn(sctx) {
				mu.Lock()
				stuck = append(stuck, name)
				mu.Unlock()
			}
		}()
	}
	stop("admin API", func(ctx context.Context) bool { return stopHTTP(ctx, p.http) })
	if p.xds != nil {
		stop("xDS", func(ctx context.Context) bool { return stopGRPC(ctx, p.xds.grpc) })
	}
	if p.authz != nil {
		stop("ext_authz", p.authz.stop)
	}
	if p.metrics != nil {
		stop("metrics", p.metrics.stop)
	}
	wg.Wait()
	stopRuns()
	<-mgrDone
	if len(stuck) > 0 {
		sort.Strings(stuck)
		return fmt.Errorf("shutdown: %s still busy after --shutdown-timeout %s; cut off", strings.Join(stuck, ", "), timeout)
	}
	log.Info("stopped", "took", time.Since(start).Round(time.Millisecond).String())
	return nil
}

func printBanner(w io.Writer, public, storeDesc, tokenPath string, generated bool) {
	fmt.Fprintf(w, "Gatehouse is serving\n")
	fmt.Fprintf(w, "  admin API : %s (OpenAPI at %s/api/openapi.json)\n", public, public)
	fmt.Fprintf(w, "  store     : %s\n", storeDesc)
	tokenExpr := "$GATEHOUSE_ADMIN_TOKEN"
	switch {
	case tokenPath == "":
		fmt.Fprintf(w, "  admin token: from GATEHOUSE_ADMIN_TOKEN\n")
	case generated:
		fmt.Fprintf(w, "  admin token: generated and stored in %s (mode 0600)\n", tokenPath)
		tokenExpr = "$(cat " + tokenPath + ")"
	default:
		fmt.Fprintf(w, "  admin token: stored in %s\n", tokenPath)
		tokenExpr = "$(cat " + tokenPath + ")"
	}
	fmt.Fprintf(w, "  try       : curl -H \"Authorization: Bearer %s\" %s/api/system/tenants\n", tokenExpr, public)
}

// masterKey opens the secret box that seals signing keys: the key from
// GATEHOUSE_MASTER_KEY, else from --master-key-file (generated when absent).
func masterKey(cfg serveConfig) (*secretbox.Box, error) {
	if v := os.Getenv("GATEHOUSE_MASTER_KEY"); v != "" {
		k, err := secretbox.ParseKey(v)
		if err != nil {
			return nil, fmt.Errorf("GATEHOUSE_MASTER_KEY: %w", err)
		}
		return secretbox.New(k)
	}
	path := cfg.MasterKeyFile
	if path == "" {
		path = filepath.Join(cfg.DataDir, "master.key")
	}
	k, _, err := secretbox.LoadOrCreateKeyFile(path)
	if err != nil {
		return nil, err
	}
	return secretbox.New(k)
}

// inProcessAuthorizer is the ext_authz service of gatehouse serve.
type inProcessAuthorizer struct {
	drain     *streamDrainer
	grpc      *grpc.Server
	ln        net.Listener
	logs      *gateway.DecisionLogger
	activator *gateway.Activator
}

func startInProcessAuthorizer(ctx context.Context, cfg serveConfig, st store.Store, mgr *bundles.Manager,
	reg *prometheus.Registry, log *slog.Logger, stdout io.Writer) (*inProcessAuthorizer, error) {
	metrics, err := gateway.NewMetrics(reg)
	if err != nil {
		return nil, err
	}
	var defaultGateway model.GatewayRef
	if cfg.AuthzDefault != "" {
		if defaultGateway, err = model.ParseGatewayRef(cfg.AuthzDefault); err != nil {
			return nil, fmt.Errorf("--authz-default-gateway %w", err)
		}
	}
	engines := gateway.NewEngines(defaultGateway)
	activator := &gateway.Activator{Engines: engines, Metrics: metrics, Tokens: tokenFactory(cfg.AllowPrivateJWKS, log, reg)}
	logs := gateway.NewDecisionLogger(gateway.DecisionLogOptions{Sink: storeLogSink{Store: st}, Metrics: metrics,
		Logger: log.With("component", "decision-logs")})
	srv := gateway.NewServer(gateway.ServerOptions{Engines: engines, Logs: logs, Metrics: metrics, Logger: log.With("component", "authorizer")})
	ln, err := net.Listen("tcp", cfg.AuthzAddr)
	if err != nil {
		return nil, fmt.Errorf("listen on --authz-addr %s: %w", cfg.AuthzAddr, err)
	}
	drain := newStreamDrainer()
	gs := grpc.NewServer(drain.option())
	srv.Register(gs)
	go srv.WatchHealth(ctx)
	go func() {
		_ = (&localBundles{bundles: mgr, activator: activator, log: log.With("component", "authorizer")}).Run(ctx)
	}()
	log.Info("ext_authz listening", "addr", ln.Addr().String())
	fmt.Fprintf(stdout, "  ext_authz : %s (gRPC, in-process, all gateways)\n", ln.Addr())
	return &inProcessAuthorizer{drain: drain, grpc: gs, ln: ln, logs: logs, activator: activator}, nil
}

func (a *inProcessAuthorizer) serve() error { return a.grpc.Serve(a.ln) }

// stop ends the checks in flight (until ctx ends), then flushes the
// decision logs to the store. It reports whether both finished in time.
func (a *inProcessAuthorizer) stop(ctx context.Context) bool {
	graceful := stopGRPC(ctx, a.grpc)
	a.logs.Close(ctx)
	a.activator.Close()
	return graceful && ctx.Err() == nil
}

// xdsServer is the ADS server of serve and control-plane. Every stream
// must carry a credential of the gateway whose node id it uses.
type xdsServer struct {
	server *envoy.Server
	creds  *gatewaycred.Verifier
	grpc   *grpc.Server
	ln     net.Listener
	public string
	// endStreams ends Run, and with it every xDS stream; runDone is
	// closed when Run has returned.
	endStreams context.CancelFunc
	runDone    chan struct{}
}

func startXDS(cfg serveConfig, creds *gatewaycred.Verifier, mgr *bundles.Manager, log *slog.Logger) (*xdsServer, error) {
	srv, err := envoy.New(envoy.Options{Bundles: mgr, AuthorizerAddress: cfg.AuthorizerAddress, Logger: log.With("component", "xds"),
		Credentials: creds})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.XDSAddr)
	if err != nil {
		return nil, fmt.Errorf("listen on --xds-addr %s: %w", cfg.XDSAddr, err)
	}
	// Options of the gRPC server (TLS, limits) go to NewGRPCServer, after
	// the xDS server's authenticating interceptors.
	gs := srv.NewGRPCServer()
	public := cfg.XDSPublicAddr
	if public == "" {
		public = ln.Addr().String()
	}
	log.Info("xDS listening", "addr", ln.Addr().String(), "public", public, "authorizer", cfg.AuthorizerAddress)
	return &xdsServer{server: srv, creds: creds, grpc: gs, ln: ln, public: public}, nil
}
