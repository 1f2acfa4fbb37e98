package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/directory"
	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	"github.com/gatehouse-dev/gatehouse/internal/testkit/browser"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/oauth/grants"
	"github.com/gatehouse-dev/gatehouse/store"
)

// invite stores an Open invitation into tid (as the admin API makes it)
// and returns its key and id.
func (e *env) invite(tid, email, target string, edit func(*model.InvitationSpec)) (key, id string) {
	e.t.Helper()
	key, hash, err := directory.NewInvitationKey()
	if err != nil {
		e.t.Fatal(err)
	}
	id = "inv-" + key[:8]
	spec := model.InvitationSpec{InvitedEmailAddress: email, InvitationURL: "https://app.example/join", TargetUserIdentityID: target,
		Expiration: time.Now().Add(model.InvitationTTL), KeyHash: hash}
	if edit != nil {
		edit(&spec)
	}
	testkit.Write(e.t, e.st, func(ctx context.Context, tx store.Tx) error {
		return directory.Invitations.Create(ctx, tx, &store.Typed[model.InvitationSpec]{Meta: store.Object{TenantID: tid, ID: id, Name: hash}, Spec: spec})
	})
	return key, id
}

func (e *env) invitation(tid, id string) *store.Typed[model.InvitationSpec] {
	e.t.Helper()
	inv, err := directory.Invitations.Get(context.Background(), e.st, tid, id)
	if err != nil {
		e.t.Fatal(err)
	}
	return inv
}

// directoryObjects renders a tenant's users, mappings and invitations
// (with revisions) and counts its events: what a denial leaves as it was.
func (e *env) directoryObjects(tid string) string {
	e.t.Helper()
	ctx := context.Background()
	var b strings.Builder
	for _, kind := range []string{model.KindUser, model.KindUserSubject, model.KindIdentityMapping, model.KindInvitation} {
		pg, err := e.st.List(ctx, store.Query{Kind: kind, TenantID: tid, IncludeDeleted: true})
		if err != nil {
			e.t.Fatal(err)
		}
		for _, o := range pg.Items {
			fmt.Fprintf(&b, "%s/%s rev=%d\n", kind, o.ID, o.Revision)
		}
	}
	evs, err := e.st.ListEvents(ctx, store.EventQuery{TenantID: tid})
	if err != nil {
		e.t.Fatal(err)
	}
	fmt.Fprintf(&b, "%d events\n", len(evs.Items))
	return b.String()
}

// call sends an anonymous request and decodes a JSON answer.
func (e *env) call(method, target string) (int, map[string]any, http.Header) {
	e.t.Helper()
	req, _ := http.NewRequest(method, target, nil)
	res, err := e.browser().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	var m map[string]any
	_ = json.Unmarshal(body, &m)
	return res.StatusCode, m, res.Header
}

