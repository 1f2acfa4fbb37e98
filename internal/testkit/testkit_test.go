package testkit_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/store"
)

// recorder is a testing.TB that records a fatal failure instead of ending
// the goroutine, so the kit's failures can be asserted.
type recorder struct {
	testing.TB
	failed string
}

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(format string, args ...any) {
	if r.failed == "" {
		r.failed = fmt.Sprintf(format, args...)
	}
}

func TestEventually(t *testing.T) {
	t.Run("returns once the condition holds", func(t *testing.T) {
		var calls atomic.Int32
		rec := &recorder{TB: t}
		testkit.Eventually(rec, 5*time.Second, func() error {
			n := calls.Add(1)
			return testkit.Check(n >= 3, "%d calls", n)
		}, "three calls")
		if rec.failed != "" || calls.Load() != 3 {
			t.Fatalf("failed %q after %d calls", rec.failed, calls.Load())
		}
	})
	t.Run("a timeout reports what was awaited and the last state observed", func(t *testing.T) {
		var calls atomic.Int32
		rec := &recorder{TB: t}
		start := time.Now()
		testkit.Eventually(rec, 50*time.Millisecond, func() error {
			return fmt.Errorf("revision %d", calls.Add(1))
		}, "gateway %s to be rebuilt", "edge")
		last := calls.Load()
		if time.Since(start) < 50*time.Millisecond || last < 2 {
			t.Fatalf("gave up after %v and %d calls", time.Since(start), last)
		}
		want := fmt.Sprintf("waiting for gateway edge to be rebuilt; last observed: revision %d", last)
		if !strings.Contains(rec.failed, want) {
			t.Fatalf("failure %q does not say %q", rec.failed, want)
		}
	})
	t.Run("EventuallyEvery checks at its own interval", func(t *testing.T) {
		var calls atomic.Int32
		rec := &recorder{TB: t}
		testkit.EventuallyEvery(rec, 120*time.Millisecond, 50*time.Millisecond, func() error {
			return fmt.Errorf("call %d", calls.Add(1))
		}, "never")
		if n := calls.Load(); n < 2 || n > 4 || !strings.Contains(rec.failed, fmt.Sprintf("last observed: call %d", n)) {
			t.Fatalf("%d calls in 120 ms at 50 ms, failure %q", n, rec.failed)
		}
	})
	t.Run("Check is nil when ok and the state otherwise", func(t *testing.T) {
		if err := testkit.Check(true, "x"); err != nil {
			t.Fatal(err)
		}
		if err := testkit.Check(false, "at %d", 7); err == nil || err.Error() != "at 7" {
			t.Fatalf("got %v", err)
		}
	})
}

func TestReceive(t *testing.T) {
	t.Run("returns the value sent", func(t *testing.T) {
		ch := make(chan string, 1)
		ch <- "x"
		if got := testkit.Receive(t, ch, time.Second, "x"); got != "x" {
			t.Fatalf("got %q", got)
		}
	})
	t.Run("a timeout fails the test naming what was awaited", func(t *testing.T) {
		rec := &recorder{TB: t}
		testkit.Receive(rec, make(chan int), 20*time.Millisecond, "the %s build", "heavy")
		if !strings.Contains(rec.failed, "waiting for the heavy build") {
			t.Fatalf("failure %q", rec.failed)
		}
	})
}

