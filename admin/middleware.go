package admin

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/store"
)

// Context keys set by the middleware.
const (
	ctxLogger    = "gatehouse.logger"
	ctxRequestID = "gatehouse.request_id"
	ctxPrincipal = "gatehouse.principal"
	ctxTenant    = "gatehouse.tenant"
)

// RequestIDHeader carries the request id in and out.
const RequestIDHeader = "X-Request-Id"

var requestIDPattern = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)

// requestContext assigns the request id (the caller's, when well-formed) and
// a logger that carries it.
func (s *Server) requestContext(c *gin.Context) {
	id := c.GetHeader(RequestIDHeader)
	if !requestIDPattern.MatchString(id) {
		id = uuid.NewString()
	}
	c.Set(ctxRequestID, id)
	c.Set(ctxLogger, s.log.With("request_id", id))
	c.Header(RequestIDHeader, id)
	c.Next()
}

func requestID(c *gin.Context) string { return c.GetString(ctxRequestID) }

type httpMetrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

func newHTTPMetrics(reg prometheus.Registerer) (*httpMetrics, error) {
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_http_requests_total",
			Help: "Admin API requests by route, method and status code.",
		}, []string{"route", "method", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "gatehouse_http_request_duration_seconds",
			Help:    "Admin API request latency by route and method.",
			Buckets: prometheus.DefBuckets,
		}, []string{"route", "method"}),
	}
	for _, col := range []prometheus.Collector{m.requests, m.latency} {
		if err := reg.Register(col); err != nil {
			return nil, fmt.Errorf("register metrics: %w", err)
		}
	}
	return m, nil
}

// observe records metrics and writes one structured log line per request.
func (s *Server) observe(c *gin.Context) {
	start := time.Now()
	c.Next()
	elapsed := time.Since(start)
	route := c.FullPath()
	if route == "" {
		route = "unmatched"
	}
	status := c.Writer.Status()
	s.metrics.requests.WithLabelValues(route, c.Request.Method, strconv.Itoa(status)).Inc()
	s.metrics.latency.WithLabelValues(route, c.Request.Method).Observe(elapsed.Seconds())
	if route == "/healthz" || route == "/readyz" || route == "/metrics" {
		return
	}
	attrs := []any{
		"method", c.Request.Method, "route", route, "path", c.Request.URL.Path,
		"status", status, "duration_ms", float64(elapsed.Microseconds()) / 1000, "remote", c.ClientIP(),
	}
	if p, ok := principal(c); ok {
		attrs = append(attrs, "actor", p.Subject)
	}
	level := slog.LevelInfo
	if status >= 500 {
		level = slog.LevelError
	}
	logger(c).Log(c.Request.Context(), level, "http request", attrs...)
}

// recover turns a panic into a logged 500 with the standard error shape.
func (s *Server) recover(c *gin.Context) {
	defer func() {
		if r := recover(); r != nil {
			if r == http.ErrAbortHandler {
				panic(r)
			}
			logger(c).ErrorContext(c.Request.Context(), "panic in handler", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			abort(c, internalError(fmt.Errorf("panic: %v", r)))
		}
	}()
	c.Next()
}

// authenticate requires a valid bearer token.
func (s *Server) authenticate(c *gin.Context) {
	h := c.GetHeader("Authorization")
	scheme, token, ok := strings.Cut(h, " ")
	if h == "" {
		abort(c, newError(http.StatusUnauthorized, CodeUnauthorized, "missing bearer token in the Authorization header", nil))
		return
	}
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		abort(c, newError(http.StatusUnauthorized, CodeUnauthorized, "the Authorization header must be \"Bearer <token>\"", nil))
		return
	}
	p, err := s.auth.Authenticate(c.Request.Context(), strings.TrimSpace(token))
	if errors.Is(err, errBadCredentials) {
		abort(c, newError(http.StatusUnauthorized, CodeUnauthorized, "invalid bearer token", nil))
		return
	}
	if err != nil {
		abort(c, internalError(err))
		return
	}
	c.Set(ctxPrincipal, p)
	c.Next()
}

func principal(c *gin.Context) (Principal, bool) {
	v, ok := c.Get(ctxPrincipal)
	if !ok {
		return Principal{}, false
	}
	return v.(Principal), true
}

func actor(c *gin.Context) string {
	p, _ := principal(c)
	return p.Subject
}

// requireSystem admits only system-wide principals (/api/system routes).
func (s *Server) requireSystem(c *gin.Context) {
	if p, _ := principal(c); !p.System() {
		abort(c, forbidden("this route needs a system-wide token; tenant tokens may only use /api/admin/"+p.TenantID+"/…"))
		return
	}
	c.Next()
}

// loadTenant guards every /api/admin/{tid} route: the id must be valid, the
// caller bound to that tenant (or system-wide), the tenant must exist, and a
// DISABLED tenant only allows reading and re-enabling itself.
func (s *Server) loadTenant(c *gin.Context) {
	tid := c.Param("tid")
	if !model.ValidTenantID(tid) {
		abort(c, fieldError("tid", "invalid tenant id (%s)", model.TenantIDRule))
		return
	}
	p, _ := principal(c)
	if !p.CanAccessTenant(tid) {
		abort(c, forbidden(fmt.Sprintf("this token is bound to tenant %q and cannot access tenant %q", p.TenantID, tid)))
		return
	}
	t, err := tenantRepo.Get(c.Request.Context(), s.store, "", tid)
	if errors.Is(err, store.ErrNotFound) {
		abort(c, notFound("tenant", tid))
		return
	}
	if err != nil {
		abort(c, internalError(err))
		return
	}
	if t.Spec.Status == model.TenantDisabled && !disabledTenantMayUse(c) {
		abort(c, newError(http.StatusForbidden, CodeTenantDisabled,
			fmt.Sprintf("tenant %q is disabled; only reading and re-enabling it are allowed", tid), map[string]any{"tenant_id": tid}))
		return
	}
	c.Set(ctxTenant, t)
	c.Next()
}

// disabledTenantMayUse: reading the tenant, and PUT /tenant (which itself
// refuses anything but re-enabling while disabled).
func disabledTenantMayUse(c *gin.Context) bool {
	return strings.HasSuffix(c.FullPath(), "/:tid/tenant") && (c.Request.Method == http.MethodGet || c.Request.Method == http.MethodPut)
}

func currentTenant(c *gin.Context) *store.Typed[model.TenantSpec] {
	return c.MustGet(ctxTenant).(*store.Typed[model.TenantSpec])
}