func TestInvitationKeySummaryAndDecline(t *testing.T) {
	e := newFedEnv(t, testkit.Store(t), false)
	from := e.dirUser("acme", "boss@acme.example", model.UserActive)
	testkit.Edit(t, e.st, model.KindUser, "acme", from, func(u *model.UserSpec) { u.GivenName, u.FamilyName = "Bo", "Ss" })
	target := e.dirUser("acme", "newbie@acme.example", model.UserPending)
	key, id := e.invite("acme", "newbie@acme.example", target, func(s *model.InvitationSpec) { s.FromIdentityID = from })
	base := e.issuer("acme", "default") + pathInvitations + "/" + key

	status, m, h := e.call(http.MethodGet, base)
	if status != 200 || m["state"] != "Open" || m["accepted"] != nil || m["to_tenant_name"] == "" ||
		m["invited_email_address"] != "newbie@acme.example" || h.Get("Referrer-Policy") != "no-referrer" || h.Get("Cache-Control") != "no-store" {
		t.Fatalf("summary: %d %v %v", status, m, h)
	}
	if f := m["from_identity"].(map[string]any); f["name"] != "Bo Ss" || f["email"] != "boss@acme.example" {
		t.Fatalf("from_identity: %v", f)
	}
	if tg := m["target_identity"].(map[string]any); tg["email"] != "newbie@acme.example" {
		t.Fatalf("target_identity: %v", tg)
	}
	raw, _ := json.Marshal(m)
	for _, secret := range []string{id, from, target, key, e.invitation("acme", id).Spec.KeyHash} {
		if strings.Contains(string(raw), secret) {
			t.Fatalf("the summary shows %q: %s", secret, raw)
		}
	}

	// Unknown or malformed keys, other servers and other tenants: 404.
	other, _, _ := directory.NewInvitationKey()
	for _, u := range []string{
		e.issuer("acme", "default") + pathInvitations + "/" + other,
		e.issuer("acme", "default") + pathInvitations + "/short",
		e.issuer("acme", "other") + pathInvitations + "/" + key,
		e.issuer("globex", "default") + pathInvitations + "/" + key,
		base + "/nope",
	} {
		if status, _, _ := e.call(http.MethodGet, u); status != 404 {
			t.Errorf("GET %s: %d", u, status)
		}
	}
	if status, _, h := e.call(http.MethodPost, base); status != 405 || h.Get("Allow") != "GET" {
		t.Fatalf("POST the summary: %d", status)
	}
	if status, _, _ := e.call(http.MethodGet, base+"/decline"); status != 405 {
		t.Fatalf("GET decline: %d", status)
	}

	// Decline: Open → Declined, audited as the invitation.
	status, m, _ = e.call(http.MethodPut, base+"/decline")
	if status != 200 || m["state"] != "Declined" || m["accepted"] != false {
		t.Fatalf("decline: %d %v", status, m)
	}
	inv := e.invitation("acme", id)
	if inv.Spec.ResponseReceivedAt == nil || inv.Spec.Accepted == nil || *inv.Spec.Accepted {
		t.Fatalf("declined: %+v", inv.Spec)
	}
	evs, _ := e.st.ListEvents(context.Background(), store.EventQuery{TenantID: "acme", Kind: model.KindInvitation})
	if len(evs.Items) != 1 || evs.Items[0].Actor != "invitation:"+id {
		t.Fatalf("decline event: %+v", evs.Items)
	}
	// Every answer from a state that refuses it: 409, nothing changed.
	before, records := e.directoryObjects("acme"), e.snapshot("acme")
	for _, a := range []struct{ method, path string }{{http.MethodPut, "/decline"}, {http.MethodPost, "/accept"}} {
		if status, m, _ := e.call(a.method, base+a.path); status != 409 || m["error"] != "invalid_transition" {
			t.Errorf("%s %s of a declined invitation: %d %v", a.method, a.path, status, m)
		}
	}
	if after := e.directoryObjects("acme"); after != before {
		t.Fatalf("refused answers changed the directory:\n%s\n%s", before, after)
	}
	e.unchanged("acme", records, "refused answers")
	for name, edit := range map[string]func(*model.InvitationSpec){
		"expired": func(s *model.InvitationSpec) { s.Expiration = time.Now().Add(-time.Minute) },
		"revoked": func(s *model.InvitationSpec) { now := time.Now(); s.RevokedAt = &now },
		"accepted": func(s *model.InvitationSpec) {
			yes, now := true, time.Now()
			s.Accepted, s.ResponseReceivedAt = &yes, &now
		},
	} {
		k, _ := e.invite("acme", name+"@acme.example", "", edit)
		before, records = e.directoryObjects("acme"), e.snapshot("acme")
		for _, a := range []struct{ method, path string }{{http.MethodPut, "/decline"}, {http.MethodPost, "/accept"}} {
			if status, m, _ := e.call(a.method, e.issuer("acme", "default")+pathInvitations+"/"+k+a.path); status != 409 || m["error"] != "invalid_transition" {
				t.Errorf("%s %s of an %s invitation: %d %v", a.method, a.path, name, status, m)
			}
		}
		if after := e.directoryObjects("acme"); after != before {
			t.Fatalf("refused answers to an %s invitation changed the directory:\n%s\n%s", name, before, after)
		}
		e.unchanged("acme", records, "refused answers")
	}
}

// acceptFlow posts accept for key in a new browser and follows the
// sign-in to its end: the done page (or any other page).
func (e *env) acceptFlow(key string, login func(c *http.Client, res flow) flow) flow {
	e.t.Helper()
	c := e.browser()
	res := e.follow(c, http.MethodPost, e.issuer("acme", "default")+pathInvitations+"/"+key+"/accept", nil, "no-stop")
	if login != nil {
		res = login(c, res)
	}
	return res
}

