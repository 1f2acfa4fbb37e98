package admin_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/admin"
	"github.com/gatehouse-dev/gatehouse/directory"
	"github.com/gatehouse-dev/gatehouse/internal/httpapi"
	"github.com/gatehouse-dev/gatehouse/internal/passwords"
	"github.com/gatehouse-dev/gatehouse/internal/pgtest"
	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/oauth/grants"
	"github.com/gatehouse-dev/gatehouse/store"
)

func init() {
	fixtures[model.KindUser] = kindFixture{
		create: func(i int) map[string]any {
			return map[string]any{"id": fmt.Sprintf("c%d", i), "email": fmt.Sprintf("conf-%d@example.com", i), "given_name": "Conf"}
		},
		// The unique name of a user is its email.
		sameName: map[string]any{"id": "dup", "email": "Conf-0@Example.com"},
	}
}

const usersPath = "/api/admin/acme/users"

// userEnv is a server with tenant acme.
func userEnv(t *testing.T) *env {
	t.Helper()
	e := newEnv(t)
	e.createTenant("acme")
	return e
}

// directoryState renders every user, subject marker, identity mapping
// and token revocation of tid (live or deleted, with uid and revision),
// and the tenant's audit events: what a refused write must leave as it
// was.
func (e *env) directoryState(tid string) string {
	e.t.Helper()
	ctx := context.Background()
	var b strings.Builder
	for _, kind := range []string{model.KindUser, model.KindUserSubject, model.KindIdentityMapping, model.KindTokenRevocation} {
		pg, err := e.store.List(ctx, store.Query{Kind: kind, TenantID: tid, IncludeDeleted: true})
		if err != nil {
			e.t.Fatal(err)
		}
		for _, o := range pg.Items {
			fmt.Fprintf(&b, "%s/%s uid=%s rev=%d deleted=%v\n", kind, o.ID, o.UID, o.Revision, o.DeletedAt != nil)
		}
	}
	evs, err := e.store.ListEvents(ctx, store.EventQuery{TenantID: tid})
	if err != nil {
		e.t.Fatal(err)
	}
	fmt.Fprintf(&b, "%d events\n", len(evs.Items))
	return b.String()
}

// expectDirectoryUnchanged fails when tid's directory state differs from
// before.
func (e *env) expectDirectoryUnchanged(t *testing.T, tid, before, msg string) {
	t.Helper()
	if after := e.directoryState(tid); after != before {
		t.Fatalf("%s:\nbefore:\n%safter:\n%s", msg, before, after)
	}
}

// storedUser reads a user's envelope and spec as the store keeps them.
func (e *env) storedUser(tid, id string) (*store.Object, model.UserSpec) {
	e.t.Helper()
	o, err := e.store.Get(context.Background(), model.KindUser, tid, id)
	if err != nil {
		e.t.Fatalf("user %s/%s: %v", tid, id, err)
	}
	var spec model.UserSpec
	if err := json.Unmarshal(o.Spec, &spec); err != nil {
		e.t.Fatal(err)
	}
	return o, spec
}

// updateStoredUser changes a stored user directly (what the login
// writes: a TOTP enrolment).
func (e *env) updateStoredUser(tid, id string, change func(*model.UserSpec)) {
	e.t.Helper()
	if _, err := e.store.Update(context.Background(), func(ctx context.Context, tx store.Tx) error {
		u, err := directory.Users.Get(ctx, tx, tid, id)
		if err != nil {
			return err
		}
		change(&u.Spec)
		return directory.Users.Update(ctx, tx, u, 0)
	}); err != nil {
		e.t.Fatal(err)
	}
}

// createUser creates a user from body (id and email at least) and
// returns its rendering.
func (e *env) createUser(tid string, body map[string]any) map[string]any {
	e.t.Helper()
	return e.expect(e.do("POST", "/api/admin/"+tid+"/users", rootToken, body), 201).json(e.t)
}

// expectConflict asserts a 409 already_exists naming field.
func (e *env) expectConflict(r resp, fieldName string) {
	e.t.Helper()
	if r.status != 409 || r.errorCode(e.t) != httpapi.CodeAlreadyExists || errDetails(e.t, r)["field"] != fieldName ||
		!strings.Contains(r.json(e.t)["error"].(string), fieldName) {
		e.t.Fatalf("want a 409 naming %s, got %d: %s", fieldName, r.status, r.body)
	}
}

// userIDs are the ids of a user listing.
func userIDs(t *testing.T, m map[string]any) []string {
	t.Helper()
	var out []string
	for _, u := range items(t, m, "users") {
		out = append(out, u["id"].(string))
	}
	return out
}

