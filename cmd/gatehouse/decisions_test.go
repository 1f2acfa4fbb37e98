package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/bundles"
	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	"github.com/gatehouse-dev/gatehouse/store"
)

// tailEvent is a decision log event as the authorizer writes it.
func tailEvent(id string, allowed bool, status int, path, api, subject, reason string) json.RawMessage {
	js := func(s string) string {
		b, _ := json.Marshal(s)
		return string(b)
	}
	tok := `{"present":false,"valid":false}`
	if subject != "" {
		tok = `{"present":true,"valid":true,"subject":` + js(subject) + `}`
	}
	extra := ""
	if status == 401 {
		extra = `,"token_reason":"expired"`
	}
	// The timestamp's second is the id's last digit.
	return json.RawMessage(fmt.Sprintf(`{"decision_id":%s,"input":{"attributes":{"request":{"http":{"method":"GET","path":%s}}},"gatehouse":{"token":%s}},`+
		`"result":{"allowed":%t,"http_status":%d,"api_id":%s,"policy_id":"keyed","reason":%s,"dry_run":false,"policy_allowed":%t%s},"timestamp":"2026-12-01T10:00:0%s.25Z"}`,
		js(id), js(path), tok, allowed, status, js(api), js(reason), allowed, extra, id[len(id)-1:]))
}

// syncBuffer is an output a command writes while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func tailArgs(cp *testControlPlane, extra ...string) []string {
	return append([]string{"decisions", "tail", "--url", cp.URL, "--token", testToken, "--tenant", "acme", "--gateway", "edge"}, extra...)
}

func TestDecisionsTail(t *testing.T) {
	cp := startControlPlane(t)
	cp.seedTenant("acme")
	ctx := context.Background()
	if err := cp.store.AppendLog(ctx, bundles.DecisionLog("acme", "edge"), []json.RawMessage{
		tailEvent("d1", true, 200, "/pets/1", "get-pet", "alice", "allowed"),
		tailEvent("d2", false, 403, "/pets/2", "get-pet", "bob", "no key"),
		tailEvent("d3", false, 401, "/pets/3", "get-pet", "", "invalid bearer token"),
		tailEvent("d4", false, 404, "/nope\x1b[31m", "", "", "no API matches"),
		tailEvent("d5", true, 200, "/health", "health", "", "public API"),
	}); err != nil {
		t.Fatal(err)
	}
	out, _, err := runCLI(t, tailArgs(cp, "-n", "3")...)
	if err != nil {
		t.Fatal(err)
	}
	want := "2026-12-01T10:00:03.250Z  denied   401  GET /pets/3  api=get-pet  policy=keyed  subject=-  reason=\"invalid bearer token\"  token=expired\n" +
		"2026-12-01T10:00:04.250Z  denied   404  GET \"/nope\\x1b[31m\"  api=-  policy=keyed  subject=-  reason=\"no API matches\"\n" +
		"2026-12-01T10:00:05.250Z  allowed  200  GET /health  api=health  policy=keyed  subject=-  reason=\"public API\"\n"
	if out != want {
		t.Fatalf("tail -n 3:\n%s\nwant:\n%s", out, want)
	}
	if strings.ContainsRune(out, 0x1b) {
		t.Fatal("a path's escape sequence reached the terminal")
	}
	out, _, err = runCLI(t, tailArgs(cp, "--denied", "--api-id", "get-pet")...)
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, "tail --denied --api-id get-pet", out, "GET /pets/2  api=get-pet  policy=keyed  subject=bob  reason=\"no key\"\n", "GET /pets/3")
	if n := strings.Count(out, "\n"); n != 2 {
		t.Fatalf("tail --denied --api-id get-pet: %d lines:\n%s", n, out)
	}
	out, _, err = runCLI(t, tailArgs(cp, "--json", "-n", "1", "--subject", "alice")...)
	if err != nil {
		t.Fatal(err)
	}
	var line struct {
		ID    string `json:"id"`
		Event struct {
			DecisionID string `json:"decision_id"`
		} `json:"event"`
	}
	if err := json.Unmarshal([]byte(out), &line); err != nil || line.Event.DecisionID != "d1" || line.ID == "" {
		t.Fatalf("tail --json: %q (%v)", out, err)
	}
}