// TestInvitationAcceptFederated: the key's accept link signs the invitee
// in at the default server's identity provider; the upstream identity
// becomes the target user (pending → active) or a new user of the
// invited email, the invitation Accepted, the code taken at the done
// page. Denials change nothing.
func TestInvitationAcceptFederated(t *testing.T) {
	backendsFed(t, false, func(t *testing.T, e *env) {
		ctx := context.Background()
		up := newFakeOP(t, fedClientID, fedSecret)
		e.fakeIdP("acme", "corp", up, nil)
		e.methods("acme", "default", false, oidcMethod("corp-login", "corp"))
		as := func(sub, email string, verified bool) {
			up.set(func(f *fakeOP) {
				f.sub, f.claims = sub, map[string]any{"email": email, "email_verified": verified, "given_name": "Fox", "family_name": "Mulder"}
			})
		}
		done := e.issuer("acme", "default") + pathInvitations + "/" + invitationDone

		// A pending target user: mapped, activated.
		target := e.dirUser("acme", "fox@acme.example", model.UserPending)
		key, id := e.invite("acme", "fox@acme.example", target, nil)
		as("ext-fox", "fox@corp.example", true)
		res := e.acceptFlow(key, nil)
		if res.status != 200 || !strings.Contains(res.body, "Invitation accepted") || !res.wentTo(up.srv.URL) || !res.wentTo(done) {
			t.Fatalf("accept: %d %s", res.status, res.body)
		}
		if auth := up.lastAuthorization(); auth.Get("login_hint") != "fox@acme.example" {
			t.Fatalf("the upstream login_hint: %v", auth)
		}
		if u, err := directory.UserByMapping(ctx, e.st, "acme", "corp", "ext-fox"); err != nil || u.Meta.ID != target || u.Spec.State != model.UserActive {
			t.Fatalf("target after the accept: %+v %v", u, err)
		}
		inv := e.invitation("acme", id)
		if inv.Spec.State(time.Now()) != model.InvitationAccepted || inv.Spec.ResponseReceivedAt == nil {
			t.Fatalf("invitation: %+v", inv.Spec)
		}
		if codes, _ := e.st.ListState(ctx, grants.KindCodes, "acme"); len(codes) != 0 {
			t.Fatalf("the done page left %d codes", len(codes))
		}
		// The key is spent: accept again is a 409.
		if status, _, _ := e.call(http.MethodPost, e.issuer("acme", "default")+pathInvitations+"/"+key+"/accept"); status != 409 {
			t.Fatalf("accept an accepted invitation: %d", status)
		}
		evs, _ := e.st.ListEvents(ctx, store.EventQuery{TenantID: "acme"})
		actors := 0
		for _, ev := range evs.Items {
			if ev.Actor == "invitation:"+id {
				actors++
			}
		}
		if actors != 3 { // mapping create, user update, invitation update
			t.Fatalf("events of the acceptance: %d (%+v)", actors, evs.Items)
		}

		// No target: a new user of the invited email, verified only when
		// the upstream verified that same address.
		key, id = e.invite("acme", "Dana@Acme.example", "", nil)
		as("ext-dana", "dana@acme.example", true)
		if res := e.acceptFlow(key, nil); res.status != 200 || !strings.Contains(res.body, "Invitation accepted") {
			t.Fatalf("accept without target: %d %s", res.status, res.body)
		}
		u, err := directory.UserByMapping(ctx, e.st, "acme", "corp", "ext-dana")
		if err != nil || u.Spec.Email != "dana@acme.example" || !u.Spec.EmailVerified || u.Spec.State != model.UserActive || u.Spec.GivenName != "Fox" {
			t.Fatalf("new user: %+v %v", u, err)
		}
		key, _ = e.invite("acme", "eve@acme.example", "", nil)
		as("ext-eve", "eve@elsewhere.example", true)
		if res := e.acceptFlow(key, nil); res.status != 200 {
			t.Fatalf("accept with another upstream email: %d %s", res.status, res.body)
		}
		if u, err := directory.UserByMapping(ctx, e.st, "acme", "corp", "ext-eve"); err != nil || u.Spec.Email != "eve@acme.example" || u.Spec.EmailVerified {
			t.Fatalf("user of another upstream email: %+v %v", u, err)
		}

		// Denials: access_denied at the done page, nothing changed.
		denied := func(name, key string) {
			t.Helper()
			before, records := e.directoryObjects("acme"), e.snapshot("acme")
			res := e.acceptFlow(key, nil)
			if res.status != 403 || !strings.Contains(res.body, "not accepted") || !res.wentTo(done) {
				t.Fatalf("%s: %d %s", name, res.status, res.body)
			}
			if after := e.directoryObjects("acme"); after != before {
				t.Fatalf("%s changed the directory:\n%s\n%s", name, before, after)
			}
			e.unchanged("acme", map[string]int{grants.KindCodes: records[grants.KindCodes], grants.KindAuthRequests: records[grants.KindAuthRequests]}, name)
		}
		// The invited email is another user's (the invitation must name it).
		key, _ = e.invite("acme", "dana@acme.example", "", nil)
		as("ext-other", "x@corp.example", true)
		denied("the invited email taken", key)
		// The identity is mapped to another user than the target.
		other := e.dirUser("acme", "gina@acme.example", model.UserPending)
		key, _ = e.invite("acme", "gina@acme.example", other, nil)
		as("ext-dana", "dana@acme.example", true)
		denied("an identity mapped to someone else", key)
		// The target has another identity at this provider.
		key, _ = e.invite("acme", "fox@acme.example", target, nil)
		as("ext-fox-2", "fox@corp.example", true)
		denied("a second identity for the target", key)
		// A suspended target.
		sus := e.dirUser("acme", "sus@acme.example", model.UserSuspended)
		key, _ = e.invite("acme", "sus@acme.example", sus, nil)
		as("ext-sus", "sus@corp.example", true)
		denied("a suspended target", key)
		// Revoked while the invitee signs in.
		key, id = e.invite("acme", "late@acme.example", "", nil)
		as("ext-late", "late@corp.example", true)
		c := e.browser()
		res = e.follow(c, http.MethodPost, e.issuer("acme", "default")+pathInvitations+"/"+key+"/accept", nil, up.srv.URL)
		if res.callback == nil {
			t.Fatalf("accept did not reach the upstream: %d %s", res.status, res.body)
		}
		testkit.Write(t, e.st, func(ctx context.Context, tx store.Tx) error {
			inv, err := directory.Invitations.Get(ctx, tx, "acme", id)
			if err != nil {
				return err
			}
			if err := directory.RespondInvitation(&inv.Spec, directory.InvitationRevoke, time.Now()); err != nil {
				return err
			}
			return directory.Invitations.Update(ctx, tx, inv, 0)
		})
		res = e.follow(c, http.MethodGet, res.callback.String(), nil, "no-stop")
		if res.status != 403 || !strings.Contains(res.body, "Revoked") {
			t.Fatalf("revoked during the sign-in: %d %s", res.status, res.body)
		}
		if _, err := directory.UserByEmail(ctx, e.st, "acme", "late@acme.example"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("a revoked invitation made a user: %v", err)
		}
		// Another browser cannot take over the sign-in an accept started.
		key, _ = e.invite("acme", "hal@acme.example", "", nil)
		res = e.follow(e.browser(), http.MethodPost, e.issuer("acme", "default")+pathInvitations+"/"+key+"/accept", nil, e.issuer("acme", "default")+pathLogin)
		if res.callback == nil {
			t.Fatalf("accept did not go to the login: %d %s", res.status, res.body)
		}
		if res := e.follow(e.browser(), http.MethodGet, res.callback.String(), nil, "no-stop"); res.status != 403 {
			t.Fatalf("the login page in another browser: %d %s", res.status, res.body)
		}
	})
}

