package oauth

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/gatehouse-dev/gatehouse/directory"
	"github.com/gatehouse-dev/gatehouse/internal/netguard"
	"github.com/gatehouse-dev/gatehouse/internal/pgtest"
	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	"github.com/gatehouse-dev/gatehouse/internal/testkit/browser"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/oauth/clientauth"
	"github.com/gatehouse-dev/gatehouse/store"
)

// Federation fixture values.
const (
	fedClientID = "gatehouse-acme"
	fedSecret   = "upstream-secret-0123456789abcdef"
)

// newFedEnv is newEnv with a secret box, and with identity providers on
// loopback allowed unless strict.
func newFedEnv(t *testing.T, st store.Store, strict bool) *env {
	t.Helper()
	return newEnvWith(t, st, func(o *Options) {
		o.Box = testkit.SecretBox(t)
		o.IdPAllowPrivateURLs = !strict
	})
}

// idp stores an identity provider of tenant tid (its secret, when set,
// sealed as the admin API seals it).
func (e *env) idp(tid, id, secret string, spec model.IdentityProviderSpec) {
	e.t.Helper()
	if spec.Type == "" {
		spec.Type = model.IdPOIDC
	}
	if secret != "" {
		sealed, err := directory.SealIdPSecret(testkit.SecretBox(e.t), tid, id, secret)
		if err != nil {
			e.t.Fatal(err)
		}
		spec.ClientSecretSealed = sealed
	}
	testkit.Create(e.t, e.st, &store.Object{Kind: model.KindIdentityProvider, TenantID: tid, ID: id, Name: id, Spec: mustJSON(spec)})
}

// fakeIdP stores an identity provider of tid for a fake OP (discovery).
func (e *env) fakeIdP(tid, id string, f *fakeOP, edit func(*model.IdentityProviderSpec)) {
	spec := model.IdentityProviderSpec{Issuer: f.issuer, ClientID: f.clientID, Active: true}
	if edit != nil {
		edit(&spec)
	}
	e.idp(tid, id, f.secret, spec)
}

// methods sets the login methods (and auto-provisioning) of server aid.
func (e *env) methods(tid, aid string, auto bool, methods ...model.AuthenticationMethod) {
	testkit.Edit(e.t, e.st, model.KindServer, tid, aid, func(s *model.ServerSpec) {
		s.Authentications, s.AutoProvisionUsers = methods, auto
	})
}

func oidcMethod(id, idp string) model.AuthenticationMethod {
	return model.AuthenticationMethod{ID: id, Method: model.LoginOIDC, OIDC: &model.OIDCLogin{IdentityProviderID: idp}}
}

// dirUser creates an active (or state) user of tid and returns its id.
func (e *env) dirUser(tid, email string, state model.UserState) string {
	e.t.Helper()
	u := &store.Typed[model.UserSpec]{Meta: store.Object{TenantID: tid, ID: "u-" + strings.NewReplacer("@", "-", ".", "-").Replace(email)},
		Spec: model.UserSpec{Email: email, EmailVerified: true, GivenName: "Given", State: state}}
	testkit.Write(e.t, e.st, func(ctx context.Context, tx store.Tx) error { return directory.CreateUser(ctx, tx, u) })
	return u.Meta.ID
}

func (e *env) mapUser(tid, uid, idp, sub string) {
	e.t.Helper()
	testkit.Write(e.t, e.st, func(ctx context.Context, tx store.Tx) error {
		_, err := directory.AddMapping(ctx, tx, tid, uid, idp, sub)
		return err
	})
}

// flow is where a browser flow of the federation tests ended: a
// redirect to the stop prefix (callback), or a page; trail lists the
// redirects followed.
type flow struct {
	callback *url.URL
	status   int
	body     string
	header   http.Header
	trail    []*url.URL
}

