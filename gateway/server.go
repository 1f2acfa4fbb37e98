package gateway

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/genproto/googleapis/rpc/code"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/reflection"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/policies"
)

// ServerOptions configures the ext_authz service.
type ServerOptions struct {
	Engines *Engines
	// Logs receives every decision (optional).
	Logs    *DecisionLogger
	Metrics *Metrics
	Logger  *slog.Logger
	// ClientCertificates, when set, checks the verified TLS client
	// certificate chain of each ext_authz call (nil when there is none)
	// against the gateway the call names (its tenant and gateway context
	// extensions, else the default gateway); an error denies the call with
	// 403 client_certificate_refused. A caller whose certificate is one
	// gateway's can then not ask for another gateway's decisions.
	ClientCertificates func(chain []*x509.Certificate, tenantID, gatewayID string) error
}

// Server is the Envoy ext_authz v3 service (envoy.service.auth.v3.Authorization).
type Server struct {
	authv3.UnimplementedAuthorizationServer
	opts   ServerOptions
	health *health.Server

	missMu     sync.Mutex
	missLogged map[missKey]time.Time
}

// NewServer returns the service. With Metrics, the series of a gateway
// removed from Engines (and of a service a new revision drops) are
// deleted.
func NewServer(opts ServerOptions) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Metrics != nil && opts.Engines != nil {
		opts.Metrics.watch(opts.Engines)
	}
	return &Server{opts: opts, health: health.NewServer(), missLogged: map[missKey]time.Time{}}
}

// Register adds the ext_authz service, the gRPC health service (SERVING
// once a bundle is active) and server reflection to g.
func (s *Server) Register(g *grpc.Server) {
	authv3.RegisterAuthorizationServer(g, s)
	healthpb.RegisterHealthServer(g, s.health)
	reflection.Register(g)
	s.updateHealth()
}

// WatchHealth keeps the health status in step with bundle activations until
// ctx ends.
func (s *Server) WatchHealth(ctx context.Context) {
	for {
		ch := s.opts.Engines.Changed()
		s.updateHealth()
		select {
		case <-ch:
		case <-ctx.Done():
			s.health.Shutdown()
			return
		}
	}
}

func (s *Server) updateHealth() {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if s.opts.Engines.Ready() {
		st = healthpb.HealthCheckResponse_SERVING
	}
	s.health.SetServingStatus("", st)
	s.health.SetServingStatus(authv3.Authorization_ServiceDesc.ServiceName, st)
}

// PolicyTimeoutReason is the reason of a check denied because its policy
// did not finish within the gateway's policy_timeout_ms.
const PolicyTimeoutReason = "policy evaluation timed out"

// Decide picks the request's engine and decides; with no engine (no
// bundle yet, a gateway this authorizer does not serve, none named, or
// another tenant's) the request is denied, with a reason saying which
// (Miss). A body over the gateway's max_request_bytes without
// allow_partial_message is a 413, as Envoy answers it. A denial of 401
// always asks for a bearer token (WWW-Authenticate, RFC 6750). Every
// decision with an engine is logged.
func (s *Server) Decide(ctx context.Context, req *Request) (*Decision, *Engine) {
	start := time.Now()
	growStack()
	e, miss := s.opts.Engines.Resolve(req.ContextExtensions)
	if e == nil {
		d := s.missDecision(miss, req)
		s.logMiss(ctx, miss, req, d)
		s.record(nil, "deny", time.Since(start))
		return d, nil
	}
	var (
		d   *Decision
		err error
	)
	if big := bodyTooLarge(e, req); big != nil && !e.skipsAuthorizer(req) {
		d = big
	} else {
		d, err = e.Decide(ctx, req)
	}
	outcome := "deny"
	var timeout *policies.TimeoutError
	if errors.As(err, &timeout) {
		// Denied whatever dry-run says, like any evaluation that did not
		// finish: 503, the policy could not decide in time.
		s.opts.Logger.WarnContext(ctx, "policy evaluation timed out", "tenant", e.TenantID, "gateway", e.GatewayID,
			"policy", timeout.PolicyID, "api", timeout.APIID, "timeout", timeout.Timeout.String())
		outcome = "timeout"
		if s.opts.Metrics != nil {
			s.opts.Metrics.policyTimeouts.WithLabelValues(e.TenantID, e.GatewayID).Inc()
		}
		d = &Decision{HTTPStatus: http.StatusServiceUnavailable, Reason: PolicyTimeoutReason, Headers: map[string]any{},
			ResponseHeadersToAdd: map[string]any{}, RequestHeadersToRemove: []any{}, DynamicMetadata: map[string]any{},
			APIID: timeout.APIID, ServiceID: timeout.ServiceID, PolicyID: timeout.PolicyID, req: req}
	} else if err != nil {
		s.opts.Logger.ErrorContext(ctx, "policy evaluation failed", "tenant", e.TenantID, "gateway", e.GatewayID, "error", err.Error())
		outcome = "error"
		d = &Decision{HTTPStatus: http.StatusInternalServerError, Reason: "policy evaluation failed", Headers: map[string]any{}, req: req}
	} else if d.Allowed {
		outcome = "allow"
	}
	if !d.Allowed {
		bearerChallenge(d)
	}
	took := time.Since(start)
	s.record(e, outcome, took)
	if s.opts.Logs != nil {
		s.opts.Logs.Log(e, d, start, took)
	}
	return d, e
}

