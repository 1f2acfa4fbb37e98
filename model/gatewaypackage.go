package model

import (
	"fmt"
	"strings"
)

// Files of a gateway package: the zip the admin API's
// GET …/gateways/{gw}/package returns and `gatehouse authorizer --package`
// reads.
const (
	PackageEnvoyBootstrap = "envoy.yaml"
	PackageGRPCBootstrap  = "grpc-xds-bootstrap.json"
	PackageAuthorizer     = "gatehouse-authorizer.yaml"
	PackageEnv            = ".env"
	PackagePublicKey      = "bundle-signing-key.pem"
	PackageReadme         = "README.txt"
)

// AuthorizerConfig is gatehouse-authorizer.yaml: everything `gatehouse
// authorizer --config` (or --package) needs to follow one gateway. The
// admin API writes it into the gateway package; the authorizer reads it
// (among settings of its own).
type AuthorizerConfig struct {
	ControlPlaneURL string `yaml:"control_plane_url"`
	Tenant          string `yaml:"tenant"`
	Gateway         string `yaml:"gateway"`
	Credential      string `yaml:"credential"`
	KeyID           string `yaml:"key_id"`
	PublicKey       string `yaml:"public_key"`
	AuthzAddr       string `yaml:"authz_addr"`
	HTTPAddr        string `yaml:"http_addr"`
}

// Environment variables of `gatehouse authorizer` that a gateway
// package's .env sets.
const (
	EnvControlPlaneURL     = "GATEHOUSE_CONTROL_PLANE_URL"
	EnvTenant              = "GATEHOUSE_TENANT"
	EnvGateway             = "GATEHOUSE_GATEWAY"
	EnvGatewayCredential   = "GATEHOUSE_GATEWAY_CREDENTIAL"
	EnvBundleKeyID         = "GATEHOUSE_BUNDLE_KEY_ID"
	EnvBundlePublicKeyFile = "GATEHOUSE_BUNDLE_PUBLIC_KEY_FILE"
	EnvAuthzAddr           = "GATEHOUSE_AUTHZ_ADDR"
	EnvAuthorizerHTTPAddr  = "GATEHOUSE_AUTHORIZER_HTTP_ADDR"
)

// EnvFile renders the package's .env: the same settings as environment
// variables, the public key by its file in the package.
func (a AuthorizerConfig) EnvFile() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Settings of gatehouse authorizer, as environment variables. Keep secret.\n")
	for _, kv := range [][2]string{
		{EnvControlPlaneURL, a.ControlPlaneURL}, {EnvTenant, a.Tenant}, {EnvGateway, a.Gateway},
		{EnvGatewayCredential, a.Credential}, {EnvBundleKeyID, a.KeyID},
		{EnvBundlePublicKeyFile, PackagePublicKey}, {EnvAuthzAddr, a.AuthzAddr},
		{EnvAuthorizerHTTPAddr, a.HTTPAddr},
	} {
		fmt.Fprintf(&b, "%s=%s\n", kv[0], kv[1])
	}
	return b.String()
}
