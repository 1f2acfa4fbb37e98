package tests

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"
	"golang.org/x/oauth2"

	"github.com/gatehouse-dev/gatehouse/internal/testkit/browser"
)

// Federation end to end, no browser: a relying party (x/oauth2 +
// go-oidc) signs in at tenant acme's server shop of the real binary,
// which federates to an upstream OpenID provider and back, both hops
// with PKCE, driven over HTTP with cookie jars. Upstream 1 is another
// Gatehouse tenant's server (tenant corp, server sso, a static user);
// upstream 2 is zitadel's example OP (exampleop) in httptest.

const (
	fedUpstreamUser     = "ursula"
	fedUpstreamPassword = "ursula-upstream-password"
	fedCorpSecret       = "corp-federation-secret-0123456789"
	fedExampleSecret    = "example-federation-secret-0123456"
	// exampleop's users (storage.NewUserStore): id1 and id2.
	fedExamplePassword = "verysecure"
)

// exampleOP is zitadel's example OP served by httptest; authorizations
// records the query strings of its authorization endpoint (/auth).
type exampleOP struct {
	srv            *httptest.Server
	issuer         string
	mu             sync.Mutex
	authorizations []url.Values
}

func newExampleOP(t *testing.T, redirectURIs ...string) *exampleOP {
	t.Helper()
	x := &exampleOP{}
	var h http.Handler
	x.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/auth" {
			x.mu.Lock()
			x.authorizations = append(x.authorizations, r.URL.Query())
			x.mu.Unlock()
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(x.srv.Close)
	x.issuer = x.srv.URL
	clients := map[string]*storage.Client{"gatehouse": storage.WebClient("gatehouse", fedExampleSecret, redirectURIs...)}
	h = exampleop.SetupServer(x.issuer, storage.NewStorageWithClients(storage.NewUserStore(x.issuer), clients), nil, false)
	return x
}

func (x *exampleOP) lastAuthorization() url.Values {
	x.mu.Lock()
	defer x.mu.Unlock()
	if len(x.authorizations) == 0 {
		return nil
	}
	return x.authorizations[len(x.authorizations)-1]
}

// fedFixture is one gatehouse with tenant corp (the upstream Gatehouse)
// and tenant acme (whose server shop federates to corp/sso and to the
// example OP), and a relying party of shop.
type fedFixture struct {
	cp       *process
	c        *client
	example  *exampleOP
	issuer   string
	redirect string
	web      oauth2.Config
	provider *oidc.Provider
}

