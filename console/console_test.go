package console

import (
	"bytes"
	"compress/gzip"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-dev/gatehouse/internal/httpapi"
)

func newEngine(t *testing.T) *gin.Engine {
	t.Helper()
	m, err := httpapi.NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	e := httpapi.NewEngine(slog.New(slog.DiscardHandler), m)
	c, err := New()
	if err != nil {
		t.Fatal(err)
	}
	c.Register(e)
	// What serve mounts beside it: the authorization servers' catch-all
	// must not take /console/….
	e.Any("/:tid/:aid/*rest", func(g *gin.Context) { g.String(http.StatusTeapot, "oauth") })
	return e
}

func get(t *testing.T, e http.Handler, method, path string, headers ...string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(method, path, nil)
	for i := 0; i+1 < len(headers); i += 2 {
		r.Header.Set(headers[i], headers[i+1])
	}
	w := httptest.NewRecorder()
	e.ServeHTTP(w, r)
	return w
}

func TestEveryAnswerCarriesTheSecurityHeaders(t *testing.T) {
	e := newEngine(t)
	for _, tc := range []struct {
		path   string
		status int
		ctype  string
	}{
		{"/console/", 200, "text/html; charset=utf-8"},
		{"/console/index.html", 200, "text/html; charset=utf-8"},
		{"/console/js/main.js", 200, "text/javascript; charset=utf-8"},
		{"/console/vendor/codemirror.min.js", 200, "text/javascript; charset=utf-8"},
		{"/console/console.css", 200, "text/css; charset=utf-8"},
		{"/console/favicon.svg", 200, "image/svg+xml"},
		{"/console", 301, ""},
		{"/console/nope.js", 404, "application/json; charset=utf-8"},
		{"/console/../go.mod", 404, "application/json; charset=utf-8"},
	} {
		w := get(t, e, "GET", tc.path)
		if w.Code != tc.status {
			t.Errorf("GET %s: %d, want %d: %s", tc.path, w.Code, tc.status, w.Body)
			continue
		}
		h := w.Header()
		page := tc.status == 200 && strings.HasPrefix(tc.ctype, "text/html")
		if got := h.Get("Content-Security-Policy"); !page && got != ContentSecurityPolicy {
			t.Errorf("GET %s: CSP %q", tc.path, got)
		}
		if h.Get("X-Content-Type-Options") != "nosniff" || h.Get("X-Frame-Options") != "DENY" || h.Get("Referrer-Policy") != "no-referrer" {
			t.Errorf("GET %s: headers %v", tc.path, h)
		}
		if tc.ctype != "" && h.Get("Content-Type") != tc.ctype {
			t.Errorf("GET %s: Content-Type %q, want %q", tc.path, h.Get("Content-Type"), tc.ctype)
		}
		if page && h.Get("Cache-Control") != "no-store" {
			t.Errorf("GET %s: Cache-Control %q", tc.path, h.Get("Cache-Control"))
		}
		if tc.status == 200 && !page && (h.Get("Cache-Control") != "no-cache" || h.Get("ETag") == "") {
			t.Errorf("GET %s: Cache-Control %q, ETag %q", tc.path, h.Get("Cache-Control"), h.Get("ETag"))
		}
	}
	if loc := get(t, e, "GET", "/console").Header().Get("Location"); loc != "/console/" {
		t.Errorf("redirect to %q", loc)
	}
	if w := get(t, e, "GET", "/acme/default/.well-known/openid-configuration"); w.Code != http.StatusTeapot {
		t.Errorf("the console took another route: %d", w.Code)
	}
}

var nonceMeta = regexp.MustCompile(`<meta name="gatehouse-style-nonce" content="([A-Za-z0-9_-]+)">`)

// TestThePageHasAFreshStyleNonce: each answer of the page names a new
// nonce in its policy (for styles only) and in its meta element.
func TestThePageHasAFreshStyleNonce(t *testing.T) {
	e := newEngine(t)
	seen := map[string]bool{}
	for range 3 {
		w := get(t, e, "GET", "/console/")
		m := nonceMeta.FindStringSubmatch(w.Body.String())
		if m == nil || len(m[1]) < 20 || seen[m[1]] {
			t.Fatalf("no fresh nonce in the page: %v", m)
		}
		seen[m[1]] = true
		csp := w.Header().Get("Content-Security-Policy")
		if csp != PagePolicy(m[1]) || !strings.Contains(csp, "style-src 'self' 'nonce-"+m[1]+"'") ||
			!strings.Contains(csp, "script-src 'self';") {
			t.Fatalf("the page's policy: %q (nonce %s)", csp, m[1])
		}
		if strings.Contains(w.Body.String(), noncePlaceholder) || w.Header().Get("ETag") != "" {
			t.Fatalf("the placeholder is left, or the page has an ETag")
		}
	}
}

func TestThePolicyIsStrict(t *testing.T) {
	for _, want := range []string{"default-src 'none'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'",
		"object-src 'none'", "base-uri 'none'", "form-action 'none'", "connect-src 'self'"} {
		if !strings.Contains(ContentSecurityPolicy, want) {
			t.Errorf("the policy lacks %q", want)
		}
	}
	if strings.Contains(ContentSecurityPolicy, "unsafe") {
		t.Errorf("the policy allows something unsafe: %s", ContentSecurityPolicy)
	}
}

