package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/code"

	"github.com/gatehouse-dev/gatehouse/internal/testkit"
)

// The browser test of the web console (issue 13, point 8): headless
// Chromium driven with chromedp through the console of a real `gatehouse
// serve`, as a policy author would use it.

// findChromium is the browser to drive: $GATEHOUSE_TEST_CHROMIUM, else
// chromium (Debian's package), chromium-browser or google-chrome on PATH.
// Without one the test is skipped loudly, or fails when
// GATEHOUSE_TEST_REQUIRE_CHROMIUM=1 (CI sets it).
func findChromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("GATEHOUSE_TEST_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	msg := "no Chromium found (chromium, chromium-browser, google-chrome on PATH, or GATEHOUSE_TEST_CHROMIUM): " +
		"THE CONSOLE'S BROWSER TEST DID NOT RUN (apt-get install chromium)"
	if os.Getenv("GATEHOUSE_TEST_REQUIRE_CHROMIUM") == "1" {
		t.Fatal(msg + "; GATEHOUSE_TEST_REQUIRE_CHROMIUM=1 requires it")
	}
	fmt.Fprintln(os.Stderr, "!!! "+msg)
	t.Skip(msg)
	return ""
}

// consoleDriver drives one browser tab and keeps its screenshots.
type consoleDriver struct {
	t     *testing.T
	ctx   context.Context
	dir   string // every step's screenshot
	docs  string // GATEHOUSE_CONSOLE_SCREENSHOTS_DIR: the ones the docs use
	steps int
}

