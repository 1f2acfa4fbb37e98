package envoy

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/bundles"
	"github.com/gatehouse-dev/gatehouse/internal/broadcast"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/policies"
)

// fakeSource is a BundleSource whose bundles a test sets directly: no
// store, no compiler run, no change feed.
type fakeSource struct {
	mu      sync.Mutex
	bundles []*bundles.Bundle
	changed broadcast.Broadcaster
	ready   chan struct{}
	once    sync.Once
}

func newFakeSource() *fakeSource { return &fakeSource{ready: make(chan struct{})} }

func (s *fakeSource) Ready() <-chan struct{}   { return s.ready }
func (s *fakeSource) Changed() <-chan struct{} { return s.changed.Wait() }

func (s *fakeSource) All() []*bundles.Bundle {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*bundles.Bundle(nil), s.bundles...)
}

// set replaces every bundle and notifies; the first set makes the source
// ready.
func (s *fakeSource) set(bs ...*bundles.Bundle) {
	s.mu.Lock()
	s.bundles = bs
	s.mu.Unlock()
	s.changed.Notify()
	s.once.Do(func() { close(s.ready) })
}

// runFake runs an xDS server on src until the test ends (no gRPC server:
// these tests read Status).
func runFake(t *testing.T, src BundleSource, log *slog.Logger) *Server {
	t.Helper()
	srv, err := New(Options{Bundles: src, AuthorizerAddress: "authorizer.internal:9191", Logger: log,
		Credentials: &testCredentials{tokens: map[string]GatewayIdentity{}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return srv
}

func bundleOf(c *policies.Compiled, tid, gw string, rev int64) *bundles.Bundle {
	b := &bundles.Bundle{TenantID: tid, GatewayID: gw, Revision: rev, Compiled: c}
	if c != nil {
		b.Hash = c.Hash
	}
	return b
}

// The server follows its source: a snapshot per gateway, a new bundle
// revision with the same content keeps the version, a bundle without
// compiled content is an error that keeps the previous snapshot, and a
// gateway that leaves the source (no node connected) is forgotten.
func TestServerFollowsItsSource(t *testing.T) {
	f := newFixture(t)
	seedShop(f, "acme")
	f.gateway("acme", "edge", model.GatewaySpec{Type: model.GatewayEnvoy})
	compiled := f.compile("acme", "edge")
	src := newFakeSource()
	srv := runFake(t, src, quietLogger())

	src.set(bundleOf(compiled, "acme", "edge", 7))
	select {
	case <-srv.Ready():
	case <-time.After(20 * time.Second):
		t.Fatal("not ready after the source was")
	}
	first := srv.Status("acme", "edge")
	if first.Version == "" || first.BundleRevision != 7 || first.Error != "" {
		t.Fatalf("first snapshot: %+v", first)
	}

	src.set(bundleOf(compiled, "acme", "edge", 8))
	eventually(t, "revision 8", func() bool { return srv.Status("acme", "edge").BundleRevision == 8 })
	if st := srv.Status("acme", "edge"); st.Version != first.Version || st.Error != "" {
		t.Fatalf("same content under a new revision: version %s -> %s (error %q)", first.Version, st.Version, st.Error)
	}

	src.set(bundleOf(nil, "acme", "edge", 9))
	eventually(t, "the error", func() bool { return srv.Status("acme", "edge").Error != "" })
	if st := srv.Status("acme", "edge"); st.Version != first.Version || !strings.Contains(st.Error, errNoCompiled.Error()) {
		t.Fatalf("a bundle without compiled content: %+v", st)
	}

	src.set()
	eventually(t, "the gateway to be forgotten", func() bool { return srv.Status("acme", "edge").Version == "" })
}

// The server logs with the logger it is given, adding no component of its
// own: cmd names the component once.
func TestLoggerIsUsedAsGiven(t *testing.T) {
	f := newFixture(t)
	seedShop(f, "acme")
	f.gateway("acme", "edge", model.GatewaySpec{Type: model.GatewayEnvoy})
	var out syncBuffer
	log := slog.New(slog.NewJSONHandler(&out, nil)).With("component", "xds")
	src := newFakeSource()
	srv := runFake(t, src, log)
	src.set(bundleOf(f.compile("acme", "edge"), "acme", "edge", 1))
	eventually(t, "the snapshot", func() bool { return srv.Status("acme", "edge").Version != "" })
	eventually(t, "the log line", func() bool { return strings.Contains(out.String(), "xds snapshot set") })
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		if n := strings.Count(line, `"component":`); n != 1 {
			t.Fatalf("%d component attributes in %s", n, line)
		}
	}
}

func TestNewNeedsASource(t *testing.T) {
	_, err := New(Options{AuthorizerAddress: "authorizer.internal:9191", Credentials: &testCredentials{}})
	if err == nil || !strings.Contains(err.Error(), "bundle source") {
		t.Fatalf("New without a source: %v", err)
	}
}

// syncBuffer is a bytes.Buffer safe for a logger and a test reading it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
