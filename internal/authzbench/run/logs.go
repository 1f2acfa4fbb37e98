package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/gatehouse-dev/gatehouse/internal/authzbench"
)

// The decision log benchmarks run real processes: a control plane
// (gatehouse control-plane, on the embedded store or a fresh PostgreSQL
// database) and a gatehouse authorizer following it. The authorizer is
// pinned to -server-cpu, the control plane and this load generator to
// -client-cpu (PostgreSQL, a system service, is not pinned).

type stackOptions struct {
	serverCPU, clientCPU string
	databaseURL          string
	binary               string
	// profileDir, when set, has authorizers serve /debug/pprof/ (--pprof)
	// and receives a CPU profile of each measured window.
	profileDir string
}

type stack struct {
	opts   stackOptions
	dir    string
	bin    string
	cpAddr string
	cpArgs []string
	cpEnv  []string
	cp     *authzbench.Process
	admin  *authzbench.Admin
	gw     *authzbench.Gateway
	// dropDB drops the benchmark's PostgreSQL database.
	dropDB func()
	runs   int
	// fixture is the tenant configured (its tokens, its requests).
	fixture *authzbench.Fixture
}

func newStack(ctx context.Context, f *authzbench.Fixture, opts stackOptions) (*stack, error) {
	dir, err := os.MkdirTemp("", "gatehouse-bench-")
	if err != nil {
		return nil, err
	}
	s := &stack{opts: opts, dir: dir, bin: opts.binary, fixture: f}
	if s.bin == "" {
		s.bin = filepath.Join(dir, "gatehouse")
		build := exec.Command("go", "build", "-o", s.bin, "./cmd/gatehouse")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			return nil, fmt.Errorf("build gatehouse (run from the repository root, or give -binary): %w", err)
		}
	}
	tok := make([]byte, 24)
	_, _ = rand.Read(tok)
	token := hex.EncodeToString(tok)
	if s.cpAddr, err = authzbench.FreeAddr(); err != nil {
		return nil, err
	}
	s.cpArgs = []string{"control-plane", "--http-addr", s.cpAddr, "--data-dir", filepath.Join(dir, "cp"), "--xds-addr", "",
		"--decision-logs-kept", "100000000", "--log-level", "warn"}
	if opts.databaseURL != "" {
		dbURL, drop, err := freshDatabase(ctx, opts.databaseURL)
		if err != nil {
			return nil, err
		}
		s.dropDB = drop
		s.cpArgs = append(s.cpArgs, "--database-url", dbURL)
		if opts.clientCPU != "" {
			go s.pinBackends(ctx, opts.databaseURL, strings.TrimPrefix(mustPath(dbURL), "/"))
		}
	}
	s.cpEnv = []string{"GATEHOUSE_ADMIN_TOKEN=" + token}
	if err := s.startControlPlane(); err != nil {
		s.close()
		return nil, err
	}
	s.admin = &authzbench.Admin{URL: "http://" + s.cpAddr, Token: token}
	if s.gw, err = f.Configure(s.admin, dir); err != nil {
		s.close()
		return nil, fmt.Errorf("configure the benchmark tenant: %w", err)
	}
	return s, nil
}

// freshDatabase creates a database for this run next to base's and
// returns its URL and a function that drops it.
func freshDatabase(ctx context.Context, base string) (string, func(), error) {
	name := fmt.Sprintf("gatehouse_bench_%d", os.Getpid())
	u, err := url.Parse(base)
	if err != nil {
		return "", nil, fmt.Errorf("-database-url: %w", err)
	}
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		return "", nil, fmt.Errorf("-database-url: %w", err)
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		conn.Close(ctx)
		return "", nil, fmt.Errorf("create database %s: %w", name, err)
	}
	u.Path = "/" + name
	return u.String(), func() {
		_, _ = conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
		conn.Close(context.Background())
	}, nil
}

func mustPath(raw string) string {
	u, _ := url.Parse(raw)
	return u.Path
}

