package gateway

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/policies"
	"github.com/gatehouse-dev/gatehouse/routing/pathcorpus"
)

// recorder is an upstream that remembers what it received.
type recorder struct {
	mu      sync.Mutex
	target  string
	headers http.Header
	hits    int
}

func (u *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	u.target, u.headers, u.hits = r.RequestURI, r.Header.Clone(), u.hits+1
	u.mu.Unlock()
	io.WriteString(w, "upstream")
}

func (u *recorder) last() (string, http.Header, int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.target, u.headers, u.hits
}

// siteConfig is the gateway of the enforcement-gap report: a public
// "GET /{p...}" beside a denied "* /admin/{p...}".
func siteConfig(upstream string) func(*policies.Config) {
	return func(c *policies.Config) {
		c.Services = []policies.Object[model.ServiceSpec]{{ID: "site", Name: "site", Spec: model.ServiceSpec{URL: upstream}}}
		c.APIs = []policies.Object[model.APISpec]{
			{ID: "public", Spec: model.APISpec{ServiceID: "site", Method: "GET", Path: "/{p...}", Public: true}},
			{ID: "admin", Spec: model.APISpec{ServiceID: "site", Method: "*", Path: "/admin/{p...}", PolicyID: "deny"}},
		}
		c.Policies = []policies.Object[model.PolicySpec]{{ID: "deny", Name: "deny", Spec: model.PolicySpec{
			Language: model.LanguageValidators, Validators: []model.ValidatorConfig{{Name: "false"}}}}}
	}
}

// startSite activates siteConfig in front of a recording upstream and
// serves it with the reverse proxy; it returns the engine, the proxy's
// address and the upstream.
func startSite(t *testing.T) (*Engine, string, *recorder) {
	t.Helper()
	up := &recorder{}
	upstream := httptest.NewServer(up)
	t.Cleanup(upstream.Close)
	engines := NewEngines(model.GatewayRef{TenantID: "acme", GatewayID: "edge"})
	eng := activate(t, engines, testCompiled(t, siteConfig(upstream.URL)), "1")
	proxy := httptest.NewServer(NewProxy(NewServer(ServerOptions{Engines: engines}), nil))
	t.Cleanup(proxy.Close)
	return eng, strings.TrimPrefix(proxy.URL, "http://"), up
}

