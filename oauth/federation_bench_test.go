package oauth

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"golang.org/x/oauth2"

	"github.com/gatehouse-dev/gatehouse/directory"
	"github.com/gatehouse-dev/gatehouse/internal/pgtest"
	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/oauth/clientauth"
	"github.com/gatehouse-dev/gatehouse/oauth/keys"
	"github.com/gatehouse-dev/gatehouse/store"
)

// timedTransport is a browser's transport that measures its requests to
// Gatehouse (host): each one's round trip, less the time the upstream's
// handlers ran meanwhile (Gatehouse's own calls to it: discovery, token,
// userinfo, JWKS), by endpoint. The browser's requests to the upstream
// are not counted.
type timedTransport struct {
	host string
	up   *fakeOP
	own  map[string]time.Duration
}

func (t *timedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Host != t.host {
		return http.DefaultTransport.RoundTrip(req)
	}
	busy := t.up.busy.Load()
	start := time.Now()
	res, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	res.Body = io.NopCloser(strings.NewReader(string(body)))
	t.own[endpointOf(req.URL.Path)] += time.Since(start) - time.Duration(t.up.busy.Load()-busy)
	return res, err
}

// endpointOf names the Gatehouse endpoint of a path.
func endpointOf(path string) string {
	for _, k := range []string{"/login/callback", "/oauth2/authorize/callback", "/oauth2/authorize", "/oauth2/token", "/login"} {
		if strings.HasSuffix(path, k) {
			return k
		}
	}
	return path
}

// BenchmarkFederatedLogin is one whole federated login per iteration, a
// new browser each time: the relying party's authorization request, the
// login page's redirect to the upstream (one oidc method), the upstream
// (fakeOP in process: its handlers' time is subtracted, it signs the
// user in without a page), the callback (code exchange with PKCE, ID
// token verification against the cached JWKS, userinfo, the user found
// by mapping, the session), the code and the relying party's token
// exchange. Reported: Gatehouse's own time of the federation's steps
// (/login and /login/callback) and of the whole login, p50 and p95, in
// ms. docs/benchmarks.md has the figures.
func BenchmarkFederatedLogin(b *testing.B) {
	b.Run("embedded", func(b *testing.B) { benchFederatedLogin(b, testkit.Store(b)) })
	if os.Getenv(pgtest.EnvDatabaseURL) != "" {
		b.Run("postgres", func(b *testing.B) { benchFederatedLogin(b, testkit.PostgresStore(b)) })
	}
}

