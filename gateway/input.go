package gateway

import (
	"encoding/base64"
	"encoding/json"
	"net/url"
	"strconv"
	"strings"
	"sync"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/gatehouse-dev/gatehouse/policies"
	"github.com/gatehouse-dev/gatehouse/routing"
)

// Request is one request to authorize: the fields the fast path reads from
// Envoy's CheckRequest, and the request itself, from which the policy input
// is built once, directly as an OPA value (see Input).
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
	// Decide; they are not in the policy input).
	OwnedHeaders  []string
	Authorization string
	// ContextExtensions are the route's ext_authz context extensions.
	ContextExtensions map[string]string

	// attrs is the request as Envoy described it (read-only).
	attrs *authv3.AttributeContext
	// view is how Decide has the input built (nil before Decide).
	view *inputView
	// policyAs, when set (EvaluateWith), is the policy evaluated in place
	// of the routed API's own.
	policyAs string

	inputOnce sync.Once
	input     ast.Value
}

// inputView is what the policy input is built with besides the request:
// the canonical request, the owned headers to leave out, whether to parse
// the body, and input.gatehouse.
type inputView struct {
	canon     policies.CanonicalRequest
	owned     map[string]bool
	parseBody bool
	gatehouse *ast.Term
}

// maxParsedBody caps the request bodies parsed into parsed_body.
const maxParsedBody = 1 << 20

// RequestFromCheck wraps an Envoy CheckRequest (which must not change
// afterwards). Nothing is built until Decide.
func RequestFromCheck(req *authv3.CheckRequest) *Request {
	attrs := req.GetAttributes()
	h := attrs.GetRequest().GetHttp()
	return &Request{
		Method:            h.GetMethod(),
		Host:              h.GetHost(),
		Path:              routing.RequestPath(h.GetPath()),
		Authorization:     h.GetHeaders()["authorization"],
		ContextExtensions: attrs.GetContextExtensions(),
		attrs:             attrs,
	}
}

// EvaluateWith has the request decided with policy policyID in place of
// the one its API is bound to, as if it were bound there (the policy test
// endpoint's "what would this policy decide on that route"); policyID
// must be a policy of the bundle. It must be called before Decide.
func (r *Request) EvaluateWith(policyID string) { r.policyAs = policyID }

// Input is the input document the policy sees (or saw), as an OPA value:
// the canonical request with input.gatehouse, once Decide has run. It is
// built at most once, the first time a policy or the decision log needs it.
// Before Decide it is the raw opa-envoy-plugin document (Document).
func (r *Request) Input() ast.Value {
	r.inputOnce.Do(func() {
		if r.view == nil {
			r.input = buildInput(r.attrs, nil)
			return
		}
		r.input = buildInput(r.attrs, r.view)
	})
	return r.input
}

// Document is the input document opa-envoy-plugin would give the bundle's
// pure-Rego entrypoint for this request (lower-camel-case keys of the
// protobuf JSON mapping, parsed_path, parsed_query, parsed_body,
// truncated_body, version; context_extensions also in snake case; metadata
// contexts, TLS session and peer certificates left out), with JSON types.
func (r *Request) Document() map[string]any {
	return jsonObject(buildInput(r.attrs, nil))
}

// jsonObject is an OPA object with JSON types (nil for anything else).
func jsonObject(v ast.Value) map[string]any {
	if v == nil {
		return nil
	}
	m, _ := ast.JSON(v)
	doc, _ := m.(map[string]any)
	return doc
}

