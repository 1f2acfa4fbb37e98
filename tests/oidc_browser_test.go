package tests

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"golang.org/x/oauth2"
)

// TestLoginRedirectsToAnotherOrigin: a relying party on another origin
// (here another loopback port) gets its code through a real browser. The
// login page's CSP form-action applies to the redirects after the form is
// posted, so it must allow the client's redirect URI's origin (Chromium
// otherwise stays on the login page).
func TestLoginRedirectsToAnotherOrigin(t *testing.T) {
	chromium := findChromium(t)
	codes := make(chan url.Values, 1)
	rp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/callback" {
			select {
			case codes <- r.URL.Query():
			default:
			}
		}
		_, _ = w.Write([]byte("<!doctype html><title>rp</title>callback"))
	}))
	defer rp.Close()

	p := startServe(t, serveOptions{DataDir: t.TempDir(), Token: testToken})
	c := newClient(t, p.URL, testToken)
	c.must(201, "POST", "/api/system/tenants", map[string]any{"id": "acme", "name": "acme"})
	staticAdmin(t, c, "acme", "default", "ada")
	web := c.must(201, "POST", "/api/admin/acme/clients", map[string]any{"client_id": "web", "authorization_server_id": "default",
		"grant_types": []string{"authorization_code"}, "redirect_uris": []string{rp.URL + "/callback"}, "scopes": []string{"openid"}}).JSON(t)
	cfg := oauth2.Config{ClientID: "web", ClientSecret: web["client_secret"].(string), RedirectURL: rp.URL + "/callback",
		Endpoint: oauth2.Endpoint{AuthURL: p.URL + "/acme/default/oauth2/authorize", TokenURL: p.URL + "/acme/default/oauth2/token"},
		Scopes:   []string{"openid"}}
	verifier := oauth2.GenerateVerifier()
	authURL := cfg.AuthCodeURL("state-123", oauth2.S256ChallengeOption(verifier))

	d := newConsoleDriver(t, chromium)
	d.step("the login page of acme-default", "",
		chromedp.Navigate(authURL),
		chromedp.WaitVisible(chromedp.ID("username")),
	)
	d.step("signed in", "",
		chromedp.SendKeys(chromedp.ID("username"), "ada"),
		chromedp.SendKeys(chromedp.ID("password"), consolePassword),
		chromedp.Click(chromedp.CSS(`button[type="submit"]`)),
	)
	var q url.Values
	select {
	case q = <-codes:
	case <-time.After(20 * time.Second):
		t.Fatal("the browser never reached the relying party's callback (a CSP form-action that leaves its origin out stops it on the login page)")
	}
	if q.Get("state") != "state-123" || q.Get("code") == "" {
		t.Fatalf("the callback: %v", q)
	}
	tok, err := cfg.Exchange(context.Background(), q.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil || !strings.HasPrefix(tok.AccessToken, "ey") {
		t.Fatalf("exchange: %v %v", tok, err)
	}
}