// follow runs a browser from one request, following redirects, until a
// redirect to stopAt (callback set) or a page.
func (e *env) follow(c *http.Client, method, target string, form url.Values, stopAt string) flow {
	e.t.Helper()
	var res flow
	for range 16 {
		var req *http.Request
		if method == http.MethodPost {
			req, _ = http.NewRequest(method, target, strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		} else {
			req, _ = http.NewRequest(method, target, nil)
		}
		resp, err := c.Do(req)
		if err != nil {
			e.t.Fatalf("%s %s: %v", method, target, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode < 300 || resp.StatusCode >= 400 {
			res.status, res.body = resp.StatusCode, string(body)
			res.header = resp.Header
			return res
		}
		loc, err := resp.Request.URL.Parse(resp.Header.Get("Location"))
		if err != nil {
			e.t.Fatal(err)
		}
		res.trail = append(res.trail, loc)
		if strings.HasPrefix(loc.String(), stopAt) {
			res.callback = loc
			return res
		}
		method, target, form = http.MethodGet, loc.String(), nil
	}
	e.t.Fatalf("too many redirects from %s", target)
	return res
}

// choose posts the chooser page of res with fields set.
func (e *env) choose(c *http.Client, res flow, set url.Values, stopAt string) flow {
	e.t.Helper()
	action, fields, ok := browser.Form(res.body)
	if !ok || !strings.Contains(res.body, `name="provider"`) {
		e.t.Fatalf("not the chooser: %d %s", res.status, res.body)
	}
	fields.Del("provider")
	for k, v := range set {
		fields[k] = v
	}
	return e.follow(c, http.MethodPost, action, fields, stopAt)
}

// wentTo reports whether the flow was redirected to a URL starting with
// prefix.
func (r flow) wentTo(prefix string) bool {
	for _, u := range r.trail {
		if strings.HasPrefix(u.String(), prefix) {
			return true
		}
	}
	return false
}

// fedLogin runs the code flow of r in browser c from the authorization
// request to the client's callback, failing when it ends elsewhere, and
// exchanges the code: the verified ID token and the tokens.
func (r *rp) fedLogin(c *http.Client, opts ...oauth2.AuthCodeOption) (*oidc.IDToken, *oauth2.Token) {
	r.e.t.Helper()
	verifier := oauth2.GenerateVerifier()
	opts = append(opts, oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("nonce", "rp-nonce"))
	res := r.e.follow(c, http.MethodGet, r.conf.AuthCodeURL("rp-state", opts...), nil, r.conf.RedirectURL)
	if res.callback == nil || res.callback.Query().Get("code") == "" {
		r.e.t.Fatalf("no code at the client: %d %s (callback %v)", res.status, res.body, res.callback)
	}
	return r.exchange(res.callback, verifier)
}

func (r *rp) exchange(callback *url.URL, verifier string) (*oidc.IDToken, *oauth2.Token) {
	r.e.t.Helper()
	if callback.Query().Get("state") != "rp-state" {
		r.e.t.Fatalf("callback %s: state", callback)
	}
	tok, err := r.conf.Exchange(r.ctx, callback.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		r.e.t.Fatalf("exchange: %v", err)
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := r.provider.Verifier(&oidc.Config{ClientID: r.conf.ClientID}).Verify(r.ctx, raw)
	if err != nil || idt.Nonce != "rp-nonce" {
		r.e.t.Fatalf("ID token: %v (nonce %q)", err, idt.Nonce)
	}
	return idt, tok
}

// TestFederationMappedUser: a server whose one method is oidc sends the
// browser straight to the upstream provider (PKCE S256, state, nonce,
// extra_auth_params, login_hint), exchanges the code with the sealed
// secret, and signs in the user the identity is mapped to: the tokens'
// sub is the user's id, the directory's email wins over the upstream's,
// the provider's mappings feed the server's claim mappings and the
// upstream amr is kept. The callback's state is single-use.
func TestFederationMappedUser(t *testing.T) {
	backendsFed(t, false, func(t *testing.T, e *env) {
		up := newFakeOP(t, fedClientID, fedSecret)
		up.set(func(f *fakeOP) {
			f.claims = map[string]any{"email": "bob@upstream.example", "email_verified": true, "groups": []any{"eng"},
				"amr": []any{"pwd", "mfa"}, "acr": "urn:upstream:strong"}
		})
		e.fakeIdP("acme", "corp", up, func(s *model.IdentityProviderSpec) {
			s.ExtraAuthParams = map[string]string{"connection": "corp-ad", "client_id": "evil", "state": "evil"}
			s.Mappings = []model.AuthMapping{{Source: "groups", Target: "org.groups"}}
		})
		e.methods("acme", "default", false, oidcMethod("corp-login", "corp"))
		bob := e.dirUser("acme", "bob@corp.example", model.UserActive)
		e.mapUser("acme", bob, "corp", "upstream-user-1")

		r := e.rp("acme", "default", "web", webSecret, webRedirect)
		c := e.browser()
		idt, tok := r.fedLogin(c, oauth2.SetAuthURLParam("login_hint", "bob@corp.example"))
		if idt.Subject != bob {
			t.Fatalf("ID token sub %q, want the user id %q", idt.Subject, bob)
		}
		var claims map[string]any
		_ = idt.Claims(&claims)
		if g, _ := claims["groups"].([]any); len(g) != 1 || g[0] != "eng" {
			t.Errorf("ID token groups %v: want the upstream groups mapped to org.groups", claims["groups"])
		}
		if amr, _ := claims["amr"].([]any); len(amr) != 2 || amr[0] != "pwd" {
			t.Errorf("ID token amr %v: want the upstream's", claims["amr"])
		}
		if claims["acr"] != "urn:upstream:strong" {
			t.Errorf("ID token acr %v: want the upstream's", claims["acr"])
		}
		at := decodeJWT(t, tok.AccessToken)
		if at["sub"] != bob || at["email"] != "bob@corp.example" {
			t.Errorf("access token sub %v email %v: want the user's id and directory email", at["sub"], at["email"])
		}

		q := up.lastAuthorization()
		for k, want := range map[string]string{"client_id": fedClientID, "response_type": "code", "code_challenge_method": "S256",
			"redirect_uri": e.issuer("acme", "default") + "/login/callback", "scope": "openid email profile",
			"connection": "corp-ad", "login_hint": "bob@corp.example"} {
			if q.Get(k) != want {
				t.Errorf("upstream authorization %s = %q, want %q", k, q.Get(k), want)
			}
		}
		if len(q.Get("code_challenge")) != 43 || len(q.Get("state")) < 43 || len(q.Get("nonce")) < 43 || len(q["state"]) != 1 {
			t.Errorf("upstream authorization challenge %q state %q nonce %q", q.Get("code_challenge"), q.Get("state"), q.Get("nonce"))
		}
		up.mu.Lock()
		form, auth := up.tokenForms[len(up.tokenForms)-1], up.tokenAuth[len(up.tokenAuth)-1]
		up.mu.Unlock()
		if !strings.HasPrefix(auth, "Basic ") || form.Get("code_verifier") == "" || form.Get("client_secret") != "" {
			t.Errorf("upstream token request: auth %q form %v (want basic auth with the secret and the verifier)", auth, form)
		}

		// The upstream callback again (a replay, same browser): refused,
		// nothing issued.
		callback := e.issuer("acme", "default") + "/login/callback?" + url.Values{"state": {q.Get("state")}, "code": {"whatever"}}.Encode()
		before := e.snapshot("acme")
		res := e.follow(c, http.MethodGet, callback, nil, webRedirect)
		if res.status != http.StatusBadRequest || res.callback != nil || !strings.Contains(res.body, "state: unknown, expired or already used") {
			t.Fatalf("replayed state: %d %s", res.status, res.body)
		}
		e.unchanged("acme", before, "a replayed upstream state")
	})
}

// backendsFed runs fn on both backends with a federation env.
func backendsFed(t *testing.T, strict bool, fn func(t *testing.T, e *env)) {
	t.Helper()
	t.Run("embedded", func(t *testing.T) { fn(t, newFedEnv(t, testkit.Store(t), strict)) })
	if os.Getenv(pgtest.EnvDatabaseURL) != "" {
		t.Run("postgres", func(t *testing.T) { fn(t, newFedEnv(t, testkit.PostgresStore(t), strict)) })
	}
}

// errorAt is the error of a redirect to the client.
func errorAt(res flow) string {
	if res.callback == nil {
		return ""
	}
	return res.callback.Query().Get("error")
}

// TestFederationIdentityResolution: mapping, else a verified email with
// link_by_email (then mapped), else a new user with
// auto_provision_users, else access_denied at the client; users that are
// not active are refused.
func TestFederationIdentityResolution(t *testing.T) {
	backendsFed(t, false, func(t *testing.T, e *env) {
		ctx := context.Background()
		up := newFakeOP(t, fedClientID, fedSecret)
		e.fakeIdP("acme", "corp", up, func(s *model.IdentityProviderSpec) { s.LinkByEmail = true })
		e.methods("acme", "default", false, oidcMethod("corp-login", "corp"))
		r := e.rp("acme", "default", "web", webSecret, webRedirect)
		start := func() flow {
			return e.follow(e.browser(), http.MethodGet, r.conf.AuthCodeURL("rp-state", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())), nil, webRedirect)
		}
		as := func(sub, email string, verified bool) {
			up.set(func(f *fakeOP) {
				f.sub, f.claims = sub, map[string]any{"email": email, "email_verified": verified, "given_name": "Dana", "family_name": "Scully"}
			})
		}

		// Nothing maps the identity, and no auto-provisioning.
		as("ext-nobody", "nobody@corp.example", true)
		before := e.snapshot("acme")
		res := start()
		if errorAt(res) != "access_denied" || res.callback.Query().Get("state") != "rp-state" {
			t.Fatalf("unmapped identity: %+v (want access_denied at the client)", res)
		}
		after := e.snapshot("acme")
		if after["oauth-sessions"] != before["oauth-sessions"] || after["oauth-codes"] != before["oauth-codes"] {
			t.Fatalf("a denied login left a session or code: %v → %v", before, after)
		}
		if users, _ := directory.Users.ListAll(ctx, e.st, store.Query{TenantID: "acme"}); len(users) != 0 {
			t.Fatalf("a denied login made users: %d", len(users))
		}

		// link_by_email: a verified email links to the user of that email.
		carol := e.dirUser("acme", "carol@corp.example", model.UserActive)
		as("ext-carol", "Carol@corp.example", false)
		if res := start(); errorAt(res) != "access_denied" {
			t.Fatalf("an unverified email was linked: %+v", res)
		}
		// The local user's email must be verified too (no pre-hijack by
		// a user made first with the victim's unverified email).
		testkit.Write(t, e.st, func(ctx context.Context, tx store.Tx) error {
			u, err := directory.Users.Get(ctx, tx, "acme", carol)
			if err != nil {
				return err
			}
			u.Spec.EmailVerified = false
			return directory.Users.Update(ctx, tx, u, 0)
		})
		as("ext-carol", "Carol@corp.example", true)
		if res := start(); errorAt(res) != "access_denied" {
			t.Fatalf("a verified upstream email was linked to a user whose email is not verified: %+v", res)
		}
		if _, err := directory.UserByMapping(ctx, e.st, "acme", "corp", "ext-carol"); err == nil {
			t.Fatal("the refused link made a mapping")
		}
		testkit.Write(t, e.st, func(ctx context.Context, tx store.Tx) error {
			u, err := directory.Users.Get(ctx, tx, "acme", carol)
			if err != nil {
				return err
			}
			u.Spec.EmailVerified = true
			return directory.Users.Update(ctx, tx, u, 0)
		})
		if idt, _ := r.fedLogin(e.browser()); idt.Subject != carol {
			t.Fatalf("linked login sub %q, want %q", idt.Subject, carol)
		}
		if u, err := directory.UserByMapping(ctx, e.st, "acme", "corp", "ext-carol"); err != nil || u.Meta.ID != carol {
			t.Fatalf("link_by_email made no mapping: %v, %v", u, err)
		}
		// A second identity at the same provider does not link to carol.
		as("ext-carol-2", "carol@corp.example", true)
		if res := start(); errorAt(res) != "access_denied" {
			t.Fatalf("a second identity of the same provider was linked: %+v", res)
		}

		// Suspended and pending users are refused.
		testkit.Edit(t, e.st, model.KindUser, "acme", carol, func(u *model.UserSpec) { u.State = model.UserSuspended })
		as("ext-carol", "carol@corp.example", true)
		if res := start(); errorAt(res) != "access_denied" {
			t.Fatalf("a suspended user signed in: %+v", res)
		}

		// Auto-provisioning: a new active user from the claims, mapped.
		e.methods("acme", "default", true, oidcMethod("corp-login", "corp"))
		as("ext-dana", "Dana@new.example", false)
		idt, _ := r.fedLogin(e.browser())
		u, err := directory.UserByMapping(ctx, e.st, "acme", "corp", "ext-dana")
		if err != nil || u.Meta.ID != idt.Subject || u.Spec.Email != "dana@new.example" || u.Spec.State != model.UserActive ||
			u.Spec.GivenName != "Dana" || u.Spec.FamilyName != "Scully" || u.Spec.EmailVerified {
			t.Fatalf("auto-provisioned user %+v, %v (sub %q)", u, err, idt.Subject)
		}
		events, err := e.st.ListEvents(ctx, store.EventQuery{TenantID: "acme", Kind: model.KindUser})
		if err != nil || len(events.Items) != 1 || events.Items[0].Actor != "identity-provider:corp" || events.Items[0].ObjectID != u.Meta.ID {
			t.Fatalf("the auto-provisioned user's audit event: %+v, %v", events, err)
		}
		if again, _ := r.fedLogin(e.browser()); again.Subject != idt.Subject {
			t.Fatalf("the second login of a provisioned identity: sub %q, want %q", again.Subject, idt.Subject)
		}
		// Auto-provisioning never takes another user's email.
		as("ext-impostor", "dana@new.example", false)
		if res := start(); errorAt(res) != "access_denied" {
			t.Fatalf("auto-provisioning took a used email: %+v", res)
		}
		if users, _ := directory.Users.ListAll(ctx, e.st, store.Query{TenantID: "acme"}); len(users) != 2 {
			t.Fatalf("users after the refused provisioning: %d, want 2", len(users))
		}
	})
}

// TestFederationRefusals: what the upstream answers is checked, and a
// refusal issues nothing: an ID token of another issuer, a discovery
// document of another issuer, a wrong nonce, an upstream error, the
// callback in another browser.
func TestFederationRefusals(t *testing.T) {
	backendsFed(t, false, func(t *testing.T, e *env) {
		up := newFakeOP(t, fedClientID, fedSecret)
		r := e.rp("acme", "default", "web", webSecret, webRedirect)
		start := func(c *http.Client) flow {
			return e.follow(c, http.MethodGet, r.conf.AuthCodeURL("rp-state", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())), nil, webRedirect)
		}
		refused := func(what string, status int, text string) {
			t.Helper()
			before := e.snapshot("acme")
			res := start(e.browser())
			if res.callback != nil || res.status != status || !strings.Contains(res.body, text) {
				t.Fatalf("%s: %d %s (callback %v), want %d with %q", what, res.status, res.body, res.callback, status, text)
			}
			after := e.snapshot("acme")
			for _, k := range []string{"oauth-codes", "oauth-sessions", "oauth-access-tokens", "oauth-refresh-tokens"} {
				if after[k] != before[k] {
					t.Fatalf("%s issued %s: %v → %v", what, k, before, after)
				}
			}
		}
		bob := e.dirUser("acme", "bob@corp.example", model.UserActive)

		// The IdP's issuer is not the ID token's iss (explicit endpoints,
		// no discovery to catch it earlier).
		e.idp("acme", "wrong-iss", fedSecret, model.IdentityProviderSpec{Issuer: "https://login.elsewhere.example", ClientID: fedClientID,
			AuthorizationEndpoint: up.srv.URL + "/authorize", TokenEndpoint: up.srv.URL + "/token", JWKSURI: up.srv.URL + "/jwks", Active: true})
		e.mapUser("acme", bob, "wrong-iss", "upstream-user-1")
		e.methods("acme", "default", true, oidcMethod("m", "wrong-iss"))
		refused("an ID token of another issuer", http.StatusBadGateway, "issued by a different provider")

		// Discovery of another issuer (a trailing slash is another issuer).
		e.fakeIdP("acme", "slash", up, func(s *model.IdentityProviderSpec) { s.Issuer += "/" })
		e.methods("acme", "default", true, oidcMethod("m", "slash"))
		refused("a discovery document of another issuer", http.StatusBadGateway, "cannot be reached or is not set up correctly")

		// A wrong nonce.
		e.fakeIdP("acme", "corp", up, nil)
		e.mapUser("acme", bob, "corp", "upstream-user-1")
		e.methods("acme", "default", true, oidcMethod("m", "corp"))
		up.set(func(f *fakeOP) { f.nonce = "not-the-nonce" })
		refused("a wrong nonce", http.StatusBadGateway, "nonce")
		up.set(func(f *fakeOP) { f.nonce = "" })

		// An inactive identity provider is not used.
		testkit.Edit(t, e.st, model.KindIdentityProvider, "acme", "corp", func(s *model.IdentityProviderSpec) { s.Active = false })
		refused("an inactive identity provider", http.StatusServiceUnavailable, "not active")
		testkit.Edit(t, e.st, model.KindIdentityProvider, "acme", "corp", func(s *model.IdentityProviderSpec) { s.Active = true })

		// The upstream refuses: access_denied back at the client.
		up.set(func(f *fakeOP) { f.deny = true })
		if res := start(e.browser()); errorAt(res) != "access_denied" {
			t.Fatalf("an upstream error: %+v, want access_denied at the client", res)
		}
		up.set(func(f *fakeOP) { f.deny = false })

		// The callback in another browser: 403, and the state still works
		// in the right one.
		c := e.browser()
		stop := e.issuer("acme", "default") + "/login/callback"
		res := e.follow(c, http.MethodGet, r.conf.AuthCodeURL("rp-state", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()),
			oauth2.SetAuthURLParam("nonce", "rp-nonce")), nil, stop)
		if res.callback == nil {
			t.Fatalf("no upstream callback: %+v", res)
		}
		if other := e.follow(e.browser(), http.MethodGet, res.callback.String(), nil, webRedirect); other.status != http.StatusForbidden {
			t.Fatalf("the callback in another browser: %d %s", other.status, other.body)
		}
		if mine := e.follow(c, http.MethodGet, res.callback.String(), nil, webRedirect); mine.callback == nil || mine.callback.Query().Get("code") == "" {
			t.Fatalf("the callback in the browser that started it: %+v", mine)
		}
	})
}

// TestFederationPrivateURLsRefused: without IdPAllowPrivateURLs an
// identity provider on loopback (plain http) is not reached at all.
func TestFederationPrivateURLsRefused(t *testing.T) {
	e := newFedEnv(t, testkit.Store(t), true)
	up := newFakeOP(t, fedClientID, fedSecret)
	e.fakeIdP("acme", "corp", up, nil)
	e.methods("acme", "default", true, oidcMethod("m", "corp"))
	r := e.rp("acme", "default", "web", webSecret, webRedirect)
	res := e.follow(e.browser(), http.MethodGet, r.conf.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())), nil, webRedirect)
	if res.status != http.StatusBadGateway || res.wentTo(up.srv.URL) || up.discoveryHits.Load() != 0 {
		t.Fatalf("a loopback identity provider without the flag: %d %s (discovery hits %d)", res.status, res.body, up.discoveryHits.Load())
	}
	if _, err := newIdPHTTPClient(false).Get(up.srv.URL + "/.well-known/openid-configuration"); err == nil || !strings.Contains(err.Error(), "https is required") {
		t.Fatalf("plain http without the flag: %v", err)
	}
	var ng *netguard.Error
	_, err := newIdPHTTPClient(false).Get(strings.Replace(up.srv.URL, "http://", "https://", 1))
	if !errors.As(err, &ng) || ng.Kind != "loopback" {
		t.Fatalf("https to loopback without the flag: %v", err)
	}
}

