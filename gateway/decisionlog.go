package gateway

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
)

// LogSink delivers a batch of decision log events (OPA's format, one JSON
// object each).
type LogSink interface {
	Send(ctx context.Context, tenantID, gatewayID string, events []json.RawMessage) error
}

// DefaultMaskedHeaders are removed from logged inputs.
var DefaultMaskedHeaders = []string{"authorization", "proxy-authorization", "cookie", "x-api-key"}

// DecisionLogOptions configures a DecisionLogger.
type DecisionLogOptions struct {
	Sink LogSink
	// InstanceID labels every event (labels.id), like an OPA instance id.
	InstanceID string
	// MaskedHeaders are erased from the logged input (lower-case names).
	MaskedHeaders []string
	// BufferSize bounds the events waiting to be sent (default 10,000);
	// beyond it events are dropped and counted.
	BufferSize int
	// BatchSize and FlushInterval control uploads (defaults 500, 1 s).
	BatchSize     int
	FlushInterval time.Duration
	Metrics       *Metrics
	Logger        *slog.Logger
}

// DecisionLogger records every decision and uploads the events in batches
// from a background goroutine. Log never blocks: when the buffer is full the
// event is dropped and counted.
type DecisionLogger struct {
	opts   DecisionLogOptions
	queue  chan logItem
	masked map[string]bool
	done   chan struct{}
	once   sync.Once
}

type logItem struct {
	tenant, gateway, revision string
	decision                  *Decision
	at                        time.Time
	took                      time.Duration
}

// NewDecisionLogger starts the uploader; Close flushes and stops it.
func NewDecisionLogger(opts DecisionLogOptions) *DecisionLogger {
	if opts.BufferSize <= 0 {
		opts.BufferSize = 10000
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = 500
	}
	if opts.FlushInterval <= 0 {
		opts.FlushInterval = time.Second
	}
	if opts.MaskedHeaders == nil {
		opts.MaskedHeaders = DefaultMaskedHeaders
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.InstanceID == "" {
		opts.InstanceID = uuid.NewString()
	}
	l := &DecisionLogger{opts: opts, queue: make(chan logItem, opts.BufferSize), masked: map[string]bool{}, done: make(chan struct{})}
	for _, h := range opts.MaskedHeaders {
		l.masked[strings.ToLower(h)] = true
	}
	go l.run()
	return l
}

// Log queues a decision without blocking.
func (l *DecisionLogger) Log(e *Engine, d *Decision, at time.Time, took time.Duration) {
	select {
	case l.queue <- logItem{tenant: e.TenantID, gateway: e.GatewayID, revision: e.Revision, decision: d, at: at, took: took}:
	default:
		if l.opts.Metrics != nil {
			l.opts.Metrics.logsDropped.Inc()
		}
	}
}

// Close flushes the buffered events (until ctx ends) and stops the uploader.
func (l *DecisionLogger) Close(ctx context.Context) {
	l.once.Do(func() { close(l.queue) })
	select {
	case <-l.done:
	case <-ctx.Done():
	}
}

func (l *DecisionLogger) run() {
	defer close(l.done)
	type key struct{ tenant, gateway string }
	batches := map[key][]json.RawMessage{}
	count := 0
	flush := func() {
		for k, evs := range batches {
			l.send(k.tenant, k.gateway, evs)
		}
		batches, count = map[key][]json.RawMessage{}, 0
	}
	ticker := time.NewTicker(l.opts.FlushInterval)
	defer ticker.Stop()
	for {
		select {
		case it, ok := <-l.queue:
			if !ok {
				flush()
				return
			}
			ev, err := l.event(it)
			if err != nil {
				l.opts.Logger.Warn("encode decision log event", "error", err.Error())
				continue
			}
			k := key{it.tenant, it.gateway}
			batches[k] = append(batches[k], ev)
			if count++; count >= l.opts.BatchSize {
				flush()
			}
		case <-ticker.C:
			flush()
		}
	}
}

// send uploads with a few retries; events that cannot be delivered are
// dropped and counted (the buffer must keep moving).
func (l *DecisionLogger) send(tenant, gateway string, evs []json.RawMessage) {
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = l.opts.Sink.Send(ctx, tenant, gateway, evs)
		cancel()
		if err == nil {
			if l.opts.Metrics != nil {
				l.opts.Metrics.logsSent.Add(float64(len(evs)))
			}
			return
		}
		time.Sleep(time.Duration(attempt+1) * 200 * time.Millisecond)
	}
	l.opts.Logger.Warn("decision logs dropped", "events", len(evs), "error", err.Error())
	if l.opts.Metrics != nil {
		l.opts.Metrics.logsDropped.Add(float64(len(evs)))
	}
}

