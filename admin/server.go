// Package admin is the admin REST API (gin): /api/system/… for cross-tenant
// operations, /api/admin/{tid}/… for one tenant's configuration. Every route
// is authenticated, tenant-isolated, audited on write and described by the
// OpenAPI document served at /api/openapi.json.
package admin

import (
	"context"
	"crypto/sha256"
	"errors"
	"log/slog"
	"net/http"
	"runtime"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/gatehouse-dev/gatehouse/bundles"
	"github.com/gatehouse-dev/gatehouse/internal/httpapi"
	"github.com/gatehouse-dev/gatehouse/internal/secretbox"
	"github.com/gatehouse-dev/gatehouse/oauth/keys"
	"github.com/gatehouse-dev/gatehouse/policies"
	"github.com/gatehouse-dev/gatehouse/resource"
	"github.com/gatehouse-dev/gatehouse/store"
)

// Options configures the admin API.
type Options struct {
	Store store.Store
	// BootstrapToken is the system-wide admin token (see BootstrapToken).
	BootstrapToken string
	Logger         *slog.Logger
	// Registry receives the HTTP metrics; /metrics (system-wide token) and
	// MetricsHandler serve its Gatherer.
	// A new registry is made when nil.
	Registry *prometheus.Registry
	// PublicURL is the externally visible base URL, used in tenant URLs.
	PublicURL string
	// Bundles serves gateways their bundles; Keys holds the tenants'
	// bundle signing keys. Both are required for the gateway routes.
	Bundles *bundles.Manager
	Keys    *bundles.KeyStore
	// AllowPrivateImportURLs lets OpenAPI URL imports fetch from loopback,
	// private and link-local addresses (refused by default).
	AllowPrivateImportURLs bool
	// AllowPrivateJWKSURLs lets token issuers name loopback, private and
	// link-local hosts (and plain http to them) in jwks_uri and discovery
	// issuer URLs (refused by default; --jwks-allow-private-urls).
	AllowPrivateJWKSURLs bool
	// AllowPrivateIdPURLs lets identity providers name loopback, private
	// and link-local hosts (and plain http to them) in their issuer and
	// endpoint URLs (refused by default; --idp-allow-private-urls).
	AllowPrivateIdPURLs bool
	// SecretBox seals the secrets the API stores encrypted (identity
	// providers' upstream client secrets); the same box as the OAuth
	// provider's, which opens them. Nil: such secrets are refused.
	SecretBox *secretbox.Box
	// XDS reports the gateways' xDS state, shown as status.xds; nil when
	// no xDS control plane runs in this process.
	XDS XDSStatusSource
	// XDSConfig returns the xDS resources served to a gateway (GET
	// …/gateways/{gw}/envoy-config); nil when no xDS control plane runs
	// in this process.
	XDSConfig XDSConfigSource
	// InProcessAuthorizer reports the in-process authorizer's view of a
	// gateway (its token issuers' key problems), shown as
	// status.in_process_authorizer; nil when none runs in this process.
	InProcessAuthorizer XDSStatusSource
	// XDSPublicAddress is the xDS address gateways are told to use in their
	// packages ("host:port"); empty when no xDS server runs.
	XDSPublicAddress string
	// XDSTLS says the xDS listener serves TLS: the bootstraps in gateway
	// packages then reach it over TLS.
	XDSTLS bool
	// PackageCA returns the CA bundle (PEM) gateway packages carry to
	// verify this control plane's certificates (https and xDS): "" for none
	// (gateways then use their system's roots). Nil is none.
	PackageCA func() (string, error)
	// PolicyTestTimeout bounds one evaluation of the policy test API
	// (default policies.DefaultTestTimeout; --policy-test-timeout).
	PolicyTestTimeout time.Duration
	// Scheme is the kind registry (NewScheme when nil). Give the bundle
	// manager the same one.
	Scheme *resource.Scheme
	// ServerKeys holds the authorization servers' signing keys (GET/POST
	// …/servers/{aid}/keys). Required.
	ServerKeys *keys.Manager
	// Tokens revokes what OAuth clients were issued (the oauth package);
	// nil: deleting a client revokes nothing beyond the client itself.
	Tokens TokenRevoker
	// TokenAuth, when set, authenticates bearer JWTs of the tenants'
	// admin servers and of system/system (oauth/verify.AdminAuth).
	TokenAuth TokenVerifier
	// ServiceAccountTokens issues service accounts' long-lived access
	// tokens (issue_token; the OAuth provider); nil: issue_token is
	// refused.
	ServiceAccountTokens ServiceAccountTokenMinter
	// UserTokens authenticates the tenant users' bearer JWTs on
	// /api/identity (oauth/verify.UserAuth); nil: those routes answer 401.
	UserTokens UserTokenVerifier
	// Mount, when set, registers more routes on the API's engine after
	// its own (gatehouse serve mounts the bundle service this way, which
	// admin does not import): they share the listener, the request id,
	// log, metrics and recover middleware and the 404/405 answers, and
	// Routes lists them.
	Mount func(gin.IRouter)
}

