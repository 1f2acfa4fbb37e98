package admin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/gatehouse-dev/gatehouse/admin"
	"github.com/gatehouse-dev/gatehouse/directory"
	"github.com/gatehouse-dev/gatehouse/internal/httpapi"
	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/store"
)

func init() {
	fixtures[model.KindInvitation] = kindFixture{
		create: func(i int) map[string]any {
			return map[string]any{"id": fmt.Sprintf("c%d", i), "invited_email_address": fmt.Sprintf("conf-%d@example.com", i),
				"invitation_url": "https://app.example/join"}
		},
		answersOnly: true,
	}
}

// invitationKey is the key the create answer's invitation_url carries.
func invitationKey(t *testing.T, m map[string]any) string {
	t.Helper()
	u, err := url.Parse(m["invitation_url"].(string))
	if err != nil {
		t.Fatal(err)
	}
	key := u.Query().Get("key")
	if !regexp.MustCompile(`^[A-Za-z0-9]{36}$`).MatchString(key) {
		t.Fatalf("key %q in %s", key, m["invitation_url"])
	}
	return key
}

// addUser writes a user of tid straight into the store.
func (e *env) addUser(tid, email string, state model.UserState) string {
	e.t.Helper()
	id := uuid.NewString()
	testkit.Write(e.t, e.store, func(ctx context.Context, tx store.Tx) error {
		return directory.CreateUser(ctx, tx, &store.Typed[model.UserSpec]{Meta: store.Object{TenantID: tid, ID: id},
			Spec: model.UserSpec{Email: email, State: state}})
	})
	return id
}

// editInvitation changes a stored invitation (to reach states the API
// cannot, such as Expired).
func (e *env) editInvitation(tid, id string, edit func(*model.InvitationSpec)) {
	e.t.Helper()
	testkit.Write(e.t, e.store, func(ctx context.Context, tx store.Tx) error {
		t, err := directory.Invitations.Get(ctx, tx, tid, id)
		if err != nil {
			return err
		}
		edit(&t.Spec)
		return directory.Invitations.Update(ctx, tx, t, 0)
	})
}

func TestInvitationCRUD(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	base := "/api/admin/acme/invitations"
	target := e.addUser("acme", "pending@acme.example", model.UserPending)
	start := time.Now()
	r := e.expect(e.do("POST", base, rootToken, map[string]any{"invited_email_address": "Pending@Acme.example",
		"invitation_url": "https://app.example/join", "target_user_identity_id": target}), 201)
	m := r.json(t)
	key := invitationKey(t, m)
	id := m["id"].(string)
	if !strings.HasPrefix(m["invitation_url"].(string), "https://app.example/join?key=") || m["state"] != "Open" ||
		m["accepted"] != nil || m["revoked_at"] != nil || m["response_received_at"] != nil || m["from_identity_id"] != "" ||
		m["to_tenant_id"] != "acme" || m["target_user_identity_id"] != target {
		t.Fatalf("created: %s", r.body)
	}
	exp, _ := time.Parse(time.RFC3339Nano, m["expiration"].(string))
	if d := exp.Sub(start); d < model.InvitationTTL-time.Minute || d > model.InvitationTTL+time.Minute {
		t.Fatalf("expiration %v after creation", d)
	}
	if r.header.Get("Location") != base+"/"+id {
		t.Fatalf("Location %q", r.header.Get("Location"))
	}
	// Stored as the key's SHA-256 only; never shown again.
	stored, err := directory.Invitations.Get(context.Background(), e.store, "acme", id)
	if err != nil {
		t.Fatal(err)
	}
	if stored.Meta.Name != directory.InvitationKeyHash(key) || stored.Spec.KeyHash != stored.Meta.Name || stored.Spec.InvitationURL != "https://app.example/join" {
		t.Fatalf("stored: %+v", stored)
	}
	raw, _ := json.Marshal(stored)
	if bytes.Contains(raw, []byte(key)) {
		t.Fatal("the store holds the key")
	}
	var bodies [][]byte
	for _, p := range []string{base, base + "/" + id, "/api/admin/acme/events", "/api/admin/acme/configuration"} {
		bodies = append(bodies, e.expect(e.do("GET", p, rootToken, nil), 200).body)
	}
	g := e.expect(e.do("GET", base+"/"+id, rootToken, nil), 200).json(t)
	if g["invitation_url"] != "https://app.example/join" || g["state"] != "Open" {
		t.Fatalf("get: %v", g)
	}
	// A URL with a query gets &key=.
	m2 := e.expect(e.do("POST", base, rootToken, map[string]any{"invited_email_address": "new@acme.example",
		"invitation_url": "http://localhost:3000/invite?lang=en"}), 201).json(t)
	if k := invitationKey(t, m2); m2["invitation_url"] != "http://localhost:3000/invite?lang=en&key="+k {
		t.Fatalf("url with a query: %v", m2["invitation_url"])
	}
	bodies = append(bodies, e.expect(e.do("GET", base, rootToken, nil), 200).body)
	for _, b := range bodies {
		if bytes.Contains(b, []byte(key)) || bytes.Contains(b, []byte(invitationKey(t, m2))) {
			t.Fatalf("an answer holds a key: %s", b)
		}
	}
	// Delete removes it; its key no longer finds it.
	e.expect(e.do("DELETE", base+"/"+m2["id"].(string), rootToken, nil), 204)
	e.expect(e.do("GET", base+"/"+m2["id"].(string), rootToken, nil), 404)
	if _, err := directory.InvitationByKey(context.Background(), e.store, "acme", invitationKey(t, m2)); err == nil {
		t.Fatal("a deleted invitation's key still works")
	}
}

