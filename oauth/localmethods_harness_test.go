package oauth

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/gatehouse-dev/gatehouse/directory"
	"github.com/gatehouse-dev/gatehouse/internal/pgtest"
	"github.com/gatehouse-dev/gatehouse/internal/secretbox"
	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	"github.com/gatehouse-dev/gatehouse/internal/testkit/browser"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/store"
)

// testClock is the provider's clock in the tests of the local methods:
// real time moved on by advance (lockouts, TOTP steps).
type testClock struct{ offset atomic.Int64 }

func (c *testClock) Now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *testClock) advance(d time.Duration) { c.offset.Add(int64(d)) }

// localEnv is an env whose acme/default server has the password method
// only, with a movable clock and a secret box.
type localEnv struct {
	*env
	clock *testClock
	box   *secretbox.Box
}

// localBackends runs fn on an embedded store, and on PostgreSQL when
// GATEHOUSE_TEST_DATABASE_URL is set.
func localBackends(t *testing.T, fn func(t *testing.T, e *localEnv)) {
	t.Helper()
	t.Run("embedded", func(t *testing.T) { fn(t, newLocalEnv(t, testkit.Store(t))) })
	if os.Getenv(pgtest.EnvDatabaseURL) != "" {
		t.Run("postgres", func(t *testing.T) { fn(t, newLocalEnv(t, testkit.PostgresStore(t))) })
	}
}

func newLocalEnv(t *testing.T, st store.Store) *localEnv {
	t.Helper()
	clock := &testClock{}
	box := testkit.SecretBox(t)
	e := newEnvWith(t, st, func(o *Options) { o.Now, o.Box = clock.Now, box })
	le := &localEnv{env: e, clock: clock, box: box}
	le.methods("acme", "default", model.AuthenticationMethod{ID: "pw", Method: model.LoginPassword,
		Password: &model.PasswordLogin{Hint: "Sign in with your work email."}})
	return le
}

// methods replaces the login methods of a server.
func (e *localEnv) methods(tid, aid string, ms ...model.AuthenticationMethod) {
	testkit.Edit(e.t, e.st, model.KindServer, tid, aid, func(s *model.ServerSpec) { s.Authentications = ms })
}

// mfa sets the tenant's mfa_provider.
func (e *localEnv) mfa(tid, provider string) {
	testkit.Edit(e.t, e.st, model.KindTenant, "", tid, func(s *model.TenantSpec) { s.MFAProvider = provider })
}

// addUser creates an active user of tid with alice's password and
// returns its id.
func (e *localEnv) addUser(tid, email string, edit func(*model.UserSpec)) string {
	e.t.Helper()
	u := &store.Typed[model.UserSpec]{Meta: store.Object{TenantID: tid, ID: uuid.NewString()},
		Spec: model.UserSpec{Email: email, EmailVerified: true, GivenName: "Alice", FamilyName: "Liddell", State: model.UserActive,
			PasswordHash: aliceHash()}}
	if edit != nil {
		edit(&u.Spec)
	}
	testkit.Write(e.t, e.st, func(ctx context.Context, tx store.Tx) error { return directory.CreateUser(ctx, tx, u) })
	return u.Meta.ID
}

// user reads a user.
func (e *localEnv) user(tid, id string) *store.Typed[model.UserSpec] {
	e.t.Helper()
	u, err := directory.Users.Get(context.Background(), e.st, tid, id)
	if err != nil {
		e.t.Fatal(err)
	}
	return u
}

// step is one answer in a browser flow.
type step struct {
	status int
	header http.Header
	body   string
	// stopped is the redirect to a URI starting with the walk's stopAt.
	stopped *url.URL
}

// walk sends one request from the browser and follows redirects until a
// page, or a redirect to a URI starting with stopAt.
func (e *localEnv) walk(c *http.Client, method, target string, form url.Values, stopAt string) step {
	e.t.Helper()
	for range 12 {
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
		if resp.StatusCode >= 300 && resp.StatusCode < 400 {
			loc, err := resp.Request.URL.Parse(resp.Header.Get("Location"))
			if err != nil {
				e.t.Fatal(err)
			}
			if strings.HasPrefix(loc.String(), stopAt) {
				return step{status: resp.StatusCode, header: resp.Header, stopped: loc}
			}
			target, method, form = loc.String(), http.MethodGet, nil
			continue
		}
		return step{status: resp.StatusCode, header: resp.Header, body: string(body)}
	}
	e.t.Fatalf("too many redirects from %s", target)
	return step{}
}

// submit fills in the page's form with fields and posts it.
func (e *localEnv) submit(c *http.Client, page step, fields map[string]string, stopAt string) step {
	e.t.Helper()
	action, values, ok := browser.Form(page.body)
	if !ok {
		e.t.Fatalf("no form on the page (%d): %s", page.status, page.body)
	}
	for k, v := range fields {
		values.Set(k, v)
	}
	target, err := url.Parse(e.srv.URL)
	if err != nil {
		e.t.Fatal(err)
	}
	target, err = target.Parse(action)
	if err != nil {
		e.t.Fatal(err)
	}
	return e.walk(c, http.MethodPost, target.String(), values, stopAt)
}

// formFields are the fields of the page's form.
func (e *localEnv) formFields(page step) url.Values {
	e.t.Helper()
	_, values, ok := browser.Form(page.body)
	if !ok {
		e.t.Fatalf("no form on the page (%d): %s", page.status, page.body)
	}
	return values
}

// post posts fields as a form to the issuer's login.
func (e *localEnv) postLogin(c *http.Client, tid, aid string, fields url.Values, stopAt string) step {
	e.t.Helper()
	return e.walk(c, http.MethodPost, e.issuer(tid, aid)+"/login", fields, stopAt)
}

var totpSecretPattern = regexp.MustCompile(`<code id="totp-secret">([A-Z2-7]+)</code>`)

// totpSecret is the seed an enrolment page shows ("" when none).
func totpSecret(body string) string {
	m := totpSecretPattern.FindStringSubmatch(body)
	if m == nil {
		return ""
	}
	return m[1]
}

// code returns the authorization code of a redirect to the client.
func code(t *testing.T, s step) string {
	t.Helper()
	if s.stopped == nil || s.stopped.Query().Get("code") == "" {
		t.Fatalf("want a redirect to the client with a code, got %d %v: %s", s.status, s.stopped, s.body)
	}
	return s.stopped.Query().Get("code")
}
