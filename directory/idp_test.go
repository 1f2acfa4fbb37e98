package directory_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/directory"
	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/store"
	"github.com/gatehouse-dev/gatehouse/store/embedded"
)

func TestIdPSecretSealing(t *testing.T) {
	box := testkit.SecretBox(t)
	sealed, err := directory.SealIdPSecret(box, "acme", "corp", "s3cret-value")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(sealed, "s3cret-value") {
		t.Fatalf("sealed value holds the secret: %s", sealed)
	}
	got, err := directory.OpenIdPSecret(box, "acme", "corp", sealed)
	if err != nil || got != "s3cret-value" {
		t.Fatalf("open: %q %v", got, err)
	}
	// Bound to tenant and provider.
	if _, err := directory.OpenIdPSecret(box, "other", "corp", sealed); err == nil {
		t.Fatal("opened under another tenant")
	}
	if _, err := directory.OpenIdPSecret(box, "acme", "corp2", sealed); err == nil {
		t.Fatal("opened under another provider")
	}
	if got, err := directory.OpenIdPSecret(box, "acme", "corp", ""); got != "" || err != nil {
		t.Fatalf("empty: %q %v", got, err)
	}
	if _, err := directory.OpenIdPSecret(box, "acme", "corp", "!!"); err == nil {
		t.Fatal("opened garbage")
	}
	if _, err := directory.SealIdPSecret(nil, "acme", "corp", "x"); err == nil {
		t.Fatal("sealed without a box")
	}
}

func TestIdentityProviderFor(t *testing.T) {
	ctx := context.Background()
	st, err := embedded.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	put := func(tid, id string) {
		testkit.Write(t, st, func(ctx context.Context, tx store.Tx) error {
			return directory.IdentityProviders.Create(ctx, tx, &store.Typed[model.IdentityProviderSpec]{
				Meta: store.Object{TenantID: tid, ID: id, Name: tid + "-" + id},
				Spec: model.IdentityProviderSpec{Type: model.IdPOIDC, Issuer: "https://" + tid + ".example", ClientID: "c", Active: true},
			})
		})
	}
	put("acme", "own")
	put(model.SystemTenantID, "shared")
	put(model.SystemTenantID, "own") // shadowed by acme's own
	for id, owner := range map[string]string{"own": "acme", "shared": model.SystemTenantID} {
		got, err := directory.IdentityProviderFor(ctx, st, "acme", id)
		if err != nil || got.Meta.TenantID != owner {
			t.Fatalf("%s: %v %v", id, got, err)
		}
	}
	if _, err := directory.IdentityProviderFor(ctx, st, "acme", "none"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown: %v", err)
	}
	// Another tenant's provider is not usable.
	put("other", "theirs")
	if _, err := directory.IdentityProviderFor(ctx, st, "acme", "theirs"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("another tenant's provider: %v", err)
	}
}

func TestGitHubSubject(t *testing.T) {
	for in, want := range map[string]string{
		`{"id": 583231, "login": "octocat"}`: "583231",
		`{"id": 12345678901}`:                "12345678901",
	} {
		if got, err := directory.GitHubSubject([]byte(in)); err != nil || got != want {
			t.Errorf("%s: %q %v", in, got, err)
		}
	}
	for _, in := range []string{`{"login": "octocat"}`, `{"id": "abc"}`, `{"id": -1}`, `{"id": 1.5}`, `not json`} {
		if got, err := directory.GitHubSubject([]byte(in)); err == nil {
			t.Errorf("%s: accepted as %q", in, got)
		}
	}
}
