package gateway

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/policies"
)

// Proxy is the built-in reverse proxy for users without Envoy: the same
// decisions as the ext_authz service, enforced in front of the services'
// upstream URLs. Allowed requests go upstream with the decision's headers
// added and removed; denied ones get the decision's status, headers and
// body — a JSON body with the decision's reason when the policy gave none
// (ProxyOptions.NoDenyBody turns it off).
type Proxy struct {
	server *Server
	opts   ProxyOptions
	log    *slog.Logger
	mu     sync.Mutex
	// upstreams caches one reverse proxy per upstream URL.
	upstreams map[string]*httputil.ReverseProxy
}

// ProxyOptions configures the reverse proxy.
type ProxyOptions struct {
	// Transport forwards requests upstream (nil: http.DefaultTransport).
	Transport http.RoundTripper
	// Logger receives the proxy's errors (upstream unreachable, invalid
	// upstream URL, httputil.ReverseProxy's own messages) as structured
	// lines; nil: the server's logger.
	Logger *slog.Logger
	// NoDenyBody leaves denials without a policy body without a body, as
	// Envoy does. By default they get the one error shape,
	// {"status_code":403,"error":"<the decision's reason>","error_code":"forbidden"}
	// (Content-Type: application/json). A policy's body is always sent
	// as it is.
	NoDenyBody bool
}

// NewProxy returns a proxy deciding with server. transport may be nil.
func NewProxy(server *Server, transport http.RoundTripper) *Proxy {
	return NewProxyWithOptions(server, ProxyOptions{Transport: transport})
}

// NewProxyWithOptions returns a proxy deciding with server.
func NewProxyWithOptions(server *Server, opts ProxyOptions) *Proxy {
	if opts.Transport == nil {
		opts.Transport = http.DefaultTransport
	}
	log := opts.Logger
	if log == nil {
		log = server.opts.Logger
	}
	return &Proxy{server: server, opts: opts, log: log, upstreams: map[string]*httputil.ReverseProxy{}}
}

// ServeHTTP implements http.Handler.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	engine := p.server.opts.Engines.For(nil)
	// Hop-by-hop headers (RFC 9110 §7.6.1) go first, so that a client's
	// Connection header can neither hide a header from the policy nor
	// remove one the gateway sets.
	removeHopByHop(r.Header)
	// A CORS preflight of an origin a service allows is answered here,
	// without authorization, as Envoy's CORS filter (ahead of ext_authz)
	// answers it; the responses to allowed origins get their
	// Access-Control-* headers, denials included.
	if CORSPreflight(w, r, engine) {
		return
	}
	w = CORSResponseWriter(w, r, engine)
	check, err := CheckRequestFromHTTP(r, engine)
	if err != nil {
		// Deny when unsure: a body that could not be read is never decided on.
		p.log.WarnContext(r.Context(), "proxy: the request body could not be read", "method", r.Method, "host", r.Host, "error", err.Error())
		writeJSONError(w, http.StatusBadRequest, "", "the request body could not be read")
		return
	}
	req := RequestFromCheck(check)
	d, e := p.server.Decide(r.Context(), req)
	if !d.Allowed {
		p.deny(w, d)
		return
	}
	call := &upstreamCall{tenant: e.TenantID, gateway: e.GatewayID, service: d.ServiceID}
	if call.service == "" { // an unmatched route the gateway allows
		call.service = UnknownLabel
	}
	svc, ok := e.cfg.Services[d.ServiceID]
	if !ok {
		p.fail(w, r, call, http.StatusBadGateway, "no upstream service for this request", errors.New("the decision names no service of the bundle"))
		return
	}
	call.upstream = svc.URL
	rp, err := p.upstream(svc.URL)
	if err != nil {
		p.fail(w, r, call, http.StatusBadGateway, "invalid upstream URL", err)
		return
	}
	// The gateway's headers: whatever the client sent under an owned name is
	// removed, then the decision's removals and headers apply.
	for name := range r.Header {
		if policies.IsOwnedHeader(e.owned, name) {
			r.Header.Del(name)
		}
	}
	for _, h := range d.RequestHeadersToRemove {
		if name, ok := h.(string); ok {
			r.Header.Del(name)
		}
	}
	writeHeaders(r.Header, d.Headers, true)
	// Upstream gets exactly the canonical path and the query decided on.
	unescaped, err := url.PathUnescape(req.Path)
	if err != nil {
		writeJSONError(w, http.StatusBadRequest, "", "invalid canonical path")
		return
	}
	r.URL.Path, r.URL.RawPath, r.URL.RawQuery, r.URL.Fragment = unescaped, req.Path, req.RawQuery, ""
	if len(d.ResponseHeadersToAdd) > 0 {
		writeHeaders(w.Header(), d.ResponseHeadersToAdd, false)
	}
	call.start = time.Now()
	rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), upstreamCallKey{}, call)))
}

