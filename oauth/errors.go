package oauth

import (
	"bytes"
	"encoding/json"
	"html/template"
	"net/http"
	"strings"
)

// errorStyle says how an endpoint answers errors zitadel writes as plain
// text: the authorization endpoint (a browser) with an HTML page, the
// others with RFC 6749 JSON.
type errorStyle int

const (
	jsonErrors errorStyle = iota
	htmlErrors
)

// recorder buffers zitadel's answer so that finish can rewrite it.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func newRecorder() *recorder { return &recorder{header: http.Header{}} }

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.body.Write(b)
}

// oauthError is the RFC 6749 error body.
type oauthError struct {
	Error       string `json:"error"`
	Description string `json:"error_description,omitempty"`
}

// writeOAuthError writes an RFC 6749 error body.
func writeOAuthError(w http.ResponseWriter, status int, code, description string) {
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	if status == http.StatusUnauthorized && code == "invalid_token" {
		h.Set("WWW-Authenticate", `Bearer error="invalid_token"`)
	}
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(oauthError{Error: code, Description: description})
}

// finish copies the recorded answer to w: plain-text errors become an
// HTML page (authorization endpoint: never a redirect) or RFC 6749 JSON;
// JSON errors without a description get one naming the parameter; a
// logout's redirect clears the session cookie.
func (p *Provider) finish(w http.ResponseWriter, r *http.Request, rq *request, rec *recorder, style errorStyle) {
	status := rec.status
	if status == 0 {
		status = http.StatusOK
	}
	path := strings.TrimPrefix(r.URL.Path, "/"+rq.tenantID+"/"+rq.serverID+"/")
	isJSON := strings.HasPrefix(rec.header.Get("Content-Type"), "application/json")
	switch {
	case status >= 400 && !isJSON && style == htmlErrors:
		writeErrorPage(w, status, pageMessage(strings.TrimSpace(rec.body.String())))
		return
	case status >= 400 && !isJSON:
		code, desc := plainErrorCode(path, status, strings.TrimSpace(rec.body.String()))
		if path == pathUserinfo {
			status = http.StatusUnauthorized
		}
		writeOAuthError(w, status, code, desc)
		return
	case status >= 400 && isJSON:
		var e oauthError
		if json.Unmarshal(rec.body.Bytes(), &e) == nil {
			if path == pathUserinfo {
				writeOAuthError(w, http.StatusUnauthorized, "invalid_token", "access_token: invalid, expired or revoked")
				return
			}
			if e.Error == "" {
				e.Error = "server_error"
			}
			if e.Description == "" {
				e.Description = defaultDescription(path, e.Error)
			}
			writeOAuthError(w, status, e.Error, e.Description)
			return
		}
	}
	if path == pathLogout && status == http.StatusFound {
		http.SetCookie(w, p.sessionCookie(rq, "", -1))
	}
	for k, v := range rec.header {
		w.Header()[k] = v
	}
	w.WriteHeader(status)
	_, _ = w.Write(rec.body.Bytes())
}

// pageMessage names the parameter in zitadel's messages of a refused
// authorization request.
func pageMessage(msg string) string {
	switch {
	case strings.Contains(msg, "retrieve client by id"):
		return "client_id: unknown client."
	case strings.Contains(msg, "missing client_id"):
		return "client_id: missing."
	case strings.Contains(msg, "missing redirect_uri"), strings.Contains(msg, "redirect_uri is missing in the request"):
		return "redirect_uri: missing."
	case strings.Contains(msg, "redirect_uri") && !strings.HasPrefix(msg, "redirect_uri:"):
		return "redirect_uri: " + msg
	}
	return msg
}

// plainErrorCode maps a plain-text error of zitadel to an RFC 6749 code
// and a description naming the parameter.
func plainErrorCode(path string, status int, body string) (string, string) {
	switch {
	case path == pathUserinfo:
		return "invalid_token", "access_token: missing, invalid, expired or revoked"
	case path == pathIntrospect && status == http.StatusUnauthorized:
		return "invalid_client", "client_id: client authentication failed (client_secret_basic or private_key_jwt)"
	case status >= 500:
		return "server_error", "the server could not answer"
	}
	return "invalid_request", body
}

// defaultDescription names the parameter of an error zitadel answers
// without a description.
func defaultDescription(path, code string) string {
	switch code {
	case "invalid_grant":
		return "code or refresh_token: invalid, expired, revoked or issued to another client"
	case "invalid_client":
		return "client_id: client authentication failed"
	case "unauthorized_client":
		return "grant_type: not allowed for this client"
	case "invalid_scope":
		return "scope: not allowed"
	case "unsupported_grant_type":
		return "grant_type: not supported"
	case "server_error":
		return "the server could not answer"
	}
	return "request: invalid (" + path + ")"
}

var errorPage = template.Must(template.New("error").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign-in request refused</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#222}h1{font-size:1.4rem}p.detail{color:#555}</style>
</head><body><h1>This sign-in request cannot be completed</h1>
<p class="detail">{{.}}</p>
<p>Return to the application and try again. If the problem persists, contact its administrator.</p>
</body></html>
`))

// writeErrorPage answers an HTML error page (no redirect: the request's
// client or redirect_uri could not be trusted).
func writeErrorPage(w http.ResponseWriter, status int, message string) {
	if message == "" {
		message = http.StatusText(status)
	}
	var buf bytes.Buffer
	_ = errorPage.Execute(&buf, message)
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}
