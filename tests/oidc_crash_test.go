package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	"github.com/gatehouse-dev/gatehouse/internal/testkit/browser"
)

// crashPublicURL is serve's --public-url in the crash test: the issuer
// (and so every token's iss) must not change when the restarted process
// listens on another port. Nothing resolves it: crashRouter sends its
// requests to whichever process is running.
const crashPublicURL = "http://gatehouse-crash.test"

// crashRouter is the HTTP transport of the crash test's clients: requests
// to crashPublicURL's host go to the current process (the browser's
// cookie jar and redirects keep seeing the public URL).
type crashRouter struct {
	base   *http.Transport
	target atomic.Pointer[string] // host:port of the running serve
}

func (r *crashRouter) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Host == strings.TrimPrefix(crashPublicURL, "http://") {
		req = req.Clone(req.Context())
		req.URL.Host = *r.target.Load()
		req.Host = ""
	}
	return r.base.RoundTrip(req)
}

func (r *crashRouter) point(p *process) {
	host := strings.TrimPrefix(p.URL, "http://")
	r.target.Store(&host)
}

// crashUse is what became of a code's exchange or a refresh token's use
// before the crash.
type crashUse int

const (
	notUsed   crashUse = iota // handed out, never sent back
	usedAcked                 // sent back, and the tokens arrived
	usedLost                  // sent back, no answer (the crash)
)

func (u crashUse) String() string {
	return [...]string{"not used", "used (answer received)", "used (answer lost)"}[u]
}

// crashFamily is the tokens of one code exchange and its refreshes.
type crashFamily struct {
	access []string // every access token received
}

// crashCode is a code handed out by the provider.
type crashCode struct {
	code, verifier string
	use            crashUse
	family         *crashFamily // set when the exchange was acknowledged
	successes      int          // exchanges answered 200, over the whole test
}

// crashRefresh is a refresh token handed out by the provider.
type crashRefresh struct {
	token     string
	use       crashUse
	family    *crashFamily
	successes int // refreshes answered 200, over the whole test
}

// crashLedger is everything the burst was handed and what became of it.
type crashLedger struct {
	mu                   sync.Mutex
	codes                []*crashCode
	refresh              []*crashRefresh
	families             []*crashFamily
	exchanges, refreshes atomic.Int64 // acknowledged
}

// crashFixture is serve with tenant acme, server shop (static user
// alice) and a confidential client web with refresh tokens, reached
// through crashRouter.
type crashFixture struct {
	router *crashRouter
	http   *http.Client
	issuer string
	web    oauth2.Config
}

const crashRedirect = "http://127.0.0.1:1/callback"

func newCrashFixture(t *testing.T, p *process) *crashFixture {
	t.Helper()
	c := newClient(t, p.URL, testToken)
	c.must(201, "POST", "/api/system/tenants", map[string]any{"id": rpTenant, "name": "Acme"})
	c.must(201, "POST", "/api/admin/acme/servers", map[string]any{"id": rpServer, "name": "shop", "enforce_pkce": true,
		"key_type": "ecdsa", "key_activation_delay": "0s"})
	c.must(200, "PUT", "/api/admin/acme/servers/shop/authentications", map[string]any{"methods": []any{map[string]any{
		"id": "staff", "name": "Staff", "method": "static", "static": map[string]any{
			"users": []any{map[string]any{"username": "alice", "password": rpPassword}}},
	}}})
	web := c.must(201, "POST", "/api/admin/acme/clients", map[string]any{"client_id": "web", "authorization_server_id": rpServer,
		"grant_types": []string{"authorization_code", "refresh_token"}, "redirect_uris": []string{crashRedirect},
		"scopes": []string{"openid", "offline_access"}}).JSON(t)
	r := &crashRouter{base: &http.Transport{MaxIdleConnsPerHost: 16}}
	r.point(p)
	t.Cleanup(r.base.CloseIdleConnections)
	issuer := crashPublicURL + "/" + rpTenant + "/" + rpServer
	return &crashFixture{router: r, http: &http.Client{Transport: r, Timeout: 30 * time.Second}, issuer: issuer,
		web: oauth2.Config{ClientID: "web", ClientSecret: web["client_secret"].(string), RedirectURL: crashRedirect,
			Endpoint: oauth2.Endpoint{AuthURL: issuer + "/oauth2/authorize", TokenURL: issuer + "/oauth2/token"},
			Scopes:   []string{"openid", "offline_access"}}}
}

