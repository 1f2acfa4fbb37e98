package oauth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/gatehouse-dev/gatehouse/internal/passwords"
	"github.com/gatehouse-dev/gatehouse/internal/pgtest"
	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	"github.com/gatehouse-dev/gatehouse/internal/testkit/browser"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/oauth/clientauth"
	"github.com/gatehouse-dev/gatehouse/oauth/grants"
	"github.com/gatehouse-dev/gatehouse/oauth/keys"
	"github.com/gatehouse-dev/gatehouse/store"
)

func TestMain(m *testing.M) {
	gin.SetMode(gin.ReleaseMode)
	pgtest.Main(m)
}

// Fixture values.
const (
	webSecret     = "web-secret-0123456789abcdefghijklmnopqrstuv"
	machineSecret = "machine-secret-0123456789abcdefghijklmnopq"
	webRedirect   = "https://rp.example.com/callback"
	webLoggedOut  = "https://rp.example.com/logged-out"
	cliRedirect   = "http://127.0.0.1/callback"
	alicePassword = "wonderland-rabbit-hole"
)

// env is a running provider over a store seeded with tenants and servers.
type env struct {
	t   *testing.T
	st  store.Store
	p   *Provider
	srv *httptest.Server
}

// aliceHash is computed once per test binary (argon2id is slow).
var aliceHash = sync.OnceValue(func() string {
	h, err := passwords.Hash(alicePassword)
	if err != nil {
		panic(err)
	}
	return h
})

// backends runs fn on an embedded store, and on PostgreSQL when
// GATEHOUSE_TEST_DATABASE_URL is set.
func backends(t *testing.T, fn func(t *testing.T, e *env)) {
	t.Helper()
	t.Run("embedded", func(t *testing.T) { fn(t, newEnv(t, testkit.Store(t))) })
	if os.Getenv(pgtest.EnvDatabaseURL) != "" {
		t.Run("postgres", func(t *testing.T) { fn(t, newEnv(t, testkit.PostgresStore(t))) })
	}
}

// newEnv seeds tenant acme (servers default and other) and tenant
// globex (server default), and serves the provider over HTTP.
func newEnv(t *testing.T, st store.Store) *env {
	t.Helper()
	return newEnvWith(t, st, nil)
}

