package tests

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// BenchmarkRevokeToDenied measures, against the real binaries, how long
// a revoked Gatehouse token keeps being allowed: gatehouse serve
// (embedded store) with its in-process authorizer, and a separate
// gatehouse authorizer following it (long poll), both asked over gRPC
// ext_authz Check. Each iteration gets a client_credentials token of
// the tenant's server, waits until both authorizers allow it (not
// timed), then revokes it (POST /oauth2/revoke) and polls each
// authorizer every 2 ms until it denies the token (UNAUTHENTICATED). The
// latencies, from sending the revocation to the first denial, are
// reported as p50/p99/max per authorizer (ms). Run with a fixed count:
//
//	go test -run '^$' -bench RevokeToDenied -benchtime 100x ./tests
//
// The helpers of the end-to-end tests take *testing.T; this benchmark
// starts its processes with its own (benchProcess).
func BenchmarkRevokeToDenied(b *testing.B) {
	cp := startBenchProcess(b, nil, "serve", "--http-addr", "127.0.0.1:0", "--data-dir", b.TempDir(),
		"--xds-addr", "127.0.0.1:0", "--authz-addr", "127.0.0.1:0")
	base := "http://" + cp.waitLog(b, "admin API listening", "addr")
	admin := func(status int, method, path string, body any) map[string]any {
		b.Helper()
		return benchJSON(b, status, method, base+path, body, "Bearer "+testToken)
	}
	admin(201, "POST", "/api/system/tenants", map[string]any{"id": "acme", "name": "Acme"})
	admin(201, "POST", "/api/admin/acme/servers", map[string]any{"id": "shop", "name": "shop", "key_type": "ecdsa", "key_activation_delay": "0s"})
	admin(201, "POST", "/api/admin/acme/scopes", map[string]any{"id": "pets-read", "name": "pets:read", "server_id": "shop"})
	machine := admin(201, "POST", "/api/admin/acme/clients", map[string]any{"client_id": "machine", "authorization_server_id": "shop",
		"grant_types": []string{"client_credentials"}, "scopes": []string{"pets:read"}})
	secret := machine["client_secret"].(string)
	admin(201, "POST", "/api/admin/acme/policies", map[string]any{"id": "readers", "policy_name": "readers",
		"validators": []any{map[string]any{"name": "scope", "conf": map[string]any{"scope": "pets:read"}}}})
	admin(201, "POST", "/api/admin/acme/services", map[string]any{"id": "pets", "name": "pets", "url": "http://127.0.0.1:1"})
	admin(201, "POST", "/api/admin/acme/apis", map[string]any{"id": "get-pet", "service_id": "pets", "method": "GET", "path": "/pets/{id}", "policy_id": "readers"})
	gw := admin(201, "POST", "/api/admin/acme/gateways", map[string]any{"id": "edge", "name": "edge", "policy_timeout_ms": 1000})
	key := admin(200, "GET", "/api/admin/acme/gateways/edge/keys", nil)["keys"].([]any)[0].(map[string]any)
	keyFile := filepath.Join(b.TempDir(), "bundle-key.pem")
	if err := os.WriteFile(keyFile, []byte(key["public_key_pem"].(string)), 0o600); err != nil {
		b.Fatal(err)
	}
	authz := startBenchProcess(b, []string{"GATEHOUSE_GATEWAY_CREDENTIAL=" + gw["credential"].(map[string]any)["token"].(string)},
		"authorizer", "--control-plane-url", base, "--tenant", "acme", "--gateway", "edge", "--key-id", key["kid"].(string),
		"--public-key-file", keyFile, "--cache-dir", b.TempDir(), "--authz-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--long-poll", "20s")
	authorizers := []struct {
		name string
		c    authv3.AuthorizationClient
		ext  map[string]string
	}{
		{"serve", benchAuthzClient(b, cp.waitLog(b, "ext_authz listening", "addr")), map[string]string{"tenant": "acme", "gateway": "edge"}},
		{"authorizer", benchAuthzClient(b, authz.waitLog(b, "ext_authz listening", "addr")), nil},
	}
	issuer := base + "/acme/shop"
	check := func(i int, bearer string) code.Code {
		a := authorizers[i]
		req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{ContextExtensions: a.ext,
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Method: "GET", Path: "/pets/1", Host: "pets.example.com", Headers: map[string]string{"authorization": "Bearer " + bearer}}}}}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		res, err := a.c.Check(ctx, req)
		if err != nil {
			b.Errorf("check at %s: %v", a.name, err)
			return code.Code_UNKNOWN
		}
		return code.Code(res.Status.Code)
	}
	// waitFor polls authorizer i every 2 ms until it answers want for
	// bearer, for at most limit; it returns when it did (zero: never).
	waitFor := func(i int, bearer string, want code.Code, limit time.Duration) time.Time {
		deadline := time.Now().Add(limit)
		for {
			got := check(i, bearer)
			now := time.Now()
			if got == want {
				return now
			}
			if got == code.Code_UNKNOWN || now.After(deadline) {
				return time.Time{}
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	took := make([][]time.Duration, len(authorizers))
	iteration := func(record bool) {
		b.StopTimer()
		st, tok := benchForm(b, issuer+"/oauth2/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"pets:read"}}, "machine", secret)
		if st != 200 || tok["access_token"] == nil {
			b.Fatalf("client_credentials: %d %v", st, tok["error"])
		}
		bearer := tok["access_token"].(string)
		for i, a := range authorizers {
			if waitFor(i, bearer, code.Code_OK, 30*time.Second).IsZero() {
				b.Fatalf("%s did not allow a fresh token", a.name)
			}
		}
		b.StartTimer()
		start := time.Now()
		if st, body := benchForm(b, issuer+"/oauth2/revoke", url.Values{"token": {bearer}}, "machine", secret); st != 200 {
			b.Fatalf("revoke: %d %v", st, body["error"])
		}
		var wg sync.WaitGroup
		denied := make([]time.Time, len(authorizers))
		for i := range authorizers {
			wg.Add(1)
			go func() { defer wg.Done(); denied[i] = waitFor(i, bearer, code.Code_UNAUTHENTICATED, 30*time.Second) }()
		}
		wg.Wait()
		for i, a := range authorizers {
			if denied[i].IsZero() {
				b.Fatalf("%s still allows a token revoked 30 s ago", a.name)
			}
			if record {
				took[i] = append(took[i], denied[i].Sub(start))
			}
		}
	}
	iteration(false) // warm-up: the server's first key, both bundles with a revocation
	b.ResetTimer()
	for range b.N {
		iteration(true)
	}
	b.StopTimer()
	for i, a := range authorizers {
		d := took[i]
		slices.Sort(d)
		ms := func(q float64) float64 {
			return float64(d[min(len(d)-1, int(q*float64(len(d))))]) / float64(time.Millisecond)
		}
		b.ReportMetric(ms(0.5), a.name+"-p50-ms")
		b.ReportMetric(ms(0.99), a.name+"-p99-ms")
		b.ReportMetric(float64(d[len(d)-1])/float64(time.Millisecond), a.name+"-max-ms")
	}
}

// benchProcess is a gatehouse process of a benchmark.
type benchProcess struct {
	cmd    *exec.Cmd
	stderr *lockedBuffer
	done   chan struct{}
}

// startBenchProcess runs gatehouse with args (and GATEHOUSE_ADMIN_TOKEN,
// env), killed when the benchmark ends.
func startBenchProcess(b *testing.B, env []string, args ...string) *benchProcess {
	b.Helper()
	cmd := exec.Command(gatehouseBin, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "GATEHOUSE_ADMIN_TOKEN=" + testToken}, env...)
	p := &benchProcess{cmd: cmd, stderr: &lockedBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = io.Discard, p.stderr
	if err := cmd.Start(); err != nil {
		b.Fatalf("start gatehouse %s: %v", args[0], err)
	}
	go func() { _ = cmd.Wait(); close(p.done) }()
	b.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
		if b.Failed() {
			b.Logf("gatehouse %s stderr (tail):\n%s", args[0], tail(p.stderr.String(), 4000))
		}
	})
	return p
}

// waitLog waits for a JSON log line with msg and returns its field.
func (p *benchProcess) waitLog(b *testing.B, msg, field string) string {
	b.Helper()
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
			b.Fatalf("gatehouse exited before logging %q:\n%s", msg, tail(p.stderr.String(), 4000))
		case <-time.After(50 * time.Millisecond):
		}
	}
	b.Fatalf("gatehouse did not log %q in time", msg)
	return ""
}