// record counts a check and its duration under its gateway (e nil: under
// UnknownLabel). A check that finished on an engine removed meanwhile
// deletes the series it may have brought back: a removed gateway's series
// stay gone.
func (s *Server) record(e *Engine, outcome string, took time.Duration) {
	m := s.opts.Metrics
	if m == nil {
		return
	}
	tenant, gateway := UnknownLabel, UnknownLabel
	if e != nil {
		tenant, gateway = e.TenantID, e.GatewayID
	}
	m.checks.WithLabelValues(outcome, tenant, gateway).Inc()
	m.checkDuration.WithLabelValues(tenant, gateway).Observe(took.Seconds())
	if e != nil && s.opts.Engines.Get(tenant, gateway) == nil {
		m.forgetGateway(model.GatewayRef{TenantID: tenant, GatewayID: gateway})
	}
}

// bearerChallenge makes a 401 denial ask for a bearer token
// (WWW-Authenticate: Bearer, RFC 6750 §3) unless it already names a
// challenge — also when the policy set http_status := 401 itself.
func bearerChallenge(d *Decision) {
	if d.HTTPStatus != http.StatusUnauthorized {
		return
	}
	for k := range d.Headers {
		if strings.EqualFold(k, "www-authenticate") {
			return
		}
	}
	h := make(map[string]any, len(d.Headers)+1)
	for k, v := range d.Headers {
		h[k] = v
	}
	h["www-authenticate"] = "Bearer"
	d.Headers = h
	d.Unauthenticated = true
}

// BodyTooLargeReason is the reason of a request denied because its body
// is over the gateway's max_request_bytes and allow_partial_message is
// off (413, as Envoy answers it).
const BodyTooLargeReason = "request body exceeds the gateway's max_request_bytes and allow_partial_message is off"

// bodyTooLarge is the 413 decision of a request whose body is over the
// gateway's max_request_bytes without allow_partial_message, or nil.
// Envoy answers such a request 413 itself and never asks; when it
// (mis)configured otherwise says it sent part of the body
// (x-envoy-auth-partial-body: true) or sends more than the limit, the
// decision is Envoy's 413 too, never a decision on a truncated body. The
// reverse proxy describes an oversized body the same way
// (CheckRequestFromHTTP), so both enforce one rule.
func bodyTooLarge(e *Engine, req *Request) *Decision {
	b := e.cfg.Gateway.RequestBody
	if b == nil || b.MaxRequestBytes == 0 || b.AllowPartialMessage {
		return nil
	}
	h := req.attrs.GetRequest().GetHttp()
	n := len(h.GetBody())
	if n == 0 {
		n = len(h.GetRawBody())
	}
	if h.GetHeaders()[partialBodyHeader] != "true" && n <= int(b.MaxRequestBytes) {
		return nil
	}
	return &Decision{HTTPStatus: http.StatusRequestEntityTooLarge,
		Reason:  fmt.Sprintf("%s (%d bytes)", BodyTooLargeReason, b.MaxRequestBytes),
		Headers: map[string]any{}, ResponseHeadersToAdd: map[string]any{}, RequestHeadersToRemove: []any{},
		DynamicMetadata: map[string]any{}, req: req}
}

// partialBodyHeader is the header with which Envoy says whether it sent
// the whole body ("false") or only its first max_request_bytes ("true").
const partialBodyHeader = "x-envoy-auth-partial-body"