// deny answers a denied request: the decision's status, headers and body,
// or the JSON error shape with its reason when it has no body.
func (p *Proxy) deny(w http.ResponseWriter, d *Decision) {
	writeHeaders(w.Header(), d.Headers, true)
	status := d.HTTPStatus
	if status < 400 || status > 599 {
		status = http.StatusForbidden
	}
	body := d.Body
	if body == "" && !p.opts.NoDenyBody {
		body = denialJSON(status, "", d.Reason)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Content-Type-Options", "nosniff")
	}
	w.WriteHeader(status)
	io.WriteString(w, body)
}

// writeJSONError answers with the JSON error shape.
func writeJSONError(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	io.WriteString(w, denialJSON(status, code, message))
}

// upstreamCall is what the proxy knows of a request it forwards (or
// fails to): the labels of its metrics and log lines.
type upstreamCall struct {
	tenant, gateway, service, upstream string
	start                              time.Time
}

type upstreamCallKey struct{}

func callOf(ctx context.Context) *upstreamCall {
	c, _ := ctx.Value(upstreamCallKey{}).(*upstreamCall)
	return c
}

// fail answers a request the proxy could not forward (the JSON error
// shape; never the error itself, which may name internal addresses), logs
// it and counts it.
func (p *Proxy) fail(w http.ResponseWriter, r *http.Request, call *upstreamCall, status int, message string, err error) {
	p.log.ErrorContext(r.Context(), "proxy: "+message, "tenant", call.tenant, "gateway", call.gateway,
		"service", call.service, "upstream", call.upstream, "method", r.Method, "host", r.Host, "path", r.URL.Path,
		"status", status, "error", err.Error())
	p.observe(call, 0, true)
	writeJSONError(w, status, "", message)
}

// upstreamError is httputil.ReverseProxy's ErrorHandler: the upstream
// could not be reached or did not answer. 504 for a timeout, 502
// otherwise; a request its client abandoned is only logged (at debug).
func (p *Proxy) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	call := callOf(r.Context())
	if call == nil {
		call = &upstreamCall{tenant: UnknownLabel, gateway: UnknownLabel}
	}
	if r.Context().Err() != nil && errors.Is(err, context.Canceled) {
		p.log.DebugContext(r.Context(), "proxy: the client went away before the upstream answered", "tenant", call.tenant,
			"gateway", call.gateway, "service", call.service, "upstream", call.upstream, "method", r.Method, "path", r.URL.Path)
		w.WriteHeader(http.StatusBadGateway)
		return
	}
	status, message := http.StatusBadGateway, "the upstream service could not be reached"
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
		status, message = http.StatusGatewayTimeout, "the upstream service did not answer in time"
	}
	p.fail(w, r, call, status, message, err)
}

// upstreamResponse is httputil.ReverseProxy's ModifyResponse: it counts
// the upstream's answer.
func (p *Proxy) upstreamResponse(res *http.Response) error {
	if call := callOf(res.Request.Context()); call != nil {
		p.observe(call, res.StatusCode, false)
	}
	return nil
}

// observe counts one upstream request (failed: an upstream error) and its
// latency. Series of a gateway or service gone meanwhile are deleted again,
// as record does for checks.
func (p *Proxy) observe(call *upstreamCall, status int, failed bool) {
	m := p.server.opts.Metrics
	if m == nil {
		return
	}
	if failed {
		m.upstreamErrors.WithLabelValues(call.tenant, call.gateway, call.service).Inc()
	} else {
		m.upstreamRequests.WithLabelValues(call.tenant, call.gateway, call.service, codeClass(status)).Inc()
	}
	if !call.start.IsZero() {
		m.upstreamDuration.WithLabelValues(call.tenant, call.gateway, call.service).Observe(time.Since(call.start).Seconds())
	}
	cur := p.server.opts.Engines.Get(call.tenant, call.gateway)
	if cur == nil {
		m.forgetGateway(model.GatewayRef{TenantID: call.tenant, GatewayID: call.gateway})
	} else if _, ok := cur.cfg.Services[call.service]; !ok && call.service != UnknownLabel {
		labels := prometheus.Labels{"tenant": call.tenant, "gateway": call.gateway, "service": call.service}
		m.upstreamRequests.DeletePartialMatch(labels)
		m.upstreamDuration.DeletePartialMatch(labels)
		m.upstreamErrors.DeletePartialMatch(labels)
	}
}