// pinBackends keeps the PostgreSQL backends serving the benchmark's
// database (and only those) on the client CPU, so that the control plane's
// inserts do not run on the authorizer's CPU. Every second, until ctx ends
// or the database is dropped.
func (s *stack) pinBackends(ctx context.Context, base, db string) {
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		fmt.Fprintln(os.Stderr, "warning: cannot pin the PostgreSQL backends:", err)
		return
	}
	defer conn.Close(context.Background())
	pinned := map[int32]bool{}
	for ctx.Err() == nil {
		rows, err := conn.Query(ctx, "SELECT pid FROM pg_stat_activity WHERE datname = $1", db)
		if err != nil {
			return
		}
		var pids []int32
		for rows.Next() {
			var pid int32
			if rows.Scan(&pid) == nil && !pinned[pid] {
				pids = append(pids, pid)
			}
		}
		rows.Close()
		for _, pid := range pids {
			if exec.Command("taskset", "-p", "-c", s.opts.clientCPU, strconv.Itoa(int(pid))).Run() == nil {
				pinned[pid] = true
			}
		}
		time.Sleep(time.Second)
	}
}

func (s *stack) startControlPlane() error {
	p, err := authzbench.StartProcess("control plane", s.opts.clientCPU, filepath.Join(s.dir, fmt.Sprintf("control-plane-%d.log", s.runs)),
		s.cpEnv, s.bin, s.cpArgs...)
	s.runs++
	if err != nil {
		return err
	}
	s.cp = p
	return authzbench.WaitHTTP("http://"+s.cpAddr+"/readyz", p, 2*time.Minute)
}

func (s *stack) close() {
	if s.cp != nil {
		_ = s.cp.Stop()
	}
	if s.dropDB != nil {
		s.dropDB()
	}
	_ = os.RemoveAll(s.dir)
}

// authorizer is a running gatehouse authorizer.
type authorizer struct {
	proc            *authzbench.Process
	authz, httpAddr string
}

func (s *stack) startAuthorizer(logs bool) (*authorizer, error) {
	a := &authorizer{}
	var err error
	if a.authz, err = authzbench.FreeAddr(); err != nil {
		return nil, err
	}
	if a.httpAddr, err = authzbench.FreeAddr(); err != nil {
		return nil, err
	}
	s.runs++
	args := []string{"authorizer", "--control-plane-url", "http://" + s.cpAddr, "--tenant", "acme", "--gateway", "edge",
		"--key-id", s.gw.KeyID, "--public-key-file", s.gw.KeyFile, "--cache-dir", filepath.Join(s.dir, fmt.Sprintf("authz-%d", s.runs)),
		"--authz-addr", a.authz, "--http-addr", a.httpAddr, "--log-level", "warn", fmt.Sprintf("--decision-logs=%v", logs)}
	if s.opts.profileDir != "" {
		args = append(args, "--pprof")
	}
	env := []string{"GATEHOUSE_GATEWAY_CREDENTIAL=" + s.gw.Credential}
	if s.opts.serverCPU != "" {
		env = append(env, "GOMAXPROCS=1")
	}
	if a.proc, err = authzbench.StartProcess("authorizer", s.opts.serverCPU, filepath.Join(s.dir, fmt.Sprintf("authorizer-%d.log", s.runs)),
		env, s.bin, args...); err != nil {
		return nil, err
	}
	if err := authzbench.WaitHTTP("http://"+a.httpAddr+"/readyz", a.proc, 2*time.Minute); err != nil {
		_ = a.proc.Stop()
		return nil, err
	}
	if err := s.sameDecisions(a); err != nil {
		_ = a.proc.Stop()
		return nil, err
	}
	return a, nil
}

// sameDecisions checks that the authorizer decides the fixture's requests
// (the first 100 of the corpus and the edge requests) as the in-process
// fast path does (the configuration made through the admin API is the
// fixture's).
func (s *stack) sameDecisions(a *authorizer) error {
	return sameDecisions(context.Background(), s.fixture, "the authorizer", a.authz)
}

