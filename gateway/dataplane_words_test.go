package gateway

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/genproto/googleapis/rpc/code"

	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/policies"
)

// lineBuffer collects JSON log lines (safe for concurrent writes).
type lineBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lineBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// lines are the logged records whose message starts with prefix.
func (b *lineBuffer) lines(t *testing.T, prefix string) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(b.buf.Bytes()))
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("a log line is not JSON: %q", sc.Text())
		}
		if msg, _ := rec["msg"].(string); strings.HasPrefix(msg, prefix) {
			out = append(out, rec)
		}
	}
	return out
}

func jsonLogger(b *lineBuffer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func checkWithExt(ext map[string]string) *authv3.CheckRequest {
	c := check("GET", "/healthz", nil)
	c.Attributes.ContextExtensions = ext
	return c
}

// TestChecksWithoutAnEngineSayWhy: a check this authorizer cannot decide is
// denied, and the answer (status, gRPC message, JSON body), the log line
// and the metrics say which case it is.
func TestChecksWithoutAnEngineSayWhy(t *testing.T) {
	type want struct {
		status  int32
		code    string // error_code of the body and reason of the log line
		message string // in the gRPC status message (the operator's words)
	}
	run := func(t *testing.T, def model.GatewayRef, setup func(*Engines), cases map[string]struct {
		ext  map[string]string
		want want
	}) {
		engines := NewEngines(def)
		activate(t, engines, testCompiled(t, nil), "7")
		if setup != nil {
			setup(engines)
		}
		var logs lineBuffer
		reg := prometheus.NewRegistry()
		metrics, err := NewMetrics(reg)
		if err != nil {
			t.Fatal(err)
		}
		srv := NewServer(ServerOptions{Engines: engines, Metrics: metrics, Logger: jsonLogger(&logs)})
		messages := map[string]string{}
		for name, c := range cases {
			t.Run(name, func(t *testing.T) {
				for range 3 { // logged once, answered every time
					res, err := srv.Check(context.Background(), checkWithExt(c.ext))
					if err != nil {
						t.Fatal(err)
					}
					d := res.GetDeniedResponse()
					if res.Status.Code != int32(code.Code_PERMISSION_DENIED) || d == nil || int32(d.Status.Code) != c.want.status {
						t.Fatalf("%v: %v", c.ext, res)
					}
					if !strings.Contains(res.Status.Message, c.want.message) {
						t.Fatalf("message %q, want it to contain %q", res.Status.Message, c.want.message)
					}
					var body map[string]any
					if err := json.Unmarshal([]byte(d.Body), &body); err != nil || body["error_code"] != c.want.code ||
						body["status_code"] != float64(c.want.status) || body["error"] == "" {
						t.Fatalf("body %q: %v", d.Body, err)
					}
					ct := ""
					for _, h := range d.Headers {
						if h.Header.Key == "content-type" {
							ct = h.Header.Value
						}
					}
					if ct != "application/json" {
						t.Fatalf("content-type %q", ct)
					}
					messages[res.Status.Message] = name
				}
				var mine []map[string]any
				for _, l := range logs.lines(t, "check denied: ") {
					if l["reason"] == c.want.code && l["msg"] == "check denied: "+messagesOf(messages, name) {
						mine = append(mine, l)
					}
				}
				if len(mine) != 1 || mine[0]["level"] != "WARN" || mine[0]["status"] != float64(c.want.status) {
					t.Fatalf("log lines for %s: %v (all: %v)", name, mine, logs.lines(t, ""))
				}
			})
		}
		if len(messages) != len(cases) {
			t.Errorf("the cases are not told apart: %v", messages)
		}
		if got := toFloat64(t, metrics.checks.WithLabelValues("deny", UnknownLabel, UnknownLabel)); got != float64(3*len(cases)) {
			t.Errorf("checks without an engine counted under %s: %v", UnknownLabel, got)
		}
	}

	t.Run("serve-like: no default gateway", func(t *testing.T) {
		run(t, model.GatewayRef{}, func(e *Engines) {
			other := testCompiled(t, func(c *policies.Config) {
				c.Tenant.ID = "globex"
			})
			activate(t, e, other, "1")
			activate(t, e, other, "2")
			e.Remove("globex", "edge")
		}, map[string]struct {
			ext  map[string]string
			want want
		}{
			"no context extensions":    {nil, want{503, "no_gateway", "no default gateway"}},
			"unknown gateway":          {map[string]string{"tenant": "acme", "gateway": "nope"}, want{503, "unknown_gateway", "unknown gateway acme/nope"}},
			"another tenant's gateway": {map[string]string{"tenant": "evil", "gateway": "edge"}, want{403, "foreign_tenant", `tenant "evil"`}},
			"a removed gateway":        {map[string]string{"tenant": "globex", "gateway": "edge"}, want{503, "no_bundle", "no policy bundle is active for gateway globex/edge"}},
		})
	})
	t.Run("standalone: a default gateway", func(t *testing.T) {
		run(t, model.GatewayRef{TenantID: "acme", GatewayID: "edge"}, nil, map[string]struct {
			ext  map[string]string
			want want
		}{
			"another tenant, no gateway named": {map[string]string{"tenant": "evil", "api": "health"}, want{403, "foreign_tenant", `tenant "evil"`}},
			"another tenant's gateway":         {map[string]string{"tenant": "evil", "gateway": "shop"}, want{403, "foreign_tenant", `tenant "evil"`}},
			"another gateway of the tenant":    {map[string]string{"tenant": "acme", "gateway": "other"}, want{503, "unknown_gateway", "unknown gateway acme/other"}},
			// Named without its tenant, another gateway is not decided with the default's bundle.
			"another gateway, no tenant named": {map[string]string{"gateway": "other"}, want{503, "unknown_gateway", "unknown gateway"}},
		})
	})
	t.Run("standalone: before the first bundle", func(t *testing.T) {
		engines := NewEngines(model.GatewayRef{TenantID: "acme", GatewayID: "edge"})
		srv := NewServer(ServerOptions{Engines: engines, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		res, _ := srv.Check(context.Background(), check("GET", "/healthz", nil))
		if res.GetDeniedResponse().GetStatus().GetCode() != 503 || !strings.Contains(res.Status.Message, "no policy bundle is active for gateway acme/edge") ||
			!strings.Contains(res.GetDeniedResponse().GetBody(), `"error_code":"no_bundle"`) {
			t.Fatalf("%v", res)
		}
	})
}

// messagesOf is the message the case name was answered with.
func messagesOf(messages map[string]string, name string) string {
	for m, n := range messages {
		if n == name {
			return m
		}
	}
	return ""
}

func counter(t *testing.T, c prometheus.Collector) float64 {
	t.Helper()
	return toFloat64(t, c)
}

// collected are the metrics c collects. (prometheus/testutil would need a
// module go.mod does not list; this is its ToFloat64 and CollectAndCount.)
func collected(t *testing.T, c prometheus.Collector) []*dto.Metric {
	t.Helper()
	ch := make(chan prometheus.Metric, 1024)
	c.Collect(ch)
	close(ch)
	var out []*dto.Metric
	for m := range ch {
		var pb dto.Metric
		if err := m.Write(&pb); err != nil {
			t.Fatal(err)
		}
		out = append(out, &pb)
	}
	return out
}

// collectAndCount is how many series c has.
func collectAndCount(t *testing.T, c prometheus.Collector) int {
	t.Helper()
	return len(collected(t, c))
}

// toFloat64 is the value of c's one counter or gauge.
func toFloat64(t *testing.T, c prometheus.Collector) float64 {
	t.Helper()
	ms := collected(t, c)
	if len(ms) != 1 {
		t.Fatalf("%d series, want 1", len(ms))
	}
	switch {
	case ms[0].Counter != nil:
		return ms[0].Counter.GetValue()
	case ms[0].Gauge != nil:
		return ms[0].Gauge.GetValue()
	}
	t.Fatalf("not a counter or gauge: %v", ms[0])
	return 0
}

// proxyFixture is a proxy in front of an upstream recording what reached it.
type proxyFixture struct {
	engines  *Engines
	metrics  *Metrics
	reg      *prometheus.Registry
	logs     *lineBuffer
	proxy    *httptest.Server
	mu       sync.Mutex
	bodies   []string
	upstream *httptest.Server
}

func newProxyFixture(t *testing.T, opts ProxyOptions, mutate func(*policies.Config)) *proxyFixture {
	t.Helper()
	f := &proxyFixture{logs: &lineBuffer{}, reg: prometheus.NewRegistry()}
	f.upstream = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.bodies = append(f.bodies, string(b))
		f.mu.Unlock()
		io.WriteString(w, "from upstream")
	}))
	t.Cleanup(f.upstream.Close)
	var err error
	if f.metrics, err = NewMetrics(f.reg); err != nil {
		t.Fatal(err)
	}
	f.engines = NewEngines(model.GatewayRef{TenantID: "acme", GatewayID: "edge"})
	activate(t, f.engines, testCompiled(t, func(c *policies.Config) {
		c.Services[0].Spec.URL = f.upstream.URL
		if mutate != nil {
			mutate(c)
		}
	}), "1")
	srv := NewServer(ServerOptions{Engines: f.engines, Metrics: f.metrics, Logger: jsonLogger(f.logs)})
	if opts.Logger == nil {
		opts.Logger = jsonLogger(f.logs)
	}
	f.proxy = httptest.NewServer(NewProxyWithOptions(srv, opts))
	t.Cleanup(f.proxy.Close)
	return f
}