// rawRequest sends a request line with the target exactly as given (an
// http.Client would re-encode it) and returns the status code.
func rawRequest(t *testing.T, addr, method, target string, headers map[string]string) int {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: site.example.com\r\nConnection: close\r\n", method, target)
	for k, v := range headers {
		fmt.Fprintf(&b, "%s: %s\r\n", k, v)
	}
	b.WriteString("\r\n")
	if _, err := io.WriteString(conn, b.String()); err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("%s %.100q: %v", method, target, err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode
}

// TestEveryPathClassDecidedAndForwardedAlike runs every path class through
// the Go fast path, the bundle's Rego entrypoint and the reverse proxy, and
// requires the same decision from each and, when allowed, that the upstream
// receives exactly the canonical path and the query as sent. (The policy
// test endpoint runs the same table in package admin.)
func TestEveryPathClassDecidedAndForwardedAlike(t *testing.T) {
	ctx := context.Background()
	eng, addr, up := startSite(t)

	for _, method := range []string{"GET", "POST"} {
		for _, c := range pathcorpus.Cases() {
			t.Run(method+" "+c.Class, func(t *testing.T) {
				short := c.Target[:min(len(c.Target), 80)]
				chk := check(method, c.Target, nil)
				fast, err := eng.Decide(ctx, RequestFromCheck(chk))
				if err != nil {
					t.Fatal(err)
				}
				rego, err := eng.rego.Decision(ctx, RequestFromCheck(chk).Document())
				if err != nil {
					t.Fatal(err)
				}
				if g, w := normalize(t, fast.Document()), normalize(t, rego); !reflect.DeepEqual(g, w) {
					t.Fatalf("fast path and Rego disagree on %q:\nfast: %v\nrego: %v", short, g, w)
				}
				wantAllowed := c.Status == 0 && method == "GET" && !strings.HasPrefix(c.Canonical, "/admin/")
				wantStatus := c.Status
				switch {
				case wantAllowed:
					wantStatus = 200
				case c.Status == 0 && strings.HasPrefix(c.Canonical, "/admin/"):
					wantStatus = 401 // the admin policy denies, no token was sent
				case c.Status == 0:
					wantStatus = 404 // only GET is public
				}
				if fast.Allowed != wantAllowed || fast.HTTPStatus != wantStatus {
					t.Fatalf("%s %q: allowed %v status %d (%.100s), want allowed %v status %d", method, short,
						fast.Allowed, fast.HTTPStatus, fast.Reason, wantAllowed, wantStatus)
				}

				_, _, hitsBefore := up.last()
				status := rawRequest(t, addr, method, c.Target, nil)
				target, _, hits := up.last()
				if wantAllowed {
					want := c.Canonical
					if _, q, ok := strings.Cut(c.Target, "?"); ok {
						want += "?" + q
					}
					if status != 200 || hits != hitsBefore+1 || target != want {
						t.Fatalf("proxy: status %d, upstream got %.100q (hits %d→%d), want 200 and %.100q", status, target, hitsBefore, hits, want)
					}
					return
				}
				if hits != hitsBefore {
					t.Fatalf("proxy forwarded a denied request (%.100q) to the upstream", target)
				}
				// Go's HTTP server refuses some malformed request lines
				// itself, with 400, before the proxy sees them.
				if status != wantStatus {
					t.Fatalf("proxy: status %d, want %d", status, wantStatus)
				}
			})
		}
	}
}

// TestRequestRefusalsDecidedAlike: the other refusals of the canonical
// request — a header name with '_' (CGI-style upstreams read "X_User" as
// the owned "X-User"), a query with ';' or an invalid escape (parsers read
// them differently) — are made alike by the fast path, the Rego entrypoint
// and the reverse proxy, and never forwarded; a public API ignores an
// invalid token everywhere (Envoy does not call the authorizer there).
func TestRequestRefusalsDecidedAlike(t *testing.T) {
	ctx := context.Background()
	eng, addr, up := startSite(t)
	for _, tc := range []struct {
		name, target string
		headers      map[string]string
		status       int
	}{
		{"underscore header", "/public/page", map[string]string{"X_User": "root"}, 400},
		{"underscore owned prefix", "/public/page", map[string]string{"x_gatehouse_tenant": "beta"}, 400},
		{"semicolon in query", "/public/page?x=1;admin=1", nil, 400},
		{"invalid query escape", "/public/page?a=%zz", nil, 400},
		{"truncated query escape", "/public/page?a=%4", nil, 400},
		{"query kept", "/public/page?a=%41&b=c+d", nil, 200},
		{"invalid token on a public API", "/public/page", map[string]string{"Authorization": "Bearer garbage"}, 200},
		{"dash header", "/public/page", map[string]string{"X-Trace-Id": "1"}, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := map[string]string{}
			for k, v := range tc.headers {
				h[strings.ToLower(k)] = v
			}
			chk := check("GET", tc.target, h)
			fast, err := eng.Decide(ctx, RequestFromCheck(chk))
			if err != nil {
				t.Fatal(err)
			}
			rego, err := eng.rego.Decision(ctx, RequestFromCheck(chk).Document())
			if err != nil {
				t.Fatal(err)
			}
			if g, w := normalize(t, fast.Document()), normalize(t, rego); !reflect.DeepEqual(g, w) {
				t.Fatalf("fast path and Rego disagree:\nfast: %v\nrego: %v", g, w)
			}
			if fast.HTTPStatus != tc.status {
				t.Fatalf("status %d (%s), want %d", fast.HTTPStatus, fast.Reason, tc.status)
			}
			_, _, before := up.last()
			status := rawRequest(t, addr, "GET", tc.target, tc.headers)
			target, _, hits := up.last()
			switch {
			case status != tc.status:
				t.Fatalf("proxy: %d, want %d", status, tc.status)
			case tc.status != 200 && hits != before:
				t.Fatalf("proxy forwarded a refused request: %q", target)
			case tc.status == 200 && target != tc.target:
				t.Fatalf("proxy forwarded %q, want %q", target, tc.target)
			}
		})
	}
}
