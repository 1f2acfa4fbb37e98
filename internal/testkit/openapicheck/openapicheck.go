// Package openapicheck holds HTTP exchanges to an OpenAPI 3 document, so
// that a test driving a server through its API fails when the server
// answers something its document does not describe.
//
// A Checker finds the operation of a request with kin-openapi's legacy
// router and validates the response with openapi3filter.ValidateResponse:
// the status code must be documented (304 too, which ValidateResponse
// itself skips), the content type must be one the response documents, the
// body must match its schema and the documented headers theirs; a body on
// a response documented without content is an error. Requests are
// validated only when asked (WithRequestValidation): tests send invalid
// requests on purpose.
package openapicheck

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
)

// Checker validates exchanges against one document. It is safe for
// concurrent use.
type Checker struct {
	router          routers.Router
	validateRequest bool
}

// Option configures a Checker.
type Option func(*Checker)

// WithRequestValidation also validates each request (parameters and body;
// security requirements are not checked).
func WithRequestValidation() Option {
	return func(c *Checker) { c.validateRequest = true }
}

// New returns a Checker for doc, which must be valid.
func New(doc *openapi3.T, opts ...Option) (*Checker, error) {
	router, err := legacy.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("route the OpenAPI document: %w", err)
	}
	c := &Checker{router: router}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

// Load parses a document (JSON or YAML) and returns its Checker.
func Load(ctx context.Context, data []byte, opts ...Option) (*Checker, error) {
	loader := openapi3.NewLoader()
	loader.Context = ctx
	doc, err := loader.LoadFromData(data)
	if err != nil {
		return nil, fmt.Errorf("parse the OpenAPI document: %w", err)
	}
	if err := doc.Validate(ctx); err != nil {
		return nil, fmt.Errorf("validate the OpenAPI document: %w", err)
	}
	return New(doc, opts...)
}

// Fetch loads the document a server serves at url (its answer must be a
// 200) and returns its Checker.
func Fetch(ctx context.Context, client *http.Client, url string, opts ...Option) (*Checker, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("fetch the OpenAPI document: %w", err)
	}
	res, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch the OpenAPI document: %w", err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, fmt.Errorf("fetch the OpenAPI document from %s: %w", url, err)
	}
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch the OpenAPI document from %s: status %d: %.200s", url, res.StatusCode, body)
	}
	return Load(ctx, body, opts...)
}

// Exchange is one request and the response it got.
type Exchange struct {
	// Request is the request as sent; only its method, URL and header
	// are read, and its body only with WithRequestValidation.
	Request *http.Request
	// RequestBody is the body sent, for WithRequestValidation.
	RequestBody []byte
	// Status, Header and Body are the response's; Body read in full.
	Status int
	Header http.Header
	Body   []byte
}

// Check returns why the exchange does not match the document, or nil. A
// request for a path or method the document does not have, answered 404
// or 405, matches: the document cannot describe what is not there.
func (c *Checker) Check(ctx context.Context, x Exchange) error {
	route, params, err := c.router.FindRoute(x.Request)
	if err == nil {
		// The legacy router matches /things to /things/{id} with an
		// empty id; a path parameter is never empty.
		for name, v := range params {
			if v == "" {
				route, err = nil, &routers.RouteError{Reason: fmt.Sprintf("%s (path parameter %q is empty)", routers.ErrPathNotFound, name)}
				break
			}
		}
	}
	if err != nil {
		// The legacy router says "no matching operation" also for an
		// undocumented method on a templated path, so either status goes.
		var re *routers.RouteError
		if errors.As(err, &re) && (x.Status == http.StatusNotFound || x.Status == http.StatusMethodNotAllowed) {
			return nil
		}
		return fmt.Errorf("no documented operation: %w", err)
	}
	reqInput := &openapi3filter.RequestValidationInput{
		Request:    x.Request,
		PathParams: params,
		Route:      route,
		Options: &openapi3filter.Options{
			MultiError:         true,
			AuthenticationFunc: openapi3filter.NoopAuthenticationFunc,
		},
	}
	var errs []error
	if c.validateRequest {
		req := x.Request.Clone(ctx)
		req.Body = io.NopCloser(bytes.NewReader(x.RequestBody))
		reqInput.Request = req
		if err := openapi3filter.ValidateRequest(ctx, reqInput); err != nil {
			errs = append(errs, fmt.Errorf("request: %w", err))
		}
		reqInput.Request = x.Request
	}
	if err := c.checkResponse(ctx, reqInput, x); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (c *Checker) checkResponse(ctx context.Context, in *openapi3filter.RequestValidationInput, x Exchange) error {
	responses := in.Route.Operation.Responses
	ref := responses.Status(x.Status)
	if ref == nil {
		ref = responses.Default()
	}
	if ref == nil {
		return fmt.Errorf("status %d is not documented (documented: %s)", x.Status, documented(responses))
	}
	if ref.Value != nil && len(ref.Value.Content) == 0 && len(x.Body) > 0 {
		return fmt.Errorf("response %d is documented without a body, got %q (Content-Type %q)", x.Status, clip(x.Body), x.Header.Get("Content-Type"))
	}
	err := openapi3filter.ValidateResponse(ctx, (&openapi3filter.ResponseValidationInput{
		RequestValidationInput: in,
		Status:                 x.Status,
		Header:                 x.Header,
		Options: &openapi3filter.Options{
			IncludeResponseStatus: true,
			MultiError:            true,
		},
	}).SetBodyBytes(x.Body))
	if err != nil {
		return fmt.Errorf("response: %w (body %q)", err, clip(x.Body))
	}
	return nil
}

// Expect reports with t.Errorf (method, path, status and the reason) when
// the exchange does not match the document.
func (c *Checker) Expect(t testing.TB, x Exchange) {
	t.Helper()
	if err := c.Check(context.Background(), x); err != nil {
		t.Errorf("OpenAPI: %s %s answered %d: %v", x.Request.Method, x.Request.URL.Path, x.Status, err)
	}
}

func documented(responses *openapi3.Responses) string {
	var codes []string
	for code := range responses.Map() {
		codes = append(codes, code)
	}
	sort.Strings(codes)
	return strings.Join(codes, ", ")
}

// clip shortens a body for an error message.
func clip(b []byte) string {
	const max = 300
	if len(b) <= max {
		return string(b)
	}
	return string(b[:max]) + "… (" + strconv.Itoa(len(b)) + " bytes)"
}
