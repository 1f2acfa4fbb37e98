// Package tests holds end-to-end tests: they build the real gatehouse
// binary, start it as a separate process on free ports and drive it through
// its public interfaces only.
package tests

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/pgtest"
	"github.com/gatehouse-dev/gatehouse/internal/testkit/openapicheck"
	"github.com/gatehouse-dev/gatehouse/internal/tlsfiles"
)

// gatehouseBin is the binary under test, built once by TestMain.
var gatehouseBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "gatehouse-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	gatehouseBin = filepath.Join(dir, "gatehouse")
	build := exec.Command("go", "build", "-o", gatehouseBin, "../cmd/gatehouse")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building gatehouse:", err)
		os.Exit(1)
	}
	code := pgtest.Run(m)
	os.RemoveAll(dir)
	os.Exit(code)
}

// lockedBuffer collects a process's output safely across goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// process is a running gatehouse.
type process struct {
	t      *testing.T
	cmd    *exec.Cmd
	stdout *lockedBuffer
	stderr *lockedBuffer
	done   chan struct{}
	// URL is the admin API base URL.
	URL string
}

// serveOptions says how to start `gatehouse serve`.
type serveOptions struct {
	DataDir     string
	DatabaseURL string
	// Token is GATEHOUSE_ADMIN_TOKEN; empty leaves it unset.
	Token string
	Args  []string
	// Command is "serve" (default) or "control-plane".
	Command string
	// TLS, when set, serves every listener with its certificate; the
	// process's URL is https and clients trust TLS.CAFile.
	TLS *testCerts
}

// testCerts are certificates made for a test (tlsfiles.DevCerts).
type testCerts struct {
	Dir                           string
	CAFile, CertFile, KeyFile     string
	ClientCertFile, ClientKeyFile string
}

// newTestCerts writes a CA, a loopback server certificate and a client
// certificate into a temp dir.
func newTestCerts(t *testing.T) *testCerts {
	t.Helper()
	dir := t.TempDir()
	if err := tlsfiles.DevCerts(tlsfiles.DevCertOptions{Dir: dir}); err != nil {
		t.Fatal(err)
	}
	j := func(name string) string { return filepath.Join(dir, name) }
	return &testCerts{Dir: dir, CAFile: j("ca.pem"), CertFile: j("server.pem"), KeyFile: j("server-key.pem"),
		ClientCertFile: j("client.pem"), ClientKeyFile: j("client-key.pem")}
}

// httpClients are the HTTP clients of servers started over TLS, by base
// URL (others use a plain client).
var httpClients sync.Map

// httpClientFor is the client that reaches base.
func httpClientFor(base string) *http.Client {
	if c, ok := httpClients.Load(base); ok {
		return c.(*http.Client)
	}
	return &http.Client{Timeout: 30 * time.Second}
}

// startServe starts `gatehouse serve` on a free port and waits until it
// listens.
func startServe(t *testing.T, o serveOptions) *process {
	t.Helper()
	if o.Command == "" {
		o.Command = "serve"
	}
	args := []string{o.Command, "--http-addr", "127.0.0.1:0", "--data-dir", o.DataDir, "--xds-addr", "127.0.0.1:0"}
	if o.Command == "serve" {
		args = append(args, "--authz-addr", "127.0.0.1:0")
	}
	if o.DatabaseURL != "" {
		args = append(args, "--database-url", o.DatabaseURL)
	}
	if o.TLS != nil {
		args = append(args, "--tls-cert-file", o.TLS.CertFile, "--tls-key-file", o.TLS.KeyFile)
	}
	args = append(args, o.Args...)
	env := []string{}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GATEHOUSE_") {
			env = append(env, kv)
		}
	}
	if o.Token != "" {
		env = append(env, "GATEHOUSE_ADMIN_TOKEN="+o.Token)
	}
	p := start(t, env, args...)
	p.URL = "http://" + p.waitLog(t, "admin API listening", "addr")
	if o.TLS != nil {
		p.URL = "https://" + strings.TrimPrefix(p.URL, "http://")
		cfg, err := tlsfiles.ClientConfig(o.TLS.CAFile, "", "")
		if err != nil {
			t.Fatal(err)
		}
		httpClients.Store(p.URL, &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}})
		t.Cleanup(func() { httpClients.Delete(p.URL) })
	}
	servedDocument(t, p.URL)
	t.Cleanup(func() { servedDocs.forget(p.URL) })
	return p
}

// servedDocs holds the OpenAPI document each running server serves, by
// admin base URL, fetched once when the server starts.
var servedDocs = &documents{m: map[string]*openapicheck.Checker{}}

type documents struct {
	mu sync.Mutex
	m  map[string]*openapicheck.Checker
}

func (d *documents) forget(base string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.m, base)
}