func TestUsersCRUD(t *testing.T) {
	e := userEnv(t)
	u := e.createUser("acme", map[string]any{"id": "alice", "email": " Alice@Example.COM ", "firstName": "Alice", "lastname": "Liddell",
		"password": "correct horse battery", "locale": "en-GB", "labels": map[string]string{"team": "core"}})
	if u["email"] != "Alice@Example.COM" || u["subject"] != "alice@example.com" || u["state"] != "active" || u["active"] != true ||
		u["given_name"] != "Alice" || u["family_name"] != "Liddell" || u["name"] != "Alice Liddell" || u["tenant_id"] != "acme" ||
		fmt.Sprint(u["identity_mappings"]) != "[]" || u["status"].(map[string]any)["last_active"] != nil {
		t.Fatalf("created user: %v", u)
	}
	for _, k := range []string{"password", "password_hash", "totp_seed", "credential_epoch"} {
		if _, ok := u[k]; ok {
			t.Fatalf("the user shows %s: %v", k, u)
		}
	}
	o, spec := e.storedUser("acme", "alice")
	if o.Name != "alice@example.com" || spec.PasswordHash == "" {
		t.Fatalf("stored user: %v %+v", o, spec)
	}
	if ok, err := passwords.Verify(spec.PasswordHash, "correct horse battery"); !ok || err != nil {
		t.Fatalf("the stored hash does not verify the password: %v", err)
	}
	// The login's record of activity is status.last_active.
	at := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := directory.TouchUser(context.Background(), e.store, "acme", "alice", at); err != nil {
		t.Fatal(err)
	}
	r := e.expect(e.do("GET", usersPath+"/alice", rootToken, nil), 200)
	got := r.json(t)
	if got["status"].(map[string]any)["last_active"] != at.Format(time.RFC3339) {
		t.Fatalf("last_active: %v", got["status"])
	}
	// GET's body is a valid PUT body; the password stays.
	body := maps.Clone(got)
	body["given_name"], body["preferred_username"] = "Alicia", "ali"
	upd := e.expect(e.do("PUT", usersPath+"/alice", rootToken, body, "If-Match", r.header.Get("ETag")), 200).json(t)
	if upd["name"] != "Alicia Liddell" || upd["preferred_username"] != "ali" || upd["subject"] != "alice@example.com" {
		t.Fatalf("updated user: %v", upd)
	}
	if _, after := e.storedUser("acme", "alice"); after.PasswordHash != spec.PasswordHash || after.CredentialEpoch != spec.CredentialEpoch {
		t.Fatal("a PUT without password changed the credentials")
	}
	// A PUT with a password replaces it and moves the credential epoch.
	body = e.expect(e.do("GET", usersPath+"/alice", rootToken, nil), 200).json(t)
	body["password"] = "another long password"
	e.expect(e.do("PUT", usersPath+"/alice", rootToken, body), 200)
	_, after := e.storedUser("acme", "alice")
	if ok, _ := passwords.Verify(after.PasswordHash, "another long password"); !ok || after.CredentialEpoch != spec.CredentialEpoch+1 {
		t.Fatalf("password change: epoch %d", after.CredentialEpoch)
	}
	if directory.CredentialVersion(&after) == directory.CredentialVersion(&spec) {
		t.Fatal("the credential version did not change with the password")
	}
	// A merge patch changes the fields given.
	p := e.expect(e.do("PATCH", usersPath+"/alice", rootToken, map[string]any{"locale": "fr", "labels": nil}, "Content-Type", admin.MergePatchType), 200).json(t)
	if p["locale"] != "fr" || len(p["labels"].(map[string]any)) != 0 || p["given_name"] != "Alicia" {
		t.Fatalf("patched user: %v", p)
	}
	e.createUser("acme", map[string]any{"id": "bob", "email": "bob@example.com"})
	l := e.expect(e.do("GET", usersPath, rootToken, nil), 200).json(t)
	if l["total"].(float64) != 2 || fmt.Sprint(userIDs(t, l)) != "[alice bob]" {
		t.Fatalf("users: %v", l)
	}
	e.expect(e.do("DELETE", usersPath+"/bob", rootToken, nil), 204)
	e.expect(e.do("GET", usersPath+"/bob", rootToken, nil), 404)
	evs := e.eventsOf("acme", model.KindUser)
	if len(evs) != 6 {
		t.Fatalf("user events: %v", evs)
	}
	for _, ev := range evs {
		raw, _ := json.Marshal(ev)
		if strings.Contains(string(raw), "$argon2id$") || strings.Contains(string(raw), "horse") {
			t.Fatalf("an event shows a password or its hash: %s", raw)
		}
	}
}

func TestUserRulesRefuseNamingTheField(t *testing.T) {
	e := userEnv(t)
	e.createUser("acme", map[string]any{"id": "taken", "email": "taken@example.com"})
	e.createUser("acme", map[string]any{"id": "susp", "email": "susp@example.com", "state": "suspended"})
	with := func(kv ...any) map[string]any {
		b := map[string]any{"id": "new", "email": "new@example.com"}
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i+1] == nil {
				delete(b, kv[i].(string))
				continue
			}
			b[kv[i].(string)] = kv[i+1]
		}
		return b
	}
	cases := []struct {
		name  string
		body  map[string]any
		field string
	}{
		{"email required", with("email", nil), "email"},
		{"blank email", with("email", "  "), "email"},
		{"not an email", with("email", "not-an-email"), "email"},
		{"email with a display name", with("email", "Alice <alice@example.com>"), "email"},
		{"email too long", with("email", strings.Repeat("a", 250)+"@x.io"), "email"},
		{"bad state", with("state", "frozen"), "state"},
		{"active contradicts state", with("state", "active", "active", false), "active"},
		{"short password", with("password", "seven77"), "password"},
		{"bad locale", with("locale", "english please"), "locale"},
		{"subject with a control character", with("subject", "a\x01b"), "subject"},
		{"subject with spaces around", with("subject", " s "), "subject"},
		{"given name too long", with("given_name", strings.Repeat("g", 257)), "given_name"},
		{"aliases that disagree", with("given_name", "A", "firstname", "B"), "firstname"},
		{"name is read-only", with("given_name", "A", "name", "Someone Else"), "name"},
		{"identity_mappings are read-only", with("identity_mappings", []any{map[string]any{"id": "m"}}), "identity_mappings"},
		{"unknown field", with("colour", "red"), "colour"},
		{"the seed's password hash", with("password_hash", "$argon2id$"), "password_hash"},
		{"bad id", with("id", "a/b"), "id"},
		{"reserved id", with("id", "mapping"), "id"},
		{"tenant mismatch", with("tenant_id", "other"), "tenant_id"},
		{"bad label", with("labels", map[string]string{"-x-": "v"}), "labels.-x-"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e.t = t
			before := e.directoryState("acme")
			e.expectFieldError(e.do("POST", usersPath, rootToken, c.body), c.field)
			e.expectDirectoryUnchanged(t, "acme", before, "a refused user create wrote")
		})
	}
	e.t = t
	// The same rules on PUT, and the route's own.
	put := func(kv ...any) map[string]any {
		return with(append([]any{"id", nil, "email", "susp@example.com"}, kv...)...)
	}
	for _, c := range []struct {
		name  string
		body  map[string]any
		field string
	}{
		{"PUT bad email", put("email", "x"), "email"},
		{"PUT another id", put("id", "other"), "id"},
		// Both differ from the stored state (suspended) and disagree.
		{"PUT contradicting state and active", put("state", "pending", "active", true), "active"},
		{"PUT a changed name", put("name", "Changed"), "name"},
		{"PUT changed mappings", put("identity_mappings", []any{map[string]any{"id": "m", "identity_provider_id": "i", "external_subject": "s"}}), "identity_mappings"},
		{"PUT a short password", put("password", "short"), "password"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e.t = t
			before := e.directoryState("acme")
			e.expectFieldError(e.do("PUT", usersPath+"/susp", rootToken, c.body), c.field)
			e.expectDirectoryUnchanged(t, "acme", before, "a refused user PUT wrote")
		})
	}
	e.t = t
	before := e.directoryState("acme")
	e.expectFieldError(e.do("PUT", usersPath+"/taken/state", rootToken, map[string]any{"state": "gone"}), "state")
	e.expectFieldError(e.do("PUT", usersPath+"/taken/state", rootToken, map[string]any{}), "state")
	e.expectFieldError(e.do("PUT", usersPath+"/taken/reset-mfa", rootToken, map[string]any{"x": 1}), "x")
	e.expectFieldError(e.do("GET", usersPath+"/a%20b", rootToken, nil), "uid")
	e.expect(e.do("PUT", usersPath+"/ghost/state", rootToken, map[string]any{"state": "active"}), 404)
	e.expect(e.do("PUT", usersPath+"/ghost", rootToken, put()), 404)
	e.expectDirectoryUnchanged(t, "acme", before, "a refused user write wrote")
}

