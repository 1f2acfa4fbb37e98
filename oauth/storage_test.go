package oauth

import (
	"fmt"
	"strings"
	"testing"

	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/gatehouse-dev/gatehouse/internal/passwords"
	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	"github.com/gatehouse-dev/gatehouse/oauth/keys"
)

// zitadel finds optional features by type assertion on the storage value
// it was given (WAVE2 §2.7): assert them on exactly that value.
func TestStorageInterfaces(t *testing.T) {
	st := testkit.Store(t)
	p, err := New(Options{Store: st, Keys: keys.NewManager(st, testkit.SecretBox(t)), PublicURL: "https://gh.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	s := p.op.Storage()
	if s != op.Storage(p.storage) {
		t.Fatalf("the provider's storage %T is not the concrete storage", s)
	}
	implemented := map[string]bool{}
	_, implemented["ClientCredentialsStorage"] = s.(op.ClientCredentialsStorage)
	_, implemented["CanSetUserinfoFromRequest"] = s.(op.CanSetUserinfoFromRequest)
	_, implemented["CanGetPrivateClaimsFromRequest"] = s.(op.CanGetPrivateClaimsFromRequest)
	_, implemented["CanTerminateSessionFromRequest"] = s.(op.CanTerminateSessionFromRequest)
	for name, ok := range implemented {
		if !ok {
			t.Errorf("the storage does not implement op.%s", name)
		}
	}
	absent := map[string]bool{}
	_, absent["TokenExchangeStorage"] = s.(op.TokenExchangeStorage)
	_, absent["TokenExchangeTokensVerifierStorage"] = s.(op.TokenExchangeTokensVerifierStorage)
	_, absent["DeviceAuthorizationStorage"] = s.(op.DeviceAuthorizationStorage)
	_, absent["JWTProfileTokenStorage"] = s.(op.JWTProfileTokenStorage)
	for name, ok := range absent {
		if ok {
			t.Errorf("the storage implements op.%s, which Gatehouse does not offer", name)
		}
	}
	if p.op.GrantTypeTokenExchangeSupported() || p.op.GrantTypeDeviceCodeSupported() || !p.op.GrantTypeClientCredentialsSupported() {
		t.Error("the provider's grants do not follow the storage")
	}
}

// An unknown username is verified against the dummy hash, so it must be
// a well-formed argon2id hash with the parameters of real hashes (else
// Verify returns at once, or takes another time, and timing tells which
// usernames exist).
func TestDummyHashIsWellFormed(t *testing.T) {
	h, err := newDummyHash()
	if err != nil {
		t.Fatal(err)
	}
	if err := passwords.Check(h); err != nil {
		t.Fatalf("dummy hash: %v", err)
	}
	want := fmt.Sprintf("$argon2id$v=19$m=%d,t=%d,p=%d$", passwords.Memory, passwords.Time, passwords.Threads)
	if !strings.HasPrefix(h, want) || !strings.HasPrefix(aliceHash(), want) {
		t.Fatalf("dummy hash %q and a real hash %q: want both to start %q", h, aliceHash(), want)
	}
}

// Subjects of static users survive any username.
func TestStaticSubjectRoundTrip(t *testing.T) {
	for _, u := range []string{"alice", "a/b:c|d%e", "bob@example.com", "x\x01y"} {
		sub := staticSubject("staff", u)
		if strings.ContainsAny(sub[len("static/staff/"):], "/:|") {
			t.Errorf("subject %q of %q carries a separator", sub, u)
		}
		m, got, ok := parseStaticSubject(sub)
		if !ok || m != "staff" || got != u {
			t.Errorf("parse %q = %q %q %v, want staff %q", sub, m, got, ok, u)
		}
	}
}
