package oauth

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"golang.org/x/oauth2"

	"github.com/gatehouse-dev/gatehouse/directory"
	"github.com/gatehouse-dev/gatehouse/internal/passwords"
	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	"github.com/gatehouse-dev/gatehouse/internal/testkit/browser"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/oauth/clientauth"
	"github.com/gatehouse-dev/gatehouse/oauth/keys"
	"github.com/gatehouse-dev/gatehouse/store"
)

// BenchmarkPasswordLogin: password logins of a tenant user (method
// password, argon2id at passwords' parameters: 19 MiB, 2 passes, 1
// lane), each by a new browser: GET /oauth2/authorize → the login form →
// POST email and password → the redirect to the client with a code (the
// code exchange is not part of it), from 16 concurrent browsers. The
// verifications wait for the provider's slots (2×GOMAXPROCS), which
// bounds the memory argon2id takes: peak-heap-MiB is the largest heap
// in use sampled during the run. logins/s/core is logins per second of
// the process's CPU time (provider, HTTP and the browsers together).
func BenchmarkPasswordLogin(b *testing.B) {
	benchStoresOnly(b, func(b *testing.B, st store.Store) {
		eng := gin.New()
		srv := httptest.NewServer(eng)
		b.Cleanup(srv.Close)
		p, err := New(Options{Store: st, Keys: keys.NewManager(st, testkit.SecretBox(b)), PublicURL: srv.URL, CryptoKey: [32]byte{1, 2, 3},
			PasswordWait: time.Minute})
		if err != nil {
			b.Fatal(err)
		}
		p.Register(eng)
		testkit.Create(b, st, testkit.Tenant("acme"))
		spec := model.ServerSpec{KeyType: "ecdsa", GrantTypes: []string{model.GrantAuthorizationCode, model.GrantRefreshToken},
			AuthorizationCodeTTL: model.Duration(10 * time.Minute), AccessTokenTTL: model.Duration(time.Hour),
			IDTokenTTL: model.Duration(time.Hour), RefreshTokenTTL: model.Duration(720 * time.Hour),
			CookieMaxAge: model.Duration(time.Hour), AccessTokenStrategy: model.AccessTokenJWT,
			Authentications: []model.AuthenticationMethod{{ID: "pw", Method: model.LoginPassword, Password: &model.PasswordLogin{}}}}
		testkit.Create(b, st,
			&store.Object{Kind: model.KindServer, TenantID: "acme", ID: "pw", Name: "pw", Spec: mustJSON(spec)},
			&store.Object{Kind: model.KindClient, TenantID: "acme", ID: "web", Spec: mustJSON(model.ClientSpec{
				ServerID: "pw", SecretHash: clientauth.HashSecret(webSecret),
				GrantTypes: []string{model.GrantAuthorizationCode}, ResponseTypes: []string{"code"},
				RedirectURIs: []string{webRedirect}, TokenEndpointAuthMethod: model.AuthMethodBasic})})
		u := &store.Typed[model.UserSpec]{Meta: store.Object{TenantID: "acme", ID: "alice"},
			Spec: model.UserSpec{Email: "alice@acme.example", State: model.UserActive, PasswordHash: aliceHash()}}
		testkit.Write(b, st, func(ctx context.Context, tx store.Tx) error { return directory.CreateUser(ctx, tx, u) })
		tr := &http.Transport{MaxIdleConns: 64, MaxIdleConnsPerHost: 64}
		b.Cleanup(tr.CloseIdleConnections)
		conf := oauth2.Config{ClientID: "web", RedirectURL: webRedirect, Scopes: []string{"openid"},
			Endpoint: oauth2.Endpoint{AuthURL: srv.URL + "/acme/pw/oauth2/authorize"}}
		login := func() error {
			jar, _ := cookiejar.New(nil)
			c := &http.Client{Jar: jar, Transport: tr, Timeout: time.Minute,
				CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			next := conf.AuthCodeURL("st", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))
			var form url.Values
			for range 8 {
				var res *http.Response
				var err error
				if form != nil {
					res, err = c.PostForm(next, form)
					form = nil
				} else {
					res, err = c.Get(next)
				}
				if err != nil {
					return err
				}
				body, _ := io.ReadAll(res.Body)
				res.Body.Close()
				if loc := res.Header.Get("Location"); res.StatusCode >= 300 && res.StatusCode < 400 {
					if strings.HasPrefix(loc, webRedirect) {
						if !strings.Contains(loc, "code=") {
							return fmt.Errorf("no code: %s", loc)
						}
						return nil
					}
					u, _ := res.Request.URL.Parse(loc)
					next = u.String()
					continue
				}
				action, fields, ok := browser.Form(string(body))
				if !ok || res.StatusCode != http.StatusOK {
					return fmt.Errorf("%d %.200s", res.StatusCode, body)
				}
				fields.Set("email", "alice@acme.example")
				fields.Set("password", alicePassword)
				u, _ := res.Request.URL.Parse(action)
				next, form = u.String(), fields
			}
			return fmt.Errorf("too many steps")
		}
		if err := login(); err != nil { // keys, dummy hash
			b.Fatal(err)
		}
		var peak atomic.Uint64
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			var ms runtime.MemStats
			t := time.NewTicker(20 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
					runtime.ReadMemStats(&ms)
					if ms.HeapInuse > peak.Load() {
						peak.Store(ms.HeapInuse)
					}
				}
			}
		}()
		b.SetParallelism(max(1, 16/runtime.GOMAXPROCS(0)))
		b.ResetTimer()
		cpu := processCPU()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := login(); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.StopTimer()
		used := processCPU() - cpu
		close(stop)
		wg.Wait()
		reportRate(b, "logins/s")
		if used > 0 {
			b.ReportMetric(float64(b.N)/used.Seconds(), "logins/s/core")
		}
		reportCPU(b, cpu)
		b.ReportMetric(float64(peak.Load())/(1<<20), "peak-heap-MiB")
		b.ReportMetric(float64(cap(p.verifySlots)), "verify-slots")
		b.ReportMetric(float64(passwords.Memory)/1024, "argon2-MiB")
	})
}

// benchStoresOnly runs fn on the embedded store (PostgreSQL adds nothing
// to what argon2id costs).
func benchStoresOnly(b *testing.B, fn func(b *testing.B, st store.Store)) {
	b.Run("embedded", func(b *testing.B) { fn(b, testkit.Store(b)) })
}
