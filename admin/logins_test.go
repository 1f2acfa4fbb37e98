package admin_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/directory"
	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/oauth/grants"
	"github.com/gatehouse-dev/gatehouse/store"
)

// idp stores an identity provider of tenant tid.
func (e *env) idp(tid, id, typ, issuer string) {
	e.t.Helper()
	spec, _ := json.Marshal(model.IdentityProviderSpec{Type: typ, Issuer: issuer, ClientID: "gatehouse", Active: true})
	testkit.Create(e.t, e.store, &store.Object{Kind: model.KindIdentityProvider, TenantID: tid, ID: id, Name: id, Spec: spec})
}

// directoryUser stores a user of tenant tid and returns its id.
func (e *env) directoryUser(tid, email string, state model.UserState) string {
	e.t.Helper()
	u := &store.Typed[model.UserSpec]{Meta: store.Object{TenantID: tid, ID: "u-" + tid + "-" + string(state) + "-" + email[:3]},
		Spec: model.UserSpec{Email: email, State: state}}
	if _, err := e.store.Update(context.Background(), func(ctx context.Context, tx store.Tx) error {
		return directory.CreateUser(ctx, tx, u)
	}); err != nil {
		e.t.Fatal(err)
	}
	return u.Meta.ID
}

// The login methods of part F: password, oidc, azure and cognito naming
// identity providers (the tenant's or the system tenant's; azure's and
// cognito's of the right issuer), custom with its login_url. GET shows
// what was put and takes it back unchanged; references to nothing, or to
// another tenant's identity provider, are 404 naming the field and
// change nothing.
func TestServerLoginMethodsOfPartF(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	e.createTenant("globex")
	e.idp("acme", "corp", model.IdPOIDC, "https://idp.example.com")
	e.idp("acme", "pool", model.IdPOIDC, "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC")
	e.idp(model.SystemTenantID, "entra", model.IdPOIDC, "https://login.microsoftonline.com/7f3c/v2.0")
	e.idp("globex", "theirs", model.IdPOIDC, "https://idp.globex.example")
	path := "/api/admin/acme/servers/default/authentications"
	methods := []any{
		map[string]any{"id": "pw", "name": "Email", "method": "password", "password": map[string]any{"hint": "Your work email"}},
		map[string]any{"id": "corp", "method": "oidc", "oidc": map[string]any{"identity_provider_id": "corp"}},
		map[string]any{"id": "ms", "method": "azure", "identity_provider_id": "entra"},
		map[string]any{"id": "aws", "method": "cognito", "cognito": map[string]any{"identity_provider_id": "pool"}},
		map[string]any{"id": "app", "method": "custom", "custom": map[string]any{"login_url": "https://app.example.com/login?x=1"}},
		map[string]any{"id": "dev", "method": "custom", "disabled": true, "custom": map[string]any{"login_url": "http://127.0.0.1:8080/login"}},
	}
	put := e.expect(e.do("PUT", path, rootToken, map[string]any{"methods": methods}), 200)
	got := put.json(t)["methods"].([]any)
	want := map[string]string{"pw": `{"hint":"Your work email"}`, "corp": `{"identity_provider_id":"corp"}`,
		"ms": `{"identity_provider_id":"entra"}`, "aws": `{"identity_provider_id":"pool"}`,
		"app": `{"login_url":"https://app.example.com/login?x=1"}`, "dev": `{"login_url":"http://127.0.0.1:8080/login"}`}
	subs := map[string]string{"pw": "password", "corp": "oidc", "ms": "azure", "aws": "cognito", "app": "custom", "dev": "custom"}
	for _, m := range got {
		m := m.(map[string]any)
		id := m["id"].(string)
		b, _ := json.Marshal(m[subs[id]])
		if string(b) != want[id] {
			t.Errorf("method %s: %s = %s, want %s (%v)", id, subs[id], b, want[id], m)
		}
		for _, other := range []string{"static", "password", "oidc", "azure", "cognito", "custom", "identity_provider_id"} {
			if _, ok := m[other]; ok && other != subs[id] {
				t.Errorf("method %s shows %s: %v", id, other, m)
			}
		}
	}
	_, spec := e.storedServer("acme", "default")
	if m := spec.Authentications[2]; m.Method != model.LoginAzure || m.OIDC == nil || m.OIDC.IdentityProviderID != "entra" {
		t.Fatalf("stored azure method %+v: want method azure with its oidc reference", m)
	}
	// GET's body goes back unchanged.
	g := e.expect(e.do("GET", path, rootToken, nil), 200)
	var body map[string]any
	_ = json.Unmarshal(g.body, &body)
	again := e.expect(e.do("PUT", path, rootToken, body, "If-Match", g.header.Get("ETag")), 200)
	if string(again.json(t)["methods"].([]any)[4].(map[string]any)["custom"].(map[string]any)["login_url"].(string)) != "https://app.example.com/login?x=1" {
		t.Fatalf("round trip: %s", again.body)
	}

	state := e.serverState("acme")
	for _, c := range []struct {
		method map[string]any
		status int
		field  string
	}{
		{map[string]any{"id": "x", "method": "oidc", "oidc": map[string]any{"identity_provider_id": "nosuch"}}, 404, "methods[0].oidc.identity_provider_id"},
		{map[string]any{"id": "x", "method": "oidc", "identity_provider_id": "theirs"}, 404, "methods[0].oidc.identity_provider_id"},
		{map[string]any{"id": "x", "method": "azure", "azure": map[string]any{"identity_provider_id": "corp"}}, 400, "methods[0].azure.identity_provider_id"},
		{map[string]any{"id": "x", "method": "cognito", "cognito": map[string]any{"identity_provider_id": "entra"}}, 400, "methods[0].cognito.identity_provider_id"},
	} {
		r := e.do("PUT", path, rootToken, map[string]any{"methods": []any{c.method}})
		if r.status != c.status {
			t.Fatalf("%v: %d, want %d: %s", c.method, r.status, c.status, r.body)
		}
		if d, _ := r.json(t)["details"].(map[string]any); d["field"] != c.field {
			t.Fatalf("%v: want an error naming %s: %s", c.method, c.field, r.body)
		}
	}
	// globex cannot name acme's identity provider either.
	r := e.do("PUT", "/api/admin/globex/servers/default/authentications", rootToken,
		map[string]any{"methods": []any{map[string]any{"id": "x", "method": "oidc", "oidc": map[string]any{"identity_provider_id": "corp"}}}})
	e.expect(r, 404)
	if e.serverState("acme") != state {
		t.Fatal("refused writes changed the store")
	}

	// The configuration document carries the methods, and takes them back.
	doc := e.expect(e.do("GET", "/api/admin/acme/configuration", rootToken, nil), 200)
	var cfg map[string]any
	_ = json.Unmarshal(doc.body, &cfg)
	e.expect(e.do("PUT", "/api/admin/acme/configuration", rootToken, cfg), 200)
	if _, after := e.storedServer("acme", "default"); len(after.Authentications) != 6 || after.Authentications[4].Custom == nil ||
		after.Authentications[0].Password == nil || after.Authentications[0].Password.Hint != "Your work email" {
		t.Fatalf("after an import of the export: %+v", after.Authentications)
	}
}