// TestFederationChooser: several methods show the chooser (inactive
// identity providers left out); a provider (method or identity provider
// id) is explicit; an email goes to the identity provider of its domain,
// then to the tenant's provider_id for the tenant's domains; a login_hint
// email skips the chooser.
func TestFederationChooser(t *testing.T) {
	backendsFed(t, false, func(t *testing.T, e *env) {
		corp := newFakeOP(t, fedClientID, fedSecret)
		sys := newFakeOP(t, "sys-client", "")
		e.fakeIdP("acme", "corp", corp, func(s *model.IdentityProviderSpec) { s.Domains = []string{"Corp.example"} })
		e.fakeIdP("acme", "partner", corp, func(s *model.IdentityProviderSpec) { s.Active = false; s.Domains = []string{"partner.example"} })
		e.fakeIdP(model.SystemTenantID, "sysidp", sys, func(s *model.IdentityProviderSpec) { s.Domains = []string{"sys.example"} })
		testkit.Edit(t, e.st, model.KindTenant, "", "acme", func(s *model.TenantSpec) {
			s.Domains, s.ProviderID = []string{"acme.example"}, "corp"
		})
		staff := model.AuthenticationMethod{ID: "staff", Method: model.LoginStatic, Static: &model.StaticLogin{
			Users: []model.StaticUser{{Username: "alice", PasswordHash: aliceHash()}}}}
		e.methods("acme", "default", false, staff, oidcMethod("corp-login", "corp"), oidcMethod("partner-login", "partner"),
			oidcMethod("sys-login", "sysidp"))
		r := e.rp("acme", "default", "web", webSecret, webRedirect)
		authURL := func(opts ...oauth2.AuthCodeOption) string {
			return r.conf.AuthCodeURL("rp-state", append(opts, oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))...)
		}

		c := e.browser()
		page := e.follow(c, http.MethodGet, authURL(), nil, webRedirect)
		if page.status != 200 || !strings.Contains(page.body, `value="corp-login"`) || !strings.Contains(page.body, `value="sys-login"`) ||
			!strings.Contains(page.body, `value="staff"`) || strings.Contains(page.body, "partner") || !strings.Contains(page.body, `name="email"`) {
			t.Fatalf("chooser: %d %s", page.status, page.body)
		}
		csp := page.header.Get("Content-Security-Policy")
		if !strings.Contains(csp, corp.srv.URL) || !strings.Contains(csp, sys.srv.URL) || page.header.Get("Cache-Control") != "no-store" {
			t.Fatalf("chooser headers: CSP %q, Cache-Control %q", csp, page.header.Get("Cache-Control"))
		}

		for _, tc := range []struct {
			name string
			set  url.Values
			to   *fakeOP
		}{
			{"provider = a method id", url.Values{"provider": {"corp-login"}}, corp},
			{"provider = an identity provider id", url.Values{"provider": {"sysidp"}}, sys},
			{"email of an identity provider's domain", url.Values{"email": {"ann@CORP.example"}}, corp},
			{"email of a system identity provider's domain", url.Values{"email": {"ann@sys.example"}}, sys},
			{"email of the tenant's domain: its provider_id", url.Values{"email": {"ann@acme.example"}}, corp},
		} {
			c := e.browser()
			res := e.choose(c, e.follow(c, http.MethodGet, authURL(), nil, webRedirect), tc.set, tc.to.srv.URL)
			if res.callback == nil {
				t.Fatalf("%s: %d %s", tc.name, res.status, res.body)
			}
			if email := tc.set.Get("email"); email != "" && res.callback.Query().Get("login_hint") != email {
				t.Errorf("%s: upstream login_hint %q", tc.name, res.callback.Query().Get("login_hint"))
			}
		}
		for _, tc := range []struct {
			name string
			set  url.Values
		}{
			{"an inactive provider", url.Values{"provider": {"partner-login"}}},
			{"an unknown provider", url.Values{"provider": {"nope"}}},
			{"an email no method claims", url.Values{"email": {"ann@partner.example"}}},
			{"no email", url.Values{"email": {""}}},
		} {
			c := e.browser()
			res := e.choose(c, e.follow(c, http.MethodGet, authURL(), nil, webRedirect), tc.set, webRedirect)
			if res.status != http.StatusBadRequest || !strings.Contains(res.body, `name="provider"`) {
				t.Fatalf("%s: %d %s (want the chooser again, 400)", tc.name, res.status, res.body)
			}
		}
		// The static method's button shows its form.
		res := e.choose(c, page, url.Values{"provider": {"staff"}}, webRedirect)
		if _, _, ok := browser.LoginForm(res.body); !ok {
			t.Fatalf("the static method from the chooser: %d %s", res.status, res.body)
		}
		// A login_hint email skips the chooser.
		res = e.follow(e.browser(), http.MethodGet, authURL(oauth2.SetAuthURLParam("login_hint", "zed@sys.example")), nil, sys.srv.URL)
		if res.callback == nil || res.callback.Query().Get("login_hint") != "zed@sys.example" {
			t.Fatalf("login_hint dispatch: %+v", res)
		}
		// The chooser's form needs its CSRF token.
		_, fields, _ := browser.Form(page.body)
		fields.Set("csrf_token", "forged")
		fields.Set("provider", "corp-login")
		if res := e.follow(c, http.MethodPost, e.issuer("acme", "default")+"/login", fields, corp.srv.URL); res.status != http.StatusForbidden {
			t.Fatalf("a forged chooser post: %d %s", res.status, res.body)
		}
	})
}

