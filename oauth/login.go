package oauth

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/gatehouse-dev/gatehouse/internal/passwords"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/oauth/grants"
)

// sessionCookie holds the login session (256 random bits; the store
// keeps its hash), Path=/{tid}/{aid}, Max-Age=cookie_max_age. The login
// form's CSRF token is an HMAC of the auth request id and the request's
// binding nonce (binding.go).
const sessionCookie = "gh_session"

// maxLoginFormBytes bounds the login form's POST body.
const maxLoginFormBytes = 16 << 10

// sessionCookie is the session cookie of a server (value "" and maxAge
// < 0 clears it).
func (p *Provider) sessionCookie(rq *request, value string, maxAge int) *http.Cookie {
	return &http.Cookie{Name: sessionCookie, Value: value, Path: "/" + rq.tenantID + "/" + rq.serverID,
		MaxAge: maxAge, HttpOnly: true, Secure: p.secure, SameSite: http.SameSiteLaxMode}
}

// login serves the login page of an auth request:
// GET /{tid}/{aid}/login?auth_request=<id> and the form's POST.
func (p *Provider) login(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		p.loginPage(w, r)
	case http.MethodPost:
		p.loginSubmit(w, r)
	default:
		writeErrorPage(w, http.StatusMethodNotAllowed, "The login page takes GET and POST.")
	}
}

// loginPage, for the browser that started the auth request (its binding
// cookie; any other gets 403), completes the request from a valid
// session (unless prompt or max_age ask for a new login), answers
// login_required to prompt=none without one, or shows the form.
func (p *Provider) loginPage(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	rq, _ := requestFrom(ctx)
	a, err := p.storage.authRequest(ctx, r.URL.Query().Get("auth_request"))
	if err != nil {
		p.authRequestErrorPage(w, err)
		return
	}
	nonce := browserNonce(r, a)
	if nonce == "" {
		refuseOtherBrowser(w)
		return
	}
	if a.r.Done {
		http.Redirect(w, r, op.AuthCallbackURL(p.op)(ctx, a.r.ID), http.StatusFound)
		return
	}
	if sess := p.currentSession(ctx, rq); sess != nil && p.sessionSatisfies(sess, a) {
		p.complete(w, r, rq, a, sess, rq.sessionHash)
		return
	}
	if slices.Contains(a.r.Prompt, oidc.PromptNone) {
		_ = p.records.ReleaseAuthRequestSlot(ctx, rq.tenantID, a.r.Slot)
		_ = p.records.DeleteAuthRequest(ctx, rq.tenantID, a.r.ID)
		op.AuthRequestError(w, r, a, oidc.ErrLoginRequired().WithDescription("prompt: none, and there is no valid login session"), p.op)
		return
	}
	p.showLogin(w, r, rq, a, nonce)
}

// The login page's structure. An auth request without a usable session
// gets, from showLogin:
//
//   - ?method=<id> (an enabled method of the server): that method
//     (startMethod);
//   - a server whose enabled methods are all static, or that has none:
//     the static form (every static method's users, as before part F);
//   - exactly one enabled method: that method at once — static and
//     password show their form, custom redirects to its login_url (see
//     custom.go), oidc, azure and cognito go upstream (startFederation);
//   - several: the chooser (chooseMethod).
//
// Every form posts to {issuer}/login with auth_request and csrf_token;
// loginSubmit dispatches the POST by its fields, in this order:
// login_step (a second step of a method: TOTP, totp.go), method (the id
// of the method the form belongs to: password and static forms; a
// chooser may post the id of any method to start it), username (the
// static form without method), and anything else goes to the chooser's
// submission (chooseSubmit: an email to dispatch by domain, or an
// explicit provider). The chooser, the dispatch by email and federation
// (chooseMethod, chooseSubmit, startFederation) are federation.go's and
// dispatch.go's; every method of tenant users ends in completeUserLogin
// (users.go).

