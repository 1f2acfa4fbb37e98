package oauth

import (
	"context"
	"crypto/subtle"
	"net/http"
	"time"

	"github.com/gatehouse-dev/gatehouse/oauth/grants"
)

// An auth request belongs to the browser that started it. /authorize
// gives that browser a binding cookie (bindingCookiePrefix + the request
// id, HttpOnly, SameSite=Lax, Path=/{tid}/{aid}) holding a random nonce
// whose hash the auth request keeps (grants.AuthRequest.BrowserHash).
// The login page — its silent completion from a session and its form —
// and the callback that issues the code refuse a browser without that
// cookie, and the callback also requires the session that completed the
// login (grants.AuthRequest.SessionHash). An auth request id alone is
// worth nothing: a browser it is pushed to cannot complete it, and whoever
// started it cannot take a code another browser's session completed.
//
// The login form's CSRF token is an HMAC of the request id and the
// binding nonce, so the form only works in the browser holding a cookie
// the server set for that request.
const bindingCookiePrefix = "gh_authz_"

// Bounds of an authorization request (everything in it is stored until
// its login, by anyone who can reach /authorize).
const (
	maxAuthorizeBytes  = 16 << 10 // the query string, and the POST body
	maxStateBytes      = 1 << 10
	maxNonceBytes      = 1 << 10
	maxLoginHintBytes  = 256
	maxScopes          = 50
	maxScopeBytes      = 256
	codeChallengeBytes = 43 // base64url of a SHA-256, unpadded
	// DefaultMaxPendingAuthRequests bounds the auth requests of one
	// server waiting for their login (Options.MaxPendingAuthRequests).
	DefaultMaxPendingAuthRequests = 10_000
)

// browserBinding carries, through zitadel's /authorize handling, the
// nonce of the binding cookie to CreateAuthRequest and the id of the
// auth request it stored back.
type browserBinding struct {
	nonce string
	id    string
}

type bindingKey struct{}

func bindingFrom(ctx context.Context) *browserBinding {
	b, _ := ctx.Value(bindingKey{}).(*browserBinding)
	return b
}

// bindingCookie is the binding cookie of an auth request (maxAge < 0
// clears it).
func (p *Provider) bindingCookie(rq *request, id, nonce string, maxAge int) *http.Cookie {
	return &http.Cookie{Name: bindingCookiePrefix + id, Value: nonce, Path: "/" + rq.tenantID + "/" + rq.serverID,
		MaxAge: maxAge, HttpOnly: true, Secure: p.secure, SameSite: http.SameSiteLaxMode}
}

// browserNonce is the binding nonce the browser holds for an auth
// request, or "" when it holds none or one the request was not given.
func browserNonce(r *http.Request, a *authRequest) string {
	ck, err := r.Cookie(bindingCookiePrefix + a.r.ID)
	if err != nil || ck.Value == "" || a.r.BrowserHash == "" {
		return ""
	}
	if subtle.ConstantTimeCompare([]byte(grants.Hash(ck.Value)), []byte(a.r.BrowserHash)) != 1 {
		return ""
	}
	return ck.Value
}

// refuseOtherBrowser answers a browser that did not start the auth
// request: 403, nothing completed or issued.
func refuseOtherBrowser(w http.ResponseWriter) {
	writeErrorPage(w, http.StatusForbidden, "auth_request: this sign-in was started in another browser (or its cookie expired); go back to the application and sign in again.")
}

// serveAuthorize is the authorization endpoint: a request larger than
// maxAuthorizeBytes is refused (HTML 400) before it is parsed; zitadel
// validates the rest and CreateAuthRequest stores it, bound to this
// browser by a new nonce, whose cookie is set with the redirect to the
// login page.
func (p *Provider) serveAuthorize(w http.ResponseWriter, r *http.Request, rq *request) {
	if len(r.URL.RawQuery) > maxAuthorizeBytes {
		writeErrorPage(w, http.StatusBadRequest, "request: the authorization request is larger than 16 KiB.")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxAuthorizeBytes)
	if err := r.ParseForm(); err != nil {
		writeErrorPage(w, http.StatusBadRequest, "request: the authorization request could not be read (a form of at most 16 KiB).")
		return
	}
	nonce, err := grants.NewSecret()
	if err != nil {
		p.serverError(w, "start the authorization", err)
		return
	}
	b := &browserBinding{nonce: nonce}
	r = r.WithContext(context.WithValue(r.Context(), bindingKey{}, b))
	rec := newRecorder()
	http.StripPrefix("/"+rq.tenantID+"/"+rq.serverID, p.op).ServeHTTP(rec, r)
	if b.id != "" {
		maxAge := grants.LoginWindow + rq.spec().AuthorizationCodeTTL.D()
		http.SetCookie(w, p.bindingCookie(rq, b.id, nonce, int(maxAge/time.Second)))
	}
	p.finish(w, r, rq, rec, htmlErrors)
}

// serveCallback is the callback that issues the code of a completed auth
// request (zitadel's AuthorizeCallback): only the browser that started
// the request (binding cookie) and holds the session that completed its
// login gets past it; any other answer is an HTML page, never a code.
func (p *Provider) serveCallback(w http.ResponseWriter, r *http.Request, rq *request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxAuthorizeBytes)
	if err := r.ParseForm(); err != nil {
		writeErrorPage(w, http.StatusBadRequest, "request: the callback could not be read.")
		return
	}
	id := r.Form.Get("id")
	if id == "" {
		writeErrorPage(w, http.StatusBadRequest, "id: missing.")
		return
	}
	a, err := p.storage.authRequest(r.Context(), id)
	if err != nil {
		p.authRequestErrorPage(w, err)
		return
	}
	if browserNonce(r, a) == "" {
		refuseOtherBrowser(w)
		return
	}
	if a.r.Done {
		if a.r.SessionHash == "" || rq.sessionHash == "" ||
			subtle.ConstantTimeCompare([]byte(rq.sessionHash), []byte(a.r.SessionHash)) != 1 {
			writeErrorPage(w, http.StatusForbidden, "session: this browser does not hold the login session that completed the sign-in; go back to the application and sign in again.")
			return
		}
		http.SetCookie(w, p.bindingCookie(rq, id, "", -1))
	}
	p.serveProvider(w, r, rq, htmlErrors)
}