// sameDecisions checks that the ext_authz server at addr decides the
// first 100 corpus requests and the edge requests as the fast path does.
func sameDecisions(ctx context.Context, f *authzbench.Fixture, name, addr string) error {
	fast, err := f.FastPath(ctx)
	if err != nil {
		return err
	}
	edge, err := f.EdgeRequests()
	if err != nil {
		return err
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	_, err = authzbench.Agree(ctx, fast, authzbench.Remote(authv3.NewAuthorizationClient(conn)), "the fast path", name,
		append(slices.Clip(f.Requests[:100]), edge...))
	return err
}

// logCounts are the authorizer's decision log counters.
type logCounts struct {
	events, sent, dropped, buffered, bufferedBytes float64
	byReason                                       map[string]float64
}

func (a *authorizer) counts(ctx context.Context) (logCounts, error) {
	m, err := authzbench.Metrics(ctx, "http://"+a.httpAddr+"/metrics")
	if err != nil {
		return logCounts{}, err
	}
	c := logCounts{events: m["gatehouse_decision_logs_events_total"], sent: m["gatehouse_decision_logs_sent_total"],
		buffered: m["gatehouse_decision_logs_buffered_events"], bufferedBytes: m[`gatehouse_decision_logs_buffered_bytes{medium="memory"}`],
		byReason: map[string]float64{}}
	for k, v := range m {
		if r, ok := strings.CutPrefix(k, `gatehouse_decision_logs_dropped_total{reason="`); ok {
			c.byReason[strings.TrimSuffix(r, `"}`)] = v
			c.dropped += v
		}
	}
	return c, nil
}

// drained waits until the authorizer has delivered (or dropped) every
// event it made.
func (a *authorizer) drained(ctx context.Context, timeout time.Duration) (logCounts, error) {
	deadline := time.Now().Add(timeout)
	for {
		c, err := a.counts(ctx)
		if err == nil && c.buffered == 0 && c.sent+c.dropped == c.events {
			return c, nil
		}
		if time.Now().After(deadline) {
			return c, fmt.Errorf("decision logs not drained after %s: %+v (%v)", timeout, c, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func machineFacts() string {
	model := "unknown"
	if raw, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(raw), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	load := ""
	if raw, err := os.ReadFile("/proc/loadavg"); err == nil {
		load = strings.Join(strings.Fields(string(raw))[:3], " ")
	}
	cpus := 0
	if raw, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(raw), "\n") {
			if k, _, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "processor" {
				cpus++
			}
		}
	}
	return fmt.Sprintf("%d CPUs (this process may use %d), CPU %q, %s, load average %s", cpus, runtime.NumCPU(), model, runtime.Version(), load)
}

// runDecisionLogs measures checks/s with decision logs on and off,
// alternating, rounds times each.
func runDecisionLogs(ctx context.Context, opts stackOptions, concurrency int, duration time.Duration, rounds int) error {
	f, err := authzbench.NewFixture()
	if err != nil {
		return err
	}
	s, err := newStack(ctx, f, opts)
	if err != nil {
		return err
	}
	defer s.close()
	fmt.Printf("bench-authz decision logs: authorizer on CPU %s, control plane (%s) and load generator on CPU %s; %d in flight, %s per run after 1 s of warm-up\n",
		opts.serverCPU, storeName(opts), opts.clientCPU, concurrency, duration)
	fmt.Println("machine:", machineFacts())
	type row struct {
		logs bool
		r    authzbench.Result
		c    logCounts
	}
	var rows []row
	for round := 0; round < rounds; round++ {
		for _, logs := range []bool{false, true} {
			a, err := s.startAuthorizer(logs)
			if err != nil {
				return err
			}
			name := "decision logs off"
			if logs {
				name = "decision logs on"
			}
			// CPU readings at the measured window's edges.
			var cpuBefore, cpuAfter map[string][2]float64
			var procBefore, procAfter float64
			r, err := f.Run(ctx, authzbench.LoadOptions{Name: name, Addr: a.authz, InFlight: concurrency, Warmup: time.Second, Duration: duration,
				Mark: func(end bool) {
					if end {
						cpuAfter, procAfter = cpuTimes(), a.proc.CPUSeconds()
					} else {
						cpuBefore, procBefore = cpuTimes(), a.proc.CPUSeconds()
					}
				}})
			if err != nil {
				_ = a.proc.Stop()
				return err
			}
			busy := cpuBusy(cpuBefore, cpuAfter)
			// The authorizer's own CPU time per check in the window.
			perCheck := (procAfter - procBefore) / float64(max(r.Checks, 1)) * 1e6
			busy += fmt.Sprintf("; authorizer %.0f µs CPU per check", perCheck)
			var c logCounts
			if logs {
				if c, err = a.drained(ctx, 2*time.Minute); err != nil {
					fmt.Fprintln(os.Stderr, "warning:", err)
				}
			}
			if err := a.proc.Stop(); err != nil {
				fmt.Fprintln(os.Stderr, "warning: authorizer exit:", err)
			}
			rows = append(rows, row{logs, r, c})
			extra := ""
			if logs {
				extra = fmt.Sprintf("  events made %.0f, sent %.0f, dropped %.0f %v", c.events, c.sent, c.dropped, nonZero(c.byReason))
			}
			fmt.Printf("  round %d: %-18s %8.0f checks/s  p50 %-9s p99 %-9s allowed %.0f%% errors %d  CPU busy %s%s\n", round+1, name, r.PerSecond(),
				r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond), 100*float64(r.Allowed)/float64(max(r.Checks, 1)), r.Errors, busy, extra)
		}
	}
	var on, off []float64
	for _, r := range rows {
		if r.logs {
			on = append(on, r.r.PerSecond())
		} else {
			off = append(off, r.r.PerSecond())
		}
	}
	mOn, mOff := median(on), median(off)
	fmt.Printf("median: off %.0f checks/s, on %.0f checks/s: on/off = %.1f%%\n", mOff, mOn, 100*mOn/mOff)
	return nil
}

func nonZero(m map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for k, v := range m {
		if v != 0 {
			out[k] = v
		}
	}
	return out
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64{}, v...)
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func storeName(opts stackOptions) string {
	if opts.databaseURL != "" {
		return "PostgreSQL"
	}
	return "embedded store"
}

// runOutage runs the authorizer at rate checks/s (0: 80% of a measured
// peak) for duration, stops the control plane for outage in the middle,
// starts it again, and compares the events the authorizer made with the
// events the control plane stored.
func runOutage(ctx context.Context, opts stackOptions, concurrency int, duration, outage time.Duration, rate float64) error {
	f, err := authzbench.NewFixture()
	if err != nil {
		return err
	}
	s, err := newStack(ctx, f, opts)
	if err != nil {
		return err
	}
	defer s.close()
	fmt.Printf("bench-authz outage: authorizer on CPU %s, control plane (%s) and load generator on CPU %s; %d in flight\n",
		opts.serverCPU, storeName(opts), opts.clientCPU, concurrency)
	fmt.Println("machine:", machineFacts())
	if rate <= 0 {
		a, err := s.startAuthorizer(true)
		if err != nil {
			return err
		}
		r, err := f.Load(ctx, "peak", a.authz, concurrency, 15*time.Second)
		if err == nil {
			_, err = a.drained(ctx, 2*time.Minute)
		}
		_ = a.proc.Stop()
		if err != nil {
			return err
		}
		rate = 0.8 * r.PerSecond()
		fmt.Printf("peak with decision logs on: %.0f checks/s (15 s); running at 80%%: %.0f checks/s\n", r.PerSecond(), rate)
	}
	before, _, err := s.admin.StoredDecisions("acme", "edge")
	if err != nil {
		return err
	}
	a, err := s.startAuthorizer(true)
	if err != nil {
		return err
	}
	defer a.proc.Stop()
	type sample struct {
		at       time.Time
		buffered float64
	}
	var (
		mu        sync.Mutex
		maxBuf    float64
		maxEvents float64
		samples   []sample
	)
	sampleCtx, stopSampling := context.WithCancel(ctx)
	defer stopSampling()
	go func() {
		for sampleCtx.Err() == nil {
			if c, err := a.counts(sampleCtx); err == nil {
				mu.Lock()
				maxBuf, maxEvents = max(maxBuf, c.bufferedBytes), max(maxEvents, c.buffered)
				samples = append(samples, sample{time.Now(), c.buffered})
				mu.Unlock()
			}
			time.Sleep(250 * time.Millisecond)
		}
	}()
	type loadResult struct {
		r   authzbench.Result
		err error
	}
	done := make(chan loadResult, 1)
	start := time.Now()
	go func() {
		r, err := f.LoadRate(ctx, "outage run", a.authz, concurrency, duration, rate)
		done <- loadResult{r, err}
	}()
	stopAt := time.Second + (duration-outage)/2
	time.Sleep(time.Until(start.Add(stopAt)))
	fmt.Printf("%6.1fs: stopping the control plane (SIGTERM)\n", time.Since(start).Seconds())
	if err := s.cp.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "warning: control plane exit:", err)
	}
	stopped := time.Now()
	fmt.Printf("%6.1fs: control plane stopped\n", time.Since(start).Seconds())
	time.Sleep(time.Until(stopped.Add(outage)))
	fmt.Printf("%6.1fs: starting the control plane again\n", time.Since(start).Seconds())
	if err := s.startControlPlane(); err != nil {
		return err
	}
	ready := time.Now()
	fmt.Printf("%6.1fs: control plane ready (down %.1f s)\n", time.Since(start).Seconds(), time.Since(stopped).Seconds())
	lr := <-done
	if lr.err != nil {
		return lr.err
	}
	fmt.Printf("%6.1fs: load done: %.0f checks/s, p50 %s, p99 %s, errors %d\n", time.Since(start).Seconds(), lr.r.PerSecond(),
		lr.r.P50.Round(time.Microsecond), lr.r.P99.Round(time.Microsecond), lr.r.Errors)
	c, err := a.drained(ctx, 3*time.Minute)
	if err != nil {
		fmt.Fprintln(os.Stderr, "warning:", err)
	}
	fmt.Printf("%6.1fs: authorizer drained\n", time.Since(start).Seconds())
	stopSampling()
	after, distinct, err := s.admin.StoredDecisions("acme", "edge")
	if err != nil {
		return err
	}
	stored := after - before
	mu.Lock()
	defer mu.Unlock()
	fmt.Printf("events made %.0f, sent %.0f, dropped %.0f %v; stored %d (%d distinct decision ids in the whole log of %d)\n",
		c.events, c.sent, c.dropped, nonZero(c.byReason), stored, distinct, after)
	fmt.Printf("largest buffer during the run: %.0f events, %.1f MiB in memory\n", maxEvents, maxBuf/(1<<20))
	// The backlog: the events buffered when the control plane was ready
	// again, and how long until no more than a second's worth was left.
	var backlog float64
	for _, sm := range samples {
		if !sm.at.After(ready) {
			backlog = sm.buffered
			continue
		}
		if sm.buffered <= rate {
			took := sm.at.Sub(ready).Seconds()
			fmt.Printf("backlog of %.0f events delivered %.1f s after the control plane was ready: intake ≥ %.0f events/s (the backlog plus %.0f/s of new events)\n",
				backlog, took, (backlog+rate*took)/took, rate)
			break
		}
	}
	if float64(stored) != c.events {
		return errors.New("events made and events stored differ")
	}
	fmt.Println("events made = events stored")
	return nil
}

// cpuTimes reads the busy and total jiffies of every CPU (/proc/stat).
func cpuTimes() map[string][2]float64 {
	out := map[string][2]float64{}
	raw, err := os.ReadFile("/proc/stat")
	if err != nil {
		return out
	}
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 || !strings.HasPrefix(f[0], "cpu") || f[0] == "cpu" {
			continue
		}
		var total, idle float64
		for i, v := range f[1:] {
			n, _ := strconv.ParseFloat(v, 64)
			total += n
			if i == 3 || i == 4 { // idle, iowait
				idle += n
			}
		}
		out[f[0]] = [2]float64{total - idle, total}
	}
	return out
}

// cpuBusy renders each CPU's busy share between two readings.
func cpuBusy(before, after map[string][2]float64) string {
	var parts []string
	for i := 0; ; i++ {
		name := fmt.Sprintf("cpu%d", i)
		a, ok := after[name]
		if !ok {
			break
		}
		b := before[name]
		if d := a[1] - b[1]; d > 0 {
			parts = append(parts, fmt.Sprintf("%s %.0f%%", name, 100*(a[0]-b[0])/d))
		}
	}
	return strings.Join(parts, ", ")
}