func TestUserEmailAndSubjectAreUnique(t *testing.T) {
	e := userEnv(t)
	e.createUser("acme", map[string]any{"id": "a", "email": "a@example.com", "subject": "alpha"})
	e.createUser("acme", map[string]any{"id": "b", "email": "b@example.com"})
	before := e.directoryState("acme")
	e.expectConflict(e.do("POST", usersPath, rootToken, map[string]any{"id": "c", "email": "A@EXAMPLE.com"}), "email")
	e.expectConflict(e.do("POST", usersPath, rootToken, map[string]any{"id": "c", "email": "c@example.com", "subject": "alpha"}), "subject")
	// b's subject is its email: nobody else can have it.
	e.expectConflict(e.do("POST", usersPath, rootToken, map[string]any{"id": "c", "email": "c@example.com", "subject": "b@example.com"}), "subject")
	if r := e.do("POST", usersPath, rootToken, map[string]any{"id": "a", "email": "c@example.com"}); r.status != 409 {
		t.Fatalf("duplicate id: %d %s", r.status, r.body)
	}
	// A PUT into another user's email or subject is refused too.
	b := e.expect(e.do("GET", usersPath+"/b", rootToken, nil), 200).json(t)
	b["email"] = "a@example.com"
	e.expectConflict(e.do("PUT", usersPath+"/b", rootToken, b), "email")
	b["email"], b["subject"] = "b@example.com", "alpha"
	e.expectConflict(e.do("PUT", usersPath+"/b", rootToken, b), "subject")
	e.expectDirectoryUnchanged(t, "acme", before, "a refused duplicate wrote")
	// A subject given up is free: b takes a's old subject once a moves.
	e.expect(e.do("PATCH", usersPath+"/a", rootToken, map[string]any{"subject": "aleph"}, "Content-Type", admin.MergePatchType), 200)
	e.expect(e.do("PATCH", usersPath+"/b", rootToken, map[string]any{"subject": "alpha"}, "Content-Type", admin.MergePatchType), 200)
	e.expectConflict(e.do("POST", usersPath, rootToken, map[string]any{"email": "d@example.com", "subject": "aleph"}), "subject")
	// Another tenant has its own namespace.
	e.createTenant("other")
	e.createUser("other", map[string]any{"id": "a", "email": "a@example.com", "subject": "alpha"})
}

func TestUserSoftDeleteFreesEmailThenRestore(t *testing.T) {
	e := userEnv(t)
	e.createUser("acme", map[string]any{"id": "u1", "email": "x@example.com", "subject": "ex", "password": "long enough password", "state": "pending"})
	_, spec := e.storedUser("acme", "u1")
	before := e.directoryState("acme")
	e.expect(e.do("POST", usersPath+"/u1/restore", rootToken, nil), 409)
	e.expect(e.do("POST", usersPath+"/ghost/restore", rootToken, nil), 404)
	e.expectDirectoryUnchanged(t, "acme", before, "a refused restore wrote")
	e.expect(e.do("DELETE", usersPath+"/u1", rootToken, nil), 204)
	l := e.expect(e.do("GET", usersPath+"?include_deleted=true", rootToken, nil), 200).json(t)
	if us := items(t, l, "users"); len(us) != 1 || us[0]["metadata"].(map[string]any)["deleted_at"] == nil {
		t.Fatalf("deleted users: %v", l)
	}
	if l := e.expect(e.do("GET", usersPath, rootToken, nil), 200).json(t); l["total"].(float64) != 0 {
		t.Fatalf("live users after the delete: %v", l)
	}
	// The email and the subject are free: another user takes them.
	e.createUser("acme", map[string]any{"id": "u2", "email": "X@example.com", "subject": "ex"})
	before = e.directoryState("acme")
	e.expectConflict(e.do("POST", usersPath+"/u1/restore", rootToken, nil), "email")
	e.expect(e.do("PATCH", usersPath+"/u2", rootToken, map[string]any{"email": "y@example.com"}, "Content-Type", admin.MergePatchType), 200)
	before = e.directoryState("acme")
	e.expectConflict(e.do("POST", usersPath+"/u1/restore", rootToken, nil), "subject")
	e.expectDirectoryUnchanged(t, "acme", before, "a refused restore wrote")
	e.expect(e.do("DELETE", usersPath+"/u2", rootToken, nil), 204)
	r := e.expect(e.do("POST", usersPath+"/u1/restore", rootToken, nil), 201).json(t)
	if r["id"] != "u1" || r["email"] != "x@example.com" || r["subject"] != "ex" || r["state"] != "pending" {
		t.Fatalf("restored user: %v", r)
	}
	_, restored := e.storedUser("acme", "u1")
	if restored.PasswordHash != spec.PasswordHash || restored.CredentialEpoch != spec.CredentialEpoch+1 {
		t.Fatalf("restored credentials: epoch %d", restored.CredentialEpoch)
	}
	// Its subject is taken again; restoring twice is a 409.
	e.expectConflict(e.do("POST", usersPath, rootToken, map[string]any{"email": "z@example.com", "subject": "ex"}), "subject")
	e.expect(e.do("POST", usersPath+"/u1/restore", rootToken, nil), 409)
	if evs := e.eventsOf("acme", model.KindUser); evs[0]["action"] != "restore" {
		t.Fatalf("restore event: %v", evs[0])
	}
}