// TestFederationTenantIsolation: a system identity provider serves
// several tenants, but the users and mappings are each tenant's: an
// identity mapped in acme signs nobody in at globex (access_denied), and
// globex's auto-provisioning makes globex's own user.
func TestFederationTenantIsolation(t *testing.T) {
	e := newFedEnv(t, testkit.Store(t), false)
	ctx := context.Background()
	up := newFakeOP(t, "shared-client", "")
	e.fakeIdP(model.SystemTenantID, "shared", up, nil)
	up.set(func(f *fakeOP) { f.claims = map[string]any{"email": "eve@shared.example", "email_verified": true} })
	e.methods("acme", "default", false, oidcMethod("m", "shared"))
	e.methods("globex", "default", false, oidcMethod("m", "shared"))
	eve := e.dirUser("acme", "eve@shared.example", model.UserActive)
	e.mapUser("acme", eve, "shared", "upstream-user-1")

	if idt, _ := e.rp("acme", "default", "web", webSecret, webRedirect).fedLogin(e.browser()); idt.Subject != eve {
		t.Fatalf("acme's login: sub %q, want %q", idt.Subject, eve)
	}
	g := e.rp("globex", "default", "web", webSecret, webRedirect)
	res := e.follow(e.browser(), http.MethodGet, g.conf.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())), nil, webRedirect)
	if errorAt(res) != "access_denied" {
		t.Fatalf("globex's login of an identity mapped in acme: %+v, want access_denied", res)
	}
	e.methods("globex", "default", true, oidcMethod("m", "shared"))
	idt, _ := g.fedLogin(e.browser())
	if idt.Subject == eve {
		t.Fatal("globex's login yielded acme's user")
	}
	if u, err := directory.Users.Get(ctx, e.st, "globex", idt.Subject); err != nil || u.Spec.Email != "eve@shared.example" {
		t.Fatalf("globex's provisioned user: %v, %v", u, err)
	}
	if _, err := directory.Users.Get(ctx, e.st, "acme", idt.Subject); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("globex's user in acme: %v", err)
	}
	// The public client sent its client_id and no secret.
	up.mu.Lock()
	defer up.mu.Unlock()
	if a := up.tokenAuth[len(up.tokenAuth)-1]; a != "" || up.tokenForms[len(up.tokenForms)-1].Get("client_id") != "shared-client" {
		t.Fatalf("a public client's token request: auth %q form %v", a, up.tokenForms[len(up.tokenForms)-1])
	}
}