// showLogin shows the login of an auth request that needs one.
func (p *Provider) showLogin(w http.ResponseWriter, r *http.Request, rq *request, a *authRequest, nonce string) {
	if id := r.URL.Query().Get("method"); id != "" {
		m := enabledMethod(rq.spec(), id)
		if m == nil {
			writeErrorPage(w, http.StatusBadRequest, "method: this server has no enabled login method "+strconv.Quote(id)+".")
			return
		}
		p.startMethod(w, r, rq, a, nonce, m)
		return
	}
	methods := loginMethods(rq.spec())
	switch {
	case len(methods) == 0:
		// The static form, as before part F: no username gets in.
		p.renderLogin(w, rq, a, nonce, a.r.LoginHint, "", http.StatusOK)
	case len(methods) == 1 || len(staticMethods(rq.spec())) == len(methods):
		p.startMethod(w, r, rq, a, nonce, methods[0])
	default:
		p.chooseMethod(w, r, rq, a, nonce, methods)
	}
}

// loginMethods are the server's enabled login methods, in order.
func loginMethods(s *model.ServerSpec) []*model.AuthenticationMethod {
	var out []*model.AuthenticationMethod
	for i := range s.Authentications {
		if m := &s.Authentications[i]; !m.Disabled {
			out = append(out, m)
		}
	}
	return out
}

// federated reports whether m logs in at an upstream identity provider
// (oidc, and azure and cognito, which are stored with their oidc
// reference).
func federated(m *model.AuthenticationMethod) bool {
	switch m.Method {
	case model.LoginOIDC, model.LoginAzure, model.LoginCognito:
		return m.OIDC != nil
	}
	return false
}

// startMethod begins the login of auth request a by method m.
func (p *Provider) startMethod(w http.ResponseWriter, r *http.Request, rq *request, a *authRequest, nonce string, m *model.AuthenticationMethod) {
	switch {
	case m.Method == model.LoginStatic:
		p.renderLogin(w, rq, a, nonce, a.r.LoginHint, "", http.StatusOK)
	case m.Method == model.LoginPassword:
		p.renderPassword(w, rq, a, nonce, m, a.r.LoginHint, "", http.StatusOK)
	case m.Method == model.LoginCustom && m.Custom != nil:
		p.startCustom(w, r, rq, a, m)
	case federated(m):
		p.startFederation(w, r, rq, a, nonce, m)
	default:
		writeErrorPage(w, http.StatusServiceUnavailable, "method: login method "+strconv.Quote(m.ID)+" cannot be used; ask the server's administrator.")
	}
}

// currentSession is the request's live session at this server whose user
// still exists, with the credentials it logged in with (a static user's
// password; a tenant user still active, of the same credential version,
// by a method still enabled), or nil.
func (p *Provider) currentSession(ctx context.Context, rq *request) *grants.Session {
	if rq.sessionHash == "" {
		return nil
	}
	sess, err := p.records.SessionByHash(ctx, rq.tenantID, rq.sessionHash)
	if err != nil || sess.ServerID != rq.serverID || !sess.ExpiresAt.After(p.now()) {
		return nil
	}
	if !isStaticSubject(sess.Subject) && enabledMethod(rq.spec(), sess.MethodID) == nil {
		return nil
	}
	if p.subjectCurrent(ctx, rq, sess.Subject, sess.Credential) != nil {
		return nil
	}
	return sess
}

// sessionSatisfies reports whether a session may complete an auth
// request: prompt=login (max_age 0) and max_age older than the session's
// auth_time ask for a new login, and an id_token_hint names the user.
func (p *Provider) sessionSatisfies(sess *grants.Session, a *authRequest) bool {
	if slices.Contains(a.r.Prompt, oidc.PromptLogin) {
		return false
	}
	if a.r.MaxAge != nil && p.now().Sub(sess.AuthTime) > time.Duration(*a.r.MaxAge)*time.Second {
		return false
	}
	return a.r.HintSubject == "" || a.r.HintSubject == sess.Subject
}

