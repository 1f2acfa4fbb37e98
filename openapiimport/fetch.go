package openapiimport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/netguard"
)

// DefaultFetchTimeout bounds a fetch (connection, redirects and body) when
// Fetcher.Timeout is zero.
const DefaultFetchTimeout = 10 * time.Second

// MaxRedirects is how many redirects a fetch follows.
const MaxRedirects = 5

// URLError is a URL (or an address it resolves to, or a redirect) a fetch
// must not or cannot use: a mistake of the caller, about the url it gave.
type URLError struct{ Reason string }

func (e *URLError) Error() string { return e.Reason }

// FetchError is a remote failure: DNS, connection, TLS, timeout, a non-2xx
// answer. URL is the redacted URL.
type FetchError struct {
	URL    string
	Reason string
}

func (e *FetchError) Error() string { return fmt.Sprintf("fetching %s failed: %s", e.URL, e.Reason) }

// Fetcher downloads documents to import.
type Fetcher struct {
	// AllowPrivate lets fetches dial loopback, private, link-local and
	// unspecified addresses (refused by default; the check is made on the
	// dialed address, see package netguard).
	AllowPrivate bool
	// Timeout bounds each fetch (DefaultFetchTimeout when zero).
	Timeout time.Duration
}

func (f *Fetcher) timeout() time.Duration {
	if f.Timeout > 0 {
		return f.Timeout
	}
	return DefaultFetchTimeout
}

// CheckURL accepts absolute http and https URLs with a host.
func CheckURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return nil, &URLError{fmt.Sprintf("not a valid URL: %v", errors.Unwrap(err))}
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, &URLError{fmt.Sprintf("only http and https URLs can be imported, not %q", u.Scheme)}
	case u.Hostname() == "":
		return nil, &URLError{"the URL has no host"}
	}
	return u, nil
}

// Fetch downloads the document at raw, at most MaxDocumentSize bytes. Its
// errors are *URLError (the URL, a redirect or the address is refused, or
// the document is too large) or *FetchError (the remote failed).
func (f *Fetcher) Fetch(ctx context.Context, raw string) ([]byte, error) {
	u, err := CheckURL(raw)
	if err != nil {
		return nil, err
	}
	timeout := f.timeout()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tr := f.transport(timeout)
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if len(via) > MaxRedirects {
			return fmt.Errorf("stopped after %d redirects", MaxRedirects)
		}
		if _, err := CheckURL(req.URL.String()); err != nil {
			return &URLError{fmt.Sprintf("redirected to %s: %v", req.URL.Redacted(), err)}
		}
		return nil
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, &URLError{err.Error()}
	}
	req.Header.Set("Accept", "application/json, application/yaml, text/yaml, text/plain;q=0.9, */*;q=0.5")
	req.Header.Set("User-Agent", "gatehouse-openapi-import")
	res, err := client.Do(req)
	if err != nil {
		return nil, fetchError(u, err, timeout)
	}
	defer res.Body.Close()
	if res.StatusCode < 200 || res.StatusCode > 299 {
		return nil, &FetchError{URL: u.Redacted(), Reason: fmt.Sprintf("the server answered HTTP %d", res.StatusCode)}
	}
	tooBig := &URLError{fmt.Sprintf("the document at %s is larger than %d bytes", u.Redacted(), MaxDocumentSize)}
	if res.ContentLength > MaxDocumentSize {
		return nil, tooBig
	}
	data, err := io.ReadAll(io.LimitReader(res.Body, MaxDocumentSize+1))
	if err != nil {
		return nil, fetchError(u, err, timeout)
	}
	if len(data) > MaxDocumentSize {
		return nil, tooBig
	}
	return data, nil
}

// transport dials only public addresses unless AllowPrivate. No proxy is
// used: it would hide the real destination from the check.
func (f *Fetcher) transport(timeout time.Duration) *http.Transport {
	return &http.Transport{
		Proxy:                  nil,
		DialContext:            netguard.Dialer(timeout, f.AllowPrivate).DialContext,
		ForceAttemptHTTP2:      true,
		TLSHandshakeTimeout:    timeout,
		ResponseHeaderTimeout:  timeout,
		MaxResponseHeaderBytes: 1 << 20,
	}
}

// fetchError maps a client error: a refused destination is a *URLError,
// anything else (DNS, connection, TLS, timeout) a *FetchError.
func fetchError(u *url.URL, err error, timeout time.Duration) error {
	var blocked *URLError
	if errors.As(err, &blocked) {
		return blocked
	}
	var refused *netguard.Error
	if errors.As(err, &refused) {
		if refused.Kind == "" {
			return &URLError{refused.Error()}
		}
		return &URLError{fmt.Sprintf("the host resolves to %s, a %s address; imports from such addresses are disabled (server option --import-allow-private-urls)", refused.IP, refused.Kind)}
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return &FetchError{URL: u.Redacted(), Reason: fmt.Sprintf("no complete answer within %s", timeout)}
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return &FetchError{URL: u.Redacted(), Reason: err.Error()}
}