func TestRevalidationAndCompression(t *testing.T) {
	e := newEngine(t)
	first := get(t, e, "GET", "/console/vendor/codemirror.min.js")
	tag := first.Header().Get("ETag")
	if w := get(t, e, "GET", "/console/vendor/codemirror.min.js", "If-None-Match", tag); w.Code != http.StatusNotModified || w.Body.Len() != 0 {
		t.Fatalf("If-None-Match %s: %d (%d bytes)", tag, w.Code, w.Body.Len())
	}
	if w := get(t, e, "GET", "/console/vendor/codemirror.min.js", "If-None-Match", `"other"`); w.Code != 200 {
		t.Fatalf("another ETag: %d", w.Code)
	}
	gz := get(t, e, "GET", "/console/vendor/codemirror.min.js", "Accept-Encoding", "br, gzip")
	if gz.Header().Get("Content-Encoding") != "gzip" || gz.Body.Len() >= first.Body.Len()/2 {
		t.Fatalf("gzip: %q, %d bytes of %d", gz.Header().Get("Content-Encoding"), gz.Body.Len(), first.Body.Len())
	}
	zr, err := gzip.NewReader(gz.Body)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := io.ReadAll(zr)
	if err != nil || !bytes.Equal(plain, first.Body.Bytes()) {
		t.Fatalf("the gzipped body is not the file (%v)", err)
	}
	if w := get(t, e, "GET", "/console/vendor/codemirror.min.js", "Accept-Encoding", "gzip;q=0"); w.Header().Get("Content-Encoding") != "" {
		t.Fatal("gzip sent although q=0")
	}
	head := get(t, e, "HEAD", "/console/")
	if head.Code != 200 || head.Body.Len() != 0 || head.Header().Get("Content-Length") == "" {
		t.Fatalf("HEAD: %d, %d bytes, length %q", head.Code, head.Body.Len(), head.Header().Get("Content-Length"))
	}
	if w := get(t, e, "POST", "/console/"); w.Code != http.StatusMethodNotAllowed {
		t.Fatalf("POST: %d", w.Code)
	}
}

var (
	inlineScript = regexp.MustCompile(`(?is)<script(?:\s[^>]*)?>\s*[^<\s]`)
	scriptTag    = regexp.MustCompile(`(?is)<script\b[^>]*>`)
	handlerAttr  = regexp.MustCompile(`(?i)\son[a-z]+\s*=`)
	styleThings  = regexp.MustCompile(`(?i)<style\b|\sstyle\s*=`)
	jsStyleAttr  = regexp.MustCompile(`setAttribute\(\s*["']style["']|\.innerHTML\s*=|insertAdjacentHTML|document\.write|\beval\(|new Function\(`)
)

// TestNoInlineScriptOrStyle: the markup and the console's own scripts
// keep to what the policy allows (no inline script, handler attribute or
// style; no HTML built from strings, no eval).
func TestNoInlineScriptOrStyle(t *testing.T) {
	err := fs.WalkDir(assets, "assets", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasPrefix(p, "assets/vendor/") {
			return err
		}
		b, err := fs.ReadFile(assets, p)
		if err != nil {
			return err
		}
		s := string(b)
		switch {
		case strings.HasSuffix(p, ".html"):
			if inlineScript.MatchString(s) {
				t.Errorf("%s has an inline script", p)
			}
			for _, tag := range scriptTag.FindAllString(s, -1) {
				if !strings.Contains(tag, `src="`) {
					t.Errorf("%s: a script without src: %s", p, tag)
				}
			}
			if handlerAttr.MatchString(s) || styleThings.MatchString(s) {
				t.Errorf("%s has an inline handler or style", p)
			}
		case strings.HasSuffix(p, ".js"):
			if m := jsStyleAttr.FindString(s); m != "" {
				t.Errorf("%s uses %q", p, m)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestTheEditorBundleIsVendored: the bundle and its notice are embedded,
// and the notice names the packages with their versions and licences.
func TestTheEditorBundleIsVendored(t *testing.T) {
	js, err := fs.ReadFile(assets, "assets/vendor/codemirror.min.js")
	if err != nil || len(js) < 100_000 {
		t.Fatalf("the editor bundle: %d bytes, %v", len(js), err)
	}
	notice, err := fs.ReadFile(assets, "assets/vendor/codemirror.LICENSE.txt")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"@codemirror/view@", "@codemirror/lint@", "codemirror@", "MIT License"} {
		if !bytes.Contains(notice, []byte(want)) {
			t.Errorf("the notice lacks %q", want)
		}
	}
}

func TestAcceptsGzip(t *testing.T) {
	for h, want := range map[string]bool{
		"": false, "gzip": true, "GZIP": true, "deflate, gzip;q=0.5": true, "gzip;q=0": false, "gzip; q=0.0": false,
		"br": false, "x-gzip": false, "gzip;q=1.0, br": true,
	} {
		if got := acceptsGzip(h); got != want {
			t.Errorf("acceptsGzip(%q) = %v", h, got)
		}
	}
}
