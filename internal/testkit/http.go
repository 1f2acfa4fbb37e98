package testkit

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// HTTPClient sends requests to one base URL with a bearer token, bodies
// encoded as JSON.
type HTTPClient struct {
	// BaseURL is put before every path.
	BaseURL string
	// Token, when set, is sent as "Authorization: Bearer <Token>".
	Token string
	// Client sends the requests; nil means a client with a 30 s timeout.
	Client *http.Client
}

// NewHTTPClient returns a client of baseURL sending token.
func NewHTTPClient(baseURL, token string) *HTTPClient {
	return &HTTPClient{BaseURL: baseURL, Token: token}
}

// WithToken returns a copy of c that sends token instead.
func (c *HTTPClient) WithToken(token string) *HTTPClient {
	cp := *c
	cp.Token = token
	return &cp
}

// Response is an HTTP response with its body read.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// Decode decodes the body as JSON into v.
func (r Response) Decode(v any) error {
	if err := json.Unmarshal(r.Body, v); err != nil {
		return fmt.Errorf("response %d is not the JSON expected: %w: %s", r.Status, err, r.Body)
	}
	return nil
}

// JSON decodes the body as a JSON object; it fails the test when it is not
// one.
func (r Response) JSON(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := r.Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

// Send sends method path and returns the response, or the transport
// error. body is sent as it is when it is a string or []byte and encoded
// as JSON otherwise (nil: no body); a request with a body says
// Content-Type: application/json. headers are name, value pairs set last.
func (c *HTTPClient) Send(ctx context.Context, method, path string, body any, headers ...string) (Response, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			return Response{}, fmt.Errorf("encode the body of %s %s: %w", method, path, err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.BaseURL+path, rd)
	if err != nil {
		return Response{}, err
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	hc := c.Client
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	res, err := hc.Do(req)
	if err != nil {
		return Response{}, err
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		return Response{}, fmt.Errorf("read the response to %s %s: %w", method, path, err)
	}
	return Response{Status: res.StatusCode, Header: res.Header, Body: raw}, nil
}

// Do is Send failing the test on a transport error.
func (c *HTTPClient) Do(t testing.TB, method, path string, body any, headers ...string) Response {
	t.Helper()
	r, err := c.Send(context.Background(), method, path, body, headers...)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return r
}

// Expect is Do failing the test unless the response has status.
func (c *HTTPClient) Expect(t testing.TB, status int, method, path string, body any, headers ...string) Response {
	t.Helper()
	r := c.Do(t, method, path, body, headers...)
	if r.Status != status {
		t.Fatalf("%s %s: status %d, want %d: %s", method, path, r.Status, status, r.Body)
	}
	return r
}
