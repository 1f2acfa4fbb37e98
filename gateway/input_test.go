package gateway

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"math/rand"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/policies"
)

// TestPolicyInputIsTheCanonicalDocument: the input the fast path builds in
// one pass, as OPA values, is exactly the opa-envoy-plugin document made
// canonical by policies.CanonicalizeInput (what the Rego entrypoint does)
// plus input.gatehouse — for a generated corpus of requests (refused paths,
// owned and odd headers, bodies, context extensions, peers, times).
func TestPolicyInputIsTheCanonicalDocument(t *testing.T) {
	ctx := context.Background()
	rng := rand.New(rand.NewSource(20261202))
	for ci := 0; ci < 10; ci++ {
		cfg := randomConfig(t, rng)
		eng, tokens := randomEngine(t, cfg)
		if !eng.terms.parseBody {
			t.Fatal("the corpus' policies read input.parsed_body, but the engine does not parse bodies")
		}
		for ri := 0; ri < 100; ri++ {
			check := randomRequest(t, rng, cfg)
			if rng.Intn(3) == 0 {
				decorate(check)
			}
			req := RequestFromCheck(check)
			d, err := eng.Decide(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			want := RequestFromCheck(check).Document()
			policies.CanonicalizeInput(want, eng.owned)
			gh := map[string]any{"tenant": "acme", "gateway": "gw"}
			if d.APIID != "" {
				params := map[string]any{}
				_, p, _ := eng.route(req)
				for k, v := range p {
					params[k] = v
				}
				gh["service_id"], gh["api_id"], gh["path_params"] = d.ServiceID, d.APIID, params
				gh["token"] = tokens.Info(ctx, req.Authorization).Value()
			}
			want["gatehouse"] = gh
			if g, w := normalize(t, d.InputDocument()), normalize(t, want); !reflect.DeepEqual(g, w) {
				gj, _ := json.Marshal(g)
				wj, _ := json.Marshal(w)
				t.Fatalf("config %d request %d:\n got %s\nwant %s", ci, ri, gj, wj)
			}
		}
	}
}

// decorate gives a request the members the corpus lacks: peers, a time,
// a size, a raw body.
func decorate(c *authv3.CheckRequest) {
	c.Attributes.Source = &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
		SocketAddress: &corev3.SocketAddress{Address: "10.0.0.7", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 51000}}}},
		Principal: "spiffe://client", Labels: map[string]string{"app": "web"}}
	c.Attributes.Destination = &authv3.AttributeContext_Peer{Service: "pets"}
	c.Attributes.Request.Time = timestamppb.New(timestamppb.Now().AsTime())
	c.Attributes.Request.Http.Size = 42
	c.Attributes.Request.Http.Scheme, c.Attributes.Request.Http.Protocol = "https", "HTTP/2"
	if c.Attributes.Request.Http.Body == "" {
		c.Attributes.Request.Http.RawBody = []byte(`{"raw":true}`)
	}
}

// TestBodiesParsedOnlyForPoliciesThatReadThem: a gateway none of whose
// policies reads input.parsed_body never parses a body (the policy sees
// null), and decides as the Rego entrypoint does; one whose policy reads it
// gets the parsed body.
func TestBodiesParsedOnlyForPoliciesThatReadThem(t *testing.T) {
	ctx := context.Background()
	body := func(c *authv3.CheckRequest) *authv3.CheckRequest {
		c.Attributes.Request.Http.Headers["content-type"] = "application/json"
		c.Attributes.Request.Http.Body = `{"admin":true}`
		return c
	}
	reads := testCompiled(t, nil) // petsRego reads input.parsed_body.admin
	ignores := testCompiled(t, func(c *policies.Config) {
		c.Policies[0].Spec.Definition = "package policy\n\nallow if input.attributes.request.http.method == \"POST\"\n"
	})
	for _, tc := range []struct {
		name     string
		compiled *policies.Compiled
		parsed   bool
	}{{"a policy reads the body", reads, true}, {"no policy reads the body", ignores, false}} {
		t.Run(tc.name, func(t *testing.T) {
			eng := activate(t, NewEngines(model.GatewayRef{TenantID: "acme", GatewayID: "edge"}), tc.compiled, "1")
			if eng.terms.parseBody != tc.parsed {
				t.Fatalf("parseBody = %v, want %v", eng.terms.parseBody, tc.parsed)
			}
			chk := body(check("POST", "/pets", nil))
			d, err := eng.Decide(ctx, RequestFromCheck(chk))
			if err != nil {
				t.Fatal(err)
			}
			got := d.InputDocument()["parsed_body"]
			if tc.parsed && !reflect.DeepEqual(got, map[string]any{"admin": true}) || !tc.parsed && got != nil {
				t.Fatalf("parsed_body %v", got)
			}
			if !d.Allowed {
				t.Fatalf("denied: %s", d.Reason)
			}
			want, err := eng.rego.Decision(ctx, RequestFromCheck(chk).Document())
			if err != nil {
				t.Fatal(err)
			}
			if g, w := normalize(t, d.Document()), normalize(t, want); !reflect.DeepEqual(g, w) {
				t.Fatalf("fast path %v, rego %v", g, w)
			}
		})
	}
}

// TestDocumentIsThePluginDocument: Document, built as OPA values, is the
// document the previous, map-based builder made (referenceDocument, kept
// here as the specification), for the generated corpus.
func TestDocumentIsThePluginDocument(t *testing.T) {
	rng := rand.New(rand.NewSource(20261203))
	for ci := 0; ci < 5; ci++ {
		cfg := randomConfig(t, rng)
		for ri := 0; ri < 200; ri++ {
			check := randomRequest(t, rng, cfg)
			if rng.Intn(2) == 0 {
				decorate(check)
			}
			if g, w := normalize(t, RequestFromCheck(check).Document()), normalize(t, referenceDocument(check)); !reflect.DeepEqual(g, w) {
				gj, _ := json.Marshal(g)
				wj, _ := json.Marshal(w)
				t.Fatalf("request %d:\n got %s\nwant %s", ri, gj, wj)
			}
		}
	}
}

// referenceDocument is how the input document was built before it was
// built as OPA values: a map, shaped as opa-envoy-plugin shapes it.
func referenceDocument(req *authv3.CheckRequest) map[string]any {
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
	if p := refPeer(attrs.GetSource()); p != nil {
		attributes["source"] = p
	}
	if p := refPeer(attrs.GetDestination()); p != nil {
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
	input["parsed_path"] = refParsedPath(pathOnly)
	input["parsed_query"] = refParsedQuery(rawQuery)
	body, truncated := refParsedBody(h)
	input["parsed_body"], input["truncated_body"] = body, truncated

	return input
}

func refPeer(p *authv3.AttributeContext_Peer) map[string]any {
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
func refParsedPath(path string) []any {
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
func refParsedQuery(raw string) map[string]any {
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
func refParsedBody(h *authv3.AttributeContext_HttpRequest) (any, bool) {
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
