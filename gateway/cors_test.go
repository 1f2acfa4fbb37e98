package gateway

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"testing"

	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/policies"
)

func corsEngine(t *testing.T) *Engine {
	t.Helper()
	cfg := &policies.Config{
		Revision: 1,
		Tenant:   policies.Object[model.TenantSpec]{ID: "acme", Spec: model.TenantSpec{Name: "Acme"}},
		Gateways: []policies.Object[model.GatewaySpec]{{ID: "gw", Name: "gw", Spec: model.GatewaySpec{Type: model.GatewayEnvoy}}},
		Services: []policies.Object[model.ServiceSpec]{
			{ID: "web", Name: "web", Spec: model.ServiceSpec{URL: "http://web", Hosts: []string{"api.example.com"}, CORS: &model.CORSSettings{
				AllowedOrigins: []string{"https://app.example.com"}, AllowedMethods: []string{"GET", "PUT"},
				AllowedHeaders: []string{"Authorization", "Content-Type"}, ExposedHeaders: []string{"X-Request-Id"},
				MaxAge: 600, AllowCredentials: true}}},
			{ID: "open", Name: "open", Spec: model.ServiceSpec{URL: "http://open", Hosts: []string{"open.example.com"}, CORS: &model.CORSSettings{
				AllowedOrigins: []string{"*"}, AllowedMethods: []string{"*"}, AllowedHeaders: []string{"*"}}}},
			{ID: "closed", Name: "closed", Spec: model.ServiceSpec{URL: "http://closed", Hosts: []string{"closed.example.com"}}},
		},
		APIs: []policies.Object[model.APISpec]{
			{ID: "get-pet", Spec: model.APISpec{ServiceID: "web", Method: "GET", Path: "/pets/{id}"}},
			{ID: "put-pet", Spec: model.APISpec{ServiceID: "web", Method: "PUT", Path: "/pets/{id}"}},
			{ID: "open-any", Spec: model.APISpec{ServiceID: "open", Method: "*", Path: "/{p...}", Public: true}},
			{ID: "closed-get", Spec: model.APISpec{ServiceID: "closed", Method: "GET", Path: "/x"}},
		},
	}
	c, err := policies.Compile(cfg, "gw")
	if err != nil {
		t.Fatal(err)
	}
	src, err := SourceFromCompiled(c, "1")
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewEngine(context.Background(), src, nil)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func preflight(host, path, origin, method string) *http.Request {
	r := httptest.NewRequest(http.MethodOptions, path, nil)
	r.Host = host
	if origin != "" {
		r.Header.Set("Origin", origin)
	}
	if method != "" {
		r.Header.Set("Access-Control-Request-Method", method)
	}
	return r
}

func TestCORSPreflight(t *testing.T) {
	e := corsEngine(t)
	rec := httptest.NewRecorder()
	r := preflight("api.example.com", "/pets/7", "https://app.example.com", "PUT")
	r.Header.Set("Access-Control-Request-Headers", "authorization")
	if !CORSPreflight(rec, r, e) {
		t.Fatal("an allowed preflight was not answered")
	}
	want := map[string]string{
		"Access-Control-Allow-Origin": "https://app.example.com", "Access-Control-Allow-Credentials": "true",
		"Access-Control-Allow-Methods": "GET, PUT", "Access-Control-Allow-Headers": "Authorization, Content-Type",
		"Access-Control-Max-Age": "600",
	}
	for k, v := range want {
		if got := rec.Header().Get(k); got != v {
			t.Errorf("%s: %q, want %q", k, got, v)
		}
	}
	if rec.Code != 200 || rec.Body.Len() != 0 {
		t.Fatalf("answer %d %q", rec.Code, rec.Body.String())
	}

	// "*" echoes what was asked, and never sends credentials.
	rec = httptest.NewRecorder()
	r = preflight("open.example.com:8443", "/any/thing", "https://elsewhere.example", "DELETE")
	r.Header.Set("Access-Control-Request-Headers", "x-a, x-b")
	if !CORSPreflight(rec, r, e) || rec.Header().Get("Access-Control-Allow-Methods") != "DELETE" ||
		rec.Header().Get("Access-Control-Allow-Headers") != "x-a, x-b" || rec.Header().Get("Access-Control-Allow-Credentials") != "" ||
		rec.Header().Get("Access-Control-Allow-Origin") != "https://elsewhere.example" {
		t.Fatalf("open preflight: %v", rec.Header())
	}

	// Not answered (left to authorization): other origins, another case,
	// no announced method, a method no API of the path has, no cors, not
	// OPTIONS, a refused path, no bundle.
	for name, r := range map[string]*http.Request{
		"other origin":       preflight("api.example.com", "/pets/7", "https://evil.example", "GET"),
		"origin case":        preflight("api.example.com", "/pets/7", "https://APP.example.com", "GET"),
		"no origin":          preflight("api.example.com", "/pets/7", "", "GET"),
		"no announced":       preflight("api.example.com", "/pets/7", "https://app.example.com", ""),
		"announced DELETE":   preflight("api.example.com", "/pets/7", "https://app.example.com", "DELETE"),
		"path of no API":     preflight("api.example.com", "/cats/7", "https://app.example.com", "GET"),
		"service no cors":    preflight("closed.example.com", "/x", "https://app.example.com", "GET"),
		"non-canonical path": preflight("api.example.com", "/pets/../pets/7", "https://app.example.com", "GET"),
		"GET with headers": func() *http.Request {
			r := preflight("api.example.com", "/pets/7", "https://app.example.com", "GET")
			r.Method = http.MethodGet
			return r
		}(),
	} {
		rec := httptest.NewRecorder()
		if CORSPreflight(rec, r, e) || len(rec.Header()) != 0 {
			t.Errorf("%s: answered %v", name, rec.Header())
		}
	}
	// HEAD follows GET: a preflight announcing HEAD is answered by the GET API.
	if !CORSPreflight(httptest.NewRecorder(), preflight("api.example.com", "/pets/7", "https://app.example.com", "HEAD"), e) {
		t.Error("HEAD preflight not answered")
	}
	if CORSPreflight(httptest.NewRecorder(), preflight("api.example.com", "/pets/7", "https://app.example.com", "GET"), nil) {
		t.Error("answered without a bundle")
	}
}

// TestCORSResponseWriter: the responses of allowed origins routed to a
// service with cors get its headers, replacing the upstream's, through a
// reverse proxy (flushes reach the real writer); other requests none.
func TestCORSResponseWriter(t *testing.T) {
	e := corsEngine(t)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Access-Control-Allow-Origin", "*")
		w.Header().Set("X-Up", "1")
		w.WriteHeader(201)
		w.(http.Flusher).Flush()
		_, _ = w.Write([]byte("body"))
	}))
	defer up.Close()
	u, _ := url.Parse(up.URL)
	rp := httputil.NewSingleHostReverseProxy(u)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if CORSPreflight(w, r, e) {
			return
		}
		rp.ServeHTTP(CORSResponseWriter(w, r, e), r)
	})
	for _, c := range []struct {
		host, path, origin string
		want               string
	}{
		{"api.example.com", "/pets/7", "https://app.example.com", "https://app.example.com"},
		{"api.example.com", "/pets/7", "https://evil.example", "*"}, // untouched: the upstream's own
		{"closed.example.com", "/x", "https://app.example.com", "*"},
		{"api.example.com", "/cats", "https://app.example.com", "*"},
		{"api.example.com", "/pets/7", "", "*"},
	} {
		r := httptest.NewRequest(http.MethodGet, c.path, nil)
		r.Host = c.host
		if c.origin != "" {
			r.Header.Set("Origin", c.origin)
		}
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, r)
		if got := rec.Header().Values("Access-Control-Allow-Origin"); len(got) != 1 || got[0] != c.want || rec.Code != 201 || rec.Body.String() != "body" || !rec.Flushed {
			t.Errorf("%s %s %q: %d %v %q flushed %v", c.host, c.path, c.origin, rec.Code, rec.Header(), rec.Body.String(), rec.Flushed)
		}
		allowed := c.want != "*"
		if allowed && (rec.Header().Get("Access-Control-Allow-Credentials") != "true" || rec.Header().Get("Access-Control-Expose-Headers") != "X-Request-Id") {
			t.Errorf("%s %s: %v", c.host, c.path, rec.Header())
		}
	}
	// A denial written without an upstream gets them too.
	r := httptest.NewRequest(http.MethodPut, "/pets/7", nil)
	r.Host, r.Header["Origin"] = "api.example.com", []string{"https://app.example.com"}
	rec := httptest.NewRecorder()
	w := CORSResponseWriter(rec, r, e)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusForbidden)
	_, _ = w.Write([]byte(`{"error":"denied"}`))
	if rec.Code != 403 || rec.Header().Get("Access-Control-Allow-Origin") != "https://app.example.com" {
		t.Fatalf("denial: %d %v", rec.Code, rec.Header())
	}
	if CORSResponseWriter(rec, r, nil) != rec {
		t.Fatal("wrapped without a bundle")
	}
}