// TokenVerifier authenticates access tokens (JWTs) of Gatehouse's own
// admin servers. VerifyAdminToken returns the token's subject and the
// tenant it acts on ("" for system-wide); accepted is false for a token it
// does not accept (401); err is the server's own failure (a store error).
type TokenVerifier interface {
	VerifyAdminToken(ctx context.Context, raw string) (subject, tenantID string, accepted bool, err error)
}

// TokenRevoker revokes the tokens a client was issued. RevokeClient runs
// inside the transaction that deletes the client (its writes commit with
// the delete): unexpired access tokens are added to the revocation list;
// refresh tokens die with the client.
type TokenRevoker interface {
	RevokeClient(ctx context.Context, tx store.Tx, tenantID, serverID, clientID string) error
}

// XDSStatusSource reports a gateway's xDS state (the envoy package's
// Server). The value is rendered as JSON.
type XDSStatusSource interface {
	GatewayStatus(tenantID, gatewayID string) any
}

// Server is the admin API.
type Server struct {
	store store.Store
	auth  Authenticator
	// serverKeys and tokens: see Options.ServerKeys and Options.Tokens.
	serverKeys *keys.Manager
	tokens     TokenRevoker
	// saTokens and userTokens: see Options.ServiceAccountTokens and
	// Options.UserTokens.
	saTokens   ServiceAccountTokenMinter
	userTokens UserTokenVerifier
	log        *slog.Logger
	registry   *prometheus.Registry
	metrics    *httpapi.Metrics
	public     string
	bundles    *bundles.Manager
	keys       *bundles.KeyStore
	xds        XDSStatusSource
	// xdsConfig: see Options.XDSConfig.
	xdsConfig XDSConfigSource
	// inProcess: see Options.InProcessAuthorizer.
	inProcess XDSStatusSource
	// xdsPublic is the xDS address written into gateway packages.
	xdsPublic string
	// xdsTLS and packageCA: see Options.XDSTLS and Options.PackageCA.
	xdsTLS    bool
	packageCA func() (string, error)
	checker   *policies.Checker
	// scheme is the kind registry; configKinds its exported kinds.
	scheme      *resource.Scheme
	configKinds []configKind
	// tester runs the policy tests (bounded, each under its deadline).
	tester *policies.Tester
	// policyJobs gives each tenant one policy test, replay or check at a
	// time, so no tenant holds all of the tester's shared slots.
	policyJobs tenantGate
	engine     *gin.Engine
	// allowPrivateImportURLs: see Options.AllowPrivateImportURLs.
	allowPrivateImportURLs bool
	// allowPrivateJWKSURLs: see Options.AllowPrivateJWKSURLs.
	allowPrivateJWKSURLs bool
	// allowPrivateIdPURLs and box: see Options.AllowPrivateIdPURLs and
	// Options.SecretBox.
	allowPrivateIdPURLs bool
	box                 *secretbox.Box
	// openAPIJSON is the validated OpenAPI document, rendered once.
	openAPIJSON []byte
	// mount registers the routes of Options.Mount.
	mount func(gin.IRouter)
}

