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
	// PackageControlPlaneCA is the CA bundle the control plane's
	// certificate is verified with; only in packages of a control plane
	// that serves TLS and was given one (--package-ca-file).
	PackageControlPlaneCA = "control-plane-ca.pem"
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
	// ControlPlaneCA is the CA bundle (PEM) the https control plane's
	// certificate is verified against (empty: the system's roots).
	ControlPlaneCA string `yaml:"control_plane_ca,omitempty"`
	// ControlPlaneClientCertFile and ControlPlaneClientKeyFile are the
	// gateway's client certificate for the control plane (mutual TLS):
	// paths on the gateway's host, chosen by the operator.
	ControlPlaneClientCertFile string `yaml:"control_plane_client_cert_file,omitempty"`
	ControlPlaneClientKeyFile  string `yaml:"control_plane_client_key_file,omitempty"`
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
	EnvControlPlaneCAFile  = "GATEHOUSE_CONTROL_PLANE_CA_FILE"
	// The client certificate of the gateway for the control plane.
	EnvControlPlaneClientCertFile = "GATEHOUSE_CONTROL_PLANE_CLIENT_CERT_FILE"
	EnvControlPlaneClientKeyFile  = "GATEHOUSE_CONTROL_PLANE_CLIENT_KEY_FILE"
)

// EnvFile renders the package's .env: the same settings as environment
// variables, the public key and the control plane's CA by their files in
// the package.
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
	if a.ControlPlaneCA != "" {
		fmt.Fprintf(&b, "%s=%s\n", EnvControlPlaneCAFile, PackageControlPlaneCA)
	}
	for _, kv := range [][2]string{
		{EnvControlPlaneClientCertFile, a.ControlPlaneClientCertFile}, {EnvControlPlaneClientKeyFile, a.ControlPlaneClientKeyFile},
	} {
		if kv[1] != "" {
			fmt.Fprintf(&b, "%s=%s\n", kv[0], kv[1])
		}
	}
	return b.String()
}
