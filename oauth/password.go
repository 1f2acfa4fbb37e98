package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse-dev/gatehouse/directory"
	"github.com/gatehouse-dev/gatehouse/internal/passwords"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/oauth/grants"
	"github.com/gatehouse-dev/gatehouse/store"
)

// The password method (model.LoginPassword) signs in the tenant's users
// by email and password (argon2id, verified in one of the process's
// verification slots like static passwords; an unknown email or a user
// without a password costs a verification of the dummy hash too). Only
// active users get in. When the tenant's mfa_provider is totp, a right
// password leads to the second step (totp.go).
//
// Lockout: failed attempts (wrong passwords, wrong or replayed TOTP
// codes) are counted per (email, client IP) in runtime state, so every
// replica sharing the store counts the same: the maxLoginFailures-th
// failure within loginFailureWindow locks that pair out for loginLockout
// (429 with Retry-After), and a successful sign-in clears the count. The
// client IP is the connection's peer address (behind a proxy, every
// client shares the proxy's address, and the lockout is then per email).
const (
	maxLoginFailures   = 5
	loginLockout       = time.Minute
	loginFailureWindow = 15 * time.Minute
	// kindLoginFailures holds one entry per counted failure: id
	// "<lock key>/<n>", n < maxLoginFailures, each created once
	// (PutStateIfAbsent), so concurrent failures on several replicas
	// take distinct slots.
	kindLoginFailures = "oauth-login-failures"
	// kindLoginLocks holds the lockouts: id = the lock key.
	kindLoginLocks = "oauth-login-locks"
	// maxEmailBytes bounds the email of the form (RFC 5321's path limit).
	maxEmailBytes = 320
)

// loginMark is the value of a failure and of a lockout. Times are the
// provider's clock (the store's expiry only collects them): a failure
// older than loginFailureWindow, or a lockout past Until, does not count.
type loginMark struct {
	At    time.Time `json:"at"`
	Until time.Time `json:"until,omitzero"`
}

// loginLockKey is the key failures of email from the client at ip are
// counted under (a hash: no email in state ids).
func loginLockKey(email, ip string) string {
	return grants.Hash("gatehouse/login-lock\x00" + model.NormalizeEmail(email) + "\x00" + ip)
}

// clientIP is the address of the request's peer.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// lockedUntil reports whether key is locked out now, and until when.
func (p *Provider) lockedUntil(ctx context.Context, tid, key string) (time.Time, bool, error) {
	e, err := p.store.GetState(ctx, kindLoginLocks, tid, key)
	if errors.Is(err, store.ErrNotFound) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, fmt.Errorf("read a login lockout: %w", err)
	}
	var m loginMark
	if err := json.Unmarshal(e.Value, &m); err != nil {
		return time.Time{}, false, fmt.Errorf("read a login lockout: %w", err)
	}
	return m.Until, p.now().Before(m.Until), nil
}

// recordFailure counts a failed attempt of key and reports whether it
// locked key out (and until when): the maxLoginFailures-th failure in
// the window does, and starts the count again for after the lockout.
func (p *Provider) recordFailure(ctx context.Context, tid, key string) (time.Time, bool, error) {
	now := p.now().UTC()
	mark, err := json.Marshal(loginMark{At: now})
	if err != nil {
		return time.Time{}, false, err
	}
	counted := -1
	for n := range maxLoginFailures {
		id := key + "/" + strconv.Itoa(n)
		created, err := p.store.PutStateIfAbsent(ctx, kindLoginFailures, tid, id, mark, loginFailureWindow)
		if err != nil {
			return time.Time{}, false, fmt.Errorf("count a failed login: %w", err)
		}
		if !created {
			// Taken: by a failure in the window, or by one the provider's
			// clock says is past it (then this failure takes its place).
			e, err := p.store.GetState(ctx, kindLoginFailures, tid, id)
			var old loginMark
			if err == nil && json.Unmarshal(e.Value, &old) == nil && now.Sub(old.At) < loginFailureWindow {
				continue
			}
			if err := p.store.PutStateTTL(ctx, kindLoginFailures, tid, id, mark, loginFailureWindow); err != nil {
				return time.Time{}, false, fmt.Errorf("count a failed login: %w", err)
			}
		}
		counted = n
		break
	}
	if counted >= 0 && counted < maxLoginFailures-1 {
		return time.Time{}, false, nil
	}
	until := now.Add(loginLockout)
	lock, err := json.Marshal(loginMark{At: now, Until: until})
	if err != nil {
		return time.Time{}, false, err
	}
	if err := p.store.PutStateTTL(ctx, kindLoginLocks, tid, key, lock, loginLockout+time.Minute); err != nil {
		return time.Time{}, false, fmt.Errorf("lock a login out: %w", err)
	}
	if err := p.deleteFailures(ctx, tid, key); err != nil {
		return time.Time{}, false, err
	}
	return until, true, nil
}