// auto_provision_users is a server setting: default false, set on create
// and PUT, shown by GET.
func TestServerAutoProvisionUsers(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	c := e.expect(e.do("POST", "/api/admin/acme/servers", rootToken, map[string]any{"id": "fed", "auto_provision_users": true}), 201).json(t)
	if c["auto_provision_users"] != true {
		t.Fatalf("create: %v", c)
	}
	if _, spec := e.storedServer("acme", "fed"); !spec.AutoProvisionUsers {
		t.Fatal("not stored")
	}
	if g := e.expect(e.do("GET", "/api/admin/acme/servers/default", rootToken, nil), 200).json(t); g["auto_provision_users"] != false {
		t.Fatalf("default server: %v", g)
	}
	e.expect(e.do("PUT", "/api/admin/acme/servers/fed", rootToken, map[string]any{"name": "fed"}), 200)
	if _, spec := e.storedServer("acme", "fed"); spec.AutoProvisionUsers {
		t.Fatal("a PUT without it kept it")
	}
	e.expect(e.do("PUT", "/api/admin/acme/servers/fed", rootToken, map[string]any{"name": "fed", "auto_provision_users": "yes"}), 400)
}

// The application of a custom login decides it once, for a user of the
// login's tenant only, with its tenant's credential or a system one.
func TestCustomLoginDecisions(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	e.createTenant("globex")
	alice := e.directoryUser("acme", "alice@acme.example", model.UserActive)
	sus := e.directoryUser("acme", "sus@acme.example", model.UserSuspended)
	bob := e.directoryUser("globex", "bob@globex.example", model.UserActive)
	ctx := context.Background()
	recs := grants.NewRecords(e.store, nil)
	pending := func(id string, ttl time.Duration) {
		t.Helper()
		now := time.Now()
		l := &grants.CustomLogin{ID: id, ServerID: "default", MethodID: "app", AuthRequestID: "ar-" + id, State: "state-" + id,
			CreatedAt: now, ExpiresAt: now.Add(ttl)}
		if err := recs.PutCustomLogin(ctx, "acme", l); err != nil {
			t.Fatal(err)
		}
	}
	decision := func(id string) *grants.CustomLoginDecision {
		t.Helper()
		st, err := e.store.GetState(ctx, grants.KindCustomLoginDecisions, "acme", id)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			t.Fatal(err)
		}
		var d grants.CustomLoginDecision
		if err := json.Unmarshal(st.Value, &d); err != nil {
			t.Fatal(err)
		}
		return &d
	}
	pending("l1", 10*time.Minute)
	acme, globex := e.credential("acme"), e.credential("globex")
	accept := "/api/system/acme/logins/l1/accept"

	e.expect(e.do("POST", accept, globex, map[string]any{"user_id": alice}), 403)
	e.expect(e.do("POST", "/api/system/nosuch/logins/l1/accept", rootToken, map[string]any{"user_id": alice}), 404)
	e.expect(e.do("POST", "/api/system/globex/logins/l1/accept", rootToken, map[string]any{"user_id": bob}), 404)
	e.expect(e.do("POST", "/api/system/acme/logins/nosuch/accept", acme, map[string]any{"user_id": alice}), 404)
	for _, c := range []struct {
		body   map[string]any
		status int
		field  string
	}{
		{map[string]any{}, 400, "user_id"},
		{map[string]any{"user_id": alice, "subject": "alice@acme.example"}, 400, "subject"},
		{map[string]any{"user_id": alice, "amr": []any{"pwd", "not valid"}}, 400, "amr[1]"},
		{map[string]any{"user_id": alice, "colour": "red"}, 400, "colour"},
		{map[string]any{"user_id": bob}, 404, "user_id"}, // globex's user, at an acme login
		{map[string]any{"subject": "bob@globex.example"}, 404, "subject"},
		{map[string]any{"user_id": sus}, 400, "user_id"},
	} {
		r := e.do("POST", accept, acme, c.body)
		if r.status != c.status {
			t.Fatalf("%v: %d, want %d: %s", c.body, r.status, c.status, r.body)
		}
		if d, _ := r.json(t)["details"].(map[string]any); d["field"] != c.field {
			t.Fatalf("%v: want an error naming %s: %s", c.body, c.field, r.body)
		}
	}
	if decision("l1") != nil {
		t.Fatal("a refused accept decided the login")
	}

	r := e.expect(e.do("POST", accept, acme, map[string]any{"subject": "alice@acme.example", "amr": []any{"hwk"},
		"authentication_context": map[string]any{"department": "R&D"}}), 200).json(t)
	wantRedirect := "https://gh.example/acme/default/login/custom/callback?login_id=l1&login_state=state-l1"
	if r["redirect_to"] != wantRedirect {
		t.Fatalf("redirect_to %v, want %s", r["redirect_to"], wantRedirect)
	}
	d := decision("l1")
	if d == nil || !d.Accepted || d.UserID != alice || !slices.Equal(d.AMR, []string{"hwk"}) || d.AuthContext["department"] != "R&D" || d.DecidedBy == "" {
		t.Fatalf("decision %+v", d)
	}
	e.expect(e.do("POST", accept, acme, map[string]any{"user_id": alice}), 409)
	e.expect(e.do("POST", "/api/system/acme/logins/l1/reject", rootToken, map[string]any{}), 409)
	ev := e.expect(e.do("GET", "/api/admin/acme/events?kind=logins", rootToken, nil), 200).json(t)
	if evs := items(t, ev, "events"); len(evs) != 1 || evs[0]["action"] != "accept" || evs[0]["object_id"] != "l1" {
		t.Fatalf("audit events %v", evs)
	}

	pending("l2", 10*time.Minute)
	reject := "/api/system/acme/logins/l2/reject"
	e.expect(e.do("POST", reject, acme, map[string]any{"error": "server_error"}), 400)
	e.expect(e.do("POST", reject, acme, map[string]any{"error_description": "bad \"quote\""}), 400)
	e.expect(e.do("POST", reject, acme, map[string]any{"error": "login_required", "error_description": "no badge"}), 200)
	if d := decision("l2"); d == nil || d.Accepted || d.Error != "login_required" || d.ErrorDescription != "no badge" {
		t.Fatalf("rejection %+v", d)
	}

	// A login past its expiry (by the records' clock; the store collects
	// it later) is gone.
	past, _ := json.Marshal(grants.CustomLogin{ID: "l3", ServerID: "default", State: "s", ExpiresAt: time.Now().Add(-time.Second)})
	if err := e.store.PutStateTTL(ctx, grants.KindCustomLogins, "acme", "l3", past, time.Hour); err != nil {
		t.Fatal(err)
	}
	e.expect(e.do("POST", "/api/system/acme/logins/l3/accept", rootToken, map[string]any{"user_id": alice}), 404)
	if _, err := e.store.GetState(ctx, grants.KindCustomLoginDecisions, "acme", "l3"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("an expired login was decided: %v", err)
	}
}
