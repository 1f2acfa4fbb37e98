package admin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/gatehouse-dev/gatehouse/internal/netguard"
)

// importFetchTimeout bounds a URL import's fetch: connection, redirects
// and body. A variable so tests can shorten it.
var importFetchTimeout = 10 * time.Second

// importMaxRedirects is how many redirects a URL import follows.
const importMaxRedirects = 5

// maxImportURLLength caps the url field of a URL import.
const maxImportURLLength = 8192

// importURLTypes are the media types POST …/import/url accepts.
var importURLTypes = []string{"application/json", "multipart/form-data", "application/x-www-form-urlencoded"}

// blockedURLError is a URL (or an address it resolves to) an import must not
// fetch: a caller mistake, answered with 400 on the url field.
type blockedURLError struct{ reason string }

func (e *blockedURLError) Error() string { return e.reason }

// importFromURL fetches the document at the url field (JSON body,
// multipart/form-data or form-urlencoded) and imports it.
func (s *Server) importFromURL(c *gin.Context) {
	s.importWith(c, func(c *gin.Context) ([]byte, *Error) {
		raw, apiErr := importURLField(c)
		if apiErr != nil {
			return nil, apiErr
		}
		return s.fetchSpecification(c.Request.Context(), raw)
	})
}

// importURLField reads the url field in any of importURLTypes.
func importURLField(c *gin.Context) (string, *Error) {
	mt, apiErr := mediaType(c, importURLTypes...)
	if apiErr != nil {
		return "", apiErr
	}
	var raw string
	switch {
	case mt == "" || mt == "application/json" || strings.HasSuffix(mt, "+json"):
		var body struct {
			URL string `json:"url"`
		}
		if apiErr := decodeJSON(c, &body); apiErr != nil {
			return "", apiErr
		}
		raw = body.URL
	case mt == "multipart/form-data":
		_, apiErr := readFormPart(c, "url", DefaultBodyLimit, func(p io.Reader) *Error {
			b, err := io.ReadAll(io.LimitReader(p, maxImportURLLength+1))
			if err != nil {
				return newError(http.StatusBadRequest, CodeInvalidRequest, "reading the url field: "+err.Error(), nil)
			}
			raw = string(b)
			return nil
		})
		if apiErr != nil {
			return "", apiErr
		}
	case mt == "application/x-www-form-urlencoded":
		c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, DefaultBodyLimit)
		if err := c.Request.ParseForm(); err != nil {
			return "", newError(http.StatusBadRequest, CodeInvalidRequest, "malformed form body: "+err.Error(), nil)
		}
		raw = c.Request.PostForm.Get("url")
	default:
		return "", unsupportedMedia(c.GetHeader("Content-Type"), importURLTypes...)
	}
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return "", missingField("url")
	}
	if len(raw) > maxImportURLLength {
		return "", fieldError("url", "must be at most %d characters", maxImportURLLength)
	}
	return raw, nil
}

// checkFetchURL accepts absolute http and https URLs with a host.
func checkFetchURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return nil, &blockedURLError{fmt.Sprintf("not a valid URL: %v", errors.Unwrap(err))}
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, &blockedURLError{fmt.Sprintf("only http and https URLs can be imported, not %q", u.Scheme)}
	case u.Hostname() == "":
		return nil, &blockedURLError{"the URL has no host"}
	}
	return u, nil
}

// fetchSpecification downloads a document for an import. The remote's
// failures are 400s (fetch_failed), never 5xx.
func (s *Server) fetchSpecification(ctx context.Context, raw string) ([]byte, *Error) {
	u, err := checkFetchURL(raw)
	if err != nil {
		return nil, fieldError("url", "%s", err.Error())
	}
	ctx, cancel := context.WithTimeout(ctx, importFetchTimeout)
	defer cancel()
	tr := s.importTransport()
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if len(via) > importMaxRedirects {
			return fmt.Errorf("stopped after %d redirects", importMaxRedirects)
		}
		if _, err := checkFetchURL(req.URL.String()); err != nil {
			return &blockedURLError{fmt.Sprintf("redirected to %s: %v", req.URL.Redacted(), err)}
		}
		return nil
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fieldError("url", "%s", err.Error())
	}
	req.Header.Set("Accept", "application/json, application/yaml, text/yaml, text/plain;q=0.9, */*;q=0.5")
	req.Header.Set("User-Agent", "gatehouse-openapi-import")
	res, err := client.Do(req)
	if err != nil {
		return nil, fetchError(u, err)
	}
	defer res.Body.Close()
	if res.StatusCode < 200 || res.StatusCode > 299 {
		return nil, fetchFailed(u, fmt.Sprintf("the server answered HTTP %d", res.StatusCode))
	}
	tooBig := fieldError("url", "the document at %s is larger than %d bytes", u.Redacted(), importDocumentLimit)
	if res.ContentLength > importDocumentLimit {
		return nil, tooBig
	}
	data, err := io.ReadAll(io.LimitReader(res.Body, importDocumentLimit+1))
	if err != nil {
		return nil, fetchError(u, err)
	}
	if len(data) > importDocumentLimit {
		return nil, tooBig
	}
	return data, nil
}

// importTransport dials only public addresses unless the server allows
// private ones (see package netguard). No proxy is used: it would hide the
// real destination from the check.
func (s *Server) importTransport() *http.Transport {
	return &http.Transport{
		Proxy:                  nil,
		DialContext:            netguard.Dialer(importFetchTimeout, s.allowPrivateImportURLs).DialContext,
		ForceAttemptHTTP2:      true,
		TLSHandshakeTimeout:    importFetchTimeout,
		ResponseHeaderTimeout:  importFetchTimeout,
		MaxResponseHeaderBytes: 1 << 20,
	}
}

func fetchFailed(u *url.URL, reason string) *Error {
	return newError(http.StatusBadRequest, CodeFetchFailed, fmt.Sprintf("url: fetching %s failed: %s", u.Redacted(), reason),
		map[string]any{"field": "url", "url": u.Redacted(), "reason": reason})
}

// fetchError maps a client error: a refused destination is a 400 on url,
// anything else (DNS, connection, TLS, timeout) is fetch_failed.
func fetchError(u *url.URL, err error) *Error {
	var blocked *blockedURLError
	if errors.As(err, &blocked) {
		return fieldError("url", "%s", blocked.reason)
	}
	var refused *netguard.Error
	if errors.As(err, &refused) {
		if refused.Kind == "" {
			return fieldError("url", "%s", refused.Error())
		}
		return fieldError("url", "the host resolves to %s, a %s address; imports from such addresses are disabled (server option --import-allow-private-urls)", refused.IP, refused.Kind)
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return fetchFailed(u, fmt.Sprintf("no complete answer within %s", importFetchTimeout))
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return fetchFailed(u, err.Error())
}