// missDecision is the denial of a request without an engine: 403 for
// another tenant's, 503 otherwise (this authorizer cannot decide it). Its
// reason names the gateway (gRPC status message, logs); the JSON body the
// client gets names the case only.
func (s *Server) missDecision(miss Miss, req *Request) *Decision {
	ext := req.ContextExtensions
	named := model.GatewayRef{TenantID: ext["tenant"], GatewayID: ext["gateway"]}
	var status int
	var reason, public string
	switch miss {
	case MissNoGateway:
		status = http.StatusServiceUnavailable
		public = "the route names no gateway and this authorizer has no default gateway"
		reason = "the request names no gateway (no tenant and gateway context extensions) and this authorizer has no default gateway"
	case MissUnknownGateway:
		status = http.StatusServiceUnavailable
		public = "this authorizer has no policy bundle for the gateway the route names"
		reason = fmt.Sprintf("unknown gateway %s: this authorizer has no policy bundle for it", named)
	case MissForeignTenant:
		status = http.StatusForbidden
		public = "the route names another tenant than the gateway's"
		if named.GatewayID == "" {
			named = s.opts.Engines.single
		}
		reason = fmt.Sprintf("the context extensions name tenant %q, but gateway %s is not that tenant's: never decided with another tenant's bundle", ext["tenant"], named.GatewayID)
	default: // MissNoBundle
		status = http.StatusServiceUnavailable
		public = "no policy bundle is active for this gateway"
		if named.TenantID == "" || named.GatewayID == "" {
			named = s.opts.Engines.single
		}
		reason = fmt.Sprintf("no policy bundle is active for gateway %s", named)
	}
	return &Decision{HTTPStatus: status, Reason: reason, Headers: map[string]any{"content-type": "application/json"},
		Body: denialJSON(status, miss.String(), public), ResponseHeadersToAdd: map[string]any{},
		RequestHeadersToRemove: []any{}, DynamicMetadata: map[string]any{}, req: req}
}

// missLogInterval is how often the same miss (kind, tenant, gateway) is
// logged: a misconfigured route fails every one of its requests.
const missLogInterval = time.Minute

// logMiss logs a check decided without an engine — at most once per
// missLogInterval for the same case and gateway.
func (s *Server) logMiss(ctx context.Context, miss Miss, req *Request, d *Decision) {
	ext := req.ContextExtensions
	key := missKey{miss: miss, tenant: ext["tenant"], gateway: ext["gateway"]}
	now := time.Now()
	s.missMu.Lock()
	last, seen := s.missLogged[key]
	if !seen || now.Sub(last) >= missLogInterval {
		if len(s.missLogged) >= maxMissKeys {
			clear(s.missLogged)
		}
		s.missLogged[key] = now
	}
	s.missMu.Unlock()
	if seen && now.Sub(last) < missLogInterval {
		return
	}
	attrs := []any{"reason", miss.String(), "status", d.HTTPStatus}
	for _, k := range []string{"tenant", "gateway", "service", "api"} {
		if v := ext[k]; v != "" {
			attrs = append(attrs, "extensions_"+k, v)
		}
	}
	if def := s.opts.Engines.single; !def.IsZero() {
		attrs = append(attrs, "default_gateway", def.String())
	}
	attrs = append(attrs, "method", req.Method, "host", req.Host)
	s.opts.Logger.WarnContext(ctx, "check denied: "+d.Reason, attrs...)
}

type missKey struct {
	miss            Miss
	tenant, gateway string
}

// maxMissKeys bounds the log limiter's memory.
const maxMissKeys = 1024

// Check implements the ext_authz service.
func (s *Server) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	r := RequestFromCheck(req)
	if s.opts.ClientCertificates != nil {
		if d := s.certificateDenial(ctx, r); d != nil {
			return CheckResponse(d), nil
		}
	}
	d, _ := s.Decide(ctx, r)
	return CheckResponse(d), nil
}

// certificateDenial is the denial of a call whose client certificate is
// refused for the gateway it names (ServerOptions.ClientCertificates), or
// nil. A call naming no gateway is left to Decide (which denies it).
func (s *Server) certificateDenial(ctx context.Context, req *Request) *Decision {
	ext := req.ContextExtensions
	ref := model.GatewayRef{TenantID: ext["tenant"], GatewayID: ext["gateway"]}
	if ref.TenantID == "" || ref.GatewayID == "" {
		ref = s.opts.Engines.single
	}
	if ref.IsZero() {
		return nil
	}
	var chain []*x509.Certificate
	if p, ok := peer.FromContext(ctx); ok {
		if info, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(info.State.VerifiedChains) > 0 {
			chain = info.State.VerifiedChains[0]
		}
	}
	err := s.opts.ClientCertificates(chain, ref.TenantID, ref.GatewayID)
	if err == nil {
		return nil
	}
	s.opts.Logger.WarnContext(ctx, "check denied: client certificate", "gateway", ref.String(), "error", err.Error())
	return &Decision{HTTPStatus: http.StatusForbidden, Reason: "client certificate: " + err.Error(),
		Headers:              map[string]any{"content-type": "application/json"},
		Body:                 denialJSON(http.StatusForbidden, "client_certificate_refused", "the caller's client certificate is not the gateway's"),
		ResponseHeadersToAdd: map[string]any{}, RequestHeadersToRemove: []any{}, DynamicMetadata: map[string]any{}, req: req}
}

