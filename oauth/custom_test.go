package oauth

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/oauth/grants"
	"github.com/gatehouse-dev/gatehouse/store"
)

const appLogin = "https://app.example.com/login"

// customStart runs an authorization at a server whose one method is
// custom and returns the redirect to the application.
func (e *localEnv) customStart(r *rp, v string) *url.URL {
	e.t.Helper()
	s := e.walk(r.browser, http.MethodGet, r.conf.AuthCodeURL("st-c", oauth2.S256ChallengeOption(v)), nil, appLogin)
	if s.stopped == nil || s.stopped.Query().Get("login_id") == "" || s.stopped.Query().Get("login_state") == "" || s.stopped.Query().Get("x") != "1" {
		e.t.Fatalf("want a redirect to the application, got %d %v %s", s.status, s.stopped, s.body)
	}
	return s.stopped
}

// decide records the application's decision, as the admin API does.
func (e *localEnv) decide(tid string, app *url.URL, d *grants.CustomLoginDecision) {
	e.t.Helper()
	recs := grants.NewRecords(e.st, nil)
	l, err := recs.CustomLogin(context.Background(), tid, app.Query().Get("login_id"))
	if err != nil {
		e.t.Fatal(err)
	}
	d.DecidedAt = time.Now()
	if err := recs.DecideCustomLogin(context.Background(), tid, l, d); err != nil {
		e.t.Fatal(err)
	}
}

// callback is the issuer's custom callback for the application's login.
func (e *localEnv) callback(tid string, app *url.URL, state string) string {
	q := url.Values{"login_id": {app.Query().Get("login_id")}, "login_state": {state}}
	return e.issuer(tid, "default") + "/login/custom/callback?" + q.Encode()
}

// listState lists a tenant's runtime state of a kind.
func (e *localEnv) listState(kind, tid string) []*store.StateEntry {
	e.t.Helper()
	entries, err := e.st.ListState(context.Background(), kind, tid)
	if err != nil {
		e.t.Fatal(err)
	}
	return entries
}

// The custom method: the browser goes to the application with a login
// id and state; the application's acceptance logs the user in through
// the callback, for the browser that started the authorization only and
// once; a rejection is the client's error; an accepted user of another
// tenant is access_denied.
func TestCustomLogin(t *testing.T) {
	localBackends(t, func(t *testing.T, e *localEnv) {
		e.methods("acme", "default", model.AuthenticationMethod{ID: "app", Method: model.LoginCustom, Custom: &model.CustomLogin{LoginURL: appLogin + "?x=1"}})
		uid := e.addUser("acme", "alice@acme.example", nil)
		bob := e.addUser("globex", "bob@globex.example", nil)
		v := oauth2.GenerateVerifier()

		r := e.rp("acme", "default", "web", webSecret, webRedirect)
		app := e.customStart(r, v)
		state := app.Query().Get("login_state")
		// The login page again: the same login, nothing new stored.
		l, err := grants.NewRecords(e.st, nil).CustomLogin(context.Background(), "acme", app.Query().Get("login_id"))
		if err != nil {
			t.Fatal(err)
		}
		logins := len(e.listState(grants.KindCustomLogins, "acme"))
		if again := e.walk(r.browser, http.MethodGet, e.issuer("acme", "default")+"/login?auth_request="+l.AuthRequestID, nil, appLogin); again.stopped == nil ||
			again.stopped.Query().Get("login_id") != app.Query().Get("login_id") || again.stopped.Query().Get("login_state") != state ||
			len(e.listState(grants.KindCustomLogins, "acme")) != logins {
			t.Fatalf("the login page again: %v (%d logins, %d before)", again.stopped, len(e.listState(grants.KindCustomLogins, "acme")), logins)
		}
		if got := e.walk(r.browser, http.MethodGet, e.callback("acme", app, state), nil, webRedirect); got.status != http.StatusConflict {
			t.Fatalf("the callback before a decision: %d", got.status)
		}
		if got := e.walk(r.browser, http.MethodGet, e.callback("acme", app, "not-the-state"), nil, webRedirect); got.status != http.StatusBadRequest {
			t.Fatalf("the callback with another state: %d", got.status)
		}
		if got := e.walk(r.browser, http.MethodGet, e.issuer("globex", "default")+"/login/custom/callback?"+app.RawQuery, nil, webRedirect); got.status != http.StatusBadRequest {
			t.Fatalf("acme's login at globex: %d", got.status)
		}
		e.decide("acme", app, &grants.CustomLoginDecision{Accepted: true, UserID: uid, AMR: []string{"hwk"}, AuthContext: map[string]any{"department": "R&D"}})
		before := e.snapshot("acme")
		if got := e.walk(e.browser(), http.MethodGet, e.callback("acme", app, state), nil, webRedirect); got.status != http.StatusForbidden {
			t.Fatalf("the callback in another browser: %d", got.status)
		}
		e.unchanged("acme", before, "another browser's callback")
		done := e.walk(r.browser, http.MethodGet, e.callback("acme", app, state), nil, webRedirect)
		if done.stopped.Query().Get("state") != "st-c" {
			t.Fatalf("callback %v", done.stopped)
		}
		tok, err := r.conf.Exchange(r.ctx, code(t, done), oauth2.VerifierOption(v))
		if err != nil {
			t.Fatal(err)
		}
		if at := decodeJWT(t, tok.AccessToken); at["sub"] != uid || at["email"] != "alice@acme.example" {
			t.Fatalf("access token %v", at)
		}
		if amr := amrOf(t, r, tok); !slices.Equal(amr, []string{"hwk"}) {
			t.Fatalf("amr %v", amr)
		}
		if got := e.walk(r.browser, http.MethodGet, e.callback("acme", app, state), nil, webRedirect); got.status != http.StatusBadRequest {
			t.Fatalf("the callback again: %d", got.status)
		}

		// A rejection: the client gets its error.
		r2 := e.rp("acme", "default", "web", webSecret, webRedirect)
		app2 := e.customStart(r2, v)
		e.decide("acme", app2, &grants.CustomLoginDecision{Error: "login_required", ErrorDescription: "no badge"})
		rej := e.walk(r2.browser, http.MethodGet, e.callback("acme", app2, app2.Query().Get("login_state")), nil, webRedirect)
		if q := rej.stopped.Query(); q.Get("error") != "login_required" || q.Get("error_description") != "no badge" || q.Get("state") != "st-c" || q.Get("code") != "" {
			t.Fatalf("a rejection: %v", rej.stopped)
		}

		// A user of another tenant is never the answer at acme.
		r3 := e.rp("acme", "default", "web", webSecret, webRedirect)
		app3 := e.customStart(r3, v)
		e.decide("acme", app3, &grants.CustomLoginDecision{Accepted: true, UserID: bob})
		sessions := e.snapshot("acme")[grants.KindSessions]
		other := e.walk(r3.browser, http.MethodGet, e.callback("acme", app3, app3.Query().Get("login_state")), nil, webRedirect)
		if q := other.stopped.Query(); q.Get("error") != "access_denied" || q.Get("code") != "" {
			t.Fatalf("globex's user at acme: %v", other.stopped)
		}
		if e.snapshot("acme")[grants.KindSessions] != sessions {
			t.Fatal("globex's user got a session at acme")
		}
	})
}