// Keys of the input document, made once.
var (
	keyAttributes        = ast.StringTerm("attributes")
	keyRequest           = ast.StringTerm("request")
	keyHTTP              = ast.StringTerm("http")
	keyHeaders           = ast.StringTerm("headers")
	keyTime              = ast.StringTerm("time")
	keySeconds           = ast.StringTerm("seconds")
	keyNanos             = ast.StringTerm("nanos")
	keySource            = ast.StringTerm("source")
	keyDestination       = ast.StringTerm("destination")
	keyContextExtensions = ast.StringTerm("contextExtensions")
	keyContextExtSnake   = ast.StringTerm("context_extensions")
	keyVersion           = ast.StringTerm("version")
	keyParsedPath        = ast.StringTerm("parsed_path")
	keyParsedQuery       = ast.StringTerm("parsed_query")
	keyParsedBody        = ast.StringTerm("parsed_body")
	keyTruncatedBody     = ast.StringTerm("truncated_body")
	keyGatehouse         = ast.StringTerm("gatehouse")
	keyTenant            = ast.StringTerm("tenant")
	keyGateway           = ast.StringTerm("gateway")
	keyServiceID         = ast.StringTerm("service_id")
	keyAPIID             = ast.StringTerm("api_id")
	keyPathParams        = ast.StringTerm("path_params")
	keyToken             = ast.StringTerm("token")
	keyAddress           = ast.StringTerm("address")
	keySocketAddress     = ast.StringTerm("socketAddress")
	keyPortValue         = ast.StringTerm("portValue")
	keyPrincipal         = ast.StringTerm("principal")
	keyService           = ast.StringTerm("service")
	keyLabels            = ast.StringTerm("labels")
	keySize              = ast.StringTerm("size")
	keyRawBody           = ast.StringTerm("rawBody")

	httpStringKeys = [...]*ast.Term{ast.StringTerm("id"), ast.StringTerm("method"), ast.StringTerm("path"),
		ast.StringTerm("host"), ast.StringTerm("scheme"), ast.StringTerm("query"), ast.StringTerm("fragment"),
		ast.StringTerm("protocol"), ast.StringTerm("body")}

	versionValue = ast.ObjectTerm(ast.Item(ast.StringTerm("ext_authz"), ast.StringTerm("v3")),
		ast.Item(ast.StringTerm("encoding"), ast.StringTerm("protojson")))
	nullTerm  = ast.NullTerm()
	trueTerm  = ast.BooleanTerm(true)
	falseTerm = ast.BooleanTerm(false)
)

// commonTerms are string terms made once for the header names and values
// most requests carry.
var commonTerms = func() map[string]*ast.Term {
	m := map[string]*ast.Term{}
	for _, s := range []string{":authority", ":method", ":path", ":scheme", "accept", "accept-encoding",
		"accept-language", "authorization", "content-length", "content-type", "cookie", "host", "user-agent",
		"x-forwarded-for", "x-forwarded-proto", "x-request-id", "x-envoy-internal", "x-envoy-expected-rq-timeout-ms",
		"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "HTTP/1.1", "HTTP/2", "https", "http",
		"application/json", "*/*"} {
		m[s] = ast.StringTerm(s)
	}
	return m
}()

// termBuilder makes the terms of one input document out of one block of
// memory (a document holds a few dozen).
type termBuilder struct {
	terms []ast.Term
}

func newTermBuilder() *termBuilder {
	return &termBuilder{terms: make([]ast.Term, 0, 48)}
}

// term is a new term for v. The block grows by reallocation; terms already
// handed out stay where they are.
func (b *termBuilder) term(v ast.Value) *ast.Term {
	if len(b.terms) == cap(b.terms) {
		b.terms = make([]ast.Term, 0, 2*cap(b.terms))
	}
	b.terms = append(b.terms, ast.Term{Value: v})
	return &b.terms[len(b.terms)-1]
}

// str is a string term, shared when it is a common one.
func (b *termBuilder) str(s string) *ast.Term {
	if t, ok := commonTerms[s]; ok {
		return t
	}
	return b.term(ast.String(s))
}

// obj is an object term.
func (b *termBuilder) obj(items ...[2]*ast.Term) *ast.Term {
	return b.term(ast.NewObject(items...))
}

// boolTerm is a shared boolean term.
func boolTerm(b bool) *ast.Term {
	if b {
		return trueTerm
	}
	return falseTerm
}