// loginSubmit checks, for the browser that started the auth request,
// the form's CSRF token, and hands the form to its method (see
// showLogin); a wrong password shows the form again (401) and issues
// nothing. Password verifications wait for one of the process's slots;
// without one soon the answer is 503.
func (p *Provider) loginSubmit(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	rq, _ := requestFrom(ctx)
	r.Body = http.MaxBytesReader(w, r.Body, maxLoginFormBytes)
	if err := r.ParseForm(); err != nil {
		writeErrorPage(w, http.StatusBadRequest, "body: the login form could not be read (at most 16 KiB).")
		return
	}
	a, err := p.storage.authRequest(ctx, r.PostForm.Get("auth_request"))
	if err != nil {
		p.authRequestErrorPage(w, err)
		return
	}
	nonce := browserNonce(r, a)
	if nonce == "" {
		refuseOtherBrowser(w)
		return
	}
	if !hmac.Equal([]byte(r.PostForm.Get("csrf_token")), []byte(p.csrfToken(a.r.ID, nonce))) {
		writeErrorPage(w, http.StatusForbidden, "csrf_token: the login form expired or did not come from this page; go back and sign in again.")
		return
	}
	if a.r.Done {
		http.Redirect(w, r, op.AuthCallbackURL(p.op)(ctx, a.r.ID), http.StatusSeeOther)
		return
	}
	f := r.PostForm
	switch {
	case f.Get("login_step") != "":
		p.stepSubmit(w, r, rq, a, nonce)
	case f.Get("method") != "":
		m := enabledMethod(rq.spec(), f.Get("method"))
		switch {
		case m == nil:
			writeErrorPage(w, http.StatusBadRequest, "method: this server has no enabled login method "+strconv.Quote(f.Get("method"))+".")
		case m.Method == model.LoginStatic:
			p.staticSubmit(w, r, rq, a, nonce)
		case m.Method == model.LoginPassword:
			p.passwordSubmit(w, r, rq, a, nonce, m)
		default:
			p.startMethod(w, r, rq, a, nonce, m)
		}
	case f.Has("username"):
		p.staticSubmit(w, r, rq, a, nonce)
	default:
		p.chooseSubmit(w, r, rq, a, nonce)
	}
}

// staticSubmit checks the static form: the user's password among the
// server's static methods.
func (p *Provider) staticSubmit(w http.ResponseWriter, r *http.Request, rq *request, a *authRequest, nonce string) {
	ctx := r.Context()
	if !p.acquireVerification(ctx) {
		w.Header().Set("Retry-After", "2")
		writeErrorPage(w, http.StatusServiceUnavailable, "password: too many sign-ins are being checked at once; try again in a moment.")
		return
	}
	username := r.PostForm.Get("username")
	method, user, err := p.checkPassword(rq.spec(), username, r.PostForm.Get("password"))
	<-p.verifySlots
	if err != nil {
		p.log.Error("oauth: check a password", "tenant", rq.tenantID, "server", rq.serverID, "error", err)
	}
	if user == nil {
		p.renderLogin(w, rq, a, nonce, username, "The username or password is wrong.", http.StatusUnauthorized)
		return
	}
	value, err := grants.NewSecret()
	if err != nil {
		p.serverError(w, "start a session", err)
		return
	}
	now := p.now().UTC()
	maxAge := rq.spec().CookieMaxAge.D()
	if maxAge <= 0 {
		maxAge = time.Hour
	}
	sess := &grants.Session{ServerID: rq.serverID, Subject: staticSubject(method.ID, user.Username), MethodID: method.ID,
		Username: user.Username, AuthTime: now, AMR: []string{"pwd"}, AuthContext: user.AuthenticationContext,
		Credential: grants.CredentialVersion(user.PasswordHash), ExpiresAt: now.Add(maxAge)}
	if err := p.records.PutSession(ctx, rq.tenantID, value, sess); err != nil {
		p.serverError(w, "start a session", err)
		return
	}
	http.SetCookie(w, p.sessionCookie(rq, value, int(maxAge/time.Second)))
	p.complete(w, r, rq, a, sess, grants.Hash(value))
}

