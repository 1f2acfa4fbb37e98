package main

import (
	"bytes"
	"cmp"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
	"github.com/spf13/cobra"

	"github.com/gatehouse-dev/gatehouse/admin"
	"github.com/gatehouse-dev/gatehouse/internal/tlsfiles"
)

// devTokenLabel marks the token issuers dev-token manages; it never
// changes an issuer without it.
const devTokenLabel = "dev-token"

// devTokenReserved are the claims dev-token sets from its own flags.
var devTokenReserved = []string{"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "scope"}

// devTokenOptions are the settings of one `gatehouse dev-token`.
type devTokenOptions struct {
	URL      string // the admin API's base URL
	Token    string // admin token; empty: GATEHOUSE_ADMIN_TOKEN, else <DataDir>/admin-token
	DataDir  string
	CAFile   string // CA bundle of an https admin API
	Tenant   string
	IssuerID string
	Issuer   string // the tokens' iss
	KeyFile  string // the signing key (created when absent); empty: <DataDir>/dev-token-key.pem
	Subject  string
	Audience []string
	Scopes   []string
	TTL      time.Duration
	Claims   []string // k=v, v as JSON when it parses, else a string
	Now      func() time.Time
}

func newDevTokenCommand(stdout, stderr io.Writer) *cobra.Command {
	o := devTokenOptions{}
	env := []envFlag{
		{"url", "GATEHOUSE_URL"},
		{"data-dir", "GATEHOUSE_DATA_DIR"},
		{"tenant", "GATEHOUSE_TENANT"},
		{"key-file", "GATEHOUSE_DEV_TOKEN_KEY_FILE"},
		{"ca-file", "GATEHOUSE_CA_FILE"},
	}
	cmd := &cobra.Command{
		Use:   "dev-token",
		Short: "Print a signed JWT of a local development issuer (development only)",
		Long: `Print a signed JWT (ES256) that the tenant's gateways accept, for trying
Gatehouse out before a real identity provider is configured.

On first use it writes an ECDSA P-256 key to --key-file (mode 0600; later
runs reuse it) and creates, through the admin API of a running gatehouse
serve or control-plane (--url), a token issuer --issuer-id in --tenant
whose inline JWK Set holds the key's public half (nothing is ever fetched).
Later runs add the key or a new --aud to that issuer when it lacks them,
and never touch an issuer dev-token did not create (label dev-token=true).
The token goes to stdout; it carries iss, sub, aud, iat, nbf, exp (now +
--ttl), jti, scope (the --scope values, space-separated) and every --claim.

The admin token is --token, else GATEHOUSE_ADMIN_TOKEN, else the file
<data-dir>/admin-token that serve generated.

For development only: whoever holds the key file mints any token the
tenant's gateways accept. Delete the issuer (DELETE
/api/admin/{tid}/issuers/dev-token) before production traffic.`,
		Example: `  JWT=$(bin/gatehouse dev-token --tenant acme --aud pets-api --scope pets:read)
  curl -H "Authorization: Bearer $JWT" …`,
		Args: cobra.NoArgs,
		PreRunE: func(cmd *cobra.Command, args []string) error {
			return bindEnv(cmd.Flags(), env)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			tok, err := runDevToken(cmd.Context(), o, stderr)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(stdout, tok)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.URL, "url", "http://127.0.0.1:8080", "base URL of the admin API")
	f.StringVar(&o.Token, "token", "", "admin token (system-wide or bound to --tenant; default GATEHOUSE_ADMIN_TOKEN, else <data-dir>/admin-token)")
	f.StringVar(&o.DataDir, "data-dir", "./gatehouse-data", "serve's data directory: where the generated admin token is read from")
	f.StringVar(&o.CAFile, "ca-file", "", "PEM CA bundle an https admin API's certificate is verified against (default: the system's roots)")
	f.StringVar(&o.Tenant, "tenant", "", "the tenant whose gateways accept the token (required)")
	f.StringVar(&o.IssuerID, "issuer-id", "dev-token", "id of the token issuer dev-token creates and keeps up to date")
	f.StringVar(&o.Issuer, "issuer", "https://dev-token.gatehouse.invalid", "the issuer URL (iss) of the tokens; an identifier only, never fetched")
	f.StringVar(&o.KeyFile, "key-file", "", "the signing key, PEM (created with mode 0600 when absent; default <data-dir>/dev-token-key.pem)")
	f.StringVar(&o.Subject, "sub", "dev-user", "the token's subject")
	f.StringArrayVar(&o.Audience, "aud", []string{"gatehouse-dev"}, "the token's audience (repeat for several; added to the issuer's audiences)")
	f.StringArrayVar(&o.Scopes, "scope", nil, "a scope of the token (repeat, or give several separated by spaces)")
	f.DurationVar(&o.TTL, "ttl", time.Hour, "how long the token is valid")
	f.StringArrayVar(&o.Claims, "claim", nil, `another claim, name=value (repeat); the value is JSON when it parses as JSON (1, true, ["a","b"], {"k":"v"}), else a string`)
	annotateEnv(f, env)
	return cmd
}

// runDevToken makes sure the issuer exists with the key and audiences,
// then returns a signed token.
func runDevToken(ctx context.Context, o devTokenOptions, stderr io.Writer) (string, error) {
	claims, err := o.claims()
	if err != nil {
		return "", err
	}
	token, err := o.adminToken()
	if err != nil {
		return "", err
	}
	base, err := url.Parse(strings.TrimSuffix(o.URL, "/"))
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return "", fmt.Errorf("--url %q: must be an http(s) URL such as http://127.0.0.1:8080", o.URL)
	}
	keyFile := cmp.Or(o.KeyFile, filepath.Join(o.DataDir, "dev-token-key.pem"))
	key, created, err := loadOrCreateDevKey(keyFile)
	if err != nil {
		return "", err
	}
	jwk := jose.JSONWebKey{Key: key.Public(), Algorithm: "ES256", Use: "sig"}
	thumb, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("key thumbprint: %w", err)
	}
	jwk.KeyID = base64.RawURLEncoding.EncodeToString(thumb)
	if created {
		fmt.Fprintf(stderr, "dev-token: wrote a new signing key to %s (mode 0600)\n", keyFile)
	}

	c := &devTokenClient{base: base.String(), token: token, tenant: o.Tenant, id: o.IssuerID}
	if base.Scheme == "https" || o.CAFile != "" {
		cfg, err := tlsfiles.ClientConfig(o.CAFile, "", "")
		if err != nil {
			return "", fmt.Errorf("--ca-file: %w", err)
		}
		c.http = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
	} else {
		c.http = &http.Client{Timeout: 30 * time.Second}
	}
	action, err := c.ensureIssuer(ctx, o.Issuer, o.Audience, jwk)
	if err != nil {
		return "", err
	}
	if action != "" {
		fmt.Fprintf(stderr, "dev-token: %s token issuer %q of tenant %q (iss %s, key %s); for development only\n", action, o.IssuerID, o.Tenant, o.Issuer, jwk.KeyID)
	}

	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	t := now()
	jti := make([]byte, 12)
	if _, err := rand.Read(jti); err != nil {
		return "", err
	}
	claims["iss"] = o.Issuer
	claims["sub"] = o.Subject
	if len(o.Audience) == 1 {
		claims["aud"] = o.Audience[0]
	} else {
		claims["aud"] = o.Audience
	}
	claims["iat"] = t.Unix()
	claims["nbf"] = t.Unix()
	claims["exp"] = t.Add(o.TTL).Unix()
	claims["jti"] = base64.RawURLEncoding.EncodeToString(jti)
	if scopes := o.scopes(); len(scopes) > 0 {
		claims["scope"] = strings.Join(scopes, " ")
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, claims)
	tok.Header["kid"] = jwk.KeyID
	return tok.SignedString(key)
}