func TestUserListFilters(t *testing.T) {
	e := userEnv(t)
	for i, st := range []string{"active", "pending", "suspended", "active", "active"} {
		e.createUser("acme", map[string]any{"id": fmt.Sprintf("u%d", i), "email": fmt.Sprintf("User%d@Example.com", i), "state": st})
	}
	e.expect(e.do("DELETE", usersPath+"/u4", rootToken, nil), 204)
	list := func(q string) map[string]any { return e.expect(e.do("GET", usersPath+q, rootToken, nil), 200).json(t) }
	for _, c := range []struct{ query, want string }{
		{"", "[u0 u1 u2 u3]"},
		{"?email=" + url.QueryEscape(" USER1@example.COM "), "[u1]"},
		{"?email=nobody@example.com", "[]"},
		{"?email=user4@example.com", "[]"},
		{"?email=user4@example.com&include_deleted=true", "[u4]"},
		{"?ids=u3,u0,ghost,u3", "[u0 u3]"},
		{"?ids=u4", "[]"},
		{"?ids=u4,u1&include_deleted=true", "[u1 u4]"},
		{"?state=active", "[u0 u3]"},
		{"?state=active&include_deleted=true", "[u0 u3 u4]"},
		{"?state=pending&ids=u1,u2", "[u1]"},
		{"?state=suspended&email=user2@example.com", "[u2]"},
		{"?include_deleted=true", "[u0 u1 u2 u3 u4]"},
	} {
		m := list(c.query)
		if got := fmt.Sprint(userIDs(t, m)); got != c.want || int(m["total"].(float64)) != len(userIDs(t, m)) {
			t.Errorf("GET users%s = %s (total %v), want %s", c.query, got, m["total"], c.want)
		}
	}
	// Pages, with filters too.
	for _, q := range []string{"?limit=1", "?limit=1&state=active", "?limit=2&include_deleted=true"} {
		var seen []string
		total := -1
		for next, n := "", 0; n == 0 || next != ""; n++ {
			m := list(q + "&after=" + url.QueryEscape(next))
			seen = append(seen, userIDs(t, m)...)
			next, total = m["next"].(string), int(m["total"].(float64))
			if n > 10 {
				t.Fatal("paging does not end")
			}
		}
		if len(seen) != total || !sort.StringsAreSorted(seen) {
			t.Errorf("pages of %s: %v (total %d)", q, seen, total)
		}
	}
	ids := make([]string, 101)
	for i := range ids {
		ids[i] = fmt.Sprintf("u%d", i)
	}
	for _, c := range []struct{ query, field string }{
		{"?colour=red", "colour"},
		{"?ids=" + strings.Join(ids, ","), "ids"},
		{"?ids=a,,b", "ids"},
		{"?ids=a%2Fb", "ids"},
		{"?state=frozen", "state"},
		{"?include_deleted=maybe", "include_deleted"},
		{"?email=", "email"},
		{"?limit=0", "limit"},
		{"?after=garbage!", "after"},
		{"?state=active&after=garbage!", "after"},
		{"?state=active&state=pending", "state"},
	} {
		e.expectFieldError(e.do("GET", usersPath+c.query, rootToken, nil), c.field)
	}
}

// revocationsOf lists the not-before revocations of sub in tid as
// "issuer" strings.
func (e *env) revocationsOf(tid, sub string) []string {
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
		if spec.Subject == sub && spec.NotBefore != nil && spec.ClientID == "" {
			out = append(out, spec.Issuer)
		}
	}
	sort.Strings(out)
	return out
}

// seedRefreshToken records a refresh token issued for sub at the
// default server, as the token endpoint does.
func (e *env) seedRefreshToken(tid, sub, token string) {
	e.t.Helper()
	rec := grants.NewRecords(e.store, nil)
	now := time.Now()
	if err := rec.PutRefreshToken(context.Background(), tid, token, &grants.RefreshToken{ServerID: model.DefaultServerID, ClientID: "web",
		Subject: sub, SubjectType: grants.SubjectUser, FamilyID: "f-" + token, IssuedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
		e.t.Fatal(err)
	}
}

// hasRefreshToken reports whether the refresh token is still recorded.
func (e *env) hasRefreshToken(tid, token string) bool {
	e.t.Helper()
	_, err := grants.NewRecords(e.store, nil).RefreshToken(context.Background(), tid, token)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		e.t.Fatal(err)
	}
	return err == nil
}