// post sends a form to an endpoint of the issuer as client web. err is a
// transport error or a body that did not arrive whole: no answer.
func (f *crashFixture) post(path string, form url.Values) (int, map[string]any, error) {
	req, err := http.NewRequest(http.MethodPost, f.issuer+path, strings.NewReader(form.Encode()))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(f.web.ClientID, url.QueryEscape(f.web.ClientSecret))
	res, err := f.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		return 0, nil, err
	}
	out := map[string]any{}
	if err := json.Unmarshal(raw, &out); err != nil {
		return 0, nil, fmt.Errorf("POST %s: %d %q is not JSON: %w", path, res.StatusCode, raw, err)
	}
	return res.StatusCode, out, nil
}

// must is post for the checks after the restart, where every request
// gets an answer.
func (f *crashFixture) must(t *testing.T, path string, form url.Values) (int, map[string]any) {
	t.Helper()
	st, body, err := f.post(path, form)
	if err != nil {
		t.Fatalf("POST %s after the restart: %v", path, err)
	}
	return st, body
}

// answer describes a token endpoint's answer without its tokens (never
// logged).
func answer(status int, body map[string]any) string {
	if status == http.StatusOK {
		return fmt.Sprintf("%d (tokens issued)", status)
	}
	return fmt.Sprintf("%d %v: %v", status, body["error"], body["error_description"])
}

func exchangeForm(c *crashCode) url.Values {
	return url.Values{"grant_type": {"authorization_code"}, "code": {c.code}, "redirect_uri": {crashRedirect}, "code_verifier": {c.verifier}}
}

func refreshForm(r *crashRefresh) url.Values {
	return url.Values{"grant_type": {"refresh_token"}, "refresh_token": {r.token}}
}

// worker runs login → exchange → refresh × refreshes, again and again,
// recording in l what it was handed and what became of it, until
// a request gets no answer (the crash) or ctx ends.
func (f *crashFixture) worker(ctx context.Context, t *testing.T, l *crashLedger, refreshes int) {
	b := browser.New(f.router) // logs in with the form once, then with its session
	for ctx.Err() == nil {
		verifier := oauth2.GenerateVerifier()
		res, err := b.Drive(f.web.AuthCodeURL("st", oauth2.S256ChallengeOption(verifier)), crashRedirect, "alice", rpPassword)
		if err != nil {
			return // the crash: no code
		}
		if res.Callback == nil || res.Callback.Query().Get("code") == "" {
			t.Errorf("the authorization ended at %d %.300s, not with a code at the redirect URI", res.Status, res.Body)
			return
		}
		c := &crashCode{code: res.Callback.Query().Get("code"), verifier: verifier}
		l.mu.Lock()
		l.codes = append(l.codes, c)
		l.mu.Unlock()

		st, body, err := f.post("/oauth2/token", exchangeForm(c))
		l.mu.Lock()
		if err != nil {
			c.use = usedLost
			l.mu.Unlock()
			return
		}
		c.use = usedAcked
		if st != 200 || body["access_token"] == nil || body["refresh_token"] == nil {
			l.mu.Unlock()
			t.Errorf("code exchange before the crash: %s", answer(st, body))
			return
		}
		c.successes++
		fam := &crashFamily{access: []string{body["access_token"].(string)}}
		c.family = fam
		rt := &crashRefresh{token: body["refresh_token"].(string), family: fam}
		l.families = append(l.families, fam)
		l.refresh = append(l.refresh, rt)
		l.mu.Unlock()
		l.exchanges.Add(1)

		for range refreshes {
			if ctx.Err() != nil {
				return
			}
			st, body, err := f.post("/oauth2/token", refreshForm(rt))
			l.mu.Lock()
			if err != nil {
				rt.use = usedLost
				l.mu.Unlock()
				return
			}
			rt.use = usedAcked
			if st != 200 || body["access_token"] == nil || body["refresh_token"] == nil {
				l.mu.Unlock()
				t.Errorf("refresh before the crash: %s", answer(st, body))
				return
			}
			rt.successes++
			fam.access = append(fam.access, body["access_token"].(string))
			rt = &crashRefresh{token: body["refresh_token"].(string), family: fam}
			l.refresh = append(l.refresh, rt)
			l.mu.Unlock()
			l.refreshes.Add(1)
		}
	}
}