// CheckResponse maps a decision onto Envoy's response, as opa-envoy-plugin
// does: allowed → OK with headers to add upstream, headers to remove and
// response headers; denied → PERMISSION_DENIED (UNAUTHENTICATED for 401)
// with the status, headers and body sent to the client.
func CheckResponse(d *Decision) *authv3.CheckResponse {
	resp := &authv3.CheckResponse{}
	if md, err := structpb.NewStruct(jsonSafe(d.DynamicMetadata)); err == nil && len(md.GetFields()) > 0 {
		resp.DynamicMetadata = md
	}
	if d.Allowed {
		resp.Status = &rpcstatus.Status{Code: int32(code.Code_OK)}
		ok := &authv3.OkHttpResponse{Headers: headerOptions(d.Headers), ResponseHeadersToAdd: headerOptions(d.ResponseHeadersToAdd)}
		for _, h := range d.RequestHeadersToRemove {
			if name, isStr := h.(string); isStr && name != "" {
				ok.HeadersToRemove = append(ok.HeadersToRemove, name)
			}
		}
		resp.HttpResponse = &authv3.CheckResponse_OkResponse{OkResponse: ok}
		return resp
	}
	c := code.Code_PERMISSION_DENIED
	if d.HTTPStatus == http.StatusUnauthorized {
		c = code.Code_UNAUTHENTICATED
	}
	status := d.HTTPStatus
	if _, known := typev3.StatusCode_name[int32(status)]; !known || status < 400 {
		status = http.StatusForbidden
	}
	resp.Status = &rpcstatus.Status{Code: int32(c), Message: d.Reason}
	resp.HttpResponse = &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
		Status: &typev3.HttpStatus{Code: typev3.StatusCode(status)}, Headers: headerOptions(d.Headers), Body: d.Body,
	}}
	return resp
}

// headerOptions renders {"name": "v" | ["v1", "v2"]} as header options
// (overwriting, in name order for stable output).
func headerOptions(h map[string]any) []*corev3.HeaderValueOption {
	if len(h) == 0 {
		return nil
	}
	names := make([]string, 0, len(h))
	for k := range h {
		names = append(names, k)
	}
	sort.Strings(names)
	var out []*corev3.HeaderValueOption
	for _, k := range names {
		add := func(v string, first bool) {
			action := corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
			if !first {
				action = corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD
			}
			out = append(out, &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, Value: v}, AppendAction: action})
		}
		switch v := h[k].(type) {
		case string:
			add(v, true)
		case []any:
			for i, x := range v {
				if s, ok := x.(string); ok {
					add(s, i == 0)
				}
			}
		}
	}
	return out
}

// jsonSafe converts OPA values (json.Number) to structpb-friendly ones.
func jsonSafe(m map[string]any) map[string]any {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = safeValue(v)
	}
	return out
}

func safeValue(v any) any {
	switch x := v.(type) {
	case map[string]any:
		return jsonSafe(x)
	case []any:
		l := make([]any, len(x))
		for i, e := range x {
			l[i] = safeValue(e)
		}
		return l
	case interface{ Float64() (float64, error) }:
		f, _ := x.Float64()
		return f
	}
	return v
}

// DefaultStreamWorkers is the default number of ext_authz stream workers
// (GRPCServerOptions).
const DefaultStreamWorkers = 128

// GRPCServerOptions are the gRPC server options of the ext_authz service.
// workers > 0 serves checks on that many long-lived goroutines (grpc's
// NumStreamWorkers): a policy evaluation needs a deep stack, and a fresh
// goroutine per check grew (copied) its stack several times on every check
// — a third of the authorizer's CPU under load. Checks beyond the workers
// in flight get a goroutine of their own, as with workers = 0.
func GRPCServerOptions(workers int) []grpc.ServerOption {
	if workers <= 0 {
		return nil
	}
	return []grpc.ServerOption{grpc.NumStreamWorkers(uint32(workers))}
}

// evalStackBytes is about the stack a policy evaluation needs.
const evalStackBytes = 32 << 10

// growStack grows the goroutine's stack to what a policy evaluation needs
// while the stack is still shallow. OPA's evaluator recurses deeply; a
// goroutine starting a check with a small stack (a new one, or one whose
// stack the garbage collector shrank while it was idle) would otherwise
// grow it in the middle of the evaluation, copying and adjusting every one
// of its frames each time — a third of the authorizer's CPU under load,
// measured. Growing here copies a few frames once.
//
//go:noinline
func growStack() {
	var pad [evalStackBytes]byte
	touchStack(pad[:])
}

//go:noinline
func touchStack(b []byte) {
	b[len(b)-1] = 0
}
