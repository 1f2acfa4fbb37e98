package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/gatehouse-dev/gatehouse/internal/testkit"
)

// TestDataPlaneWords runs serve and a separate authorizer with its reverse
// proxy (issue 18): the in-process ext_authz tells an unknown gateway,
// another tenant's and a request naming none apart; the proxy's 401 of a
// policy saying http_status := 401 asks for a bearer token and carries the
// decision's reason as JSON; the authorizer's metrics name its tenant and
// gateway and count the upstream's answers.
func TestDataPlaneWords(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "upstream saw %s %s", r.Method, r.URL.Path)
	}))
	defer upstream.Close()
	cp := startServe(t, serveOptions{DataDir: t.TempDir(), Token: testToken})
	c := newClient(t, cp.URL, testToken)
	g := setupGateway(t, c, upstream.URL)

	t.Run("the in-process ext_authz says why it cannot decide", func(t *testing.T) {
		inproc := authzClient(t, cp.waitLog(t, "ext_authz listening", "addr"))
		testkit.Eventually(t, 20*time.Second, decides(t, inproc, "k1", map[string]string{"tenant": "acme", "gateway": "edge"}, 0),
			"the in-process authorizer's bundle")
		for _, tc := range []struct {
			ext     map[string]string
			status  int32
			code    string
			message string
		}{
			{nil, 503, "no_gateway", "no default gateway"},
			{map[string]string{"tenant": "acme", "gateway": "nope"}, 503, "unknown_gateway", "unknown gateway acme/nope"},
			{map[string]string{"tenant": "evil", "gateway": "edge"}, 403, "foreign_tenant", `tenant "evil"`},
		} {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			res, err := inproc.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{ContextExtensions: tc.ext,
				Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
					Method: "GET", Path: "/pets/1", Host: "pets.example.com", Headers: map[string]string{"x-api-key": "k1"}}}}})
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			d := res.GetDeniedResponse()
			var body map[string]any
			if d == nil || int32(d.GetStatus().GetCode()) != tc.status || json.Unmarshal([]byte(d.Body), &body) != nil ||
				body["error_code"] != tc.code || !strings.Contains(res.Status.Message, tc.message) {
				t.Errorf("%v: %v", tc.ext, res)
			}
		}
	})

	authz, _ := startAuthorizer(t, cp.URL, g, t.TempDir(), "--proxy-addr", "127.0.0.1:0")
	proxy := "http://" + authz.waitLog(t, "reverse proxy listening", "addr")
	health := "http://" + authz.waitLog(t, "authorizer health listening", "addr")
	get := func(url, key string) (*http.Response, string) {
		req, _ := http.NewRequest("GET", url, nil)
		if key != "" {
			req.Header.Set("X-Api-Key", key)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res, string(b)
	}
	testkit.Eventually(t, 20*time.Second, func() error {
		res, body := get(proxy+"/pets/3", "k1")
		return testkit.Check(res.StatusCode == 200 && body == "upstream saw GET /pets/3", "proxy: %d %q", res.StatusCode, body)
	}, "the authorizer's first bundle, through its proxy")

	t.Run("the proxy's 401 asks for a bearer token and says why", func(t *testing.T) {
		res, body := get(proxy+"/pets/3", "wrong")
		if res.StatusCode != 401 || res.Header.Get("WWW-Authenticate") != "Bearer" || res.Header.Get("Content-Type") != "application/json" ||
			body != `{"status_code":401,"error":"bad or missing key","error_code":"unauthorized"}` {
			t.Fatalf("%d %v %q", res.StatusCode, res.Header, body)
		}
	})

	t.Run("with --proxy-deny-body=false the proxy's denials have no body", func(t *testing.T) {
		quiet, _ := startAuthorizer(t, cp.URL, g, t.TempDir(), "--proxy-addr", "127.0.0.1:0", "--proxy-deny-body=false")
		quietProxy := "http://" + quiet.waitLog(t, "reverse proxy listening", "addr")
		testkit.Eventually(t, 20*time.Second, func() error {
			res, _ := get(quietProxy+"/pets/3", "k1")
			return testkit.Check(res.StatusCode == 200, "proxy: %d", res.StatusCode)
		}, "the second authorizer's first bundle")
		res, body := get(quietProxy+"/pets/3", "wrong")
		if res.StatusCode != 401 || res.Header.Get("WWW-Authenticate") != "Bearer" || body != "" {
			t.Fatalf("%d %v %q", res.StatusCode, res.Header, body)
		}
	})

	t.Run("the authorizer's metrics name its gateway and count the upstream", func(t *testing.T) {
		_, metrics := get(health+"/metrics", "")
		for _, want := range []string{
			`gatehouse_authorizer_checks_total{gateway="edge",outcome="allow",tenant="acme"}`,
			`gatehouse_authorizer_checks_total{gateway="edge",outcome="deny",tenant="acme"} 1`,
			`gatehouse_authorizer_check_duration_seconds_count{gateway="edge",tenant="acme"}`,
			`gatehouse_proxy_upstream_requests_total{code_class="2xx",gateway="edge",service="pets",tenant="acme"}`,
			`gatehouse_proxy_upstream_duration_seconds_count{gateway="edge",service="pets",tenant="acme"}`,
		} {
			if !strings.Contains(metrics, want) {
				t.Errorf("no %s in the metrics", want)
			}
		}
	})
}
