package model

import (
	"strings"
	"testing"
)

func TestAuthorizerConfigEnvFile(t *testing.T) {
	a := AuthorizerConfig{ControlPlaneURL: "http://cp.example", Tenant: "acme", Gateway: "edge", Credential: "ghg_acme.c.s",
		KeyID: "k1", PublicKey: "-----BEGIN PUBLIC KEY-----", AuthzAddr: "127.0.0.1:9191", HTTPAddr: "127.0.0.1:9192"}
	want := `# Settings of gatehouse authorizer, as environment variables. Keep secret.
GATEHOUSE_CONTROL_PLANE_URL=http://cp.example
GATEHOUSE_TENANT=acme
GATEHOUSE_GATEWAY=edge
GATEHOUSE_GATEWAY_CREDENTIAL=ghg_acme.c.s
GATEHOUSE_BUNDLE_KEY_ID=k1
GATEHOUSE_BUNDLE_PUBLIC_KEY_FILE=bundle-signing-key.pem
GATEHOUSE_AUTHZ_ADDR=127.0.0.1:9191
GATEHOUSE_AUTHORIZER_HTTP_ADDR=127.0.0.1:9192
`
	if got := a.EnvFile(); got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	if strings.Contains(a.EnvFile(), "BEGIN PUBLIC KEY") {
		t.Fatal("the key itself is in the .env; it names the key's file")
	}
}

func TestAuthorizerConfigEnvFileWithTLS(t *testing.T) {
	a := AuthorizerConfig{ControlPlaneURL: "https://cp.example", Tenant: "acme", Gateway: "edge", Credential: "ghg_acme.c.s",
		KeyID: "k1", PublicKey: "-----BEGIN PUBLIC KEY-----", AuthzAddr: "127.0.0.1:9191", HTTPAddr: "127.0.0.1:9192",
		ControlPlaneCA: "-----BEGIN CERTIFICATE-----", ControlPlaneClientCertFile: "/etc/gatehouse/gw.pem",
		ControlPlaneClientKeyFile: "/etc/gatehouse/gw-key.pem"}
	env := a.EnvFile()
	for _, line := range []string{"GATEHOUSE_CONTROL_PLANE_URL=https://cp.example\n", "GATEHOUSE_CONTROL_PLANE_CA_FILE=control-plane-ca.pem\n",
		"GATEHOUSE_CONTROL_PLANE_CLIENT_CERT_FILE=/etc/gatehouse/gw.pem\n", "GATEHOUSE_CONTROL_PLANE_CLIENT_KEY_FILE=/etc/gatehouse/gw-key.pem\n"} {
		if !strings.Contains(env, line) {
			t.Errorf(".env lacks %q:\n%s", line, env)
		}
	}
	if strings.Contains(env, "BEGIN CERTIFICATE") {
		t.Fatal("the CA itself is in the .env; it names the CA's file")
	}
}