// TestOIDCKill9DuringExchanges kills serve (SIGKILL) during a burst of
// code exchanges and refreshes by several clients at once, restarts it on
// the same storage, and proves, for every code and refresh token the
// burst was handed: none is usable twice over the whole test (one answered
// success at most, before and after the crash together); one whose use
// was acknowledged before the crash is refused after it with
// invalid_grant; one never used still works once; every access token
// acknowledged before the crash is active until the rules revoke it (a
// refresh token's reuse or a code's replay revokes its family), and
// inactive after. A use whose answer was lost in the crash may have
// taken effect or not.
func TestOIDCKill9DuringExchanges(t *testing.T) {
	const (
		workers        = 6  // chains of 1, 2 or 3 refreshes
		wantExchanges  = 12 // acknowledged before the kill
		wantRefreshes  = 24
		burstTimeLimit = 2 * time.Minute
	)
	for _, be := range backends() {
		t.Run(be.name, func(t *testing.T) {
			o := be.options(t)
			o.Args = append(o.Args, "--public-url", crashPublicURL)
			p := startServe(t, o)
			f := newCrashFixture(t, p)
			l := &crashLedger{}

			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			defer func() { cancel(); wg.Wait() }()
			for w := range workers {
				wg.Add(1)
				go func() { defer wg.Done(); f.worker(ctx, t, l, 1+w%3) }()
			}
			testkit.EventuallyEvery(t, burstTimeLimit, 5*time.Millisecond, func() error {
				if t.Failed() {
					return nil // a worker failed; stop waiting
				}
				e, r := l.exchanges.Load(), l.refreshes.Load()
				return testkit.Check(e >= wantExchanges && r >= wantRefreshes, "%d exchanges and %d refreshes acknowledged", e, r)
			}, "%d code exchanges and %d refreshes acknowledged", wantExchanges, wantRefreshes)
			p.kill() // SIGKILL while the workers' requests are in flight
			cancel()
			wg.Wait()
			if t.Failed() {
				return
			}

			p2 := startServe(t, o)
			f.router.point(p2)

			count := map[string]int{}
			for _, c := range l.codes {
				count["code "+c.use.String()]++
			}
			for _, r := range l.refresh {
				count["refresh token "+r.use.String()]++
			}
			t.Logf("handed out before the crash: %d codes, %d refresh tokens, %d families: %v", len(l.codes), len(l.refresh), len(l.families), count)

			active := func(tok string) bool {
				t.Helper()
				st, body := f.must(t, "/oauth2/introspect", url.Values{"token": {tok}})
				if st != 200 {
					t.Fatalf("introspect: %s", answer(st, body))
				}
				return body["active"] == true
			}
			refused := func(st int, body map[string]any) bool { return st == 400 && body["error"] == "invalid_grant" }
			// later are the refresh tokens handed out after the restart.
			var later []*crashRefresh
			issued := func(fam *crashFamily, body map[string]any) {
				fam.access = append(fam.access, body["access_token"].(string))
				later = append(later, &crashRefresh{token: body["refresh_token"].(string), family: fam})
			}

			// Nothing revoked any token before the crash: every access
			// token whose answer arrived is active.
			for _, fam := range l.families {
				for _, at := range fam.access {
					if !active(at) {
						t.Errorf("an access token acknowledged before the crash is not active after the restart")
					}
				}
			}

			// Refresh tokens never used still work, once: they are
			// tried first, while their families are alive.
			for _, r := range l.refresh {
				if r.use != notUsed {
					continue
				}
				st, body := f.must(t, "/oauth2/token", refreshForm(r))
				if st != 200 {
					t.Errorf("an unused refresh token acknowledged before the crash: %s after the restart, want new tokens", answer(st, body))
					continue
				}
				r.successes++
				issued(r.family, body)
			}
			// Used with an acknowledged answer: refused (the first such
			// try of a family finds it alive, so the use itself was kept).
			for _, r := range l.refresh {
				if r.use != usedAcked {
					continue
				}
				if st, body := f.must(t, "/oauth2/token", refreshForm(r)); !refused(st, body) {
					t.Errorf("a refresh token used before the crash (answer received): %s after the restart, want 400 invalid_grant", answer(st, body))
					if st == 200 {
						r.successes++
					}
				}
			}
			// Used with the answer lost, and the unused ones used above:
			// any second success is a token used twice.
			for _, r := range l.refresh {
				tries := 2
				if r.use == notUsed || r.use == usedAcked {
					tries = 1
				}
				for range tries {
					if st, body := f.must(t, "/oauth2/token", refreshForm(r)); st == 200 {
						r.successes++
						issued(r.family, body)
					} else if !refused(st, body) {
						t.Errorf("refresh token (%s) after the restart: %s, want 200 or 400 invalid_grant", r.use, answer(st, body))
					}
				}
			}

			// Codes: exchanged with an acknowledged answer → refused;
			// exchange lost → at most one success, then refused.
			for _, c := range l.codes {
				tries := 2
				if c.use == usedAcked {
					tries = 1
				}
				for range tries {
					st, body := f.must(t, "/oauth2/token", exchangeForm(c))
					switch {
					case st == 200:
						c.successes++
						if c.family == nil {
							c.family = &crashFamily{}
							l.families = append(l.families, c.family)
						}
						issued(c.family, body)
					case !refused(st, body):
						t.Errorf("code (%s) after the restart: %s, want 200 or 400 invalid_grant", c.use, answer(st, body))
					case c.use == notUsed:
						t.Errorf("a code never exchanged was refused after the restart: %s", answer(st, body))
					}
				}
				if c.use == usedAcked && c.successes > 1 {
					t.Errorf("a code exchanged before the crash (answer received) was exchanged again after the restart")
				}
			}

			lost := map[string]int{}
			for _, c := range l.codes {
				if c.use == usedLost {
					lost[fmt.Sprintf("lost exchanges that succeeded after the restart=%v", c.successes == 1)]++
				}
			}
			for _, r := range l.refresh {
				if r.use == usedLost {
					lost[fmt.Sprintf("lost refreshes that succeeded after the restart=%v", r.successes == 1)]++
				}
			}
			t.Logf("uses whose answer was lost: %v", lost)

			// At most one success each, over the whole test.
			for _, c := range l.codes {
				if c.successes > 1 {
					t.Errorf("a code (%s before the crash) was exchanged %d times", c.use, c.successes)
				}
			}
			for _, r := range l.refresh {
				if r.successes > 1 {
					t.Errorf("a refresh token (%s before the crash) was used %d times", r.use, r.successes)
				}
			}
			// Every family saw a reused refresh token or a replayed code:
			// the rules revoked all its tokens.
			for _, r := range later {
				if st, body := f.must(t, "/oauth2/token", refreshForm(r)); !refused(st, body) {
					t.Errorf("a refresh token issued after the restart, of a family revoked since: %s, want 400 invalid_grant", answer(st, body))
				}
			}
			for _, fam := range l.families {
				for _, at := range fam.access {
					if active(at) {
						t.Errorf("an access token of a family whose code was replayed (and refresh tokens reused) is still active")
					}
				}
			}
			p2.stop()
		})
	}
}
