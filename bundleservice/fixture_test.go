package bundleservice_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-dev/gatehouse/bundles"
	"github.com/gatehouse-dev/gatehouse/bundleservice"
	"github.com/gatehouse-dev/gatehouse/gatewaycred"
	"github.com/gatehouse-dev/gatehouse/internal/httpapi"
	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/store"
)

// site is the bundle service alone on httptest, on a real store that the
// tests write as the admin API would (package admin is above this one),
// with a running bundle manager.
type site struct {
	t       *testing.T
	store   store.Store
	bundles *bundles.Manager
	creds   *gatewaycred.Verifier
	svc     *bundleservice.Service
	srv     *httptest.Server
}

// siteOptions says how to build a site.
type siteOptions struct {
	// store is the store (an embedded one in a temporary directory when
	// nil); the site closes it.
	store store.Store
	// follow runs the credential verifier's FollowRevocations, as
	// gatehouse serve does: only then are credentials remembered.
	follow bool
	// decisionLogsKept is bundleservice.Options.DecisionLogsKept.
	decisionLogsKept int
}

func newSite(t *testing.T, o siteOptions) *site {
	t.Helper()
	st := o.store
	if st == nil {
		st = testkit.Store(t)
	} else {
		t.Cleanup(func() { st.Close() })
	}
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	mgr := bundles.NewManager(st, bundles.NewKeyStore(st, testkit.SecretBox(t)), log)
	creds := gatewaycred.New(st, log)
	ctx, cancel := context.WithCancel(context.Background())
	mgrDone, credsDone := make(chan struct{}), make(chan struct{})
	go func() { _ = mgr.Run(ctx); close(mgrDone) }()
	if o.follow {
		go func() { _ = creds.FollowRevocations(ctx, 0, func(context.Context) {}); close(credsDone) }()
	} else {
		close(credsDone)
	}
	t.Cleanup(func() { cancel(); <-mgrDone; <-credsDone })
	reg := prometheus.NewRegistry()
	svc, err := bundleservice.New(bundleservice.Options{Store: st, Bundles: mgr, Credentials: creds, Registry: reg,
		Logger: log, DecisionLogsKept: o.decisionLogsKept})
	if err != nil {
		t.Fatal(err)
	}
	m, err := httpapi.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	e := httpapi.NewEngine(log, m)
	svc.Register(e)
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	return &site{t: t, store: st, bundles: mgr, creds: creds, svc: svc, srv: srv}
}

// gateway stores gateway gw of tenant tid (the tenant too, when
// withTenant) with a credential, and returns the credential's id and
// token.
func (s *site) gateway(tid, gw string, withTenant bool) (id, token string) {
	s.t.Helper()
	cred, token, err := gatewaycred.NewCredential(tid, gw)
	if err != nil {
		s.t.Fatal(err)
	}
	objs := []*store.Object{testkit.Gateway(tid, gw, model.GatewaySpec{Type: model.GatewayEnvoy}), cred}
	if withTenant {
		objs = append([]*store.Object{testkit.Tenant(tid)}, objs...)
	}
	testkit.Create(s.t, s.store, objs...)
	return cred.ID, token
}

// bundleGateway makes tenant acme with gateway edge and returns the
// gateway's credential once its bundle is served.
func (s *site) bundleGateway() string {
	s.t.Helper()
	_, token := s.gateway("acme", "edge", true)
	s.waitBundle(bundlePath, token)
	return token
}

const bundlePath = "/api/system/acme/gateways/edge/opa/bundle"

// waitBundle fetches a gateway's bundle with its token until it is served.
func (s *site) waitBundle(path, token string) resp {
	s.t.Helper()
	var r resp
	testkit.Eventually(s.t, 10*time.Second, func() error {
		r = s.do("GET", path, token, nil)
		return testkit.Check(r.status == 200, "%d %s", r.status, r.body)
	}, "the bundle of %s", path)
	return r
}

