package gateway

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/testkit/jwtkit"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/policies"
)

// TestActivatorRevocations: each revision's revocations reach the
// gateway's validator, which is kept while the issuers do not change (its
// cached verifications included), and a bundle with revocations is refused
// when the validator cannot enforce them.
func TestActivatorRevocations(t *testing.T) {
	key := jwtkit.NewSigner(t, "k1")
	compiled := func(rev *policies.RevocationsData) *Source {
		c := testCompiled(t, func(cfg *policies.Config) {
			cfg.Issuers = []policies.Object[model.IssuerSpec]{{ID: "idp", Name: "idp", Spec: model.IssuerSpec{Issuer: issuerURL,
				Audiences: []string{"pets-api"}, JWKS: jwtkit.JWKS(t, key)}}}
			cfg.Revocations = rev
		})
		src, err := SourceFromCompiled(c, "1")
		if err != nil {
			t.Fatal(err)
		}
		return src
	}
	ctx := context.Background()
	auth := "Bearer " + key.Token(t, claims("pets-api", time.Hour, map[string]any{"jti": "j1"}))
	a := &Activator{Engines: NewEngines(model.GatewayRef{TenantID: "acme", GatewayID: "edge"}), Tokens: tokenFactoryForTest}
	defer a.Close()
	valid := func(e *Engine) bool { return e.tokens.Info(ctx, auth).Valid }

	e1, err := a.Activate(ctx, compiled(nil), "test")
	if err != nil {
		t.Fatal(err)
	}
	if !valid(e1) {
		t.Fatal("token invalid without revocations")
	}
	e2, err := a.Activate(ctx, compiled(&policies.RevocationsData{JTI: map[string]map[string]int64{issuerURL: {"j1": time.Now().Add(time.Hour).Unix()}}}), "test")
	if err != nil {
		t.Fatal(err)
	}
	if e2.tokens != e1.tokens {
		t.Fatal("the validator was not kept across revisions with the same issuers")
	}
	if valid(e2) {
		t.Fatal("token valid after its jti was revoked")
	}
	e3, err := a.Activate(ctx, compiled(&policies.RevocationsData{}), "test")
	if err != nil {
		t.Fatal(err)
	}
	if !valid(e3) {
		t.Fatal("token still invalid once the revocation is gone")
	}

	// A validator that cannot enforce revocations gets no bundle with some.
	plain := &Activator{Engines: NewEngines(model.GatewayRef{TenantID: "acme", GatewayID: "edge"}),
		Tokens: func(ctx context.Context, issuers []policies.IssuerData) (TokenValidator, error) {
			v, err := tokenFactoryForTest(ctx, issuers)
			return struct{ TokenValidator }{v}, err
		}}
	defer plain.Close()
	if _, err := plain.Activate(ctx, compiled(nil), "test"); err != nil {
		t.Fatalf("bundle without revocations: %v", err)
	}
	_, err = plain.Activate(ctx, compiled(&policies.RevocationsData{NotBefore: map[string]map[string]int64{issuerURL: {"alice": 1}}}), "test")
	if err == nil || !strings.Contains(err.Error(), "revocations") {
		t.Fatalf("bundle with revocations for a validator that cannot enforce them: %v", err)
	}
}
