package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/authzbench"
)

// The wire benchmark: every server is a process of its own on the server
// CPU (GOMAXPROCS=1), measured by this load generator on the client CPU.
//
//   - empty: this binary (serveChild) with authzbench.Empty, an ext_authz
//     handler that answers OK: what gRPC and the load generator cost.
//   - gatehouse: the real `gatehouse authorizer` following a real
//     `gatehouse control-plane` (configured with the fixture through the
//     admin API), --decision-logs=false.
//   - gatehouse-logs: the same with --decision-logs=true: every decision
//     is logged and uploaded to the control plane (which runs on the client
//     CPU). Before each scenario the previous one's events are drained.
//   - opa-envoy-plugin: this binary with authzbench.PluginStyle over the
//     fixture's route table and key set (a data.json), on grpc-go with the
//     plugin's server options.
//
// Per scenario, over the measured window (after -warmup): checks/s
// (answers received in the window ÷ its length); the server's CPU time
// (utime+stime of /proc/<pid>/stat, every thread) ÷ those checks and as a
// share of one CPU; its heap allocations (objects, tiny ones included, and
// bytes: runtime/metrics, read from the server's Prometheus /metrics
// before and after the window, go_memstats_mallocs_total and
// go_memstats_alloc_bytes_total, the authorizer's from Prometheus' Go
// collector, the children's from authzbench.WriteAllocMetrics, which
// reads the same runtime/metrics) ÷ those checks; p50 and p99 of the
// checks started (closed loop) or due (open loop, measured from the
// intended send time) in the window; the load generator's own CPU share.

type wireOptions struct {
	stack            stackOptions
	duration, warmup time.Duration
	scenarios        []scenario
	servers          []string
	conns            int
}

// scenario is a closed loop (inFlight checks outstanding) or, with rate
// set, an open loop.
type scenario struct {
	name     string
	inFlight int
	rate     float64
}

