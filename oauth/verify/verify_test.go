package verify_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/oauth/keys"
	"github.com/gatehouse-dev/gatehouse/oauth/verify"
	"github.com/gatehouse-dev/gatehouse/store"
)

const public = "https://gh.example"

type world struct {
	t     *testing.T
	store store.Store
	keys  *keys.Manager
	now   time.Time
}

func newWorld(t *testing.T) *world {
	st := testkit.Store(t)
	return &world{t: t, store: st, keys: keys.NewManager(st, testkit.SecretBox(t)), now: time.Now()}
}

// server stores tenant tid (when new) and its server aid with keys.
func (w *world) server(tid, aid string) {
	w.t.Helper()
	ctx := context.Background()
	if _, err := w.store.Get(ctx, model.KindTenant, "", tid); errors.Is(err, store.ErrNotFound) {
		testkit.Create(w.t, w.store, testkit.Tenant(tid))
	}
	spec := model.ServerSpec{KeyType: "ecdsa", AccessTokenTTL: model.Duration(time.Hour), IDTokenTTL: model.Duration(time.Hour)}
	raw, _ := json.Marshal(spec)
	testkit.Create(w.t, w.store, &store.Object{Kind: model.KindServer, TenantID: tid, ID: aid, Name: aid, Spec: raw})
	if _, err := w.keys.Ensure(ctx, tid, aid, keys.Rotation{Policy: keys.PolicyOf(&spec), Now: w.now}); err != nil {
		w.t.Fatal(err)
	}
}

// token signs claims with the active key of tid/aid.
func (w *world) token(tid, aid string, claims map[string]any) string {
	w.t.Helper()
	spec := model.ServerSpec{KeyType: "ecdsa", AccessTokenTTL: model.Duration(time.Hour), IDTokenTTL: model.Duration(time.Hour)}
	set, err := w.keys.Load(context.Background(), tid, aid, keys.PolicyOf(&spec))
	if err != nil {
		w.t.Fatal(err)
	}
	k, err := set.Signer(w.now)
	if err != nil {
		w.t.Fatal(err)
	}
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: k.SignatureAlgorithm(), Key: k.Key()}, (&jose.SignerOptions{}).WithHeader("kid", k.ID()))
	if err != nil {
		w.t.Fatal(err)
	}
	payload, _ := json.Marshal(claims)
	jws, err := sig.Sign(payload)
	if err != nil {
		w.t.Fatal(err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		w.t.Fatal(err)
	}
	return out
}

func (w *world) claims(tid, aid, sub string) map[string]any {
	iss := model.IssuerURL(public, tid, aid)
	return map[string]any{"iss": iss, "sub": sub, "aud": []string{iss}, "jti": "j-" + sub,
		"iat": w.now.Unix(), "exp": w.now.Add(time.Hour).Unix(), "client_id": "cli"}
}