// TestInvitationAcceptPassword: a login that signs a tenant user in
// directly (password) accepts at the done page as that user; the target
// must be that user.
func TestInvitationAcceptPassword(t *testing.T) {
	e := newFedEnv(t, testkit.Store(t), false)
	e.methods("acme", "default", false, model.AuthenticationMethod{ID: "pw", Method: model.LoginPassword, Password: &model.PasswordLogin{}})
	ann := e.dirUser("acme", "ann@acme.example", model.UserActive)
	bob := e.dirUser("acme", "bob@acme.example", model.UserPending)
	testkit.Edit(t, e.st, model.KindUser, "acme", ann, func(u *model.UserSpec) { u.PasswordHash = aliceHash() })
	password := func(c *http.Client, res flow) flow {
		action, fields, ok := browser.Form(res.body)
		if !ok || !fields.Has("password") {
			t.Fatalf("not the password form: %d %s", res.status, res.body)
		}
		if !strings.HasSuffix(fields.Get("email"), "@acme.example") { // the invited email, as login_hint
			t.Fatalf("email field %q, want the invited email", fields.Get("email"))
		}
		fields.Set("email", "ann@acme.example")
		fields.Set("password", alicePassword)
		return e.follow(c, http.MethodPost, action, fields, "no-stop")
	}
	key, id := e.invite("acme", "ann@acme.example", "", nil)
	res := e.acceptFlow(key, password)
	if res.status != 200 || !strings.Contains(res.body, "Invitation accepted") {
		t.Fatalf("password accept: %d %s", res.status, res.body)
	}
	if st := e.invitation("acme", id).Spec.State(time.Now()); st != model.InvitationAccepted {
		t.Fatalf("state %s", st)
	}
	// An invitation for bob cannot be accepted by ann.
	key, id = e.invite("acme", "bob@acme.example", bob, nil)
	before := e.directoryObjects("acme")
	if res := e.acceptFlow(key, password); res.status != 403 || !strings.Contains(res.body, "another user") {
		t.Fatalf("ann accepting bob's invitation: %d %s", res.status, res.body)
	}
	if after := e.directoryObjects("acme"); after != before {
		t.Fatalf("a refused acceptance changed the directory:\n%s\n%s", before, after)
	}
	if st := e.invitation("acme", id).Spec.State(time.Now()); st != model.InvitationOpen {
		t.Fatalf("state %s", st)
	}
	// The done page takes only codes of the invitation client, once.
	if res := e.follow(e.browser(), http.MethodGet, e.issuer("acme", "default")+pathInvitations+"/done?code=nope&state=x", nil, "no-stop"); res.status != 400 {
		t.Fatalf("done with an unknown code: %d %s", res.status, res.body)
	}
}

