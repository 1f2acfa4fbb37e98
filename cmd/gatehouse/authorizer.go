package main

import (
	"archive/zip"
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	yaml "go.yaml.in/yaml/v3"
	"google.golang.org/grpc"

	"github.com/gatehouse-dev/gatehouse/gateway"
	"github.com/gatehouse-dev/gatehouse/gateway/token"
	"github.com/gatehouse-dev/gatehouse/internal/tlsfiles"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/policies"
)

// authorizerConfig is everything `gatehouse authorizer` can be told, by
// flags, environment or a gatehouse-authorizer.yaml (--config, or the one
// in a gateway package): the package's settings (model.AuthorizerConfig)
// and the authorizer's own.
type authorizerConfig struct {
	model.AuthorizerConfig `yaml:",inline"`

	PublicKeyFile string `yaml:"public_key_file"`
	ProxyAddr     string `yaml:"proxy_addr"`
	// ProxyDenyBody gives the proxy's denials a JSON body with the
	// decision's reason (a *bool in the file: absent keeps the flag's).
	ProxyDenyBody bool `yaml:"-"`
	// ProxyDenyBodyFile is proxy_deny_body of gatehouse-authorizer.yaml.
	ProxyDenyBodyFile *bool         `yaml:"proxy_deny_body"`
	CacheDir          string        `yaml:"cache_dir"`
	LongPoll          time.Duration `yaml:"long_poll"`
	LogLevel          string        `yaml:"log_level"`
	MaskHeaders       []string      `yaml:"mask_headers"`
	MaskQueryParams   []string      `yaml:"mask_query_params"`
	AllowPrivateJWKS  bool          `yaml:"allow_private_jwks"`
	// TLSCertFile and TLSKeyFile serve the authorizer's listeners over TLS;
	// ControlPlaneCAFile is the CA bundle the control plane's certificate
	// is verified against (empty: the system's).
	TLSCertFile        string `yaml:"tls_cert_file"`
	TLSKeyFile         string `yaml:"tls_key_file"`
	ControlPlaneCAFile string `yaml:"control_plane_ca_file"`
	// AuthzTLSCertFile/KeyFile and ProxyTLSCertFile/KeyFile are the
	// ext_authz and proxy listeners' own certificates, instead of
	// TLSCertFile (the proxy faces clients, ext_authz only Envoy).
	AuthzTLSCertFile string `yaml:"authz_tls_cert_file"`
	AuthzTLSKeyFile  string `yaml:"authz_tls_key_file"`
	ProxyTLSCertFile string `yaml:"proxy_tls_cert_file"`
	ProxyTLSKeyFile  string `yaml:"proxy_tls_key_file"`
	// ClientCAFile and ClientAuth verify the client certificates of
	// ext_authz callers (Envoy): off, optional or require.
	ClientCAFile string `yaml:"client_ca_file"`
	ClientAuth   string `yaml:"client_auth"`
	// Pprof serves Go's profiles (net/http/pprof) under /debug/pprof/ on
	// the health and metrics address.
	Pprof bool `yaml:"pprof"`
	// TokenCacheEntries and TokenCacheBytes bound the verified-token cache
	// (0 turns it off).
	TokenCacheEntries int   `yaml:"token_cache_entries"`
	TokenCacheBytes   int64 `yaml:"token_cache_bytes"`
	// GCPercent is Go's GOGC for the authorizer (0: left as the runtime
	// has it).
	GCPercent int `yaml:"gc_percent"`
	// StreamWorkers is the number of ext_authz goroutines kept to serve
	// checks (gateway.GRPCServerOptions).
	StreamWorkers int `yaml:"stream_workers"`
	// DecisionLogs, when set, is the decision log mode of the gateway
	// (on, off, denied or sample:N; true and false are on and off),
	// overriding the gateway's decision_logs; empty takes the gateway's
	// from its bundle.
	DecisionLogs string `yaml:"decision_logs"`
	// DecisionLogBufferBytes bounds the decision log buffer's memory.
	DecisionLogBufferBytes int64 `yaml:"decision_log_buffer_bytes"`
	// DecisionLogSpill keeps what does not fit (and what is undelivered at
	// shutdown) under <cache-dir>/decision-logs, within
	// DecisionLogSpillBytes.
	DecisionLogSpill      bool  `yaml:"decision_log_spill"`
	DecisionLogSpillBytes int64 `yaml:"decision_log_spill_bytes"`
	// DecisionLogUploads is how many batches are uploaded at once.
	DecisionLogUploads int    `yaml:"decision_log_uploads"`
	ConfigFile         string `yaml:"-"`
	Package            string `yaml:"-"`
}

