package gateway

import (
	"encoding/base64"
	"encoding/json"
	"net/url"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/gatehouse-dev/gatehouse/routing"
)

// Request is one request to authorize: the opa-envoy-plugin input document
// plus the fields the fast path reads from it.
type Request struct {
	Method string
	Host   string
	// Path is the path without query or fragment: as sent, until Decide
	// sets the canonical path (routing.CanonicalPath) and RawQuery, the
	// query as the client sent it — what the decision is made on and what
	// the reverse proxy forwards.
	Path     string
	RawQuery string
	// PathError is set by Decide when the path is refused (never routed,
	// never forwarded).
	PathError *routing.PathError
	// Refused is set by Decide when the request is refused before any
	// policy: a refused path, a header name with '_', a query that is not
	// canonical (policies.CanonicalRequest).
	Refused *routing.PathError
	// OwnedHeaders are the gateway-owned headers the client sent (set by
	// Decide, which removes them from the input).
	OwnedHeaders  []string
	Authorization string
	// ContextExtensions are the route's ext_authz context extensions.
	ContextExtensions map[string]string
	// Input is the input document (input.gatehouse is added by Decide).
	Input map[string]any
}

// maxParsedBody caps the request bodies parsed into parsed_body.
const maxParsedBody = 1 << 20

// RequestFromCheck builds the input document from an Envoy CheckRequest,
// shaped as opa-envoy-plugin builds it (lower-camel-case keys of the
// protobuf JSON mapping, parsed_path, parsed_query, parsed_body,
// truncated_body, version). context_extensions is also given in snake case.
// Fields the fast path does not use and the plugin only passes through
// (metadata contexts, TLS session, peer certificates) are left out.
func RequestFromCheck(req *authv3.CheckRequest) *Request {
	attrs := req.GetAttributes()
	h := attrs.GetRequest().GetHttp()
	headers := make(map[string]any, len(h.GetHeaders()))
	for k, v := range h.GetHeaders() {
		headers[k] = v
	}
	httpIn := map[string]any{}
	put := func(k, v string) {
		if v != "" {
			httpIn[k] = v
		}
	}
	put("id", h.GetId())
	put("method", h.GetMethod())
	put("path", h.GetPath())
	put("host", h.GetHost())
	put("scheme", h.GetScheme())
	put("query", h.GetQuery())
	put("fragment", h.GetFragment())
	put("protocol", h.GetProtocol())
	put("body", h.GetBody())
	if len(headers) > 0 {
		httpIn["headers"] = headers
	}
	if h.GetSize() != 0 {
		httpIn["size"] = h.GetSize()
	}
	if raw := h.GetRawBody(); len(raw) > 0 {
		httpIn["rawBody"] = base64.StdEncoding.EncodeToString(raw)
	}
	request := map[string]any{"http": httpIn}
	if t := attrs.GetRequest().GetTime(); t != nil {
		request["time"] = map[string]any{"seconds": t.GetSeconds(), "nanos": int64(t.GetNanos())}
	}
	attributes := map[string]any{"request": request}
	if p := peer(attrs.GetSource()); p != nil {
		attributes["source"] = p
	}
	if p := peer(attrs.GetDestination()); p != nil {
		attributes["destination"] = p
	}
	ext := attrs.GetContextExtensions()
	if len(ext) > 0 {
		m := make(map[string]any, len(ext))
		for k, v := range ext {
			m[k] = v
		}
		attributes["contextExtensions"] = m
		attributes["context_extensions"] = m
	}
	input := map[string]any{
		"attributes": attributes,
		"version":    map[string]any{"ext_authz": "v3", "encoding": "protojson"},
	}
	pathOnly, rawQuery, _ := strings.Cut(h.GetPath(), "?")
	input["parsed_path"] = parsedPath(pathOnly)
	input["parsed_query"] = parsedQuery(rawQuery)
	body, truncated := parsedBody(h)
	input["parsed_body"], input["truncated_body"] = body, truncated

	return &Request{
		Method:            h.GetMethod(),
		Host:              h.GetHost(),
		Path:              routing.RequestPath(h.GetPath()),
		Authorization:     h.GetHeaders()["authorization"],
		ContextExtensions: ext,
		Input:             input,
	}
}

func peer(p *authv3.AttributeContext_Peer) map[string]any {
	if p == nil {
		return nil
	}
	out := map[string]any{}
	if sa := p.GetAddress().GetSocketAddress(); sa != nil {
		addr := map[string]any{"address": sa.GetAddress()}
		if port, ok := sa.GetPortSpecifier().(*corev3.SocketAddress_PortValue); ok {
			addr["portValue"] = int64(port.PortValue)
		}
		out["address"] = map[string]any{"socketAddress": addr}
	}
	if v := p.GetPrincipal(); v != "" {
		out["principal"] = v
	}
	if v := p.GetService(); v != "" {
		out["service"] = v
	}
	if len(p.GetLabels()) > 0 {
		labels := map[string]any{}
		for k, v := range p.GetLabels() {
			labels[k] = v
		}
		out["labels"] = labels
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// parsedPath is opa-envoy-plugin's parsed_path: the unescaped path split on
// "/" after its leading slashes ("/" is [""]).
func parsedPath(path string) []any {
	if u, err := url.PathUnescape(path); err == nil {
		path = u
	}
	parts := strings.Split(strings.TrimLeft(path, "/"), "/")
	out := make([]any, len(parts))
	for i, p := range parts {
		out[i] = p
	}
	return out
}

// parsedQuery is opa-envoy-plugin's parsed_query: name -> list of values.
func parsedQuery(raw string) map[string]any {
	raw, _, _ = strings.Cut(raw, "#")
	q, _ := url.ParseQuery(raw)
	out := make(map[string]any, len(q))
	for k, vs := range q {
		l := make([]any, len(vs))
		for i, v := range vs {
			l[i] = v
		}
		out[k] = l
	}
	return out
}

// parsedBody parses a JSON body (content-type containing application/json)
// as opa-envoy-plugin does; truncated says Envoy sent only part of it.
func parsedBody(h *authv3.AttributeContext_HttpRequest) (any, bool) {
	headers := h.GetHeaders()
	truncated := headers["x-envoy-auth-partial-body"] == "true"
	body := []byte(h.GetBody())
	if len(body) == 0 {
		body = h.GetRawBody()
	}
	if cl, err := strconv.ParseInt(headers["content-length"], 10, 64); err == nil && cl > int64(len(body)) {
		truncated = true
	}
	if len(body) == 0 || truncated || len(body) > maxParsedBody || !strings.Contains(headers["content-type"], "application/json") {
		return nil, truncated
	}
	var v any
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return nil, truncated
	}
	return v, truncated
}
