package admin_test

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	yaml "go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/gatehouse-dev/gatehouse/admin"
	"github.com/gatehouse-dev/gatehouse/envoy"
	"github.com/gatehouse-dev/gatehouse/internal/httpapi"
	"github.com/gatehouse-dev/gatehouse/internal/tlsfiles"
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

// tlsPackageEnv is an admin API whose control plane serves TLS, with the
// CA bundle of gateway packages taken from a development CA.
func tlsPackageEnv(t *testing.T) (*env, string) {
	t.Helper()
	dir := t.TempDir()
	if err := tlsfiles.DevCerts(tlsfiles.DevCertOptions{Dir: dir}); err != nil {
		t.Fatal(err)
	}
	ca, err := os.ReadFile(filepath.Join(dir, tlsfiles.DevCAFile))
	if err != nil {
		t.Fatal(err)
	}
	e := newEnvWith(t, func(o *admin.Options) {
		o.XDSPublicAddress, o.XDSTLS = "xds.example.com:18000", true
		o.PackageCA = func() (string, error) { return string(ca), nil }
	})
	e.createTenant("acme")
	e.expect(e.do("POST", "/api/admin/acme/gateways", rootToken, map[string]any{"id": "edge", "name": "edge"}), 201)
	return e, string(ca)
}

