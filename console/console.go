// Package console is Gatehouse's web console: static HTML, CSS and
// JavaScript embedded in the binary and served at /console/ by `gatehouse
// serve` and `gatehouse control-plane` on the admin API's listener.
//
// The console is a client of the public admin API only (/api/admin/{tid}/…
// and /api/system/tenants): it signs in with Gatehouse (OpenID Connect,
// code flow with PKCE, run in the browser as the built-in public client
// model.ConsoleClientID of the admin servers, whose redirect URI is this
// page: assets/js/oidc.js) or takes a credential pasted on its login
// screen, sends the access token or credential as an `Authorization:
// Bearer` header and keeps it in sessionStorage; it sets no cookie and
// the server keeps no session. Its
// editor is a vendored CodeMirror 6 bundle (assets/vendor, rebuilt from npm
// by `make console-assets`), so neither building nor running Gatehouse
// needs Node.js.
//
// Every answer carries a strict Content-Security-Policy (scripts, styles,
// images and API calls from this origin only; no inline script or style
// attribute; no framing), nosniff, no-referrer and a revalidating cache
// policy with a content ETag (the page: a fresh style nonce, no caching). The package knows gin,
// internal/httpapi (for its 404 and 405 answers) and model (its path), nothing of the admin API.
package console

import (
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/gatehouse-dev/gatehouse/internal/httpapi"
	"github.com/gatehouse-dev/gatehouse/model"
)

// Prefix is where the console is served: the path of the redirect URI
// of the console's OAuth client (model.ConsoleRedirectURI).
const Prefix = model.ConsolePath

// ContentSecurityPolicy is the policy of every console answer but the
// page itself: scripts, styles, images, fonts and API calls from this
// origin only, nothing inline, no plugins, no framing, no forms posted
// anywhere.
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"font-src 'self'; connect-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'none'; " +
	"frame-ancestors 'none'; object-src 'none'"

// PagePolicy is the policy of the page (index.html) with its style nonce:
// the editor (CodeMirror) writes its generated style sheets into <style>
// elements, which carry the nonce of the answer (EditorView.cspNonce); its
// inline styles go through the CSSOM, which CSP does not restrict. Scripts
// never get a nonce.
func PagePolicy(nonce string) string {
	return strings.Replace(ContentSecurityPolicy, "style-src 'self'", "style-src 'self' 'nonce-"+nonce+"'", 1)
}

// noncePlaceholder is replaced in index.html by each answer's nonce.
const noncePlaceholder = "__GATEHOUSE_STYLE_NONCE__"

//go:embed assets
var assets embed.FS

// file is one embedded asset, ready to serve.
type file struct {
	body, gzipped []byte
	contentType   string
	etag          string
}

// Console serves the embedded assets.
type Console struct {
	files map[string]*file
}

// New reads the embedded assets (and compresses the larger ones once).
func New() (*Console, error) {
	return newFromFS(assets, "assets")
}

func newFromFS(fsys fs.FS, root string) (*Console, error) {
	c := &Console{files: map[string]*file{}}
	err := fs.WalkDir(fsys, root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := fs.ReadFile(fsys, p)
		if err != nil {
			return fmt.Errorf("console: read %s: %w", p, err)
		}
		name := strings.TrimPrefix(p, root+"/")
		ct := mime.TypeByExtension(path.Ext(name))
		switch path.Ext(name) { // not left to the host's mime tables
		case ".js":
			ct = "text/javascript; charset=utf-8"
		case ".css":
			ct = "text/css; charset=utf-8"
		case ".html":
			ct = "text/html; charset=utf-8"
		case ".txt":
			ct = "text/plain; charset=utf-8"
		case ".svg":
			ct = "image/svg+xml"
		}
		if ct == "" {
			ct = "application/octet-stream"
		}
		sum := sha256.Sum256(body)
		f := &file{body: body, contentType: ct, etag: `"` + hex.EncodeToString(sum[:12]) + `"`}
		if len(body) > 1024 && !strings.HasPrefix(ct, "image/png") {
			var b bytes.Buffer
			zw, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
			if _, err := zw.Write(body); err != nil {
				return fmt.Errorf("console: compress %s: %w", p, err)
			}
			if err := zw.Close(); err != nil {
				return fmt.Errorf("console: compress %s: %w", p, err)
			}
			if b.Len() < len(body) {
				f.gzipped = b.Bytes()
			}
		}
		c.files[name] = f
		return nil
	})
	if err != nil {
		return nil, err
	}
	if idx := c.files["index.html"]; idx == nil || !bytes.Contains(idx.body, []byte(noncePlaceholder)) {
		return nil, fmt.Errorf("console: no index.html with a %s among the embedded assets", noncePlaceholder)
	}
	return c, nil
}