// claims checks the flags and parses --claim.
func (o devTokenOptions) claims() (jwt.MapClaims, error) {
	switch {
	case o.Tenant == "":
		return nil, errors.New("--tenant is required")
	case o.IssuerID == "":
		return nil, errors.New("--issuer-id must not be empty")
	case o.Issuer == "":
		return nil, errors.New("--issuer must not be empty")
	case o.TTL <= 0:
		return nil, fmt.Errorf("--ttl %s: must be positive", o.TTL)
	case len(o.Audience) == 0 || slices.Contains(o.Audience, ""):
		return nil, errors.New("--aud must not be empty")
	}
	claims := jwt.MapClaims{}
	for _, kv := range o.Claims {
		name, value, ok := strings.Cut(kv, "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("--claim %q: want name=value", kv)
		}
		if slices.Contains(devTokenReserved, name) {
			return nil, fmt.Errorf("--claim %s: set by dev-token itself (use --sub, --aud, --scope, --ttl, --issuer)", name)
		}
		var v any = value
		if json.Valid([]byte(value)) {
			dec := json.NewDecoder(strings.NewReader(value))
			dec.UseNumber()
			if err := dec.Decode(&v); err != nil {
				return nil, fmt.Errorf("--claim %s: %w", name, err)
			}
		}
		claims[name] = v
	}
	return claims, nil
}