// newEnvWith is newEnv with the provider's options changed by edit.
func newEnvWith(t *testing.T, st store.Store, edit func(*Options)) *env {
	t.Helper()
	var handler http.Handler = http.NotFoundHandler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handler.ServeHTTP(w, r) }))
	t.Cleanup(srv.Close)
	opts := Options{Store: st, Keys: keys.NewManager(st, testkit.SecretBox(t)), PublicURL: srv.URL, CryptoKey: [32]byte{1, 2, 3}}
	if edit != nil {
		edit(&opts)
	}
	p, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	eng := gin.New()
	p.Register(eng)
	handler = eng
	e := &env{t: t, st: st, p: p, srv: srv}
	for _, tid := range []string{"acme", "globex"} {
		testkit.Create(t, st, testkit.Tenant(tid))
		e.server(tid, "default", nil)
		e.client(tid, "web", model.ClientSpec{ServerID: "default", SecretHash: clientauth.HashSecret(webSecret),
			GrantTypes: []string{model.GrantAuthorizationCode, model.GrantRefreshToken}, ResponseTypes: []string{"code"},
			RedirectURIs: []string{webRedirect}, PostLogoutRedirectURIs: []string{webLoggedOut}, TokenEndpointAuthMethod: model.AuthMethodBasic})
		e.client(tid, "cli", model.ClientSpec{ServerID: "default", Public: true,
			GrantTypes: []string{model.GrantAuthorizationCode, model.GrantRefreshToken}, ResponseTypes: []string{"code"},
			RedirectURIs: []string{cliRedirect}, TokenEndpointAuthMethod: model.AuthMethodNone})
		e.client(tid, "machine", model.ClientSpec{ServerID: "default", SecretHash: clientauth.HashSecret(machineSecret),
			GrantTypes: []string{model.GrantClientCredentials}, TokenEndpointAuthMethod: model.AuthMethodBasic, Audience: []string{"orders-api"}})
		testkit.Create(t, st,
			&store.Object{Kind: model.KindScope, TenantID: tid, ID: "orders-read", Name: "orders.read", Spec: mustJSON(model.ScopeSpec{ServerID: "default"})},
			&store.Object{Kind: model.KindClaim, TenantID: tid, ID: "email", Spec: mustJSON(model.ClaimSpec{ServerID: "default", Name: "email", Mapping: "email", Type: model.ClaimAccessToken})},
			&store.Object{Kind: model.KindClaim, TenantID: tid, ID: "groups", Spec: mustJSON(model.ClaimSpec{ServerID: "default", Name: "groups", Mapping: "org.groups", Type: model.ClaimIDToken})},
		)
	}
	e.server("acme", "other", nil)
	e.client("acme", "other-web", model.ClientSpec{ServerID: "other", SecretHash: clientauth.HashSecret(webSecret),
		GrantTypes: []string{model.GrantAuthorizationCode, model.GrantClientCredentials}, RedirectURIs: []string{webRedirect}})
	return e
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// server creates a server with alice as a static user; edit changes its
// spec first.
func (e *env) server(tid, aid string, edit func(*model.ServerSpec)) {
	spec := model.ServerSpec{
		KeyType:              "rsa",
		GrantTypes:           []string{model.GrantAuthorizationCode, model.GrantClientCredentials, model.GrantRefreshToken},
		AuthorizationCodeTTL: model.Duration(10 * time.Minute), AccessTokenTTL: model.Duration(time.Hour),
		IDTokenTTL: model.Duration(time.Hour), RefreshTokenTTL: model.Duration(720 * time.Hour),
		CookieMaxAge: model.Duration(time.Hour), AccessTokenStrategy: model.AccessTokenJWT,
		Authentications: []model.AuthenticationMethod{{ID: "staff", Method: model.LoginStatic, Static: &model.StaticLogin{
			Hint: "Sign in with your staff account.",
			Users: []model.StaticUser{{Username: "alice", PasswordHash: aliceHash(), AuthenticationContext: map[string]any{
				"email": "alice@example.com", "email_verified": true, "name": "Alice Liddell", "org": map[string]any{"groups": []any{"admins", "staff"}},
			}}},
		}}},
	}
	if edit != nil {
		edit(&spec)
	}
	testkit.Create(e.t, e.st, &store.Object{Kind: model.KindServer, TenantID: tid, ID: aid, Name: aid, Spec: mustJSON(spec)})
}

func (e *env) client(tid, id string, spec model.ClientSpec) {
	testkit.Create(e.t, e.st, &store.Object{Kind: model.KindClient, TenantID: tid, ID: id, Spec: mustJSON(spec)})
}

func (e *env) issuer(tid, aid string) string { return e.srv.URL + "/" + tid + "/" + aid }

// snapshot counts the runtime records and the revocations of a tenant:
// what a refused request must leave unchanged.
func (e *env) snapshot(tid string) map[string]int {
	e.t.Helper()
	ctx := context.Background()
	out := map[string]int{}
	for _, kind := range []string{grants.KindAuthRequests, grants.KindCodes, grants.KindCodesUsed, grants.KindAccessTokens,
		grants.KindRefreshTokens, grants.KindRefreshUsed, grants.KindRevokedFamilies, grants.KindSessions, grants.KindAuthRequestSlots,
		grants.KindAssertionsUsed} {
		entries, err := e.st.ListState(ctx, kind, tid)
		if err != nil {
			e.t.Fatal(err)
		}
		out[kind] = len(entries)
	}
	page, err := e.st.List(ctx, store.Query{Kind: model.KindTokenRevocation, TenantID: tid})
	if err != nil {
		e.t.Fatal(err)
	}
	out[model.KindTokenRevocation] = len(page.Items)
	return out
}

