package tests

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/testkit"
)

var (
	opaOnce sync.Once
	opaBin  string
	opaErr  error
)

// stockOPA builds the opa CLI from the module Gatehouse depends on (go.mod
// has a tool directive for it), once per test binary.
func stockOPA(t *testing.T) string {
	t.Helper()
	opaOnce.Do(func() {
		dir, err := os.MkdirTemp("", "gatehouse-opa")
		if err != nil {
			opaErr = err
			return
		}
		opaBin = filepath.Join(dir, "opa")
		out, err := exec.Command("go", "build", "-o", opaBin, "github.com/open-policy-agent/opa").CombinedOutput()
		if err != nil {
			opaErr = fmt.Errorf("build opa: %v\n%s", err, out)
		}
	})
	if opaErr != nil {
		t.Fatal(opaErr)
	}
	return opaBin
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// opaProcess is a running `opa run --server`.
type opaProcess struct {
	*process
	URL string
}

func startOPA(t *testing.T, config string) *opaProcess {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	cmd := exec.Command(stockOPA(t), "run", "--server", "--addr", addr, "--log-level", "debug", "-c", cfg)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}
	op := &process{t: t, cmd: cmd, stdout: &lockedBuffer{}, stderr: &lockedBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = op.stdout, op.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = cmd.Wait(); close(op.done) }()
	t.Cleanup(func() {
		op.kill()
		if t.Failed() {
			t.Logf("opa log (tail):\n%s", tail(op.stdout.String()+op.stderr.String(), 6000))
		}
	})
	return &opaProcess{process: op, URL: "http://" + addr}
}

// decide asks OPA for data.gatehouse.authz.decision.
func (o *opaProcess) decide(t *testing.T, input map[string]any) map[string]any {
	t.Helper()
	d, err := o.tryDecide(input)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// tryDecide is decide reporting a transport error instead of failing.
func (o *opaProcess) tryDecide(input map[string]any) (map[string]any, error) {
	body, _ := json.Marshal(map[string]any{"input": input})
	res, err := http.Post(o.URL+"/v1/data/gatehouse/authz/decision", "application/json", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	var out struct {
		Result map[string]any `json:"result"`
	}
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
		return nil, err
	}
	return out.Result, nil
}

func (o *opaProcess) healthy() bool {
	res, err := http.Get(o.URL + "/health?bundles")
	if err != nil {
		return false
	}
	res.Body.Close()
	return res.StatusCode == 200
}

// healthyNow is a condition: OPA says its bundles are active.
func (o *opaProcess) healthyNow() error {
	res, err := http.Get(o.URL + "/health?bundles")
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	return testkit.Check(res.StatusCode == 200, "/health?bundles: %d %s", res.StatusCode, bytes.TrimSpace(body))
}

func envoyInput(method, path string, headers map[string]any) map[string]any {
	return map[string]any{"attributes": map[string]any{"request": map[string]any{"http": map[string]any{
		"method": method, "path": path, "host": "pets.example.com", "headers": headers}}}}
}

const interopPolicy = `package policy

default allow := false

allow if input.attributes.request.http.headers["x-api-key"] == "%s"

reason := "bad or missing key" if not allow

http_status := 401 if not allow
`

// interopDelegate uses the policy owner-key by its id.
const interopDelegate = `package policy

import data.gatehouse.policies["owner-key"] as owner_key

default allow := false

allow if owner_key.allow

http_status := owner_key.http_status if not allow
`

// interopDelegateTests are interopDelegate's tests (run when it is saved,
// never part of the bundle).
const interopDelegateTests = `package policy

test_owner_key if allow with input as {"attributes": {"request": {"http": {"headers": {"x-api-key": "o1"}}}}}

test_status if http_status == 401 with input as {}
`

func opaConfig(serviceURL, token, kid, pem string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "services:\n  gatehouse:\n    url: %s\n    credentials:\n      bearer:\n        token: %q\n", serviceURL, token)
	fmt.Fprintf(&b, "keys:\n  %s:\n    algorithm: RS256\n    key: |\n", kid)
	for _, line := range strings.Split(strings.TrimSpace(pem), "\n") {
		fmt.Fprintf(&b, "      %s\n", line)
	}
	fmt.Fprintf(&b, `bundles:
  gatehouse:
    service: gatehouse
    resource: bundle
    polling:
      min_delay_seconds: 60
      max_delay_seconds: 120
      long_polling_timeout_seconds: 30
    signing:
      keyid: %s
status:
  service: gatehouse
decision_logs:
  service: gatehouse
  reporting:
    min_delay_seconds: 1
    max_delay_seconds: 2
`, kid)
	return b.String()
}

