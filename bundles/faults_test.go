package bundles

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	"github.com/gatehouse-dev/gatehouse/store"
)

// faultyStore fails snapshot reads and revision claims while down is set,
// as a database that went away does, and can end every watch stream with
// an error, as a dropped connection does. It records where each watch
// started.
type faultyStore struct {
	store.Store
	down atomic.Bool

	mu      sync.Mutex
	froms   []int64
	breaks  []chan struct{}
	watches int
}

var errDown = fmt.Errorf("%w: the test took the store down", store.ErrUnavailable)

func (s *faultyStore) View(ctx context.Context, fn func(ctx context.Context, r store.Reader) error) error {
	if s.down.Load() {
		return errDown
	}
	return s.Store.View(ctx, fn)
}

func (s *faultyStore) ClaimBundleRevision(ctx context.Context, tid, gw, hash string, rev int64) (int64, error) {
	if s.down.Load() {
		return 0, errDown
	}
	return s.Store.ClaimBundleRevision(ctx, tid, gw, hash, rev)
}

func (s *faultyStore) Watch(ctx context.Context, from int64) (<-chan store.WatchEvent, error) {
	wctx, cancel := context.WithCancel(ctx)
	in, err := s.Store.Watch(wctx, from)
	if err != nil {
		cancel()
		return nil, err
	}
	brk := make(chan struct{})
	s.mu.Lock()
	s.froms = append(s.froms, from)
	s.breaks = append(s.breaks, brk)
	s.watches++
	s.mu.Unlock()
	out := make(chan store.WatchEvent)
	go func() {
		defer cancel()
		defer close(out)
		for {
			select {
			case ev, ok := <-in:
				if !ok {
					return
				}
				select {
				case out <- ev:
				case <-brk:
					out <- store.WatchEvent{Err: errDown}
					return
				case <-ctx.Done():
					return
				}
			case <-brk:
				select {
				case out <- store.WatchEvent{Err: errDown}:
				case <-ctx.Done():
				}
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

// breakWatches ends every open watch stream with an error event.
func (s *faultyStore) breakWatches() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, b := range s.breaks {
		close(b)
	}
	s.breaks = nil
}

func (s *faultyStore) watchStarts() (int, int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.watches, s.froms[len(s.froms)-1]
}

// TestFailedBuildIsRetriedUntilItSucceeds: a change the feed delivered
// while the store fails is built once the store answers again, without
// any later write; meanwhile the failure is visible (BuildFailure, the
// failures counter, the lag) and a feed that drops resumes from before
// the change, not after it. Before, the failed build was logged once and
// the bundle stayed stale for good.
func TestFailedBuildIsRetriedUntilItSucceeds(t *testing.T) {
	f := newFixture(t)
	f.tenant("acme", "pets")
	f.gateway("acme", "gw")
	fs := &faultyStore{Store: f.store}
	m := NewManager(fs, f.keys, slog.New(slog.NewTextHandler(io.Discard, nil)))
	m.retryMin, m.retryMax = 10*time.Millisecond, 40*time.Millisecond
	reg := prometheus.NewRegistry()
	if err := m.RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}
	f.run(m)
	var before *Bundle
	if !t.Run("after start the bundle is built, without lag or failure", func(t *testing.T) {
		before = m.Get("acme", "gw")
		if before == nil || m.Lag() != 0 || m.BuildFailure("acme", "gw") != nil {
			t.Fatalf("after start: bundle %v, lag %d, failure %+v", before, m.Lag(), m.BuildFailure("acme", "gw"))
		}
	}) {
		return
	}

	var changeRev int64
	if !t.Run("while the store fails, the failure, the lag and the metrics show it and the last good bundle stays", func(t *testing.T) {
		fs.down.Store(true)
		f.on(t).setHeader("acme", "v1")
		changeRev, _ = f.store.Revision(context.Background())
		testkit.Eventually(t, waitBound, func() error {
			bf := m.BuildFailure("acme", "gw")
			return testkit.Check(bf != nil && bf.Failures >= 3, "build failure %+v", bf)
		}, "several failed attempts")
		bf := m.BuildFailure("acme", "gw")
		if !bf.Retrying || !strings.Contains(bf.Error, "the test took the store down") || bf.Since.IsZero() || m.BuildError("acme", "gw") != bf.Error {
			t.Fatalf("build failure while the store is down: %+v", bf)
		}
		if got := gauge(t, reg, "gatehouse_bundle_build_failures_total", "reason", reasonTransient); got < 3 {
			t.Fatalf("gatehouse_bundle_build_failures_total{reason=transient} = %v, want >= 3", got)
		}
		if lag := m.Lag(); lag < 1 || gauge(t, reg, "gatehouse_bundle_lag_revisions") != float64(lag) {
			t.Fatalf("lag %d (metric %v) while a change is not built", lag, gauge(t, reg, "gatehouse_bundle_lag_revisions"))
		}
		if got := gauge(t, reg, "gatehouse_bundle_tenants_failing"); got != 1 {
			t.Fatalf("gatehouse_bundle_tenants_failing %v, want 1", got)
		}
		if got := m.Get("acme", "gw"); got != before {
			t.Fatal("the last good bundle must stay while builds fail")
		}
	}) {
		return
	}
	if !t.Run("a dropped feed resumes from before the unbuilt change", func(t *testing.T) {
		n, _ := fs.watchStarts()
		fs.breakWatches()
		testkit.Eventually(t, waitBound, func() error {
			k, _ := fs.watchStarts()
			return testkit.Check(k > n, "%d watches started, %d before the break", k, n)
		}, "the feed to resume")
		if _, from := fs.watchStarts(); from >= changeRev {
			t.Fatalf("the feed resumed after revision %d, past the unbuilt change at %d", from, changeRev)
		}
	}) {
		return
	}
	t.Run("once the store answers, the change is built without another write and the failure clears", func(t *testing.T) {
		fs.down.Store(false)
		testkit.Eventually(t, waitBound, serves(m, "acme", "gw", "v1"), "the change to be built")
		testkit.Eventually(t, waitBound, func() error {
			bf := m.BuildFailure("acme", "gw")
			return testkit.Check(bf == nil && m.Lag() == 0, "build failure %+v, lag %d", bf, m.Lag())
		}, "the failure to clear and the lag to return to 0")
		if got := m.Get("acme", "gw").Revision; got < changeRev {
			t.Fatalf("revision %d, want at least the change's %d", got, changeRev)
		}
		if lag, failing := gauge(t, reg, "gatehouse_bundle_lag_revisions"), gauge(t, reg, "gatehouse_bundle_tenants_failing"); lag != 0 || failing != 0 {
			t.Fatalf("after recovery: lag %v, tenants failing %v", lag, failing)
		}
	})
}

// gauge reads one sample (counter or gauge) from reg, selected by its
// name and label pairs.
func gauge(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range families {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, mt := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range mt.GetLabel() {
					found = found || (lp.GetName() == labels[i] && lp.GetValue() == labels[i+1])
				}
				if !found {
					continue next
				}
			}
			if c := mt.GetCounter(); c != nil {
				return c.GetValue()
			}
			return mt.GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s %v", name, labels)
	return 0
}

// TestReplicaThatMissedAChangeAgrees: one replica builds a change and its
// reversal while the other's build of that tenant is held up; the other
// then finds the content it already serves, but the content came back at
// a newer revision: it must serve it under that revision, as the first
// replica does. Before, it kept the old revision (the same content under
// two ETags, for good).
func TestReplicaThatMissedAChangeAgrees(t *testing.T) {
	f := newFixture(t)
	f.tenant("acme", "pets")
	f.gateway("acme", "gw")
	f.setHeader("acme", "value-a")
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	m1, m2 := NewManager(f.store, f.keys, log), NewManager(f.store, f.keys, log)
	var hold atomic.Bool
	entered, release := make(chan string, 16), make(chan struct{})
	m1.beforeBuild = func(ctx context.Context, tid string) {
		if hold.Load() {
			entered <- tid
			select {
			case <-release:
			case <-ctx.Done():
			}
		}
	}
	f.run(m1)
	f.run(m2)
	var first *Bundle
	if !t.Run("two managers on one store start with one revision", func(t *testing.T) {
		first = m1.Get("acme", "gw")
		if got := m2.Get("acme", "gw"); got.Revision != first.Revision || string(got.Raw) != string(first.Raw) {
			t.Fatalf("two managers on one store start with revisions %d and %d", first.Revision, got.Revision)
		}
	}) {
		return
	}
	var back *Bundle
	if !t.Run("while the first one's build is held, the second builds a change and its reversal at a newer revision", func(t *testing.T) {
		hold.Store(true)
		f.on(t).setHeader("acme", "value-b")
		started(t, entered, "the first replica's build to be held")
		testkit.Eventually(t, waitBound, serves(m2, "acme", "gw", "value-b"), "the second replica to build b")
		f.on(t).setHeader("acme", "value-a")
		testkit.Eventually(t, waitBound, serves(m2, "acme", "gw", "value-a"), "the second replica to build a again")
		back = m2.Get("acme", "gw")
		if back.Hash != first.Hash || back.Revision <= first.Revision {
			t.Fatalf("content that came back: hash equal %v, revision %d (first %d): want the same hash at a newer revision",
				back.Hash == first.Hash, back.Revision, first.Revision)
		}
	}) {
		hold.Store(false)
		close(release)
		return
	}
	t.Run("released, the first one serves that content under the same revision", func(t *testing.T) {
		hold.Store(false)
		close(release)
		testkit.Eventually(t, waitBound, func() error {
			b := m1.Get("acme", "gw")
			return testkit.Check(b.Revision == back.Revision, "revision %d, want %d", b.Revision, back.Revision)
		}, "the first replica to serve the content under the same revision")
		if got := m1.Get("acme", "gw"); string(got.Raw) != string(back.Raw) || got.ETag() != back.ETag() {
			t.Fatal("one content, one revision, but different bytes or ETags")
		}
	})
}

// TestStaleSnapshotIsNotServed: when another replica has recorded newer
// content than the snapshot a build read, the build does not install its
// content under a revision of its own; it is retried and converges once a
// newer snapshot exists.
func TestStaleSnapshotIsNotServed(t *testing.T) {
	f := newFixture(t)
	f.tenant("acme", "pets")
	f.gateway("acme", "gw")
	m := NewManager(f.store, f.keys, slog.New(slog.NewTextHandler(io.Discard, nil)))
	m.retryMin, m.retryMax = 10*time.Millisecond, 40*time.Millisecond
	f.run(m)
	before := m.Get("acme", "gw")
	ctx := context.Background()
	head, _ := f.store.Revision(ctx)
	// "Another replica" recorded content at the revision the next write
	// gets: this replica's build of that write conflicts with it.
	if _, err := f.store.ClaimBundleRevision(ctx, "acme", "gw", "another-replicas-content", head+1); err != nil {
		t.Fatal(err)
	}
	f.setHeader("acme", "v1")
	testkit.Eventually(t, waitBound, func() error {
		bf := m.BuildFailure("acme", "gw")
		return testkit.Check(bf != nil && bf.Retrying && strings.Contains(bf.Error, "older than the content recorded"), "build failure %+v", bf)
	}, "the conflict to show")
	if got := m.Get("acme", "gw"); got != before {
		t.Fatalf("a stale build was installed at revision %d", got.Revision)
	}
	f.setHeader("acme", "v2")
	testkit.Eventually(t, waitBound, serves(m, "acme", "gw", "v2"), "the newer snapshot to be built")
	if got := m.Get("acme", "gw").Revision; got != head+2 {
		t.Fatalf("revision %d, want %d", got, head+2)
	}
	testkit.Eventually(t, waitBound, func() error {
		bf := m.BuildFailure("acme", "gw")
		return testkit.Check(bf == nil, "build failure %+v", bf)
	}, "the failure to clear")
}
