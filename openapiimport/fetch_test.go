package openapiimport

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestCheckURL(t *testing.T) {
	for _, ok := range []string{"http://example.com/spec.yaml", "https://example.com:8443/a?b=c"} {
		if _, err := CheckURL(ok); err != nil {
			t.Errorf("CheckURL(%q): %v", ok, err)
		}
	}
	for raw, want := range map[string]string{
		"ftp://files.example.com/spec.yaml": `only http and https URLs can be imported, not "ftp"`,
		"file:///etc/passwd":                `not "file"`,
		"not a url":                         `not ""`,
		"http:///path":                      "the URL has no host",
		"http://[::1":                       "not a valid URL",
	} {
		_, err := CheckURL(raw)
		var ue *URLError
		if !errors.As(err, &ue) || !strings.Contains(ue.Reason, want) {
			t.Errorf("CheckURL(%q) = %v, want a *URLError with %q", raw, err, want)
		}
	}
}

func TestFetch(t *testing.T) {
	doc := []byte("openapi: 3.0.3\n")
	mux := http.NewServeMux()
	mux.HandleFunc("/spec.yaml", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("User-Agent") != "gatehouse-openapi-import" {
			http.Error(w, "who are you", http.StatusBadRequest)
			return
		}
		w.Write(doc)
	})
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/spec.yaml", http.StatusFound) })
	mux.HandleFunc("/to-ftp", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "ftp://x/spec.yaml", http.StatusFound)
	})
	mux.HandleFunc("/loop", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/loop", http.StatusFound) })
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) { w.Write(bytes.Repeat([]byte("#"), MaxDocumentSize+1)) })
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	ctx := context.Background()

	// Loopback is refused unless allowed, on the dialed address.
	_, err := (&Fetcher{}).Fetch(ctx, srv.URL+"/spec.yaml")
	var ue *URLError
	if !errors.As(err, &ue) || !strings.Contains(ue.Reason, "loopback") || !strings.Contains(ue.Reason, "--import-allow-private-urls") {
		t.Fatalf("loopback: %v", err)
	}

	f := &Fetcher{AllowPrivate: true, Timeout: 2 * time.Second}
	for _, path := range []string{"/spec.yaml", "/redirect"} {
		if got, err := f.Fetch(ctx, srv.URL+path); err != nil || !bytes.Equal(got, doc) {
			t.Fatalf("%s: %q %v", path, got, err)
		}
	}
	for path, want := range map[string]string{"/to-ftp": "redirected to ftp://x/spec.yaml", "/big": "larger than"} {
		if _, err := f.Fetch(ctx, srv.URL+path); !errors.As(err, &ue) || !strings.Contains(ue.Reason, want) {
			t.Errorf("%s: %v, want a *URLError with %q", path, err, want)
		}
	}
	var fe *FetchError
	for path, want := range map[string]string{"/missing": "HTTP 404", "/loop": "stopped after 5 redirects"} {
		if _, err := f.Fetch(ctx, srv.URL+path); !errors.As(err, &fe) || !strings.Contains(fe.Reason, want) || fe.URL != srv.URL+path {
			t.Errorf("%s: %v, want a *FetchError with %q", path, err, want)
		}
	}
	start := time.Now()
	short := &Fetcher{AllowPrivate: true, Timeout: 200 * time.Millisecond}
	if _, err := short.Fetch(ctx, srv.URL+"/slow"); !errors.As(err, &fe) || !strings.Contains(fe.Reason, "no complete answer within 200ms") {
		t.Fatalf("slow: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("the slow fetch took %s", d)
	}
	// Credentials in the URL are not repeated in errors.
	if _, err := f.Fetch(ctx, strings.Replace(srv.URL, "http://", "http://user:secret@", 1)+"/missing"); !errors.As(err, &fe) || strings.Contains(err.Error(), "secret") {
		t.Fatalf("redacted: %v", err)
	}
}