// event renders OPA's decision log event (plugins/logs EventV1).
func (l *DecisionLogger) event(it logItem) (json.RawMessage, error) {
	input, erased := l.mask(it.decision.Input)
	ev := map[string]any{
		"decision_id": uuid.NewString(),
		"labels":      map[string]string{"id": l.opts.InstanceID, "tenant": it.tenant, "gateway": it.gateway, "app": "gatehouse-authorizer"},
		"bundles":     map[string]any{"gatehouse": map[string]any{"revision": it.revision}},
		"path":        "gatehouse/authz/decision",
		"input":       input,
		"result":      it.decision.Document(),
		"timestamp":   it.at.UTC().Format(time.RFC3339Nano),
		"metrics":     map[string]any{"timer_gatehouse_check_ns": it.took.Nanoseconds()},
	}
	if len(erased) > 0 {
		ev["erased"] = erased
	}
	if it.decision.DryRun {
		ev["custom"] = map[string]any{"dry_run": true}
	}
	return json.Marshal(ev)
}

// mask copies the input with the masked headers removed.
func (l *DecisionLogger) mask(input map[string]any) (map[string]any, []string) {
	attrs, _ := input["attributes"].(map[string]any)
	req, _ := attrs["request"].(map[string]any)
	h, _ := req["http"].(map[string]any)
	headers, _ := h["headers"].(map[string]any)
	var erased []string
	for name := range headers {
		if l.masked[name] {
			erased = append(erased, "/input/attributes/request/http/headers/"+name)
		}
	}
	if len(erased) == 0 {
		return input, nil
	}
	kept := make(map[string]any, len(headers))
	for k, v := range headers {
		if !l.masked[k] {
			kept[k] = v
		}
	}
	return with(input, "attributes", with(attrs, "request", with(req, "http", with(h, "headers", kept)))), erased
}

// with returns a shallow copy of m with key set to v.
func with(m map[string]any, key string, v any) map[string]any {
	out := make(map[string]any, len(m))
	for k, x := range m {
		out[k] = x
	}
	out[key] = v
	return out
}

// HTTPLogSink posts events to the control plane's bundle service
// (…/opa/logs, gzip JSON array) with a gateway credential.
type HTTPLogSink struct {
	// URL is the gateway's bundle service base, …/gateways/{gw}/opa.
	URL        string
	Credential string
	Client     *http.Client
}

// Send implements LogSink.
func (s *HTTPLogSink) Send(ctx context.Context, _, _ string, events []json.RawMessage) error {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write([]byte("["))
	for i, e := range events {
		if i > 0 {
			zw.Write([]byte(","))
		}
		zw.Write(e)
	}
	zw.Write([]byte("]"))
	if err := zw.Close(); err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(s.URL, "/")+"/logs", &buf)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+s.Credential)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Content-Encoding", "gzip")
	res, err := s.client().Do(req)
	if err != nil {
		return fmt.Errorf("upload decision logs: %w", err)
	}
	res.Body.Close()
	if res.StatusCode/100 != 2 {
		return fmt.Errorf("upload decision logs: %s", res.Status)
	}
	return nil
}

func (s *HTTPLogSink) client() *http.Client {
	if s.Client != nil {
		return s.Client
	}
	return http.DefaultClient
}