func (f *proxyFixture) do(t *testing.T, method, path, body string, headers map[string]string) (*http.Response, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, f.proxy.URL+path, rd)
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	return res, string(b)
}

func (f *proxyFixture) reached() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.bodies...)
}

// TestProxyDenialsCarryTheReason: a denial without a policy body gets the
// JSON error shape with the decision's reason (off with NoDenyBody); a
// policy's body is sent as it is.
func TestProxyDenialsCarryTheReason(t *testing.T) {
	f := newProxyFixture(t, ProxyOptions{}, nil)
	res, body := f.do(t, "GET", "/pets/7", "", map[string]string{"x-key": "bad"})
	if res.StatusCode != 401 || res.Header.Get("Content-Type") != "application/json" ||
		body != `{"status_code":401,"error":"denied by policy pets","error_code":"unauthorized"}` ||
		res.Header.Get("WWW-Authenticate") != "Bearer" {
		t.Fatalf("denial: %d %v %q", res.StatusCode, res.Header, body)
	}
	res, body = f.do(t, "GET", "/cats", "", nil)
	if res.StatusCode != 404 || body != `{"status_code":404,"error":"no API matches GET /cats","error_code":"not_found"}` {
		t.Fatalf("unrouted: %d %q", res.StatusCode, body)
	}
	res, body = f.do(t, "GET", "/pets/locked", "", map[string]string{"x-key": "good"})
	if res.StatusCode != 423 || body != `{"error":"locked"}` {
		t.Fatalf("the policy's body: %d %q", res.StatusCode, body)
	}
	if len(f.reached()) != 0 {
		t.Fatalf("a denied request reached the upstream: %v", f.reached())
	}

	off := newProxyFixture(t, ProxyOptions{NoDenyBody: true}, nil)
	res, body = off.do(t, "GET", "/pets/7", "", map[string]string{"x-key": "bad"})
	if res.StatusCode != 401 || body != "" || res.Header.Get("Content-Type") == "application/json" || res.Header.Get("WWW-Authenticate") != "Bearer" {
		t.Fatalf("NoDenyBody: %d %v %q", res.StatusCode, res.Header, body)
	}
	res, body = off.do(t, "GET", "/pets/locked", "", map[string]string{"x-key": "good"})
	if res.StatusCode != 423 || body != `{"error":"locked"}` {
		t.Fatalf("NoDenyBody keeps the policy's body: %d %q", res.StatusCode, body)
	}
}

