package oauth

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"golang.org/x/oauth2"

	"github.com/gatehouse-dev/gatehouse/internal/pgtest"
	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	"github.com/gatehouse-dev/gatehouse/internal/testkit/browser"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/oauth/clientauth"
	"github.com/gatehouse-dev/gatehouse/oauth/keys"
	"github.com/gatehouse-dev/gatehouse/store"
)

// The benchmarks run the provider in process behind httptest (loopback
// TCP, HTTP/1.1 keep-alive), on the embedded store and, when
// GATEHOUSE_TEST_DATABASE_URL is set, on PostgreSQL. Tenant acme has two
// servers, rs (key_type rsa: RS256) and es (ecdsa: ES256), each with the
// fixture's static user alice, a web client, a machine client, a scope
// and two mapped claims. docs/benchmarks.md gives the figures and the
// command (make bench-oauth).

// benchEnv is a provider over a store seeded for the benchmarks.
type benchEnv struct {
	srv  *httptest.Server
	http *http.Client
}

// benchStores runs fn on the embedded store, and on PostgreSQL when
// GATEHOUSE_TEST_DATABASE_URL is set.
func benchStores(b *testing.B, fn func(b *testing.B, e *benchEnv)) {
	b.Run("embedded", func(b *testing.B) { fn(b, newBenchEnv(b, testkit.Store(b))) })
	if os.Getenv(pgtest.EnvDatabaseURL) != "" {
		b.Run("postgres", func(b *testing.B) { fn(b, newBenchEnv(b, testkit.PostgresStore(b))) })
	}
}

// benchServers are the servers of the fixture by signature algorithm.
var benchServers = []struct{ alg, id, keyType string }{{"RS256", "rs", "rsa"}, {"ES256", "es", "ecdsa"}}

