package openapicheck_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/testkit/openapicheck"
)

const doc = `openapi: 3.0.3
info: {title: t, version: "1"}
paths:
  /api/openapi.json:
    get:
      responses:
        "200": {description: this document, content: {application/json: {schema: {type: object}}}}
  /things/{id}:
    parameters:
      - {name: id, in: path, required: true, schema: {type: string, pattern: "^[a-z]+$"}}
    get:
      responses:
        "200":
          description: a thing
          headers: {ETag: {schema: {type: string, pattern: '^"[0-9]+"$'}}}
          content:
            application/json:
              schema:
                type: object
                required: [id, size]
                properties:
                  id: {type: string}
                  size: {type: integer}
                  note: {type: string, nullable: true}
        "304": {description: not modified}
    delete:
      responses:
        "204": {description: deleted}
  /things/special:
    get:
      responses:
        "200": {description: the special thing, content: {text/plain: {schema: {type: string}}}}
  /blobs:
    post:
      requestBody:
        required: true
        content: {application/json: {schema: {type: object, required: [name], properties: {name: {type: string}}}}}
      responses:
        "201": {description: stored, content: {application/gzip: {schema: {type: string, format: binary}}}}
`

// server answers what the request's query asks for: status, content type
// and body, so each case can produce a response the document does or does
// not describe.
func server(t *testing.T) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/openapi.json" {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"openapi":"3.0.3","info":{"title":"t","version":"1"},"paths":{}}`)
			return
		}
		q := r.URL.Query()
		if ct := q.Get("ct"); ct != "" {
			w.Header().Set("Content-Type", ct)
		}
		if etag := q.Get("etag"); etag != "" {
			w.Header().Set("ETag", etag)
		}
		status := 200
		fmt.Sscan(q.Get("status"), &status)
		w.WriteHeader(status)
		io.WriteString(w, q.Get("body"))
	}))
	t.Cleanup(s.Close)
	return s
}

func exchange(t *testing.T, s *httptest.Server, method, path, body string) openapicheck.Exchange {
	t.Helper()
	req, err := http.NewRequest(method, s.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return openapicheck.Exchange{Request: req, RequestBody: []byte(body), Status: res.StatusCode, Header: res.Header, Body: b}
}

func q(status int, ct, body string) string {
	return "?" + url.Values{"status": {fmt.Sprint(status)}, "ct": {ct}, "body": {body}}.Encode()
}

func TestCheck(t *testing.T) {
	c, err := openapicheck.Load(context.Background(), []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	s := server(t)
	for _, tc := range []struct {
		name         string
		method, path string
		want         string // "" for a match, else a part of the error
	}{
		{"documented", "GET", "/things/a" + q(200, "application/json; charset=utf-8", `{"id":"a","size":1}`), ""},
		{"nullable field null", "GET", "/things/a" + q(200, "application/json", `{"id":"a","size":1,"note":null}`), ""},
		{"null where not nullable", "GET", "/things/a" + q(200, "application/json", `{"id":"a","size":null}`), "doesn't match schema"},
		{"missing required field", "GET", "/things/a" + q(200, "application/json", `{"id":"a"}`), `"size"`},
		{"wrong type", "GET", "/things/a" + q(200, "application/json", `{"id":"a","size":"1"}`), "doesn't match schema"},
		{"wrong content type", "GET", "/things/a" + q(200, "text/plain", `{"id":"a","size":1}`), "text/plain"},
		{"not JSON", "GET", "/things/a" + q(200, "application/json", `{"id":`), "decode"},
		{"header against its schema", "GET", "/things/a" + q(200, "application/json", `{"id":"a","size":1}`) + "&etag=W/x", "ETag"},
		{"undocumented status", "GET", "/things/a" + q(503, "application/json", `{}`), "status 503 is not documented (documented: 200, 304)"},
		{"documented 304", "GET", "/things/a" + q(304, "", ""), ""},
		{"undocumented 304", "DELETE", "/things/a" + q(304, "", ""), "status 304 is not documented"},
		{"documented 204", "DELETE", "/things/a" + q(204, "", ""), ""},
		{"literal segment before a parameter", "GET", "/things/special" + q(200, "text/plain", "hi"), ""},
		{"binary body", "POST", "/blobs" + q(201, "application/gzip", "\x1f\x8b"), ""},
		{"unknown path answered 404", "GET", "/nothing" + q(404, "application/json", `{}`), ""},
		{"unknown path answered 200", "GET", "/nothing" + q(200, "application/json", `{}`), "no documented operation"},
		{"collection path answered 405", "DELETE", "/things" + q(405, "application/json", `{}`), ""},
		{"collection path answered 204", "DELETE", "/things" + q(204, "", ""), "path parameter \"id\" is empty"},
		{"undocumented method answered 405", "PUT", "/things/a" + q(405, "application/json", `{}`), ""},
		{"undocumented method answered 200", "PUT", "/things/a" + q(200, "application/json", `{}`), "no documented operation"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x := exchange(t, s, tc.method, tc.path, `{}`)
			err := c.Check(context.Background(), x)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("want a match, got %v", err)
			case tc.want != "" && err == nil:
				t.Errorf("want an error naming %q, got a match", tc.want)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Errorf("want an error naming %q, got %v", tc.want, err)
			}
		})
	}
}

