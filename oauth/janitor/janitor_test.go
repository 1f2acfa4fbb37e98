package janitor_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/oauth/janitor"
	"github.com/gatehouse-dev/gatehouse/oauth/keys"
	"github.com/gatehouse-dev/gatehouse/store"
)

func TestJanitor(t *testing.T) {
	st := testkit.Store(t)
	km := keys.NewManager(st, testkit.SecretBox(t))
	ctx := context.Background()
	now := time.Now()
	spec := model.ServerSpec{KeyType: "ecdsa", AccessTokenTTL: model.Duration(time.Hour), IDTokenTTL: model.Duration(time.Hour)}
	raw, _ := json.Marshal(spec)
	testkit.Create(t, st, testkit.Tenant("acme"), &store.Object{Kind: model.KindServer, TenantID: "acme", ID: "default", Name: "default", Spec: raw})
	// "leeway" expired 10 s ago: verifiers still accept its token for
	// token.Leeway past exp, so it stays.
	for id, exp := range map[string]time.Time{"old": now.Add(-time.Minute), "leeway": now.Add(-10 * time.Second), "live": now.Add(time.Hour)} {
		r, _ := json.Marshal(model.TokenRevocationSpec{Issuer: "https://gh.example/acme/default", JTI: id, ExpiresAt: exp})
		testkit.Create(t, st, &store.Object{Kind: model.KindTokenRevocation, TenantID: "acme", ID: id, Spec: r})
	}
	p := keys.PolicyOf(&spec)
	if _, err := km.Ensure(ctx, "acme", "default", keys.Rotation{Policy: p, Now: now.Add(-3 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	// Rotated two hours ago: the first key retired then and is past its
	// one-hour retention now.
	if _, _, err := km.Rotate(ctx, "acme", "default", keys.Rotation{Policy: p, Now: now.Add(-2 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	j := &janitor.Janitor{Store: st, Keys: km, Now: func() time.Time { return now }}
	res, err := j.Once(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Revocations != 1 || res.Keys != 1 {
		t.Fatalf("round removed %+v, want 1 revocation and 1 key", res)
	}
	if _, err := st.Get(ctx, model.KindTokenRevocation, "acme", "old"); err == nil {
		t.Fatal("the expired revocation is still there")
	}
	for _, id := range []string{"live", "leeway"} {
		if _, err := st.Get(ctx, model.KindTokenRevocation, "acme", id); err != nil {
			t.Fatalf("the %s revocation: %v", id, err)
		}
	}
	set, err := km.Load(ctx, "acme", "default", p)
	if err != nil {
		t.Fatal(err)
	}
	if set.Len() != 1 {
		t.Fatalf("keys left = %d, want 1", set.Len())
	}
	if res, err := j.Once(ctx); err != nil || res != (janitor.Result{}) {
		t.Fatalf("second round: %+v, %v; want nothing to do", res, err)
	}
}
