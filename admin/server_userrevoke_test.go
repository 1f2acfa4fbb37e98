package admin_test

import (
	"context"
	"encoding/json"
	"sort"
	"testing"

	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/store"
)

// revokedSubjects lists the subjects of the tenant's not-before
// revocations.
func (e *env) revokedSubjects(tid string) []string {
	e.t.Helper()
	pg, err := e.store.List(context.Background(), store.Query{Kind: model.KindTokenRevocation, TenantID: tid})
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, o := range pg.Items {
		var spec model.TokenRevocationSpec
		if err := json.Unmarshal(o.Spec, &spec); err != nil {
			e.t.Fatal(err)
		}
		if spec.NotBefore != nil && spec.Issuer == "https://gh.example/"+tid+"/s1" {
			out = append(out, spec.Subject)
		}
	}
	sort.Strings(out)
	return out
}

// TestChangedStaticUsersLoseTheirTokens: a login-method write that
// removes a user, disables its method or changes its password revokes
// the user's tokens (a not-before every gateway enforces) in the same
// write; users kept as they were keep theirs.
func TestChangedStaticUsersLoseTheirTokens(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	e.expect(e.do("POST", "/api/admin/acme/servers", rootToken, map[string]any{"id": "s1"}), 201)
	path := "/api/admin/acme/servers/s1/authentications"
	put := func(methods ...any) { e.expect(e.do("PUT", path, rootToken, map[string]any{"methods": methods}), 200) }
	put(staticMethod("staff", user("alice", "alice-password"), user("bob", "bob-password-1"), user("carol", "carol-password")),
		staticMethod("ops", user("dave", "dave-password")))
	if got := e.revokedSubjects("acme"); len(got) != 0 {
		t.Fatalf("revocations after adding users: %v", got)
	}
	// alice removed, bob's password changed, carol kept (no password sent:
	// her hash stays), ops disabled.
	ops := staticMethod("ops", user("dave", ""))
	ops["disabled"] = true
	put(staticMethod("staff", user("bob", "bob-password-2"), user("carol", "")), ops)
	want := []string{model.StaticSubject("ops", "dave"), model.StaticSubject("staff", "alice"), model.StaticSubject("staff", "bob")}
	sort.Strings(want)
	if got := e.revokedSubjects("acme"); len(got) != 3 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Fatalf("revoked subjects = %v, want %v", got, want)
	}
}
