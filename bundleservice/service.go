// Package bundleservice is the OPA-compatible bundle service that gateways
// poll, authenticated with a gateway credential (ghg_…), under
// /api/system/{tid}/gateways/{gw}/opa/: the gateway's signed bundle with
// ETag and long polling (GET bundle), OPA status reports (POST status) and
// decision log uploads (POST logs), kept within a per-gateway retention.
//
// It registers its routes on a gin router it is given (Register): gatehouse
// serve mounts it on the admin API's engine, so both share one listener,
// the request id / log / metrics / recover middleware and the error shape
// (internal/httpapi). It knows neither the admin API nor its resources: it
// reads the store, takes bundles from the bundle manager, and records the
// gateways' runtime state through the bundles package, which the admin API
// reads for a gateway's status.
package bundleservice

import (
	"context"
	"crypto/x509"
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-dev/gatehouse/bundles"
	"github.com/gatehouse-dev/gatehouse/envoy"
	"github.com/gatehouse-dev/gatehouse/gatewaycred"
	"github.com/gatehouse-dev/gatehouse/internal/httpapi"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/store"
)

// CodeGatewayNotFound is the bundle service's answer (404) when the gateway
// does not exist, also given to a credential of a deleted gateway: the
// authorizer then stops enforcing the gateway's last bundle.
const CodeGatewayNotFound = "gateway_not_found"

// ctxVerified holds the verified of the request (gatewayAuth).
const ctxVerified = "gatehouse.gateway_verified"

// Options configures the bundle service.
type Options struct {
	Store store.Store
	// Bundles serves gateways their bundles (required).
	Bundles *bundles.Manager
	// Credentials verifies the gateways' credentials (a new one on Store
	// when nil). Share it with the xDS server, and run its
	// FollowRevocations: only then does the bundle service keep serving
	// recently verified gateways while the store is unavailable.
	Credentials *gatewaycred.Verifier
	// Registry receives the credential metrics
	// (gatehouse_gateway_credential_fallbacks_total,
	// gatehouse_gateway_credentials_cached); none are registered when nil.
	Registry prometheus.Registerer
	Logger   *slog.Logger
	// DecisionLogsKept is how many decision log events are kept per
	// gateway (default DefaultDecisionLogsKept; --decision-logs-kept).
	DecisionLogsKept int
	// ClientCertificates, when set, checks the request's verified TLS
	// client certificate chain (nil when there is none) against the gateway
	// its credential belongs to; an error refuses the request with 403
	// CodeClientCertificate (gatewaycert.Checker implements it).
	ClientCertificates func(chain []*x509.Certificate, tenantID, gatewayID string) error
	// GatewayTokens, when set, admits access tokens (JWTs) of a gateway's
	// OAuth client beside its ghg_ credentials (oauth/verify.GatewayAuth).
	GatewayTokens GatewayTokenVerifier
}

// GatewayTokenVerifier checks that raw is an access token of gateway gw
// of tenant tid's own client. An error wrapping ErrTokenNotAccepted
// refuses the request (401); any other is the server's.
type GatewayTokenVerifier interface {
	VerifyGateway(ctx context.Context, tenantID, gatewayID, raw string) error
}

// ErrTokenNotAccepted is what a GatewayTokenVerifier's refusal wraps.
var ErrTokenNotAccepted = errors.New("gateway token not accepted")

// CodeClientCertificate is the bundle service's answer (403) to a request
// whose TLS client certificate is missing where one is required, or names
// another gateway than its credential.
const CodeClientCertificate = "client_certificate_refused"

// Service is the bundle service.
type Service struct {
	store   store.Store
	bundles *bundles.Manager
	creds   *gatewaycred.Verifier
	certs   func(chain []*x509.Certificate, tenantID, gatewayID string) error
	tokens  GatewayTokenVerifier
	log     *slog.Logger
	// retention trims the gateways' decision logs.
	retention *decisionLogRetention
	// draining ends when Drain is called (drain): long polls answer at once.
	draining context.Context
	drain    context.CancelFunc
}