func benchFederatedLogin(b *testing.B, st store.Store) {
	gin.SetMode(gin.ReleaseMode)
	eng := gin.New()
	srv := httptest.NewServer(eng)
	b.Cleanup(srv.Close)
	box := testkit.SecretBox(b)
	p, err := New(Options{Store: st, Keys: keys.NewManager(st, box), PublicURL: srv.URL, CryptoKey: [32]byte{1, 2, 3},
		Box: box, IdPAllowPrivateURLs: true})
	if err != nil {
		b.Fatal(err)
	}
	p.Register(eng)
	up := newFakeOP(b, fedClientID, fedSecret)
	sealed, err := directory.SealIdPSecret(box, "acme", "corp", fedSecret)
	if err != nil {
		b.Fatal(err)
	}
	spec := model.ServerSpec{KeyType: "rsa", GrantTypes: []string{model.GrantAuthorizationCode},
		AuthorizationCodeTTL: model.Duration(10 * time.Minute), AccessTokenTTL: model.Duration(time.Hour),
		IDTokenTTL: model.Duration(time.Hour), RefreshTokenTTL: model.Duration(time.Hour), CookieMaxAge: model.Duration(time.Hour),
		AccessTokenStrategy: model.AccessTokenJWT, Authentications: []model.AuthenticationMethod{oidcMethod("corp-login", "corp")}}
	testkit.Create(b, st, testkit.Tenant("acme"),
		&store.Object{Kind: model.KindServer, TenantID: "acme", ID: "default", Name: "default", Spec: mustJSON(spec)},
		&store.Object{Kind: model.KindClient, TenantID: "acme", ID: "web", Spec: mustJSON(model.ClientSpec{
			ServerID: "default", SecretHash: clientauth.HashSecret(webSecret), GrantTypes: []string{model.GrantAuthorizationCode},
			ResponseTypes: []string{"code"}, RedirectURIs: []string{webRedirect}, TokenEndpointAuthMethod: model.AuthMethodBasic})},
		&store.Object{Kind: model.KindIdentityProvider, TenantID: "acme", ID: "corp", Name: "corp", Spec: mustJSON(model.IdentityProviderSpec{
			Type: model.IdPOIDC, Issuer: up.issuer, ClientID: fedClientID, ClientSecretSealed: sealed, Active: true})})
	u := &store.Typed[model.UserSpec]{Meta: store.Object{TenantID: "acme", ID: "u-bob"},
		Spec: model.UserSpec{Email: "bob@corp.example", EmailVerified: true, State: model.UserActive}}
	testkit.Write(b, st, func(ctx context.Context, tx store.Tx) error {
		if err := directory.CreateUser(ctx, tx, u); err != nil {
			return err
		}
		_, err := directory.AddMapping(ctx, tx, "acme", u.Meta.ID, "corp", "upstream-user-1")
		return err
	})
	issuer := srv.URL + "/acme/default"
	conf := oauth2.Config{ClientID: "web", ClientSecret: webSecret, RedirectURL: webRedirect, Scopes: []string{"openid", "email"},
		Endpoint: oauth2.Endpoint{AuthURL: issuer + "/oauth2/authorize", TokenURL: issuer + "/oauth2/token", AuthStyle: oauth2.AuthStyleInHeader}}
	host := strings.TrimPrefix(srv.URL, "http://")
	login := func() (fed, whole time.Duration, err error) {
		tt := &timedTransport{host: host, up: up, own: map[string]time.Duration{}}
		jar, _ := cookiejar.New(nil)
		c := &http.Client{Jar: jar, Transport: tt, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		verifier := oauth2.GenerateVerifier()
		next := conf.AuthCodeURL("rp-state", oauth2.S256ChallengeOption(verifier))
		var code string
		for range 12 {
			res, err := c.Get(next)
			if err != nil {
				return 0, 0, err
			}
			res.Body.Close()
			loc, err := res.Request.URL.Parse(res.Header.Get("Location"))
			if err != nil || res.StatusCode < 300 || res.StatusCode >= 400 {
				return 0, 0, fmt.Errorf("GET %s: %d", next, res.StatusCode)
			}
			if strings.HasPrefix(loc.String(), webRedirect) {
				code = loc.Query().Get("code")
				break
			}
			next = loc.String()
		}
		if code == "" {
			return 0, 0, fmt.Errorf("no code")
		}
		ctx := context.WithValue(context.Background(), oauth2.HTTPClient, &http.Client{Transport: tt})
		if _, err := conf.Exchange(ctx, code, oauth2.VerifierOption(verifier)); err != nil {
			return 0, 0, err
		}
		for _, d := range tt.own {
			whole += d
		}
		return tt.own["/login"] + tt.own["/login/callback"], whole, nil
	}
	if _, _, err := login(); err != nil { // warm: discovery and JWKS cached, keys made
		b.Fatal(err)
	}
	var feds, wholes []time.Duration
	for b.Loop() {
		fed, whole, err := login()
		if err != nil {
			b.Fatal(err)
		}
		feds, wholes = append(feds, fed), append(wholes, whole)
	}
	report := func(name string, ds []time.Duration) {
		slices.Sort(ds)
		b.ReportMetric(float64(ds[len(ds)/2])/1e6, name+"-p50-ms")
		b.ReportMetric(float64(ds[len(ds)*95/100])/1e6, name+"-p95-ms")
	}
	report("federation", feds)
	report("login", wholes)
}
