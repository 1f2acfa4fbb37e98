package admin_test

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"io"
	"io/fs"
	"strings"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	yaml "go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/gatehouse-dev/gatehouse/envoy"
	"github.com/gatehouse-dev/gatehouse/internal/httpapi"
	"github.com/gatehouse-dev/gatehouse/model"
)

func unzip(t *testing.T, raw []byte) map[string]string {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(raw), int64(len(raw)))
	if err != nil {
		t.Fatalf("not a zip: %v", err)
	}
	out := map[string]string{}
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		out[f.Name] = string(b)
	}
	return out
}

func TestGatewayPackage(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	e.expect(e.do("POST", "/api/admin/acme/gateways", rootToken, map[string]any{"id": "edge", "name": "edge"}), 201)
	r := e.expect(e.do("GET", "/api/admin/acme/gateways/edge/package", rootToken, nil), 200)
	if r.header.Get("Content-Type") != "application/zip" || !strings.Contains(r.header.Get("Content-Disposition"), `filename="gatehouse-acme-edge.zip"`) {
		t.Fatalf("headers: %v", r.header)
	}
	files := unzip(t, r.body)
	for _, name := range []string{model.PackageEnvoyBootstrap, model.PackageAuthorizer, model.PackageEnv, model.PackagePublicKey, model.PackageReadme} {
		if files[name] == "" {
			t.Fatalf("package lacks %s: %v", name, files)
		}
	}
	var cfg model.AuthorizerConfig
	if err := yaml.Unmarshal([]byte(files[model.PackageAuthorizer]), &cfg); err != nil {
		t.Fatal(err)
	}
	keys := e.expect(e.do("GET", "/api/admin/acme/gateways/edge/keys", rootToken, nil), 200).json(t)["keys"].([]any)[0].(map[string]any)
	if cfg.ControlPlaneURL != "https://gh.example" || cfg.Tenant != "acme" || cfg.Gateway != "edge" || cfg.KeyID != keys["kid"] ||
		cfg.PublicKey != keys["public_key_pem"] || files[model.PackagePublicKey] != cfg.PublicKey || !strings.HasPrefix(cfg.Credential, "ghg_acme.") {
		t.Fatalf("authorizer config: %+v", cfg)
	}
	if !strings.Contains(files[model.PackageEnv], "GATEHOUSE_GATEWAY_CREDENTIAL="+cfg.Credential) {
		t.Fatalf(".env: %s", files[model.PackageEnv])
	}
	// The bootstrap is valid Envoy configuration pointing at our xDS.
	var y any
	if err := yaml.Unmarshal([]byte(files[model.PackageEnvoyBootstrap]), &y); err != nil {
		t.Fatal(err)
	}
	js, _ := jsonOf(y)
	var boot bootstrapv3.Bootstrap
	if err := protojson.Unmarshal(js, &boot); err != nil {
		t.Fatalf("bootstrap: %v", err)
	}
	if err := boot.ValidateAll(); err != nil {
		t.Fatalf("bootstrap invalid: %v", err)
	}
	if boot.Node.Id != "acme/edge" || !strings.Contains(files[model.PackageEnvoyBootstrap], "xds.example.com") {
		t.Fatalf("bootstrap node %q", boot.Node.Id)
	}
	// Envoy sends the package's credential on its ADS stream, so the
	// bootstrap is as secret as the authorizer's settings.
	md := boot.GetDynamicResources().GetAdsConfig().GetGrpcServices()[0].GetInitialMetadata()
	if len(md) != 1 || md[0].GetKey() != "authorization" || md[0].GetValue() != "Bearer "+cfg.Credential {
		t.Fatalf("ADS initial_metadata %v", md)
	}
	if m := modes(t, r.body); m[model.PackageEnvoyBootstrap] != 0o600 || m[model.PackageAuthorizer] != 0o600 || m[model.PackageEnv] != 0o600 {
		t.Fatalf("file modes %v", m)
	}
	// The minted credential works against the bundle service; each
	// download mints another; old ones are listed and can be revoked.
	deadline := time.Now().Add(10 * time.Second)
	for e.bundles.Get("acme", "edge") == nil && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	e.expect(e.fetchBundle("/api/system/acme/gateways/edge/opa/bundle", cfg.Credential, "If-None-Match", `"-"`), 200)
	second := e.expect(e.do("GET", "/api/admin/acme/gateways/edge/package", rootToken, nil), 200)
	var cfg2 model.AuthorizerConfig
	yaml.Unmarshal([]byte(unzip(t, second.body)[model.PackageAuthorizer]), &cfg2)
	if cfg2.Credential == cfg.Credential {
		t.Fatal("a second download must mint a new credential")
	}
	creds := e.expect(e.do("GET", "/api/admin/acme/gateways/edge/credentials", rootToken, nil), 200).json(t)["credentials"].([]any)
	if len(creds) != 3 { // created with the gateway + two downloads
		t.Fatalf("credentials: %v", creds)
	}
	e.expect(e.do("DELETE", "/api/admin/acme/gateways/edge/credentials/"+r.header.Get("X-Gateway-Credential-Id"), rootToken, nil), 204)
	e.expect(e.fetchBundle("/api/system/acme/gateways/edge/opa/bundle", cfg.Credential), 401)
	e.expect(e.fetchBundle("/api/system/acme/gateways/edge/opa/bundle", cfg2.Credential, "If-None-Match", `"-"`), 200)

	// A grpc gateway gets a gRPC xDS bootstrap instead.
	e.expect(e.do("POST", "/api/admin/acme/gateways", rootToken, map[string]any{"id": "mesh", "name": "mesh", "type": "grpc"}), 201)
	raw := e.expect(e.do("GET", "/api/admin/acme/gateways/mesh/package", rootToken, nil), 200).body
	g := unzip(t, raw)
	if !strings.Contains(g[model.PackageGRPCBootstrap], `"acme/mesh"`) || g[model.PackageEnvoyBootstrap] != "" {
		t.Fatalf("grpc package: %v", g)
	}
	// Its xDS channel credentials carry the package's credential.
	var gcfg model.AuthorizerConfig
	yaml.Unmarshal([]byte(g[model.PackageAuthorizer]), &gcfg)
	var gboot struct {
		XDSServers []struct {
			ChannelCreds []struct {
				Type   string            `json:"type"`
				Config map[string]string `json:"config"`
			} `json:"channel_creds"`
		} `json:"xds_servers"`
	}
	if err := json.Unmarshal([]byte(g[model.PackageGRPCBootstrap]), &gboot); err != nil {
		t.Fatal(err)
	}
	if cc := gboot.XDSServers[0].ChannelCreds; len(cc) != 1 || cc[0].Type != envoy.GRPCCredentialsType ||
		cc[0].Config["credential"] != gcfg.Credential || !strings.HasPrefix(gcfg.Credential, "ghg_acme.") {
		t.Fatalf("grpc bootstrap channel_creds %+v (credential %q)", cc, gcfg.Credential)
	}
	if m := modes(t, raw); m[model.PackageGRPCBootstrap] != 0o600 {
		t.Fatalf("file modes %v", m)
	}
	e.expect(e.do("GET", "/api/admin/acme/gateways/ghost/package", rootToken, nil), 404)
}

func TestGatewayPackageNeedsXDS(t *testing.T) {
	e := newEnvWith(t, nil)
	e.createTenant("acme")
	e.expect(e.do("POST", "/api/admin/acme/gateways", rootToken, map[string]any{"id": "edge", "name": "edge"}), 201)
	if r := e.do("GET", "/api/admin/acme/gateways/edge/package", rootToken, nil); r.status != 400 || r.errorCode(t) != httpapi.CodeInvalidRequest {
		t.Fatalf("package without xDS: %d %s", r.status, r.body)
	}
}

// modes returns the permission bits of a zip's files.
func modes(t *testing.T, raw []byte) map[string]fs.FileMode {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(raw), int64(len(raw)))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]fs.FileMode{}
	for _, f := range zr.File {
		out[f.Name] = f.Mode().Perm()
	}
	return out
}

// jsonOf converts a YAML-decoded value to JSON.
func jsonOf(v any) ([]byte, error) { return json.Marshal(v) }