// defaultGCPercent is the authorizer's default GOGC. Checks allocate
// ~20 KB each and the live heap is small (~12 MiB at 10,000 APIs), so at
// Go's 100 the collector ran every few hundred checks: measured with
// bench-authz (64 in flight, one core), 400 cut the CPU per check by a
// quarter, for a heap of up to 5× the live one between collections.
const defaultGCPercent = 400

var authorizerEnv = []envFlag{
	{"control-plane-url", model.EnvControlPlaneURL},
	{"tenant", model.EnvTenant},
	{"gateway", model.EnvGateway},
	{"credential", model.EnvGatewayCredential},
	{"key-id", model.EnvBundleKeyID},
	{"public-key-file", model.EnvBundlePublicKeyFile},
	{"authz-addr", model.EnvAuthzAddr},
	{"proxy-addr", "GATEHOUSE_PROXY_ADDR"},
	{"proxy-deny-body", "GATEHOUSE_PROXY_DENY_BODY"},
	{"http-addr", model.EnvAuthorizerHTTPAddr},
	{"cache-dir", "GATEHOUSE_CACHE_DIR"},
	{"long-poll", "GATEHOUSE_LONG_POLL"},
	{"log-level", "GATEHOUSE_LOG_LEVEL"},
	{"config", "GATEHOUSE_AUTHORIZER_CONFIG"},
	{"package", "GATEHOUSE_GATEWAY_PACKAGE"},
	{"jwks-allow-private-urls", "GATEHOUSE_JWKS_ALLOW_PRIVATE_URLS"},
	{"decision-logs", "GATEHOUSE_DECISION_LOGS"},
	{"decision-log-buffer-bytes", "GATEHOUSE_DECISION_LOG_BUFFER_BYTES"},
	{"decision-log-spill", "GATEHOUSE_DECISION_LOG_SPILL"},
	{"decision-log-spill-bytes", "GATEHOUSE_DECISION_LOG_SPILL_BYTES"},
	{"decision-log-uploads", "GATEHOUSE_DECISION_LOG_UPLOADS"},
	{"stream-workers", "GATEHOUSE_STREAM_WORKERS"},
	{"gc-percent", "GATEHOUSE_GC_PERCENT"},
	{"token-cache-entries", "GATEHOUSE_TOKEN_CACHE_ENTRIES"},
	{"token-cache-bytes", "GATEHOUSE_TOKEN_CACHE_BYTES"},
	{"pprof", "GATEHOUSE_PPROF"},
	{"tls-cert-file", "GATEHOUSE_TLS_CERT_FILE"},
	{"tls-key-file", "GATEHOUSE_TLS_KEY_FILE"},
	{"control-plane-ca-file", model.EnvControlPlaneCAFile},
	{"control-plane-client-cert-file", model.EnvControlPlaneClientCertFile},
	{"control-plane-client-key-file", model.EnvControlPlaneClientKeyFile},
	{"authz-tls-cert-file", "GATEHOUSE_AUTHZ_TLS_CERT_FILE"},
	{"authz-tls-key-file", "GATEHOUSE_AUTHZ_TLS_KEY_FILE"},
	{"proxy-tls-cert-file", "GATEHOUSE_PROXY_TLS_CERT_FILE"},
	{"proxy-tls-key-file", "GATEHOUSE_PROXY_TLS_KEY_FILE"},
	{"client-ca-file", "GATEHOUSE_CLIENT_CA_FILE"},
	{"client-auth", "GATEHOUSE_CLIENT_AUTH"},
}

func defaultCacheDir() string {
	if dir, err := os.UserCacheDir(); err == nil {
		return filepath.Join(dir, "gatehouse", "authorizer")
	}
	return filepath.Join(os.TempDir(), "gatehouse-authorizer-cache")
}

