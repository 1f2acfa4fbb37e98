package gateway

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
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

// DefaultMaskedHeaders are always erased from logged inputs
// (attributes.request.http.headers), whatever the letter case of the name.
var DefaultMaskedHeaders = []string{"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key"}

// DefaultMaskedQueryParameters are query parameters that carry credentials
// (OAuth tokens and codes, client secrets, passwords, API keys). Their
// values are always replaced by MaskedValue in the logged path, query and
// fragment, and they are erased from parsed_query; names are compared
// case-insensitively, after percent-decoding.
var DefaultMaskedQueryParameters = []string{
	"access_token", "id_token", "refresh_token", "token", "code", "client_secret", "client_assertion",
	"password", "api_key", "apikey", "api-key", "x-api-key", "key",
}

// MaskedValue replaces a masked query parameter's value.
const MaskedValue = "REDACTED"

// DecisionLogOptions configures a DecisionLogger.
type DecisionLogOptions struct {
	Sink LogSink
	// InstanceID labels every event (labels.id), like an OPA instance id.
	InstanceID string
	// MaskedHeaders are erased from the logged input in addition to
	// DefaultMaskedHeaders (names in any letter case).
	MaskedHeaders []string
	// MaskedQueryParameters are masked in addition to
	// DefaultMaskedQueryParameters (names in any letter case).
	MaskedQueryParameters []string
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
	opts  DecisionLogOptions
	queue chan logItem
	// masked and maskedParams hold lower-case header and query parameter
	// names.
	masked       map[string]bool
	maskedParams map[string]bool
	done         chan struct{}
	once         sync.Once
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
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.InstanceID == "" {
		opts.InstanceID = uuid.NewString()
	}
	l := &DecisionLogger{opts: opts, queue: make(chan logItem, opts.BufferSize), masked: map[string]bool{},
		maskedParams: map[string]bool{}, done: make(chan struct{})}
	for _, h := range append(slices.Clone(DefaultMaskedHeaders), opts.MaskedHeaders...) {
		l.masked[strings.ToLower(h)] = true
	}
	for _, p := range append(slices.Clone(DefaultMaskedQueryParameters), opts.MaskedQueryParameters...) {
		l.maskedParams[strings.ToLower(p)] = true
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
	input, erased, masked := l.mask(it.decision.Input)
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
	if len(masked) > 0 {
		ev["masked"] = masked
	}
	if it.decision.DryRun {
		ev["custom"] = map[string]any{"dry_run": true}
	}
	return json.Marshal(ev)
}

// urlHeaders hold a URL whose query parameters are masked like the path's
// (Envoy passes the pseudo-header :path among the headers).
var urlHeaders = map[string]bool{":path": true, "referer": true, "x-envoy-original-path": true}

// mask copies the input without credentials: the masked headers are
// erased; the masked query parameters' values in the path, query, fragment
// and URL-valued headers are replaced by MaskedValue; those parameters are
// erased from parsed_query. It returns the JSON pointers of what it erased
// and masked, as OPA's decision log masking does. The input itself is not
// changed (the policy saw it).
func (l *DecisionLogger) mask(input map[string]any) (out map[string]any, erased, masked []string) {
	const httpPtr = "/input/attributes/request/http/"
	attrs, _ := input["attributes"].(map[string]any)
	req, _ := attrs["request"].(map[string]any)
	h, _ := req["http"].(map[string]any)
	changes := map[string]any{} // new values of h's keys

	if headers, _ := h["headers"].(map[string]any); len(headers) > 0 {
		kept := make(map[string]any, len(headers))
		changed := false
		for k, v := range headers {
			name := strings.ToLower(k)
			switch str, isString := v.(string); {
			case l.masked[name]:
				erased = append(erased, httpPtr+"headers/"+pointerToken(k))
				changed = true
				continue
			case urlHeaders[name] && isString:
				if m, ok := l.maskURL(str); ok {
					v, changed = m, true
					masked = append(masked, httpPtr+"headers/"+pointerToken(k))
				}
			}
			kept[k] = v
		}
		if changed {
			changes["headers"] = kept
		}
	}
	for _, key := range []string{"path", "query", "fragment"} {
		v, _ := h[key].(string)
		var m string
		var ok bool
		if key == "path" {
			m, ok = l.maskURL(v)
		} else {
			m, ok = l.maskParams(v)
		}
		if ok {
			changes[key] = m
			masked = append(masked, httpPtr+key)
		}
	}
	out = input
	if len(changes) > 0 {
		newHTTP := make(map[string]any, len(h))
		for k, v := range h {
			newHTTP[k] = v
		}
		for k, v := range changes {
			newHTTP[k] = v
		}
		out = with(input, "attributes", with(attrs, "request", with(req, "http", newHTTP)))
	}
	if pq, _ := input["parsed_query"].(map[string]any); len(pq) > 0 {
		kept := make(map[string]any, len(pq))
		for k, v := range pq {
			if l.maskedParams[strings.ToLower(k)] {
				erased = append(erased, "/input/parsed_query/"+pointerToken(k))
				continue
			}
			kept[k] = v
		}
		if len(kept) != len(pq) {
			out = with(out, "parsed_query", kept)
		}
	}
	slices.Sort(erased)
	slices.Sort(masked)
	return out, erased, masked
}

// maskURL masks the parameters of a URL's (or request path's) query and
// fragment, keeping everything else byte for byte.
func (l *DecisionLogger) maskURL(raw string) (string, bool) {
	rest, frag, hasFrag := strings.Cut(raw, "#")
	path, query, hasQuery := strings.Cut(rest, "?")
	query, qChanged := l.maskParams(query)
	frag, fChanged := l.maskParams(frag)
	if !qChanged && !fChanged {
		return raw, false
	}
	out := path
	if hasQuery {
		out += "?" + query
	}
	if hasFrag {
		out += "#" + frag
	}
	return out, true
}

// maskParams replaces the values of masked parameters in an "a=1&b=2"
// list, keeping everything else byte for byte.
func (l *DecisionLogger) maskParams(raw string) (string, bool) {
	if raw == "" {
		return raw, false
	}
	parts := strings.Split(raw, "&")
	changed := false
	for i, part := range parts {
		name, _, hasValue := strings.Cut(part, "=")
		decoded, err := url.QueryUnescape(name)
		if err != nil {
			decoded = name
		}
		if hasValue && l.maskedParams[strings.ToLower(decoded)] {
			parts[i] = name + "=" + MaskedValue
			changed = true
		}
	}
	if !changed {
		return raw, false
	}
	return strings.Join(parts, "&"), true
}

// pointerToken escapes a JSON pointer reference token (RFC 6901).
func pointerToken(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
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