// benchJSON sends a JSON request and requires the status.
func benchJSON(b *testing.B, status int, method, endpoint string, body any, authorization string) map[string]any {
	b.Helper()
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			b.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, endpoint, rd)
	if err != nil {
		b.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", authorization)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatalf("%s %s: %v", method, endpoint, err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	if res.StatusCode != status {
		b.Fatalf("%s %s: %d, want %d: %.300s", method, endpoint, res.StatusCode, status, raw)
	}
	out := map[string]any{}
	if len(raw) > 0 && json.Unmarshal(raw, &out) != nil {
		b.Fatalf("%s %s: not JSON: %.300s", method, endpoint, raw)
	}
	return out
}

// benchForm posts a form with basic client authentication and decodes
// the JSON answer.
func benchForm(b *testing.B, endpoint string, form url.Values, user, pass string) (int, map[string]any) {
	b.Helper()
	req, err := http.NewRequest(http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(user), url.QueryEscape(pass))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatalf("POST %s: %v", endpoint, err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	out := map[string]any{}
	if len(raw) > 0 && json.Unmarshal(raw, &out) != nil {
		b.Fatalf("POST %s: %d, not JSON: %.300s", endpoint, res.StatusCode, raw)
	}
	return res.StatusCode, out
}

func benchAuthzClient(b *testing.B, addr string) authv3.AuthorizationClient {
	b.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	return authv3.NewAuthorizationClient(conn)
}