// buildInput builds the input document as an OPA value in one pass. With
// view nil it is the raw opa-envoy-plugin document; with a view, the
// canonical request policies see: the canonical target as the path, the
// parsed path and query computed from it, the owned headers left out (the
// headers member is then always present), parsed_body only when the view
// asks for it (null otherwise), and input.gatehouse.
func buildInput(attrs *authv3.AttributeContext, view *inputView) ast.Value {
	b := newTermBuilder()
	h := attrs.GetRequest().GetHttp()
	rawPath := h.GetPath()

	var items [16][2]*ast.Term
	httpItems := items[:0]
	for i, v := range [...]string{h.GetId(), h.GetMethod(), rawPath, h.GetHost(), h.GetScheme(), h.GetQuery(),
		h.GetFragment(), h.GetProtocol(), h.GetBody()} {
		if i == 2 && view != nil && view.canon.PathError == nil {
			v = view.canon.Target
		}
		if v != "" {
			httpItems = append(httpItems, ast.Item(httpStringKeys[i], b.str(v)))
		}
	}
	if headers := h.GetHeaders(); len(headers) > 0 || view != nil {
		hs := make([][2]*ast.Term, 0, len(headers))
		for k, v := range headers {
			if view != nil && policies.IsOwnedHeader(view.owned, k) {
				continue
			}
			hs = append(hs, ast.Item(b.str(k), b.str(v)))
		}
		httpItems = append(httpItems, ast.Item(keyHeaders, b.obj(hs...)))
	}
	if n := h.GetSize(); n != 0 {
		httpItems = append(httpItems, ast.Item(keySize, ast.IntNumberTerm(int(n))))
	}
	if raw := h.GetRawBody(); len(raw) > 0 {
		httpItems = append(httpItems, ast.Item(keyRawBody, ast.StringTerm(base64.StdEncoding.EncodeToString(raw))))
	}

	var reqItems [2][2]*ast.Term
	request := append(reqItems[:0], ast.Item(keyHTTP, b.obj(httpItems...)))
	if t := attrs.GetRequest().GetTime(); t != nil {
		request = append(request, ast.Item(keyTime, ast.ObjectTerm(
			ast.Item(keySeconds, ast.NumberTerm(json.Number(strconv.FormatInt(t.GetSeconds(), 10)))),
			ast.Item(keyNanos, ast.IntNumberTerm(int(t.GetNanos()))))))
	}
	var attrItems [5][2]*ast.Term
	attributes := append(attrItems[:0], ast.Item(keyRequest, b.obj(request...)))
	if p := b.peer(attrs.GetSource()); p != nil {
		attributes = append(attributes, ast.Item(keySource, p))
	}
	if p := b.peer(attrs.GetDestination()); p != nil {
		attributes = append(attributes, ast.Item(keyDestination, p))
	}
	if ext := attrs.GetContextExtensions(); len(ext) > 0 {
		t := b.stringObject(ext)
		attributes = append(attributes, ast.Item(keyContextExtensions, t), ast.Item(keyContextExtSnake, t))
	}

	var parsedPathT, parsedQueryT *ast.Term
	if view != nil && view.canon.PathError == nil {
		parsedPathT, parsedQueryT = b.canonicalParsedPath(view.canon.Path), b.parsedQuery(view.canon.RawQuery, false)
	} else {
		pathOnly, rawQuery, _ := strings.Cut(rawPath, "?")
		parsedPathT, parsedQueryT = b.rawParsedPath(pathOnly), b.parsedQuery(rawQuery, true)
	}
	body, truncated := nullTerm, false
	if view == nil || view.parseBody {
		body, truncated = parsedBody(h)
	} else {
		truncated = bodyTruncated(h)
	}
	top := append(items[:0],
		ast.Item(keyAttributes, b.obj(attributes...)),
		ast.Item(keyVersion, versionValue),
		ast.Item(keyParsedPath, parsedPathT),
		ast.Item(keyParsedQuery, parsedQueryT),
		ast.Item(keyParsedBody, body),
		ast.Item(keyTruncatedBody, boolTerm(truncated)))
	if view != nil && view.gatehouse != nil {
		top = append(top, ast.Item(keyGatehouse, view.gatehouse))
	}
	return ast.NewObject(top...)
}

// stringObject is a map of strings as an object term.
func (b *termBuilder) stringObject(m map[string]string) *ast.Term {
	items := make([][2]*ast.Term, 0, len(m))
	for k, v := range m {
		items = append(items, ast.Item(b.str(k), b.str(v)))
	}
	return b.obj(items...)
}

