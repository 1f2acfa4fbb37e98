package main

import (
	"archive/zip"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/spf13/cobra"
	yaml "go.yaml.in/yaml/v3"

	"github.com/gatehouse-dev/gatehouse/gateway"
	"github.com/gatehouse-dev/gatehouse/gateway/token"
	"github.com/gatehouse-dev/gatehouse/internal/testkit/jwtkit"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/policies"
)

// writePackage writes a gateway package zip holding files.
func writePackage(t *testing.T, files map[string][]byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "package.zip")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	zw := zip.NewWriter(f)
	for name, body := range files {
		w, err := zw.Create(name)
		if err == nil {
			_, err = w.Write(body)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// defaults are the flag defaults load validates.
func defaults() authorizerConfig {
	return authorizerConfig{DecisionLogBufferBytes: gateway.DefaultDecisionLogBufferBytes,
		DecisionLogSpillBytes: gateway.DefaultDecisionLogSpillBytes, DecisionLogUploads: 4}
}

// What the admin API writes into a package (model.AuthorizerConfig under
// model.PackageAuthorizer) is what --package reads.
func TestPackageSettingsAreReadBack(t *testing.T) {
	want := model.AuthorizerConfig{ControlPlaneURL: "http://cp.example", Tenant: "acme", Gateway: "edge", Credential: "ghg_acme.c.s",
		KeyID: "k1", PublicKey: "-----BEGIN PUBLIC KEY-----\n", AuthzAddr: "127.0.0.1:9191", HTTPAddr: "127.0.0.1:9192",
		ControlPlaneCA: "-----BEGIN CERTIFICATE-----\n", ControlPlaneClientCertFile: "/etc/gw.pem", ControlPlaneClientKeyFile: "/etc/gw-key.pem"}
	raw, err := yaml.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	cfg := defaults()
	cfg.Package = writePackage(t, map[string][]byte{model.PackageAuthorizer: append([]byte("# a comment\n"), raw...),
		model.PackageEnv: []byte(want.EnvFile())})
	if err := cfg.load(&cobra.Command{}); err != nil {
		t.Fatal(err)
	}
	if cfg.AuthorizerConfig != want {
		t.Fatalf("read %+v, wrote %+v", cfg.AuthorizerConfig, want)
	}

	// A field the authorizer does not know is refused, as before.
	bad := defaults()
	bad.Package = writePackage(t, map[string][]byte{model.PackageAuthorizer: append(raw, []byte("surprise: 1\n")...)})
	if err := bad.load(&cobra.Command{}); err == nil {
		t.Fatal("an unknown field was accepted")
	}
	// A zip without the file names it.
	none := defaults()
	none.Package = writePackage(t, map[string][]byte{model.PackageReadme: []byte("hi")})
	if err := none.load(&cobra.Command{}); err == nil {
		t.Fatalf("a package without %s was accepted", model.PackageAuthorizer)
	}
}

// The .env of a package names the variables the authorizer reads.
func TestPackageEnvNamesTheAuthorizersVariables(t *testing.T) {
	known := map[string]bool{}
	for _, b := range authorizerEnv {
		known[b.env] = true
	}
	for _, env := range []string{model.EnvControlPlaneURL, model.EnvTenant, model.EnvGateway, model.EnvGatewayCredential,
		model.EnvBundleKeyID, model.EnvBundlePublicKeyFile, model.EnvAuthzAddr, model.EnvAuthorizerHTTPAddr,
		model.EnvControlPlaneCAFile, model.EnvControlPlaneClientCertFile, model.EnvControlPlaneClientKeyFile} {
		if !known[env] {
			t.Errorf("the package's .env sets %s, which gatehouse authorizer does not read", env)
		}
	}
}

// TestGCPercent: --gc-percent defaults to the authorizer's own target,
// gives way to a GOGC set in the environment unless given explicitly, and
// refuses a negative value.
func TestGCPercent(t *testing.T) {
	load := func(flag string) (authorizerConfig, error) {
		cmd := &cobra.Command{}
		cmd.Flags().Int("gc-percent", defaultGCPercent, "")
		cfg := defaults()
		cfg.GCPercent = defaultGCPercent
		cfg.ControlPlaneURL, cfg.Tenant, cfg.Gateway, cfg.Credential, cfg.KeyID = "http://cp.example", "acme", "edge", "ghg_acme.c.s", "k1"
		cfg.PublicKey = "-----BEGIN PUBLIC KEY-----\n"
		if flag != "" {
			if err := cmd.Flags().Set("gc-percent", flag); err != nil {
				t.Fatal(err)
			}
			cfg.GCPercent, _ = cmd.Flags().GetInt("gc-percent")
		}
		err := cfg.load(cmd)
		return cfg, err
	}
	t.Setenv("GOGC", "")
	if cfg, err := load(""); err != nil || cfg.GCPercent != defaultGCPercent {
		t.Fatalf("default: %d %v", cfg.GCPercent, err)
	}
	t.Setenv("GOGC", "150")
	if cfg, err := load(""); err != nil || cfg.GCPercent != 0 {
		t.Fatalf("GOGC set: %d %v (want 0: Go's setting kept)", cfg.GCPercent, err)
	}
	if cfg, err := load("300"); err != nil || cfg.GCPercent != 300 {
		t.Fatalf("explicit flag: %d %v", cfg.GCPercent, err)
	}
	if _, err := load("-5"); err == nil || !strings.Contains(err.Error(), "--gc-percent") {
		t.Fatalf("negative: %v", err)
	}
}

// TestTokenCacheFlags: the token cache bounds reach the verifier, and 0
// turns the cache off.
func TestTokenCacheFlags(t *testing.T) {
	signer, err := jwtkit.New("k")
	if err != nil {
		t.Fatal(err)
	}
	set, err := jwtkit.MarshalJWKS(signer)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := signer.Sign(jwt.MapClaims{"iss": "https://idp", "aud": "api", "exp": time.Now().Add(time.Hour).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	issuers := []policies.IssuerData{{ID: "idp", Issuer: "https://idp", Audiences: []string{"api"}, JWKS: string(set)}}
	for _, c := range []struct {
		cache tokenCache
		hits  uint64
	}{{defaultTokenCache, 2}, {tokenCache{}, 0}, {tokenCache{entries: 10, bytes: 0}, 0}} {
		v, err := tokenFactory(false, slog.New(slog.DiscardHandler), nil, c.cache)(context.Background(), issuers)
		if err != nil {
			t.Fatal(err)
		}
		for range 3 {
			if info := v.Info(context.Background(), "Bearer "+raw); !info.Valid {
				t.Fatal("the token is not valid")
			}
		}
		if got := v.(*token.Verifier).CacheStats().Hits; got != c.hits {
			t.Errorf("cache %+v: %d hits, want %d", c.cache, got, c.hits)
		}
		v.Close()
	}
}

// Without settings the authorizer names what is missing and every way to
// give it, --package included.
func TestMissingSettingsNameThePackage(t *testing.T) {
	cfg := defaults()
	err := cfg.load(&cobra.Command{})
	if err == nil {
		t.Fatal("no settings were accepted")
	}
	for _, want := range []string{"--control-plane-url", "--credential", "--config", "--package"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
}

// proxy_deny_body in gatehouse-authorizer.yaml sets --proxy-deny-body
// unless the flag is given; absent, the flag's default (on) holds.
func TestProxyDenyBodySetting(t *testing.T) {
	for _, tc := range []struct {
		file string
		flag string
		want bool
	}{
		{"", "", true},
		{"proxy_deny_body: false\n", "", false},
		{"proxy_deny_body: false\n", "true", true},
		{"", "false", false},
	} {
		cmd := &cobra.Command{}
		cfg := defaults()
		cmd.Flags().BoolVar(&cfg.ProxyDenyBody, "proxy-deny-body", true, "")
		if tc.flag != "" {
			if err := cmd.Flags().Set("proxy-deny-body", tc.flag); err != nil {
				t.Fatal(err)
			}
		}
		path := filepath.Join(t.TempDir(), "authorizer.yaml")
		body := "control_plane_url: http://127.0.0.1:1\ntenant: acme\ngateway: edge\ncredential: ghg_x\nkey_id: k\npublic_key: pem\n" + tc.file
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg.ConfigFile = path
		if err := cfg.load(cmd); err != nil {
			t.Fatal(err)
		}
		if cfg.ProxyDenyBody != tc.want {
			t.Errorf("file %q, flag %q: proxy deny body %v, want %v", tc.file, tc.flag, cfg.ProxyDenyBody, tc.want)
		}
	}
}