// New builds the bundle service; Register mounts its routes.
func New(opts Options) (*Service, error) {
	if opts.Store == nil {
		return nil, errors.New("bundle service: a store is required")
	}
	if opts.Bundles == nil {
		return nil, errors.New("bundle service: a bundle manager is required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Credentials == nil {
		opts.Credentials = gatewaycred.New(opts.Store, opts.Logger)
	}
	if opts.Registry != nil {
		if err := opts.Credentials.RegisterMetrics(opts.Registry); err != nil {
			return nil, err
		}
	}
	s := &Service{store: opts.Store, bundles: opts.Bundles, creds: opts.Credentials, certs: opts.ClientCertificates, tokens: opts.GatewayTokens, log: opts.Logger,
		retention: newDecisionLogRetention(opts.DecisionLogsKept)}
	s.draining, s.drain = context.WithCancel(context.Background())
	return s, nil
}

// Register adds the bundle service's routes to r:
// /api/system/:tid/gateways/:gw/opa/{bundle,status,logs}. Mount it on an
// engine made by httpapi.NewEngine (or one that behaves the same), which
// gives the request id, logs, metrics and 404/405 answers.
func (s *Service) Register(r gin.IRouter) {
	g := r.Group("/api/system/:tid/gateways/:gw/opa", s.gatewayAuth)
	g.GET("/bundle", s.serveBundle)
	g.POST("/status", s.receiveStatus)
	g.POST("/logs", s.receiveLogs)
}

// Drain ends the bundle service's long polls, for a shutdown: parked
// requests are answered at once (the current bundle, or 304 when the caller
// has it) and later ones are not held; each answer says Connection: close.
// Call it before http.Server.Shutdown, which waits for requests in flight.
func (s *Service) Drain() { s.drain() }

// verified is how gatewayAuth admitted the request.
type verified struct {
	token string
	id    envoy.GatewayIdentity
	// cached: the store was unavailable and the credential was taken from
	// the cache of recently verified ones.
	cached bool
	// jwt: an access token of the gateway's client (never cached).
	jwt bool
}

// storeDown reports whether the request's credential came from the cache
// because the store is unavailable: the bundle service then answers from
// memory only.
func storeDown(c *gin.Context) bool {
	v, _ := c.Get(ctxVerified)
	gv, _ := v.(verified)
	return gv.cached
}

// gatewayAuth admits a gateway credential of this tenant and gateway: 401
// for a missing, unknown or wrong token, 403 for a valid token of another
// tenant or gateway, 404 gateway_not_found for a valid token of a gateway
// that was deleted. While the store is unavailable, a credential served
// recently is admitted from the cache (gatewaycred.Verifier) for bundle
// downloads only; anything else is 503 store_unavailable.
func (s *Service) gatewayAuth(c *gin.Context) {
	tid, gw := c.Param("tid"), c.Param("gw")
	if !model.ValidTenantID(tid) {
		httpapi.Abort(c, httpapi.Invalid("tid", "invalid tenant id (%s)", model.TenantIDRule))
		return
	}
	if !model.ValidObjectID(gw) {
		httpapi.Abort(c, httpapi.Invalid("gw", "invalid gateway id (%s)", model.ObjectIDRule))
		return
	}
	scheme, token, _ := strings.Cut(c.GetHeader("Authorization"), " ")
	if !strings.EqualFold(scheme, "Bearer") || token == "" {
		httpapi.Abort(c, httpapi.New(http.StatusUnauthorized, httpapi.CodeUnauthorized, "a gateway credential is required (Authorization: Bearer ghg_…)", nil))
		return
	}
	id, cached, jwt, ok := s.credential(c, tid, gw, token)
	if !ok {
		return
	}
	if s.certs != nil {
		if err := s.certs(verifiedChain(c.Request), tid, gw); err != nil {
			s.log.Warn("bundle service request refused", "gateway", tid+"/"+gw, "reason", "client certificate", "error", err.Error())
			httpapi.Abort(c, httpapi.New(http.StatusForbidden, CodeClientCertificate, "client certificate: "+err.Error(), nil))
			return
		}
	}
	if cached && c.Request.Method != http.MethodGet {
		httpapi.Abort(c, httpapi.StoreUnavailable()) // status reports and decision logs need the store
		return
	}
	c.Set(ctxVerified, verified{token: token, id: id, cached: cached, jwt: jwt})
	c.Next()
}

// credential verifies the request's bearer token as gateway gw's: a ghg_
// credential, or an access token of the gateway's OAuth client when
// GatewayTokens is set. ok false: the answer is written.
func (s *Service) credential(c *gin.Context, tid, gw, token string) (id envoy.GatewayIdentity, cached, jwt, ok bool) {
	if s.tokens != nil && strings.HasPrefix(token, "eyJ") && strings.Count(token, ".") == 2 {
		err := s.tokens.VerifyGateway(c.Request.Context(), tid, gw, token)
		switch {
		case errors.Is(err, ErrTokenNotAccepted):
			s.log.Info("bundle service request refused", "gateway", tid+"/"+gw, "reason", "access token", "error", err.Error())
			httpapi.Abort(c, httpapi.New(http.StatusUnauthorized, httpapi.CodeUnauthorized, "invalid gateway access token", nil))
		case errors.Is(err, store.ErrUnavailable):
			httpapi.Abort(c, httpapi.StoreUnavailable())
		case err != nil:
			httpapi.Abort(c, httpapi.Internal(err))
		default:
			return envoy.GatewayIdentity{TenantID: tid, GatewayID: gw, CredentialID: "oauth"}, false, true, true
		}
		return id, false, false, false
	}
	id, cached, err := s.creds.Verify(c.Request.Context(), token)
	if errors.Is(err, envoy.ErrInvalidCredential) {
		switch deleted, err := s.creds.DeletedWithGateway(c.Request.Context(), tid, gw, token); {
		case err != nil:
			httpapi.Abort(c, httpapi.Internal(err))
		case deleted:
			httpapi.Abort(c, gatewayNotFound(gw))
		default:
			httpapi.Abort(c, httpapi.New(http.StatusUnauthorized, httpapi.CodeUnauthorized, "invalid gateway credential", nil))
		}
		return id, false, false, false
	}
	if err != nil {
		httpapi.Abort(c, httpapi.Internal(err))
		return id, false, false, false
	}
	if id.TenantID != tid || id.GatewayID != gw {
		httpapi.Abort(c, httpapi.Forbidden("this credential belongs to another gateway"))
		return id, false, false, false
	}
	return id, cached, false, true
}

// verifiedChain is the request's client certificate chain as the TLS
// handshake verified it, leaf first (nil without one).
func verifiedChain(r *http.Request) []*x509.Certificate {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
		return nil
	}
	return r.TLS.VerifiedChains[0]
}