// acquireVerification takes a password verification slot, waiting up to
// the provider's pwWait; false: none came free (or ctx ended).
func (p *Provider) acquireVerification(ctx context.Context) bool {
	select {
	case p.verifySlots <- struct{}{}:
		return true
	default:
	}
	t := time.NewTimer(p.pwWait)
	defer t.Stop()
	select {
	case p.verifySlots <- struct{}{}:
		return true
	case <-t.C:
		return false
	case <-ctx.Done():
		return false
	}
}

// complete marks the auth request logged in by sess's user (whose cookie
// hashes to sessionHash: the callback requires it), frees its slot, keeps
// it for authorization_code_ttl and sends the browser to zitadel's
// callback, which issues the code.
func (p *Provider) complete(w http.ResponseWriter, r *http.Request, rq *request, a *authRequest, sess *grants.Session, sessionHash string) {
	slot := a.r.Slot
	a.r.Done, a.r.Subject, a.r.SubjectType = true, sess.Subject, grants.SubjectUser
	a.r.AuthTime, a.r.AMR, a.r.AuthContext = sess.AuthTime, sess.AMR, sess.AuthContext
	a.r.SessionHash, a.r.Credential, a.r.Slot = sessionHash, sess.Credential, ""
	a.r.ExpiresAt = p.now().Add(rq.spec().AuthorizationCodeTTL.D())
	if err := p.records.PutAuthRequest(r.Context(), rq.tenantID, a.r); err != nil {
		if errors.Is(err, grants.ErrExpired) {
			writeErrorPage(w, http.StatusBadRequest, "auth_request: expired; go back to the application and sign in again.")
			return
		}
		p.serverError(w, "complete the login", err)
		return
	}
	if err := p.records.ReleaseAuthRequestSlot(r.Context(), rq.tenantID, slot); err != nil {
		p.log.Warn("oauth: free an auth request's slot (it expires with the login window)", "tenant", rq.tenantID, "error", err)
	}
	http.Redirect(w, r, op.AuthCallbackURL(p.op)(r.Context(), a.r.ID), http.StatusSeeOther)
}

// checkPassword finds the user among the server's enabled static methods
// and verifies the password (argon2id). An unknown user costs a hash
// verification with the same parameters too (newDummyHash), so timing
// does not tell which usernames exist.
func (p *Provider) checkPassword(s *model.ServerSpec, username, password string) (*model.AuthenticationMethod, *model.StaticUser, error) {
	if username != "" && password != "" {
		for _, m := range staticMethods(s) {
			for i := range m.Static.Users {
				u := &m.Static.Users[i]
				if u.Username != username {
					continue
				}
				ok, err := passwords.Verify(u.PasswordHash, password)
				if err != nil || !ok {
					return nil, nil, err
				}
				return m, u, nil
			}
		}
	}
	dummy, err := p.dummyHash()
	if err != nil {
		return nil, nil, err
	}
	_, _ = passwords.Verify(dummy, password)
	return nil, nil, nil
}

// newDummyHash is an argon2id hash, made with the parameters of every
// new hash (passwords.Hash), of a random password nobody knows: what
// unknown usernames are verified against (once per provider).
func newDummyHash() (string, error) {
	secret, err := grants.NewSecret()
	if err != nil {
		return "", err
	}
	h, err := passwords.Hash(secret)
	if err != nil {
		return "", fmt.Errorf("make the login's dummy hash: %w", err)
	}
	return h, nil
}

