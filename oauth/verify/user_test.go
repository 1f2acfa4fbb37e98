package verify_test

import (
	"context"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/oauth/verify"
)

// TestUserAuth: a user's access token of any server of its tenant names
// that tenant and user; tokens of clients and service accounts, of a
// tenant other than gh_tid, expired or signed by another tenant do not
// authenticate.
func TestUserAuth(t *testing.T) {
	w := newWorld(t)
	w.server("acme", model.DefaultServerID)
	w.server("acme", model.AdminServerID)
	w.server("globex", model.DefaultServerID)
	auth := verify.UserAuth{Verifier: verify.New(w.store, public, func() time.Time { return w.now }, nil)}
	ctx := context.Background()
	user := func(tid, aid, sub string) map[string]any {
		c := w.claims(tid, aid, sub)
		c["gh_sub_type"], c["gh_tid"] = "user", tid
		return c
	}
	for _, aid := range []string{model.DefaultServerID, model.AdminServerID} {
		tid, sub, ok, err := auth.VerifyUserToken(ctx, w.token("acme", aid, user("acme", aid, "u-1")))
		if err != nil || !ok || tid != "acme" || sub != "u-1" {
			t.Fatalf("user token of acme/%s: %q %q %v %v", aid, tid, sub, ok, err)
		}
	}
	client := user("acme", "default", "machine")
	client["gh_sub_type"] = "client"
	account := user("acme", "default", "sa-1")
	account["gh_sub_type"] = "service_account"
	foreign := user("acme", "default", "u-2")
	foreign["gh_tid"] = "globex"
	expired := user("acme", "default", "u-3")
	expired["exp"] = w.now.Add(-time.Hour).Unix()
	static := user("acme", "default", "static/staff/alice")
	for name, raw := range map[string]string{
		"a client's token":            w.token("acme", "default", client),
		"a service account's token":   w.token("acme", "default", account),
		"gh_tid of another tenant":    w.token("acme", "default", foreign),
		"expired":                     w.token("acme", "default", expired),
		"signed by another tenant":    w.token("globex", "default", user("acme", "default", "u-4")),
		"a static user (no user id)":  w.token("acme", "default", static),
		"not a JWT":                   "ghc_acme.x.y",
		"an issuer of no such server": w.token("acme", "default", user("acme", "nosuch", "u-5")),
	} {
		if tid, sub, ok, err := auth.VerifyUserToken(ctx, raw); ok || err != nil {
			t.Errorf("%s: accepted %v (%q %q), err %v; want refused", name, ok, tid, sub, err)
		}
	}
}