// TestProxyErrorsAreStructuredLogs: an unreachable upstream is a 502 in the
// error shape (the error itself, which names addresses, only in the log),
// one structured log line and an upstream error in the metrics.
func TestProxyErrorsAreStructuredLogs(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close()
	f := newProxyFixture(t, ProxyOptions{}, func(c *policies.Config) {
		c.Services = append(c.Services, policies.Object[model.ServiceSpec]{ID: "dead", Name: "dead", Spec: model.ServiceSpec{URL: dead}})
		c.APIs = append(c.APIs, policies.Object[model.APISpec]{ID: "dead-api", Spec: model.APISpec{ServiceID: "dead", Method: "GET", Path: "/dead", Public: true}})
	})
	res, body := f.do(t, "GET", "/dead", "", nil)
	if res.StatusCode != 502 || body != `{"status_code":502,"error":"the upstream service could not be reached","error_code":"bad_gateway"}` {
		t.Fatalf("unreachable upstream: %d %q", res.StatusCode, body)
	}
	lines := f.logs.lines(t, "proxy: ")
	if len(lines) != 1 || lines[0]["level"] != "ERROR" || lines[0]["service"] != "dead" || lines[0]["upstream"] != dead ||
		lines[0]["tenant"] != "acme" || lines[0]["gateway"] != "edge" || !strings.Contains(lines[0]["error"].(string), "refused") {
		t.Fatalf("log lines: %v", lines)
	}
	if got := counter(t, f.metrics.upstreamErrors.WithLabelValues("acme", "edge", "dead")); got != 1 {
		t.Fatalf("upstream errors: %v", got)
	}
}