// setTenantStatus changes the tenant's status as PUT /api/system/tenants/{tid} does.
func (s *site) setTenantStatus(tid string, status model.TenantStatus) {
	s.t.Helper()
	testkit.Edit(s.t, s.store, model.KindTenant, "", tid, func(spec *model.TenantSpec) { spec.Status = status })
}

// opaStatus is the gateway's status.opa as the admin API renders it.
func (s *site) opaStatus(tid, gw string) map[string]any {
	s.t.Helper()
	raw, err := json.Marshal(bundles.GatewayOPAStatus(context.Background(), s.store, tid, gw))
	if err != nil {
		s.t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		s.t.Fatal(err)
	}
	return m
}

type resp struct {
	status int
	header http.Header
	body   []byte
	// close: the server asked to close the connection (Connection: close,
	// which the client removes from the header).
	close bool
}

func (r resp) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("response is not a JSON object (%d): %s", r.status, r.body)
	}
	return m
}

// errorCode asserts the standard error shape and returns error_code.
func (r resp) errorCode(t *testing.T) string {
	t.Helper()
	m := r.json(t)
	for _, k := range []string{"status_code", "error", "error_code", "details"} {
		if _, ok := m[k]; !ok {
			t.Fatalf("error response lacks %q: %s", k, r.body)
		}
	}
	if int(m["status_code"].(float64)) != r.status {
		t.Fatalf("status_code %v differs from HTTP status %d", m["status_code"], r.status)
	}
	return m["error_code"].(string)
}

// do sends a request with token (none when empty); body is sent as it is
// (a string or []byte) or as JSON; headers are name, value pairs. A
// transport error fails the test (reported from other goroutines too).
func (s *site) do(method, path, token string, body any, headers ...string) resp {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = strings.NewReader(string(b))
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			s.t.Error(err)
			return resp{}
		}
		rd = strings.NewReader(string(raw))
	}
	req, err := http.NewRequest(method, s.srv.URL+path, rd)
	if err != nil {
		s.t.Error(err)
		return resp{}
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Error(fmt.Errorf("%s %s: %w", method, path, err))
		return resp{}
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return resp{status: res.StatusCode, header: res.Header, body: b, close: res.Close}
}

func (s *site) expect(r resp, status int) resp {
	s.t.Helper()
	if r.status != status {
		s.t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
	return r
}

// fetchBundle is GET path with token.
func (s *site) fetchBundle(path, token string, headers ...string) resp {
	return s.do("GET", path, token, nil, headers...)
}

// poll is a long poll (Prefer: wait=30) of acme/edge's bundle with etag.
func (s *site) poll(token, etag string) resp {
	return s.fetchBundle(bundlePath, token, "If-None-Match", etag, "Prefer", "wait=30")
}

// revoke deletes one credential (DELETE …/gateways/{gw}/credentials/{id}).
func revoke(t *testing.T, s *site, tid, id string) {
	t.Helper()
	testkit.Write(t, s.store, func(ctx context.Context, tx store.Tx) error {
		_, err := tx.Delete(ctx, model.KindGatewayCredential, tid, id, 0, false)
		return err
	})
}

// deleteGateway deletes a gateway and soft-deletes its credentials in one
// transaction, then forgets its runtime state (DELETE …/gateways/{gw}).
func deleteGateway(t *testing.T, s *site, tid, gw string) {
	t.Helper()
	testkit.Write(t, s.store, func(ctx context.Context, tx store.Tx) error {
		page, err := tx.List(ctx, store.Query{Kind: model.KindGatewayCredential, TenantID: tid, ParentID: gw})
		if err != nil {
			return err
		}
		for _, o := range page.Items {
			if _, err := tx.Delete(ctx, model.KindGatewayCredential, tid, o.ID, 0, true); err != nil {
				return err
			}
		}
		_, err = tx.Delete(ctx, model.KindGateway, tid, gw, 0, false)
		return err
	})
	s.bundles.ForgetGateway(context.Background(), tid, gw)
}
