package oauth

import (
	"context"
	"testing"
	"time"

	"golang.org/x/oauth2/clientcredentials"

	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/oauth/clientauth"
	"github.com/gatehouse-dev/gatehouse/store"
)

const robotSecret = "robot-secret-0123456789abcdefghijklmnopqrs"

// robot stores service account sa-1 of acme with its client robot on the
// default server.
func (e *env) robot(spec model.ServiceAccountSpec) {
	e.t.Helper()
	spec.ClientID = "robot"
	e.client("acme", "robot", model.ClientSpec{ServerID: "default", SecretHash: clientauth.HashSecret(robotSecret), System: true,
		GrantTypes: []string{model.GrantClientCredentials}, TokenEndpointAuthMethod: model.AuthMethodBasic, ServiceAccountID: "sa-1"})
	testkit.Create(e.t, e.st, &store.Object{Kind: model.KindServiceAccount, TenantID: "acme", ID: "sa-1", Name: "robot", Spec: mustJSON(spec)})
}

// setRobotState changes the service account's state.
func (e *env) setRobotState(state model.ServiceAccountState) {
	e.t.Helper()
	ctx := context.Background()
	if _, err := e.st.Update(ctx, func(ctx context.Context, tx store.Tx) error {
		a, err := serviceAccountRepo.Get(ctx, tx, "acme", "sa-1")
		if err != nil {
			return err
		}
		a.Spec.State = state
		return serviceAccountRepo.Update(ctx, tx, a, 0)
	}); err != nil {
		e.t.Fatal(err)
	}
}

// TestServiceAccountTokens: a service account's client gets tokens whose
// sub is the account and gh_sub_type service_account, living the
// account's token_duration; a suspended or expired account's client
// fails authentication; the long-lived token MintServiceAccountToken
// makes has the same shape and the asked lifetime, and is refused for a
// suspended account and for a client that is no account's.
func TestServiceAccountTokens(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		e.robot(model.ServiceAccountSpec{State: model.ServiceAccountActive, TokenDuration: model.Duration(90 * time.Second)})
		iss := e.issuer("acme", "default")
		cc := clientcredentials.Config{ClientID: "robot", ClientSecret: robotSecret, TokenURL: iss + "/oauth2/token", Scopes: []string{"orders.read"}}
		tok, err := cc.Token(ctx)
		if err != nil {
			t.Fatalf("client_credentials of a service account: %v", err)
		}
		at := decodeJWT(t, tok.AccessToken)
		if at["sub"] != "sa-1" || at["gh_sub_type"] != "service_account" || at["client_id"] != "robot" || at["gh_tid"] != "acme" {
			t.Fatalf("service account token %v", at)
		}
		if life := int64(at["exp"].(float64)) - int64(at["iat"].(float64)); life < 89 || life > 91 {
			t.Fatalf("token lives %ds, want the account's token_duration (90s)", life)
		}
		if in := e.introspect("acme", "default", tok.AccessToken); in["active"] != true || in["sub"] != "sa-1" || in["gh_sub_type"] != "service_account" {
			t.Fatalf("introspection: %v", in)
		}

		long, exp, err := e.p.MintServiceAccountToken(ctx, "acme", "default", "robot", 72*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		lt := decodeJWT(t, long)
		if lt["sub"] != "sa-1" || lt["gh_sub_type"] != "service_account" || lt["iss"] != iss || lt["client_id"] != "robot" {
			t.Fatalf("minted token %v", lt)
		}
		if d := time.Until(exp); d < 71*time.Hour || d > 73*time.Hour || int64(lt["exp"].(float64)) != exp.Unix() {
			t.Fatalf("minted token expires %v (exp %v), want in 72h", exp, lt["exp"])
		}
		if in := e.introspect("acme", "default", long); in["active"] != true || in["sub"] != "sa-1" {
			t.Fatalf("introspection of the minted token: %v", in)
		}
		if _, _, err := e.p.MintServiceAccountToken(ctx, "acme", "default", "machine", time.Hour); err == nil {
			t.Fatal("a token minted for a client that is no service account's")
		}

		e.setRobotState(model.ServiceAccountSuspended)
		_, err = cc.Token(ctx)
		wantOAuthError(t, err, "invalid_client", "")
		if _, _, err := e.p.MintServiceAccountToken(ctx, "acme", "default", "robot", time.Hour); err == nil {
			t.Fatal("a token minted for a suspended account")
		}
		e.setRobotState(model.ServiceAccountActive)
		if _, err := cc.Token(ctx); err != nil {
			t.Fatalf("reactivated: %v", err)
		}
	})
}

// TestExpiredServiceAccount: past its expiry, the account's client fails
// authentication.
func TestExpiredServiceAccount(t *testing.T) {
	e := newEnv(t, testkit.Store(t))
	past := time.Now().Add(-time.Minute)
	e.robot(model.ServiceAccountSpec{State: model.ServiceAccountActive, TokenDuration: model.Duration(time.Hour), Expiry: &past})
	cc := clientcredentials.Config{ClientID: "robot", ClientSecret: robotSecret, TokenURL: e.issuer("acme", "default") + "/oauth2/token"}
	_, err := cc.Token(context.Background())
	wantOAuthError(t, err, "invalid_client", "")
}
