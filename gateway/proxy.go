package gateway

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"net/url"
	"sort"
	"strings"
	"sync"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/gatehouse-dev/gatehouse/policies"
)

// Proxy is the built-in reverse proxy for users without Envoy: the same
// decisions as the ext_authz service, enforced in front of the services'
// upstream URLs. Allowed requests go upstream with the decision's headers
// added and removed; denied ones get the decision's status, headers and
// body.
type Proxy struct {
	server *Server
	mu     sync.Mutex
	// upstreams caches one reverse proxy per upstream URL.
	upstreams map[string]*httputil.ReverseProxy
	transport http.RoundTripper
}

// NewProxy returns a proxy deciding with server. transport may be nil.
func NewProxy(server *Server, transport http.RoundTripper) *Proxy {
	if transport == nil {
		transport = http.DefaultTransport
	}
	return &Proxy{server: server, upstreams: map[string]*httputil.ReverseProxy{}, transport: transport}
}

// ServeHTTP implements http.Handler.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	engine := p.server.opts.Engines.For(nil)
	// Hop-by-hop headers (RFC 9110 §7.6.1) go first, so that a client's
	// Connection header can neither hide a header from the policy nor
	// remove one the gateway sets.
	removeHopByHop(r.Header)
	check := checkRequestFromHTTP(r, engine)
	req := RequestFromCheck(check)
	d, e := p.server.Decide(r.Context(), req)
	if !d.Allowed {
		writeHeaders(w.Header(), d.Headers, true)
		status := d.HTTPStatus
		if status < 400 || status > 599 {
			status = http.StatusForbidden
		}
		w.WriteHeader(status)
		io.WriteString(w, d.Body)
		return
	}
	svc, ok := e.cfg.Services[d.ServiceID]
	if !ok {
		http.Error(w, "no upstream service for this request", http.StatusBadGateway)
		return
	}
	rp, err := p.upstream(svc.URL)
	if err != nil {
		http.Error(w, "invalid upstream URL", http.StatusBadGateway)
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
		http.Error(w, "invalid canonical path", http.StatusBadRequest)
		return
	}
	r.URL.Path, r.URL.RawPath, r.URL.RawQuery, r.URL.Fragment = unescaped, req.Path, req.RawQuery, ""
	if len(d.ResponseHeadersToAdd) > 0 {
		writeHeaders(w.Header(), d.ResponseHeadersToAdd, false)
	}
	rp.ServeHTTP(w, r)
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
		Transport: p.transport,
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

// checkRequestFromHTTP describes an HTTP request as Envoy would in a
// CheckRequest. The body is read (and restored) when the gateway asks for
// request bodies.
func checkRequestFromHTTP(r *http.Request, e *Engine) *authv3.CheckRequest {
	headers := make(map[string]string, len(r.Header)+1)
	for k, vs := range r.Header {
		headers[strings.ToLower(k)] = strings.Join(vs, ",")
	}
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
	if e != nil && e.cfg.Gateway.RequestBody != nil && r.Body != nil {
		limit := int64(e.cfg.Gateway.RequestBody.MaxRequestBytes)
		body, _ := io.ReadAll(io.LimitReader(r.Body, limit))
		r.Body = io.NopCloser(io.MultiReader(bytes.NewReader(body), r.Body))
		h.Body = string(body)
		if int64(len(body)) == limit && e.cfg.Gateway.RequestBody.AllowPartialMessage {
			headers["x-envoy-auth-partial-body"] = "true"
		}
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: h}}}
}