// TestProxyBodyOverTheLimit: a body over max_request_bytes without
// allow_partial_message is Envoy's 413, in the proxy and when Envoy (or
// anything speaking ext_authz) sends a cut body anyway; with
// allow_partial_message the policy decides on the cut body, told it is
// cut. Differential: the proxy answers every body as an Envoy in front of
// the ext_authz service would.
func TestProxyBodyOverTheLimit(t *testing.T) {
	const limit = 16
	for _, partial := range []bool{false, true} {
		f := newProxyFixture(t, ProxyOptions{}, func(c *policies.Config) {
			c.Gateways[0].Spec.RequestBody = &model.RequestBodySettings{MaxRequestBytes: limit, AllowPartialMessage: partial}
		})
		srv := NewServer(ServerOptions{Engines: f.engines, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		// envoy answers a body as Envoy's ext_authz filter with this
		// with_request_body would: 413 itself, or a check with the first
		// max_request_bytes and x-envoy-auth-partial-body.
		envoy := func(body string) int {
			if len(body) > limit && !partial {
				return 413
			}
			c := check("POST", "/pets", map[string]string{"content-type": "application/json"})
			sent := body
			if len(sent) > limit {
				sent = sent[:limit]
			}
			c.Attributes.Request.Http.RawBody = []byte(sent)
			c.Attributes.Request.Http.Headers[partialBodyHeader] = "false"
			if len(body) > limit {
				c.Attributes.Request.Http.Headers[partialBodyHeader] = "true"
			}
			res, err := srv.Check(context.Background(), c)
			if err != nil {
				t.Fatal(err)
			}
			if res.GetOkResponse() != nil {
				return 200
			}
			return int(res.GetDeniedResponse().GetStatus().GetCode())
		}
		for _, body := range []string{`{"admin": true}`, `{"admin": true} `, `{"admin": true}  `, `{"admin": true, "pad": "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}`, `{"admin": false}`} {
			for _, chunked := range []bool{false, true} {
				var rd io.Reader = strings.NewReader(body)
				if chunked {
					rd = io.MultiReader(rd) // no length: sent chunked
				}
				req, _ := http.NewRequest("POST", f.proxy.URL+"/pets", rd)
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("X-Envoy-Auth-Partial-Body", "false") // a client's own is ignored
				res, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				got, _ := io.ReadAll(res.Body)
				res.Body.Close()
				want := envoy(body)
				if res.StatusCode != want {
					t.Errorf("partial=%v chunked=%v %q (%d bytes): proxy %d %q, Envoy and ext_authz %d", partial, chunked, body, len(body), res.StatusCode, got, want)
				}
				if want == 413 && string(got) != `{"status_code":413,"error":"`+BodyTooLargeReason+` (16 bytes)","error_code":"body_too_large"}` {
					t.Errorf("413 body %q", got)
				}
			}
		}
		// Allowed bodies (up to the limit) reach the upstream whole.
		for _, b := range f.reached() {
			if len(b) > limit || !strings.HasPrefix(b, `{"admin": true}`) {
				t.Errorf("partial=%v: the upstream got %q", partial, b)
			}
		}
		if len(f.reached()) != 4 {
			t.Errorf("partial=%v: %d requests reached the upstream, want 4", partial, len(f.reached()))
		}
	}
	t.Run("ext_authz told of a cut body without allow_partial_message: 413", func(t *testing.T) {
		engines := NewEngines(model.GatewayRef{TenantID: "acme", GatewayID: "edge"})
		activate(t, engines, testCompiled(t, func(c *policies.Config) {
			c.Gateways[0].Spec.RequestBody = &model.RequestBodySettings{MaxRequestBytes: limit}
		}), "1")
		srv := NewServer(ServerOptions{Engines: engines, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		for name, c := range map[string]*authv3.CheckRequest{
			"partial header": func() *authv3.CheckRequest {
				c := check("POST", "/pets", map[string]string{"content-type": "application/json", partialBodyHeader: "true"})
				c.Attributes.Request.Http.RawBody = []byte(`{"admin": true}`)
				return c
			}(),
			"more than the limit": func() *authv3.CheckRequest {
				c := check("POST", "/pets", map[string]string{"content-type": "application/json"})
				c.Attributes.Request.Http.Body = `{"admin": true, "pad": "xxxxxxx"}`
				return c
			}(),
		} {
			res, _ := srv.Check(context.Background(), c)
			if res.GetDeniedResponse().GetStatus().GetCode() != 413 || !strings.HasPrefix(res.Status.Message, BodyTooLargeReason) {
				t.Errorf("%s: %v", name, res)
			}
		}
	})
}

// TestUnauthorizedAsksForABearerToken: every 401 denial carries
// WWW-Authenticate (RFC 6750), also when the policy set http_status := 401
// itself; a policy's own challenge is kept.
func TestUnauthorizedAsksForABearerToken(t *testing.T) {
	mutate := func(c *policies.Config) {
		c.Policies = append(c.Policies,
			policies.Object[model.PolicySpec]{ID: "says-401", Name: "says-401", Spec: model.PolicySpec{Language: model.LanguageRego,
				Definition: "package policy\n\ndefault allow := false\n\nhttp_status := 401\n"}},
			policies.Object[model.PolicySpec]{ID: "own-challenge", Name: "own-challenge", Spec: model.PolicySpec{Language: model.LanguageRego,
				Definition: "package policy\n\ndefault allow := false\n\nhttp_status := 401\n\nheaders := {\"WWW-Authenticate\": `Basic realm=\"pets\"`}\n"}})
		c.APIs = append(c.APIs,
			policies.Object[model.APISpec]{ID: "a401", Spec: model.APISpec{ServiceID: "pets", Method: "GET", Path: "/401", PolicyID: "says-401"}},
			policies.Object[model.APISpec]{ID: "own", Spec: model.APISpec{ServiceID: "pets", Method: "GET", Path: "/own", PolicyID: "own-challenge"}})
	}
	f := newProxyFixture(t, ProxyOptions{}, mutate)
	srv := NewServer(ServerOptions{Engines: f.engines, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	for path, want := range map[string]string{
		"/pets/7": "Bearer", // the default 401 of a denial without a token
		"/401":    "Bearer", // the policy's own http_status := 401
		"/own":    `Basic realm="pets"`,
	} {
		res, _ := srv.Check(context.Background(), check("GET", path, nil))
		got := map[string]string{}
		for _, h := range res.GetDeniedResponse().GetHeaders() {
			got[strings.ToLower(h.Header.Key)] = h.Header.Value
		}
		if res.Status.Code != int32(code.Code_UNAUTHENTICATED) || res.GetDeniedResponse().GetStatus().GetCode() != 401 ||
			got["www-authenticate"] != want || len(res.GetDeniedResponse().GetHeaders()) != 1 {
			t.Errorf("ext_authz %s: %v", path, res)
		}
		pres, _ := f.do(t, "GET", path, "", nil)
		if pres.StatusCode != 401 || pres.Header.Values("WWW-Authenticate")[0] != want || len(pres.Header.Values("WWW-Authenticate")) != 1 {
			t.Errorf("proxy %s: %d %v", path, pres.StatusCode, pres.Header)
		}
	}
}

// TestMetricsPerGateway: checks and their duration are counted per tenant
// and gateway (only for gateways with a bundle), the proxy's upstream
// requests per service and status class; a removed gateway's series and a
// dropped service's disappear.
func TestMetricsPerGateway(t *testing.T) {
	withCats := func(c *policies.Config) {
		c.Services = append(c.Services, policies.Object[model.ServiceSpec]{ID: "cats", Name: "cats", Spec: model.ServiceSpec{URL: c.Services[0].Spec.URL}})
		c.APIs = append(c.APIs, policies.Object[model.APISpec]{ID: "cats-api", Spec: model.APISpec{ServiceID: "cats", Method: "GET", Path: "/cats", Public: true}})
	}
	f := newProxyFixture(t, ProxyOptions{}, withCats)
	f.do(t, "GET", "/healthz", "", nil)
	f.do(t, "GET", "/cats", "", nil)
	f.do(t, "GET", "/pets/1", "", map[string]string{"x-key": "bad"})
	if got := counter(t, f.metrics.checks.WithLabelValues("allow", "acme", "edge")); got != 2 {
		t.Errorf("allowed checks of acme/edge: %v", got)
	}
	if got := counter(t, f.metrics.checks.WithLabelValues("deny", "acme", "edge")); got != 1 {
		t.Errorf("denied checks of acme/edge: %v", got)
	}
	if n := collectAndCount(t, f.metrics.checkDuration); n != 1 {
		t.Errorf("duration series: %d", n)
	}
	for _, svc := range []string{"pets", "cats"} {
		if got := counter(t, f.metrics.upstreamRequests.WithLabelValues("acme", "edge", svc, "2xx")); got != 1 {
			t.Errorf("upstream requests of %s: %v", svc, got)
		}
	}
	if n := collectAndCount(t, f.metrics.upstreamDuration); n != 2 {
		t.Errorf("upstream duration series: %d", n)
	}
	mfs, err := f.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	lint, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil || len(lint) > 0 {
		t.Errorf("metrics lint: %v %v", lint, err)
	}

	// A revision without cats: its upstream series go, pets' stay.
	activate(t, f.engines, testCompiled(t, func(c *policies.Config) { c.Services[0].Spec.URL = f.upstream.URL }), "2")
	if n := collectAndCount(t, f.metrics.upstreamRequests); n != 1 {
		t.Errorf("upstream request series after cats was dropped: %d", n)
	}
	// The gateway removed: every series of it goes.
	f.engines.Remove("acme", "edge")
	for name, c := range map[string]prometheus.Collector{"checks": f.metrics.checks, "duration": f.metrics.checkDuration,
		"upstream requests": f.metrics.upstreamRequests, "upstream duration": f.metrics.upstreamDuration} {
		if n := collectAndCount(t, c); n != 0 {
			t.Errorf("%s series of a removed gateway: %d", name, n)
		}
	}
	// Its requests now count under the fixed value, never under its ids.
	f.do(t, "GET", "/healthz", "", nil)
	if got := counter(t, f.metrics.checks.WithLabelValues("deny", UnknownLabel, UnknownLabel)); got != 1 {
		t.Errorf("checks without a bundle: %v", got)
	}
	if n := collectAndCount(t, f.metrics.checks); n != 1 {
		t.Errorf("check series: %d", n)
	}
}

// TestProxyAnswersCORSPreflights: the proxy answers a preflight of an
// origin its service allows without authorization and without reaching
// the upstream, as Envoy's CORS filter ahead of ext_authz does; other
// OPTIONS requests are authorized as before; responses to an allowed
// origin, denials included, carry Access-Control-Allow-Origin.
func TestProxyAnswersCORSPreflights(t *testing.T) {
	f := newProxyFixture(t, ProxyOptions{}, func(c *policies.Config) {
		c.Services[0].Spec.CORS = &model.CORSSettings{AllowedOrigins: []string{"https://app.example.com"}, AllowedMethods: []string{"GET"}}
	})
	pre := map[string]string{"Origin": "https://app.example.com", "Access-Control-Request-Method": "GET"}
	res, _ := f.do(t, "OPTIONS", "/pets/7", "", pre)
	if res.StatusCode/100 != 2 || res.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" ||
		res.Header.Get("Access-Control-Allow-Methods") != "GET" {
		t.Fatalf("preflight: %d %v", res.StatusCode, res.Header)
	}
	other := map[string]string{"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"}
	if res, _ := f.do(t, "OPTIONS", "/pets/7", "", other); res.StatusCode/100 == 2 || res.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("a preflight of another origin was answered: %d %v", res.StatusCode, res.Header)
	}
	if len(f.reached()) != 0 {
		t.Fatalf("a preflight reached the upstream: %v", f.reached())
	}
	res, body := f.do(t, "GET", "/pets/7", "", map[string]string{"x-key": "good", "Origin": "https://app.example.com"})
	if res.StatusCode != 200 || body != "from upstream" || res.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" {
		t.Fatalf("actual request: %d %q %v", res.StatusCode, body, res.Header)
	}
	res, _ = f.do(t, "GET", "/pets/7", "", map[string]string{"x-key": "bad", "Origin": "https://app.example.com"})
	if res.StatusCode != 401 || res.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" {
		t.Fatalf("denial to an allowed origin: %d %v", res.StatusCode, res.Header)
	}
	res, _ = f.do(t, "GET", "/pets/7", "", map[string]string{"x-key": "good", "Origin": "https://evil.example"})
	if res.StatusCode != 200 || res.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("another origin's request: %d %v", res.StatusCode, res.Header)
	}
}

// TestProxyForwardsBigBodiesOfPublicAPIs: on a public API without a
// policy Envoy's route disables ext_authz and buffers nothing, so a body
// over max_request_bytes is forwarded; the proxy does the same, and still
// answers 413 on the APIs ext_authz decides.
func TestProxyForwardsBigBodiesOfPublicAPIs(t *testing.T) {
	f := newProxyFixture(t, ProxyOptions{}, func(c *policies.Config) {
		c.Gateways[0].Spec.RequestBody = &model.RequestBodySettings{MaxRequestBytes: 16}
		c.APIs = append(c.APIs, policies.Object[model.APISpec]{ID: "upload", Spec: model.APISpec{ServiceID: c.Services[0].ID,
			Method: "POST", Path: "/upload", Public: true}})
	})
	big := strings.Repeat("x", 100)
	if res, body := f.do(t, "POST", "/upload", big, nil); res.StatusCode != 200 || body != "from upstream" {
		t.Fatalf("public upload: %d %q", res.StatusCode, body)
	}
	if got := f.reached(); len(got) != 1 || got[0] != big {
		t.Fatalf("the upstream got %q", got)
	}
	if res, _ := f.do(t, "POST", "/pets", big, map[string]string{"x-key": "good"}); res.StatusCode != 413 {
		t.Fatalf("a decided API's big body: %d", res.StatusCode)
	}
}