func newConsoleDriver(t *testing.T, chromium string) *consoleDriver {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
		chromedp.NoSandbox, // the tests run as root in CI
		chromedp.DisableGPU,
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-features", "Translate,OptimizationHints,MediaRouter,AutofillServerCommunication"),
		chromedp.Flag("no-pings", true),
		// Loopback only: no name resolves (the test uses 127.0.0.1).
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancelCtx(); cancelAlloc() })
	// Start the browser now, so its start-up is not counted in a step.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start %s: %v", chromium, err)
	}
	d := &consoleDriver{t: t, ctx: ctx, dir: t.TempDir(), docs: os.Getenv("GATEHOUSE_CONSOLE_SCREENSHOTS_DIR")}
	// The temp dir goes with the test: a failed test keeps its screenshots.
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		kept, err := os.MkdirTemp("", "gatehouse-console-screenshots-")
		if err != nil {
			return
		}
		files, _ := filepath.Glob(filepath.Join(d.dir, "*.png"))
		for _, f := range files {
			if b, err := os.ReadFile(f); err == nil {
				_ = os.WriteFile(filepath.Join(kept, filepath.Base(f)), b, 0o644)
			}
		}
		t.Logf("the screenshots of the failed test are kept in %s", kept)
	})
	if d.docs != "" {
		if err := os.MkdirAll(d.docs, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

// step runs actions within 20 s, then takes the step's screenshot. With
// GATEHOUSE_CONSOLE_SCREENSHOTS_DIR set, doc ("name:selector") also
// writes the element of the selector as console-<name>.png there (the
// images of the docs). A failing step is fatal, with a screenshot of the
// page as it was.
func (d *consoleDriver) step(name, doc string, actions ...chromedp.Action[chromedp.Void]) {
	d.t.Helper()
	d.steps++
	ctx, cancel := context.WithTimeout(d.ctx, 20*time.Second)
	defer cancel()
	err := chromedp.Do(ctx, actions...)
	shotCtx, cancelShot := context.WithTimeout(d.ctx, 10*time.Second)
	defer cancelShot()
	png, shotErr := chromedp.Run(shotCtx, chromedp.FullScreenshot(100))
	file := filepath.Join(d.dir, fmt.Sprintf("%02d-%s.png", d.steps, strings.ReplaceAll(name, " ", "-")))
	if shotErr == nil {
		if werr := os.WriteFile(file, png, 0o644); werr != nil {
			d.t.Errorf("screenshot %s: %v", file, werr)
		} else {
			d.t.Logf("screenshot of step %q: %s", name, file)
		}
		if docName, sel, ok := strings.Cut(doc, ":"); ok && d.docs != "" && err == nil {
			// The toast would cover part of the picture.
			derr := chromedp.Do(shotCtx, evalJS(`document.getElementById("toast").classList.remove("shown")`),
				waitJS(`getComputedStyle(document.getElementById("toast")).opacity === "0"`))
			var shot []byte
			if derr == nil {
				shot, derr = chromedp.Run(shotCtx, chromedp.Screenshot(chromedp.CSS(sel)))
			}
			if derr == nil {
				derr = os.WriteFile(filepath.Join(d.docs, "console-"+docName+".png"), shot, 0o644)
			}
			if derr != nil {
				d.t.Errorf("docs screenshot %s: %v", docName, derr)
			}
		}
	}
	if err != nil {
		page, _ := chromedp.Run(shotCtx, chromedp.Evaluate[string](`document.querySelector("main").innerText.slice(0, 3000)`))
		d.t.Fatalf("step %q: %v (screenshot %s)\npage text:\n%s", name, err, file, page)
	}
}

// waitJS waits until a JavaScript expression is truthy in the page.
func waitJS(expr string) chromedp.Action[chromedp.Void] {
	poll := chromedp.Poll[any](expr, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(15*time.Second))
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		if _, err := poll(ctx, t); err != nil {
			return chromedp.Void{}, fmt.Errorf("waiting for %s: %w", expr, err)
		}
		return chromedp.Void{}, nil
	}
}

// pasteInto replaces the text of the CodeMirror editor under sel the way
// a person pasting does: focus, select all, a paste event with the text.
func pasteInto(sel, text string) chromedp.Action[chromedp.Void] {
	js, _ := json.Marshal(text)
	return chromedp.Steps(
		chromedp.Click(chromedp.CSS(sel+" .cm-content")),
		chromedp.KeyEvent("a", chromedp.KeyModifiers(chromedp.ModifierCtrl)),
		evalJS(fmt.Sprintf(`(() => {
			const dt = new DataTransfer();
			dt.setData("text/plain", %s);
			document.querySelector(%q + " .cm-content").dispatchEvent(new ClipboardEvent("paste", {clipboardData: dt, bubbles: true, cancelable: true}));
			return true;
		})()`, js, sel)),
	)
}

// evalJS runs JavaScript for its effect.
func evalJS(expr string) chromedp.Action[chromedp.Void] {
	ev := chromedp.Evaluate[any](expr)
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		_, err := ev(ctx, t)
		return chromedp.Void{}, err
	}
}

// setValue types into a form field (cleared first).
func setValue(sel, value string) chromedp.Action[chromedp.Void] {
	return chromedp.Steps(chromedp.Clear(chromedp.CSS(sel)), chromedp.SendKeys(chromedp.CSS(sel), value))
}

// markedLine is the JavaScript for the 1-based line of the editor under
// sel that carries an error mark (0 when none does).
func markedLine(sel string) string {
	return fmt.Sprintf(`[...document.querySelectorAll(%q + " .cm-content > .cm-line")].findIndex((l) => l.querySelector(".cm-lintRange-error")) + 1`, sel)
}

// clientToken gets a client_credentials token from tenant tid's server.
func clientToken(t *testing.T, base, tid, server, clientID, secret, scope string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/"+tid+"/"+server+"/oauth2/token",
		strings.NewReader(url.Values{"grant_type": {"client_credentials"}, "scope": {scope}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(clientID, secret)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if res.StatusCode != 200 || json.Unmarshal(body, &tok) != nil || tok.AccessToken == "" {
		t.Fatalf("client_credentials for %s: %d %s", clientID, res.StatusCode, body)
	}
	return tok.AccessToken
}

// checkPet asks the in-process authorizer about GET /pets/1 on gateway
// acme/edge with a bearer token.
func checkPet(t *testing.T, ac authv3.AuthorizationClient, token string) code.Code {
	t.Helper()
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		ContextExtensions: map[string]string{"tenant": "acme", "gateway": "edge"},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Path: "/pets/1", Host: "pets.example.com", Headers: map[string]string{"authorization": "Bearer " + token}}}}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := ac.Check(ctx, req)
	if err != nil {
		t.Fatalf("check: %v", err)
	}
	return code.Code(res.Status.Code)
}