// scopes are the --scope values split on spaces.
func (o devTokenOptions) scopes() []string {
	var out []string
	for _, s := range o.Scopes {
		out = append(out, strings.Fields(s)...)
	}
	return out
}

// adminToken is --token, else GATEHOUSE_ADMIN_TOKEN, else serve's
// generated token file.
func (o devTokenOptions) adminToken() (string, error) {
	if o.Token != "" {
		return o.Token, nil
	}
	if v := os.Getenv("GATEHOUSE_ADMIN_TOKEN"); v != "" {
		return v, nil
	}
	path := filepath.Join(o.DataDir, admin.BootstrapTokenFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("no admin token: give --token, set GATEHOUSE_ADMIN_TOKEN, or point --data-dir at serve's data directory (%w)", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("no admin token: %s is empty", path)
	}
	return tok, nil
}

// loadOrCreateDevKey reads the ECDSA P-256 key in path, or writes a new
// one there (mode 0600) when the file does not exist.
func loadOrCreateDevKey(path string) (*ecdsa.PrivateKey, bool, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		info, err := os.Stat(path)
		if err != nil {
			return nil, false, err
		}
		if info.Mode().Perm()&0o077 != 0 {
			return nil, false, fmt.Errorf("key file %s is readable by others (mode %v); chmod 600 it", path, info.Mode().Perm())
		}
		block, _ := pem.Decode(b)
		if block == nil || block.Type != "PRIVATE KEY" {
			return nil, false, fmt.Errorf("key file %s: not a PEM PRIVATE KEY", path)
		}
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, false, fmt.Errorf("key file %s: %w", path, err)
		}
		ec, ok := k.(*ecdsa.PrivateKey)
		if !ok || ec.Curve != elliptic.P256() {
			return nil, false, fmt.Errorf("key file %s: not an ECDSA P-256 key", path)
		}
		return ec, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, err
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, false, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, false, err
	}
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, false, err
		}
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, false, fmt.Errorf("write key file: %w", err)
	}
	if err := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		f.Close()
		return nil, false, err
	}
	if err := f.Close(); err != nil {
		return nil, false, err
	}
	return k, true, nil
}

// devTokenClient talks to the admin API about one issuer.
type devTokenClient struct {
	http        *http.Client
	base, token string
	tenant, id  string
}

func (c *devTokenClient) do(ctx context.Context, method, path string, body any, header map[string]string) (*http.Response, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := c.http.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	return res, b, err
}