func parseScenarios(list string) ([]scenario, error) {
	var out []scenario
	for _, s := range splitList(list) {
		n, err := strconv.Atoi(s[1:])
		if err != nil || n <= 0 || (s[0] != 'c' && s[0] != 'o') {
			return nil, fmt.Errorf("-scenarios: %q: want cN (closed loop, N in flight) or oR (open loop, R checks/s)", s)
		}
		if s[0] == 'c' {
			out = append(out, scenario{name: fmt.Sprintf("closed, %d in flight", n), inFlight: n})
		} else {
			out = append(out, scenario{name: fmt.Sprintf("open, %d/s", n), rate: float64(n)})
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("-scenarios: none")
	}
	return out, nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// server is a running server under test.
type server struct {
	name            string
	proc            *authzbench.Process
	authz, httpAddr string
	// authorizer is set for the gatehouse servers.
	authorizer *authorizer
	logs       bool
}

// wireRow is one line of the table.
type wireRow struct {
	server, scenario string
	rate             float64
	r                authzbench.Result
	cpu, mallocs     float64
	bytes            float64
	clientCPU        float64
	// coreBusy is how busy the server's CPUs were (every process), -1 if
	// not pinned.
	coreBusy float64
}

func runWire(ctx context.Context, o wireOptions) error {
	f, err := authzbench.NewFixture()
	if err != nil {
		return err
	}
	if err := checkBaseline(ctx, f); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "gatehouse-bench-wire-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	data, err := authzbench.PluginData(f.JWKS(), f.Config.APIs)
	if err != nil {
		return err
	}
	dataFile := filepath.Join(dir, "data.json")
	if err := os.WriteFile(dataFile, data, 0o600); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	var st *stack
	for _, name := range o.servers {
		switch name {
		case "gatehouse", "gatehouse-logs":
			if st == nil {
				if st, err = newStack(ctx, f, o.stack); err != nil {
					return err
				}
				defer st.close()
			}
		case "empty", "opa-envoy-plugin":
		default:
			return fmt.Errorf("-servers: %q: want empty, gatehouse, gatehouse-logs or opa-envoy-plugin", name)
		}
	}
	fmt.Printf("bench-authz wire: servers on CPU %s (GOMAXPROCS=1), load generator and control plane on CPU %s; %d gRPC connections; %s warm-up + %s measured per scenario\n",
		o.stack.serverCPU, o.stack.clientCPU, o.conns, o.warmup, o.duration)
	fmt.Printf("fixture: %d APIs, %d distinct requests, %d tokens; machine: %s\n", len(f.Compiled.APIs), len(f.Requests), len(f.Tokens), machineFacts())
	var rows []wireRow
	var notes []string
	for _, name := range o.servers {
		srv, err := startServer(ctx, st, f, name, self, dir, dataFile, o.stack.serverCPU)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		for _, sc := range o.scenarios {
			if srv.logs {
				if _, err := srv.authorizer.drained(ctx, 2*time.Minute); err != nil {
					fmt.Fprintln(os.Stderr, "warning:", err)
				}
			}
			row, err := measure(ctx, f, srv, sc, o)
			if err != nil {
				_ = srv.proc.Stop()
				return fmt.Errorf("%s, %s: %w", name, sc.name, err)
			}
			rows = append(rows, row)
			fmt.Fprintf(os.Stderr, "  %-18s %-22s %8.0f checks/s\n", name, sc.name, row.r.PerSecond())
			if ctx.Err() != nil {
				break
			}
		}
		if srv.logs {
			c, err := srv.authorizer.drained(ctx, 2*time.Minute)
			if err != nil {
				fmt.Fprintln(os.Stderr, "warning:", err)
			}
			notes = append(notes, fmt.Sprintf("%s: decision log events made %.0f, delivered to the control plane %.0f, dropped %.0f %v",
				name, c.events, c.sent, c.dropped, nonZero(c.byReason)))
		}
		if err := srv.proc.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "warning: %s exit: %v (see %s)\n", name, err, srv.proc.LogFile())
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	printWire(rows)
	for _, n := range notes {
		fmt.Println(n)
	}
	return nil
}

// checkBaseline makes sure the fast path and the opa-envoy-plugin-style
// baseline decide every corpus and edge request alike.
func checkBaseline(ctx context.Context, f *authzbench.Fixture) error {
	fast, err := f.FastPath(ctx)
	if err != nil {
		return err
	}
	p, err := f.NewPluginStyle(ctx)
	if err != nil {
		return err
	}
	defer p.Close()
	edge, err := f.EdgeRequests()
	if err != nil {
		return err
	}
	allowed, err := authzbench.Agree(ctx, fast, p, "gatehouse", "opa-envoy-plugin style", append(f.Requests[:len(f.Requests):len(f.Requests)], edge...))
	if err != nil {
		return fmt.Errorf("the comparison would be unfair: %w", err)
	}
	fmt.Printf("decisions: gatehouse and the opa-envoy-plugin-style baseline agree on all %d corpus and %d edge requests (%d allowed)\n",
		len(f.Requests), len(edge), allowed)
	return nil
}

func startServer(ctx context.Context, st *stack, f *authzbench.Fixture, name, self, dir, dataFile, cpu string) (*server, error) {
	if name == "gatehouse" || name == "gatehouse-logs" {
		a, err := st.startAuthorizer(name == "gatehouse-logs")
		if err != nil {
			return nil, err
		}
		return &server{name: name, proc: a.proc, authz: a.authz, httpAddr: a.httpAddr, authorizer: a, logs: name == "gatehouse-logs"}, nil
	}
	s := &server{name: name}
	var err error
	if s.authz, err = authzbench.FreeAddr(); err != nil {
		return nil, err
	}
	if s.httpAddr, err = authzbench.FreeAddr(); err != nil {
		return nil, err
	}
	var env []string
	if cpu != "" {
		env = []string{"GOMAXPROCS=1"}
	}
	if s.proc, err = authzbench.StartProcess(name, cpu, filepath.Join(dir, name+".log"), env, self, serveCommand,
		"-impl", name, "-authz-addr", s.authz, "-http-addr", s.httpAddr, "-data", dataFile); err != nil {
		return nil, err
	}
	if err := authzbench.WaitHTTP("http://"+s.httpAddr+"/readyz", s.proc, time.Minute); err != nil {
		_ = s.proc.Stop()
		return nil, err
	}
	if name == "opa-envoy-plugin" {
		if err := sameDecisions(ctx, f, name, s.authz); err != nil {
			_ = s.proc.Stop()
			return nil, err
		}
	}
	return s, nil
}

// counters are a server's cumulative CPU seconds and allocations, and the
// load generator's CPU seconds.
type counters struct {
	cpu, mallocs, bytes, client float64
	at                          time.Time
	// cores are /proc/stat's busy and total jiffies of every CPU.
	cores map[string][2]float64
	err   error
}

func (s *server) counters(ctx context.Context) counters {
	c := counters{cpu: s.proc.CPUSeconds(), client: authzbench.CPUSeconds(os.Getpid()), at: time.Now(), cores: cpuTimes()}
	m, err := authzbench.Metrics(ctx, "http://"+s.httpAddr+"/metrics")
	if err != nil {
		c.err = err
		return c
	}
	var ok1, ok2 bool
	c.mallocs, ok1 = m[authzbench.MallocsMetric]
	c.bytes, ok2 = m[authzbench.AllocBytesMetric]
	if !ok1 || !ok2 {
		c.err = fmt.Errorf("%s: no %s or %s in /metrics", s.name, authzbench.MallocsMetric, authzbench.AllocBytesMetric)
	}
	return c
}

func measure(ctx context.Context, f *authzbench.Fixture, srv *server, sc scenario, o wireOptions) (wireRow, error) {
	var before, after counters
	var profiled sync.WaitGroup
	defer profiled.Wait()
	r, err := f.Run(ctx, authzbench.LoadOptions{
		Name: srv.name, Addr: srv.authz, Conns: o.conns, InFlight: sc.inFlight, Rate: sc.rate,
		Warmup: o.warmup, Duration: o.duration,
		Mark: func(end bool) {
			if end {
				after = srv.counters(ctx)
			} else {
				before = srv.counters(ctx)
				if o.stack.profileDir != "" && srv.authorizer != nil {
					profiled.Add(1)
					go func() {
						defer profiled.Done()
						if err := cpuProfile(ctx, srv.httpAddr, o.duration, filepath.Join(o.stack.profileDir, srv.name+"-"+sc.name+".pprof")); err != nil {
							fmt.Fprintln(os.Stderr, "warning: profile:", err)
						}
					}()
				}
			}
		},
	})
	if err != nil {
		return wireRow{}, err
	}
	if before.err != nil || after.err != nil {
		return wireRow{}, fmt.Errorf("server counters: %v %v", before.err, after.err)
	}
	row := wireRow{server: srv.name, scenario: sc.name, rate: sc.rate, r: r}
	n := float64(max(r.Checks, 1))
	row.cpu = (after.cpu - before.cpu) / n
	row.mallocs = (after.mallocs - before.mallocs) / n
	row.bytes = (after.bytes - before.bytes) / n
	row.clientCPU = (after.client - before.client) / after.at.Sub(before.at).Seconds()
	row.coreBusy = -1
	if cpus, ok := cpuList(o.stack.serverCPU); ok {
		var busy, total float64
		for _, c := range cpus {
			a, b := after.cores[c], before.cores[c]
			busy, total = busy+a[0]-b[0], total+a[1]-b[1]
		}
		if total > 0 {
			row.coreBusy = busy / total
		}
	}
	return row, nil
}

// cpuList names the CPUs of a taskset list ("0", "0,2", "0-3").
func cpuList(list string) ([]string, bool) {
	var out []string
	for _, part := range splitList(list) {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return nil, false
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return nil, false
			}
		}
		for i := a; i <= b; i++ {
			out = append(out, fmt.Sprintf("cpu%d", i))
		}
	}
	return out, len(out) > 0
}