// TestSuspendingOrDeletingAUserRevokesItsTokens: leaving active (PUT
// …/state, PATCH {active:false}, PUT) revokes the user's tokens at every
// server of the tenant in the same write and deletes its refresh tokens;
// so does the delete. Other users keep theirs.
func TestSuspendingOrDeletingAUserRevokesItsTokens(t *testing.T) {
	e := userEnv(t)
	e.expect(e.do("POST", "/api/admin/acme/servers", rootToken, map[string]any{"id": "s1"}), 201)
	var issuers []string
	for _, aid := range []string{"admin", "default", "developer", "s1"} {
		issuers = append(issuers, model.IssuerURL("https://gh.example", "acme", aid))
	}
	sort.Strings(issuers)
	for _, id := range []string{"u1", "u2", "u3", "keep"} {
		e.createUser("acme", map[string]any{"id": id, "email": id + "@example.com"})
		e.seedRefreshToken("acme", id, "rt-"+id)
	}
	// Changes that keep the user active revoke nothing.
	e.expect(e.do("PATCH", usersPath+"/u1", rootToken, map[string]any{"locale": "de", "active": true}, "Content-Type", admin.MergePatchType), 200)
	if got := e.revocationsOf("acme", "u1"); len(got) != 0 {
		t.Fatalf("revocations without a suspension: %v", got)
	}
	e.expect(e.do("PUT", usersPath+"/u1/state", rootToken, map[string]any{"state": "suspended"}), 200)
	p := e.expect(e.do("PATCH", usersPath+"/u2", rootToken, map[string]any{"active": false}, "Content-Type", admin.MergePatchType), 200).json(t)
	if p["state"] != "suspended" || p["active"] != false {
		t.Fatalf("PATCH {active:false}: %v", p)
	}
	e.expect(e.do("DELETE", usersPath+"/u3", rootToken, nil), 204)
	for _, id := range []string{"u1", "u2", "u3"} {
		if got := e.revocationsOf("acme", id); fmt.Sprint(got) != fmt.Sprint(issuers) {
			t.Errorf("revocations of %s: %v, want one at each server %v", id, got, issuers)
		}
		if e.hasRefreshToken("acme", "rt-"+id) {
			t.Errorf("the refresh token of %s is left", id)
		}
	}
	if got := e.revocationsOf("acme", "keep"); len(got) != 0 || !e.hasRefreshToken("acme", "rt-keep") {
		t.Fatalf("an untouched user lost its tokens: %v", got)
	}
	// The revocation commits with the state change: the write's revision.
	o, _ := e.storedUser("acme", "u1")
	pg, _ := e.store.List(context.Background(), store.Query{Kind: model.KindTokenRevocation, TenantID: "acme"})
	same := 0
	for _, r := range pg.Items {
		if r.Revision == o.Revision {
			same++
		}
	}
	if same != len(issuers) {
		t.Fatalf("%d revocations at the suspension's revision %d, want %d", same, o.Revision, len(issuers))
	}
	// PATCH {active:true} brings a suspended user back.
	p = e.expect(e.do("PATCH", usersPath+"/u2", rootToken, map[string]any{"active": true}, "Content-Type", admin.MergePatchType), 200).json(t)
	if p["state"] != "active" {
		t.Fatalf("PATCH {active:true}: %v", p)
	}
}

