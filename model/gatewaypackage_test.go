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