// Register adds GET and HEAD /console (a redirect) and /console/*file to
// r.
func (c *Console) Register(r gin.IRouter) {
	redirect := func(g *gin.Context) {
		setSecurityHeaders(g.Writer.Header())
		g.Redirect(http.StatusMovedPermanently, Prefix)
	}
	r.GET("/console", redirect)
	r.HEAD("/console", redirect)
	r.GET(Prefix+"*file", c.serve)
	r.HEAD(Prefix+"*file", c.serve)
}

// setSecurityHeaders sets the headers every console answer carries.
func setSecurityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", ContentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=(), usb=()")
}

func (c *Console) serve(g *gin.Context) {
	name := strings.TrimPrefix(g.Param("file"), "/")
	if name == "" {
		name = "index.html"
	}
	h := g.Writer.Header()
	setSecurityHeaders(h)
	f := c.files[name]
	if f == nil || strings.Contains(name, "..") {
		httpapi.Abort(g, httpapi.New(http.StatusNotFound, httpapi.CodeNotFound, "no such console file: "+name, nil))
		return
	}
	if name == "index.html" {
		c.page(g, f)
		return
	}
	// The names carry no hash: a browser revalidates every file (a 304 is
	// cheap), so a new binary's console is never mixed with an old one.
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", f.etag)
	h.Set("Vary", "Accept-Encoding")
	h.Set("Content-Type", f.contentType)
	if inm := g.GetHeader("If-None-Match"); inm != "" && etagMatches(inm, f.etag) {
		g.Status(http.StatusNotModified)
		return
	}
	body := f.body
	if f.gzipped != nil && acceptsGzip(g.GetHeader("Accept-Encoding")) {
		h.Set("Content-Encoding", "gzip")
		body = f.gzipped
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	g.Status(http.StatusOK)
	if g.Request.Method != http.MethodHead {
		_, _ = g.Writer.Write(body)
	}
}

// page answers index.html with a fresh style nonce, never cached.
func (c *Console) page(g *gin.Context, f *file) {
	var raw [18]byte
	if _, err := rand.Read(raw[:]); err != nil {
		httpapi.Abort(g, httpapi.Internal(fmt.Errorf("console: a nonce: %w", err)))
		return
	}
	nonce := base64.RawURLEncoding.EncodeToString(raw[:])
	body := bytes.ReplaceAll(f.body, []byte(noncePlaceholder), []byte(nonce))
	h := g.Writer.Header()
	h.Set("Content-Security-Policy", PagePolicy(nonce))
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Type", f.contentType)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	g.Status(http.StatusOK)
	if g.Request.Method != http.MethodHead {
		_, _ = g.Writer.Write(body)
	}
}

// etagMatches reports whether an If-None-Match header names etag (or *).
func etagMatches(header, etag string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == etag || t == "*" {
			return true
		}
	}
	return false
}

// acceptsGzip reports whether an Accept-Encoding header allows gzip (a
// "gzip" entry whose q is not 0).
func acceptsGzip(header string) bool {
	for _, part := range strings.Split(header, ",") {
		enc, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if !strings.EqualFold(strings.TrimSpace(enc), "gzip") {
			continue
		}
		for _, p := range strings.Split(params, ";") {
			if k, v, ok := strings.Cut(strings.TrimSpace(p), "="); ok && strings.EqualFold(k, "q") {
				q, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
				return err == nil && q > 0
			}
		}
		return true
	}
	return false
}