func printWire(rows []wireRow) {
	fmt.Println()
	fmt.Printf("%-17s %-21s %9s %8s %10s %10s %9s %9s %9s %6s %6s %8s %7s %9s\n",
		"server", "scenario", "checks/s", "srv CPU", "CPU µs/chk", "allocs/chk", "KB/chk", "p50", "p99", "errors", "late", "allowed", "gen CPU", "core busy")
	prev := ""
	for _, w := range rows {
		if w.server != prev && prev != "" {
			fmt.Println()
		}
		prev = w.server
		r := w.r
		p99 := fmtDur(r.P99)
		p50 := fmtDur(r.P50)
		if r.Late > 0 {
			p99 = ">" + p99
			if float64(r.Late) > 0.5*float64(r.Checks) {
				p50 = ">" + p50
			}
		}
		short := " "
		if w.rate > 0 && r.PerSecond() < 0.95*w.rate {
			short = "*"
		}
		busy := "-"
		if w.coreBusy >= 0 {
			busy = fmt.Sprintf("%.0f%%", 100*w.coreBusy)
		}
		fmt.Printf("%-17s %-21s %8.0f%s %7.0f%% %10.1f %10.0f %9.1f %9s %9s %6d %6d %7.0f%% %6.0f%% %9s\n",
			w.server, w.scenario, r.PerSecond(), short, 100*w.cpu*r.PerSecond(), w.cpu*1e6, w.mallocs, w.bytes/1024,
			p50, p99, r.Errors, r.Late, 100*float64(r.Allowed)/float64(max(r.Checks, 1)), 100*w.clientCPU, busy)
	}
	fmt.Println()
	fmt.Println("checks/s: answers in the window ÷ its length (*: under 95% of an open loop's rate: the server could not keep up);")
	fmt.Println("srv CPU: the server process's CPU time (utime+stime) over the window, as a share of one CPU; CPU µs/chk: that time ÷ checks;")
	fmt.Println("allocs/chk, KB/chk: the server's heap allocations (runtime/metrics via /metrics) ÷ checks; p50, p99: latency of the checks")
	fmt.Println("started (closed) or due (open, from the intended send time) in the window; late: due but unanswered at the cutoff (window")
	fmt.Println("end + its length), counted at their wait so far (\">\": a lower bound); gen CPU: the load generator's CPU share;")
	fmt.Println("core busy: how busy the server's CPU was (/proc/stat, every process): well above srv CPU means others used it.")
}

func fmtDur(d time.Duration) string {
	switch {
	case d >= 10*time.Second:
		return fmt.Sprintf("%.0fs", d.Seconds())
	case d >= time.Second:
		return fmt.Sprintf("%.2fs", d.Seconds())
	case d >= 10*time.Millisecond:
		return fmt.Sprintf("%.0fms", float64(d)/1e6)
	case d >= time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/1e6)
	default:
		return fmt.Sprintf("%.0fµs", float64(d)/1e3)
	}
}

// cpuProfile saves a CPU profile of an authorizer (served with --pprof)
// taken over d.
func cpuProfile(ctx context.Context, httpAddr string, d time.Duration, file string) error {
	url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", httpAddr, max(int(d.Seconds()), 1))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: HTTP %d", url, res.StatusCode)
	}
	out, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, res.Body); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
