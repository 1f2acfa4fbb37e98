// Command run is `make bench-authz`: a gRPC load generator against the
// Gatehouse authorizer and against the same policy evaluated the way
// opa-envoy-plugin does it, with the same requests and tokens.
//
// -mode decision-logs runs a real control plane and gatehouse authorizer
// (the authorizer pinned to -server-cpu, the control plane and the load
// generator to -client-cpu) and compares checks/s with decision logs on
// and off; -mode outage runs the authorizer at 80% of its peak for
// -duration, stops the control plane for -outage in the middle, and
// compares the decision log events made with those stored.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/authzbench"
)

func main() {
	mode := flag.String("mode", "compare", "compare (in-process, against the opa-envoy-plugin style), decision-logs or outage")
	duration := flag.Duration("duration", 20*time.Second, "measured time per run (after 1 s of warm-up)")
	concurrency := flag.Int("concurrency", 16, "concurrent in-flight checks")
	serverCPU := flag.String("server-cpu", "0", "CPU list (taskset -c) of the authorizer; empty: not pinned")
	clientCPU := flag.String("client-cpu", "1", "CPU list of the control plane and the load generator; empty: not pinned")
	databaseURL := flag.String("database-url", "", "PostgreSQL URL of a database to create the control plane's database next to (empty: the embedded store)")
	binary := flag.String("binary", "", "gatehouse binary (default: built from ./cmd/gatehouse)")
	rounds := flag.Int("rounds", 3, "decision-logs: on/off pairs")
	outage := flag.Duration("outage", 30*time.Second, "outage: how long the control plane is stopped")
	rate := flag.Float64("rate", 0, "outage: checks/s (0: 80% of the peak, measured first)")
	flag.Parse()
	var err error
	switch *mode {
	case "compare":
		err = run(*duration, *concurrency)
	case "decision-logs", "outage":
		if *clientCPU != "" && os.Getenv("GATEHOUSE_BENCH_PINNED") == "" {
			os.Exit(repin(*clientCPU))
		}
		ctx := context.Background()
		opts := stackOptions{serverCPU: *serverCPU, clientCPU: *clientCPU, databaseURL: *databaseURL, binary: *binary}
		if *mode == "outage" {
			err = runOutage(ctx, opts, *concurrency, *duration, *outage, *rate)
		} else {
			err = runDecisionLogs(ctx, opts, *concurrency, *duration, *rounds)
		}
	default:
		err = fmt.Errorf("-mode %q: want compare, decision-logs or outage", *mode)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench-authz:", err)
		os.Exit(1)
	}
}

// repin runs this command again pinned to cpus (taskset -c) and returns
// its exit code.
func repin(cpus string) int {
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench-authz:", err)
		return 1
	}
	cmd := exec.Command("taskset", append([]string{"-c", cpus, self}, os.Args[1:]...)...)
	cmd.Env = append(os.Environ(), "GATEHOUSE_BENCH_PINNED=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		fmt.Fprintln(os.Stderr, "bench-authz:", err)
		return 1
	}
	return 0
}

func run(duration time.Duration, concurrency int) error {
	ctx := context.Background()
	f, err := authzbench.NewFixture()
	if err != nil {
		return err
	}
	fast, err := f.FastPath(ctx)
	if err != nil {
		return err
	}
	plugin, err := f.NewPluginStyle(ctx)
	if err != nil {
		return err
	}
	// Both must decide alike before their speed is compared.
	for i, req := range f.Requests {
		a, _ := fast.Check(ctx, req)
		b, err := plugin.Check(ctx, req)
		if err != nil {
			return fmt.Errorf("plugin-style request %d: %w", i, err)
		}
		if a.GetStatus().GetCode() != b.GetStatus().GetCode() {
			return fmt.Errorf("request %d: gatehouse %d, plugin-style %d: the comparison would be unfair", i, a.GetStatus().GetCode(), b.GetStatus().GetCode())
		}
	}
	fmt.Printf("bench-authz: %d APIs, %d distinct requests, %d tokens, %d concurrent checks, %v per implementation, GOMAXPROCS=%d\n",
		len(f.Compiled.APIs), len(f.Requests), len(f.Tokens), concurrency, duration, runtime.GOMAXPROCS(0))
	var results []authzbench.Result
	addr, stop, err := authzbench.Serve(fast)
	if err != nil {
		return err
	}
	r, err := f.Load(ctx, "gatehouse (fast path)", addr, concurrency, duration)
	stop()
	if err != nil {
		return err
	}
	results = append(results, r)
	addr, stop, err = authzbench.Serve(plugin)
	if err != nil {
		return err
	}
	r, err = f.Load(ctx, "opa-envoy-plugin style (one query)", addr, concurrency, duration)
	stop()
	if err != nil {
		return err
	}
	results = append(results, r)
	authzbench.Report(os.Stdout, results...)
	return nil
}