const (
	// consolePolicyBroken has a syntax error on line 5 (iff).
	consolePolicyBroken = "package policy\n\ndefault allow := false\n\nallow iff {\n\tinput.gatehouse.token.valid\n}\n"
	consolePolicyV1     = "package policy\n\ndefault allow := false\n\nallow if {\n\tinput.gatehouse.token.valid\n}\n"
	consolePolicyV2     = "package policy\n\n# Readers only: a valid token with the pets:read scope.\ndefault allow := false\n\nallow if {\n\t\"pets:read\" in input.gatehouse.token.scopes\n}\n"
	// consoleTestsWrong's second test (line 9) fails: it expects the
	// writer to be let through.
	consoleTestsWrong = "package policy_test\n\nimport data.policy\n\ntest_reader_allowed if {\n\tpolicy.allow with input as {\"gatehouse\": {\"token\": {\"valid\": true, \"scopes\": [\"pets:read\"]}}}\n}\n\n" +
		"test_writer_denied if {\n\tpolicy.allow with input as {\"gatehouse\": {\"token\": {\"valid\": true, \"scopes\": [\"pets:write\"]}}}\n}\n"
	consoleTests = "package policy_test\n\nimport data.policy\n\ntest_reader_allowed if {\n\tpolicy.allow with input as {\"gatehouse\": {\"token\": {\"valid\": true, \"scopes\": [\"pets:read\"]}}}\n}\n\n" +
		"test_writer_denied if {\n\tnot policy.allow with input as {\"gatehouse\": {\"token\": {\"valid\": true, \"scopes\": [\"pets:write\"]}}}\n}\n"
)

