package authzbench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/testkit"
)

// This file runs the real processes for the decision log benchmarks: a
// control plane (gatehouse control-plane) configured with the fixture
// through its admin API, and a gatehouse authorizer following it, each
// pinned to a CPU with taskset. Everything listens on loopback.

// Process is a gatehouse process the benchmark started.
type Process struct {
	Name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
	log  *os.File
}

// StartProcess runs binary args... pinned to cpu (taskset -c; "" for no
// pinning), its output in logPath.
func StartProcess(name, cpu, logPath string, env []string, binary string, args ...string) (*Process, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	argv := append([]string{binary}, args...)
	if cpu != "" {
		argv = append([]string{"taskset", "-c", cpu}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Process{Name: name, cmd: cmd, done: make(chan struct{}), log: f}
	go func() { p.err = cmd.Wait(); f.Close(); close(p.done) }()
	return p, nil
}

// Stop sends SIGTERM and waits (up to a minute, then SIGKILL).
func (p *Process) Stop() error {
	select {
	case <-p.done:
		return p.err
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(time.Minute):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	return p.err
}

// CPUSeconds is the CPU time the process used so far (user and system,
// from /proc/<pid>/stat).
func (p *Process) CPUSeconds() float64 { return CPUSeconds(p.cmd.Process.Pid) }

// Pid is the process id (taskset execs the command, so it is the
// command's own).
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// LogFile is where the process's output goes.
func (p *Process) LogFile() string { return p.log.Name() }

// CPUSeconds is the CPU time process pid used so far, every thread's user
// and system time (utime + stime of /proc/<pid>/stat, in clock ticks of
// 10 ms), 0 if it cannot be read.
func CPUSeconds(pid int) float64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The fields after the command name, which is in parentheses.
	rest := string(raw[bytes.LastIndexByte(raw, ')')+1:])
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / 100 // USER_HZ
}

// Exited reports whether the process ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// FreeAddr returns a loopback address with a free port.
func FreeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// WaitHTTP waits until GET url answers 200 (or p exits, or the timeout).
func WaitHTTP(url string, p *Process, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if p != nil && p.Exited() {
			return fmt.Errorf("%s exited: %v (see %s)", p.Name, p.err, p.log.Name())
		}
		res, err := http.Get(url)
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready after %s", url, timeout)
}

// Admin is a client of the control plane's admin API.
type Admin struct {
	URL, Token string
}

// Do sends a JSON request and decodes a JSON answer into out (when set).
func (a *Admin) Do(method, path string, body, out any, want int) error {
	c := testkit.HTTPClient{BaseURL: a.URL, Token: a.Token, Client: http.DefaultClient}
	res, err := c.Send(context.Background(), method, path, body)
	if err != nil {
		return err
	}
	if res.Status != want {
		return fmt.Errorf("%s %s: %d %s", method, path, res.Status, bytes.TrimSpace(res.Body))
	}
	if out != nil {
		return res.Decode(out)
	}
	return nil
}

// Gateway is what an authorizer needs to follow gateway edge.
type Gateway struct {
	Credential, KeyID, KeyFile string
}

// Configure creates the fixture's tenant (acme), its issuer, policy,
// services and APIs and gateway edge through the admin API, and writes the
// bundle signing key to dir.
func (f *Fixture) Configure(a *Admin, dir string) (*Gateway, error) {
	cfg := f.Config
	steps := []struct {
		path string
		body any
	}{
		{"/api/system/tenants", map[string]any{"id": cfg.Tenant.ID, "name": cfg.Tenant.Spec.Name}},
		{"/api/admin/acme/issuers", map[string]any{"id": "idp", "name": "idp", "issuer": Issuer, "audiences": []string{Audience}, "jwks": json.RawMessage(f.jwks)}},
		{"/api/admin/acme/policies", map[string]any{"id": "pets", "policy_name": "pets", "language": "rego", "definition": Policy}},
	}
	for _, s := range cfg.Services {
		steps = append(steps, struct {
			path string
			body any
		}{"/api/admin/acme/services", map[string]any{"id": s.ID, "name": s.Name, "url": s.Spec.URL}})
	}
	for _, api := range cfg.APIs {
		steps = append(steps, struct {
			path string
			body any
		}{"/api/admin/acme/apis", map[string]any{"id": api.ID, "service_id": api.Spec.ServiceID, "method": api.Spec.Method, "path": api.Spec.Path, "policy_id": api.Spec.PolicyID}})
	}
	for _, s := range steps {
		if err := a.Do("POST", s.path, s.body, nil, http.StatusCreated); err != nil {
			return nil, err
		}
	}
	var gw struct {
		Credential struct {
			Token string `json:"token"`
		} `json:"credential"`
	}
	if err := a.Do("POST", "/api/admin/acme/gateways", map[string]any{"id": "edge", "name": "edge", "policy_timeout_ms": 1000}, &gw, http.StatusCreated); err != nil {
		return nil, err
	}
	var keys struct {
		Keys []struct {
			KID string `json:"kid"`
			PEM string `json:"public_key_pem"`
		} `json:"keys"`
	}
	if err := a.Do("GET", "/api/admin/acme/gateways/edge/keys", nil, &keys, http.StatusOK); err != nil {
		return nil, err
	}
	if len(keys.Keys) == 0 {
		return nil, errors.New("the gateway has no bundle signing key")
	}
	keyFile := filepath.Join(dir, "bundle-key.pem")
	if err := os.WriteFile(keyFile, []byte(keys.Keys[0].PEM), 0o600); err != nil {
		return nil, err
	}
	return &Gateway{Credential: gw.Credential.Token, KeyID: keys.Keys[0].KID, KeyFile: keyFile}, nil
}

// StoredDecisions pages through the gateway's decision log and returns how
// many events it holds and how many distinct decision ids.
func (a *Admin) StoredDecisions(tid, gw string) (events, distinct int, err error) {
	seen := map[string]struct{}{}
	after := ""
	for {
		path := "/api/admin/" + tid + "/gateways/" + gw + "/decisions?limit=1000&total=false"
		if after != "" {
			path += "&after=" + after
		}
		var page struct {
			Decisions []struct {
				Event struct {
					DecisionID string `json:"decision_id"`
				} `json:"event"`
			} `json:"decisions"`
			Next string `json:"next"`
		}
		var err error
		for attempt := 0; attempt < 5; attempt++ {
			if err = a.Do("GET", path, nil, &page, http.StatusOK); err == nil {
				break
			}
			time.Sleep(time.Second)
		}
		if err != nil {
			return events, len(seen), err
		}
		for _, d := range page.Decisions {
			events++
			seen[d.Event.DecisionID] = struct{}{}
		}
		if page.Next == "" {
			return events, len(seen), nil
		}
		after = page.Next
	}
}

// Metrics scrapes a Prometheus text endpoint into name{labels} → value.
func Metrics(ctx context.Context, url string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			out[line[:i]] = v
		}
	}
	return out, sc.Err()
}