func TestInvitationCreateRefusals(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	e.createTenant("other")
	foreign := e.addUser("other", "x@other.example", model.UserPending)
	base := "/api/admin/acme/invitations"
	ok := map[string]any{"invited_email_address": "a@acme.example", "invitation_url": "https://app.example/join"}
	with := func(k string, v any) map[string]any {
		m := map[string]any{}
		for a, b := range ok {
			m[a] = b
		}
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	before := e.idpState("acme", "other")
	for _, c := range []struct {
		name, field string
		body        map[string]any
	}{
		{"no email", "invited_email_address", with("invited_email_address", nil)},
		{"bad email", "invited_email_address", with("invited_email_address", "not an email")},
		{"display name", "invited_email_address", with("invited_email_address", "Ann <a@acme.example>")},
		{"no url", "invitation_url", with("invitation_url", nil)},
		{"http to a public host", "invitation_url", with("invitation_url", "http://app.example/join")},
		{"relative url", "invitation_url", with("invitation_url", "/join")},
		{"javascript url", "invitation_url", with("invitation_url", "javascript:alert(1)")},
		{"fragment", "invitation_url", with("invitation_url", "https://app.example/join#x")},
		{"own key parameter", "invitation_url", with("invitation_url", "https://app.example/join?key=abc")},
		{"bad target id", "target_user_identity_id", with("target_user_identity_id", "a b")},
		{"unknown target", "target_user_identity_id", with("target_user_identity_id", "no-such-user")},
		{"another tenant's user", "target_user_identity_id", with("target_user_identity_id", foreign)},
		{"other tenant", "to_tenant_id", with("to_tenant_id", "other")},
		{"unknown field", "key", with("key", "abc")},
		{"ill-typed", "invitation_url", with("invitation_url", 42)},
	} {
		r := e.do("POST", base, rootToken, c.body)
		if r.status != 400 {
			t.Errorf("%s: %d %s", c.name, r.status, r.body)
			continue
		}
		if f := detailsField(t, r); f != c.field && !strings.Contains(string(r.body), c.field) {
			t.Errorf("%s: names %q, want %q: %s", c.name, f, c.field, r.body)
		}
	}
	e.requireIdPStateUnchanged(t, before, "refused creates changed the store", "acme", "other")
	// The key flow's built-in client id is no stored client's.
	if r := e.do("POST", "/api/admin/acme/clients", rootToken, map[string]any{"client_id": model.InvitationClientID,
		"authorization_server_id": "default", "grant_types": []string{"client_credentials"}}); r.status != 400 || detailsField(t, r) != "client_id" {
		t.Errorf("a client with the invitations' built-in id: %d %s", r.status, r.body)
	}
	e.requireIdPStateUnchanged(t, before, "a refused client changed the store", "acme", "other")
	// No PUT or PATCH: invitations change only by their answers.
	id := e.expect(e.do("POST", base, rootToken, ok), 201).json(t)["id"].(string)
	for _, method := range []string{"PUT", "PATCH"} {
		if r := e.do(method, base+"/"+id, rootToken, ok, "Content-Type", admin.MergePatchType); r.status != 405 && r.status != 404 {
			t.Errorf("%s an invitation: %d %s", method, r.status, r.body)
		}
	}
}

// Every answer from every state: the legal ones move the state, the
// others are 409 invalid_transition and change nothing (no object, no
// event).
func TestInvitationTransitions(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	base := "/api/admin/acme/invitations"
	mk := func(state model.InvitationState) string {
		id := e.expect(e.do("POST", base, rootToken, map[string]any{"invited_email_address": "a@acme.example",
			"invitation_url": "https://app.example/join"}), 201).json(t)["id"].(string)
		switch state {
		case model.InvitationAccepted:
			e.expect(e.do("PUT", base+"/"+id+"/accept", rootToken, nil), 200)
		case model.InvitationDeclined:
			e.expect(e.do("PUT", base+"/"+id+"/decline", rootToken, nil), 200)
		case model.InvitationRevoked:
			e.expect(e.do("PUT", base+"/"+id+"/revoke", rootToken, nil), 200)
		case model.InvitationExpired:
			e.editInvitation("acme", id, func(s *model.InvitationSpec) { s.Expiration = time.Now().Add(-time.Minute) })
		}
		if got := e.expect(e.do("GET", base+"/"+id, rootToken, nil), 200).json(t)["state"]; got != string(state) {
			t.Fatalf("fixture %s is %v", state, got)
		}
		return id
	}
	legal := map[string][]model.InvitationState{
		"accept":  {model.InvitationOpen},
		"decline": {model.InvitationOpen},
		"revoke":  {model.InvitationOpen, model.InvitationDeclined, model.InvitationExpired},
	}
	after := map[string]model.InvitationState{"accept": model.InvitationAccepted, "decline": model.InvitationDeclined, "revoke": model.InvitationRevoked}
	states := []model.InvitationState{model.InvitationOpen, model.InvitationAccepted, model.InvitationDeclined, model.InvitationExpired, model.InvitationRevoked}
	for _, action := range []string{"accept", "decline", "revoke"} {
		for _, from := range states {
			id := mk(from)
			before := e.idpState("acme")
			r := e.do("PUT", base+"/"+id+"/"+action, rootToken, nil)
			if !slices.Contains(legal[action], from) {
				if r.status != 409 || r.errorCode(t) != httpapi.CodeInvalidTransition || detailsField(t, r) != "state" {
					t.Errorf("%s from %s: %d %s", action, from, r.status, r.body)
				}
				e.requireIdPStateUnchanged(t, before, fmt.Sprintf("a refused %s from %s changed the store", action, from), "acme")
				continue
			}
			m := e.expect(r, 200).json(t)
			if m["state"] != string(after[action]) || m["response_received_at"] == nil {
				t.Errorf("%s from %s: %v", action, from, m)
			}
			switch action {
			case "accept":
				if m["accepted"] != true {
					t.Errorf("accept: %v", m)
				}
			case "decline":
				if m["accepted"] != false {
					t.Errorf("decline: %v", m)
				}
			case "revoke":
				if m["revoked_at"] == nil || (from == model.InvitationOpen && m["accepted"] != nil) {
					t.Errorf("revoke from %s: %v", from, m)
				}
			}
		}
	}
	// An admin's accept maps no user and activates nobody.
	target := e.addUser("acme", "p@acme.example", model.UserPending)
	id := e.expect(e.do("POST", base, rootToken, map[string]any{"invited_email_address": "p@acme.example",
		"invitation_url": "https://app.example/join", "target_user_identity_id": target}), 201).json(t)["id"].(string)
	e.expect(e.do("PUT", base+"/"+id+"/accept", rootToken, nil), 200)
	if u, err := directory.Users.Get(context.Background(), e.store, "acme", target); err != nil || u.Spec.State != model.UserPending {
		t.Fatalf("target after an admin's accept: %+v %v", u, err)
	}
	// A body other than {} is refused; If-Match is honoured.
	id = mk(model.InvitationOpen)
	if r := e.do("PUT", base+"/"+id+"/decline", rootToken, map[string]any{"why": "x"}); r.status != 400 {
		t.Fatalf("body: %d %s", r.status, r.body)
	}
	if r := e.do("PUT", base+"/"+id+"/decline", rootToken, nil, "If-Match", `"1"`); r.status != 412 {
		t.Fatalf("stale If-Match: %d %s", r.status, r.body)
	}
	e.expect(e.do("PUT", base+"/no-such/decline", rootToken, nil), 404)
}

func TestInvitationFilters(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	base := "/api/admin/acme/invitations"
	u1 := e.addUser("acme", "u1@acme.example", model.UserPending)
	u2 := e.addUser("acme", "u2@acme.example", model.UserPending)
	mk := func(email, target string) string {
		b := map[string]any{"invited_email_address": email, "invitation_url": "https://app.example/join"}
		if target != "" {
			b["target_user_identity_id"] = target
		}
		return e.expect(e.do("POST", base, rootToken, b), 201).json(t)["id"].(string)
	}
	open1 := mk("u1@acme.example", u1)
	declined1 := mk("u1@acme.example", u1)
	e.expect(e.do("PUT", base+"/"+declined1+"/decline", rootToken, nil), 200)
	open2 := mk("u2@acme.example", u2)
	expired := mk("other@acme.example", "")
	e.editInvitation("acme", expired, func(s *model.InvitationSpec) { s.Expiration = time.Now().Add(-time.Second) })
	revoked := mk("other@acme.example", "")
	e.expect(e.do("PUT", base+"/"+revoked+"/revoke", rootToken, nil), 200)
	ids := func(q string) []string {
		l := e.expect(e.do("GET", base+q, rootToken, nil), 200).json(t)
		var out []string
		for _, x := range l["invitations"].([]any) {
			out = append(out, x.(map[string]any)["id"].(string))
		}
		slices.Sort(out)
		if int(l["total"].(float64)) != len(out) {
			t.Fatalf("%s: total %v for %v", q, l["total"], out)
		}
		return out
	}
	sorted := func(v ...string) []string { slices.Sort(v); return v }
	for q, want := range map[string][]string{
		"":                                           sorted(open1, declined1, open2, expired, revoked),
		"?invited_email_address=U1@acme.example":     sorted(open1, declined1),
		"?invited_email_address=acme.example":        nil,
		"?target_user_identity_id=" + u1:             sorted(open1, declined1),
		"?target_identity_id=" + u2:                  {open2},
		"?target_identity_id=" + u1 + "&states=Open": {open1},
		"?states=Open":                               sorted(open1, open2),
		"?states=Open,Declined,Expired":              sorted(open1, declined1, open2, expired),
		"?states=revoked":                            {revoked},
		"?states=Accepted":                           nil,
		"?invited_email_address=other@acme.example&states=Expired":     {expired},
		"?target_user_identity_id=" + u1 + "&target_identity_id=" + u2: nil,
		"?from_identity_id=someone":                                    nil,
	} {
		if got := ids(q); !slices.Equal(got, want) {
			t.Errorf("%s: %v, want %v", q, got, want)
		}
	}
	if r := e.do("GET", base+"?states=Open,Pending", rootToken, nil); r.status != 400 || detailsField(t, r) != "states" || !strings.Contains(string(r.body), "Pending") {
		t.Fatalf("unknown state: %d %s", r.status, r.body)
	}
}

// fakeAdminTokens accepts "eyJ.<tid>.<sub>" as an admin server's token
// of tenant tid naming sub, as oauth/verify.AdminAuth names it.
type fakeAdminTokens struct{}

func (fakeAdminTokens) VerifyAdminToken(_ context.Context, raw string) (string, string, bool, error) {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 || parts[0] != "eyJ" {
		return "", "", false, nil
	}
	return "token:" + parts[1] + "/" + model.AdminServerID + ":" + parts[2], parts[1], true, nil
}

// from_identity_id is the caller's user when its token names one of the
// tenant's users, else empty.
func TestInvitationFromIdentity(t *testing.T) {
	e := newEnvWith(t, func(o *admin.Options) { o.TokenAuth = fakeAdminTokens{} })
	e.createTenant("acme")
	admin := e.addUser("acme", "admin@acme.example", model.UserActive)
	body := map[string]any{"invited_email_address": "a@acme.example", "invitation_url": "https://app.example/join"}
	m := e.expect(e.do("POST", "/api/admin/acme/invitations", "eyJ.acme."+admin, body), 201).json(t)
	if m["from_identity_id"] != admin {
		t.Fatalf("from_identity_id %v, want %s", m["from_identity_id"], admin)
	}
	if l := e.expect(e.do("GET", "/api/admin/acme/invitations?from_identity_id="+admin, rootToken, nil), 200).json(t); l["total"].(float64) != 1 {
		t.Fatalf("from filter: %v", l)
	}
	m = e.expect(e.do("POST", "/api/admin/acme/invitations", "eyJ.acme.not-a-user", body), 201).json(t)
	if m["from_identity_id"] != "" {
		t.Fatalf("an unknown subject became from_identity_id: %v", m)
	}
	m = e.expect(e.do("POST", "/api/admin/acme/invitations", e.credential("acme"), body), 201).json(t)
	if m["from_identity_id"] != "" {
		t.Fatalf("a credential became from_identity_id: %v", m)
	}
}

func TestInvitationIsolation(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	e.createTenant("other")
	id := e.expect(e.do("POST", "/api/admin/acme/invitations", rootToken, map[string]any{"invited_email_address": "a@acme.example",
		"invitation_url": "https://app.example/join"}), 201).json(t)["id"].(string)
	tok := e.credential("other")
	before := e.idpState("acme", "other")
	for _, c := range []struct{ method, path string }{
		{"GET", "/api/admin/acme/invitations"}, {"POST", "/api/admin/acme/invitations"},
		{"GET", "/api/admin/acme/invitations/" + id}, {"DELETE", "/api/admin/acme/invitations/" + id},
		{"PUT", "/api/admin/acme/invitations/" + id + "/accept"}, {"PUT", "/api/admin/acme/invitations/" + id + "/decline"},
		{"PUT", "/api/admin/acme/invitations/" + id + "/revoke"},
	} {
		body := map[string]any{"invited_email_address": "x@acme.example", "invitation_url": "https://app.example/join"}
		if r := e.do(c.method, c.path, tok, body); r.status != 403 || r.errorCode(t) != httpapi.CodeForbidden {
			t.Errorf("other's credential on %s %s: %d %s", c.method, c.path, r.status, r.body)
		}
		unknown := strings.Replace(c.path, "/acme/", "/nope/", 1)
		if r := e.do(c.method, unknown, rootToken, body); r.status != 404 || r.errorCode(t) != httpapi.CodeNotFound {
			t.Errorf("unknown tenant %s %s: %d %s", c.method, unknown, r.status, r.body)
		}
	}
	if r := e.do("PUT", "/api/admin/other/invitations/"+id+"/revoke", rootToken, nil); r.status != 404 {
		t.Fatalf("acme's invitation under other: %d %s", r.status, r.body)
	}
	e.requireIdPStateUnchanged(t, before, "foreign requests changed the store", "acme", "other")
}
