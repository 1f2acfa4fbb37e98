package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// The admin API client of the commands that talk to a running control
// plane (config diff/apply, decisions tail, policy replay): where it is,
// the credential, and the trust for https.

// adminClientFlags are the connection flags every client command takes.
type adminClientFlags struct {
	URL       string
	Token     string
	TokenFile string
	CAFile    string
	Timeout   time.Duration
}

// register adds the flags to fs. Their defaults come from the
// environment: GATEHOUSE_URL, GATEHOUSE_TOKEN.
func (f *adminClientFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.URL, "url", envOr("GATEHOUSE_URL", "http://127.0.0.1:8080"), "base URL of the control plane's admin API (env GATEHOUSE_URL)")
	fs.StringVar(&f.Token, "token", os.Getenv("GATEHOUSE_TOKEN"), "admin credential sent as a bearer token (env GATEHOUSE_TOKEN)")
	fs.StringVar(&f.TokenFile, "token-file", "", "read the admin credential from this file (default gatehouse-data/admin-token when --token is empty and the file exists)")
	fs.StringVar(&f.CAFile, "ca-file", "", "PEM file of the CA that signs the control plane's certificate (https)")
	fs.DurationVar(&f.Timeout, "timeout", 30*time.Second, "deadline of each API request")
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// client builds the adminClient of the flags.
func (f *adminClientFlags) client() (*adminClient, error) {
	token := f.Token
	file := f.TokenFile
	if token == "" && file == "" {
		if _, err := os.Stat("gatehouse-data/admin-token"); err == nil {
			file = "gatehouse-data/admin-token"
		}
	}
	if token == "" && file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("--token-file: %w", err)
		}
		token = strings.TrimSpace(string(b))
	}
	if token == "" {
		return nil, errors.New("no admin credential: pass --token, --token-file or set GATEHOUSE_TOKEN")
	}
	base := strings.TrimRight(f.URL, "/")
	if !strings.HasPrefix(base, "http://") && !strings.HasPrefix(base, "https://") {
		return nil, fmt.Errorf("--url %q: want an http:// or https:// URL", f.URL)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if f.CAFile != "" {
		pem, err := os.ReadFile(f.CAFile)
		if err != nil {
			return nil, fmt.Errorf("--ca-file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--ca-file %s: no PEM certificate", f.CAFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &adminClient{base: base, token: token, http: &http.Client{Transport: tr}, timeout: f.Timeout}, nil
}

// adminClient calls the admin API with a bearer credential.
type adminClient struct {
	base    string
	token   string
	http    *http.Client
	timeout time.Duration
}

// adminAPIError is an error answer of the admin API (its one error shape).
type adminAPIError struct {
	Status  int
	Message string         `json:"error"`
	Code    string         `json:"error_code"`
	Details map[string]any `json:"details"`
}

func (e *adminAPIError) Error() string {
	if e.Code == "" {
		return fmt.Sprintf("HTTP %d: %s", e.Status, e.Message)
	}
	return fmt.Sprintf("HTTP %d %s: %s", e.Status, e.Code, e.Message)
}

// adminResponse is a successful answer: status, headers and body.
type adminResponse struct {
	Status int
	Header http.Header
	Body   []byte
}

// do sends method path (relative to the base URL, starting with /) with
// the JSON encoding of body (none when nil) and extra headers. A 2xx is
// returned; anything else is an *adminAPIError.
func (c *adminClient) do(ctx context.Context, method, path string, body any, header http.Header) (*adminResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("%s %s: encode the body: %w", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return nil, fmt.Errorf("%s %s: read the answer: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		e := &adminAPIError{Status: resp.StatusCode}
		if json.Unmarshal(b, e) != nil || e.Message == "" {
			e.Message = strings.TrimSpace(string(b))
		}
		return nil, fmt.Errorf("%s %s: %w", method, path, e)
	}
	return &adminResponse{Status: resp.StatusCode, Header: resp.Header, Body: b}, nil
}

// getJSON is do(GET) decoding the answer into out.
func (c *adminClient) getJSON(ctx context.Context, path string, out any) error {
	r, err := c.do(ctx, http.MethodGet, path, nil, nil)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(r.Body, out); err != nil {
		return fmt.Errorf("GET %s: decode the answer: %w", path, err)
	}
	return nil
}
