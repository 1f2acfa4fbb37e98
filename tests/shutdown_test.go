package tests

import (
	"context"
	"errors"
	"io"
	"strings"
	"syscall"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	"github.com/gatehouse-dev/gatehouse/internal/testkit"
)

// shutdownBound is how soon after SIGTERM a process with nothing in
// flight but waiting clients must have exited: generous, against a
// --shutdown-timeout of 30s.
const shutdownBound = 5 * time.Second

const bundleURLPath = "/api/system/acme/gateways/edge/opa/bundle"

// sigterm signals p and returns when it did.
func (p *process) sigterm(t *testing.T) time.Time {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	return time.Now()
}

// exitedCleanly waits for p to exit within shutdownBound of start, with 0.
func (p *process) exitedCleanly(t *testing.T, start time.Time) {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(time.Until(start.Add(shutdownBound))):
		t.Fatalf("still running %v after SIGTERM", shutdownBound)
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit code %d after SIGTERM:\n%s", code, tail(p.stderr.String(), 4000))
	}
	t.Logf("exited %v after SIGTERM", time.Since(start).Round(time.Millisecond))
}

// within waits for ch until shutdownBound after start.
func within[T any](t *testing.T, start time.Time, what string, ch <-chan T) T {
	t.Helper()
	return testkit.Receive(t, ch, time.Until(start.Add(shutdownBound)), "%s (at most %v after SIGTERM)", what, shutdownBound)
}

// watchHealth opens a gRPC health Watch on addr, reads the first status
// and returns a channel that receives the stream's end.
func watchHealth(t *testing.T, addr string) <-chan error {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	w, err := healthpb.NewHealthClient(conn).Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Recv(); err != nil {
		t.Fatalf("health watch: %v", err)
	}
	ended := make(chan error, 1)
	go func() {
		for {
			if _, err := w.Recv(); err != nil {
				ended <- err
				return
			}
		}
	}()
	return ended
}

// decidesPath is a condition: checkPath answers want.
func decidesPath(t *testing.T, c authv3.AuthorizationClient, path string, ext map[string]string, want code.Code) func() error {
	return func() error {
		got := checkPath(t, c, path, ext)
		return testkit.Check(got == want, "a check of %s: %v", path, got)
	}
}

// checkPath asks the authorizer about GET path with the good key.
func checkPath(t *testing.T, c authv3.AuthorizationClient, path string, ext map[string]string) code.Code {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := c.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		ContextExtensions: ext,
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Path: path, Host: "pets.example.com", Headers: map[string]string{"x-api-key": "k1"}}}}})
	if err != nil {
		t.Fatalf("check: %v", err)
	}
	return code.Code(res.Status.Code)
}

// decisionLogged reports whether the gateway's decision log holds a
// decision about path.
func decisionLogged(t *testing.T, c *client, path string) bool {
	t.Helper()
	ds := c.must(200, "GET", "/api/admin/acme/gateways/edge/decisions?limit=500", nil).JSON(t)["decisions"].([]any)
	for _, d := range ds {
		if strings.Contains(toJSON(t, d), path) {
			return true
		}
	}
	return false
}

// parkLongPoll starts a long poll for the current bundle and makes sure it
// is held; the channel receives its answer.
func parkLongPoll(t *testing.T, bundle *client, etag string) <-chan response {
	t.Helper()
	polled := make(chan response, 1)
	go func() {
		r, err := bundle.try(context.Background(), "GET", bundleURLPath, nil, "If-None-Match", etag, "Prefer", "wait=30")
		if err != nil {
			r = response{Status: -1, Body: []byte(err.Error())}
		}
		polled <- r
	}()
	select {
	case r := <-polled:
		t.Fatalf("the long poll was answered at once: %d %s", r.Status, r.Body)
	case <-time.After(time.Second):
	}
	return polled
}