// TestFederationGatehouseUpstream: the upstream is another tenant's
// Gatehouse server (globex/default, static user alice): its login form,
// its ID token, its userinfo; acme provisions alice as its own user.
func TestFederationGatehouseUpstream(t *testing.T) {
	backendsFed(t, false, func(t *testing.T, e *env) {
		e.client("globex", "acme-federation", model.ClientSpec{ServerID: "default", SecretHash: clientauth.HashSecret(fedSecret),
			GrantTypes: []string{model.GrantAuthorizationCode}, ResponseTypes: []string{"code"}, TokenEndpointAuthMethod: model.AuthMethodBasic,
			RedirectURIs: []string{e.issuer("acme", "default") + "/login/callback"}})
		e.idp("acme", "globex", fedSecret, model.IdentityProviderSpec{Issuer: e.issuer("globex", "default"), ClientID: "acme-federation", Active: true})
		e.methods("acme", "default", true, oidcMethod("globex-login", "globex"))
		r := e.rp("acme", "default", "web", webSecret, webRedirect)
		verifier := oauth2.GenerateVerifier()
		res := e.drive(e.browser(), r.conf.AuthCodeURL("rp-state", oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("nonce", "rp-nonce")),
			webRedirect, "alice", alicePassword)
		if res.callback == nil {
			t.Fatalf("no code at the client: %d %s", res.status, res.body)
		}
		idt, tok := r.exchange(res.callback, verifier)
		u, err := directory.UserByMapping(context.Background(), e.st, "acme", "globex", "static/staff/alice")
		if err != nil || u.Meta.ID != idt.Subject || u.Spec.Email != "alice@example.com" || !u.Spec.EmailVerified {
			t.Fatalf("alice provisioned from globex: %+v, %v (sub %q)", u, err, idt.Subject)
		}
		if info, err := r.provider.UserInfo(r.ctx, oauth2.StaticTokenSource(tok)); err != nil || info.Email != "alice@example.com" {
			t.Fatalf("userinfo: %+v, %v", info, err)
		}
		if !slices.Contains(idt.Audience, "web") {
			t.Fatalf("aud %v", idt.Audience)
		}
	})
}