// ensureIssuer creates the issuer, or adds the key, the audiences and the
// issuer URL to it; it says what it did ("" when nothing changed).
func (c *devTokenClient) ensureIssuer(ctx context.Context, issuer string, audiences []string, jwk jose.JSONWebKey) (string, error) {
	path := "/api/admin/" + url.PathEscape(c.tenant) + "/issuers"
	item := path + "/" + url.PathEscape(c.id)
	for attempt := 0; ; attempt++ {
		res, body, err := c.do(ctx, http.MethodGet, item, nil, nil)
		if err != nil {
			return "", fmt.Errorf("GET %s: %w", item, err)
		}
		switch res.StatusCode {
		case http.StatusNotFound:
			var e struct {
				Details struct {
					Kind string `json:"kind"`
				} `json:"details"`
			}
			if json.Unmarshal(body, &e) == nil && e.Details.Kind == "tenant" {
				return "", apiError("GET", item, res, body) // no such tenant: nothing to create
			}
			create := map[string]any{
				"id": c.id, "name": c.id, "issuer": issuer, "audiences": audiences,
				"description": "development only: tokens minted by gatehouse dev-token",
				"jwks":        jose.JSONWebKeySet{Keys: []jose.JSONWebKey{jwk}},
				"labels":      map[string]string{devTokenLabel: "true"},
			}
			res, body, err := c.do(ctx, http.MethodPost, path, create, nil)
			if err != nil {
				return "", fmt.Errorf("POST %s: %w", path, err)
			}
			if res.StatusCode == http.StatusConflict && attempt < 2 {
				continue // created meanwhile? read it again
			}
			if res.StatusCode != http.StatusCreated && res.StatusCode != http.StatusOK {
				return "", apiError("POST", path, res, body)
			}
			return "created", nil
		case http.StatusOK:
		default:
			return "", apiError("GET", item, res, body)
		}
		var current map[string]any
		if err := json.Unmarshal(body, &current); err != nil {
			return "", fmt.Errorf("GET %s: %w", item, err)
		}
		if labels, _ := current["labels"].(map[string]any); labels[devTokenLabel] != "true" {
			return "", fmt.Errorf("token issuer %q of tenant %q was not created by dev-token (no label %s=true): give another --issuer-id", c.id, c.tenant, devTokenLabel)
		}
		var set jose.JSONWebKeySet
		if raw, ok := current["jwks"]; ok && raw != nil {
			b, _ := json.Marshal(raw)
			if err := json.Unmarshal(b, &set); err != nil {
				return "", fmt.Errorf("issuer %q: its jwks: %w", c.id, err)
			}
		}
		changed := false
		if len(set.Key(jwk.KeyID)) == 0 {
			set.Keys = append(set.Keys, jwk)
			changed = true
		}
		var have []string
		if list, ok := current["audiences"].([]any); ok {
			for _, a := range list {
				if s, ok := a.(string); ok {
					have = append(have, s)
				}
			}
		}
		for _, a := range audiences {
			if !slices.Contains(have, a) {
				have = append(have, a)
				changed = true
			}
		}
		if current["issuer"] != issuer {
			current["issuer"] = issuer
			changed = true
		}
		if !changed {
			return "", nil
		}
		current["jwks"], current["audiences"] = set, have
		delete(current, "jwks_uri")
		current["discovery"] = false
		res, body, err = c.do(ctx, http.MethodPut, item, current, map[string]string{"If-Match": res.Header.Get("ETag")})
		if err != nil {
			return "", fmt.Errorf("PUT %s: %w", item, err)
		}
		if res.StatusCode == http.StatusPreconditionFailed && attempt < 2 {
			continue // changed meanwhile: read it again
		}
		if res.StatusCode != http.StatusOK {
			return "", apiError("PUT", item, res, body)
		}
		return "updated", nil
	}
}

// apiError names the call and carries the admin API's error body.
func apiError(method, path string, res *http.Response, body []byte) error {
	return fmt.Errorf("%s %s: %s: %s", method, path, res.Status, strings.TrimSpace(string(body)))
}