// --follow prints every new decision once, in order, while writers
// append concurrently, then stops when its context ends.
func TestDecisionsTailFollow(t *testing.T) {
	cp := startControlPlane(t)
	cp.seedTenant("acme")
	stream := bundles.DecisionLog("acme", "edge")
	ctx := context.Background()
	if err := cp.store.AppendLog(ctx, stream, []json.RawMessage{tailEvent("old-1", false, 403, "/pets/1", "get-pet", "bob", "no key"),
		tailEvent("old-2", false, 403, "/pets/2", "get-pet", "bob", "no key")}); err != nil {
		t.Fatal(err)
	}
	var out, errOut syncBuffer
	root := newRootCommand(&out, &errOut)
	root.SetArgs(tailArgs(cp, "--follow", "--denied", "-n", "1", "--interval", "100ms", "--json"))
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(runCtx) }()
	var once sync.Once
	var runErr error
	end := func() error { // stops the tail and waits for it
		once.Do(func() { stop(); runErr = <-done })
		return runErr
	}
	defer end()
	testkit.Eventually(t, 10*time.Second, func() error {
		return testkit.Check(strings.Contains(out.String(), `"old-2"`), "printed %q", out.String())
	}, "the newest denial")

	// Writers append while the tail follows: denials (which it prints) and
	// allowed decisions (which it does not).
	const writers, batches, per = 3, 8, 6
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range batches {
				batch := make([]json.RawMessage, per)
				for i := range batch {
					id := fmt.Sprintf("w%d-b%d-e%d-0", w, b, i)
					allowed, status := i%2 == 0, 403
					if allowed {
						status = 200
					}
					batch[i] = tailEvent(id, allowed, status, "/pets/"+id, "get-pet", "bob", "r")
				}
				if err := cp.store.AppendLog(ctx, stream, batch); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	denials := writers * batches * per / 2
	testkit.Eventually(t, 20*time.Second, func() error {
		n := strings.Count(out.String(), "\n")
		return testkit.Check(n == 1+denials, "%d lines printed", n)
	}, "every new denial")
	if err := end(); err != nil {
		t.Fatalf("tail --follow ended with %v", err)
	}

	var printed []string
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var d struct {
			ID    string `json:"id"`
			Event struct {
				DecisionID string `json:"decision_id"`
				Result     struct {
					Allowed bool `json:"allowed"`
				} `json:"result"`
			} `json:"event"`
		}
		if err := json.Unmarshal([]byte(l), &d); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		if d.Event.Result.Allowed {
			t.Fatalf("an allowed decision was printed under --denied: %s", l)
		}
		printed = append(printed, d.ID)
	}
	// What the store holds, oldest first: every denial after old-1, once.
	denied := false
	p, err := cp.store.ListLog(ctx, store.LogQuery{Stream: stream, Filter: store.LogFilter{Allowed: &denied}})
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for i := len(p.Items) - 2; i >= 0; i-- { // without old-1
		want = append(want, p.Items[i].ID)
	}
	if !slices.Equal(printed, want) {
		t.Fatalf("printed %d decisions, want the %d denials from old-2 on, in order, once each:\n%v\n%v", len(printed), len(want), printed, want)
	}
	if errOut.String() != "" {
		t.Fatalf("standard error: %s", errOut.String())
	}
}

func TestDecisionsTailRefusals(t *testing.T) {
	cp := startControlPlane(t)
	cp.seedTenant("acme")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"decisions", "tail", "--url", cp.URL, "--token", testToken, "--gateway", "edge"}, "--tenant is required"},
		{[]string{"decisions", "tail", "--url", cp.URL, "--token", testToken, "--tenant", "acme"}, "--gateway is required"},
		{tailArgs(cp, "--gateway", "Not/An/Id"), "--gateway"},
		{tailArgs(cp, "-n", "5000"), "--lines"},
		{tailArgs(cp, "--follow", "--interval", "1ms"), "--interval"},
		{tailArgs(cp, "--denied", "--allowed"), "exclude"},
		{tailArgs(cp, "--gateway", "nope"), "404"},
		{tailArgs(cp, "--http-status", "42"), "http_status"},
		{[]string{"decisions", "tail", "--url", cp.URL, "--token", "wrong-token-0123456789", "--tenant", "acme", "--gateway", "edge", "--follow"}, "401"},
	} {
		if _, _, err := runCLI(t, c.args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want an error saying %q", c.args, err, c.want)
		}
	}
}

// A control plane that fails for a while (503) is retried: the tail says
// so on standard error, once, and then prints what it missed.
func TestDecisionsTailFollowRetries(t *testing.T) {
	cp := startControlPlane(t)
	cp.seedTenant("acme")
	target, err := url.Parse(cp.URL)
	if err != nil {
		t.Fatal(err)
	}
	var failing atomic.Bool
	var failed, served atomic.Int32
	proxy := httputil.NewSingleHostReverseProxy(target)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if failing.Load() {
			failed.Add(1)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"status_code":503,"error":"the store is unavailable","error_code":"store_unavailable","details":{}}`))
			return
		}
		proxy.ServeHTTP(w, r)
		served.Add(1)
	}))
	defer front.Close()
	stream := bundles.DecisionLog("acme", "edge")
	ctx := context.Background()
	var out, errOut syncBuffer
	root := newRootCommand(&out, &errOut)
	root.SetArgs([]string{"decisions", "tail", "--url", front.URL, "--token", testToken, "--tenant", "acme", "--gateway", "edge",
		"--follow", "--interval", "100ms"})
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(runCtx) }()
	defer func() { stop(); <-done }()
	// The first listing is answered (a failure there ends the command).
	testkit.Eventually(t, 10*time.Second, func() error { return testkit.Check(served.Load() >= 1, "no answer yet") }, "the first listing")
	failing.Store(true)
	testkit.Eventually(t, 10*time.Second, func() error {
		return testkit.Check(failed.Load() >= 3 && strings.Contains(errOut.String(), "retrying"), "%d failed polls, stderr %q", failed.Load(), errOut.String())
	}, "polls failing")
	if err := cp.store.AppendLog(ctx, stream, []json.RawMessage{tailEvent("d1", false, 403, "/pets/1", "get-pet", "bob", "no key")}); err != nil {
		t.Fatal(err)
	}
	failing.Store(false)
	testkit.Eventually(t, 10*time.Second, func() error {
		return testkit.Check(strings.Contains(out.String(), "GET /pets/1") && strings.Contains(errOut.String(), "answers again"),
			"stdout %q, stderr %q", out.String(), errOut.String())
	}, "the decision made while the control plane failed")
	if n := strings.Count(errOut.String(), "retrying"); n != 1 {
		t.Fatalf("the failure was reported %d times:\n%s", n, errOut.String())
	}
}