// unchanged fails when a tenant's records differ from before.
func (e *env) unchanged(tid string, before map[string]int, what string) {
	e.t.Helper()
	after := e.snapshot(tid)
	for k, v := range before {
		if after[k] != v {
			e.t.Fatalf("%s changed %s: %d → %d (all: %v → %v)", what, k, v, after[k], before, after)
		}
	}
}

// browser is an HTTP client with a cookie jar that does not follow
// redirects (drive follows them, stopping at the client's redirect URI).
func (e *env) browser() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// result is where a browser flow ended.
type result struct {
	// callback is the redirect to the client's redirect URI (nil when the
	// flow ended elsewhere).
	callback *url.URL
	// status and body of the last response otherwise.
	status int
	body   string
	// loginStatus is the status of the answer to the login form's POST.
	loginStatus int
}

// drive runs a browser from start: it follows redirects, fills in and
// posts the login form with username and password (when one is shown),
// and stops at a redirect to a URI starting with stopAt.
func (e *env) drive(c *http.Client, start, stopAt, username, password string) result {
	e.t.Helper()
	next, method, form := start, http.MethodGet, url.Values(nil)
	res := result{}
	for range 12 {
		var req *http.Request
		if method == http.MethodPost {
			req, _ = http.NewRequest(method, next, strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		} else {
			req, _ = http.NewRequest(method, next, nil)
		}
		resp, err := c.Do(req)
		if err != nil {
			e.t.Fatalf("%s %s: %v", method, next, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if method == http.MethodPost {
			res.loginStatus = resp.StatusCode
		}
		if resp.StatusCode >= 300 && resp.StatusCode < 400 {
			loc, err := resp.Request.URL.Parse(resp.Header.Get("Location"))
			if err != nil {
				e.t.Fatalf("redirect %q: %v", resp.Header.Get("Location"), err)
			}
			if strings.HasPrefix(loc.String(), stopAt) {
				res.callback = loc
				return res
			}
			next, method, form = loc.String(), http.MethodGet, nil
			continue
		}
		res.status, res.body = resp.StatusCode, string(body)
		action, fields, ok := loginForm(string(body))
		if !ok || username == "" || method == http.MethodPost && resp.StatusCode != http.StatusOK {
			return res
		}
		target, err := resp.Request.URL.Parse(action)
		if err != nil {
			e.t.Fatal(err)
		}
		fields.Set("username", username)
		fields.Set("password", password)
		next, method, form = target.String(), http.MethodPost, fields
	}
	e.t.Fatalf("too many redirects from %s", start)
	return res
}

// loginForm parses the login page: the form's action and its fields.
func loginForm(page string) (string, url.Values, bool) { return browser.LoginForm(page) }

// postForm posts a form with optional basic auth and decodes the JSON answer.
func (e *env) postForm(endpoint string, form url.Values, user, pass string) (int, map[string]any) {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if user != "" {
		req.SetBasicAuth(url.QueryEscape(user), url.QueryEscape(pass))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	out := map[string]any{}
	if len(body) > 0 {
		if err := json.Unmarshal(body, &out); err != nil {
			e.t.Fatalf("POST %s: %d %q is not JSON", endpoint, resp.StatusCode, body)
		}
	}
	return resp.StatusCode, out
}

// introspect asks server aid of tid about a token as client web.
func (e *env) introspect(tid, aid, token string) map[string]any {
	e.t.Helper()
	status, body := e.postForm(e.issuer(tid, aid)+"/oauth2/introspect", url.Values{"token": {token}}, "web", webSecret)
	if aid == "other" {
		status, body = e.postForm(e.issuer(tid, aid)+"/oauth2/introspect", url.Values{"token": {token}}, "other-web", webSecret)
	}
	if status != http.StatusOK {
		e.t.Fatalf("introspect at %s/%s: %d %v", tid, aid, status, body)
	}
	return body
}

func base64URLDecode(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }
