// Command run is `make bench-authz` and `make bench-decision-logs`.
//
// -mode wire (the default) measures ext_authz over gRPC, in one run, for
// four servers, each its own process pinned to -server-cpu with
// GOMAXPROCS=1 while this load generator (and the control plane) run on
// -client-cpu: an empty grpc-go Check handler that answers OK, the real
// gatehouse authorizer following a real control plane with decision logs
// off, the same with decision logs on (delivered to that control plane),
// and the opa-envoy-plugin-style baseline (authzbench.PluginStyle) on the
// same grpc-go server. Each runs the -scenarios (closed loops with a fixed
// number of checks in flight, open loops at a fixed rate, latency from the
// intended send time) and one table reports checks/s, the server's CPU
// time and allocations per check, and latency.
//
// -mode decision-logs runs a real control plane and gatehouse authorizer
// and compares checks/s with decision logs on and off, alternating, for
// -rounds; -mode outage runs the authorizer at 80% of its peak for
// -duration, stops the control plane for -outage in the middle, and
// compares the decision log events made with those stored.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/authzbench"
)

// serveCommand, as the first argument, makes this binary one of the wire
// benchmark's servers (see serveChild).
const serveCommand = "__serve"

func main() {
	if len(os.Args) > 1 && os.Args[1] == serveCommand {
		if err := serveChild(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "bench-authz server:", err)
			os.Exit(1)
		}
		return
	}
	mode := flag.String("mode", "wire", "wire (every server and scenario, one table), decision-logs or outage")
	duration := flag.Duration("duration", 10*time.Second, "measured time per scenario (wire) or run")
	warmup := flag.Duration("warmup", 2*time.Second, "wire: warm-up before each scenario's measured window")
	scenarios := flag.String("scenarios", "c16,c64,o1000,o5000", "wire: cN = closed loop with N checks in flight, oR = open loop at R checks/s")
	servers := flag.String("servers", "empty,gatehouse,gatehouse-logs,opa-envoy-plugin", "wire: servers to measure, in order")
	conns := flag.Int("conns", 2, "wire: gRPC connections of the load generator")
	concurrency := flag.Int("concurrency", 16, "decision-logs, outage: concurrent in-flight checks")
	serverCPU := flag.String("server-cpu", "0", "CPU list (taskset -c) of the server under test; empty: not pinned")
	clientCPU := flag.String("client-cpu", "1", "CPU list of the control plane and the load generator; empty: not pinned")
	databaseURL := flag.String("database-url", "", "PostgreSQL URL of a database to create the control plane's database next to (empty: the embedded store)")
	binary := flag.String("binary", "", "gatehouse binary (default: built from ./cmd/gatehouse)")
	profileDir := flag.String("profile", "", "wire: directory for a CPU profile of each gatehouse authorizer's measured windows (<server>-<scenario>.pprof)")
	rounds := flag.Int("rounds", 3, "decision-logs: on/off pairs")
	outage := flag.Duration("outage", 30*time.Second, "outage: how long the control plane is stopped")
	rate := flag.Float64("rate", 0, "outage: checks/s (0: 80% of the peak, measured first)")
	flag.Parse()
	if *mode != "wire" && *mode != "decision-logs" && *mode != "outage" {
		fmt.Fprintf(os.Stderr, "bench-authz: -mode %q: want wire, decision-logs or outage\n", *mode)
		os.Exit(2)
	}
	if *clientCPU != "" && os.Getenv("GATEHOUSE_BENCH_PINNED") == "" {
		os.Exit(repin(*clientCPU))
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	opts := stackOptions{serverCPU: *serverCPU, clientCPU: *clientCPU, databaseURL: *databaseURL, binary: *binary, profileDir: *profileDir}
	var err error
	switch *mode {
	case "wire":
		var sc []scenario
		if sc, err = parseScenarios(*scenarios); err == nil {
			err = runWire(ctx, wireOptions{stack: opts, duration: *duration, warmup: *warmup, scenarios: sc,
				servers: splitList(*servers), conns: *conns})
		}
	case "outage":
		err = runOutage(ctx, opts, *concurrency, *duration, *outage, *rate)
	default:
		err = runDecisionLogs(ctx, opts, *concurrency, *duration, *rounds)
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
	// ^C reaches the child too (same process group); wait for it.
	signal.Ignore(os.Interrupt)
	if err := cmd.Run(); err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		fmt.Fprintln(os.Stderr, "bench-authz:", err)
		return 1
	}
	return 0
}

// serveChild serves one implementation until SIGTERM: -impl empty or
// opa-envoy-plugin (PluginStyle over the bundle data in -data), on
// -authz-addr, with /readyz and /metrics (allocation counters) on
// -http-addr.
func serveChild(args []string) error {
	fs := flag.NewFlagSet(serveCommand, flag.ContinueOnError)
	impl := fs.String("impl", "", "empty or opa-envoy-plugin")
	authzAddr := fs.String("authz-addr", "", "ext_authz listen address")
	httpAddr := fs.String("http-addr", "", "readiness and metrics listen address")
	data := fs.String("data", "", "opa-envoy-plugin: the bundle's data.json")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	switch *impl {
	case "empty":
		return authzbench.ServeUntil(ctx, authzbench.Empty{}, *authzAddr, *httpAddr)
	case "opa-envoy-plugin":
		raw, err := os.ReadFile(*data)
		if err != nil {
			return err
		}
		p, err := authzbench.NewPluginStyle(ctx, raw, authzbench.PluginOptions{})
		if err != nil {
			return err
		}
		defer p.Close()
		return authzbench.ServeUntil(ctx, p, *authzAddr, *httpAddr, authzbench.PluginServerOptions()...)
	default:
		return fmt.Errorf("-impl %q: want empty or opa-envoy-plugin", *impl)
	}
}
