// Package authzkit runs an in-process authorizer for tests: the gateway's
// ext_authz service (gateway.Server) on one compiled bundle, whose
// decisions are logged by the gateway's own decision logger — masked and
// rendered as every authorizer renders them — into a sink: a slice, or a
// store's decision log stream (what gatehouse serve and the bundle
// service append to). Tests of what reads decision logs (the replay of a
// draft policy) feed it real checks instead of hand-written events.
package authzkit

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/gatehouse-dev/gatehouse/gateway"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/policies"
	"github.com/gatehouse-dev/gatehouse/store"
)

// Authorizer is one gateway's in-process authorizer.
type Authorizer struct {
	TenantID, GatewayID string
	srv                 *gateway.Server
	logs                *gateway.DecisionLogger
	once                sync.Once
}

// New activates the compiled bundle (as revision "1") with the token
// validator (nil: no token is valid) and logs every decision into sink.
// Flush delivers the logged decisions; the test's end does too.
func New(t testing.TB, c *policies.Compiled, tokens gateway.TokenValidator, sink gateway.LogSink) *Authorizer {
	t.Helper()
	src, err := gateway.SourceFromCompiled(c, "1")
	if err != nil {
		t.Fatalf("authzkit: %v", err)
	}
	eng, err := gateway.NewEngine(context.Background(), src, tokens)
	if err != nil {
		t.Fatalf("authzkit: %v", err)
	}
	ref := model.GatewayRef{TenantID: c.TenantID, GatewayID: c.GatewayID}
	engines := gateway.NewEngines(ref)
	engines.Activate(eng)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	logs := gateway.NewDecisionLogger(gateway.DecisionLogOptions{Sink: sink, Logger: quiet, QueueSize: 1 << 20, BatchEvents: 1000})
	a := &Authorizer{TenantID: c.TenantID, GatewayID: c.GatewayID, logs: logs,
		srv: gateway.NewServer(gateway.ServerOptions{Engines: engines, Logs: logs, Logger: quiet})}
	t.Cleanup(a.Flush)
	return a
}

// Request is one HTTP request as Envoy describes it to ext_authz.
type Request struct {
	Method  string
	Host    string
	Path    string
	Headers map[string]string
}

// Check sends one ext_authz check and returns whether it was allowed.
func (a *Authorizer) Check(t testing.TB, r Request) bool {
	t.Helper()
	host := r.Host
	if host == "" {
		host = "api.example.com"
	}
	headers := map[string]string{}
	for k, v := range r.Headers {
		headers[strings.ToLower(k)] = v
	}
	resp, err := a.srv.Check(context.Background(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: r.Method, Host: host, Path: r.Path, Headers: headers, Scheme: "https", Protocol: "HTTP/1.1"}},
		ContextExtensions: map[string]string{"tenant": a.TenantID, "gateway": a.GatewayID}}})
	if err != nil {
		t.Fatalf("authzkit: check %s %s: %v", r.Method, r.Path, err)
	}
	return resp.GetStatus().GetCode() == 0
}

// Flush stops taking decisions and delivers every logged one to the sink
// (it fails nothing: a test reads the sink to see what arrived).
func (a *Authorizer) Flush() {
	a.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		a.logs.Close(ctx)
	})
}

// Events is a sink that keeps the events it receives, in order.
type Events struct {
	mu     sync.Mutex
	events [][]byte
}

// Send implements gateway.LogSink.
func (s *Events) Send(_ context.Context, b *gateway.LogBatch) error {
	evs, err := b.Decode()
	if err != nil {
		return fmt.Errorf("%w: %v", gateway.ErrLogRejected, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range evs {
		s.events = append(s.events, e)
	}
	return nil
}

// All returns the events received, oldest first.
func (s *Events) All() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]byte(nil), s.events...)
}

// StoreSink appends the events to the store's decision log of their
// gateway (model.DecisionLogStream), as gatehouse serve's in-process
// authorizer does.
type StoreSink struct{ Store store.Runtime }

// Send implements gateway.LogSink.
func (s StoreSink) Send(ctx context.Context, b *gateway.LogBatch) error {
	evs, err := b.Decode()
	if err != nil {
		return fmt.Errorf("%w: %v", gateway.ErrLogRejected, err)
	}
	return s.Store.AppendLog(ctx, store.LogStream{Name: model.DecisionLogStream, TenantID: b.TenantID, Key: b.GatewayID}, evs)
}

// Tokens is a token validator for tests: "Bearer <subject>" is a valid
// token of that subject when the subject is a key of the map (its value
// the token's scopes), any other bearer token is present and invalid.
type Tokens map[string][]string

// Info implements gateway.TokenValidator.
func (v Tokens) Info(_ context.Context, authorization string) gateway.TokenInfo {
	sub, ok := strings.CutPrefix(authorization, "Bearer ")
	if !ok {
		return gateway.TokenInfo{}
	}
	scopes, known := v[sub]
	if !known {
		return gateway.TokenInfo{Present: true}
	}
	return gateway.TokenInfo{Present: true, Valid: true, Issuer: "https://issuer.example", Subject: sub,
		Claims: map[string]any{"sub": sub, "iss": "https://issuer.example"}, Scopes: scopes}
}

// Close implements gateway.TokenValidator.
func (Tokens) Close() {}
