package oauth

import (
	"crypto/hmac"
	"html/template"
	"net/http"
)

// Logout without id_token_hint (OpenID Connect RP-Initiated Logout 1.0
// §2: "the OP SHOULD ask the End-User whether to log out"). The session
// cookie is SameSite=Lax, so a cross-site link or redirect to
// /oauth2/logout carries it: without a confirmation any page could end
// a user's sessions at the server (logout CSRF). A logout with an
// id_token_hint (which zitadel verifies) proves the relying party sent
// it and goes ahead; one without, from a browser with a session, gets a
// confirmation form whose CSRF token is bound to that session, and only
// its POST logs out.

// logoutConfirmField carries the confirmation's CSRF token.
const logoutConfirmField = "logout_confirm"

// logoutParams are the end-session parameters the confirmation carries
// over to its POST.
var logoutParams = []string{"client_id", "post_logout_redirect_uri", "state", "ui_locales", "logout_hint"}

// logoutNeedsConfirmation answers the confirmation page, and reports
// true, when a logout has no id_token_hint and is not the confirmed POST
// of that page.
func (p *Provider) logoutNeedsConfirmation(w http.ResponseWriter, r *http.Request, rq *request) bool {
	if rq.sessionHash == "" {
		return false // no session here: nothing to end
	}
	if err := r.ParseForm(); err != nil {
		return false // zitadel refuses the body
	}
	if r.Form.Get("id_token_hint") != "" {
		return false
	}
	want := p.csrfToken("logout", rq.sessionHash)
	if r.Method == http.MethodPost && hmac.Equal([]byte(r.PostForm.Get(logoutConfirmField)), []byte(want)) {
		return false
	}
	view := logoutView{Action: rq.issuer + "/" + pathLogout, CSRF: want, Issuer: rq.issuer}
	for _, k := range logoutParams {
		if v := r.Form.Get(k); v != "" {
			view.Params = append(view.Params, logoutParam{Name: k, Value: v})
		}
	}
	p.writeFormPage(w, http.StatusOK, logoutTemplate, view, "show the logout confirmation", r.Form.Get("post_logout_redirect_uri"))
	return true
}

type logoutParam struct{ Name, Value string }

type logoutView struct {
	Action string
	CSRF   string
	Issuer string
	Params []logoutParam
}

var logoutTemplate = template.Must(template.New("logout").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign out</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font-family:system-ui,sans-serif;max-width:24rem;margin:4rem auto;padding:0 1rem;color:#222}
h1{font-size:1.4rem}button{margin-top:1rem;padding:.5rem 1rem}
</style></head><body>
<h1>Sign out?</h1>
<p>You are signed in at {{.Issuer}}. Sign out of it in this browser?</p>
<form method="post" action="{{.Action}}">
<input type="hidden" name="` + logoutConfirmField + `" value="{{.CSRF}}">
{{range .Params}}<input type="hidden" name="{{.Name}}" value="{{.Value}}">
{{end}}<button type="submit">Sign out</button>
</form>
</body></html>
`))