// csrfToken binds the form to its auth request and the browser's nonce.
func (p *Provider) csrfToken(authRequestID, nonce string) string {
	mac := hmac.New(sha256.New, p.csrfKey)
	mac.Write([]byte(authRequestID))
	mac.Write([]byte{0})
	mac.Write([]byte(nonce))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// authRequestErrorPage answers an unknown or expired auth request.
func (p *Provider) authRequestErrorPage(w http.ResponseWriter, err error) {
	var oe *oidc.Error
	if errors.As(err, &oe) && oe.ErrorType == oidc.ServerError {
		p.serverError(w, "read the auth request", err)
		return
	}
	writeErrorPage(w, http.StatusBadRequest, "auth_request: unknown or expired; go back to the application and sign in again.")
}

type loginView struct {
	Action    string
	RequestID string
	CSRF      string
	Username  string
	Hint      string
	Error     string
	Client    string
}

// renderLogin shows the login form; its CSRF token binds it to the auth
// request and the browser's binding nonce.
func (p *Provider) renderLogin(w http.ResponseWriter, rq *request, a *authRequest, nonce, username, msg string, status int) {
	view := loginView{Action: rq.issuer + pathLogin, RequestID: a.r.ID, CSRF: p.csrfToken(a.r.ID, nonce),
		Username: username, Error: msg, Client: a.client.spec.Name}
	if view.Client == "" {
		view.Client = a.client.id
	}
	for _, m := range staticMethods(rq.spec()) {
		if m.Static.Hint != "" {
			view.Hint = m.Static.Hint
			break
		}
	}
	p.writeFormPage(w, status, loginTemplate, view, "show the login form", a.r.RedirectURI)
}

// writeFormPage renders one of the provider's form pages (login, logout
// confirmation): never cached, never framed, posting only to itself. The
// form's answer redirects on to next (the client's redirect URI): a
// browser applies form-action to those redirects too, so next's origin
// is allowed beside 'self'.
func (p *Provider) writeFormPage(w http.ResponseWriter, status int, page *template.Template, view any, what string, next ...string) {
	var buf bytes.Buffer
	if err := page.Execute(&buf, view); err != nil {
		p.serverError(w, what, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	formAction := "'self'"
	for _, u := range next {
		if o := cspOrigin(u); o != "" {
			formAction += " " + o
		}
	}
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action "+formAction+"; frame-ancestors 'none'")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// cspOriginHost is what a host may be in a CSP source expression here.
var cspOriginHost = regexp.MustCompile(`^[A-Za-z0-9.-]+(:[0-9]+)?$|^\[[0-9A-Fa-f:.]+\](:[0-9]+)?$`)

// cspOrigin is the http(s) origin of raw as a CSP source expression, ""
// when raw is no such URL.
func cspOrigin(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || !cspOriginHost.MatchString(u.Host) {
		return ""
	}
	return u.Scheme + "://" + u.Host
}

// loggedOut is the page after a logout without post_logout_redirect_uri.
func (p *Provider) loggedOut(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write([]byte(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Signed out</title></head>` +
		`<body style="font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto"><h1>You are signed out</h1></body></html>`))
}

var loginTemplate = template.Must(template.New("login").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font-family:system-ui,sans-serif;max-width:24rem;margin:4rem auto;padding:0 1rem;color:#222}
h1{font-size:1.4rem}label{display:block;margin:.8rem 0 .2rem}input{width:100%;padding:.4rem;box-sizing:border-box}
button{margin-top:1rem;padding:.5rem 1rem}.error{color:#b00020}.hint{color:#555}
</style></head><body>
<h1>Sign in to {{.Client}}</h1>
{{if .Hint}}<p class="hint">{{.Hint}}</p>{{end}}
{{if .Error}}<p class="error" role="alert">{{.Error}}</p>{{end}}
<form method="post" action="{{.Action}}">
<input type="hidden" name="auth_request" value="{{.RequestID}}">
<input type="hidden" name="csrf_token" value="{{.CSRF}}">
<label for="username">Username</label>
<input id="username" name="username" autocomplete="username" value="{{.Username}}" required autofocus>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Sign in</button>
</form>
</body></html>
`))