func newBenchEnv(b *testing.B, st store.Store) *benchEnv {
	b.Helper()
	eng := gin.New()
	srv := httptest.NewServer(eng)
	b.Cleanup(srv.Close)
	p, err := New(Options{Store: st, Keys: keys.NewManager(st, testkit.SecretBox(b)), PublicURL: srv.URL, CryptoKey: [32]byte{1, 2, 3}})
	if err != nil {
		b.Fatal(err)
	}
	p.Register(eng)
	testkit.Create(b, st, testkit.Tenant("acme"))
	for _, s := range benchServers {
		spec := model.ServerSpec{
			KeyType:              s.keyType,
			GrantTypes:           []string{model.GrantAuthorizationCode, model.GrantClientCredentials, model.GrantRefreshToken},
			AuthorizationCodeTTL: model.Duration(10 * time.Minute), AccessTokenTTL: model.Duration(time.Hour),
			IDTokenTTL: model.Duration(time.Hour), RefreshTokenTTL: model.Duration(720 * time.Hour),
			CookieMaxAge: model.Duration(time.Hour), AccessTokenStrategy: model.AccessTokenJWT,
			Authentications: []model.AuthenticationMethod{{ID: "staff", Method: model.LoginStatic, Static: &model.StaticLogin{
				Users: []model.StaticUser{{Username: "alice", PasswordHash: aliceHash(), AuthenticationContext: map[string]any{
					"email": "alice@example.com", "email_verified": true, "name": "Alice Liddell", "org": map[string]any{"groups": []any{"admins", "staff"}},
				}}},
			}}},
		}
		testkit.Create(b, st,
			&store.Object{Kind: model.KindServer, TenantID: "acme", ID: s.id, Name: s.id, Spec: mustJSON(spec)},
			&store.Object{Kind: model.KindClient, TenantID: "acme", ID: "web-" + s.id, Spec: mustJSON(model.ClientSpec{
				ServerID: s.id, SecretHash: clientauth.HashSecret(webSecret),
				GrantTypes: []string{model.GrantAuthorizationCode, model.GrantRefreshToken}, ResponseTypes: []string{"code"},
				RedirectURIs: []string{webRedirect}, TokenEndpointAuthMethod: model.AuthMethodBasic})},
			&store.Object{Kind: model.KindClient, TenantID: "acme", ID: "machine-" + s.id, Spec: mustJSON(model.ClientSpec{
				ServerID: s.id, SecretHash: clientauth.HashSecret(machineSecret),
				GrantTypes: []string{model.GrantClientCredentials}, TokenEndpointAuthMethod: model.AuthMethodBasic, Audience: []string{"orders-api"}})},
			&store.Object{Kind: model.KindScope, TenantID: "acme", ID: "orders-read-" + s.id, Name: "orders.read." + s.id, Spec: mustJSON(model.ScopeSpec{ServerID: s.id})},
			&store.Object{Kind: model.KindClaim, TenantID: "acme", ID: "email-" + s.id, Spec: mustJSON(model.ClaimSpec{ServerID: s.id, Name: "email", Mapping: "email", Type: model.ClaimAccessToken})},
			&store.Object{Kind: model.KindClaim, TenantID: "acme", ID: "groups-" + s.id, Spec: mustJSON(model.ClaimSpec{ServerID: s.id, Name: "groups", Mapping: "org.groups", Type: model.ClaimIDToken})},
		)
	}
	tr := &http.Transport{MaxIdleConns: 512, MaxIdleConnsPerHost: 512}
	b.Cleanup(tr.CloseIdleConnections)
	return &benchEnv{srv: srv, http: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

func (e *benchEnv) issuer(aid string) string { return e.srv.URL + "/acme/" + aid }

// post sends a form with basic auth; it returns the status and the body.
func (e *benchEnv) post(endpoint string, form url.Values, user, pass string) (int, []byte, error) {
	req, err := http.NewRequest(http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(user, pass)
	return e.do(req)
}

func (e *benchEnv) get(endpoint string) (int, []byte, error) {
	req, err := http.NewRequest(http.MethodGet, endpoint, nil)
	if err != nil {
		return 0, nil, err
	}
	return e.do(req)
}

func (e *benchEnv) do(req *http.Request) (int, []byte, error) {
	res, err := e.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	return res.StatusCode, body, err
}

// clientCredentials gets one machine token of server aid; it fails
// unless a token was issued.
func (e *benchEnv) clientCredentials(aid string) error {
	st, body, err := e.post(e.issuer(aid)+"/oauth2/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"orders.read." + aid}},
		"machine-"+aid, machineSecret)
	if err != nil {
		return err
	}
	if st != http.StatusOK || !strings.Contains(string(body), `"access_token"`) {
		return fmt.Errorf("client_credentials at %s: %d %.200s", aid, st, body)
	}
	return nil
}

// reportRate reports ops/s of a parallel benchmark under unit.
func reportRate(b *testing.B, unit string) {
	if s := b.Elapsed().Seconds(); s > 0 {
		b.ReportMetric(float64(b.N)/s, unit)
	}
}

// processCPU is the CPU time (user + system) the test process used so
// far: provider, HTTP server and benchmark clients together (not
// PostgreSQL's). On a machine shared with other work it is steadier than
// the wall-clock figures.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU reports the process's CPU time per operation since start, in
// µs.
func reportCPU(b *testing.B, start time.Duration) {
	if b.N > 0 {
		b.ReportMetric(float64(processCPU()-start)/float64(b.N)/float64(time.Microsecond), "cpu-µs/op")
	}
}

// BenchmarkClientCredentials: machine tokens (client_secret_basic, one
// scope, a JWT access token with the client's audience) from 16 and from
// 64 concurrent clients, RS256 and ES256. Each token is one runtime record
// written to the store (the embedded store commits the records of
// concurrent requests together, so more clients make larger commits).
func BenchmarkClientCredentials(b *testing.B) {
	benchStores(b, func(b *testing.B, e *benchEnv) {
		for _, s := range benchServers {
			b.Run(s.alg, func(b *testing.B) {
				if err := e.clientCredentials(s.id); err != nil { // the server's first key is made here
					b.Fatal(err)
				}
				for _, clients := range []int{16, 64} {
					b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
						b.SetParallelism(max(1, clients/runtime.GOMAXPROCS(0)))
						b.ResetTimer()
						cpu := processCPU()
						b.RunParallel(func(pb *testing.PB) {
							for pb.Next() {
								if err := e.clientCredentials(s.id); err != nil {
									b.Error(err)
									return
								}
							}
						})
						reportRate(b, "tokens/s")
						reportCPU(b, cpu)
					})
				}
			})
		}
	})
}

// BenchmarkCodeFlow: one authorization code flow per iteration, by a
// browser that already has a login session (alice logged in with her
// password once, before the timer: password hashing is excluded):
// GET /oauth2/authorize → the login page completes the request from the
// session → the callback issues the code → redirect to the client; then
// the code exchange (PKCE S256, client_secret_basic, scopes openid
// offline_access: access, refresh and ID token). Latency of each whole
// flow: p50 and p99 in ms.
func BenchmarkCodeFlow(b *testing.B) {
	benchStores(b, func(b *testing.B, e *benchEnv) {
		for _, s := range benchServers {
			b.Run(s.alg, func(b *testing.B) {
				conf := oauth2.Config{ClientID: "web-" + s.id, ClientSecret: webSecret, RedirectURL: webRedirect,
					Endpoint: oauth2.Endpoint{AuthURL: e.issuer(s.id) + "/oauth2/authorize", TokenURL: e.issuer(s.id) + "/oauth2/token"},
					Scopes:   []string{"openid", "offline_access"}}
				br := browser.New(e.http.Transport)
				flow := func(username, password string) error {
					verifier := oauth2.GenerateVerifier()
					res, err := br.Drive(conf.AuthCodeURL("st", oauth2.S256ChallengeOption(verifier)), webRedirect, username, password)
					if err != nil {
						return err
					}
					if res.Callback == nil || res.Callback.Query().Get("code") == "" {
						return fmt.Errorf("the flow ended at %d %.200s (login form shown: %v)", res.Status, res.Body, res.LoginShown)
					}
					if username == "" && res.LoginShown {
						return fmt.Errorf("the session did not complete the request")
					}
					st, body, err := e.post(conf.Endpoint.TokenURL, url.Values{"grant_type": {"authorization_code"},
						"code": {res.Callback.Query().Get("code")}, "redirect_uri": {webRedirect}, "code_verifier": {verifier}}, conf.ClientID, webSecret)
					if err != nil {
						return err
					}
					var tok struct {
						AccessToken  string `json:"access_token"`
						RefreshToken string `json:"refresh_token"`
						IDToken      string `json:"id_token"`
					}
					if st != http.StatusOK || json.Unmarshal(body, &tok) != nil || tok.AccessToken == "" || tok.RefreshToken == "" || tok.IDToken == "" {
						return fmt.Errorf("code exchange: %d %.200s", st, body)
					}
					return nil
				}
				if err := flow("alice", alicePassword); err != nil { // the login with the password, and the first key
					b.Fatal(err)
				}
				took := make([]time.Duration, 0, b.N)
				b.ResetTimer()
				cpu := processCPU()
				for range b.N {
					start := time.Now()
					if err := flow("", ""); err != nil {
						b.Fatal(err)
					}
					took = append(took, time.Since(start))
				}
				b.StopTimer()
				reportPercentiles(b, took)
				reportCPU(b, cpu)
			})
		}
	})
}

// reportPercentiles reports p50 and p99 of durations in ms.
func reportPercentiles(b *testing.B, took []time.Duration) {
	if len(took) == 0 {
		return
	}
	slices.Sort(took)
	at := func(q float64) float64 {
		return float64(took[min(len(took)-1, int(q*float64(len(took))))]) / float64(time.Millisecond)
	}
	b.ReportMetric(at(0.50), "p50-ms")
	b.ReportMetric(at(0.99), "p99-ms")
}

// BenchmarkDiscovery: GET /.well-known/openid-configuration and
// /.well-known/jwks.json from concurrent clients (GOMAXPROCS × 8), on
// server es (one published key).
func BenchmarkDiscovery(b *testing.B) {
	benchStores(b, func(b *testing.B, e *benchEnv) {
		if err := e.clientCredentials("es"); err != nil { // the first key
			b.Fatal(err)
		}
		for _, path := range []string{"openid-configuration", "jwks.json"} {
			b.Run(path, func(b *testing.B) {
				endpoint := e.issuer("es") + "/.well-known/" + path
				b.SetParallelism(8)
				b.ResetTimer()
				cpu := processCPU()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						st, body, err := e.get(endpoint)
						if err == nil && (st != http.StatusOK || len(body) == 0) {
							err = fmt.Errorf("GET %s: %d %.200s", endpoint, st, body)
						}
						if err != nil {
							b.Error(err)
							return
						}
					}
				})
				reportRate(b, "req/s")
				reportCPU(b, cpu)
			})
		}
	})
}

// BenchmarkHTTPFloor is the floor of the parallel benchmarks above: the
// same gin engine, httptest server and client, and a handler that writes
// a fixed 1 KB JSON body and reads nothing.
func BenchmarkHTTPFloor(b *testing.B) {
	eng := gin.New()
	body := []byte(`{"keys":[` + strings.Repeat(`"0123456789abcdef",`, 55) + `"end"]}`)
	eng.GET("/:tid/:aid/*rest", func(c *gin.Context) { c.Data(http.StatusOK, "application/json", body) })
	srv := httptest.NewServer(eng)
	b.Cleanup(srv.Close)
	tr := &http.Transport{MaxIdleConns: 512, MaxIdleConnsPerHost: 512}
	b.Cleanup(tr.CloseIdleConnections)
	e := &benchEnv{srv: srv, http: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
	endpoint := e.issuer("es") + "/.well-known/jwks.json"
	b.SetParallelism(8)
	b.ResetTimer()
	cpu := processCPU()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if st, _, err := e.get(endpoint); err != nil || st != http.StatusOK {
				b.Errorf("GET %s: %d %v", endpoint, st, err)
				return
			}
		}
	})
	reportRate(b, "req/s")
	reportCPU(b, cpu)
}