func (p *Proxy) upstream(raw string) (*httputil.ReverseProxy, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if rp, ok := p.upstreams[raw]; ok {
		return rp, nil
	}
	target, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.SetXForwarded()
		},
		Transport:      p.opts.Transport,
		ErrorHandler:   p.upstreamError,
		ModifyResponse: p.upstreamResponse,
		// What the reverse proxy logs itself (a body copy that failed) is
		// a structured line too.
		ErrorLog: slog.NewLogLogger(p.log.Handler(), slog.LevelError),
	}
	p.upstreams[raw] = rp
	return rp, nil
}

// hopByHop are the hop-by-hop headers a proxy never forwards.
var hopByHop = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
	"Te", "Trailer", "Transfer-Encoding"}

// (Header names with '_' never get this far: the decision refuses them,
// policies.ReasonUnderscoreHeader.)

// removeHopByHop removes the hop-by-hop headers and those the Connection
// header names, keeping "Connection: Upgrade" (and Upgrade) for protocol
// upgrades such as WebSocket, which the reverse proxy handles itself.
func removeHopByHop(h http.Header) {
	upgrade := false
	for _, v := range h.Values("Connection") {
		for _, name := range strings.Split(v, ",") {
			name = textproto.TrimString(name)
			if strings.EqualFold(name, "upgrade") {
				upgrade = true
				continue
			}
			if name != "" {
				h.Del(name)
			}
		}
	}
	for _, name := range hopByHop {
		h.Del(name)
	}
	// Only WebSocket may upgrade: another protocol (h2c) would tunnel
	// requests past the gateway.
	if upgrade && strings.EqualFold(strings.TrimSpace(h.Get("Upgrade")), "websocket") {
		h.Set("Connection", "Upgrade")
		h.Set("Upgrade", "websocket")
	} else {
		h.Del("Upgrade")
	}
}

// writeHeaders applies {"name": "v" | ["v1", …]} to h.
func writeHeaders(h http.Header, headers map[string]any, overwrite bool) {
	names := make([]string, 0, len(headers))
	for k := range headers {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		if overwrite {
			h.Del(k)
		}
		switch v := headers[k].(type) {
		case string:
			h.Add(k, v)
		case []any:
			for _, x := range v {
				if s, ok := x.(string); ok {
					h.Add(k, s)
				}
			}
		}
	}
}

// CheckRequestFromHTTP describes an HTTP request as Envoy would in a
// CheckRequest. When the gateway asks for request bodies, the body is read
// (and restored) as Envoy's with_request_body buffers it: up to
// max_request_bytes, with x-envoy-auth-partial-body saying whether it was
// cut ("true") or whole ("false"); a client's own header of that name is
// dropped, as Envoy drops it. A body over the limit without
// allow_partial_message is not read at all: the header says "true" and the
// decision is the 413 Envoy answers (Server.Decide). An error reading the
// body is returned: nothing is decided on a body that may be cut short.
func CheckRequestFromHTTP(r *http.Request, e *Engine) (*authv3.CheckRequest, error) {
	headers := make(map[string]string, len(r.Header)+1)
	for k, vs := range r.Header {
		headers[strings.ToLower(k)] = strings.Join(vs, ",")
	}
	delete(headers, partialBodyHeader)
	// The request target exactly as the client sent it (r.URL.RequestURI
	// would re-encode it): canonicalisation is the decision's job.
	target := r.RequestURI
	if target == "" {
		target = r.URL.RequestURI()
	}
	headers[":authority"] = r.Host
	headers[":method"] = r.Method
	headers[":path"] = target
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	headers[":scheme"] = scheme
	h := &authv3.AttributeContext_HttpRequest{
		Method: r.Method, Path: target, Host: r.Host, Scheme: scheme,
		Protocol: r.Proto, Headers: headers, Size: r.ContentLength,
	}
	check := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: h}}}
	if e == nil || r.Body == nil || r.Body == http.NoBody {
		return check, nil
	}
	rb := e.cfg.Gateway.RequestBody
	if rb == nil || rb.MaxRequestBytes == 0 {
		return check, nil
	}
	limit := int64(rb.MaxRequestBytes)
	if r.ContentLength > limit && !rb.AllowPartialMessage {
		headers[partialBodyHeader] = "true"
		return check, nil
	}
	read, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	r.Body = readCloser{io.MultiReader(bytes.NewReader(read), r.Body), r.Body}
	if err != nil {
		return nil, err
	}
	if len(read) == 0 {
		return check, nil
	}
	body, partial := read, int64(len(read)) > limit
	if partial {
		body = read[:limit]
	}
	h.Body = string(body)
	headers[partialBodyHeader] = strconv.FormatBool(partial)
	return check, nil
}

// readCloser reads the restored body and closes the original one.
type readCloser struct {
	io.Reader
	io.Closer
}