func TestStoreAndBuilders(t *testing.T) {
	st := testkit.Store(t)
	rev := testkit.Create(t, st,
		testkit.Tenant("acme"),
		testkit.Service("acme", "pets", "http://pets.internal", "pets.example.com"),
		testkit.Policy("acme", "allow", testkit.Validators(testkit.AllowAll())),
		testkit.API("acme", "pets-get", model.APISpec{ServiceID: "pets", Method: "GET", Path: "/pets", PolicyID: "allow"}),
		testkit.Gateway("acme", "edge", model.GatewaySpec{Type: model.GatewayEnvoy}))
	if rev <= 0 {
		t.Fatalf("revision %d", rev)
	}
	edited := testkit.Edit(t, st, model.KindPolicy, "acme", "allow", func(p *model.PolicySpec) {
		p.Validators = []model.ValidatorConfig{testkit.HeaderEquals("x-v", "1")}
	})
	if edited <= rev {
		t.Fatalf("edit revision %d not after %d", edited, rev)
	}
	err := st.View(context.Background(), func(ctx context.Context, r store.Reader) error {
		tn, err := store.Repo[model.TenantSpec]{Kind: model.KindTenant}.Get(ctx, r, "", "acme")
		if err != nil || tn.Spec.Name != "acme" || tn.Spec.Status != model.TenantAvailable {
			return fmt.Errorf("tenant %+v: %v", tn, err)
		}
		svc, err := store.Repo[model.ServiceSpec]{Kind: model.KindService}.GetByName(ctx, r, "acme", "pets")
		if err != nil || svc.Spec.URL != "http://pets.internal" || len(svc.Spec.Hosts) != 1 {
			return fmt.Errorf("service %+v: %v", svc, err)
		}
		api, err := store.Repo[model.APISpec]{Kind: model.KindAPI}.Get(ctx, r, "acme", "pets-get")
		if err != nil || api.Meta.ParentID != "pets" || api.Spec.Path != "/pets" {
			return fmt.Errorf("api %+v: %v", api, err)
		}
		p, err := store.Repo[model.PolicySpec]{Kind: model.KindPolicy}.Get(ctx, r, "acme", "allow")
		if err != nil || p.Meta.Name != "allow" || len(p.Spec.Validators) != 1 || p.Spec.Validators[0].Conf["value"] != "1" {
			return fmt.Errorf("policy %+v: %v", p, err)
		}
		gw, err := store.Repo[model.GatewaySpec]{Kind: model.KindGateway}.GetByName(ctx, r, "acme", "edge")
		if err != nil || gw.Spec.Type != model.GatewayEnvoy {
			return fmt.Errorf("gateway %+v: %v", gw, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := testkit.SecretBox(t).Seal([]byte("x"), nil); err != nil {
		t.Fatal(err)
	}
}

func TestPostgresStore(t *testing.T) {
	st := testkit.PostgresStore(t)
	if rev := testkit.Create(t, st, testkit.Tenant("acme")); rev <= 0 {
		t.Fatalf("revision %d", rev)
	}
	if _, err := st.Get(context.Background(), model.KindTenant, "", "acme"); err != nil {
		t.Fatal(err)
	}
}

func TestHTTPClient(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/missing" {
			w.WriteHeader(http.StatusNotFound)
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"method": r.Method, "path": r.URL.RequestURI(),
			"auth": r.Header.Get("Authorization"), "type": r.Header.Get("Content-Type"),
			"x": r.Header.Get("X-Extra"), "body": r.ContentLength})
	}))
	defer srv.Close()
	c := testkit.NewHTTPClient(srv.URL, "secret")
	got := c.Expect(t, 200, "POST", "/things?x=1", map[string]any{"a": 1}, "X-Extra", "yes").JSON(t)
	if got["method"] != "POST" || got["path"] != "/things?x=1" || got["auth"] != "Bearer secret" ||
		got["type"] != "application/json" || got["x"] != "yes" || got["body"] != float64(len(`{"a":1}`)) {
		t.Fatalf("request as the server saw it: %v", got)
	}
	got = c.WithToken("").Do(t, "GET", "/", nil).JSON(t)
	if got["auth"] != "" || got["type"] != "" || got["body"] != float64(0) {
		t.Fatalf("a request without token or body: %v", got)
	}
	if r := c.Do(t, "GET", "/missing", nil); r.Status != 404 {
		t.Fatalf("status %d", r.Status)
	}
	if _, err := testkit.NewHTTPClient("http://127.0.0.1:0", "").Send(context.Background(), "GET", "/", nil); err == nil {
		t.Fatal("a transport error is returned")
	}
	var v struct{ Method string }
	if err := (testkit.Response{Status: 200, Body: []byte(`{"method":"GET"}`)}).Decode(&v); err != nil || v.Method != "GET" {
		t.Fatalf("decode: %v %+v", err, v)
	}
	if err := (testkit.Response{Status: 500, Body: []byte(`oops`)}).Decode(&v); err == nil || !strings.Contains(err.Error(), "oops") {
		t.Fatalf("a body that is not JSON: %v", err)
	}
}