// TestFederationChooserPassword: with a password method beside an
// identity provider, an email of the tenant's domains (no provider_id)
// and one nothing claims go to the password form, the email filled in;
// the provider's domain still goes upstream.
func TestFederationChooserPassword(t *testing.T) {
	e := newFedEnv(t, testkit.Store(t), false)
	corp := newFakeOP(t, fedClientID, fedSecret)
	e.fakeIdP("acme", "corp", corp, func(s *model.IdentityProviderSpec) { s.Domains = []string{"corp.example"} })
	testkit.Edit(t, e.st, model.KindTenant, "", "acme", func(s *model.TenantSpec) { s.Domains = []string{"acme.example"} })
	e.methods("acme", "default", false, model.AuthenticationMethod{ID: "pw", Method: model.LoginPassword, Password: &model.PasswordLogin{}},
		oidcMethod("corp-login", "corp"))
	r := e.rp("acme", "default", "web", webSecret, webRedirect)
	for _, email := range []string{"ann@acme.example", "ann@elsewhere.example"} {
		c := e.browser()
		page := e.follow(c, http.MethodGet, r.conf.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())), nil, webRedirect)
		res := e.choose(c, page, url.Values{"email": {email}}, webRedirect)
		_, fields, ok := browser.Form(res.body)
		if res.status != http.StatusOK || !ok || fields.Get("method") != "pw" || fields.Get("email") != email || !fields.Has("password") {
			t.Fatalf("%s: %d %s (want the password form with the email)", email, res.status, res.body)
		}
	}
	c := e.browser()
	page := e.follow(c, http.MethodGet, r.conf.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())), nil, webRedirect)
	if res := e.choose(c, page, url.Values{"email": {"ann@corp.example"}}, corp.srv.URL); res.callback == nil {
		t.Fatalf("the identity provider's domain beside a password method: %d %s", res.status, res.body)
	}
}

