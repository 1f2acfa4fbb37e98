package httpapi

import (
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
)

// Context keys set by the middleware.
const (
	ctxLogger    = "gatehouse.logger"
	ctxRequestID = "gatehouse.request_id"
	ctxActor     = "gatehouse.actor"
)

// RequestIDHeader carries the request id in and out.
const RequestIDHeader = "X-Request-Id"

var requestIDPattern = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)

// NewEngine is a gin engine with the shared behaviour of every API: no
// redirects, 404/405 in the error shape, and the request context, metrics
// and recover middleware (in that order).
func NewEngine(log *slog.Logger, m *Metrics) *gin.Engine {
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	e.HandleMethodNotAllowed = true
	e.RedirectTrailingSlash = false
	e.RedirectFixedPath = false
	e.ContextWithFallback = true
	e.Use(RequestContext(log), m.Observe, Recover)
	e.NoRoute(func(c *gin.Context) {
		Abort(c, New(http.StatusNotFound, CodeNotFound, "no such route: "+c.Request.Method+" "+c.Request.URL.Path, nil))
	})
	e.NoMethod(func(c *gin.Context) {
		Abort(c, New(http.StatusMethodNotAllowed, CodeMethodNotAllowed, "method "+c.Request.Method+" is not allowed on "+c.Request.URL.Path, nil))
	})
	return e
}

// RequestContext assigns the request id (the caller's, when well-formed)
// and a logger that carries it.
func RequestContext(log *slog.Logger) gin.HandlerFunc {
	return func(c *gin.Context) {
		id := c.GetHeader(RequestIDHeader)
		if !requestIDPattern.MatchString(id) {
			id = uuid.NewString()
		}
		c.Set(ctxRequestID, id)
		c.Set(ctxLogger, log.With("request_id", id))
		c.Header(RequestIDHeader, id)
		c.Next()
	}
}

// RequestID is the request's id (set by RequestContext).
func RequestID(c *gin.Context) string { return c.GetString(ctxRequestID) }

// Logger is the request's logger, carrying its id (set by RequestContext).
func Logger(c *gin.Context) *slog.Logger {
	if l, ok := c.Get(ctxLogger); ok {
		return l.(*slog.Logger)
	}
	return slog.Default()
}

// SetActor records who is calling (an authenticated subject), for the
// request log and audit events.
func SetActor(c *gin.Context, subject string) { c.Set(ctxActor, subject) }

// Actor is the subject SetActor recorded ("" before authentication).
func Actor(c *gin.Context) string { return c.GetString(ctxActor) }

// Metrics counts and times requests by route.
type Metrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

// NewMetrics registers the request metrics in reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
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

// Observe records metrics and writes one structured log line per request
// (never its headers; health and metrics scrapes are not logged).
func (m *Metrics) Observe(c *gin.Context) {
	start := time.Now()
	c.Next()
	elapsed := time.Since(start)
	route := c.FullPath()
	if route == "" {
		route = "unmatched"
	}
	status := c.Writer.Status()
	m.requests.WithLabelValues(route, c.Request.Method, strconv.Itoa(status)).Inc()
	m.latency.WithLabelValues(route, c.Request.Method).Observe(elapsed.Seconds())
	if route == "/healthz" || route == "/readyz" || route == "/metrics" {
		return
	}
	attrs := []any{
		"method", c.Request.Method, "route", route, "path", c.Request.URL.Path,
		"status", status, "duration_ms", float64(elapsed.Microseconds()) / 1000, "remote", c.ClientIP(),
	}
	if a := Actor(c); a != "" {
		attrs = append(attrs, "actor", a)
	}
	level := slog.LevelInfo
	if status >= 500 {
		level = slog.LevelError
	}
	Logger(c).Log(c.Request.Context(), level, "http request", attrs...)
}

// Recover turns a panic into a logged 500 with the standard error shape.
func Recover(c *gin.Context) {
	defer func() {
		if r := recover(); r != nil {
			if r == http.ErrAbortHandler {
				panic(r)
			}
			Logger(c).ErrorContext(c.Request.Context(), "panic in handler", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			Abort(c, Internal(fmt.Errorf("panic: %v", r)))
		}
	}()
	c.Next()
}
