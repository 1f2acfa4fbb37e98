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

	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	"github.com/gatehouse-dev/gatehouse/model"
)

// run starts m (made by the test, hooks set) and waits for it to be ready.
func (f *fixture) run(m *Manager) {
	f.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = m.Run(ctx); close(done) }()
	f.t.Cleanup(func() { cancel(); <-done })
	testkit.Receive(f.t, m.Ready(), 20*time.Second, "the manager to be ready")
}

// setHeader makes the tenant's "allow" policy a header validator with value v.
func (f *fixture) setHeader(tid, v string) {
	f.t.Helper()
	testkit.Edit(f.t, f.store, model.KindPolicy, tid, "allow", func(p *model.PolicySpec) {
		p.Validators = []model.ValidatorConfig{testkit.HeaderEquals("x-v", v)}
	})
}

func hasValue(b *Bundle, v string) bool {
	if b == nil {
		return false
	}
	for _, mod := range b.Compiled.Modules {
		if strings.Contains(mod.Source, fmt.Sprintf("%q", v)) {
			return true
		}
	}
	return false
}

// serves is a condition: m serves tid/gw's bundle with header value v.
func serves(m *Manager, tid, gw, v string) func() error {
	return func() error {
		b := m.Get(tid, gw)
		if b == nil {
			return fmt.Errorf("no bundle of %s/%s (build error %q)", tid, gw, m.BuildError(tid, gw))
		}
		return testkit.Check(hasValue(b, v), "%s/%s at revision %d without %q (build error %q)", tid, gw, b.Revision, v, m.BuildError(tid, gw))
	}
}

// started waits for a build the test holds up to start.
func started(t *testing.T, entered <-chan string, what string) string {
	t.Helper()
	return testkit.Receive(t, entered, 20*time.Second, what)
}

func TestSlowTenantBuildDoesNotHoldUpOthers(t *testing.T) {
	f := newFixture(t)
	f.tenant("heavy", "x")
	f.gateway("heavy", "gw")
	f.tenant("light", "y")
	f.gateway("light", "gw")
	m := NewManager(f.store, f.keys, slog.New(slog.NewTextHandler(io.Discard, nil)), WithBuildConcurrency(2))
	var block atomic.Bool
	entered := make(chan string, 16)
	release := make(chan struct{})
	m.beforeBuild = func(ctx context.Context, tid string) {
		if tid == "heavy" && block.Load() {
			entered <- tid
			select {
			case <-release:
			case <-ctx.Done():
			}
		}
	}
	f.run(m)

	block.Store(true)
	f.setHeader("heavy", "h1")
	started(t, entered, "the heavy tenant's build to start")
	// While it builds, the other tenant's changes are built and served.
	for _, v := range []string{"l1", "l2"} {
		f.setHeader("light", v)
		testkit.Eventually(t, waitBound, serves(m, "light", "gw", v), "the light tenant's bundle with %s", v)
	}
	// A change to the heavy tenant during its build is built afterwards.
	f.setHeader("heavy", "h2")
	block.Store(false)
	close(release)
	testkit.Eventually(t, waitBound, serves(m, "heavy", "gw", "h2"), "the heavy tenant's latest change")
	if m.BuildError("heavy", "gw") != "" || m.BuildError("light", "gw") != "" {
		t.Fatalf("build errors: %q %q", m.BuildError("heavy", "gw"), m.BuildError("light", "gw"))
	}
}

func TestTenantBuildsAreBounded(t *testing.T) {
	f := newFixture(t)
	const tenants, bound = 5, 2
	for i := range tenants {
		tid := fmt.Sprintf("t%d", i)
		f.tenant(tid, "s")
		f.gateway(tid, "gw")
	}
	m := NewManager(f.store, f.keys, slog.New(slog.NewTextHandler(io.Discard, nil)), WithBuildConcurrency(bound))
	var running, most atomic.Int32
	var mu sync.Mutex
	perTenant := map[string]int{}
	var block atomic.Bool
	entered := make(chan string, 64)
	release := make(chan struct{}, 64)
	m.beforeBuild = func(ctx context.Context, tid string) {
		n := running.Add(1)
		defer running.Add(-1)
		for {
			if cur := most.Load(); n <= cur || most.CompareAndSwap(cur, n) {
				break
			}
		}
		mu.Lock()
		perTenant[tid]++
		mine := perTenant[tid]
		mu.Unlock()
		if mine > 1 {
			t.Errorf("tenant %s: two builds at once", tid)
		}
		defer func() { mu.Lock(); perTenant[tid]--; mu.Unlock() }()
		if block.Load() {
			entered <- tid
			select {
			case <-release:
			case <-ctx.Done():
			}
		}
	}
	f.run(m)

	block.Store(true)
	for i := range tenants {
		f.setHeader(fmt.Sprintf("t%d", i), "v")
	}
	// Two builds start together; the others wait for a slot.
	for range bound {
		started(t, entered, "a build to start")
	}
	for range tenants {
		release <- struct{}{}
	}
	for i := range tenants {
		tid := fmt.Sprintf("t%d", i)
		testkit.Eventually(t, waitBound, serves(m, tid, "gw", "v"), "%s's bundle", tid)
	}
	if got := most.Load(); got != bound {
		t.Fatalf("%d builds ran at once, bound %d", got, bound)
	}
}