// TestConsoleInABrowser: sign in with the admin credential, see the
// services, write a policy with a syntax error and see it marked on its
// line, fix and save it; then, with traffic logged, edit it: test a
// request the token lets through and one it does not, replay the draft
// against the logged decisions, save it, send traffic through serve's
// in-process authorizer and find the denial in the decision browser; the
// gateway's status. No CSP violation along the way.
func TestConsoleInABrowser(t *testing.T) {
	chromium := findChromium(t)
	start := time.Now()
	p := startServe(t, serveOptions{DataDir: t.TempDir(), Token: testToken})
	c := newClient(t, p.URL, testToken)
	ac := authzClient(t, p.waitLog(t, "ext_authz listening", "addr"))

	// The console's answers carry the strict policy.
	res, err := http.Get(p.URL + "/console/")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if csp := res.Header.Get("Content-Security-Policy"); res.StatusCode != 200 || !strings.Contains(csp, "script-src 'self'") ||
		!strings.Contains(csp, "frame-ancestors 'none'") || res.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("GET /console/: %d, CSP %q", res.StatusCode, csp)
	}

	// A tenant whose default server issues tokens to two machines, one
	// with pets:read, one without; a service and a gateway.
	c.must(201, "POST", "/api/system/tenants", map[string]any{"id": "acme", "name": "Acme"})
	for _, s := range []string{"pets:read", "pets:write"} {
		c.must(201, "POST", "/api/admin/acme/scopes", map[string]any{"name": s, "server_id": "default"})
	}
	tokens := map[string]string{}
	for client, scope := range map[string]string{"reader": "pets:read", "writer": "pets:write"} {
		secret := c.must(201, "POST", "/api/admin/acme/clients", map[string]any{"client_id": client, "authorization_server_id": "default",
			"grant_types": []string{"client_credentials"}, "scopes": []string{scope}}).JSON(t)["client_secret"].(string)
		tokens[client] = clientToken(t, p.URL, "acme", "default", client, secret, scope)
	}
	c.must(201, "POST", "/api/admin/acme/services", map[string]any{"id": "pets", "name": "pets", "url": "http://127.0.0.1:1", "hosts": []string{"pets.example.com"}})
	c.must(201, "POST", "/api/admin/acme/apis", map[string]any{"id": "health", "service_id": "pets", "method": "GET", "path": "/healthz", "public": true})
	c.must(201, "POST", "/api/admin/acme/gateways", map[string]any{"id": "edge", "name": "edge", "policy_timeout_ms": 1000})

	d := newConsoleDriver(t, chromium)
	d.step("the sign-in screen", "login:main",
		chromedp.Navigate(p.URL+"/console/"),
		chromedp.WaitVisible(chromedp.ID("#login-token")),
		chromedp.SendKeys(chromedp.ID("#login-token"), testToken),
	)
	d.step("signed in", "",
		chromedp.SendKeys(chromedp.ID("#login-token"), kb.Enter), // the keyboard submits the form
		chromedp.WaitVisible(chromedp.ID("#nav")),
		waitJS(`document.querySelector("#tenant-select").value === "acme"`),
		chromedp.WaitVisible(chromedp.CSS(`#services-body tr[data-api="health"]`)),
	)

	d.step("new policy with a syntax error", "policy-error:#policy-rego",
		chromedp.Click(chromedp.CSS(`#nav button[data-view="policies"]`)),
		chromedp.Click(chromedp.ID("#policy-new")),
		chromedp.WaitVisible(chromedp.ID("#policy-pane")),
		setValue("#policy-id", "readers"),
		setValue("#policy-name", "readers"),
		pasteInto("#definition-editor", consolePolicyBroken),
		waitJS(`document.querySelector('#definition-problems li[data-line="5"]') !== null`),
		waitJS(markedLine("#definition-editor")+` === 5`),
		chromedp.WaitVisible(chromedp.CSS(`#definition-editor .cm-lint-marker-error`)),
	)

	d.step("fixed and saved", "",
		pasteInto("#definition-editor", consolePolicyV1),
		waitJS(`document.querySelector("#definition-status").dataset.state === "ok" && `+markedLine("#definition-editor")+` === 0`),
		chromedp.Click(chromedp.ID("#policy-save")),
		waitJS(`document.querySelector("#policy-save-result .ok")?.textContent.includes("readers")`),
	)
	if ms, err := chromedp.Run(d.ctx, chromedp.Evaluate[string](`document.querySelector("#definition-status").dataset.ms || ""`)); err == nil {
		t.Logf("the last check of the draft took %s ms, from the browser", ms)
	}
	d.step("the keyboard leaves the editor with Escape then Tab", "",
		chromedp.Click(chromedp.CSS("#definition-editor .cm-content")),
		waitJS(`document.activeElement.closest("#definition-editor") !== null`),
		chromedp.KeyEvent(kb.Escape),
		chromedp.KeyEvent(kb.Tab),
		waitJS(`document.activeElement.closest("#definition-editor") === null && document.activeElement.closest("#policy-pane") !== null`),
	)
	// The API is bound to it; traffic from both machines is allowed and
	// logged.
	c.must(201, "POST", "/api/admin/acme/apis", map[string]any{"id": "get-pet", "service_id": "pets", "method": "GET", "path": "/pets/{id}", "policy_id": "readers"})
	testkit.Eventually(t, 10*time.Second, func() error {
		return testkit.Check(checkPet(t, ac, tokens["writer"]) == code.Code_OK, "the writer is not let through yet")
	}, "the in-process authorizer enforces the first policy")
	if got := checkPet(t, ac, tokens["reader"]); got != code.Code_OK {
		t.Fatalf("the reader: %v", got)
	}
	testkit.Eventually(t, 10*time.Second, func() error {
		n := len(c.must(200, "GET", "/api/admin/acme/gateways/edge/decisions?allowed=true&policy_id=readers", nil).JSON(t)["decisions"].([]any))
		return testkit.Check(n == 2, "%d allowed decisions of readers logged", n)
	}, "the two allowed decisions reach the log")

	d.step("the services show the binding", "services:#view-services",
		chromedp.Click(chromedp.CSS(`#nav button[data-view="services"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#services-body tr[data-api="get-pet"] button[data-policy="readers"]`)),
	)
	d.step("the bound policy opened from its API", "",
		chromedp.Click(chromedp.CSS(`#services-body tr[data-api="get-pet"] button[data-policy="readers"]`)),
		waitJS(`!document.querySelector("#policy-pane").hidden && document.querySelector("#policy-id").value === "readers"`),
	)

	d.step("draft: readers only, with a wrong test", "tests-failing:#policy-rego",
		pasteInto("#definition-editor", consolePolicyV2),
		pasteInto("#tests-editor", consoleTestsWrong),
		waitJS(`document.querySelector('#tests-outcomes li[data-outcome="fail"]')?.textContent.includes("test_writer_denied")`),
		waitJS(markedLine("#tests-editor")+` === 9`),
	)
	d.step("the failing test refuses the save", "",
		chromedp.Click(chromedp.ID("policy-save")),
		waitJS(`document.querySelector("#policy-save-result .error")?.textContent.includes("test_writer_denied")`),
	)
	d.step("the test fixed", "",
		pasteInto("#tests-editor", consoleTests),
		waitJS(`document.querySelectorAll('#tests-outcomes li[data-outcome="pass"]').length === 2`),
		waitJS(`document.querySelector("#definition-status").dataset.state === "ok"`),
		chromedp.SetValue(chromedp.ID("#rq-path"), "/pets/1"),
		chromedp.SetValue(chromedp.ID("#rq-host"), "pets.example.com"),
		chromedp.SetValue(chromedp.ID("#rq-gateway"), "edge"),
	)
	d.step("a request the token lets through", "test-allowed:#request-builder",
		chromedp.SetValue(chromedp.ID("#rq-authorization"), "Bearer "+tokens["reader"]),
		chromedp.Click(chromedp.ID("#rq-run")),
		chromedp.WaitVisible(chromedp.CSS(`#test-result .verdict[data-allowed="true"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#test-result .stage[data-stage="route"][data-state="ok"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#test-result .stage[data-stage="token"][data-state="ok"]`)),
	)
	d.step("a request the token does not let through", "test-denied:#request-builder",
		chromedp.SetValue(chromedp.ID("#rq-authorization"), "Bearer "+tokens["writer"]),
		chromedp.Click(chromedp.ID("#rq-run")),
		chromedp.WaitVisible(chromedp.CSS(`#test-result .verdict[data-allowed="false"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#test-result .stage[data-stage="policy"][data-state="fail"] .failed-expression`)),
		waitJS(`document.querySelector("#test-result .failed-expression").textContent.includes("line 7")`),
	)
	d.step("replay against the logged decisions", "replay:#replay-panel",
		chromedp.Click(chromedp.ID("#replay-run")),
		chromedp.WaitVisible(chromedp.CSS(`#replay-result .verdict[data-allow-to-deny="1"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#replay-result tr[data-flip="allow_to_deny"]`)),
	)
	d.step("save", "",
		chromedp.Click(chromedp.ID("#policy-save")),
		waitJS(`document.querySelector("#policy-save-result .ok")?.textContent.includes("revision")`),
	)
	var saved map[string]any
	if err := json.Unmarshal(c.must(200, "GET", "/api/admin/acme/policies/readers", nil).Body, &saved); err != nil ||
		saved["definition"] != consolePolicyV2 || saved["tests"] != consoleTests {
		t.Fatalf("the saved policy: %v %v %v", saved["definition"], saved["tests"], err)
	}

	// Traffic through the in-process authorizer: the writer is refused now.
	testkit.Eventually(t, 10*time.Second, func() error {
		got := checkPet(t, ac, tokens["writer"])
		return testkit.Check(got == code.Code_PERMISSION_DENIED, "the writer: %v", got)
	}, "the in-process authorizer enforces the saved draft")

	d.step("the denial in the decision browser", "decisions:#view-decisions",
		chromedp.Click(chromedp.CSS(`#nav button[data-view="decisions"]`)),
		waitJS(`document.querySelector("#df-gateway").value === "edge"`),
		chromedp.SetValue(chromedp.ID("#df-allowed"), "false"),
		chromedp.Click(chromedp.ID("#df-live")),
		chromedp.Click(chromedp.ID("#df-search")),
		chromedp.WaitVisible(chromedp.CSS(`#decisions-table tr[data-allowed="false"][data-policy="readers"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#decisions-stats tr[data-policy="readers"]`)),
		chromedp.Click(chromedp.CSS(`#decisions-table tr[data-allowed="false"][data-policy="readers"] button`)),
		chromedp.WaitVisible(chromedp.CSS(`#decision-detail h3`)),
	)
	d.step("the gateway's status", "gateway:#view-gateways",
		chromedp.Click(chromedp.ID("#df-live")),
		chromedp.Click(chromedp.CSS(`#nav button[data-view="gateways"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#gateway-detail [data-section="bundle"] .pill.ok`)),
		chromedp.WaitVisible(chromedp.CSS(`#gateway-detail [data-section="in-process-authorizer"]`)),
		chromedp.Click(chromedp.CSS(`#gateway-detail button[data-generated="envoy-config"]`)),
		waitJS(`document.querySelector("#gateway-generated pre")?.textContent.includes("acme/edge")`),
	)

	// A credential bound to the tenant: signed in with its tenant's id, it
	// sees that tenant (and the sign-in screen asks for the id without).
	tenantCred := c.must(201, "POST", "/api/system/tenants/acme/credentials", map[string]any{"name": "console"}).JSON(t)["token"].(string)
	d.step("a tenant-bound credential needs its tenant", "",
		chromedp.Click(chromedp.ID("logout")),
		chromedp.WaitVisible(chromedp.ID("login-token")),
		chromedp.SendKeys(chromedp.ID("login-token"), tenantCred),
		chromedp.Click(chromedp.ID("login-submit")),
		waitJS(`document.querySelector("#login-error .error")?.textContent.includes("tenant")`),
		chromedp.SendKeys(chromedp.ID("login-tenant"), "acme"), // the credential is still there
		chromedp.Click(chromedp.ID("login-submit")),
		waitJS(`!document.querySelector("#nav").hidden && document.querySelector("#tenant-select").value === "acme"`),
		chromedp.WaitVisible(chromedp.CSS(`#gateway-detail [data-section="bundle"]`)),
	)

	// Every form field has a label.
	unlabelled, err := chromedp.Run(d.ctx, chromedp.Evaluate[string](`[...document.querySelectorAll("input, select, textarea")]
		.filter((e) => !e.labels?.length && !e.getAttribute("aria-label")).map((e) => e.id || e.outerHTML).join(", ")`))
	if err != nil || unlabelled != "" {
		t.Errorf("form fields without a label: %q (%v)", unlabelled, err)
	}
	violations, err := chromedp.Run(d.ctx, chromedp.Evaluate[string](`(window.__cspViolations || []).join("\n")`))
	if err != nil {
		t.Fatal(err)
	}
	if violations != "" {
		t.Errorf("Content-Security-Policy violations in the console:\n%s", violations)
	}
	t.Logf("the console's browser test took %v (screenshots in %s)", time.Since(start).Round(time.Millisecond), d.dir)
}

// TestTheControlPlaneServesTheConsole: gatehouse control-plane serves the
// same console, under the same policy.
func TestTheControlPlaneServesTheConsole(t *testing.T) {
	p := startServe(t, serveOptions{DataDir: t.TempDir(), Token: testToken, Command: "control-plane"})
	for path, want := range map[string]string{"/console/": "js/main.js", "/console/js/policies.js": "/policies/check",
		"/console/vendor/codemirror.min.js": "CodeMirror"} {
		res, err := http.Get(p.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || !strings.Contains(string(body), want) ||
			!strings.Contains(res.Header.Get("Content-Security-Policy"), "default-src 'none'") {
			t.Errorf("GET %s: %d, CSP %q, %d bytes", path, res.StatusCode, res.Header.Get("Content-Security-Policy"), len(body))
		}
	}
}
