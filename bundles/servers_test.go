package bundles

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/oauth/keys"
	"github.com/gatehouse-dev/gatehouse/policies"
	"github.com/gatehouse-dev/gatehouse/store"
)

// serverObject stores a server of tid with the default TTLs.
func serverObject(t *testing.T, f *fixture, tid, aid string, audiences ...string) *model.ServerSpec {
	t.Helper()
	spec := model.ServerSpec{KeyType: "ecdsa", GrantTypes: []string{model.GrantClientCredentials},
		AccessTokenTTL: model.Duration(time.Hour), IDTokenTTL: model.Duration(time.Hour), Audiences: audiences}
	raw, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	testkit.Create(t, f.store, &store.Object{Kind: model.KindServer, TenantID: tid, ID: aid, Name: aid, Spec: raw})
	return &spec
}

// configData is data.gatehouse.config of a compiled bundle.
func configData(out *policies.Compiled) map[string]any {
	gh, _ := out.Data["gatehouse"].(map[string]any)
	cfg, _ := gh["config"].(map[string]any)
	return cfg
}

func compiledIssuers(t *testing.T, f *fixture, tid, public string) (*policies.Compiled, []any, error) {
	t.Helper()
	var cfg *policies.Config
	if err := f.store.View(context.Background(), func(ctx context.Context, r store.Reader) error {
		var err error
		cfg, err = LoadConfig(ctx, r, tid)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	cfg.PublicURL = public
	out, err := policies.Compile(cfg, "gw")
	if err != nil {
		return nil, nil, err
	}
	issuers, _ := configData(out)["issuers"].([]any)
	return out, issuers, nil
}

// TestServersAreBundleIssuers: every server of the tenant with keys is an
// issuer of its bundles with its published keys inline; a token its
// active key signs verifies with them.
func TestServersAreBundleIssuers(t *testing.T) {
	f := newFixture(t)
	f.tenant("acme", "orders")
	f.gateway("acme", "gw")
	spec := serverObject(t, f, "acme", "default", "orders-api")
	serverObject(t, f, "acme", "nokeys")

	// A server without keys has issued nothing: not an issuer yet.
	_, issuers, err := compiledIssuers(t, f, "acme", "https://gh.example")
	if err != nil {
		t.Fatal(err)
	}
	if len(issuers) != 0 {
		t.Fatalf("issuers before any key = %v, want none", issuers)
	}

	km := keys.NewManager(f.store, testkit.SecretBox(t))
	ctx := context.Background()
	now := time.Now()
	set, err := km.Ensure(ctx, "acme", "default", keys.Rotation{Policy: keys.PolicyOf(spec), Now: now})
	if err != nil {
		t.Fatal(err)
	}
	signer, err := set.Signer(now)
	if err != nil {
		t.Fatal(err)
	}
	// A second, pending key: published before it signs anything.
	spec.KeyActivationDelay = model.Duration(time.Hour)
	if _, _, err := km.Rotate(ctx, "acme", "default", keys.Rotation{Policy: keys.PolicyOf(spec), Now: now}); err != nil {
		t.Fatal(err)
	}

	// Without a public URL there is no issuer URL: the build fails loudly.
	if _, _, err := compiledIssuers(t, f, "acme", ""); err == nil || !strings.Contains(err.Error(), "public URL") {
		t.Fatalf("compile without a public URL: err = %v, want one naming the public URL", err)
	}
	_, issuers, err = compiledIssuers(t, f, "acme", "https://gh.example/")
	if err != nil {
		t.Fatal(err)
	}
	if len(issuers) != 1 {
		t.Fatalf("issuers = %v, want the one server with keys", issuers)
	}
	is := issuers[0].(map[string]any)
	if is["id"] != "server:default" || is["issuer"] != "https://gh.example/acme/default" {
		t.Fatalf("issuer = %v", is)
	}
	auds := is["audiences"].([]any)
	if len(auds) != 2 || auds[0] != "https://gh.example/acme/default" || auds[1] != "orders-api" {
		t.Fatalf("audiences = %v, want the issuer URL and the server's audiences", auds)
	}
	var jwks jose.JSONWebKeySet
	if err := json.Unmarshal([]byte(is["jwks"].(string)), &jwks); err != nil {
		t.Fatal(err)
	}
	if len(jwks.Keys) != 2 {
		t.Fatalf("published keys = %d, want the active and the pending one", len(jwks.Keys))
	}
	for _, k := range jwks.Keys {
		if !k.IsPublic() {
			t.Fatalf("key %s in the bundle is not public", k.KeyID)
		}
	}
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: signer.SignatureAlgorithm(), Key: signer.Key()},
		(&jose.SignerOptions{}).WithHeader("kid", signer.ID()))
	if err != nil {
		t.Fatal(err)
	}
	jws, err := sig.Sign([]byte(`{"iss":"https://gh.example/acme/default"}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := jws.Verify(jwks.Key(signer.ID())[0].Key); err != nil {
		t.Fatalf("a token of the active key does not verify with the bundle's keys: %v", err)
	}
}

// TestRevocationsFromObjects: token-revocation objects become
// data.gatehouse.config.revocations, the later not-before winning.
func TestRevocationsFromObjects(t *testing.T) {
	f := newFixture(t)
	f.tenant("acme", "orders")
	f.gateway("acme", "gw")
	iss := "https://gh.example/acme/default"
	exp := time.Unix(2_000_000_000, 0)
	t1, t2 := time.Unix(1_700_000_000, 0), time.Unix(1_700_000_100, 0)
	// Within a second, the next one: a token issued in the revocation's
	// second (iat has a second's resolution) is refused, before or after.
	t3 := time.Unix(1_700_000_200, 400_000_000)
	var objs []*store.Object
	for i, s := range []model.TokenRevocationSpec{
		{Issuer: iss, JTI: "j1", ExpiresAt: exp},
		{Issuer: iss, Subject: "alice", NotBefore: &t2, ExpiresAt: exp},
		{Issuer: iss, Subject: "alice", NotBefore: &t1, ExpiresAt: exp},
		{Issuer: iss, Subject: "bob", ClientID: "web", NotBefore: &t1, ExpiresAt: exp},
		{Issuer: iss, Subject: "carol", NotBefore: &t3, ExpiresAt: exp},
	} {
		raw, _ := json.Marshal(s)
		objs = append(objs, &store.Object{Kind: model.KindTokenRevocation, TenantID: "acme", ID: string(rune('a' + i)), Spec: raw})
	}
	testkit.Create(t, f.store, objs...)
	out, _, err := compiledIssuers(t, f, "acme", "https://gh.example")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(configData(out)["revocations"])
	want := `{"client_not_before":{"` + iss + `":{"bob":{"web":1700000000}}},"jti":{"` + iss + `":{"j1":2000000000}},"not_before":{"` + iss + `":{"alice":1700000100,"carol":1700000201}}}`
	if string(got) != want {
		t.Fatalf("revocations = %s\nwant %s", got, want)
	}
}