// TestAcceptInvitation: acceptInvitation's rules against the store, for
// every kind of invitee.
func TestAcceptInvitation(t *testing.T) {
	e := newFedEnv(t, testkit.Store(t), false)
	ctx := context.Background()
	hashOf := func(id string) string { return e.invitation("acme", id).Spec.KeyHash }
	fed := func(sub string) invitee {
		return invitee{IdentityProviderID: "corp", ExternalSubject: sub, Email: sub + "@up.example", EmailVerified: true, GivenName: "G"}
	}
	accept := func(id string, who invitee) (*store.Typed[model.UserSpec], string) {
		t.Helper()
		u, denial, err := e.p.acceptInvitation(ctx, "acme", hashOf(id), who)
		if err != nil {
			t.Fatal(err)
		}
		if (u == nil) == (denial == "") {
			t.Fatalf("user %v and denial %q", u, denial)
		}
		return u, denial
	}
	mustDeny := func(name, id string, who invitee, want string) {
		t.Helper()
		before := e.directoryObjects("acme")
		if _, denial := accept(id, who); !strings.Contains(denial, want) {
			t.Fatalf("%s: denial %q, want %q", name, denial, want)
		}
		if after := e.directoryObjects("acme"); after != before {
			t.Fatalf("%s changed the directory:\n%s\n%s", name, before, after)
		}
	}

	// Target pending, unmapped identity: mapped and activated.
	p1 := e.dirUser("acme", "p1@acme.example", model.UserPending)
	_, i1 := e.invite("acme", "p1@acme.example", p1, nil)
	if u, _ := accept(i1, fed("s1")); u.Meta.ID != p1 || u.Spec.State != model.UserActive {
		t.Fatalf("target: %+v", u)
	}
	if u, err := directory.UserByMapping(ctx, e.st, "acme", "corp", "s1"); err != nil || u.Meta.ID != p1 || u.Spec.State != model.UserActive {
		t.Fatalf("stored target: %+v %v", u, err)
	}
	// Every state but Open is refused, whoever signs in.
	mustDeny("accepted", i1, fed("s1"), "Accepted")
	for name, edit := range map[string]func(*model.InvitationSpec){
		"Declined": func(s *model.InvitationSpec) {
			no, now := false, time.Now()
			s.Accepted, s.ResponseReceivedAt = &no, &now
		},
		"Expired": func(s *model.InvitationSpec) { s.Expiration = time.Now().Add(-time.Second) },
		"Revoked": func(s *model.InvitationSpec) { now := time.Now(); s.RevokedAt = &now },
	} {
		_, id := e.invite("acme", "x@acme.example", "", edit)
		mustDeny(name, id, fed("s-"+name), name)
	}
	// A deleted invitation.
	_, gone := e.invite("acme", "gone@acme.example", "", nil)
	h := hashOf(gone)
	testkit.Write(t, e.st, func(ctx context.Context, tx store.Tx) error {
		_, err := directory.Invitations.Delete(ctx, tx, "acme", gone, 0)
		return err
	})
	if _, denial, err := e.p.acceptInvitation(ctx, "acme", h, fed("s-gone")); err != nil || !strings.Contains(denial, "no longer exists") {
		t.Fatalf("deleted invitation: %q %v", denial, err)
	}

	// No target: a new active user of the invited email, mapped.
	_, i2 := e.invite("acme", "New@Acme.example", "", nil)
	u, _ := accept(i2, fed("s2"))
	if u.Spec.Email != "new@acme.example" || u.Spec.EmailVerified || u.Spec.State != model.UserActive || u.Spec.GivenName != "G" {
		t.Fatalf("new user: %+v", u)
	}
	if m, err := directory.UserByMapping(ctx, e.st, "acme", "corp", "s2"); err != nil || m.Meta.ID != u.Meta.ID {
		t.Fatalf("new user's mapping: %v %v", m, err)
	}
	// The invited email already a user's: refused.
	_, i3 := e.invite("acme", "new@acme.example", "", nil)
	mustDeny("email taken", i3, fed("s3"), "already has the invited email")
	// An identity already mapped: that user accepts (a member again).
	if u, _ := accept(i3, fed("s2")); u.Spec.Email != "new@acme.example" {
		t.Fatalf("mapped identity: %+v", u)
	}
	// A mapped identity of another user than the target.
	p4 := e.dirUser("acme", "p4@acme.example", model.UserPending)
	_, i4 := e.invite("acme", "p4@acme.example", p4, nil)
	mustDeny("another user's identity", i4, fed("s2"), "another user")
	// The target has another identity at the provider.
	e.mapUser("acme", p4, "corp", "s4-old")
	_, i5 := e.invite("acme", "p4@acme.example", p4, nil)
	mustDeny("target mapped at the provider", i5, fed("s5"), "another identity")
	// A target that no longer exists.
	p6 := e.dirUser("acme", "p6@acme.example", model.UserPending)
	_, i6 := e.invite("acme", "p6@acme.example", p6, nil)
	testkit.Write(t, e.st, func(ctx context.Context, tx store.Tx) error {
		_, err := directory.Users.Delete(ctx, tx, "acme", p6, 0)
		return err
	})
	mustDeny("target gone", i6, fed("s6"), "no longer exists")
	// A user the login signed in (password): must be the target; pending
	// users become active, suspended ones are refused.
	p7 := e.dirUser("acme", "p7@acme.example", model.UserPending)
	_, i7 := e.invite("acme", "p7@acme.example", p7, nil)
	mustDeny("signed in as another", i7, invitee{UserID: p1}, "another user")
	if u, _ := accept(i7, invitee{UserID: p7}); u.Meta.ID != p7 || u.Spec.State != model.UserActive {
		t.Fatalf("signed-in target: %+v", u)
	}
	s8 := e.dirUser("acme", "s8@acme.example", model.UserSuspended)
	_, i8 := e.invite("acme", "s8@acme.example", "", nil)
	mustDeny("suspended", i8, invitee{UserID: s8}, "suspended")
	mustDeny("nobody", i8, invitee{}, "did not name a user")
	// Nothing of another tenant: a key hash of globex's invitation.
	_, g := e.invite("globex", "g@globex.example", "", nil)
	gh, _ := directory.Invitations.Get(ctx, e.st, "globex", g)
	if _, denial, err := e.p.acceptInvitation(ctx, "acme", gh.Spec.KeyHash, fed("sg")); err != nil || !strings.Contains(denial, "no longer exists") {
		t.Fatalf("another tenant's invitation: %q %v", denial, err)
	}
}