// xdsClusterTLS returns the UpstreamTlsContext of a package bootstrap's
// xDS cluster (nil when it has none).
func xdsClusterTLS(t *testing.T, bootYAML string) *tlsv3.UpstreamTlsContext {
	t.Helper()
	var y any
	if err := yaml.Unmarshal([]byte(bootYAML), &y); err != nil {
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
	for _, c := range boot.GetStaticResources().GetClusters() {
		if c.GetName() != envoy.XDSClusterName {
			continue
		}
		if c.GetTransportSocket() == nil {
			return nil
		}
		ctx := &tlsv3.UpstreamTlsContext{}
		if err := c.GetTransportSocket().GetTypedConfig().UnmarshalTo(ctx); err != nil {
			t.Fatal(err)
		}
		return ctx
	}
	t.Fatal("no xDS cluster in the bootstrap")
	return nil
}

func TestGatewayPackageCarriesTrust(t *testing.T) {
	e, ca := tlsPackageEnv(t)
	files := unzip(t, e.expect(e.do("GET", "/api/admin/acme/gateways/edge/package", rootToken, nil), 200).body)
	var cfg model.AuthorizerConfig
	if err := yaml.Unmarshal([]byte(files[model.PackageAuthorizer]), &cfg); err != nil {
		t.Fatal(err)
	}
	if files[model.PackageControlPlaneCA] != ca || cfg.ControlPlaneCA != ca || cfg.ControlPlaneURL != "https://gh.example" {
		t.Fatalf("the package does not carry the control plane's CA: files %v, config %+v", len(files), cfg)
	}
	if !strings.Contains(files[model.PackageEnv], model.EnvControlPlaneCAFile+"="+model.PackageControlPlaneCA+"\n") {
		t.Fatalf(".env: %s", files[model.PackageEnv])
	}
	if !strings.Contains(files[model.PackageReadme], "grpcs://xds.example.com:18000") || !strings.Contains(files[model.PackageReadme], "control-plane-ca.pem") {
		t.Fatalf("README: %s", files[model.PackageReadme])
	}
	tc := xdsClusterTLS(t, files[model.PackageEnvoyBootstrap])
	if tc == nil || tc.GetSni() != "xds.example.com" ||
		tc.GetCommonTlsContext().GetValidationContext().GetTrustedCa().GetInlineString() != ca ||
		len(tc.GetCommonTlsContext().GetTlsCertificates()) != 0 {
		t.Fatalf("xDS cluster TLS: %v", tc)
	}

	// With the operator's client certificate files, Envoy and the
	// authorizer present them.
	q := "?client_cert_file=/etc/gatehouse/tls/edge.pem&client_key_file=/etc/gatehouse/tls/edge-key.pem"
	files = unzip(t, e.expect(e.do("GET", "/api/admin/acme/gateways/edge/package"+q, rootToken, nil), 200).body)
	cfg = model.AuthorizerConfig{}
	if err := yaml.Unmarshal([]byte(files[model.PackageAuthorizer]), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.ControlPlaneClientCertFile != "/etc/gatehouse/tls/edge.pem" || cfg.ControlPlaneClientKeyFile != "/etc/gatehouse/tls/edge-key.pem" {
		t.Fatalf("authorizer config: %+v", cfg)
	}
	certs := xdsClusterTLS(t, files[model.PackageEnvoyBootstrap]).GetCommonTlsContext().GetTlsCertificates()
	if len(certs) != 1 || certs[0].GetCertificateChain().GetFilename() != "/etc/gatehouse/tls/edge.pem" ||
		certs[0].GetPrivateKey().GetFilename() != "/etc/gatehouse/tls/edge-key.pem" {
		t.Fatalf("xDS cluster client certificate: %v", certs)
	}

	// A grpc gateway's xDS channel verifies the control plane with the
	// same CA.
	e.expect(e.do("POST", "/api/admin/acme/gateways", rootToken, map[string]any{"id": "mesh", "name": "mesh", "type": "grpc"}), 201)
	g := unzip(t, e.expect(e.do("GET", "/api/admin/acme/gateways/mesh/package", rootToken, nil), 200).body)
	var gboot struct {
		XDSServers []struct {
			ChannelCreds []struct {
				Type   string `json:"type"`
				Config struct {
					TLS *struct {
						CAPEM string `json:"ca_pem"`
					} `json:"tls"`
				} `json:"config"`
			} `json:"channel_creds"`
		} `json:"xds_servers"`
	}
	if err := json.Unmarshal([]byte(g[model.PackageGRPCBootstrap]), &gboot); err != nil {
		t.Fatal(err)
	}
	if cc := gboot.XDSServers[0].ChannelCreds; len(cc) != 1 || cc[0].Config.TLS == nil || cc[0].Config.TLS.CAPEM != ca {
		t.Fatalf("grpc bootstrap channel_creds %+v", cc)
	}
}

func TestGatewayPackageRefusesBadTLSParameters(t *testing.T) {
	e, _ := tlsPackageEnv(t)
	plain := newEnvWith(t, func(o *admin.Options) { o.XDSPublicAddress, o.PublicURL = "xds.example.com:18000", "http://gh.example" })
	plain.createTenant("acme")
	plain.expect(plain.do("POST", "/api/admin/acme/gateways", rootToken, map[string]any{"id": "edge", "name": "edge"}), 201)
	credentials := func(e *env) int {
		return len(e.expect(e.do("GET", "/api/admin/acme/gateways/edge/credentials", rootToken, nil), 200).json(t)["credentials"].([]any))
	}
	before, plainBefore := credentials(e), credentials(plain)
	for _, tc := range []struct {
		env   *env
		query string
		field string
	}{
		{e, "?client_cert_file=/etc/gw.pem", "client_key_file"},
		{e, "?client_key_file=/etc/gw-key.pem", "client_cert_file"},
		{e, "?client_cert_file=gw.pem&client_key_file=/etc/gw-key.pem", "client_cert_file"},
		{e, "?client_cert_file=/etc/../gw.pem&client_key_file=/etc/gw-key.pem", "client_cert_file"},
		{e, "?client_cert_file=/etc/gw.pem&client_key_file=/etc/gw-key.pem%0A", "client_key_file"},
		{e, "?client_cert_file=/a&client_cert_file=/b&client_key_file=/k", "client_cert_file"},
		{e, "?client_cert=/etc/gw.pem", "client_cert"},
		{plain, "?client_cert_file=/etc/gw.pem&client_key_file=/etc/gw-key.pem", "client_cert_file"},
	} {
		r := tc.env.do("GET", "/api/admin/acme/gateways/edge/package"+tc.query, rootToken, nil)
		if r.status != 400 || !strings.Contains(string(r.body), `"`+tc.field+`"`) {
			t.Errorf("%s: %d %s, want 400 naming %s", tc.query, r.status, r.body, tc.field)
		}
	}
	if credentials(e) != before || credentials(plain) != plainBefore {
		t.Fatal("a refused package download minted a credential")
	}
	// A plaintext control plane's package carries no CA and says so.
	files := unzip(t, plain.expect(plain.do("GET", "/api/admin/acme/gateways/edge/package", rootToken, nil), 200).body)
	if _, ok := files[model.PackageControlPlaneCA]; ok || xdsClusterTLS(t, files[model.PackageEnvoyBootstrap]) != nil ||
		!strings.Contains(files[model.PackageReadme], "serves plaintext") {
		t.Fatalf("plaintext package: %v", files[model.PackageReadme])
	}
}

// TestGatewayPackageThatCannotBeBuiltMintsNothing: when the package cannot
// be rendered (here: a CA bundle the bootstrap refuses), the download is a
// 500 and no credential is minted or rotated: nobody would receive it.
func TestGatewayPackageThatCannotBeBuiltMintsNothing(t *testing.T) {
	e := newEnvWith(t, func(o *admin.Options) {
		o.XDSPublicAddress, o.XDSTLS = "xds.example.com:18000", true
		o.PackageCA = func() (string, error) {
			return "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n", nil
		}
	})
	e.createTenant("acme")
	e.expect(e.do("POST", "/api/admin/acme/gateways", rootToken, map[string]any{"id": "edge", "name": "edge"}), 201)
	list := func() []any {
		return e.expect(e.do("GET", "/api/admin/acme/gateways/edge/credentials", rootToken, nil), 200).json(t)["credentials"].([]any)
	}
	before := list()
	if r := e.do("GET", "/api/admin/acme/gateways/edge/package", rootToken, nil); r.status != 500 {
		t.Fatalf("package with an unusable CA: %d %s", r.status, r.body)
	}
	id := before[0].(map[string]any)["id"].(string)
	if r := e.do("GET", "/api/admin/acme/gateways/edge/package?credential="+id+"&rotate=true", rootToken, nil); r.status != 500 {
		t.Fatalf("rotating package with an unusable CA: %d %s", r.status, r.body)
	}
	after := list()
	if len(after) != len(before) || fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("credentials changed by downloads that failed:\nbefore %v\nafter  %v", before, after)
	}
}