// deleteFailures forgets the counted failures of key.
func (p *Provider) deleteFailures(ctx context.Context, tid, key string) error {
	for n := range maxLoginFailures {
		if err := p.store.DeleteState(ctx, kindLoginFailures, tid, key+"/"+strconv.Itoa(n)); err != nil {
			return fmt.Errorf("reset the failed logins: %w", err)
		}
	}
	return nil
}

// clearFailures resets key after a successful sign-in (a failure to is
// logged: the count then only runs out with its window).
func (p *Provider) clearFailures(ctx context.Context, tid, key string) {
	err := p.deleteFailures(ctx, tid, key)
	if err == nil {
		err = p.store.DeleteState(ctx, kindLoginLocks, tid, key)
	}
	if err != nil {
		p.log.Warn("oauth: reset the failed logins after a sign-in", "tenant", tid, "error", err)
	}
}

// tooManyAttempts answers a locked-out attempt: 429 with Retry-After.
func (p *Provider) tooManyAttempts(w http.ResponseWriter, until time.Time) {
	secs := int(math.Ceil(until.Sub(p.now()).Seconds()))
	secs = max(secs, 1)
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	writeErrorPage(w, http.StatusTooManyRequests,
		"Too many failed sign-ins for this account from here; try again in "+strconv.Itoa(secs)+" seconds.")
}

// mfaRequired reports whether the tenant's users need a second factor.
func mfaRequired(rq *request) bool { return rq.cfg.tenant.Spec.MFAProvider == model.MFATOTP }

// passwordSubmit checks the password form of method m: the email's user
// and its password. Wrong: 401 and the form again (counted for the
// lockout); locked out: 429; right, but the user is not active: 403;
// right: the second step when the tenant requires it, else the login
// completes.
func (p *Provider) passwordSubmit(w http.ResponseWriter, r *http.Request, rq *request, a *authRequest, nonce string, m *model.AuthenticationMethod) {
	ctx := r.Context()
	email := strings.TrimSpace(r.PostForm.Get("email"))
	password := r.PostForm.Get("password")
	if len(email) > maxEmailBytes {
		p.renderPassword(w, rq, a, nonce, m, "", "email: longer than 320 bytes.", http.StatusBadRequest)
		return
	}
	key := loginLockKey(email, clientIP(r))
	if until, locked, err := p.lockedUntil(ctx, rq.tenantID, key); err != nil {
		p.serverError(w, "check the login lockout", err)
		return
	} else if locked {
		p.tooManyAttempts(w, until)
		return
	}
	if !p.acquireVerification(ctx) {
		w.Header().Set("Retry-After", "2")
		writeErrorPage(w, http.StatusServiceUnavailable, "password: too many sign-ins are being checked at once; try again in a moment.")
		return
	}
	user, err := p.checkUserPassword(ctx, rq.tenantID, email, password)
	<-p.verifySlots
	if err != nil {
		p.serverError(w, "check a password", err)
		return
	}
	if user == nil {
		until, locked, err := p.recordFailure(ctx, rq.tenantID, key)
		switch {
		case err != nil:
			p.serverError(w, "count a failed login", err)
		case locked:
			p.tooManyAttempts(w, until)
		default:
			p.renderPassword(w, rq, a, nonce, m, email, "The email or password is wrong.", http.StatusUnauthorized)
		}
		return
	}
	if user.Spec.State != model.UserActive {
		p.renderPassword(w, rq, a, nonce, m, email, "This account is not active; ask your administrator.", http.StatusForbidden)
		return
	}
	if mfaRequired(rq) {
		// The failures are cleared only once the second step succeeds:
		// a right password must not reset the count of wrong codes.
		p.startTOTP(w, r, rq, a, nonce, m, user, key)
		return
	}
	p.clearFailures(ctx, rq.tenantID, key)
	p.completeUserLogin(w, r, rq, a, user, m.ID, []string{"pwd"}, nil)
}