func TestAdminAuth(t *testing.T) {
	w := newWorld(t)
	w.server("acme", model.AdminServerID)
	w.server("acme", model.DefaultServerID)
	w.server("globex", model.AdminServerID)
	w.server(model.SystemTenantID, model.SystemServerID)
	auth := verify.AdminAuth{Verifier: verify.New(w.store, public, func() time.Time { return w.now }, nil)}
	ctx := context.Background()

	p, err := auth.Authenticate(ctx, w.token("acme", "admin", w.claims("acme", "admin", "alice")))
	if err != nil || p.TenantID != "acme" || p.Subject != "token:acme/admin:alice" {
		t.Fatalf("acme admin token: %+v, %v", p, err)
	}
	p, err = auth.Authenticate(ctx, w.token("system", "system", w.claims("system", "system", "root")))
	if err != nil || p.TenantID != "" {
		t.Fatalf("system token: %+v, %v (want system-wide)", p, err)
	}

	expired := w.claims("acme", "admin", "bob")
	expired["exp"] = w.now.Add(-time.Hour).Unix()
	otherAud := w.claims("acme", "admin", "carol")
	otherAud["aud"] = "https://elsewhere"
	forged := w.claims("acme", "admin", "mallory") // signed by globex's key
	noSub := w.claims("acme", "admin", "x")
	delete(noSub, "sub")
	for name, raw := range map[string]string{
		"default server (not admin)": w.token("acme", "default", w.claims("acme", "default", "alice")),
		"signed by another tenant":   w.token("globex", "admin", forged),
		"expired":                    w.token("acme", "admin", expired),
		"audience":                   w.token("acme", "admin", otherAud),
		"no sub":                     w.token("acme", "admin", noSub),
		"foreign issuer":             w.token("acme", "admin", map[string]any{"iss": "https://evil.example/acme/admin", "sub": "a", "aud": "x", "exp": w.now.Add(time.Hour).Unix()}),
		"not a jwt":                  "eyJhbGciOi.x",
	} {
		if p, err := auth.Authenticate(ctx, raw); !errors.Is(err, verify.ErrNotAccepted) {
			t.Errorf("%s: principal %+v, err %v; want ErrNotAccepted", name, p, err)
		}
	}

	// Revoking the token's jti takes effect at the next store revision.
	raw := w.token("acme", "admin", w.claims("acme", "admin", "dave"))
	if _, err := auth.Authenticate(ctx, raw); err != nil {
		t.Fatal(err)
	}
	rev, _ := json.Marshal(model.TokenRevocationSpec{Issuer: model.IssuerURL(public, "acme", "admin"), JTI: "j-dave", ExpiresAt: w.now.Add(time.Hour)})
	testkit.Create(t, w.store, &store.Object{Kind: model.KindTokenRevocation, TenantID: "acme", ID: "r1", Spec: rev})
	if _, err := auth.Authenticate(ctx, raw); !errors.Is(err, verify.ErrNotAccepted) {
		t.Fatalf("revoked token: err %v, want ErrNotAccepted", err)
	}

	// A disabled tenant's tokens do not authenticate.
	raw = w.token("globex", "admin", w.claims("globex", "admin", "erin"))
	if _, err := auth.Authenticate(ctx, raw); err != nil {
		t.Fatal(err)
	}
	testkit.Write(t, w.store, func(ctx context.Context, tx store.Tx) error {
		o, err := tx.Get(ctx, model.KindTenant, "", "globex")
		if err != nil {
			return err
		}
		o.Spec, _ = json.Marshal(model.TenantSpec{Name: "globex", Status: model.TenantDisabled})
		return tx.Update(ctx, o, 0)
	})
	if _, err := auth.Authenticate(ctx, raw); !errors.Is(err, verify.ErrNotAccepted) {
		t.Fatalf("token of a disabled tenant: err %v, want ErrNotAccepted", err)
	}
}

// TestVerifyAudiences: a caller may require its own audience (the bundle
// service requires the gateway's) instead of the server's.
func TestVerifyAudiences(t *testing.T) {
	w := newWorld(t)
	w.server("acme", model.DefaultServerID)
	v := verify.New(w.store, public, func() time.Time { return w.now }, nil)
	ctx := context.Background()
	gwAud := model.GatewayAudience("acme", "gw1")
	c := w.claims("acme", "default", "gateway-gw1")
	c["aud"] = gwAud
	raw := w.token("acme", "default", c)
	if _, err := v.Verify(ctx, "acme", "default", raw); !errors.Is(err, verify.ErrNotAccepted) {
		t.Fatalf("gateway-audience token at the server's audiences: %v, want not accepted", err)
	}
	tok, err := v.Verify(ctx, "acme", "default", raw, gwAud)
	if err != nil || tok.Subject != "gateway-gw1" {
		t.Fatalf("with the gateway audience: %v, %v", tok, err)
	}
	if _, err := v.Verify(ctx, "acme", "default", raw, model.GatewayAudience("acme", "gw2")); !errors.Is(err, verify.ErrNotAccepted) {
		t.Fatalf("another gateway's audience: %v, want not accepted", err)
	}
}
