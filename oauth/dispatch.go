package oauth

import (
	"context"
	"errors"
	"html/template"
	"net/http"
	"slices"
	"strings"

	"github.com/gatehouse-dev/gatehouse/model"
)

// The chooser and the dispatch by email. A server with several enabled
// login methods (showLogin, login.go) shows the chooser: a button per
// method — federated methods whose identity provider is inactive or
// deleted are not offered — and an email field. Its form posts to
// {issuer}/login with auth_request and csrf_token, and either
//
//   - provider: the id of one of the server's methods, or the id of the
//     identity provider of one of its federated methods (explicit), or
//   - email: the method is found by the email's domain (methodForEmail):
//     a federated method whose identity provider lists the domain in its
//     domains, else, when the tenant lists it in its domains, the
//     federated method of the tenant's provider_id, or else the password
//     method. An email no method claims goes to the password method when
//     the server has one (the email filled in), else back to the chooser.
//
// An auth request whose login_hint is an email is dispatched by its
// domain the same way before the chooser is shown (nothing claims it:
// the chooser, with the email filled in). The email (typed or hinted) is
// passed on to the method: the password form's username, the upstream
// provider's login_hint.

// chooserView is the chooser page.
type chooserView struct {
	Action    string
	RequestID string
	CSRF      string
	Client    string
	Email     string
	Error     string
	Methods   []chooserMethod
}

// chooserMethod is one button of the chooser.
type chooserMethod struct {
	ID    string
	Label string
}

// offeredMethod is a method the chooser offers, with the identity
// provider of a federated one.
type offeredMethod struct {
	m   *model.AuthenticationMethod
	idp *identityProvider
}

// offered are the methods of methods that can be used now: federated
// methods without an active identity provider are left out.
func (p *Provider) offered(ctx context.Context, rq *request, methods []*model.AuthenticationMethod) ([]offeredMethod, error) {
	out := make([]offeredMethod, 0, len(methods))
	for _, m := range methods {
		if !federated(m) {
			out = append(out, offeredMethod{m: m})
			continue
		}
		idp, err := p.methodIdP(ctx, rq, m)
		switch {
		case errors.Is(err, errNoIdP):
			continue
		case err != nil:
			return nil, err
		}
		out = append(out, offeredMethod{m: m, idp: idp})
	}
	return out, nil
}

// chooseMethod answers the login page of a server with several enabled
// methods: the login_hint's domain's method when it is an email one
// claims, the only method that can be used now, or the chooser.
func (p *Provider) chooseMethod(w http.ResponseWriter, r *http.Request, rq *request, a *authRequest, nonce string, methods []*model.AuthenticationMethod) {
	offers, err := p.offered(r.Context(), rq, methods)
	if err != nil {
		p.serverError(w, "read the identity providers", err)
		return
	}
	hint := a.r.LoginHint
	if strings.Contains(hint, "@") {
		if o, ok := methodForEmail(rq, offers, hint); ok {
			p.startOffered(w, r, rq, a, nonce, o, hint)
			return
		}
	}
	switch len(offers) {
	case 0:
		writeErrorPage(w, http.StatusServiceUnavailable, "None of this server's login methods can be used now; ask its administrator.")
	case 1:
		p.startOffered(w, r, rq, a, nonce, offers[0], hint)
	default:
		email := ""
		if strings.Contains(hint, "@") {
			email = hint
		}
		p.renderChooser(w, rq, a, nonce, offers, email, "", http.StatusOK)
	}
}

// chooseSubmit answers the chooser's form: an explicit provider, or an
// email dispatched by its domain.
func (p *Provider) chooseSubmit(w http.ResponseWriter, r *http.Request, rq *request, a *authRequest, nonce string) {
	offers, err := p.offered(r.Context(), rq, loginMethods(rq.spec()))
	if err != nil {
		p.serverError(w, "read the identity providers", err)
		return
	}
	f := r.PostForm
	email := strings.TrimSpace(f.Get("email"))
	if len(email) > maxLoginHintBytes {
		p.renderChooser(w, rq, a, nonce, offers, "", "The email is too long.", http.StatusBadRequest)
		return
	}
	if provider := f.Get("provider"); provider != "" {
		for _, o := range offers {
			if o.m.ID == provider || o.idp != nil && o.idp.id() == provider {
				p.startOffered(w, r, rq, a, nonce, o, email)
				return
			}
		}
		p.renderChooser(w, rq, a, nonce, offers, email, "That way to sign in is not available; choose one below.", http.StatusBadRequest)
		return
	}
	if email == "" || !strings.Contains(email, "@") {
		p.renderChooser(w, rq, a, nonce, offers, email, "Enter your email, or choose a way to sign in below.", http.StatusBadRequest)
		return
	}
	if o, ok := methodForEmail(rq, offers, email); ok {
		p.startOffered(w, r, rq, a, nonce, o, email)
		return
	}
	for _, o := range offers {
		if o.m.Method == model.LoginPassword {
			p.startOffered(w, r, rq, a, nonce, o, email)
			return
		}
	}
	p.renderChooser(w, rq, a, nonce, offers, email, "No sign-in is set up for this email's domain; choose a way to sign in below.", http.StatusBadRequest)
}