// servedDocument returns the checker of the document served at
// base/api/openapi.json, fetching it on first use.
func servedDocument(t *testing.T, base string) *openapicheck.Checker {
	t.Helper()
	servedDocs.mu.Lock()
	c := servedDocs.m[base]
	servedDocs.mu.Unlock()
	if c != nil {
		return c
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := openapicheck.Fetch(ctx, httpClientFor(base), base+"/api/openapi.json")
	if err != nil {
		t.Fatalf("the server's OpenAPI document: %v", err)
	}
	servedDocs.mu.Lock()
	defer servedDocs.mu.Unlock()
	if known := servedDocs.m[base]; known != nil {
		return known
	}
	servedDocs.m[base] = c
	return c
}

func start(t *testing.T, env []string, args ...string) *process {
	t.Helper()
	cmd := exec.Command(gatehouseBin, args...)
	cmd.Env = env
	p := &process{t: t, cmd: cmd, stdout: &lockedBuffer{}, stderr: &lockedBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.stdout, p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start gatehouse: %v", err)
	}
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("gatehouse %v stdout:\n%s\nstderr (tail):\n%s", args, p.stdout, tail(p.stderr.String(), 4000))
		}
	})
	return p
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// waitLog waits for a JSON log line with msg and returns its field.
func (p *process) waitLog(t *testing.T, msg, field string) string {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		sc := bufio.NewScanner(strings.NewReader(p.stderr.String()))
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var line map[string]any
			if json.Unmarshal(sc.Bytes(), &line) == nil && line["msg"] == msg {
				if v, ok := line[field].(string); ok {
					return v
				}
			}
		}
		select {
		case <-p.done:
			t.Fatalf("gatehouse exited before logging %q: %s\n%s", msg, p.stdout, p.stderr)
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatalf("gatehouse did not log %q in time:\n%s", msg, p.stderr)
	return ""
}

// stop sends SIGTERM and waits for a clean exit.
func (p *process) stop() {
	p.t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		p.t.Fatal("gatehouse did not stop within 30s of SIGTERM")
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		p.t.Fatalf("gatehouse exited with %d after SIGTERM:\n%s", code, p.stderr)
	}
}

// kill sends SIGKILL (no chance to clean up) and waits.
func (p *process) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// client is an HTTP client for the admin API with one bearer token. Every
// response it gets is checked against the OpenAPI document the server
// serves (a mismatch is a t.Errorf).
type client struct {
	t     *testing.T
	base  string
	token string
	http  *http.Client
	api   *openapicheck.Checker
}

func newClient(t *testing.T, base, token string) *client {
	t.Helper()
	return &client{t: t, base: base, token: token, http: httpClientFor(base), api: servedDocument(t, base)}
}

type response struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r response) JSON(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("not JSON (%d): %s", r.Status, r.Body)
	}
	return m
}

// try sends a request and returns the response or the transport error.
func (c *client) try(ctx context.Context, method, path string, body any, headers ...string) (response, error) {
	var rd io.Reader
	var raw []byte
	switch b := body.(type) {
	case nil:
	case string:
		raw = []byte(b)
		rd = strings.NewReader(b)
	default:
		var err error
		if raw, err = json.Marshal(b); err != nil {
			return response{}, err
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return response{}, err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := c.http.Do(req)
	if err != nil {
		return response{}, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return response{}, err
	}
	api := c.api
	if api == nil { // a client built without newClient
		api = servedDocument(c.t, c.base)
	}
	api.Expect(c.t, openapicheck.Exchange{Request: req, RequestBody: raw, Status: res.StatusCode, Header: res.Header, Body: b})
	return response{Status: res.StatusCode, Header: res.Header, Body: b}, nil
}

func (c *client) do(method, path string, body any, headers ...string) response {
	c.t.Helper()
	r, err := c.try(context.Background(), method, path, body, headers...)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	return r
}

// must sends a request and requires the status.
func (c *client) must(status int, method, path string, body any, headers ...string) response {
	c.t.Helper()
	r := c.do(method, path, body, headers...)
	if r.Status != status {
		c.t.Fatalf("%s %s: status %d, want %d: %s", method, path, r.Status, status, r.Body)
	}
	return r
}

// backend is one store configuration the end-to-end tests run against.
type backend struct {
	name string
	// options returns serve options on fresh storage.
	options func(t *testing.T) serveOptions
}

func backends() []backend {
	return []backend{
		{"embedded", func(t *testing.T) serveOptions {
			return serveOptions{DataDir: t.TempDir(), Token: testToken}
		}},
		{"postgres", func(t *testing.T) serveOptions {
			return serveOptions{DataDir: t.TempDir(), DatabaseURL: pgtest.NewDatabase(t), Token: testToken}
		}},
	}
}

const testToken = "e2e-bootstrap-token-0123456789abcdef"
