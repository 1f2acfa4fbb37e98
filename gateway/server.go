package gateway

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sort"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/genproto/googleapis/rpc/code"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/gatehouse-dev/gatehouse/policies"
)

// ServerOptions configures the ext_authz service.
type ServerOptions struct {
	Engines *Engines
	// Logs receives every decision (optional).
	Logs    *DecisionLogger
	Metrics *Metrics
	Logger  *slog.Logger
}

// Server is the Envoy ext_authz v3 service (envoy.service.auth.v3.Authorization).
type Server struct {
	authv3.UnimplementedAuthorizationServer
	opts   ServerOptions
	health *health.Server
}

// NewServer returns the service.
func NewServer(opts ServerOptions) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Server{opts: opts, health: health.NewServer()}
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
// bundle yet, or a gateway this authorizer does not serve) the request is
// denied. Every decision is logged.
func (s *Server) Decide(ctx context.Context, req *Request) (*Decision, *Engine) {
	start := time.Now()
	growStack()
	e := s.opts.Engines.For(req.ContextExtensions)
	if e == nil {
		s.count("deny")
		return &Decision{HTTPStatus: http.StatusServiceUnavailable, Reason: "no policy bundle is active for this gateway",
			Headers: map[string]any{}}, nil
	}
	d, err := e.Decide(ctx, req)
	var timeout *policies.TimeoutError
	if errors.As(err, &timeout) {
		// Denied whatever dry-run says, like any evaluation that did not
		// finish: 503, the policy could not decide in time.
		s.opts.Logger.WarnContext(ctx, "policy evaluation timed out", "tenant", e.TenantID, "gateway", e.GatewayID,
			"policy", timeout.PolicyID, "api", timeout.APIID, "timeout", timeout.Timeout.String())
		s.count("timeout")
		if s.opts.Metrics != nil {
			s.opts.Metrics.policyTimeouts.WithLabelValues(e.TenantID, e.GatewayID).Inc()
		}
		d = &Decision{HTTPStatus: http.StatusServiceUnavailable, Reason: PolicyTimeoutReason, Headers: map[string]any{},
			ResponseHeadersToAdd: map[string]any{}, RequestHeadersToRemove: []any{}, DynamicMetadata: map[string]any{},
			APIID: timeout.APIID, ServiceID: timeout.ServiceID, PolicyID: timeout.PolicyID, req: req}
	} else if err != nil {
		s.opts.Logger.ErrorContext(ctx, "policy evaluation failed", "tenant", e.TenantID, "gateway", e.GatewayID, "error", err.Error())
		s.count("error")
		d = &Decision{HTTPStatus: http.StatusInternalServerError, Reason: "policy evaluation failed", Headers: map[string]any{}, req: req}
	} else if d.Allowed {
		s.count("allow")
	} else {
		s.count("deny")
	}
	took := time.Since(start)
	if s.opts.Metrics != nil {
		s.opts.Metrics.checkDuration.Observe(took.Seconds())
	}
	if s.opts.Logs != nil {
		s.opts.Logs.Log(e, d, start, took)
	}
	return d, e
}

func (s *Server) count(outcome string) {
	if s.opts.Metrics != nil {
		s.opts.Metrics.checks.WithLabelValues(outcome).Inc()
	}
}

// Check implements the ext_authz service.
func (s *Server) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	d, _ := s.Decide(ctx, RequestFromCheck(req))
	return CheckResponse(d), nil
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