func newFedFixture(t *testing.T, o serveOptions) *fedFixture {
	t.Helper()
	o.Args = append(o.Args, "--idp-allow-private-urls")
	cp := startServe(t, o)
	c := newClient(t, cp.URL, testToken)
	issuer := cp.URL + "/acme/shop"
	callback := issuer + "/login/callback"
	f := &fedFixture{cp: cp, c: c, issuer: issuer, redirect: "http://127.0.0.1:1/callback", example: newExampleOP(t, callback)}

	// Upstream 1: tenant corp's server sso, a static user and a client
	// for acme's federation (PKCE enforced there too).
	c.must(201, "POST", "/api/system/tenants", map[string]any{"id": "corp", "name": "Corp"})
	c.must(201, "POST", "/api/admin/corp/servers", map[string]any{"id": "sso", "name": "sso", "enforce_pkce": true,
		"key_type": "ecdsa", "key_activation_delay": "0s"})
	c.must(200, "PUT", "/api/admin/corp/servers/sso/authentications", map[string]any{"methods": []any{map[string]any{
		"id": "staff", "method": "static", "static": map[string]any{"users": []any{map[string]any{
			"username": fedUpstreamUser, "password": fedUpstreamPassword, "authentication_context": map[string]any{
				"email": "ursula@corp.example", "email_verified": true, "given_name": "Ursula", "family_name": "Upstream",
				"department": "research"}}}}}}})
	c.must(201, "POST", "/api/admin/corp/claims", map[string]any{"authorization_server_id": "sso", "name": "department",
		"mapping": "department", "type": "id_token"})
	c.must(201, "POST", "/api/admin/corp/clients", map[string]any{"client_id": "acme-federation", "authorization_server_id": "sso",
		"client_secret": fedCorpSecret, "grant_types": []string{"authorization_code"}, "redirect_uris": []string{callback},
		"scopes": []string{"openid", "email", "profile"}})

	// Tenant acme: both upstreams as identity providers, server shop
	// offering both.
	c.must(201, "POST", "/api/system/tenants", map[string]any{"id": "acme", "name": "Acme"})
	c.must(201, "POST", "/api/admin/acme/identity-providers", map[string]any{"id": "corp", "name": "Corp SSO", "type": "oidc",
		"issuer": cp.URL + "/corp/sso", "client_id": "acme-federation", "client_secret": fedCorpSecret,
		"domains": []string{"corp.example"}, "link_by_email": true,
		"mappings": []any{map[string]any{"source": "department", "target": "org.department"}}})
	c.must(201, "POST", "/api/admin/acme/identity-providers", map[string]any{"id": "example", "name": "Example OP", "type": "oidc",
		"issuer": f.example.issuer, "client_id": "gatehouse", "client_secret": fedExampleSecret, "domains": []string{"zitadel.ch"}})
	c.must(201, "POST", "/api/admin/acme/servers", map[string]any{"id": "shop", "name": "shop", "enforce_pkce": true,
		"key_type": "ecdsa", "key_activation_delay": "0s"})
	f.methods(t, true, "corp", "example")
	c.must(201, "POST", "/api/admin/acme/claims", map[string]any{"authorization_server_id": "shop", "name": "department",
		"mapping": "org.department", "type": "id_token"})
	web := c.must(201, "POST", "/api/admin/acme/clients", map[string]any{"client_id": "web", "client_name": "Web",
		"authorization_server_id": "shop", "grant_types": []string{"authorization_code"}, "redirect_uris": []string{f.redirect},
		"scopes": []string{"openid", "profile", "email"}}).JSON(t)
	p, err := oidc.NewProvider(context.Background(), issuer)
	if err != nil {
		t.Fatalf("discovery of %s: %v", issuer, err)
	}
	f.provider = p
	f.web = oauth2.Config{ClientID: "web", ClientSecret: web["client_secret"].(string), Endpoint: p.Endpoint(),
		RedirectURL: f.redirect, Scopes: []string{oidc.ScopeOpenID, "profile", "email"}}
	return f
}

// methods sets shop's login methods: one oidc method per identity
// provider (method id = provider id).
func (f *fedFixture) methods(t *testing.T, autoProvision bool, idps ...string) {
	t.Helper()
	var methods []any
	for _, id := range idps {
		methods = append(methods, map[string]any{"id": id, "method": "oidc", "oidc": map[string]any{"identity_provider_id": id}})
	}
	f.c.must(200, "PUT", "/api/admin/acme/servers/shop/authentications", map[string]any{"methods": methods})
	f.c.must(200, "PATCH", "/api/admin/acme/servers/shop", map[string]any{"auto_provision_users": autoProvision},
		"Content-Type", "application/merge-patch+json")
}

// fedFlow is where a driven flow ended.
type fedFlow struct {
	// callback is the redirect to the stop prefix (nil: it ended at a
	// page, status and body).
	callback *url.URL
	status   int
	body     string
	// upstreamCallback is the last redirect to acme's /login/callback.
	upstreamCallback *url.URL
}

// fedBrowser drives one browser: it follows redirects, answers the
// chooser with choice (its fields set; nil stops there), fills the
// upstream login forms (Gatehouse's static form, exampleop's form) with
// username and password, and stops at a redirect starting with stopAt.
type fedBrowser struct {
	t        *testing.T
	b        *browser.Browser
	choice   url.Values
	username string
	password string
}

func newFedBrowser(t *testing.T, username, password string, choice url.Values) *fedBrowser {
	return &fedBrowser{t: t, b: browser.New(nil), choice: choice, username: username, password: password}
}

