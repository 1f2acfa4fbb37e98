// Package browser drives an OAuth authorization flow over plain HTTP the
// way a person at a browser would: a cookie jar, redirects followed one by
// one, and the login page's form filled in and posted — no JavaScript, no
// real browser. Tests of the OIDC provider (package oauth, tests/) use it.
package browser

import (
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"time"

	"golang.org/x/net/html"
)

// Browser is an HTTP client with a cookie jar that follows redirects
// itself (Drive), so a flow can stop at the client's redirect URI.
type Browser struct {
	Client *http.Client
}

// New returns a browser with an empty cookie jar; transport nil is
// http.DefaultTransport.
func New(transport http.RoundTripper) *Browser {
	jar, _ := cookiejar.New(nil)
	return &Browser{Client: &http.Client{Jar: jar, Timeout: 30 * time.Second, Transport: transport,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// Result is where a flow ended.
type Result struct {
	// Callback is the redirect to a URI starting with the stop prefix
	// (nil when the flow ended elsewhere).
	Callback *url.URL
	// Status and Body are the last response's otherwise.
	Status int
	Body   string
	// LoginStatus is the status of the answer to the login form's POST
	// (0 when no form was posted).
	LoginStatus int
	// LoginShown reports whether a login form was shown.
	LoginShown bool
}

// Drive runs the flow from start: it follows redirects, fills in and
// posts the login form (fields username and password, the others as the
// page set them) when one is shown and username is not empty, and stops
// at a redirect to a URI starting with stopAt.
func (b *Browser) Drive(start, stopAt, username, password string) (Result, error) {
	next, method, form := start, http.MethodGet, url.Values(nil)
	var res Result
	for range 12 {
		var req *http.Request
		var err error
		if method == http.MethodPost {
			req, err = http.NewRequest(method, next, strings.NewReader(form.Encode()))
			if err == nil {
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			}
		} else {
			req, err = http.NewRequest(method, next, nil)
		}
		if err != nil {
			return res, err
		}
		resp, err := b.Client.Do(req)
		if err != nil {
			return res, fmt.Errorf("%s %s: %w", method, next, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if method == http.MethodPost {
			res.LoginStatus = resp.StatusCode
		}
		if resp.StatusCode >= 300 && resp.StatusCode < 400 {
			loc, err := resp.Request.URL.Parse(resp.Header.Get("Location"))
			if err != nil {
				return res, fmt.Errorf("redirect %q: %w", resp.Header.Get("Location"), err)
			}
			if strings.HasPrefix(loc.String(), stopAt) {
				res.Callback = loc
				return res, nil
			}
			next, method, form = loc.String(), http.MethodGet, nil
			continue
		}
		res.Status, res.Body = resp.StatusCode, string(body)
		action, fields, ok := LoginForm(res.Body)
		res.LoginShown = res.LoginShown || ok
		if !ok || username == "" || method == http.MethodPost {
			return res, nil
		}
		target, err := resp.Request.URL.Parse(action)
		if err != nil {
			return res, err
		}
		fields.Set("username", username)
		fields.Set("password", password)
		next, method, form = target.String(), http.MethodPost, fields
	}
	return res, fmt.Errorf("too many redirects from %s", start)
}

// LoginForm parses a login page: the action of its form and its input
// fields with their values; ok is false unless the page has a form with a
// username field.
func LoginForm(page string) (action string, fields url.Values, ok bool) {
	action, fields, ok = Form(page)
	_, hasUser := fields["username"]
	return action, fields, ok && hasUser
}

// Form parses a page with one form: its action and its input fields with
// their values; ok is false when the page has no form.
func Form(page string) (action string, fields url.Values, ok bool) {
	doc, err := html.Parse(strings.NewReader(page))
	if err != nil {
		return "", nil, false
	}
	fields = url.Values{}
	hasForm := false
	var walk func(n *html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode {
			attr := func(k string) string {
				for _, a := range n.Attr {
					if a.Key == k {
						return a.Val
					}
				}
				return ""
			}
			switch n.Data {
			case "form":
				action, hasForm = attr("action"), true
			case "input":
				if name := attr("name"); name != "" {
					fields.Set(name, attr("value"))
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	return action, fields, hasForm
}