// TestStockOPAEnforcesGatehouseBundles points a stock `opa run --server` at
// a running gatehouse serve: OPA verifies and activates the bundle, decides
// as configured, follows a policy change within 2 s by long polling, refuses
// a tampered bundle, and reports status and decision logs back.
func TestStockOPAEnforcesGatehouseBundles(t *testing.T) {
	stockOPA(t)
	gh := startServe(t, serveOptions{DataDir: t.TempDir(), Token: testToken})
	c := newClient(t, gh.URL, testToken)
	c.must(201, "POST", "/api/system/tenants", map[string]any{"id": "acme", "name": "Acme"})
	c.must(201, "POST", "/api/admin/acme/policies", map[string]any{"id": "keyed", "policy_name": "keyed", "definition": fmt.Sprintf(interopPolicy, "k1")})
	// A policy that uses another by its id (hashed into its package name).
	c.must(201, "POST", "/api/admin/acme/policies", map[string]any{"id": "owner-key", "policy_name": "owner-key", "definition": fmt.Sprintf(interopPolicy, "o1")})
	c.must(201, "POST", "/api/admin/acme/policies", map[string]any{"id": "owners", "policy_name": "owners", "definition": interopDelegate,
		"tests": interopDelegateTests})
	c.must(201, "POST", "/api/admin/acme/services", map[string]any{"id": "pets", "name": "pets", "url": "http://127.0.0.1:9"})
	c.must(201, "POST", "/api/admin/acme/apis", map[string]any{"id": "get-pet", "service_id": "pets", "method": "GET", "path": "/pets/{id}", "policy_id": "keyed"})
	c.must(201, "POST", "/api/admin/acme/apis", map[string]any{"id": "health", "service_id": "pets", "method": "GET", "path": "/healthz", "public": true})
	c.must(201, "POST", "/api/admin/acme/apis", map[string]any{"id": "get-owner", "service_id": "pets", "method": "GET", "path": "/owners/{id}", "policy_id": "owners"})
	gw := c.must(201, "POST", "/api/admin/acme/gateways", map[string]any{"id": "edge", "name": "edge"}).JSON(t)
	token := gw["credential"].(map[string]any)["token"].(string)
	key := c.must(200, "GET", "/api/admin/acme/gateways/edge/keys", nil).JSON(t)["keys"].([]any)[0].(map[string]any)
	kid, pem := key["kid"].(string), key["public_key_pem"].(string)

	serviceURL := gh.URL + "/api/system/acme/gateways/edge/opa"
	opa := startOPA(t, opaConfig(serviceURL, token, kid, pem))
	if !t.Run("a stock OPA activates the Gatehouse bundle", func(t *testing.T) {
		testkit.Eventually(t, 60*time.Second, opa.healthyNow, "OPA to activate the Gatehouse bundle")
	}) {
		return
	}

	t.Run("it decides", func(t *testing.T) {
		cases := []struct {
			name    string
			in      map[string]any
			allowed bool
			status  float64
		}{
			{"key accepted", envoyInput("GET", "/pets/1", map[string]any{"x-api-key": "k1"}), true, 200},
			{"wrong key", envoyInput("GET", "/pets/1", map[string]any{"x-api-key": "nope"}), false, 401},
			{"no key", envoyInput("GET", "/pets/1?x=1", map[string]any{}), false, 401},
			{"public API", envoyInput("GET", "/healthz", map[string]any{}), true, 200},
			{"method not routed", envoyInput("POST", "/pets/1", map[string]any{"x-api-key": "k1"}), false, 404},
			{"unknown path", envoyInput("GET", "/cats", map[string]any{"x-api-key": "k1"}), false, 404},
			{"a policy by id: key accepted", envoyInput("GET", "/owners/1", map[string]any{"x-api-key": "o1"}), true, 200},
			{"a policy by id: wrong key", envoyInput("GET", "/owners/1", map[string]any{"x-api-key": "k1"}), false, 401},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				d := opa.decide(t, tc.in)
				if d["allowed"] != tc.allowed || d["http_status"] != tc.status {
					t.Errorf("%s: %v", tc.name, d)
				}
			})
		}
	})

	if !t.Run("a policy change is active in OPA within 2 s (long polling)", func(t *testing.T) {
		c.on(t).must(200, "PUT", "/api/admin/acme/policies/keyed", map[string]any{"policy_name": "keyed", "definition": fmt.Sprintf(interopPolicy, "k2")})
		took := testkit.Eventually(t, 2*time.Second, func() error {
			d := opa.decide(t, envoyInput("GET", "/pets/1", map[string]any{"x-api-key": "k2"}))
			return testkit.Check(d["allowed"] == true, "decision %v", d)
		}, "OPA to apply the policy change")
		t.Logf("policy change active in OPA after %v", took)
		if opa.decide(t, envoyInput("GET", "/pets/1", map[string]any{"x-api-key": "k1"}))["allowed"] != false {
			t.Fatal("the old key still works after the change")
		}
	}) {
		return
	}

	t.Run("OPA's status reports and decision logs reach the control plane", func(t *testing.T) {
		c := c.on(t)
		bundleRev := c.must(200, "GET", "/api/admin/acme/gateways/edge", nil).JSON(t)["status"].(map[string]any)["bundle"].(map[string]any)["revision"]
		testkit.Eventually(t, 15*time.Second, func() error {
			st := c.must(200, "GET", "/api/admin/acme/gateways/edge", nil).JSON(t)["status"].(map[string]any)["opa"].(map[string]any)
			return testkit.Check(st["active_revision"] == fmt.Sprint(bundleRev), "OPA status %v", st)
		}, "OPA's status report of revision %v", bundleRev)
		testkit.Eventually(t, 15*time.Second, func() error {
			ds := c.must(200, "GET", "/api/admin/acme/gateways/edge/decisions", nil).JSON(t)["decisions"].([]any)
			for _, d := range ds {
				ev := d.(map[string]any)["event"].(map[string]any)
				if ev["path"] == "gatehouse/authz/decision" && ev["decision_id"] != nil {
					return nil
				}
			}
			return fmt.Errorf("%d decisions, none of OPA's", len(ds))
		}, "OPA's decision logs")
	})

	// The real bundle with data.json altered, served to another OPA with
	// the same key.
	t.Run("a tampered bundle is refused", func(t *testing.T) {
		real := c.on(t).must(200, "GET", "/api/system/acme/gateways/edge/opa/bundle", nil, "Authorization", "Bearer "+token)
		tampered := tamper(t, real.Body)
		fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(r.URL.Path, "/bundle") {
				w.Header().Set("ETag", `"666"`)
				w.Header().Set("Content-Type", "application/gzip")
				w.Write(tampered)
				return
			}
			io.Copy(io.Discard, r.Body)
			w.WriteHeader(http.StatusNoContent)
		}))
		defer fake.Close()
		evil := startOPA(t, opaConfig(fake.URL, token, kid, pem))
		testkit.Eventually(t, 30*time.Second, func() error {
			out := evil.stdout.String() + evil.stderr.String()
			return testkit.Check(strings.Contains(out, "digest mismatch"), "OPA's log (tail): %s", tail(out, 2000))
		}, "the tampered bundle to be refused")
		if evil.healthy() {
			t.Fatal("OPA activated a tampered bundle")
		}
		// OPA either does not serve at all (it waits for a bundle) or has no
		// decision: never one from the tampered bundle.
		if d, err := evil.tryDecide(envoyInput("GET", "/healthz", map[string]any{})); err == nil && d != nil {
			t.Fatalf("OPA decided with a tampered bundle: %v", d)
		}
	})
}

// tamper rewrites data.json inside a bundle (the signature no longer
// matches).
func tamper(t *testing.T, raw []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	tw := tar.NewWriter(zw)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(tr)
		if strings.TrimPrefix(h.Name, "/") == "data.json" {
			body = bytes.Replace(body, []byte(`"policy_id":"keyed"`), []byte(`"policy_id":""`), 1)
			body = bytes.Replace(body, []byte(`"public":false`), []byte(`"public":true`), -1)
		}
		h.Size = int64(len(body))
		tw.WriteHeader(h)
		tw.Write(body)
	}
	tw.Close()
	zw.Close()
	return out.Bytes()
}