// methodForEmail is the method an email's domain dispatches to: a
// federated method whose identity provider lists the domain, else, for a
// domain of the tenant, the federated method of the tenant's
// provider_id, else the password method.
func methodForEmail(rq *request, offers []offeredMethod, email string) (offeredMethod, bool) {
	domain := model.EmailDomain(email)
	if domain == "" {
		return offeredMethod{}, false
	}
	for _, o := range offers {
		if o.idp != nil && slices.ContainsFunc(o.idp.spec().Domains, func(d string) bool { return strings.EqualFold(d, domain) }) {
			return o, true
		}
	}
	t := &rq.cfg.tenant.Spec
	if !slices.ContainsFunc(t.Domains, func(d string) bool { return strings.EqualFold(d, domain) }) {
		return offeredMethod{}, false
	}
	if t.ProviderID != "" {
		for _, o := range offers {
			if o.idp != nil && o.idp.id() == t.ProviderID {
				return o, true
			}
		}
	}
	for _, o := range offers {
		if o.m.Method == model.LoginPassword {
			return o, true
		}
	}
	return offeredMethod{}, false
}

// startOffered begins an offered method, with hint (an email, or the
// login_hint) passed on: the password or static form's username, the
// upstream provider's login_hint.
func (p *Provider) startOffered(w http.ResponseWriter, r *http.Request, rq *request, a *authRequest, nonce string, o offeredMethod, hint string) {
	switch {
	case o.idp != nil:
		p.federate(w, r, rq, a, nonce, o.m, o.idp, hint)
	case o.m.Method == model.LoginPassword:
		p.renderPassword(w, rq, a, nonce, o.m, hint, "", http.StatusOK)
	case o.m.Method == model.LoginStatic:
		p.renderLogin(w, rq, a, nonce, hint, "", http.StatusOK)
	default:
		p.startMethod(w, r, rq, a, nonce, o.m)
	}
}

// renderChooser shows the chooser. Its form's answer may redirect to an
// offered identity provider's authorization endpoint or back to the
// client: their origins are allowed as form-action (a browser applies
// form-action to the redirects after the post).
func (p *Provider) renderChooser(w http.ResponseWriter, rq *request, a *authRequest, nonce string, offers []offeredMethod, email, msg string, status int) {
	view := chooserView{Action: rq.issuer + pathLogin, RequestID: a.r.ID, CSRF: p.csrfToken(a.r.ID, nonce),
		Client: a.client.spec.Name, Email: email, Error: msg}
	if view.Client == "" {
		view.Client = a.client.id
	}
	next := []string{a.r.RedirectURI}
	for _, o := range offers {
		view.Methods = append(view.Methods, chooserMethod{ID: o.m.ID, Label: methodLabel(o)})
		if o.idp != nil {
			next = append(next, p.authorizationEndpointHint(o.idp))
		}
	}
	p.writeFormPage(w, status, chooserTemplate, view, "show the sign-in choices", next...)
}

// authorizationEndpointHint is the authorization endpoint of an identity
// provider as far as it is known without asking it: the configured one,
// the discovered one when cached, else the issuer (whose origin is
// usually the endpoint's).
func (p *Provider) authorizationEndpointHint(idp *identityProvider) string {
	s := idp.spec()
	if s.AuthorizationEndpoint != "" {
		return s.AuthorizationEndpoint
	}
	p.idps.mu.Lock()
	up := p.idps.entries[idpKey{idp.tenantID, idp.id(), idp.obj.Meta.UID, idp.obj.Meta.Revision}]
	p.idps.mu.Unlock()
	if up != nil {
		return up.provider.Endpoint().AuthURL
	}
	return s.Issuer
}

// methodLabel is a method's button text.
func methodLabel(o offeredMethod) string {
	switch {
	case o.m.Name != "":
		return o.m.Name
	case o.idp != nil:
		return "Sign in with " + o.idp.displayName()
	case o.m.Method == model.LoginPassword:
		return "Email and password"
	case o.m.Method == model.LoginStatic:
		return "Username and password"
	}
	return "Sign in with " + o.m.ID
}

var chooserTemplate = template.Must(template.New("chooser").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font-family:system-ui,sans-serif;max-width:24rem;margin:4rem auto;padding:0 1rem;color:#222}
h1{font-size:1.4rem}label{display:block;margin:.8rem 0 .2rem}input{width:100%;padding:.4rem;box-sizing:border-box}
button{display:block;width:100%;margin-top:.8rem;padding:.5rem 1rem}.error{color:#b00020}.or{text-align:center;color:#555;margin-top:1.2rem}
</style></head><body>
<h1>Sign in to {{.Client}}</h1>
{{if .Error}}<p class="error" role="alert">{{.Error}}</p>{{end}}
<form method="post" action="{{.Action}}">
<input type="hidden" name="auth_request" value="{{.RequestID}}">
<input type="hidden" name="csrf_token" value="{{.CSRF}}">
<label for="email">Email</label>
<input id="email" name="email" type="email" autocomplete="email" value="{{.Email}}" autofocus>
<button type="submit">Continue</button>
<p class="or">or</p>
{{range .Methods}}<button type="submit" name="provider" value="{{.ID}}">{{.Label}}</button>
{{end}}</form>
</body></html>
`))
