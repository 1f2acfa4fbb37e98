package oauth

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/gatehouse-dev/gatehouse/internal/testkit/browser"
	"github.com/gatehouse-dev/gatehouse/oauth/grants"
)

// A logout without id_token_hint from a browser with a session (what a
// cross-site link can send: the session cookie is SameSite=Lax) ends
// nothing until the user confirms it on Gatehouse's own page; the
// confirmation is bound to that browser's session, and once confirmed
// the logout proceeds with the parameters it was sent with.
func TestLogoutWithoutHintIsConfirmed(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		r := e.rp("acme", "default", "web", webSecret, webRedirect)
		v := oauth2.GenerateVerifier()
		if _, err := r.conf.Exchange(r.ctx, r.login(v, "n1"), oauth2.VerifierOption(v)); err != nil {
			t.Fatal(err)
		}
		sessions := func() int { return e.snapshot("acme")[grants.KindSessions] }
		if sessions() != 1 {
			t.Fatalf("%d sessions after the login", sessions())
		}
		logout := e.issuer("acme", "default") + "/oauth2/logout?" + url.Values{
			"client_id": {"web"}, "post_logout_redirect_uri": {webLoggedOut}, "state": {"bye"}}.Encode()
		res := e.drive(r.browser, logout, webLoggedOut, "", "")
		if res.callback != nil || res.status != http.StatusOK || !strings.Contains(res.body, "Sign out?") {
			t.Fatalf("a logout without id_token_hint: %+v, want the confirmation page", res)
		}
		if sessions() != 1 {
			t.Fatal("the unconfirmed logout ended the session")
		}
		action, fields, ok := browser.Form(res.body)
		if !ok || fields.Get(logoutConfirmField) == "" || fields.Get("state") != "bye" || fields.Get("client_id") != "web" {
			t.Fatalf("confirmation form %q %v", action, fields)
		}

		// The confirmation of another browser's session, a forged token
		// or a GET carrying it confirm nothing.
		other := e.rp("acme", "default", "web", webSecret, webRedirect)
		v2 := oauth2.GenerateVerifier()
		if _, err := other.conf.Exchange(other.ctx, other.login(v2, "n2"), oauth2.VerifierOption(v2)); err != nil {
			t.Fatal(err)
		}
		for name, c := range map[string]*http.Client{"another browser": other.browser, "no cookie": e.browser()} {
			resp, err := c.PostForm(action, fields)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if name == "another browser" && resp.StatusCode != http.StatusOK {
				t.Fatalf("%s: %d, want the confirmation page again", name, resp.StatusCode)
			}
		}
		forged := url.Values{}
		for k, vs := range fields {
			forged[k] = vs
		}
		forged.Set(logoutConfirmField, "forged")
		resp, err := r.browser.PostForm(action, forged)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		resp, err = r.browser.Get(action + "?" + fields.Encode())
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || sessions() != 2 {
			t.Fatalf("after forged confirmations: %d, %d sessions, want the page and both sessions", resp.StatusCode, sessions())
		}

		// The confirmed POST logs out and redirects as asked.
		resp, err = r.browser.PostForm(action, fields)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		loc, _ := resp.Location()
		if resp.StatusCode != http.StatusFound && resp.StatusCode != http.StatusSeeOther || loc == nil ||
			!strings.HasPrefix(loc.String(), webLoggedOut) || loc.Query().Get("state") != "bye" {
			t.Fatalf("confirmed logout: %d %v", resp.StatusCode, loc)
		}
		if sessions() != 0 {
			t.Fatalf("%d sessions after the confirmed logout (alice's sessions at the server end)", sessions())
		}
	})
}
