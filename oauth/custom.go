package oauth

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"net/http"
	"net/url"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/oauth/grants"
	"github.com/gatehouse-dev/gatehouse/store"
)

// The custom method hands the login to an application: the browser goes
// to the method's login_url with login_id and login_state (and
// login_hint when the client sent one); the application authenticates
// the user its own way and decides with POST /api/system/{tid}/logins/
// {login_id}/accept ({user_id or subject, authentication_context, amr})
// or …/reject ({error, error_description}), whose answer's redirect_to
// is where it sends the browser back: {issuer}/login/custom/callback
// ?login_id=…&login_state=…. The callback, for the browser that started
// the auth request only, takes the decision once: accepted, the user
// (looked up again: a user of this tenant, active) is logged in
// (completeUserLogin); rejected, the client gets the error at its
// redirect URI. The records are package grants' (logins.go).
const pathCustomCallback = pathLogin + "/custom/callback"

// startCustom sends the browser to method m's application.
func (p *Provider) startCustom(w http.ResponseWriter, r *http.Request, rq *request, a *authRequest, m *model.AuthenticationMethod) {
	ctx := r.Context()
	target, err := url.Parse(m.Custom.LoginURL)
	if err != nil {
		writeErrorPage(w, http.StatusServiceUnavailable, "method: the login_url of login method "+m.ID+" is not a URL; ask the server's administrator.")
		return
	}
	l, err := p.customLogin(ctx, rq, a, m)
	if err != nil {
		if errors.Is(err, grants.ErrExpired) {
			writeErrorPage(w, http.StatusBadRequest, "auth_request: expired; go back to the application and sign in again.")
			return
		}
		p.serverError(w, "start a custom login", err)
		return
	}
	q := target.Query()
	q.Set("login_id", l.ID)
	q.Set("login_state", l.State)
	if a.r.LoginHint != "" {
		q.Set("login_hint", a.r.LoginHint)
	}
	target.RawQuery = q.Encode()
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, target.String(), http.StatusSeeOther)
}

// customLogin is the custom login of auth request a by method m: one
// per auth request and method (its id a MAC of both, so showing the
// login page again writes nothing new), made on first use.
func (p *Provider) customLogin(ctx context.Context, rq *request, a *authRequest, m *model.AuthenticationMethod) (*grants.CustomLogin, error) {
	mac := hmac.New(sha256.New, p.csrfKey)
	mac.Write([]byte("custom-login\x00" + a.r.ID + "\x00" + m.ID))
	id := hex.EncodeToString(mac.Sum(nil)[:16])
	if l, err := p.records.CustomLogin(ctx, rq.tenantID, id); err == nil && l.AuthRequestID == a.r.ID && l.ServerID == rq.serverID {
		return l, nil
	} else if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	state, err := grants.NewSecret()
	if err != nil {
		return nil, err
	}
	l := &grants.CustomLogin{ID: id, ServerID: rq.serverID, MethodID: m.ID, AuthRequestID: a.r.ID, ClientID: a.r.ClientID,
		State: state, CreatedAt: p.now().UTC(), ExpiresAt: a.r.ExpiresAt}
	if err := p.records.PutCustomLogin(ctx, rq.tenantID, l); err != nil {
		return nil, err
	}
	return l, nil
}

// customCallback is GET {issuer}/login/custom/callback.
func (p *Provider) customCallback(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	rq, _ := requestFrom(ctx)
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		writeErrorPage(w, http.StatusMethodNotAllowed, "The custom login's callback takes GET.")
		return
	}
	q := r.URL.Query()
	id := q.Get("login_id")
	if !model.ValidObjectID(id) {
		writeErrorPage(w, http.StatusBadRequest, "login_id: unknown or expired; go back to the application and sign in again.")
		return
	}
	l, err := p.records.CustomLogin(ctx, rq.tenantID, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeErrorPage(w, http.StatusBadRequest, "login_id: unknown or expired; go back to the application and sign in again.")
		return
	case err != nil:
		p.serverError(w, "read the custom login", err)
		return
	case l.ServerID != rq.serverID || subtle.ConstantTimeCompare([]byte(q.Get("login_state")), []byte(l.State)) != 1:
		writeErrorPage(w, http.StatusBadRequest, "login_state: does not match the login; go back to the application and sign in again.")
		return
	}
	a, err := p.storage.authRequest(ctx, l.AuthRequestID)
	if err != nil {
		p.authRequestErrorPage(w, err)
		return
	}
	if browserNonce(r, a) == "" {
		refuseOtherBrowser(w)
		return
	}
	if a.r.Done {
		http.Redirect(w, r, op.AuthCallbackURL(p.op)(ctx, a.r.ID), http.StatusFound)
		return
	}
	if m := enabledMethod(rq.spec(), l.MethodID); m == nil || m.Method != model.LoginCustom {
		writeErrorPage(w, http.StatusBadRequest, "method: the login method of this sign-in is no longer enabled; go back to the application and sign in again.")
		return
	}
	d, ok, err := p.records.TakeCustomLoginDecision(ctx, rq.tenantID, l.ID)
	switch {
	case err != nil:
		p.serverError(w, "read the custom login's decision", err)
		return
	case !ok:
		writeErrorPage(w, http.StatusConflict, "The application has not accepted or rejected this sign-in yet.")
		return
	}
	if err := p.records.DeleteCustomLogin(ctx, rq.tenantID, l.ID); err != nil {
		p.log.Warn("oauth: delete a custom login (it expires)", "tenant", rq.tenantID, "error", err)
	}
	if !d.Accepted {
		p.denyLoginWith(w, r, rq, a, rejection(d))
		return
	}
	user, err := p.tenantUser(ctx, rq.tenantID, d.UserID)
	switch {
	case errors.Is(err, errNoUser) || errors.Is(err, errUserInactive):
		p.denyLogin(w, r, rq, a, "the user the application accepted is not an active user of this tenant")
		return
	case err != nil:
		p.serverError(w, "read the user", err)
		return
	}
	p.completeUserLogin(w, r, rq, a, user, l.MethodID, d.AMR, d.AuthContext)
}

// rejection is the OAuth error of a rejected custom login.
func rejection(d *grants.CustomLoginDecision) *oidc.Error {
	var e *oidc.Error
	switch d.Error {
	case "login_required":
		e = oidc.ErrLoginRequired()
	case "interaction_required":
		e = oidc.ErrInteractionRequired()
	case "temporarily_unavailable":
		e = &oidc.Error{ErrorType: "temporarily_unavailable"}
	default:
		e = oidc.ErrAccessDenied()
	}
	desc := d.ErrorDescription
	if desc == "" {
		desc = "the application rejected the login"
	}
	return e.WithDescription("%s", desc)
}