// TestFederationResponseCap: an identity provider's answer over 1 MiB
// (here its discovery document) is refused.
func TestFederationResponseCap(t *testing.T) {
	e := newFedEnv(t, testkit.Store(t), false)
	up := newFakeOP(t, fedClientID, fedSecret)
	up.set(func(f *fakeOP) { f.pad = maxIdPResponseBytes })
	e.fakeIdP("acme", "corp", up, nil)
	e.methods("acme", "default", true, oidcMethod("m", "corp"))
	r := e.rp("acme", "default", "web", webSecret, webRedirect)
	res := e.follow(e.browser(), http.MethodGet, r.conf.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())), nil, webRedirect)
	if res.status != http.StatusBadGateway || res.wentTo(up.srv.URL) || up.discoveryHits.Load() != 1 {
		t.Fatalf("an oversized discovery document: %d %s (hits %d)", res.status, res.body, up.discoveryHits.Load())
	}
	up.set(func(f *fakeOP) { f.pad = 0 })
	res = e.follow(e.browser(), http.MethodGet, r.conf.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())), nil, webRedirect)
	if !res.wentTo(up.srv.URL) {
		t.Fatalf("the same provider with a normal document: %d %s", res.status, res.body)
	}
}

// TestFederationGitHub: a github identity provider (OAuth 2.0, no ID
// token) signs in by its user endpoint: the numeric id is the upstream
// sub, its email is not taken as verified, and no openid scope is asked.
func TestFederationGitHub(t *testing.T) {
	e := newFedEnv(t, testkit.Store(t), false)
	ctx := context.Background()
	up := newFakeOP(t, fedClientID, fedSecret)
	up.set(func(f *fakeOP) { f.userinfo = map[string]any{"id": 4242, "login": "octo", "email": "octo@gh.example"} })
	e.idp("acme", "gh", fedSecret, model.IdentityProviderSpec{Type: model.IdPGitHub, Issuer: "https://github.com", ClientID: fedClientID,
		AuthorizationEndpoint: up.srv.URL + "/authorize", TokenEndpoint: up.srv.URL + "/token", UserInfoEndpoint: up.srv.URL + "/userinfo",
		LinkByEmail: true, Active: true})
	e.dirUser("acme", "octo@gh.example", model.UserActive) // not linked: the email is not verified
	e.methods("acme", "default", false, oidcMethod("gh-login", "gh"))
	r := e.rp("acme", "default", "web", webSecret, webRedirect)
	res := e.follow(e.browser(), http.MethodGet, r.conf.AuthCodeURL("rp-state", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())), nil, webRedirect)
	if errorAt(res) != "access_denied" {
		t.Fatalf("a github email linked: %+v", res)
	}
	if q := up.lastAuthorization(); q.Get("scope") != "read:user user:email" {
		t.Fatalf("github scopes %q", q.Get("scope"))
	}
	up.set(func(f *fakeOP) { f.userinfo["email"] = "octo@new.example" })
	testkit.Edit(t, e.st, model.KindServer, "acme", "default", func(s *model.ServerSpec) { s.AutoProvisionUsers = true })
	idt, _ := r.fedLogin(e.browser())
	u, err := directory.UserByMapping(ctx, e.st, "acme", "gh", "4242")
	if err != nil || u.Meta.ID != idt.Subject || u.Spec.PreferredUsername != "octo" || u.Spec.EmailVerified || u.Spec.Email != "octo@new.example" {
		t.Fatalf("the github user: %+v, %v", u, err)
	}
}