func (fb *fedBrowser) run(method, target string, form url.Values, stopAt string) fedFlow {
	fb.t.Helper()
	var out fedFlow
	posted := map[string]bool{}
	for range 24 {
		var req *http.Request
		if method == http.MethodPost {
			req, _ = http.NewRequest(method, target, strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		} else {
			req, _ = http.NewRequest(method, target, nil)
		}
		res, err := fb.b.Client.Do(req)
		if err != nil {
			fb.t.Fatalf("%s %s: %v", method, target, err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode >= 300 && res.StatusCode < 400 {
			out.status, out.body = res.StatusCode, ""
			loc, err := res.Request.URL.Parse(res.Header.Get("Location"))
			if err != nil {
				fb.t.Fatal(err)
			}
			if strings.Contains(loc.Path, "/login/callback") {
				out.upstreamCallback = loc
			}
			if strings.HasPrefix(loc.String(), stopAt) {
				out.callback = loc
				return out
			}
			method, target, form = http.MethodGet, loc.String(), nil
			continue
		}
		out.status, out.body = res.StatusCode, string(body)
		action, fields, ok := browser.Form(out.body)
		if !ok || res.StatusCode != http.StatusOK {
			return out
		}
		chooser := strings.Contains(out.body, `name="provider"`)
		switch {
		case chooser && fb.choice != nil && !posted["chooser"]:
			posted["chooser"] = true
			fields.Del("provider")
			for k, v := range fb.choice {
				fields[k] = v
			}
		case fields.Has("username") && fb.username != "" && !posted[res.Request.URL.Host]:
			posted[res.Request.URL.Host] = true
			fields.Set("username", fb.username)
			fields.Set("password", fb.password)
		default:
			return out
		}
		next, err := res.Request.URL.Parse(action)
		if err != nil {
			fb.t.Fatal(err)
		}
		method, target, form = http.MethodPost, next.String(), fields
	}
	fb.t.Fatalf("too many steps from %s", target)
	return out
}

// login runs the relying party's code flow in fb and returns the
// verified ID token (state, nonce and PKCE checked), or fails.
func (f *fedFixture) login(t *testing.T, fb *fedBrowser, opts ...oauth2.AuthCodeOption) *oidc.IDToken {
	t.Helper()
	verifier := oauth2.GenerateVerifier()
	opts = append(opts, oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("nonce", "rp-nonce"))
	res := fb.run(http.MethodGet, f.web.AuthCodeURL("rp-state", opts...), nil, f.redirect)
	if res.callback == nil || res.callback.Query().Get("code") == "" || res.callback.Query().Get("state") != "rp-state" {
		t.Fatalf("the flow did not bring a code to the relying party: %d %s (callback %v)", res.status, res.body, res.callback)
	}
	return f.exchange(t, res.callback.Query().Get("code"), verifier)
}

func (f *fedFixture) exchange(t *testing.T, code, verifier string) *oidc.IDToken {
	t.Helper()
	ctx := context.Background()
	tok, err := f.web.Exchange(ctx, code, oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := f.provider.Verifier(&oidc.Config{ClientID: "web"}).Verify(ctx, raw)
	if err != nil || idt.Nonce != "rp-nonce" {
		t.Fatalf("ID token: %v", err)
	}
	return idt
}

// start runs the flow until it stops at stopAt or a page.
func (f *fedFixture) start(fb *fedBrowser, stopAt string, opts ...oauth2.AuthCodeOption) fedFlow {
	opts = append(opts, oauth2.S256ChallengeOption(oauth2.GenerateVerifier()), oauth2.SetAuthURLParam("nonce", "rp-nonce"))
	return fb.run(http.MethodGet, f.web.AuthCodeURL("rp-state", opts...), nil, stopAt)
}

// user reads a user of acme over the admin API.
func (f *fedFixture) user(t *testing.T, id string) map[string]any {
	t.Helper()
	return f.c.must(200, "GET", "/api/admin/acme/users/"+id, nil).JSON(t)
}

// TestFederation runs the federated logins end to end on both stores:
// the chooser and an explicit provider (exampleop), domain dispatch and
// link_by_email (Gatehouse upstream), login_hint, an admin mapping,
// auto-provisioning, access_denied, a wrong issuer and a replayed
// upstream state.
func TestFederation(t *testing.T) {
	for _, be := range backends() {
		t.Run(be.name, func(t *testing.T) {
			f := newFedFixture(t, be.options(t))

			// The chooser, then the example OP explicitly: a new user is
			// provisioned from its claims (auto_provision_users).
			idt := f.login(t, newFedBrowser(t, "test-user@127.0.0.1", fedExamplePassword, url.Values{"provider": {"example"}}))
			u := f.user(t, idt.Subject)
			if u["email"] != "test-user@zitadel.ch" || u["state"] != "active" {
				t.Fatalf("the provisioned user: %v", u)
			}
			q := f.example.lastAuthorization()
			if q.Get("code_challenge_method") != "S256" || len(q.Get("code_challenge")) != 43 || q.Get("state") == "" || q.Get("nonce") == "" {
				t.Fatalf("the upstream hop without PKCE, state or nonce: %v", q)
			}
			m := f.c.must(200, "GET", "/api/admin/acme/users/mapping/example/id1", nil).JSON(t)
			if m["id"] != idt.Subject {
				t.Fatalf("the mapping of the provisioned user: %v", m)
			}
			// Signing in again finds the same user by its mapping.
			if again := f.login(t, newFedBrowser(t, "test-user@127.0.0.1", fedExamplePassword, url.Values{"provider": {"example"}})); again.Subject != idt.Subject {
				t.Fatalf("second login: sub %q, want %q", again.Subject, idt.Subject)
			}

			// Domain dispatch to the Gatehouse upstream, and link_by_email:
			// the user of that (verified) email, made by an admin.
			ursula := f.c.must(201, "POST", "/api/admin/acme/users", map[string]any{"email": "ursula@corp.example",
				"email_verified": true, "given_name": "Ursula"}).JSON(t)
			idt = f.login(t, newFedBrowser(t, fedUpstreamUser, fedUpstreamPassword, url.Values{"email": {"ursula@corp.example"}}))
			if idt.Subject != ursula["id"] {
				t.Fatalf("link_by_email: sub %q, want ursula's id %v", idt.Subject, ursula["id"])
			}
			var claims map[string]any
			_ = idt.Claims(&claims)
			if claims["department"] != "research" {
				t.Errorf("the identity provider's mapping → the server's claim: %v", claims)
			}
			// (The upstream sub has slashes, which the mapping lookup's path
			// cannot carry: the user's identity_mappings show it.)
			mappings, _ := f.user(t, ursula["id"].(string))["identity_mappings"].([]any)
			if len(mappings) != 1 || mappings[0].(map[string]any)["identity_provider_id"] != "corp" ||
				mappings[0].(map[string]any)["external_subject"] != "static/staff/ursula" {
				t.Fatalf("link_by_email left no mapping: %v", mappings)
			}
			// A login_hint email skips the chooser.
			fb := newFedBrowser(t, fedUpstreamUser, fedUpstreamPassword, nil)
			if idt := f.login(t, fb, oauth2.SetAuthURLParam("login_hint", "ursula@corp.example")); idt.Subject != ursula["id"] {
				t.Fatalf("login_hint dispatch: sub %q", idt.Subject)
			}

			// An admin's mapping: exampleop's second user signs in as dora.
			dora := f.c.must(201, "POST", "/api/admin/acme/users", map[string]any{"email": "dora@acme.example"}).JSON(t)
			f.c.must(201, "POST", "/api/admin/acme/users/"+dora["id"].(string)+"/mappings",
				map[string]any{"identity_provider_id": "example", "external_subject": "id2"})
			if idt := f.login(t, newFedBrowser(t, "test-user2", fedExamplePassword, url.Values{"provider": {"example"}})); idt.Subject != dora["id"] {
				t.Fatalf("mapped login: sub %q, want dora's id %v", idt.Subject, dora["id"])
			}

			// Without auto-provisioning an unmapped identity is access_denied
			// at the relying party, and no user is made.
			before := len(f.c.must(200, "GET", "/api/admin/acme/users", nil).JSON(t)["users"].([]any))
			f.c.must(204, "DELETE", "/api/admin/acme/users/"+dora["id"].(string), nil)
			f.methods(t, false, "corp", "example")
			res := f.start(newFedBrowser(t, "test-user2", fedExamplePassword, url.Values{"provider": {"example"}}), f.redirect)
			if res.callback == nil || res.callback.Query().Get("error") != "access_denied" || res.callback.Query().Get("state") != "rp-state" {
				t.Fatalf("an unmapped identity without auto-provisioning: %d %s (callback %v)", res.status, res.body, res.callback)
			}
			if after := len(f.c.must(200, "GET", "/api/admin/acme/users", nil).JSON(t)["users"].([]any)); after != before-1 {
				t.Fatalf("users after the denied login: %d, want %d", after, before-1)
			}

			// A replayed upstream state: the callback once completes, again
			// it is refused and issues nothing.
			fb = newFedBrowser(t, fedUpstreamUser, fedUpstreamPassword, url.Values{"provider": {"corp"}})
			res = f.start(fb, f.issuer+"/login/callback")
			if res.callback == nil {
				t.Fatalf("no upstream callback: %d %s", res.status, res.body)
			}
			upstreamCallback := res.callback.String()
			if done := fb.run(http.MethodGet, upstreamCallback, nil, f.redirect); done.callback == nil || done.callback.Query().Get("code") == "" {
				t.Fatalf("the upstream callback: %d %s", done.status, done.body)
			}
			replay := fb.run(http.MethodGet, upstreamCallback, nil, f.redirect)
			if replay.callback != nil || replay.status != http.StatusBadRequest || !strings.Contains(replay.body, "already used") {
				t.Fatalf("a replayed upstream state: %d %s (callback %v)", replay.status, replay.body, replay.callback)
			}

			// Wrong issuer: an identity provider whose issuer is not the ID
			// tokens' iss (explicit endpoints of the Gatehouse upstream).
			up := f.cp.URL + "/corp/sso"
			f.c.must(201, "POST", "/api/admin/acme/identity-providers", map[string]any{"id": "liar", "name": "Liar", "type": "oidc",
				"issuer": "https://sso.corp.example", "client_id": "acme-federation", "client_secret": fedCorpSecret,
				"authorization_endpoint": up + "/oauth2/authorize", "token_endpoint": up + "/oauth2/token", "jwks_uri": up + "/.well-known/jwks.json"})
			f.methods(t, true, "liar")
			res = f.start(newFedBrowser(t, fedUpstreamUser, fedUpstreamPassword, nil), f.redirect)
			if res.callback != nil || res.status != http.StatusBadGateway || !strings.Contains(res.body, "issued by a different provider") {
				t.Fatalf("an ID token of another issuer: %d %s (callback %v)", res.status, res.body, res.callback)
			}
		})
	}
}

// TestFederationPrivateURLsNeedTheFlag: without --idp-allow-private-urls
// an identity provider on loopback is refused (400 naming the field).
func TestFederationPrivateURLsNeedTheFlag(t *testing.T) {
	cp := startServe(t, backends()[0].options(t))
	c := newClient(t, cp.URL, testToken)
	c.must(201, "POST", "/api/system/tenants", map[string]any{"id": "acme", "name": "Acme"})
	res := c.must(400, "POST", "/api/admin/acme/identity-providers", map[string]any{"name": "Loop", "type": "oidc",
		"issuer": cp.URL + "/corp/sso", "client_id": "x"})
	if !strings.Contains(string(res.Body), "issuer") {
		t.Fatalf("refusal without naming issuer: %s", res.Body)
	}
	if list := c.must(200, "GET", "/api/admin/acme/identity-providers", nil).JSON(t); len(list["identity_providers"].([]any)) != 0 {
		t.Fatalf("a refused identity provider was stored: %v", list)
	}
}