func (b *termBuilder) peer(p *authv3.AttributeContext_Peer) *ast.Term {
	if p == nil {
		return nil
	}
	var items [4][2]*ast.Term
	out := items[:0]
	if sa := p.GetAddress().GetSocketAddress(); sa != nil {
		addr := []([2]*ast.Term){ast.Item(keyAddress, ast.StringTerm(sa.GetAddress()))}
		if port, ok := sa.GetPortSpecifier().(*corev3.SocketAddress_PortValue); ok {
			addr = append(addr, ast.Item(keyPortValue, ast.IntNumberTerm(int(port.PortValue))))
		}
		out = append(out, ast.Item(keyAddress, ast.ObjectTerm(ast.Item(keySocketAddress, ast.ObjectTerm(addr...)))))
	}
	if v := p.GetPrincipal(); v != "" {
		out = append(out, ast.Item(keyPrincipal, ast.StringTerm(v)))
	}
	if v := p.GetService(); v != "" {
		out = append(out, ast.Item(keyService, ast.StringTerm(v)))
	}
	if len(p.GetLabels()) > 0 {
		out = append(out, ast.Item(keyLabels, b.stringObject(p.GetLabels())))
	}
	if len(out) == 0 {
		return nil
	}
	return b.obj(out...)
}

// rawParsedPath is opa-envoy-plugin's parsed_path of a raw path: the
// unescaped path split on "/" after its leading slashes ("/" is [""]).
func (b *termBuilder) rawParsedPath(path string) *ast.Term {
	if u, err := url.PathUnescape(path); err == nil {
		path = u
	}
	return b.segments(strings.TrimLeft(path, "/"), false)
}

// canonicalParsedPath is policies.ParsedPath of a canonical path as a term:
// the segments after the leading '/', each unescaped.
func (b *termBuilder) canonicalParsedPath(path string) *ast.Term {
	return b.segments(strings.TrimLeft(path, "/"), true)
}

func (b *termBuilder) segments(path string, unescape bool) *ast.Term {
	terms := make([]*ast.Term, 0, strings.Count(path, "/")+1)
	for p := range strings.SplitSeq(path, "/") {
		if unescape {
			if u, err := url.PathUnescape(p); err == nil {
				p = u
			}
		}
		terms = append(terms, b.term(ast.String(p)))
	}
	return b.term(ast.NewArray(terms...))
}

// parsedQuery is opa-envoy-plugin's parsed_query: name → list of values
// (what follows a '#' dropped first for a raw query).
func (b *termBuilder) parsedQuery(raw string, cutFragment bool) *ast.Term {
	if cutFragment {
		raw, _, _ = strings.Cut(raw, "#")
	}
	if raw == "" {
		return b.obj()
	}
	q, _ := url.ParseQuery(raw)
	items := make([][2]*ast.Term, 0, len(q))
	for k, vs := range q {
		l := make([]*ast.Term, len(vs))
		for i, v := range vs {
			l[i] = b.term(ast.String(v))
		}
		items = append(items, ast.Item(b.term(ast.String(k)), b.term(ast.NewArray(l...))))
	}
	return b.obj(items...)
}

// bodyTruncated says Envoy sent only part of the body.
func bodyTruncated(h *authv3.AttributeContext_HttpRequest) bool {
	headers := h.GetHeaders()
	if headers["x-envoy-auth-partial-body"] == "true" {
		return true
	}
	n := len(h.GetBody())
	if n == 0 {
		n = len(h.GetRawBody())
	}
	cl, err := strconv.ParseInt(headers["content-length"], 10, 64)
	return err == nil && cl > int64(n)
}

// parsedBody parses a JSON body (content-type containing application/json)
// as opa-envoy-plugin does; truncated says Envoy sent only part of it.
func parsedBody(h *authv3.AttributeContext_HttpRequest) (*ast.Term, bool) {
	truncated := bodyTruncated(h)
	body := []byte(h.GetBody())
	if len(body) == 0 {
		body = h.GetRawBody()
	}
	if len(body) == 0 || truncated || len(body) > maxParsedBody || !strings.Contains(h.GetHeaders()["content-type"], "application/json") {
		return nullTerm, truncated
	}
	var v any
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return nullTerm, truncated
	}
	t, err := ast.InterfaceToValue(v)
	if err != nil {
		return nullTerm, truncated
	}
	return ast.NewTerm(t), truncated
}
