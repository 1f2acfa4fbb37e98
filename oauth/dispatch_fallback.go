package oauth

import (
	"net/http"

	"github.com/gatehouse-dev/gatehouse/model"
)

// Placeholders of the federation work (issue 14: the chooser, the
// dispatch by email and oidc federation, in dispatch.go and
// federation.go), so that the local methods build and run on their own
// meanwhile. Whoever adds dispatch.go with chooseMethod, chooseSubmit and
// startFederation deletes this file.

// chooseMethod (placeholder) shows the first local method's form: a
// chooser between several methods is dispatch.go's.
func (p *Provider) chooseMethod(w http.ResponseWriter, r *http.Request, rq *request, a *authRequest, nonce string, methods []*model.AuthenticationMethod) {
	for _, m := range methods {
		if m.Method == model.LoginStatic || m.Method == model.LoginPassword {
			p.startMethod(w, r, rq, a, nonce, m)
			return
		}
	}
	p.startMethod(w, r, rq, a, nonce, methods[0])
}

// chooseSubmit (placeholder): the chooser's form is dispatch.go's.
func (p *Provider) chooseSubmit(w http.ResponseWriter, _ *http.Request, _ *request, _ *authRequest, _ string) {
	writeErrorPage(w, http.StatusBadRequest, "The sign-in form is incomplete; go back and sign in again.")
}

// startFederation (placeholder): federation is federation.go's.
func (p *Provider) startFederation(w http.ResponseWriter, _ *http.Request, _ *request, _ *authRequest, _ string, m *model.AuthenticationMethod) {
	writeErrorPage(w, http.StatusServiceUnavailable, "method: login method "+m.ID+" federates to an identity provider, which this build cannot do yet.")
}
