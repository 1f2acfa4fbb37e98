package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/gateway/token"
)

// fakeIssuers is the part of the admin API dev-token uses: one tenant's
// issuers, GET/POST/PUT with the bearer token, ETag and If-Match, and the
// admin API's error shape.
type fakeIssuers struct {
	t      *testing.T
	token  string
	tenant string
	mu     sync.Mutex
	items  map[string]map[string]any
	rev    int
	calls  []string
}

func newFakeIssuers(t *testing.T) (*fakeIssuers, *httptest.Server) {
	f := &fakeIssuers{t: t, token: "admin-token-0123456789", tenant: "acme", items: map[string]map[string]any{}}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

func (f *fakeIssuers) fail(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"status_code":%d,"error":%q,"error_code":%q,"details":{}}`, status, msg, code)
}

func (f *fakeIssuers) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, r.Method+" "+r.URL.Path)
	if r.Header.Get("Authorization") != "Bearer "+f.token {
		f.fail(w, 401, "unauthorized", "a valid bearer token is required")
		return
	}
	prefix := "/api/admin/" + f.tenant + "/issuers"
	if !strings.HasPrefix(r.URL.Path, prefix) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(404)
		fmt.Fprint(w, `{"status_code":404,"error":"tenant not found","error_code":"not_found","details":{"id":"other","kind":"tenant"}}`)
		return
	}
	id := strings.TrimPrefix(strings.TrimPrefix(r.URL.Path, prefix), "/")
	write := func(status int, item map[string]any) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("ETag", fmt.Sprintf(`"%v"`, item["metadata"].(map[string]any)["revision"]))
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(item)
	}
	var body map[string]any
	if r.Method == http.MethodPost || r.Method == http.MethodPut {
		if r.Header.Get("Content-Type") != "application/json" {
			f.fail(w, 415, "unsupported_media_type", "send application/json")
			return
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			f.fail(w, 400, "invalid_json", err.Error())
			return
		}
	}
	switch {
	case r.Method == http.MethodGet && id != "":
		item, ok := f.items[id]
		if !ok {
			f.fail(w, 404, "not_found", "issuer not found")
			return
		}
		write(200, item)
	case r.Method == http.MethodPost && id == "":
		id, _ := body["id"].(string)
		if _, ok := f.items[id]; ok {
			f.fail(w, 409, "already_exists", "id: exists")
			return
		}
		f.rev++
		body["metadata"] = map[string]any{"revision": f.rev}
		f.items[id] = body
		write(201, body)
	case r.Method == http.MethodPut && id != "":
		item, ok := f.items[id]
		if !ok {
			f.fail(w, 404, "not_found", "issuer not found")
			return
		}
		if r.Header.Get("If-Match") != fmt.Sprintf(`"%v"`, item["metadata"].(map[string]any)["revision"]) {
			f.fail(w, 412, "precondition_failed", "stale revision")
			return
		}
		f.rev++
		body["metadata"] = map[string]any{"revision": f.rev}
		f.items[id] = body
		write(200, body)
	default:
		f.fail(w, 405, "method_not_allowed", r.Method)
	}
}

func (f *fakeIssuers) issuer(id string) map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, _ := json.Marshal(f.items[id])
	var out map[string]any
	_ = json.Unmarshal(b, &out)
	return out
}

func (f *fakeIssuers) writes() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, c := range f.calls {
		if !strings.HasPrefix(c, "GET ") {
			out = append(out, c)
		}
	}
	return out
}

func execDevToken(t *testing.T, env map[string]string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	for _, k := range []string{"GATEHOUSE_URL", "GATEHOUSE_DATA_DIR", "GATEHOUSE_TENANT", "GATEHOUSE_DEV_TOKEN_KEY_FILE", "GATEHOUSE_CA_FILE", "GATEHOUSE_ADMIN_TOKEN"} {
		t.Setenv(k, env[k])
	}
	var out, errOut bytes.Buffer
	root := newRootCommand(&out, &errOut)
	root.SetArgs(append([]string{"dev-token"}, args...))
	err = root.ExecuteContext(context.Background())
	return out.String(), errOut.String(), err
}

// verifierOf is the authorizer's token verifier for the issuer as the
// admin API stored it.
func verifierOf(t *testing.T, item map[string]any) *token.Verifier {
	t.Helper()
	jwks, err := json.Marshal(item["jwks"])
	if err != nil {
		t.Fatal(err)
	}
	var auds []string
	for _, a := range item["audiences"].([]any) {
		auds = append(auds, a.(string))
	}
	v, err := token.New([]token.Issuer{{ID: item["id"].(string), Issuer: item["issuer"].(string), Audiences: auds, JWKS: jwks}}, token.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	return v
}

func TestDevTokenMintsATokenTheGatewayAccepts(t *testing.T) {
	fake, srv := newFakeIssuers(t)
	dataDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dataDir, "admin-token"), []byte(fake.token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"GATEHOUSE_URL": srv.URL, "GATEHOUSE_DATA_DIR": dataDir}
	out, stderr, err := execDevToken(t, env, "--tenant", "acme", "--aud", "pets-api", "--scope", "pets:read pets:list", "--scope", "admin",
		"--sub", "alice", "--ttl", "10m", "--claim", `roles=["admin","ops"]`, "--claim", "tier=2", "--claim", "team=blue")
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	if !strings.Contains(stderr, `created token issuer "dev-token" of tenant "acme"`) || !strings.Contains(stderr, "development only") {
		t.Fatalf("stderr: %s", stderr)
	}
	keyFile := filepath.Join(dataDir, "dev-token-key.pem")
	info, err := os.Stat(keyFile)
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", info, err)
	}
	item := fake.issuer("dev-token")
	if item["labels"].(map[string]any)["dev-token"] != "true" || item["issuer"] != "https://dev-token.gatehouse.invalid" ||
		fmt.Sprint(item["audiences"]) != "[pets-api]" || len(item["jwks"].(map[string]any)["keys"].([]any)) != 1 {
		t.Fatalf("the issuer: %v", item)
	}
	if strings.Contains(fmt.Sprint(item["jwks"]), " d:") {
		t.Fatalf("the JWK Set holds private material: %v", item["jwks"])
	}

	raw := strings.TrimSpace(out)
	if strings.Count(raw, ".") != 2 || strings.Contains(out[:len(out)-1], "\n") {
		t.Fatalf("stdout is not one token: %q", out)
	}
	tok, err := verifierOf(t, item).Check(context.Background(), "Bearer "+raw)
	if err != nil || !tok.Valid {
		t.Fatalf("the authorizer's verifier refuses the token: %v", err)
	}
	if tok.Subject != "alice" || fmt.Sprint(tok.Scopes) != "[pets:read pets:list admin]" ||
		fmt.Sprint(tok.Claims["roles"]) != "[admin ops]" || fmt.Sprint(tok.Claims["tier"]) != "2" || tok.Claims["team"] != "blue" {
		t.Fatalf("token: %+v", tok)
	}
	exp, _ := tok.Claims["exp"].(json.Number).Int64()
	if d := time.Until(time.Unix(exp, 0)); d < 9*time.Minute || d > 11*time.Minute {
		t.Fatalf("exp is %s away, want --ttl 10m", d)
	}

	// Later runs reuse the key and leave the issuer alone when it has
	// what they need; a new audience is added with If-Match.
	before, _ := os.ReadFile(keyFile)
	writes := len(fake.writes())
	if _, stderr, err := execDevToken(t, env, "--tenant", "acme", "--aud", "pets-api"); err != nil || stderr != "" {
		t.Fatalf("second run: %v %q", err, stderr)
	}
	if after, _ := os.ReadFile(keyFile); !bytes.Equal(before, after) || len(fake.writes()) != writes {
		t.Fatalf("second run rewrote the key or the issuer: %v", fake.writes())
	}
	out, stderr, err = execDevToken(t, env, "--tenant", "acme", "--aud", "orders-api")
	if err != nil || !strings.Contains(stderr, "updated token issuer") {
		t.Fatalf("new audience: %v %q", err, stderr)
	}
	item = fake.issuer("dev-token")
	if fmt.Sprint(item["audiences"]) != "[pets-api orders-api]" || len(item["jwks"].(map[string]any)["keys"].([]any)) != 1 {
		t.Fatalf("after a new audience: %v", item)
	}
	if tok, err := verifierOf(t, item).Check(context.Background(), "Bearer "+strings.TrimSpace(out)); err != nil || tok.Subject != "dev-user" {
		t.Fatalf("token of the new audience: %+v %v", tok, err)
	}

	// Another key file adds its key beside the first: both mint valid tokens.
	other := filepath.Join(t.TempDir(), "k", "other.pem")
	out, _, err = execDevToken(t, map[string]string{"GATEHOUSE_URL": srv.URL, "GATEHOUSE_ADMIN_TOKEN": fake.token},
		"--tenant", "acme", "--aud", "pets-api", "--key-file", other, "--data-dir", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	item = fake.issuer("dev-token")
	if n := len(item["jwks"].(map[string]any)["keys"].([]any)); n != 2 {
		t.Fatalf("keys after a second key file: %d", n)
	}
	if _, err := verifierOf(t, item).Check(context.Background(), "Bearer "+strings.TrimSpace(out)); err != nil {
		t.Fatal(err)
	}
}

func TestDevTokenRefusals(t *testing.T) {
	fake, srv := newFakeIssuers(t)
	fake.items["idp"] = map[string]any{"id": "idp", "issuer": "https://idp.example.com", "audiences": []any{"a"}, "discovery": true,
		"labels": map[string]any{}, "metadata": map[string]any{"revision": 1}}
	env := map[string]string{"GATEHOUSE_URL": srv.URL, "GATEHOUSE_ADMIN_TOKEN": fake.token, "GATEHOUSE_DATA_DIR": t.TempDir()}
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{}, env, "--tenant is required"},
		{[]string{"--tenant", "acme", "--claim", "exp=1"}, env, "--claim exp: set by dev-token itself"},
		{[]string{"--tenant", "acme", "--claim", "novalue"}, env, `want name=value`},
		{[]string{"--tenant", "acme", "--ttl", "-1m"}, env, "--ttl -1m0s: must be positive"},
		{[]string{"--tenant", "acme", "--issuer-id", "idp"}, env, `token issuer "idp" of tenant "acme" was not created by dev-token`},
		{[]string{"--tenant", "other"}, env, `404 Not Found: {"status_code":404,"error":"tenant not found"`},
		{[]string{"--tenant", "acme", "--token", "wrong-token-0123456789"}, env, `401 Unauthorized: {"status_code":401`},
		{[]string{"--tenant", "acme"}, map[string]string{"GATEHOUSE_URL": srv.URL, "GATEHOUSE_DATA_DIR": t.TempDir()}, "no admin token: give --token"},
		{[]string{"--tenant", "acme", "--url", "ftp://x"}, env, `--url "ftp://x": must be an http(s) URL`},
	} {
		_, _, err := execDevToken(t, tc.env, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("dev-token %v: %v, want %q", tc.args, err, tc.want)
		}
	}
	if w := fake.writes(); len(w) != 0 {
		t.Fatalf("refused runs wrote: %v", w)
	}
	if fake.issuer("idp")["discovery"] != true {
		t.Fatal("a foreign issuer was changed")
	}

	// A key file others can read is refused, not used.
	keyFile := filepath.Join(t.TempDir(), "key.pem")
	if _, _, err := execDevToken(t, env, "--tenant", "acme", "--key-file", keyFile); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(keyFile, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := execDevToken(t, env, "--tenant", "acme", "--key-file", keyFile); err == nil || !strings.Contains(err.Error(), "readable by others") {
		t.Fatalf("a 0644 key file: %v", err)
	}
	if err := os.WriteFile(keyFile, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(keyFile, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := execDevToken(t, env, "--tenant", "acme", "--key-file", keyFile); err == nil || !strings.Contains(err.Error(), "not a PEM PRIVATE KEY") {
		t.Fatalf("a broken key file: %v", err)
	}
}