// checkUserPassword finds the live user of email in tenant tid and
// verifies its password; nil without error: no such user, no password,
// or the wrong one (each costing one verification of the same
// parameters, so timing does not tell which).
func (p *Provider) checkUserPassword(ctx context.Context, tid, email, password string) (*store.Typed[model.UserSpec], error) {
	if email != "" && password != "" {
		u, err := directory.UserByEmail(ctx, p.store, tid, email)
		switch {
		case err != nil && !errors.Is(err, store.ErrNotFound):
			return nil, fmt.Errorf("find the user of an email: %w", err)
		case err == nil && u.Spec.PasswordHash != "":
			ok, err := passwords.Verify(u.Spec.PasswordHash, password)
			if err != nil {
				return nil, fmt.Errorf("verify the password of user %q: %w", u.Meta.ID, err)
			}
			if ok {
				return u, nil
			}
			return nil, nil
		}
	}
	dummy, err := p.dummyHash()
	if err != nil {
		return nil, err
	}
	_, _ = passwords.Verify(dummy, password)
	return nil, nil
}

type passwordView struct {
	Action    string
	RequestID string
	CSRF      string
	Method    string
	Email     string
	Hint      string
	Error     string
	Client    string
}

// renderPassword shows the password form of method m.
func (p *Provider) renderPassword(w http.ResponseWriter, rq *request, a *authRequest, nonce string, m *model.AuthenticationMethod, email, msg string, status int) {
	view := passwordView{Action: rq.issuer + pathLogin, RequestID: a.r.ID, CSRF: p.csrfToken(a.r.ID, nonce), Method: m.ID,
		Email: email, Error: msg, Client: clientLabel(a)}
	if m.Password != nil {
		view.Hint = m.Password.Hint
	}
	p.writeFormPage(w, status, passwordTemplate, view, "show the login form", a.r.RedirectURI)
}

// clientLabel is how the login pages name the client.
func clientLabel(a *authRequest) string {
	if a.client.spec.Name != "" {
		return a.client.spec.Name
	}
	return a.client.id
}

// pageStyle is the style of the login's pages.
const pageStyle = `body{font-family:system-ui,sans-serif;max-width:24rem;margin:4rem auto;padding:0 1rem;color:#222}
h1{font-size:1.4rem}label{display:block;margin:.8rem 0 .2rem}input{width:100%;padding:.4rem;box-sizing:border-box}
button{margin-top:1rem;padding:.5rem 1rem}.error{color:#b00020}.hint{color:#555}code{word-break:break-all}`

var passwordTemplate = template.Must(template.New("password").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>` + pageStyle + `</style></head><body>
<h1>Sign in to {{.Client}}</h1>
{{if .Hint}}<p class="hint">{{.Hint}}</p>{{end}}
{{if .Error}}<p class="error" role="alert">{{.Error}}</p>{{end}}
<form method="post" action="{{.Action}}">
<input type="hidden" name="auth_request" value="{{.RequestID}}">
<input type="hidden" name="csrf_token" value="{{.CSRF}}">
<input type="hidden" name="method" value="{{.Method}}">
<label for="email">Email</label>
<input id="email" name="email" type="email" autocomplete="username" value="{{.Email}}" required autofocus>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Sign in</button>
</form>
</body></html>
`))