// New builds the admin API and registers its routes.
func New(opts Options) (*Server, error) {
	if opts.Store == nil {
		return nil, errors.New("admin: a store is required")
	}
	if len(opts.BootstrapToken) < 16 {
		return nil, errors.New("admin: a bootstrap token of at least 16 characters is required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
	}
	m, err := httpapi.NewMetrics(opts.Registry)
	if err != nil {
		return nil, err
	}
	doc, err := openAPIDocument(context.Background())
	if err != nil {
		return nil, err
	}
	if opts.Bundles == nil || opts.Keys == nil {
		return nil, errors.New("admin: a bundle manager and a key store are required")
	}
	checker, err := policies.NewChecker(opts.Bundles.AllowedBuiltins()...)
	if err != nil {
		return nil, err
	}
	if opts.PolicyTestTimeout <= 0 {
		opts.PolicyTestTimeout = policies.DefaultTestTimeout
	}
	s := &Server{
		bundles:     opts.Bundles,
		keys:        opts.Keys,
		xds:         opts.XDS,
		xdsConfig:   opts.XDSConfig,
		xdsPublic:   opts.XDSPublicAddress,
		xdsTLS:      opts.XDSTLS,
		inProcess:   opts.InProcessAuthorizer,
		packageCA:   opts.PackageCA,
		checker:     checker,
		openAPIJSON: doc,
		store:       opts.Store,
		auth:        &tokenAuth{bootstrapHash: sha256.Sum256([]byte(opts.BootstrapToken)), store: opts.Store, jwt: opts.TokenAuth},
		log:         opts.Logger,
		registry:    opts.Registry,
		metrics:     m,
		public:      opts.PublicURL,
		mount:       opts.Mount,
		serverKeys:  opts.ServerKeys,
		tokens:      opts.Tokens,
		saTokens:    opts.ServiceAccountTokens,
		userTokens:  opts.UserTokens,

		allowPrivateImportURLs: opts.AllowPrivateImportURLs,
		allowPrivateJWKSURLs:   opts.AllowPrivateJWKSURLs,
		allowPrivateIdPURLs:    opts.AllowPrivateIdPURLs,
		box:                    opts.SecretBox,
	}
	if opts.Scheme == nil {
		if opts.Scheme, err = NewScheme(); err != nil {
			return nil, err
		}
	}
	if err := opts.Scheme.Complete(); err != nil {
		return nil, err
	}
	if err := bundles.CheckInputs(opts.Scheme.Bundled()); err != nil {
		return nil, err
	}
	s.scheme, s.configKinds = opts.Scheme, configKindsOf(opts.Scheme)
	s.tester = policies.NewTester(checker, max(2, runtime.GOMAXPROCS(0)), opts.PolicyTestTimeout)
	s.engine = s.routes()
	return s, nil
}

// Handler is the HTTP handler of the whole API.
func (s *Server) Handler() http.Handler { return s.engine }

// MetricsHandler serves the registry's metrics without authentication,
// for a separate listener only trusted scrapers reach (--metrics-addr);
// the admin API's own /metrics needs a system-wide token.
func (s *Server) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{})
}

// Routes lists the registered method+path pairs (gin path syntax).
func (s *Server) Routes() gin.RoutesInfo { return s.engine.Routes() }

func (s *Server) routes() *gin.Engine {
	e := httpapi.NewEngine(s.log, s.metrics)

	e.GET("/healthz", s.healthz)
	e.GET("/readyz", s.readyz)
	// The metrics name every tenant and gateway: a system-wide token only.
	e.GET("/metrics", s.authenticate, s.requireSystem, gin.WrapH(s.MetricsHandler()))
	e.GET("/api/openapi.json", s.openAPI)

	sys := e.Group("/api/system", s.authenticate, s.requireSystem)
	adm := e.Group("/api/admin/:tid", s.authenticate, s.loadTenant)
	// Custom logins are decided by the tenant's application (its own
	// credential) or a system-wide principal (logins.go).
	s.loginRoutes(e.Group("/api/system/:tid/logins", s.authenticate, s.loadTenant))
	// Each resource file registers its own routes.
	// Every registered kind's routes, then the routes that are no kind's.
	for _, register := range []func(sys, adm *gin.RouterGroup){
		s.kindRoutes,
		s.eventRoutes,
		s.configurationRoutes,
	} {
		register(sys, adm)
	}
	s.identityRoutes(e)
	if s.mount != nil {
		s.mount(e)
	}
	return e
}

// healthz answers as long as the process serves HTTP.
func (s *Server) healthz(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ok"}) }

// readyz answers 200 only when the store is reachable and has space: 503
// store_unavailable (with Retry-After) when it is down or does not answer
// within 2 s, 503 insufficient_storage while it is out of disk space.
func (s *Server) readyz(c *gin.Context) {
	ctx, cancel := context.WithTimeout(c.Request.Context(), 2*time.Second)
	defer cancel()
	if err := s.store.Ping(ctx); err != nil {
		s.log.WarnContext(ctx, "readiness check failed", "error", err.Error())
		if errors.Is(err, store.ErrStorageFull) {
			abort(c, newError(http.StatusServiceUnavailable, httpapi.CodeInsufficientStorage, "the store is out of disk space", nil))
			return
		}
		e := storeUnavailable()
		e.Message = "store unreachable"
		abort(c, e)
		return
	}
	c.JSON(http.StatusOK, gin.H{"status": "ready"})
}