func newAuthorizerCommand(stdout, stderr io.Writer) *cobra.Command {
	var cfg authorizerConfig
	cmd := &cobra.Command{
		Use:   "authorizer",
		Short: "Run the Envoy ext_authz authorizer for one gateway",
		Long: `Run the authorizer for one gateway: an Envoy ext_authz gRPC service (and,
with --proxy-addr, a reverse proxy for users without Envoy). It follows the
gateway's bundle from the control plane's bundle service with the gateway's
credential, verifies every bundle with the tenant's public key, keeps the last
good bundle in --cache-dir, and starts from that cache when the control plane
is unreachable. With no bundle at all every request is denied.

Settings come from flags, environment variables or --config
gatehouse-authorizer.yaml (flags win over the file).`,
		Args: cobra.NoArgs,
		PreRunE: func(cmd *cobra.Command, args []string) error {
			return bindEnv(cmd.Flags(), authorizerEnv)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := cfg.load(cmd); err != nil {
				return err
			}
			return runAuthorizer(cmd.Context(), cfg, stdout, stderr)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&cfg.ControlPlaneURL, "control-plane-url", "", "control plane base URL, e.g. http://127.0.0.1:8080")
	fs.StringVar(&cfg.Tenant, "tenant", "", "tenant id")
	fs.StringVar(&cfg.Gateway, "gateway", "", "gateway id")
	fs.StringVar(&cfg.Credential, "credential", "", "gateway credential (ghg_…); prefer the environment variable")
	fs.StringVar(&cfg.KeyID, "key-id", "", "bundle signing key id")
	fs.StringVar(&cfg.PublicKeyFile, "public-key-file", "", "PEM file of the tenant's bundle signing public key")
	fs.StringVar(&cfg.AuthzAddr, "authz-addr", "127.0.0.1:9191", "ext_authz gRPC listen address")
	fs.StringVar(&cfg.ProxyAddr, "proxy-addr", "", "reverse proxy listen address (off when empty)")
	fs.BoolVar(&cfg.ProxyDenyBody, "proxy-deny-body", true, "the proxy's denials carry a small JSON body with the decision's reason (a policy's own body is sent as it is); false: an empty body")
	fs.StringVar(&cfg.HTTPAddr, "http-addr", "127.0.0.1:9192", "health and metrics listen address (/healthz, /readyz, /metrics)")
	fs.StringVar(&cfg.CacheDir, "cache-dir", defaultCacheDir(), "directory of the last good bundle")
	fs.DurationVar(&cfg.LongPoll, "long-poll", 30*time.Second, "long-polling wait asked of the bundle service")
	fs.StringVar(&cfg.LogLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&cfg.ConfigFile, "config", "", "gatehouse-authorizer.yaml to read settings from")
	fs.StringVar(&cfg.Package, "package", "", "gateway package (zip from GET …/gateways/{gw}/package) to read settings from")
	fs.BoolVar(&cfg.AllowPrivateJWKS, "jwks-allow-private-urls", false, "let token validation fetch JWKS and discovery documents from loopback, private and link-local addresses")
	fs.StringVar(&cfg.DecisionLogs, "decision-logs", "", decisionLogsUsage)
	fs.IntVar(&cfg.TokenCacheEntries, "token-cache-entries", token.DefaultCacheEntries, "verified tokens kept (0 turns the cache off)")
	fs.Int64Var(&cfg.TokenCacheBytes, "token-cache-bytes", token.DefaultCacheBytes, "memory for verified tokens, by the documented estimate (0 turns the cache off)")
	fs.IntVar(&cfg.GCPercent, "gc-percent", defaultGCPercent, "the garbage collector's target (Go's GOGC): the heap may grow to (1 + n/100) × the live heap between collections; 0 keeps Go's setting (GOGC, when set and this flag is not, wins)")
	fs.IntVar(&cfg.StreamWorkers, "stream-workers", gateway.DefaultStreamWorkers, "ext_authz checks served by long-lived goroutines whose stacks are kept (more in flight start goroutines of their own; 0: a goroutine per check)")
	fs.StringVar(&cfg.TLSCertFile, "tls-cert-file", "", "PEM certificate (chain) of the authorizer's listeners (ext_authz, proxy, health and metrics); reloaded when the file changes; empty: plaintext")
	fs.StringVar(&cfg.TLSKeyFile, "tls-key-file", "", "PEM private key of --tls-cert-file")
	fs.StringVar(&cfg.ClientCAFile, "client-ca-file", "", "PEM CA bundle ext_authz callers' client certificates are verified against (with --client-auth)")
	fs.StringVar(&cfg.ClientAuth, "client-auth", "off", "client certificates on ext_authz: off, optional (verified when given) or require (mutual TLS); needs --tls-cert-file")
	fs.StringVar(&cfg.ControlPlaneCAFile, "control-plane-ca-file", "", "PEM CA bundle the https control plane's certificate is verified against (default: the package's control-plane-ca.pem, else the system's roots)")
	fs.StringVar(&cfg.ControlPlaneClientCertFile, "control-plane-client-cert-file", "", "PEM client certificate (chain) presented to the https control plane (mutual TLS); reloaded when it changes")
	fs.StringVar(&cfg.ControlPlaneClientKeyFile, "control-plane-client-key-file", "", "PEM private key of --control-plane-client-cert-file")
	fs.StringVar(&cfg.AuthzTLSCertFile, "authz-tls-cert-file", "", "PEM certificate (chain) of the ext_authz listener, instead of --tls-cert-file")
	fs.StringVar(&cfg.AuthzTLSKeyFile, "authz-tls-key-file", "", "PEM private key of --authz-tls-cert-file")
	fs.StringVar(&cfg.ProxyTLSCertFile, "proxy-tls-cert-file", "", "PEM certificate (chain) of the proxy listener, instead of --tls-cert-file")
	fs.StringVar(&cfg.ProxyTLSKeyFile, "proxy-tls-key-file", "", "PEM private key of --proxy-tls-cert-file")
	fs.BoolVar(&cfg.Pprof, "pprof", false, "serve Go's CPU, heap and goroutine profiles under /debug/pprof/ on --http-addr (keep that address private)")
	fs.Int64Var(&cfg.DecisionLogBufferBytes, "decision-log-buffer-bytes", gateway.DefaultDecisionLogBufferBytes,
		"memory for decision log events waiting for upload (compressed batches); past it events are spilled or dropped and counted")
	fs.BoolVar(&cfg.DecisionLogSpill, "decision-log-spill", false, "keep decision log batches that do not fit in memory, and those undelivered at shutdown, under <cache-dir>/decision-logs")
	fs.Int64Var(&cfg.DecisionLogSpillBytes, "decision-log-spill-bytes", gateway.DefaultDecisionLogSpillBytes, "disk for spilled decision log batches")
	fs.IntVar(&cfg.DecisionLogUploads, "decision-log-uploads", 4, "decision log batches uploaded at once")
	annotateEnv(fs, authorizerEnv)
	return cmd
}

// load merges the config file under the flags that were set.
func (c *authorizerConfig) load(cmd *cobra.Command) error {
	if c.ConfigFile != "" && c.Package != "" {
		return errors.New("give --config or --package, not both")
	}
	if c.ConfigFile != "" || c.Package != "" {
		raw, err := c.readConfig()
		if err != nil {
			return err
		}
		var file authorizerConfig
		dec := yaml.NewDecoder(strings.NewReader(string(raw)))
		dec.KnownFields(true)
		if err := dec.Decode(&file); err != nil {
			return fmt.Errorf("%s: %w", cmp.Or(c.ConfigFile, c.Package), err)
		}
		fs := cmd.Flags()
		set := func(flag string, dst *string, v string) { fromFile(fs, flag, dst, v) }
		set("control-plane-url", &c.ControlPlaneURL, file.ControlPlaneURL)
		set("tenant", &c.Tenant, file.Tenant)
		set("gateway", &c.Gateway, file.Gateway)
		set("credential", &c.Credential, file.Credential)
		set("key-id", &c.KeyID, file.KeyID)
		set("public-key-file", &c.PublicKeyFile, file.PublicKeyFile)
		set("authz-addr", &c.AuthzAddr, file.AuthzAddr)
		set("proxy-addr", &c.ProxyAddr, file.ProxyAddr)
		if !fs.Changed("proxy-deny-body") && file.ProxyDenyBodyFile != nil {
			c.ProxyDenyBody = *file.ProxyDenyBodyFile
		}
		set("http-addr", &c.HTTPAddr, file.HTTPAddr)
		set("cache-dir", &c.CacheDir, file.CacheDir)
		set("log-level", &c.LogLevel, file.LogLevel)
		if !fs.Changed("long-poll") && file.LongPoll > 0 {
			c.LongPoll = file.LongPoll
		}
		if file.PublicKey != "" {
			c.PublicKey = file.PublicKey
		}
		if len(file.MaskHeaders) > 0 {
			c.MaskHeaders = file.MaskHeaders
		}
		if len(file.MaskQueryParams) > 0 {
			c.MaskQueryParams = file.MaskQueryParams
		}
		c.AllowPrivateJWKS = c.AllowPrivateJWKS || file.AllowPrivateJWKS
		fromFile(fs, "decision-logs", &c.DecisionLogs, file.DecisionLogs)
		fromFile(fs, "decision-log-buffer-bytes", &c.DecisionLogBufferBytes, file.DecisionLogBufferBytes)
		c.DecisionLogSpill = c.DecisionLogSpill || file.DecisionLogSpill
		fromFile(fs, "decision-log-spill-bytes", &c.DecisionLogSpillBytes, file.DecisionLogSpillBytes)
		fromFile(fs, "decision-log-uploads", &c.DecisionLogUploads, file.DecisionLogUploads)
		c.Pprof = c.Pprof || file.Pprof
		set("tls-cert-file", &c.TLSCertFile, file.TLSCertFile)
		set("tls-key-file", &c.TLSKeyFile, file.TLSKeyFile)
		set("control-plane-ca-file", &c.ControlPlaneCAFile, file.ControlPlaneCAFile)
		set("control-plane-client-cert-file", &c.ControlPlaneClientCertFile, file.ControlPlaneClientCertFile)
		set("control-plane-client-key-file", &c.ControlPlaneClientKeyFile, file.ControlPlaneClientKeyFile)
		set("authz-tls-cert-file", &c.AuthzTLSCertFile, file.AuthzTLSCertFile)
		set("authz-tls-key-file", &c.AuthzTLSKeyFile, file.AuthzTLSKeyFile)
		set("proxy-tls-cert-file", &c.ProxyTLSCertFile, file.ProxyTLSCertFile)
		set("proxy-tls-key-file", &c.ProxyTLSKeyFile, file.ProxyTLSKeyFile)
		if file.ControlPlaneCA != "" {
			c.ControlPlaneCA = file.ControlPlaneCA
		}
		set("client-ca-file", &c.ClientCAFile, file.ClientCAFile)
		set("client-auth", &c.ClientAuth, file.ClientAuth)
		fromFile(fs, "token-cache-entries", &c.TokenCacheEntries, file.TokenCacheEntries)
		fromFile(fs, "token-cache-bytes", &c.TokenCacheBytes, file.TokenCacheBytes)
		fromFile(fs, "gc-percent", &c.GCPercent, file.GCPercent)
		fromFile(fs, "stream-workers", &c.StreamWorkers, file.StreamWorkers)
	}
	if !cmd.Flags().Changed("gc-percent") && os.Getenv("GOGC") != "" {
		c.GCPercent = 0
	}
	if c.TokenCacheEntries < 0 || c.TokenCacheBytes < 0 {
		return fmt.Errorf("--token-cache-entries, --token-cache-bytes: %d, %d: negative", c.TokenCacheEntries, c.TokenCacheBytes)
	}
	if c.GCPercent < 0 {
		return fmt.Errorf("--gc-percent: %d is negative", c.GCPercent)
	}
	if c.StreamWorkers < 0 {
		return fmt.Errorf("--stream-workers: %d is negative", c.StreamWorkers)
	}
	if _, err := decisionLogOverride(c.DecisionLogs); err != nil {
		return err
	}
	switch {
	case c.DecisionLogBufferBytes < 1<<20:
		return fmt.Errorf("--decision-log-buffer-bytes must be at least 1048576 (1 MiB), not %d", c.DecisionLogBufferBytes)
	case c.DecisionLogSpillBytes < 1<<20:
		return fmt.Errorf("--decision-log-spill-bytes must be at least 1048576 (1 MiB), not %d", c.DecisionLogSpillBytes)
	case c.DecisionLogUploads < 1 || c.DecisionLogUploads > 64:
		return fmt.Errorf("--decision-log-uploads must be between 1 and 64, not %d", c.DecisionLogUploads)
	case c.DecisionLogSpill && c.CacheDir == "":
		return errors.New("--decision-log-spill needs a --cache-dir")
	}
	if c.PublicKey == "" && c.PublicKeyFile != "" {
		raw, err := os.ReadFile(c.PublicKeyFile)
		if err != nil {
			return fmt.Errorf("--public-key-file: %w", err)
		}
		c.PublicKey = string(raw)
	}
	var missing []string
	for _, f := range []struct{ name, v string }{{"--control-plane-url", c.ControlPlaneURL}, {"--tenant", c.Tenant},
		{"--gateway", c.Gateway}, {"--credential (GATEHOUSE_GATEWAY_CREDENTIAL)", c.Credential}, {"--key-id", c.KeyID},
		{"--public-key-file", c.PublicKey}} {
		if f.v == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing settings: %s (give them as flags or environment variables, in --config gatehouse-authorizer.yaml, or with --package gateway-package.zip)", strings.Join(missing, ", "))
	}
	return nil
}

func runAuthorizer(ctx context.Context, cfg authorizerConfig, stdout, stderr io.Writer) error {
	log, err := newLogger(stderr, cfg.LogLevel)
	if err != nil {
		return err
	}
	override, err := decisionLogOverride(cfg.DecisionLogs)
	if err != nil {
		return err
	}
	if cfg.GCPercent > 0 {
		debug.SetGCPercent(cfg.GCPercent)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics, err := gateway.NewMetrics(reg)
	if err != nil {
		return err
	}
	instance := uuid.NewString()
	bundleURL := strings.TrimRight(cfg.ControlPlaneURL, "/") + "/api/system/" + cfg.Tenant + "/gateways/" + cfg.Gateway + "/opa"
	cpTLS, err := controlPlaneTLS(cfg, log)
	if err != nil {
		return err
	}
	tlsServer, err := newServerTLS(cfg.TLSCertFile, cfg.TLSKeyFile, log)
	if err != nil {
		return err
	}
	authzTLS, err := listenerTLS(tlsServer, "authz", cfg.AuthzTLSCertFile, cfg.AuthzTLSKeyFile, log)
	if err != nil {
		return err
	}
	if authzTLS, err = authzTLS.withClientAuth(cfg.ClientCAFile, cfg.ClientAuth); err != nil {
		return err
	}
	proxyTLS, err := listenerTLS(tlsServer, "proxy", cfg.ProxyTLSCertFile, cfg.ProxyTLSKeyFile, log)
	if err != nil {
		return err
	}
	bundleTransport := http.DefaultTransport.(*http.Transport).Clone()
	bundleTransport.TLSClientConfig = cpTLS
	client := &http.Client{Transport: bundleTransport}
	engines := gateway.NewEngines(model.GatewayRef{TenantID: cfg.Tenant, GatewayID: cfg.Gateway})
	activator := &gateway.Activator{Engines: engines, Metrics: metrics, Tokens: tokenFactory(cfg.AllowPrivateJWKS, log, reg,
		tokenCache{entries: cfg.TokenCacheEntries, bytes: cfg.TokenCacheBytes})}
	defer activator.Close()
	// Uploads get connections of their own, kept alive for every
	// concurrent upload.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = cfg.DecisionLogUploads + 1
	tr.TLSClientConfig = cpTLS.Clone()
	spill := ""
	if cfg.DecisionLogSpill {
		spill = filepath.Join(cfg.CacheDir, "decision-logs")
	}
	logs := gateway.NewDecisionLogger(gateway.DecisionLogOptions{
		Sink: &gateway.HTTPLogSink{URL: bundleURL, Credential: cfg.Credential, Client: &http.Client{Transport: tr},
			TenantID: cfg.Tenant, GatewayID: cfg.Gateway}, InstanceID: instance,
		MaskedHeaders: cfg.MaskHeaders, MaskedQueryParameters: cfg.MaskQueryParams, Metrics: metrics, Logger: log.With("component", "decision-logs"),
		BufferBytes: cfg.DecisionLogBufferBytes, Uploads: cfg.DecisionLogUploads, SpillDir: spill, SpillBytes: cfg.DecisionLogSpillBytes,
		Mode: override,
	})
	logDecisionLogOverride(log, override)
	fopts := gateway.FollowerOptions{
		URL: bundleURL, TenantID: cfg.Tenant, GatewayID: cfg.Gateway, Credential: cfg.Credential,
		KeyID: cfg.KeyID, PublicKeyPEM: cfg.PublicKey, CacheDir: cfg.CacheDir, LongPoll: cfg.LongPoll,
		Client: client, Activator: activator, InstanceID: instance, Version: version, Logger: log.With("component", "bundle"),
		DecisionLogs: logs,
	}
	follower, err := gateway.NewFollower(fopts)
	if err != nil {
		logs.Close(context.Background())
		return err
	}
	srv := gateway.NewServer(gateway.ServerOptions{Engines: engines, Logs: logs, Metrics: metrics, Logger: log.With("component", "authorizer"),
		ClientCertificates: authzTLS.extAuthzCertificates()})
	return serveAuthorizer(ctx, log, authorizerRuntime{
		engines: engines, server: srv, logs: logs, registry: reg,
		authzAddr: cfg.AuthzAddr, proxyAddr: cfg.ProxyAddr, proxyDenyBody: cfg.ProxyDenyBody, httpAddr: cfg.HTTPAddr, pprof: cfg.Pprof, streamWorkers: cfg.StreamWorkers,
		tls: tlsServer, authzTLS: authzTLS, proxyTLS: proxyTLS,
		follower: follower, deleted: follower.Deleted,
	}, stdout)
}

// decisionLogsUsage is the --decision-logs flag's help.
const decisionLogsUsage = "decision log mode of every gateway, overriding the gateways' decision_logs: on, off (no event is made), " +
	"denied (only the checks that did not allow the request) or sample:N (one check in N, 1 to 1000000); empty: each gateway's own"

// decisionLogOverride reads --decision-logs: nil when empty (each
// gateway's decision_logs applies), else the mode for every gateway
// ("true" and "false", the values of the flag when it was a boolean, are
// on and off).
func decisionLogOverride(flag string) (*model.DecisionLogMode, error) {
	switch flag {
	case "":
		return nil, nil
	case "true":
		flag = "on"
	case "false":
		flag = "off"
	}
	m, err := model.ParseDecisionLogMode(flag)
	if err != nil {
		return nil, fmt.Errorf("--decision-logs: %w", err)
	}
	return &m, nil
}

// logDecisionLogOverride says at start which decision log mode the flag
// sets, if any.
func logDecisionLogOverride(log *slog.Logger, override *model.DecisionLogMode) {
	switch {
	case override == nil:
	case override.Kind == model.DecisionLogsOff:
		log.Info("decision logs are off for every gateway (--decision-logs=off): no event is made")
	default:
		log.Info("decision log mode set for every gateway (--decision-logs)", "mode", override.String())
	}
}

// authorizerRuntime is what serveAuthorizer runs: the listeners and the
// bundle follower.
type authorizerRuntime struct {
	engines   *gateway.Engines
	server    *gateway.Server
	logs      *gateway.DecisionLogger
	registry  *prometheus.Registry
	authzAddr string
	proxyAddr string
	httpAddr  string
	// proxyDenyBody: see --proxy-deny-body.
	proxyDenyBody bool
	// pprof adds /debug/pprof/ to the health and metrics server.
	pprof         bool
	streamWorkers int
	// tls serves the health listener over TLS (nil: plaintext); authzTLS
	// is ext_authz's, which may verify client certificates, proxyTLS the
	// proxy's.
	tls, authzTLS, proxyTLS *serverTLS
	follower                component
	// deleted, when set, says the control plane deleted the gateway.
	deleted func() bool
}

// serveAuthorizer serves ext_authz (and the proxy and health endpoints)
// until ctx ends or one of them fails, then drains and flushes the
// decision logs, within authorizerShutdownTimeout.
func serveAuthorizer(ctx context.Context, log *slog.Logger, rt authorizerRuntime, stdout io.Writer) error {
	// The servers close their listeners, and the lifecycle the decision
	// logs, once it runs; a start that fails before closes them here.
	var listeners []net.Listener
	running := false
	defer func() {
		if !running {
			for _, l := range listeners {
				l.Close()
			}
			if rt.logs != nil {
				rt.logs.Close(context.Background())
			}
		}
	}()
	grpcLn, err := listen("--authz-addr", rt.authzAddr)
	if err != nil {
		return err
	}
	listeners = append(listeners, grpcLn)
	drain := newStreamDrainer()
	rt.authzTLS.warnPlaintext(log, "ext_authz", grpcLn)
	gs := grpc.NewServer(append(append(gateway.GRPCServerOptions(rt.streamWorkers), rt.authzTLS.grpc()...), drain.option())...)
	rt.server.Register(gs)
	log.Info("ext_authz listening", "addr", grpcLn.Addr().String())
	fmt.Fprintf(stdout, "  ext_authz : %s (gRPC, envoy.service.auth.v3.Authorization)\n", grpcLn.Addr())

	lc := newLifecycle(log, "authorizer ", authorizerShutdownTimeout, func([]string) error {
		return fmt.Errorf("authorizer shutdown: still busy after %s; cut off", authorizerShutdownTimeout)
	})
	// At shutdown the follower's long poll and the health watches end at
	// once; the checks and proxied requests in flight finish, then the
	// decision logs are flushed.
	lc.add("bundle follower", rt.follower)
	lc.add("authorizer health", healthWatch(rt.server))
	deciders := []*unit{lc.add("ext_authz", &grpcServerComponent{srv: gs, ln: grpcLn, drain: drain.drain, deadline: lc.deadline})}
	if rt.httpAddr != "" {
		mux := http.NewServeMux()
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
		mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
			switch {
			case rt.deleted != nil && rt.deleted():
				http.Error(w, "the gateway was deleted on the control plane; every request is denied", http.StatusServiceUnavailable)
			case !rt.engines.Ready():
				http.Error(w, "no policy bundle active", http.StatusServiceUnavailable)
			default:
				io.WriteString(w, "ready\n")
			}
		})
		mux.Handle("/metrics", promhttp.HandlerFor(rt.registry, promhttp.HandlerOpts{}))
		if rt.pprof {
			mux.HandleFunc("/debug/pprof/", pprof.Index)
			mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
			mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
			mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
			mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		}
		ln, err := listen("--http-addr", rt.httpAddr)
		if err != nil {
			return err
		}
		listeners = append(listeners, ln)
		rt.tls.warnPlaintext(log, "health and metrics", ln)
		hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		lc.add("health and metrics", &httpServerComponent{srv: hs, ln: rt.tls.http(ln), deadline: lc.deadline})
		log.Info("authorizer health listening", "addr", ln.Addr().String())
	}
	if rt.proxyAddr != "" {
		ln, err := listen("--proxy-addr", rt.proxyAddr)
		if err != nil {
			return err
		}
		listeners = append(listeners, ln)
		proxy := gateway.NewProxyWithOptions(rt.server, gateway.ProxyOptions{Logger: log.With("component", "proxy"), NoDenyBody: !rt.proxyDenyBody})
		ps := &http.Server{Handler: proxy, ReadHeaderTimeout: 10 * time.Second,
			ErrorLog: slog.NewLogLogger(log.With("component", "proxy").Handler(), slog.LevelWarn)}
		rt.proxyTLS.warnPlaintext(log, "proxy", ln)
		deciders = append(deciders, lc.add("proxy", &httpServerComponent{srv: ps, ln: rt.proxyTLS.http(ln), deadline: lc.deadline}))
		log.Info("reverse proxy listening", "addr", ln.Addr().String())
		fmt.Fprintf(stdout, "  proxy     : %s://%s\n", rt.proxyTLS.scheme(), ln.Addr())
	}
	if rt.logs != nil {
		lc.add("decision logs", &decisionLogComponent{logs: rt.logs, deadline: lc.deadline}, deciders...)
	}
	running = true
	return lc.run(ctx)
}

