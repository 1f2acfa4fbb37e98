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
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	"github.com/gatehouse-dev/gatehouse/admin"
	"github.com/gatehouse-dev/gatehouse/bundles"
	"github.com/gatehouse-dev/gatehouse/bundleservice"
	"github.com/gatehouse-dev/gatehouse/console"
	"github.com/gatehouse-dev/gatehouse/envoy"
	"github.com/gatehouse-dev/gatehouse/gateway"
	"github.com/gatehouse-dev/gatehouse/gatewaycred"
	"github.com/gatehouse-dev/gatehouse/internal/secretbox"
	"github.com/gatehouse-dev/gatehouse/internal/tlsfiles"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/oauth"
	"github.com/gatehouse-dev/gatehouse/oauth/janitor"
	oauthkeys "github.com/gatehouse-dev/gatehouse/oauth/keys"
	"github.com/gatehouse-dev/gatehouse/oauth/verify"
	"github.com/gatehouse-dev/gatehouse/policies"
	"github.com/gatehouse-dev/gatehouse/store"
	"github.com/gatehouse-dev/gatehouse/store/embedded"
	"github.com/gatehouse-dev/gatehouse/store/postgres"
)

// serveConfig is everything `gatehouse serve` can be told.
type serveConfig struct {
	HTTPAddr string
	// TLSCertFile and TLSKeyFile serve every listener over TLS (empty:
	// plaintext).
	TLSCertFile, TLSKeyFile string
	// Per-listener certificates, overriding TLSCertFile and TLSKeyFile.
	XDSTLSCertFile, XDSTLSKeyFile         string
	AuthzTLSCertFile, AuthzTLSKeyFile     string
	MetricsTLSCertFile, MetricsTLSKeyFile string
	// ClientAuth and ClientCAFile verify the client certificates of
	// gateways (xDS, the bundle service, ext_authz).
	ClientAuth, ClientCAFile string
	// PackageCAFile is the CA bundle gateway packages carry.
	PackageCAFile string
	// AuthorizerTLS and the AuthorizerCAFile, AuthorizerServerName,
	// AuthorizerClientCertFile and AuthorizerClientKeyFile (paths on the
	// Envoy hosts) make Envoy's ext_authz calls TLS.
	AuthorizerTLS                                     bool
	AuthorizerCAFile, AuthorizerServerName            string
	AuthorizerClientCertFile, AuthorizerClientKeyFile string
	DataDir                                           string
	DatabaseURL                                       string
	PublicURL                                         string
	LogLevel                                          string
	ShutdownTimeout                                   time.Duration
	MasterKeyFile                                     string
	// ImportAllowPrivateURLs lets OpenAPI URL imports reach private networks.
	ImportAllowPrivateURLs bool
	AuthzAddr              string
	AuthzDefault           string
	XDSAddr                string
	XDSPublicAddr          string
	AuthorizerAddress      string
	AllowPrivateJWKS       bool
	// AllowPrivateIdP lets identity providers name loopback and private
	// hosts (--idp-allow-private-urls; tests and labs).
	AllowPrivateIdP bool
	// PolicyAllowBuiltins are denied built-ins policies may call all the
	// same; PolicyTestTimeout bounds one policy test evaluation.
	PolicyAllowBuiltins []string
	PolicyTestTimeout   time.Duration
	// MetricsAddr serves /metrics without a token (empty: off).
	MetricsAddr string
	// DecisionLogsKept is how many decision log events are kept per gateway.
	DecisionLogsKept int
	// DecisionLogs, when set, is the in-process authorizer's decision log
	// mode of every gateway (--decision-logs; empty: each gateway's own).
	DecisionLogs string
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
	{"idp-allow-private-urls", "GATEHOUSE_IDP_ALLOW_PRIVATE_URLS"},
	{"policy-allow-builtins", "GATEHOUSE_POLICY_ALLOW_BUILTINS"},
	{"policy-test-timeout", "GATEHOUSE_POLICY_TEST_TIMEOUT"},
	{"metrics-addr", "GATEHOUSE_METRICS_ADDR"},
	{"decision-logs-kept", "GATEHOUSE_DECISION_LOGS_KEPT"},
	{"decision-logs", "GATEHOUSE_DECISION_LOGS"},
	{"store-timeout", "GATEHOUSE_STORE_TIMEOUT"},
	{"tls-cert-file", "GATEHOUSE_TLS_CERT_FILE"},
	{"tls-key-file", "GATEHOUSE_TLS_KEY_FILE"},
	{"xds-tls-cert-file", "GATEHOUSE_XDS_TLS_CERT_FILE"},
	{"xds-tls-key-file", "GATEHOUSE_XDS_TLS_KEY_FILE"},
	{"authz-tls-cert-file", "GATEHOUSE_AUTHZ_TLS_CERT_FILE"},
	{"authz-tls-key-file", "GATEHOUSE_AUTHZ_TLS_KEY_FILE"},
	{"metrics-tls-cert-file", "GATEHOUSE_METRICS_TLS_CERT_FILE"},
	{"metrics-tls-key-file", "GATEHOUSE_METRICS_TLS_KEY_FILE"},
	{"client-auth", "GATEHOUSE_CLIENT_AUTH"},
	{"client-ca-file", "GATEHOUSE_CLIENT_CA_FILE"},
	{"package-ca-file", "GATEHOUSE_PACKAGE_CA_FILE"},
	{"authorizer-tls", "GATEHOUSE_AUTHORIZER_TLS"},
	{"authorizer-ca-file", "GATEHOUSE_AUTHORIZER_CA_FILE"},
	{"authorizer-server-name", "GATEHOUSE_AUTHORIZER_SERVER_NAME"},
	{"authorizer-client-cert-file", "GATEHOUSE_AUTHORIZER_CLIENT_CERT_FILE"},
	{"authorizer-client-key-file", "GATEHOUSE_AUTHORIZER_CLIENT_KEY_FILE"},
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
	fs.StringVar(&cfg.TLSCertFile, "tls-cert-file", "", "PEM certificate (chain) of every listener (admin API and bundle service, xDS, ext_authz, metrics); reloaded when the file changes; empty: plaintext")
	fs.StringVar(&cfg.TLSKeyFile, "tls-key-file", "", "PEM private key of --tls-cert-file")
	for _, l := range []struct {
		name       string
		cert, key  *string
		listenerOf string
	}{{"xds", &cfg.XDSTLSCertFile, &cfg.XDSTLSKeyFile, "xDS"}, {"authz", &cfg.AuthzTLSCertFile, &cfg.AuthzTLSKeyFile, "ext_authz"},
		{"metrics", &cfg.MetricsTLSCertFile, &cfg.MetricsTLSKeyFile, "metrics"}} {
		fs.StringVar(l.cert, l.name+"-tls-cert-file", "", "PEM certificate (chain) of the "+l.listenerOf+" listener, instead of --tls-cert-file")
		fs.StringVar(l.key, l.name+"-tls-key-file", "", "PEM private key of --"+l.name+"-tls-cert-file")
	}
	fs.StringVar(&cfg.ClientAuth, "client-auth", "off", "client certificates on xDS, the bundle service and ext_authz: off, optional (verified when given) or require (mutual TLS); on xDS and the bundle service a certificate must also name the gateway of the credential (docs/operations.md, \"TLS\")")
	fs.StringVar(&cfg.ClientCAFile, "client-ca-file", "", "PEM CA bundle gateways' client certificates are verified against (with --client-auth); reloaded when it changes")
	fs.StringVar(&cfg.PackageCAFile, "package-ca-file", "", "PEM CA bundle gateway packages carry to verify this control plane's certificates (empty: gateways use their system's roots)")
	fs.BoolVar(&cfg.AuthorizerTLS, "authorizer-tls", false, "Envoys configured over xDS call their authorizer (--authorizer-address) over TLS")
	fs.StringVar(&cfg.AuthorizerCAFile, "authorizer-ca-file", "", "with --authorizer-tls: CA bundle, on the Envoy hosts, the authorizer's certificate is verified with (default: the system bundle)")
	fs.StringVar(&cfg.AuthorizerServerName, "authorizer-server-name", "", "with --authorizer-tls: the name the authorizer's certificate must carry (default: the host of --authorizer-address)")
	fs.StringVar(&cfg.AuthorizerClientCertFile, "authorizer-client-cert-file", "", "with --authorizer-tls: client certificate, on the Envoy hosts, Envoy presents to the authorizer (mutual TLS)")
	fs.StringVar(&cfg.AuthorizerClientKeyFile, "authorizer-client-key-file", "", "private key of --authorizer-client-cert-file, on the Envoy hosts")
	fs.StringVar(&cfg.DataDir, "data-dir", "./gatehouse-data", "directory of the embedded store and generated secrets")
	fs.StringVar(&cfg.DatabaseURL, "database-url", "", "PostgreSQL URL (postgres://…); empty uses the embedded store")
	fs.StringVar(&cfg.PublicURL, "public-url", "", "externally visible base URL (default http://<http-addr>, https:// with --tls-cert-file)")
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
	fs.BoolVar(&cfg.AllowPrivateIdP, "idp-allow-private-urls", false, "let identity providers name loopback, private and link-local issuer and endpoint URLs (plain http only there), and the login's federation reach them")
	fs.StringVar(&cfg.MetricsAddr, "metrics-addr", "", "serve /metrics without a token on this address, for trusted scrapers (empty: off; the admin API's /metrics needs a system-wide token)")
	fs.IntVar(&cfg.DecisionLogsKept, "decision-logs-kept", bundleservice.DefaultDecisionLogsKept, "decision log events kept per gateway (older ones are deleted)")
	fs.StringVar(&cfg.DecisionLogs, "decision-logs", "", "the in-process authorizer's "+decisionLogsUsage)
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
	if _, err := decisionLogOverride(cfg.DecisionLogs); err != nil {
		return err
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
	// The reserved tenant system and its server system (whose tokens act
	// system-wide) exist from the first start.
	if err := admin.EnsureSystemTenant(ctx, st); err != nil {
		return fmt.Errorf("create the system tenant: %w", err)
	}
	// The kind registry: the admin API's routes and rules, and the kinds
	// whose changes rebuild bundles.
	scheme, err := admin.NewScheme()
	if err != nil {
		return err
	}

	listenersTLS, err := newServeTLS(cfg, log)
	if err != nil {
		return err
	}
	tlsServer := listenersTLS.http
	packageCA, err := packageCAReader(cfg.PackageCAFile)
	if err != nil {
		return err
	}
	ln, err := listen("--http-addr", cfg.HTTPAddr)
	if err != nil {
		return err
	}
	tlsServer.warnPlaintext(log, "admin API", ln)
	// The servers close their listeners once the lifecycle runs; a start
	// that fails before closes them here.
	listeners, running := []net.Listener{ln}, false
	defer func() {
		if !running {
			for _, l := range listeners {
				l.Close()
			}
		}
	}()
	addr := ln.Addr().String()
	public := cfg.PublicURL
	if public == "" {
		public = tlsServer.scheme() + "://" + addr
	}
	// The bundles name the tenants' authorization servers as issuers
	// {public}/{tid}/{aid}.
	mgr := bundles.NewManager(st, keys, log.With("component", "bundles"), bundles.WithAllowedBuiltins(allowBuiltins...),
		bundles.WithInputs(scheme.Bundled()), bundles.WithPublicURL(public))
	// The authorization servers' signing keys (sealed with the master key)
	// and the in-process verifier of their tokens (admin API, bundle
	// service).
	serverKeys := oauthkeys.NewManager(st, box)
	ownTokens := verify.New(st, public, nil, log.With("component", "token-verifier"))
	// The OAuth 2.0 / OIDC provider of every tenant's servers, at
	// {public}/{tid}/{aid}/… on the admin listener.
	provider, err := oauth.New(oauth.Options{Store: st, Keys: serverKeys, PublicURL: public,
		CryptoKey: box.DeriveKey("oauth/crypto-key"), Box: box, Logger: log.With("component", "oauth"),
		IdPAllowPrivateURLs: cfg.AllowPrivateIdP})
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if err := st.RegisterMetrics(reg); err != nil {
		return err
	}
	if err := mgr.RegisterMetrics(reg); err != nil {
		return err
	}
	// One verifier of gateway credentials for the bundle service and xDS.
	creds := gatewaycred.New(st, log.With("component", "gateway-credentials"))
	// Its writes of credentials' last use finish before the store closes.
	defer creds.WaitUsage()
	// The xDS control plane: one snapshot per gateway, from the bundles.
	var xds *xdsServer
	opts := admin.Options{Store: st, BootstrapToken: token, Logger: log, Registry: reg, PublicURL: public,
		Bundles: mgr, Keys: keys, AllowPrivateImportURLs: cfg.ImportAllowPrivateURLs, AllowPrivateJWKSURLs: cfg.AllowPrivateJWKS,
		PolicyTestTimeout: cfg.PolicyTestTimeout, Scheme: scheme, PackageCA: packageCA,
		ServerKeys: serverKeys, TokenAuth: verify.AdminAuth{Verifier: ownTokens}, Tokens: provider,
		ServiceAccountTokens: provider, UserTokens: verify.UserAuth{Verifier: ownTokens},
		AllowPrivateIdPURLs: cfg.AllowPrivateIdP, SecretBox: box}
	// The bundle service shares the admin API's listener and engine (same
	// paths, middleware and metrics); admin does not import it.
	bundleService, err := bundleservice.New(bundleservice.Options{Store: st, Bundles: mgr, Credentials: creds, Registry: reg,
		Logger: log, DecisionLogsKept: cfg.DecisionLogsKept, ClientCertificates: listenersTLS.peers.check,
		GatewayTokens: verify.GatewayAuth{Verifier: ownTokens}})
	if err != nil {
		return err
	}
	// The web console (/console/), static files embedded in the binary.
	webConsole, err := console.New()
	if err != nil {
		return err
	}
	opts.Mount = func(r gin.IRouter) {
		bundleService.Register(r)
		provider.Register(r)
		webConsole.Register(r)
	}
	if cfg.XDSAddr != "" {
		if xds, err = listenXDS(cfg, creds, mgr, listenersTLS, reg, log); err != nil {
			return err
		}
		listeners = append(listeners, xds.ln)
		opts.XDS, opts.XDSPublicAddress, opts.XDSTLS = xds.server, xds.public, listenersTLS.xds != nil
		opts.XDSConfig = xds.server
	}
	// The in-process authorizer, made below, shows in gateways' status.
	inProcess := &inProcessStatus{}
	if cfg.AuthzAddr != "" {
		opts.InProcessAuthorizer = inProcess
	}
	api, err := admin.New(opts)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           api.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	log.Info("admin API listening", "addr", addr, "store", storeDesc)
	printBanner(stdout, public, storeDesc, tokenPath, generated)
	listenersTLS.banner(stdout, cfg)

	// Every part of the process is a component of one lifecycle
	// (lifecycle.go): a failure of one, or SIGTERM, stops them all, in
	// this order, within --shutdown-timeout.
	lc := newLifecycle(log, "", cfg.ShutdownTimeout, func(stuck []string) error {
		return fmt.Errorf("shutdown: %s still busy after --shutdown-timeout %s; cut off", strings.Join(stuck, ", "), cfg.ShutdownTimeout)
	})
	// The listeners stop at once, concurrently, each releasing its clients
	// that only wait before it drains the requests in flight. The admin
	// API answers the bundle service's long polls first (Drain).
	serving := []*unit{lc.add("admin API", &httpServerComponent{srv: srv, ln: tlsServer.http(ln), drain: bundleService.Drain, deadline: lc.deadline})}
	if xds != nil {
		fmt.Fprintf(stdout, "  xDS       : %s (ADS gRPC; Envoys reach their authorizer at %s)\n", xds.ln.Addr(), cfg.AuthorizerAddress)
		// The snapshots stop first, which ends every xDS stream; then the
		// gRPC server stops gracefully.
		snapshots := lc.add("xDS snapshots", xds.server)
		serving = append(serving, snapshots,
			lc.add("xDS", &grpcServerComponent{srv: xds.grpc, ln: xds.ln, deadline: lc.deadline}, snapshots))
	}
	// The in-process authorizer decides with the bundles straight from the
	// compiler, for every gateway (chosen by Envoy's context extensions).
	var authz *inProcessAuthorizer
	if cfg.AuthzAddr != "" {
		if authz, err = listenInProcessAuthorizer(cfg, st, mgr, reg, listenersTLS.authz, log, stdout); err != nil {
			return err
		}
		listeners = append(listeners, authz.ln)
		defer authz.activator.Close()
		inProcess.engines = authz.activator.Engines // before anything is served
		// Its health watches end, the checks in flight finish; then the
		// decision logs, the last check's included, go to the store.
		checks := lc.add("ext_authz", &grpcServerComponent{srv: authz.grpc, ln: authz.ln, drain: authz.drain.drain, deadline: lc.deadline})
		serving = append(serving, checks,
			lc.add("decision logs", &decisionLogComponent{logs: authz.logs, deadline: lc.deadline}, checks))
	}
	if cfg.MetricsAddr != "" {
		metrics, err := listenMetrics(cfg.MetricsAddr, api.MetricsHandler(), listenersTLS.metrics, log, stdout, lc.deadline)
		if err != nil {
			return err
		}
		listeners = append(listeners, metrics.ln)
		serving = append(serving, lc.add("metrics", metrics))
	}
	// The background work stops once every listener has: the bundle builds
	// in flight and the change feed followers.
	lc.add("bundle manager", mgr, serving...)
	// Expired runtime state (single-use entries with a TTL) is deleted in
	// the background; reads never see it once expired.
	lc.add("runtime state sweeper", &store.StateSweeper{Runtime: st, Logger: log.With("component", "state-sweeper")}, serving...)
	// Expired token revocations and keys past their retention leave the
	// configuration (and so the bundles).
	lc.add("authorization server janitor", &janitor.Janitor{Store: st, Keys: serverKeys, Logger: log.With("component", "oauth-janitor")}, serving...)
	// Revoked gateway credentials end their xDS streams and leave the
	// bundle service's cache of recently verified credentials.
	lc.add("gateway credential revocations", componentFunc(func(ctx context.Context) error {
		return creds.FollowRevocations(ctx, 0, func(ctx context.Context) {
			if xds != nil {
				xds.server.Reverify(ctx)
			}
		})
	}), serving...)
	if authz != nil {
		lc.add("authorizer health", healthWatch(authz.server), serving...)
		lc.add("in-process bundles", authz.feed, serving...)
	}
	running = true
	return lc.run(ctx) // and then the store is closed
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

// inProcessAuthorizer is the ext_authz service of gatehouse serve, fed
// by the bundle manager (localbundles.go).
type inProcessAuthorizer struct {
	drain     *streamDrainer
	grpc      *grpc.Server
	ln        net.Listener
	server    *gateway.Server
	logs      *gateway.DecisionLogger
	activator *gateway.Activator
	feed      *localBundles
}

func listenInProcessAuthorizer(cfg serveConfig, st store.Store, mgr *bundles.Manager,
	reg *prometheus.Registry, tlsServer *serverTLS, log *slog.Logger, stdout io.Writer) (*inProcessAuthorizer, error) {
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
	override, err := decisionLogOverride(cfg.DecisionLogs)
	if err != nil {
		return nil, err
	}
	engines := gateway.NewEngines(defaultGateway)
	activator := &gateway.Activator{Engines: engines, Metrics: metrics, Tokens: tokenFactory(cfg.AllowPrivateJWKS, log, reg, defaultTokenCache)}
	ln, err := listen("--authz-addr", cfg.AuthzAddr)
	if err != nil {
		return nil, err
	}
	logs := gateway.NewDecisionLogger(gateway.DecisionLogOptions{Sink: storeLogSink{Store: st}, Metrics: metrics,
		Logger: log.With("component", "decision-logs"), Mode: override})
	logDecisionLogOverride(log, override)
	authzLog := log.With("component", "authorizer")
	srv := gateway.NewServer(gateway.ServerOptions{Engines: engines, Logs: logs, Metrics: metrics, Logger: authzLog,
		ClientCertificates: tlsServer.extAuthzCertificates()})
	drain := newStreamDrainer()
	tlsServer.warnPlaintext(log, "ext_authz", ln)
	gs := grpc.NewServer(append(append(gateway.GRPCServerOptions(gateway.DefaultStreamWorkers), tlsServer.grpc()...), drain.option())...)
	srv.Register(gs)
	log.Info("ext_authz listening", "addr", ln.Addr().String(), "tls", tlsServer != nil)
	fmt.Fprintf(stdout, "  ext_authz : %s (gRPC, in-process, all gateways)\n", ln.Addr())
	return &inProcessAuthorizer{drain: drain, grpc: gs, ln: ln, server: srv, logs: logs, activator: activator,
		feed: &localBundles{bundles: mgr, activator: activator, log: authzLog}}, nil
}

// xdsServer is the ADS server of serve and control-plane. Every stream
// must carry a credential of the gateway whose node id it uses.
type xdsServer struct {
	server *envoy.Server
	grpc   *grpc.Server
	ln     net.Listener
	public string
}

func listenXDS(cfg serveConfig, creds *gatewaycred.Verifier, mgr *bundles.Manager, lt *serveTLS, reg prometheus.Registerer, log *slog.Logger) (*xdsServer, error) {
	authorizerTLS, err := cfg.authorizerTLS()
	if err != nil {
		return nil, err
	}
	tlsServer := lt.xds
	// The in-process ext_authz is what Envoys reach at the default
	// --authorizer-address: their cluster must speak its TLS, or every
	// check fails (and is denied).
	if cfg.AuthzAddr != "" && lt.authz != nil {
		switch {
		case authorizerTLS == nil:
			log.Warn("the in-process ext_authz serves TLS but the Envoys configured over xDS call --authorizer-address in plaintext: if that is this process, every check fails (denied); give --authorizer-tls",
				"authorizer_address", cfg.AuthorizerAddress)
		case lt.authz.clientAuth == tlsfiles.ClientAuthRequire && authorizerTLS.CertFile == "":
			log.Warn("the in-process ext_authz requires client certificates but the Envoys configured over xDS present none: if --authorizer-address is this process, every check fails (denied); give --authorizer-client-cert-file and --authorizer-client-key-file",
				"authorizer_address", cfg.AuthorizerAddress)
		}
	}
	srv, err := envoy.New(envoy.Options{Bundles: mgr, AuthorizerAddress: cfg.AuthorizerAddress, Logger: log.With("component", "xds"),
		Credentials: creds, ClientCertificates: lt.peers.check, AuthorizerTLS: authorizerTLS})
	if err != nil {
		return nil, err
	}
	if err := srv.RegisterMetrics(reg); err != nil {
		return nil, err
	}
	ln, err := listen("--xds-addr", cfg.XDSAddr)
	if err != nil {
		return nil, err
	}
	// Options of the gRPC server (TLS, limits) go to NewGRPCServer, after
	// the xDS server's authenticating interceptors.
	tlsServer.warnPlaintext(log, "xDS", ln)
	gs := srv.NewGRPCServer(tlsServer.grpc()...)
	public := cfg.XDSPublicAddr
	if public == "" {
		public = ln.Addr().String()
	}
	log.Info("xDS listening", "addr", ln.Addr().String(), "public", public, "authorizer", cfg.AuthorizerAddress)
	return &xdsServer{server: srv, grpc: gs, ln: ln, public: public}, nil
}

// serveTLS is the TLS of each listener of serve and control-plane (nil:
// plaintext) and how gateways' client certificates are checked.
type serveTLS struct {
	http, xds, authz, metrics *serverTLS
	peers                     gatewayPeers
}

// newServeTLS reads the TLS flags: --tls-cert-file for every listener,
// the per-listener overrides, and --client-auth on the listeners whose
// peers are gateways (xDS and ext_authz as asked; the admin listener, which
// the bundle service shares with people, asks for a certificate and the
// bundle routes require it).
func newServeTLS(cfg serveConfig, log *slog.Logger) (*serveTLS, error) {
	def, err := newServerTLS(cfg.TLSCertFile, cfg.TLSKeyFile, log)
	if err != nil {
		return nil, err
	}
	t := &serveTLS{http: def}
	if t.xds, err = listenerTLS(def, "xds", cfg.XDSTLSCertFile, cfg.XDSTLSKeyFile, log); err != nil {
		return nil, err
	}
	if t.authz, err = listenerTLS(def, "authz", cfg.AuthzTLSCertFile, cfg.AuthzTLSKeyFile, log); err != nil {
		return nil, err
	}
	if t.metrics, err = listenerTLS(def, "metrics", cfg.MetricsTLSCertFile, cfg.MetricsTLSKeyFile, log); err != nil {
		return nil, err
	}
	if t.peers, err = newGatewayPeers(cfg.ClientAuth, cfg.ClientCAFile); err != nil {
		return nil, err
	}
	if t.http, err = t.peers.listener(t.http, cfg.ClientCAFile, "admin API and bundle service", true); err != nil {
		return nil, err
	}
	if cfg.XDSAddr != "" {
		if t.xds, err = t.peers.listener(t.xds, cfg.ClientCAFile, "xDS", false); err != nil {
			return nil, err
		}
	}
	if cfg.AuthzAddr != "" {
		if t.authz, err = t.peers.listener(t.authz, cfg.ClientCAFile, "ext_authz", false); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// banner prints the listeners' TLS.
func (t *serveTLS) banner(w io.Writer, cfg serveConfig) {
	if t.http == nil && t.xds == nil && t.authz == nil && t.metrics == nil {
		fmt.Fprintf(w, "  TLS       : off — plaintext listeners (fine on loopback; see docs/operations.md, \"TLS\")\n")
		return
	}
	// The admin listener only asks for certificates; the bundle routes
	// apply the mode.
	http := "admin API and bundles " + t.http.describe()
	if t.peers.auth != tlsfiles.ClientAuthOff {
		http = "admin API and bundles TLS, bundle service client certificates " + map[tlsfiles.ClientAuth]string{
			tlsfiles.ClientAuthOptional: "optional", tlsfiles.ClientAuthRequire: "required"}[t.peers.auth]
	}
	parts := []string{http}
	if cfg.XDSAddr != "" {
		parts = append(parts, "xDS "+t.xds.describe())
	}
	if cfg.AuthzAddr != "" {
		parts = append(parts, "ext_authz "+t.authz.describe())
	}
	if cfg.MetricsAddr != "" {
		parts = append(parts, "metrics "+t.metrics.describe())
	}
	fmt.Fprintf(w, "  TLS       : %s (certificates reloaded when they change)\n", strings.Join(parts, "; "))
}

// authorizerTLS is the TLS of Envoy's authorizer cluster (nil: plaintext).
func (cfg serveConfig) authorizerTLS() (*envoy.TLSClient, error) {
	if !cfg.AuthorizerTLS {
		if cfg.AuthorizerCAFile != "" || cfg.AuthorizerServerName != "" || cfg.AuthorizerClientCertFile != "" || cfg.AuthorizerClientKeyFile != "" {
			return nil, errors.New("--authorizer-ca-file, --authorizer-server-name and --authorizer-client-cert-file/-key-file need --authorizer-tls")
		}
		return nil, nil
	}
	return &envoy.TLSClient{CAFile: cfg.AuthorizerCAFile, ServerName: cfg.AuthorizerServerName,
		CertFile: cfg.AuthorizerClientCertFile, KeyFile: cfg.AuthorizerClientKeyFile}, nil
}

// packageCAReader returns what the admin API puts in gateway packages as
// the control plane's CA: --package-ca-file as it is on disk at each
// download (checked now; nil without the flag).
func packageCAReader(file string) (func() (string, error), error) {
	if file == "" {
		return nil, nil
	}
	read := func() (string, error) {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("--package-ca-file: %w", err)
		}
		// As strict as the generated configurations that carry it inline:
		// certificates only, so a download never fails after minting.
		if err := envoy.CheckPEMCertificates(string(b)); err != nil {
			return "", fmt.Errorf("--package-ca-file %s: %w", file, err)
		}
		return string(b), nil
	}
	if _, err := read(); err != nil {
		return nil, err
	}
	return read, nil
}

// inProcessStatus is the in-process authorizer's view of a gateway, for
// its status (admin.Options.InProcessAuthorizer).
type inProcessStatus struct{ engines *gateway.Engines }

// inProcessIssuer is a token issuer whose keys the in-process authorizer
// cannot fetch.
type inProcessIssuer struct {
	IssuerID string     `json:"issuer_id"`
	Error    string     `json:"error"`
	Since    *time.Time `json:"since,omitempty"`
	HasKeys  bool       `json:"has_keys"`
}

func (s *inProcessStatus) GatewayStatus(tenantID, gatewayID string) any {
	st := struct {
		ActiveRevision string            `json:"active_revision"`
		TokenIssuers   []inProcessIssuer `json:"token_issuers,omitempty"`
	}{}
	if s.engines == nil {
		return nil
	}
	e := s.engines.Get(tenantID, gatewayID)
	if e == nil {
		return st
	}
	st.ActiveRevision = e.Revision
	for _, p := range e.KeyProblems() {
		is := inProcessIssuer{IssuerID: p.IssuerID, Error: p.Error, HasKeys: p.HasKeys}
		if !p.Since.IsZero() {
			since := p.Since
			is.Since = &since
		}
		st.TokenIssuers = append(st.TokenIssuers, is)
	}
	return st
}