// TestBodyOnAResponseWithoutContent: a body the document does not mention
// is an error; the server of the other tests cannot send one on a 204.
func TestBodyOnAResponseWithoutContent(t *testing.T) {
	c, err := openapicheck.Load(context.Background(), []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest("DELETE", "/things/a", nil)
	err = c.Check(context.Background(), openapicheck.Exchange{Request: req, Status: 204, Header: http.Header{}, Body: []byte("surprise")})
	if err == nil || !strings.Contains(err.Error(), "documented without a body") {
		t.Errorf("got %v", err)
	}
}

// TestRequestValidationIsOptional: an invalid request passes unless asked.
func TestRequestValidationIsOptional(t *testing.T) {
	s := server(t)
	lenient, err := openapicheck.Load(context.Background(), []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	strict, err := openapicheck.Load(context.Background(), []byte(doc), openapicheck.WithRequestValidation())
	if err != nil {
		t.Fatal(err)
	}
	ok := exchange(t, s, "POST", "/blobs"+q(201, "application/gzip", "x"), `{"name":"n"}`)
	bad := exchange(t, s, "POST", "/blobs"+q(201, "application/gzip", "x"), `{"size":1}`)
	if err := lenient.Check(context.Background(), bad); err != nil {
		t.Errorf("lenient: %v", err)
	}
	if err := strict.Check(context.Background(), ok); err != nil {
		t.Errorf("strict, valid request: %v", err)
	}
	if err := strict.Check(context.Background(), bad); err == nil || !strings.Contains(err.Error(), "request") {
		t.Errorf("strict, invalid request: %v", err)
	}
}

// recorder is a testing.TB that keeps what Errorf reports.
type recorder struct {
	testing.TB
	errors []string
}

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

// TestExpectNamesTheExchange: the report names method, path, status and
// the reason.
func TestExpectNamesTheExchange(t *testing.T) {
	c, err := openapicheck.Load(context.Background(), []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	s := server(t)
	r := &recorder{TB: t}
	c.Expect(r, exchange(t, s, "GET", "/things/a"+q(200, "application/json", `{"id":"a","size":1}`), ""))
	if len(r.errors) != 0 {
		t.Fatalf("a match reported: %v", r.errors)
	}
	c.Expect(r, exchange(t, s, "GET", "/things/a"+q(500, "application/json", `{}`), ""))
	if len(r.errors) != 1 || !strings.Contains(r.errors[0], "GET /things/a answered 500: status 500 is not documented") {
		t.Errorf("reported %q", r.errors)
	}
}

// TestFetch: the document is loaded from the server; a server that does
// not serve one is an error.
func TestFetch(t *testing.T) {
	s := server(t)
	if _, err := openapicheck.Fetch(context.Background(), s.Client(), s.URL+"/api/openapi.json"); err != nil {
		t.Fatal(err)
	}
	if _, err := openapicheck.Fetch(context.Background(), s.Client(), s.URL+"/elsewhere?status=404"); err == nil || !strings.Contains(err.Error(), "status 404") {
		t.Errorf("got %v", err)
	}
	if _, err := openapicheck.Load(context.Background(), []byte("openapi: 3.0.3\npaths: {}\n")); err == nil {
		t.Error("a document without info validated")
	}
}