func TestUserRecoverLinkIsSingleUse(t *testing.T) {
	e := userEnv(t)
	e.createUser("acme", map[string]any{"id": "alice", "email": "alice@example.com", "password": "the old password"})
	r := e.expect(e.do("POST", usersPath+"/alice/recover", rootToken, nil), 201)
	m := r.json(t)
	link, _ := m["link"].(string)
	prefix := "https://gh.example/acme/default/login/recover/"
	key, ok := strings.CutPrefix(link, prefix)
	exp, err := time.Parse(time.RFC3339, fmt.Sprint(m["expiration"]))
	if !ok || len(key) != 43 || err != nil || exp.Sub(time.Now()) < 23*time.Hour || exp.Sub(time.Now()) > 25*time.Hour || r.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("recovery: %v %v", m, r.header)
	}
	// Only the key's hash is stored.
	entries, err := e.store.ListState(context.Background(), directory.RecoveryStateKind, "acme")
	if err != nil || len(entries) != 1 || entries[0].ID != sha256Hex(key) || strings.Contains(string(entries[0].Value), key) || entries[0].ExpiresAt == nil {
		t.Fatalf("stored recoveries: %v %v", entries, err)
	}
	if evs := e.eventsOf("acme", model.KindUser); evs[0]["action"] != "recover" || strings.Contains(fmt.Sprint(evs[0]), key) {
		t.Fatalf("recover event: %v", evs[0])
	}
	ctx := context.Background()
	if _, err := directory.TakeRecovery(ctx, e.store, "other", key); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("another tenant took the recovery: %v", err)
	}
	rec, err := directory.TakeRecovery(ctx, e.store, "acme", key)
	if err != nil || rec.UserID != "alice" {
		t.Fatalf("take: %v %v", rec, err)
	}
	if _, err := directory.TakeRecovery(ctx, e.store, "acme", key); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a recovery link worked twice: %v", err)
	}
	// What the recovery page does with it: a new password, TOTP cleared.
	e.updateStoredUser("acme", "alice", func(u *model.UserSpec) { u.TOTPSeed, u.TOTPConfirmed = "sealed", true })
	_, before := e.storedUser("acme", "alice")
	h, err := passwords.Hash("the new password")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.Update(ctx, func(ctx context.Context, tx store.Tx) error {
		_, err := directory.ResetCredentials(ctx, tx, "acme", "alice", h)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	_, after := e.storedUser("acme", "alice")
	if after.PasswordHash != h || after.TOTPSeed != "" || after.TOTPConfirmed || after.CredentialEpoch != before.CredentialEpoch+1 {
		t.Fatalf("reset credentials: %+v", after)
	}
	e.expect(e.do("POST", usersPath+"/ghost/recover", rootToken, nil), 404)
	e.expectFieldError(e.do("POST", usersPath+"/alice/recover", rootToken, map[string]any{"x": 1}), "x")
	if entries, _ := e.store.ListState(ctx, directory.RecoveryStateKind, "acme"); len(entries) != 0 {
		t.Fatalf("refused recovers left links: %v", entries)
	}
}

func TestUserResetMFA(t *testing.T) {
	e := userEnv(t)
	e.createUser("acme", map[string]any{"id": "alice", "email": "alice@example.com", "password": "a good password"})
	e.updateStoredUser("acme", "alice", func(u *model.UserSpec) { u.TOTPSeed, u.TOTPConfirmed = "c2VhbGVk", true })
	_, before := e.storedUser("acme", "alice")
	r := e.expect(e.do("PUT", usersPath+"/alice/reset-mfa", rootToken, nil), 200)
	if len(r.body) != 0 {
		t.Fatalf("reset-mfa answered a body: %s", r.body)
	}
	_, after := e.storedUser("acme", "alice")
	if after.TOTPSeed != "" || after.TOTPConfirmed || after.CredentialEpoch != before.CredentialEpoch+1 || after.PasswordHash != before.PasswordHash {
		t.Fatalf("after reset-mfa: %+v", after)
	}
	if directory.CredentialVersion(&after) == directory.CredentialVersion(&before) {
		t.Fatal("the credential version did not change")
	}
	evs := e.eventsOf("acme", model.KindUser)
	if evs[0]["action"] != "reset-mfa" || strings.Contains(fmt.Sprint(evs[0]), "c2VhbGVk") {
		t.Fatalf("reset-mfa event: %v", evs[0])
	}
	e.expect(e.do("PUT", usersPath+"/ghost/reset-mfa", rootToken, nil), 404)
	// The reset ends the tokens obtained with the old factor, at every
	// server of the tenant, and so does a new password.
	servers := len(e.revocationsOf("acme", "alice"))
	if servers == 0 {
		t.Fatal("reset-mfa revoked no token")
	}
	e.createUser("acme", map[string]any{"id": "bob", "email": "bob@example.com", "password": "a good password"})
	e.expect(e.do("PATCH", usersPath+"/bob", rootToken, map[string]any{"locale": "fr"}, "Content-Type", admin.MergePatchType), 200)
	if got := e.revocationsOf("acme", "bob"); len(got) != 0 {
		t.Fatalf("a change without a new password revoked: %v", got)
	}
	e.expect(e.do("PATCH", usersPath+"/bob", rootToken, map[string]any{"password": "another good password"}, "Content-Type", admin.MergePatchType), 200)
	if got := e.revocationsOf("acme", "bob"); len(got) != servers {
		t.Fatalf("a new password revoked at %v, want %d servers", got, servers)
	}
}

func TestUserMappings(t *testing.T) {
	e := userEnv(t)
	e.put(model.KindIdentityProvider, "acme", "corp", model.IdentityProviderSpec{Type: model.IdPOIDC, Issuer: "https://corp.example", ClientID: "c", Active: true})
	e.put(model.KindIdentityProvider, model.SystemTenantID, "google", model.IdentityProviderSpec{Type: model.IdPGoogle, Issuer: "https://accounts.google.com", ClientID: "c", Active: true})
	e.createTenant("other")
	e.put(model.KindIdentityProvider, "other", "theirs", model.IdentityProviderSpec{Type: model.IdPOIDC, Issuer: "https://theirs.example", ClientID: "c", Active: true})
	e.createUser("acme", map[string]any{"id": "alice", "email": "alice@example.com"})
	e.createUser("acme", map[string]any{"id": "bob", "email": "bob@example.com"})
	m := e.expect(e.do("POST", usersPath+"/alice/mappings", rootToken, map[string]any{"identity_provider_id": "corp", "external_subject": "auth0|42"}), 201).json(t)
	mid, _ := m["id"].(string)
	if mid == "" || m["identity_provider_id"] != "corp" || m["external_subject"] != "auth0|42" {
		t.Fatalf("mapping: %v", m)
	}
	e.expect(e.do("POST", usersPath+"/alice/mappings", rootToken, map[string]any{"identity_provider_id": "google", "external_subject": "1234"}), 201)
	u := e.expect(e.do("GET", usersPath+"/alice", rootToken, nil), 200).json(t)
	if maps := u["identity_mappings"].([]any); len(maps) != 2 {
		t.Fatalf("identity_mappings: %v", u)
	}
	found := e.expect(e.do("GET", usersPath+"/mapping/corp/"+url.PathEscape("auth0|42"), rootToken, nil), 200).json(t)
	if found["id"] != "alice" {
		t.Fatalf("lookup: %v", found)
	}
	e.expect(e.do("GET", usersPath+"/mapping/corp/auth0%7C43", rootToken, nil), 404)
	e.expect(e.do("GET", "/api/admin/other/users/mapping/corp/"+url.PathEscape("auth0|42"), rootToken, nil), 404)

	before := e.directoryState("acme")
	e.expectConflict(e.do("POST", usersPath+"/alice/mappings", rootToken, map[string]any{"identity_provider_id": "corp", "external_subject": "other"}), "identity_provider_id")
	e.expectConflict(e.do("POST", usersPath+"/bob/mappings", rootToken, map[string]any{"identity_provider_id": "corp", "external_subject": "auth0|42"}), "external_subject")
	for _, c := range []struct {
		body  map[string]any
		field string
	}{
		{map[string]any{"identity_provider_id": "ghost", "external_subject": "x"}, "identity_provider_id"},
		{map[string]any{"identity_provider_id": "theirs", "external_subject": "x"}, "identity_provider_id"},
		{map[string]any{"external_subject": "x"}, "identity_provider_id"},
		{map[string]any{"identity_provider_id": "corp"}, "external_subject"},
		{map[string]any{"identity_provider_id": "corp", "external_subject": "a\nb"}, "external_subject"},
		{map[string]any{"identity_provider_id": "corp", "external_subject": strings.Repeat("x", 1025)}, "external_subject"},
		{map[string]any{"identity_provider_id": "corp", "external_subject": "x", "user_id": "bob"}, "user_id"},
	} {
		e.expectFieldError(e.do("POST", usersPath+"/bob/mappings", rootToken, c.body), c.field)
	}
	e.expect(e.do("POST", usersPath+"/ghost/mappings", rootToken, map[string]any{"identity_provider_id": "corp", "external_subject": "y"}), 404)
	e.expect(e.do("DELETE", usersPath+"/bob/mappings/"+mid, rootToken, nil), 404)
	e.expectDirectoryUnchanged(t, "acme", before, "a refused mapping write wrote")

	// Removed, the external identity can map to another user.
	e.expect(e.do("DELETE", usersPath+"/alice/mappings/"+mid, rootToken, nil), 204)
	e.expect(e.do("GET", usersPath+"/mapping/corp/"+url.PathEscape("auth0|42"), rootToken, nil), 404)
	e.expect(e.do("POST", usersPath+"/bob/mappings", rootToken, map[string]any{"identity_provider_id": "corp", "external_subject": "auth0|42"}), 201)
	// Deleting a user deletes its mappings in the same write.
	e.expect(e.do("DELETE", usersPath+"/bob", rootToken, nil), 204)
	e.expect(e.do("GET", usersPath+"/mapping/corp/"+url.PathEscape("auth0|42"), rootToken, nil), 404)
	e.expect(e.do("POST", usersPath+"/alice/mappings", rootToken, map[string]any{"identity_provider_id": "corp", "external_subject": "auth0|42"}), 201)
	if evs := e.eventsOf("acme", model.KindIdentityMapping); len(evs) != 5 {
		t.Fatalf("mapping events: %d", len(evs))
	}
	// A GET body with its mappings is a valid PUT body.
	u = e.expect(e.do("GET", usersPath+"/alice", rootToken, nil), 200).json(t)
	e.expect(e.do("PUT", usersPath+"/alice", rootToken, u), 200)
}

// TestUserRoutesAreTenantIsolated: tenant other's credential gets 403 on
// every users route of acme, an unknown tenant 404, and acme's users do
// not exist for other.
func TestUserRoutesAreTenantIsolated(t *testing.T) {
	e := userEnv(t)
	e.createTenant("other")
	otherTok := e.credential("other")
	acmeTok := e.credential("acme")
	e.put(model.KindIdentityProvider, "acme", "corp", model.IdentityProviderSpec{Type: model.IdPOIDC, Issuer: "https://corp.example", ClientID: "c", Active: true})
	e.createUser("acme", map[string]any{"id": "alice", "email": "alice@example.com"})
	m := e.expect(e.do("POST", usersPath+"/alice/mappings", acmeTok, map[string]any{"identity_provider_id": "corp", "external_subject": "s"}), 201).json(t)
	routes := []struct{ method, path string }{
		{"GET", "/users"}, {"POST", "/users"}, {"GET", "/users/alice"}, {"PUT", "/users/alice"}, {"PATCH", "/users/alice"},
		{"DELETE", "/users/alice"}, {"PUT", "/users/alice/state"}, {"POST", "/users/alice/restore"}, {"POST", "/users/alice/recover"},
		{"PUT", "/users/alice/reset-mfa"}, {"POST", "/users/alice/mappings"}, {"DELETE", "/users/alice/mappings/" + m["id"].(string)},
		{"GET", "/users/mapping/corp/s"},
	}
	before := e.directoryState("acme")
	for _, r := range routes {
		body := map[string]any{"email": "x@example.com", "state": "suspended"}
		if got := e.do(r.method, "/api/admin/acme"+r.path, otherTok, body, "Content-Type", contentTypeFor(r.method)); got.status != 403 {
			t.Errorf("%s %s with tenant other's credential: %d %s", r.method, r.path, got.status, got.body)
		}
		if got := e.do(r.method, "/api/admin/nosuch"+r.path, rootToken, body, "Content-Type", contentTypeFor(r.method)); got.status != 404 {
			t.Errorf("%s %s of an unknown tenant: %d %s", r.method, r.path, got.status, got.body)
		}
	}
	e.expectDirectoryUnchanged(t, "acme", before, "another tenant's credential changed acme's users")
	e.expect(e.do("GET", "/api/admin/other/users/alice", otherTok, nil), 404)
	e.expect(e.do("GET", "/api/admin/other/users/mapping/corp/s", otherTok, nil), 404)
	if l := e.expect(e.do("GET", "/api/admin/other/users", otherTok, nil), 200).json(t); l["total"].(float64) != 0 {
		t.Fatalf("other's users: %v", l)
	}
	e.expect(e.do("GET", "/api/admin/acme/users/alice", acmeTok, nil), 200)
}

// TestUsersInTheConfigurationDocument: users are exported without
// credentials; importing them makes their subject markers; an update by
// import keeps the credentials; a replace import deletes the users it
// lacks like a delete does.
func TestUsersInTheConfigurationDocument(t *testing.T) {
	e := userEnv(t)
	e.createUser("acme", map[string]any{"id": "alice", "email": "Alice@example.com", "subject": "al", "given_name": "Alice", "password": "alice's password"})
	e.createUser("acme", map[string]any{"id": "bob", "email": "bob@example.com", "state": "pending"})
	e.updateStoredUser("acme", "alice", func(u *model.UserSpec) { u.TOTPSeed, u.TOTPConfirmed = "c2VhbGVk", true })
	_, aliceSpec := e.storedUser("acme", "alice")
	raw := e.exportConfig("acme")
	for _, secret := range []string{"$argon2id$", "password", "totp", "c2VhbGVk", "credential_epoch"} {
		if strings.Contains(string(raw), secret) {
			t.Fatalf("the document holds %q: %s", secret, raw)
		}
	}
	doc := decodeDoc(t, raw)
	if a, _ := docItem(t, doc, "users", "alice"); a["subject"] != "al" || a["email"] != "Alice@example.com" || a["given_name"] != "Alice" {
		t.Fatalf("exported alice: %v", a)
	}
	// The same document changes nothing.
	e.expectCounts(e.importCounts("acme", "replace", doc), counts("unchanged", sizes(doc)))
	// A changed profile is an update that keeps the credentials.
	changed := deepCopy(t, doc)
	a, _ := docItem(t, changed, "users", "alice")
	a["given_name"], a["subject"] = "Alicia", "alicia"
	e.expectCounts(e.importCounts("acme", "merge", changed), minus(counts("unchanged", sizes(changed), "updated", map[string]int{"users": 1}), counts("unchanged", map[string]int{"users": 1})))
	if _, spec := e.storedUser("acme", "alice"); spec.GivenName != "Alicia" || spec.PasswordHash != aliceSpec.PasswordHash || spec.TOTPSeed != aliceSpec.TOTPSeed || !spec.TOTPConfirmed {
		t.Fatalf("alice after the import: %+v", spec)
	}
	e.expect(e.do("POST", usersPath, rootToken, map[string]any{"email": "c@example.com", "subject": "al"}), 201)
	e.expectConflict(e.do("POST", usersPath, rootToken, map[string]any{"email": "d@example.com", "subject": "alicia"}), "subject")

	// Into another tenant: the users and their markers, no credentials.
	e.createTenant("copy")
	e.expect(e.importConfig("copy", "replace", doc), 200)
	_, copied := e.storedUser("copy", "alice")
	if copied.PasswordHash != "" || copied.TOTPSeed != "" || copied.Subject != "al" || copied.State != model.UserActive {
		t.Fatalf("imported alice: %+v", copied)
	}
	if _, bob := e.storedUser("copy", "bob"); bob.State != model.UserPending || bob.Subject != "bob@example.com" {
		t.Fatalf("imported bob: %+v", bob)
	}
	e.expectConflict(e.do("POST", "/api/admin/copy/users", rootToken, map[string]any{"email": "x@example.com", "subject": "al"}), "subject")
	e.expectConflict(e.do("POST", "/api/admin/copy/users", rootToken, map[string]any{"email": "ALICE@example.com"}), "email")
	// A replace without bob deletes bob (its subject is free again).
	without := deepCopy(t, doc)
	without["users"] = docList(without, "users")[:1]
	if docList(without, "users")[0].(map[string]any)["id"] != "alice" {
		t.Fatal("document order")
	}
	e.expect(e.importConfig("copy", "replace", without), 200)
	if e.exists(model.KindUser, "copy", "bob") {
		t.Fatal("bob survived a replace import without it")
	}
	e.createUser("copy", map[string]any{"email": "b2@example.com", "subject": "bob@example.com"})
	// A document cannot carry a password.
	bad := deepCopy(t, doc)
	a, _ = docItem(t, bad, "users", "alice")
	a["password"] = "smuggled password"
	if r := e.importConfig("copy", "merge", bad); r.status != 400 || !strings.Contains(string(r.body), "password") {
		t.Fatalf("a document with a password: %d %s", r.status, r.body)
	}
}

// TestUsersOnPostgres: the users' lifecycle on the PostgreSQL store
// (GATEHOUSE_TEST_DATABASE_URL, or a throwaway server; skipped when
// PostgreSQL is not installed).
func TestUsersOnPostgres(t *testing.T) {
	var dsn string
	if os.Getenv(pgtest.EnvDatabaseURL) != "" {
		dsn = pgtest.NewDatabase(t)
	} else {
		dsn = pgtest.NewServer(t).NewDatabase(t)
	}
	e := newEnvOn(t, testkit.OpenPostgres(t, dsn))
	e.createTenant("acme")
	e.put(model.KindIdentityProvider, "acme", "corp", model.IdentityProviderSpec{Type: model.IdPOIDC, Issuer: "https://corp.example", ClientID: "c", Active: true})
	e.createUser("acme", map[string]any{"id": "u1", "email": "x@example.com", "subject": "ex", "password": "long enough password"})
	e.createUser("acme", map[string]any{"id": "u2", "email": "y@example.com"})
	before := e.directoryState("acme")
	e.expectConflict(e.do("POST", usersPath, rootToken, map[string]any{"email": "X@example.com"}), "email")
	e.expectConflict(e.do("POST", usersPath, rootToken, map[string]any{"email": "z@example.com", "subject": "ex"}), "subject")
	e.expectFieldError(e.do("POST", usersPath, rootToken, map[string]any{"email": "nope"}), "email")
	e.expectDirectoryUnchanged(t, "acme", before, "a refused create wrote")
	e.expect(e.do("POST", usersPath+"/u1/mappings", rootToken, map[string]any{"identity_provider_id": "corp", "external_subject": "s1"}), 201)
	e.expectConflict(e.do("POST", usersPath+"/u2/mappings", rootToken, map[string]any{"identity_provider_id": "corp", "external_subject": "s1"}), "external_subject")
	if u := e.expect(e.do("GET", usersPath+"/mapping/corp/s1", rootToken, nil), 200).json(t); u["id"] != "u1" || len(u["identity_mappings"].([]any)) != 1 {
		t.Fatalf("lookup: %v", u)
	}
	if l := e.expect(e.do("GET", usersPath+"?ids=u2,u1&state=active", rootToken, nil), 200).json(t); fmt.Sprint(userIDs(t, l)) != "[u1 u2]" {
		t.Fatalf("ids: %v", l)
	}
	e.expect(e.do("PUT", usersPath+"/u2/state", rootToken, map[string]any{"state": "suspended"}), 200)
	if got := e.revocationsOf("acme", "u2"); len(got) != 3 {
		t.Fatalf("revocations of u2: %v", got)
	}
	e.expect(e.do("DELETE", usersPath+"/u1", rootToken, nil), 204)
	e.expect(e.do("GET", usersPath+"/mapping/corp/s1", rootToken, nil), 404)
	e.createUser("acme", map[string]any{"id": "u3", "email": "x@example.com", "subject": "ex"})
	e.expectConflict(e.do("POST", usersPath+"/u1/restore", rootToken, nil), "email")
	e.expect(e.do("DELETE", usersPath+"/u3", rootToken, nil), 204)
	r := e.expect(e.do("POST", usersPath+"/u1/restore", rootToken, nil), 201).json(t)
	if r["id"] != "u1" || r["subject"] != "ex" || len(r["identity_mappings"].([]any)) != 0 {
		t.Fatalf("restored: %v", r)
	}
	if l := e.expect(e.do("GET", usersPath+"?include_deleted=true&email=x@example.com", rootToken, nil), 200).json(t); fmt.Sprint(userIDs(t, l)) != "[u1 u1 u3]" {
		t.Fatalf("with the deleted: %v", l)
	}
	rec := e.expect(e.do("POST", usersPath+"/u1/recover", rootToken, nil), 201).json(t)
	key := rec["link"].(string)[strings.LastIndexByte(rec["link"].(string), '/')+1:]
	if _, err := directory.TakeRecovery(context.Background(), e.store, "acme", key); err != nil {
		t.Fatal(err)
	}
	if _, err := directory.TakeRecovery(context.Background(), e.store, "acme", key); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second take: %v", err)
	}
	e.expect(e.do("PUT", usersPath+"/u1/reset-mfa", rootToken, nil), 200)
}