// authorizerShutdownTimeout bounds an authorizer's shutdown: requests in
// flight and the last decision log upload.
const authorizerShutdownTimeout = 10 * time.Second

// readConfig returns gatehouse-authorizer.yaml, from --config or from the
// gateway package zip.
func (c *authorizerConfig) readConfig() ([]byte, error) {
	if c.ConfigFile != "" {
		raw, err := os.ReadFile(c.ConfigFile)
		if err != nil {
			return nil, fmt.Errorf("--config: %w", err)
		}
		return raw, nil
	}
	zr, err := zip.OpenReader(c.Package)
	if err != nil {
		return nil, fmt.Errorf("--package: %w", err)
	}
	defer zr.Close()
	f, err := zr.Open(model.PackageAuthorizer)
	if err != nil {
		return nil, fmt.Errorf("--package %s: no %s in it: %w", c.Package, model.PackageAuthorizer, err)
	}
	defer f.Close()
	raw, err := io.ReadAll(io.LimitReader(f, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("--package %s: %w", c.Package, err)
	}
	return raw, nil
}

// tokenFactory builds bearer token validators from a bundle's issuers.
func tokenFactory(allowPrivate bool, log *slog.Logger, reg prometheus.Registerer, cache tokenCache) gateway.TokenFactory {
	return func(ctx context.Context, issuers []policies.IssuerData) (gateway.TokenValidator, error) {
		return token.New(token.FromBundle(issuers), token.Options{AllowPrivateNetworks: allowPrivate,
			Logger: log.With("component", "tokens"), Registerer: reg,
			CacheEntries: cache.option(cache.entries), CacheBytes: int64(cache.option(int(cache.bytes)))})
	}
}

// tokenCache is the verified-token cache's bounds from the flags (0 turns
// the cache off).
type tokenCache struct {
	entries int
	bytes   int64
}

// defaultTokenCache is the token package's defaults.
var defaultTokenCache = tokenCache{entries: token.DefaultCacheEntries, bytes: token.DefaultCacheBytes}

// option maps a flag's bound to token.Options (where 0 is the default and
// a negative value turns the cache off).
func (tokenCache) option(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

// controlPlaneTLS is the TLS of the authorizer's calls to the control
// plane: its certificate verified against --control-plane-ca-file, else
// the package's CA, else the system's roots; the gateway's client
// certificate when one is given (reloaded when it changes). A client
// certificate needs an https control plane; a plaintext one reachable
// from other machines is warned about.
func controlPlaneTLS(cfg authorizerConfig, log *slog.Logger) (*tls.Config, error) {
	u, err := url.Parse(cfg.ControlPlaneURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("--control-plane-url %q: want an http:// or https:// URL", cfg.ControlPlaneURL)
	}
	if u.Scheme == "http" {
		if cfg.ControlPlaneClientCertFile != "" || cfg.ControlPlaneClientKeyFile != "" {
			return nil, fmt.Errorf("--control-plane-client-cert-file needs an https:// --control-plane-url, not %s", cfg.ControlPlaneURL)
		}
		if ip, err := netip.ParseAddr(u.Hostname()); (err != nil && u.Hostname() != "localhost") || (err == nil && !ip.IsLoopback()) {
			log.Warn("PLAINTEXT control plane: the gateway credential and bundles cross the network unencrypted; use an https:// --control-plane-url",
				"control_plane_url", cfg.ControlPlaneURL)
		}
	}
	opts := tlsfiles.ClientOptions{CAFile: cfg.ControlPlaneCAFile, CertFile: cfg.ControlPlaneClientCertFile,
		KeyFile: cfg.ControlPlaneClientKeyFile, Logger: log.With("component", "tls")}
	if opts.CAFile == "" {
		opts.CAPEM = cfg.ControlPlaneCA
	}
	c, err := tlsfiles.NewClientConfig(opts)
	if err != nil {
		return nil, fmt.Errorf("control plane TLS (--control-plane-ca-file, --control-plane-client-cert-file): %w", err)
	}
	return c, nil
}

// fromFile sets dst to the config file's v unless the flag was given or v
// is the zero value (not in the file).
func fromFile[T comparable](fs *pflag.FlagSet, flag string, dst *T, v T) {
	var zero T
	if !fs.Changed(flag) && v != zero {
		*dst = v
	}
}