// TestServeShutsDownPromptly: gatehouse serve with a long poll parked, an
// ADS stream open and a health watch on its in-process authorizer answers
// the long poll (304: nothing changed), ends the streams and exits 0 within
// a few seconds of SIGTERM, well inside --shutdown-timeout 30s; the
// decision its in-process authorizer made just before is in the store.
func TestServeShutsDownPromptly(t *testing.T) {
	data := t.TempDir()
	cp := startServe(t, serveOptions{DataDir: data, Token: testToken, Args: []string{"--shutdown-timeout", "30s"}})
	c := newClient(t, cp.URL, testToken)
	g := setupGateway(t, c, "http://127.0.0.1:9")
	bundle := newClient(t, cp.URL, g.token)
	bundle.http.Timeout = time.Minute
	var etag string
	testkit.Eventually(t, 20*time.Second, func() error {
		r := bundle.do("GET", bundleURLPath, nil)
		etag = r.Header.Get("ETag")
		return testkit.Check(r.Status == 200, "GET %s: %d %.200s", bundleURLPath, r.Status, r.Body)
	}, "the gateway's bundle")

	// An ADS stream, served its clusters.
	authorization, _ := packageADSMetadata(t, c, "acme", "edge")
	cc, err := grpc.NewClient(cp.waitLog(t, "xDS listening", "addr"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	sctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "authorization", authorization), time.Minute)
	defer cancel()
	ads, err := discoverygrpc.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(sctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := ads.Send(&discoverygrpc.DiscoveryRequest{Node: &corev3.Node{Id: "acme/edge", UserAgentName: "envoy"}, TypeUrl: resource.ClusterType}); err != nil {
		t.Fatal(err)
	}
	if cds, err := ads.Recv(); err != nil || len(cds.GetResources()) == 0 {
		t.Fatalf("ADS: %v %v", cds, err)
	}
	adsEnded := make(chan error, 1)
	go func() {
		for {
			if _, err := ads.Recv(); err != nil {
				adsEnded <- err
				return
			}
		}
	}()

	// The in-process authorizer: a decision just before the signal, and a
	// health watch.
	authzAddr := cp.waitLog(t, "ext_authz listening", "addr")
	inproc := authzClient(t, authzAddr)
	ext := map[string]string{"tenant": "acme", "gateway": "edge"}
	testkit.Eventually(t, 10*time.Second, decidesPath(t, inproc, "/pets/1", ext, code.Code_OK), "the in-process authorizer")
	healthEnded := watchHealth(t, authzAddr)
	polled := parkLongPoll(t, bundle, etag)
	if !t.Run("a check just before the signal is allowed", func(t *testing.T) {
		if got := checkPath(t, inproc, "/pets/decided-before-shutdown", ext); got != code.Code_OK {
			t.Fatalf("check before the shutdown: %v", got)
		}
	}) {
		return
	}

	if !t.Run("on SIGTERM the parked long poll, the ADS stream and the health watch end cleanly and serve exits within the bound", func(t *testing.T) {
		start := cp.sigterm(t)
		if r := within(t, start, "the parked long poll", polled); r.Status != 304 || r.Header.Get("ETag") != etag {
			t.Fatalf("the parked long poll at shutdown: %d %v %s", r.Status, r.Header, r.Body)
		}
		if err := within(t, start, "the ADS stream's end", adsEnded); !errors.Is(err, io.EOF) {
			t.Fatalf("the ADS stream ended with %v, want a clean end (io.EOF)", err)
		}
		within(t, start, "the health watch's end", healthEnded)
		cp.exitedCleanly(t, start)
		if strings.Contains(cp.stderr.String(), "deadline exceeded") {
			t.Fatalf("the shutdown ran into its deadline:\n%s", tail(cp.stderr.String(), 4000))
		}
	}) {
		return
	}

	t.Run("the decision made just before the signal was flushed to the store", func(t *testing.T) {
		cp2 := startServe(t, serveOptions{DataDir: data, Token: testToken})
		if !decisionLogged(t, newClient(t, cp2.URL, testToken), "/pets/decided-before-shutdown") {
			t.Fatal("the in-process authorizer's last decision was not flushed at shutdown")
		}
		cp2.stop()
	})
}

// TestAuthorizerShutsDownPromptly: gatehouse authorizer with its long poll
// parked on the control plane and an ext_authz client connected (a health
// watch open) exits 0 within a few seconds of SIGTERM and has flushed the
// decision it made just before to the control plane; then the control
// plane, with a (new) authorizer's long poll parked on it, exits 0 as
// promptly, and the authorizer keeps enforcing.
func TestAuthorizerShutsDownPromptly(t *testing.T) {
	cp := startServe(t, serveOptions{DataDir: t.TempDir(), Token: testToken, Args: []string{"--shutdown-timeout", "30s"}})
	c := newClient(t, cp.URL, testToken)
	g := setupGateway(t, c, "http://127.0.0.1:9")
	authz, addr := startAuthorizer(t, cp.URL, g, t.TempDir())
	ac := authzClient(t, addr)
	testkit.Eventually(t, 20*time.Second, decidesPath(t, ac, "/pets/1", nil, code.Code_OK), "the authorizer's first bundle")
	healthEnded := watchHealth(t, addr)
	if got := checkPath(t, ac, "/pets/decided-before-shutdown", nil); got != code.Code_OK {
		t.Fatalf("check before the shutdown: %v", got)
	}
	// Its long poll is parked now (its first request got the bundle).
	time.Sleep(500 * time.Millisecond)

	start := authz.sigterm(t)
	within(t, start, "the health watch's end", healthEnded)
	authz.exitedCleanly(t, start)
	if !decisionLogged(t, c, "/pets/decided-before-shutdown") {
		t.Fatal("the authorizer's last decision was not flushed at shutdown")
	}

	// The control plane, with an authorizer following it.
	authz2, addr2 := startAuthorizer(t, cp.URL, g, t.TempDir())
	ac2 := authzClient(t, addr2)
	testkit.Eventually(t, 20*time.Second, decidesPath(t, ac2, "/pets/1", nil, code.Code_OK), "the second authorizer's bundle")
	time.Sleep(500 * time.Millisecond)
	start = cp.sigterm(t)
	cp.exitedCleanly(t, start)
	if got := checkPath(t, ac2, "/pets/1", nil); got != code.Code_OK {
		t.Fatalf("the authorizer after the control plane stopped: %v", got)
	}
	authz2.stop()
}
