// Command run is `make bench-activation`: the authorizer's start from its
// disk cache with a signed bundle of -apis APIs (activationbench's
// fixture), in fresh processes. Each process reads the bundle, verifies and
// activates it (Follower.LoadCache, as `gatehouse authorizer` starts), then
// reports the activation time, the heap after a GC, and its RSS (after the
// GC, after returning free memory to the OS, and the peak).
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse-dev/gatehouse/gateway"
	"github.com/gatehouse-dev/gatehouse/gateway/token"
	"github.com/gatehouse-dev/gatehouse/internal/activationbench"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/policies"
)

// result is what one measuring process reports (one JSON line).
type result struct {
	// ActiveMS is the time to the engine being active, ActivationMS to
	// LoadCache returning (the follower then returns the activation's
	// garbage to the system).
	ActiveMS     float64 `json:"active_ms"`
	ActivationMS float64 `json:"activation_ms"`
	HeapMiB      float64 `json:"heap_mib"`
	RSSMiB       float64 `json:"rss_mib"`
	RSSFreedMiB  float64 `json:"rss_freed_mib"`
	PeakRSSMiB   float64 `json:"peak_rss_mib"`
}

func main() {
	apis := flag.Int("apis", 10000, "APIs in the bundle")
	runs := flag.Int("runs", 5, "measuring processes")
	child := flag.String("child", "", "internal: measure one activation of the cache in this directory (key in key.json)")
	heapProfile := flag.String("heapprofile", "", "write a heap profile (after the GC) of the first run here")
	flag.Parse()
	var err error
	if *child != "" {
		err = measure(*child, *heapProfile)
	} else {
		err = run(*apis, *runs, *heapProfile)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench-activation:", err)
		os.Exit(1)
	}
}

type keyFile struct {
	KeyID        string `json:"key_id"`
	PublicKeyPEM string `json:"public_key_pem"`
}

func run(apis, runs int, heapProfile string) error {
	raw, key, err := activationbench.Bundle(apis)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "bench-activation-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, activationbench.TenantID, activationbench.GatewayID, "bundle.tar.gz")
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		return err
	}
	kf, _ := json.Marshal(keyFile{KeyID: key.KeyID, PublicKeyPEM: key.PublicKeyPEM})
	if err := os.WriteFile(filepath.Join(dir, "key.json"), kf, 0o600); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	fmt.Printf("bench-activation: %d APIs, bundle %d bytes, %d fresh processes, GOMAXPROCS=%d\n", apis, len(raw), runs, runtime.GOMAXPROCS(0))
	fmt.Printf("%-4s %10s %14s %12s %10s %10s %16s %14s\n", "run", "active_ms", "activation_ms", "process_ms", "heap_MiB", "rss_MiB", "rss_freed_MiB", "peak_rss_MiB")
	for i := 0; i < runs; i++ {
		args := []string{"-child", dir}
		if i == 0 && heapProfile != "" {
			args = append(args, "-heapprofile", heapProfile)
		}
		cmd := exec.Command(self, args...)
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			return err
		}
		start := time.Now()
		if err := cmd.Start(); err != nil {
			return err
		}
		r := bufio.NewReader(out)
		ready, err := r.ReadString('\n')
		process := time.Since(start)
		if err != nil || strings.TrimSpace(ready) != "ready" {
			_ = cmd.Wait()
			return fmt.Errorf("run %d: no ready line (%q, %v)", i, ready, err)
		}
		line, err := io.ReadAll(r)
		if err != nil {
			return err
		}
		if err := cmd.Wait(); err != nil {
			return fmt.Errorf("run %d: %w", i, err)
		}
		var res result
		if err := json.Unmarshal(line, &res); err != nil {
			return fmt.Errorf("run %d: %q: %w", i, line, err)
		}
		fmt.Printf("%-4d %10.0f %14.0f %12.0f %10.1f %10.1f %16.1f %14.1f\n", i, res.ActiveMS, res.ActivationMS, ms(process),
			res.HeapMiB, res.RSSMiB, res.RSSFreedMiB, res.PeakRSSMiB)
	}
	return nil
}

// measure activates the cached bundle once, as the authorizer does at
// start, and reports.
func measure(dir, heapProfile string) error {
	raw, err := os.ReadFile(filepath.Join(dir, "key.json"))
	if err != nil {
		return err
	}
	var key keyFile
	if err := json.Unmarshal(raw, &key); err != nil {
		return err
	}
	ctx := context.Background()
	start := time.Now()
	ref := model.GatewayRef{TenantID: activationbench.TenantID, GatewayID: activationbench.GatewayID}
	engines := gateway.NewEngines(ref)
	active := make(chan time.Duration, 1)
	changed := engines.Changed()
	go func() { <-changed; active <- time.Since(start) }()
	a := &gateway.Activator{Engines: engines, Tokens: func(ctx context.Context, issuers []policies.IssuerData) (gateway.TokenValidator, error) {
		return token.New(token.FromBundle(issuers), token.Options{})
	}}
	defer a.Close()
	f, err := gateway.NewFollower(gateway.FollowerOptions{URL: "http://127.0.0.1:1", TenantID: ref.TenantID, GatewayID: ref.GatewayID,
		Credential: "bench", KeyID: key.KeyID, PublicKeyPEM: key.PublicKeyPEM, CacheDir: dir, Activator: a,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return err
	}
	if err := f.LoadCache(ctx); err != nil {
		return err
	}
	took := time.Since(start)
	if engines.Get(ref.TenantID, ref.GatewayID) == nil {
		return fmt.Errorf("no engine after activation")
	}
	fmt.Println("ready")
	runtime.GC()
	var mem runtime.MemStats
	runtime.ReadMemStats(&mem)
	res := result{ActiveMS: ms(<-active), ActivationMS: ms(took), HeapMiB: mib(mem.HeapAlloc)}
	if res.RSSMiB, err = procStatus("VmRSS"); err != nil {
		return err
	}
	if heapProfile != "" {
		pf, err := os.Create(heapProfile)
		if err != nil {
			return err
		}
		if err := pprof.Lookup("heap").WriteTo(pf, 0); err != nil {
			return err
		}
		pf.Close()
	}
	debug.FreeOSMemory()
	if res.RSSFreedMiB, err = procStatus("VmRSS"); err != nil {
		return err
	}
	if res.PeakRSSMiB, err = procStatus("VmHWM"); err != nil {
		return err
	}
	runtime.KeepAlive(engines)
	return json.NewEncoder(os.Stdout).Encode(res)
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// procStatus reads a memory line of /proc/self/status (kB), in MiB.
func procStatus(field string) (float64, error) {
	raw, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			if err != nil {
				return 0, fmt.Errorf("%s: %w", field, err)
			}
			return kb / 1024, nil
		}
	}
	return 0, fmt.Errorf("no %s in /proc/self/status", field)
}
