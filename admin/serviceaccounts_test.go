package admin_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/gatehouse-dev/gatehouse/admin"
	"github.com/gatehouse-dev/gatehouse/internal/httpapi"
	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/oauth"
	serverkeys "github.com/gatehouse-dev/gatehouse/oauth/keys"
	"github.com/gatehouse-dev/gatehouse/oauth/verify"
	"github.com/gatehouse-dev/gatehouse/store"
)

// dirEnv is an admin API composed as gatehouse serve composes it for the
// directory: the OAuth provider mounted on its engine (token endpoint at
// {srv}/{tid}/{aid}/oauth2/token, issuer https://gh.example/{tid}/{aid}),
// revoking clients' tokens and minting service accounts' long-lived
// ones, and verify.UserAuth for /api/identity.
type dirEnv struct {
	*env
	keys     *serverkeys.Manager
	verifier *verify.Verifier
}

const ghPublic = "https://gh.example"

func newDirEnv(t *testing.T) *dirEnv {
	t.Helper()
	return newDirEnvOn(t, nil)
}

// newDirEnvOn is newDirEnv on st (nil: a new embedded store).
func newDirEnvOn(t *testing.T, st store.Store) *dirEnv {
	t.Helper()
	d := &dirEnv{}
	edit := func(o *admin.Options) {
		p, err := oauth.New(oauth.Options{Store: o.Store, Keys: o.ServerKeys, PublicURL: o.PublicURL, CryptoKey: [32]byte{7, 7, 7}})
		if err != nil {
			t.Fatal(err)
		}
		d.keys, d.verifier = o.ServerKeys, verify.New(o.Store, o.PublicURL, nil, nil)
		o.Tokens, o.ServiceAccountTokens = p, p
		o.UserTokens = verify.UserAuth{Verifier: d.verifier}
		mount := o.Mount
		o.Mount = func(r gin.IRouter) { mount(r); p.Register(r) }
	}
	if st == nil {
		d.env = newEnvWith(t, edit)
	} else {
		d.env = newEnvOnWith(t, st, edit)
	}
	d.createTenant("acme")
	d.createTenant("other")
	return d
}

// tokenURL is the token endpoint of a server, on the test server.
func (d *dirEnv) tokenURL(tid, aid string) string {
	return d.srv.URL + "/" + tid + "/" + aid + "/oauth2/token"
}

// accountToken asks the token endpoint for a client_credentials token.
func (d *dirEnv) accountToken(clientID, secret string) (*oauth2.Token, error) {
	cc := clientcredentials.Config{ClientID: clientID, ClientSecret: secret, TokenURL: d.tokenURL("acme", model.DefaultServerID)}
	return cc.Token(context.Background())
}

// accepted reports whether acme's default server's gateways accept raw
// (the in-process verifier, fed what the bundles carry).
func (d *dirEnv) accepted(raw string) bool {
	d.t.Helper()
	_, err := d.verifier.Verify(context.Background(), "acme", model.DefaultServerID, raw)
	if err != nil && !errors.Is(err, verify.ErrNotAccepted) {
		d.t.Fatal(err)
	}
	return err == nil
}

// dirKinds are the kinds the directory's admin routes write.
var dirKinds = []string{model.KindUser, model.KindUserSubject, model.KindServiceAccount, model.KindGroup, model.KindGroupMember,
	model.KindProject, model.KindProjectMember, "project-groups", model.KindClient, model.KindTokenRevocation}

// dirState renders every object of dirKinds of acme and other and the
// count of their events: what a refused write must leave as it was.
func (d *dirEnv) dirState() string {
	d.t.Helper()
	ctx := context.Background()
	var b strings.Builder
	for _, tid := range []string{"acme", "other"} {
		for _, kind := range dirKinds {
			pg, err := d.store.List(ctx, store.Query{Kind: kind, TenantID: tid, IncludeDeleted: true})
			if err != nil {
				d.t.Fatal(err)
			}
			for _, o := range pg.Items {
				fmt.Fprintf(&b, "%s/%s/%s rev=%d deleted=%v %s\n", tid, kind, o.ID, o.Revision, o.DeletedAt != nil, o.Spec)
			}
		}
		ev, err := d.store.ListEvents(ctx, store.EventQuery{TenantID: tid})
		if err != nil {
			d.t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s: %d events\n", tid, len(ev.Items))
	}
	return b.String()
}

// refused asserts a refusal of status naming field, with nothing changed.
func (d *dirEnv) refused(status int, field, method, path string, body any) {
	d.t.Helper()
	before := d.dirState()
	r := d.do(method, path, rootToken, body, "Content-Type", contentTypeFor(method))
	if r.status != status {
		d.t.Fatalf("%s %s %v: %d, want %d: %s", method, path, body, r.status, status, r.body)
	}
	r.errorCode(d.t)
	if field != "" {
		det, _ := r.json(d.t)["details"].(map[string]any)
		if det["field"] != field {
			d.t.Fatalf("%s %s %v: want an error naming %q: %s", method, path, body, field, r.body)
		}
	}
	if after := d.dirState(); after != before {
		d.t.Fatalf("%s %s %v was refused but changed the store:\nbefore:\n%s\nafter:\n%s", method, path, body, before, after)
	}
}

// createUser creates a user of acme through the users API.
func (d *dirEnv) createUser(email, given, family string) string {
	d.t.Helper()
	return d.expect(d.do("POST", "/api/admin/acme/users", rootToken, map[string]any{"email": email, "given_name": given, "family_name": family}), 201).json(d.t)["id"].(string)
}

// createAccount creates a service account of acme and returns the answer.
func (d *dirEnv) createAccount(body map[string]any) map[string]any {
	d.t.Helper()
	r := d.expect(d.do("POST", "/api/admin/acme/service-accounts", rootToken, body), 201)
	if r.header.Get("Cache-Control") != "no-store" {
		d.t.Fatalf("create answer with a secret is cacheable: %v", r.header)
	}
	return r.json(d.t)
}

func jwtPayload(t *testing.T, raw string) map[string]any {
	t.Helper()
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", raw)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]any{}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// wantInvalidClient asserts a refused client authentication.
func wantInvalidClient(t *testing.T, err error, what string) {
	t.Helper()
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.ErrorCode != "invalid_client" || re.Response.StatusCode != http.StatusUnauthorized {
		t.Fatalf("%s: %v, want 401 invalid_client", what, err)
	}
}

// subjectRevocations are the not-before revocations of acme's default
// server's issuer, by subject.
func (d *dirEnv) subjectRevocations() map[string]time.Time {
	d.t.Helper()
	items, err := store.Repo[model.TokenRevocationSpec]{Kind: model.KindTokenRevocation}.ListAll(context.Background(), d.store, store.Query{TenantID: "acme"})
	if err != nil {
		d.t.Fatal(err)
	}
	out := map[string]time.Time{}
	for _, it := range items {
		if it.Spec.NotBefore != nil && it.Spec.Issuer == ghPublic+"/acme/default" {
			out[it.Spec.Subject] = *it.Spec.NotBefore
		}
	}
	return out
}

// TestServiceAccountCreateAndTokens: create makes the account and its
// client on the default server in one write and shows the secret once;
// the client's client_credentials tokens name the account; the client
// cannot be changed through /clients; the mapping finds the account.
func TestServiceAccountCreateAndTokens(t *testing.T) {
	d := newDirEnv(t)
	gid := d.expect(d.do("POST", "/api/admin/acme/groups", rootToken, map[string]any{"name": "robots"}), 201).json(t)["id"].(string)
	out := d.createAccount(map[string]any{"name": "ci", "description": "builds", "contact_email": "ops@example.com",
		"token_duration": "PT2H", "group_ids": []string{gid}})
	sa := out["service_account"].(map[string]any)
	said, cid, secret := out["id"].(string), out["client_id"].(string), out["client_secret"].(string)
	if sa["id"] != said || sa["client_id"] != cid || len(secret) < 32 || out["authentication_url"] != ghPublic+"/acme/default/oauth2/token" {
		t.Fatalf("create answer %v", out)
	}
	if sa["token_duration"] != "2h0m0s" || sa["state"] != "active" || sa["grant_default_roles"] != true || fmt.Sprint(sa["group_ids"]) != "["+gid+"]" {
		t.Fatalf("service account %v", sa)
	}
	if _, ok := out["access_token"]; ok {
		t.Fatalf("an access token without issue_token: %v", out)
	}
	got := d.expect(d.do("GET", "/api/admin/acme/service-accounts/"+said, rootToken, nil), 200)
	if strings.Contains(string(got.body), secret) || got.json(t)["contact_email"] != "ops@example.com" {
		t.Fatalf("GET: %s", got.body)
	}
	if g := d.expect(d.do("GET", "/api/admin/acme/groups/"+gid, rootToken, nil), 200).json(t); fmt.Sprint(g["service_account_ids"]) != "["+said+"]" {
		t.Fatalf("the account is not in its group: %v", g)
	}

	// The client: a system client_credentials client of default, secret hidden.
	client := d.expect(d.do("GET", "/api/admin/acme/clients/"+cid, rootToken, nil), 200).json(t)
	if client["system"] != true || client["authorization_server_id"] != "default" || fmt.Sprint(client["grant_types"]) != "[client_credentials]" || client["client_secret"] != "" {
		t.Fatalf("the account's client %v", client)
	}
	d.refused(400, "system", "PUT", "/api/admin/acme/clients/"+cid, map[string]any{"authorization_server_id": "default", "grant_types": []string{"client_credentials"}})
	d.refused(400, "system", "POST", "/api/admin/acme/clients/"+cid+"/secret", nil)
	before := d.dirState()
	if r := d.do("DELETE", "/api/admin/acme/clients/"+cid, rootToken, nil); r.status != 400 || r.errorCode(t) != httpapi.CodeInUse || !strings.Contains(string(r.body), said) {
		t.Fatalf("deleting the account's client: %d %s", r.status, r.body)
	}
	if d.dirState() != before {
		t.Fatal("a refused client delete changed the store")
	}

	// Its tokens: sub = the account, gh_sub_type service_account, 2h.
	tok, err := d.accountToken(cid, secret)
	if err != nil {
		t.Fatalf("client_credentials: %v", err)
	}
	at := jwtPayload(t, tok.AccessToken)
	if at["sub"] != said || at["gh_sub_type"] != "service_account" || at["client_id"] != cid || at["iss"] != ghPublic+"/acme/default" {
		t.Fatalf("token claims %v", at)
	}
	if life := at["exp"].(float64) - at["iat"].(float64); life != 7200 {
		t.Fatalf("token lives %vs, want token_duration 7200", life)
	}
	if !d.accepted(tok.AccessToken) {
		t.Fatal("the account's token is not accepted by the server's verifier")
	}

	// The mapping by client id.
	if m := d.expect(d.do("GET", "/api/admin/acme/service-accounts/mapping/"+cid, rootToken, nil), 200).json(t); m["id"] != said {
		t.Fatalf("mapping: %v", m)
	}
	d.expect(d.do("POST", "/api/admin/acme/clients", rootToken, map[string]any{"client_id": "plain", "authorization_server_id": "default",
		"grant_types": []string{"client_credentials"}}), 201)
	d.expect(d.do("GET", "/api/admin/acme/service-accounts/mapping/plain", rootToken, nil), 404)
	d.expect(d.do("GET", "/api/admin/acme/service-accounts/mapping/nosuch", rootToken, nil), 404)

	// issue_token: a long-lived token, made as the token endpoint makes
	// them; 90 days capped by the server's refresh_token_ttl (720h here).
	long := d.createAccount(map[string]any{"name": "nightly", "issue_token": true})
	raw, _ := long["access_token"].(string)
	lt := jwtPayload(t, raw)
	if lt["sub"] != long["id"] || lt["gh_sub_type"] != "service_account" || lt["client_id"] != long["client_id"] || !d.accepted(raw) {
		t.Fatalf("issued token %v (accepted %v)", lt, d.accepted(raw))
	}
	exp, err := time.Parse(time.RFC3339, long["expires_at"].(string))
	if err != nil || int64(lt["exp"].(float64)) != exp.Unix() || time.Until(exp) < 719*time.Hour || time.Until(exp) > 721*time.Hour {
		t.Fatalf("issued token expires %v (exp %v), want in 720h (the server's refresh_token_ttl)", long["expires_at"], lt["exp"])
	}
	d.expect(d.do("PATCH", "/api/admin/acme/servers/default", rootToken, map[string]any{"refresh_token_ttl": "8760h"}, "Content-Type", admin.MergePatchType), 200)
	longer := d.createAccount(map[string]any{"name": "weekly", "issue_token": true})
	exp, _ = time.Parse(time.RFC3339, longer["expires_at"].(string))
	if left := time.Until(exp); left < 89*24*time.Hour || left > 91*24*time.Hour {
		t.Fatalf("issued token expires in %v, want 90 days", left)
	}
}

// TestServiceAccountRefusals: bad input is a 4xx naming the field and
// writes nothing.
func TestServiceAccountRefusals(t *testing.T) {
	d := newDirEnv(t)
	const coll = "/api/admin/acme/service-accounts"
	d.createAccount(map[string]any{"id": "taken", "name": "taken"})
	gid := d.expect(d.do("POST", "/api/admin/acme/groups", rootToken, map[string]any{"name": "g"}), 201).json(t)["id"].(string)
	for _, c := range []struct {
		status int
		field  string
		body   map[string]any
	}{
		{400, "name", map[string]any{}},
		{400, "token_duration", map[string]any{"name": "a", "token_duration": "PT49H"}},
		{400, "token_duration", map[string]any{"name": "a", "token_duration": "P1M"}},
		{400, "token_duration", map[string]any{"name": "a", "token_duration": "PT0S"}},
		{400, "token_duration", map[string]any{"name": "a", "token_duration": "soon"}},
		{400, "state", map[string]any{"name": "a", "state": "gone"}},
		{400, "contact_email", map[string]any{"name": "a", "contact_email": "not an email"}},
		{400, "group_ids[0]", map[string]any{"name": "a", "group_ids": []string{"bad id!"}}},
		{400, "group_ids[1]", map[string]any{"name": "a", "group_ids": []string{gid, gid}}},
		{404, "group_ids[1]", map[string]any{"name": "a", "group_ids": []string{gid, "nosuch"}}},
		{400, "id", map[string]any{"name": "a", "id": "mapping"}},
		{400, "client_id", map[string]any{"name": "a", "client_id": "mine"}},
		{400, "expiry", map[string]any{"name": "a", "expiry": time.Now().Add(-time.Hour).Format(time.RFC3339)}},
		{400, "issue_token", map[string]any{"name": "a", "state": "suspended", "issue_token": true}},
		{400, "colour", map[string]any{"name": "a", "colour": "red"}},
		{409, "", map[string]any{"name": "taken"}},
		{409, "", map[string]any{"id": "taken", "name": "other"}},
	} {
		d.refused(c.status, c.field, "POST", coll, c.body)
	}
	// ISO-8601 and Go durations are both read.
	for in, want := range map[string]string{"PT1S": "1s", "PT1H30M": "1h30m0s", "P1DT12H": "36h0m0s", "48h": "48h0m0s", "PT0.5S": ""} {
		r := d.do("POST", coll, rootToken, map[string]any{"name": "d-" + in, "token_duration": in})
		if want == "" {
			if r.status != 400 {
				t.Errorf("token_duration %s: %d, want 400 (below PT1S)", in, r.status)
			}
			continue
		}
		if r.status != 201 || r.json(t)["service_account"].(map[string]any)["token_duration"] != want {
			t.Errorf("token_duration %s: %d %s, want %s", in, r.status, r.body, want)
		}
	}
	one := coll + "/taken"
	d.refused(400, "issue_token", "PUT", one, map[string]any{"name": "taken", "issue_token": true})
	d.refused(400, "client_id", "PATCH", one, map[string]any{"client_id": "x"})
	d.refused(404, "group_ids[0]", "PUT", one, map[string]any{"name": "taken", "group_ids": []string{"nosuch"}})
	d.refused(400, "grace_period", "POST", one+"/rotate", map[string]any{"grace_period": "721h"})
	d.refused(400, "grace_period", "POST", one+"/rotate", map[string]any{"grace_period": "-1s"})
	d.refused(404, "", "POST", coll+"/nosuch/rotate", nil)
	d.refused(404, "", "GET", coll+"/nosuch", nil)
}

// TestServiceAccountRotateSuspendDelete: rotating without a grace period
// stops the old secret and revokes the old tokens (the new secret's are
// good at once); with one, the old secret works for it; suspending fails
// the client and revokes; reactivating lets it in again; deleting
// revokes, deletes the client and leaves groups and projects.
func TestServiceAccountRotateSuspendDelete(t *testing.T) {
	serviceAccountRotateSuspendDelete(t, newDirEnv(t))
}

// The same on PostgreSQL (the markers and revocations on its indexes).
func TestServiceAccountRotateSuspendDeleteOnPostgres(t *testing.T) {
	serviceAccountRotateSuspendDelete(t, newDirEnvOn(t, testkit.PostgresStore(t)))
}

func serviceAccountRotateSuspendDelete(t *testing.T, d *dirEnv) {
	gid := d.expect(d.do("POST", "/api/admin/acme/groups", rootToken, map[string]any{"name": "robots"}), 201).json(t)["id"].(string)
	pid := d.expect(d.do("POST", "/api/admin/acme/projects", rootToken, map[string]any{"name": "p"}), 201).json(t)["id"].(string)
	out := d.createAccount(map[string]any{"name": "ci", "group_ids": []string{gid}})
	said, cid, secret := out["id"].(string), out["client_id"].(string), out["client_secret"].(string)
	one := "/api/admin/acme/service-accounts/" + said
	d.expect(d.do("PUT", "/api/admin/acme/projects/"+pid+"/members/service-accounts/"+said, rootToken, nil), 201)
	old, err := d.accountToken(cid, secret)
	if err != nil {
		t.Fatal(err)
	}

	// Rotate: the old secret is refused, the old token revoked; the new
	// secret's token, asked for at once, is good.
	rot := d.expect(d.do("POST", one+"/rotate", rootToken, nil), 200).json(t)
	fresh := rot["client_secret"].(string)
	if fresh == secret || rot["client_id"] != cid || rot["previous_secret_expires_at"] != nil {
		t.Fatalf("rotate: %v", rot)
	}
	_, err = d.accountToken(cid, secret)
	wantInvalidClient(t, err, "the old secret after a rotation")
	if d.accepted(old.AccessToken) {
		t.Fatal("a token of the old secret is accepted after the rotation")
	}
	if _, ok := d.subjectRevocations()[said]; !ok {
		t.Fatalf("no not-before revocation of %s: %v", said, d.subjectRevocations())
	}
	now, err := d.accountToken(cid, fresh)
	if err != nil || !d.accepted(now.AccessToken) {
		t.Fatalf("the new secret's token, right after the rotation: %v (accepted %v)", err, err == nil && d.accepted(now.AccessToken))
	}

	// With a grace period: both secrets work, nothing is revoked; issue_token
	// returns a token accepted at once.
	nb := d.subjectRevocations()[said]
	grace := d.expect(d.do("POST", one+"/rotate", rootToken, map[string]any{"grace_period": "PT1H", "issue_token": true}), 200).json(t)
	until, err := time.Parse(time.RFC3339Nano, grace["previous_secret_expires_at"].(string))
	if err != nil || time.Until(until) < 59*time.Minute || time.Until(until) > time.Hour {
		t.Fatalf("grace: %v", grace["previous_secret_expires_at"])
	}
	if _, err := d.accountToken(cid, fresh); err != nil {
		t.Fatalf("the previous secret within its grace period: %v", err)
	}
	newest := grace["client_secret"].(string)
	if _, err := d.accountToken(cid, newest); err != nil {
		t.Fatalf("the new secret: %v", err)
	}
	if !d.accepted(now.AccessToken) || !d.subjectRevocations()[said].Equal(nb) {
		t.Fatal("a rotation with a grace period revoked tokens")
	}
	if raw, _ := grace["access_token"].(string); !d.accepted(raw) {
		t.Fatalf("rotate with issue_token: %v", grace)
	}

	// Suspend: the client is refused and its tokens revoked; a token of
	// the reactivated account, asked for at once, is good.
	d.expect(d.do("PATCH", one, rootToken, map[string]any{"state": "suspended"}, "Content-Type", admin.MergePatchType), 200)
	_, err = d.accountToken(cid, newest)
	wantInvalidClient(t, err, "a suspended account")
	if d.accepted(now.AccessToken) {
		t.Fatal("a suspended account's token is accepted")
	}
	d.refused(400, "issue_token", "POST", one+"/rotate", map[string]any{"issue_token": true})
	d.expect(d.do("PATCH", one, rootToken, map[string]any{"state": "active"}, "Content-Type", admin.MergePatchType), 200)
	back, err := d.accountToken(cid, newest)
	if err != nil || !d.accepted(back.AccessToken) {
		t.Fatalf("the reactivated account: %v", err)
	}

	// Delete: revoked, client gone, out of its group and project.
	d.expect(d.do("DELETE", one, rootToken, nil), 204)
	if d.accepted(back.AccessToken) {
		t.Fatal("a deleted account's token is accepted")
	}
	_, err = d.accountToken(cid, newest)
	wantInvalidClient(t, err, "a deleted account's client")
	d.expect(d.do("GET", "/api/admin/acme/clients/"+cid, rootToken, nil), 404)
	if g := d.expect(d.do("GET", "/api/admin/acme/groups/"+gid, rootToken, nil), 200).json(t); len(g["service_account_ids"].([]any)) != 0 {
		t.Fatalf("the deleted account is still in its group: %v", g)
	}
	d.checkMarkers()
	if n := d.count(model.KindProjectMember); n != 0 {
		t.Fatalf("%d project assignments left after the account's delete", n)
	}
}

// count is the number of live objects of kind in acme.
func (d *dirEnv) count(kind string) int {
	d.t.Helper()
	pg, err := d.store.List(context.Background(), store.Query{Kind: kind, TenantID: "acme"})
	if err != nil {
		d.t.Fatal(err)
	}
	return len(pg.Items)
}

// checkMarkers asserts that the membership markers are exactly what the
// groups and projects say: for every principal, its groups by the index
// (parent id) equal its groups by a scan of every group, and every
// project's group links are its group_ids.
func (d *dirEnv) checkMarkers() {
	d.t.Helper()
	ctx := context.Background()
	groups, err := store.Repo[model.GroupSpec]{Kind: model.KindGroup}.ListAll(ctx, d.store, store.Query{TenantID: "acme"})
	if err != nil {
		d.t.Fatal(err)
	}
	scan := map[string][]string{}
	for _, g := range groups {
		for _, u := range g.Spec.UserIDs {
			scan["user:"+u] = append(scan["user:"+u], g.Meta.ID)
		}
		for _, s := range g.Spec.ServiceAccountIDs {
			scan["service_account:"+s] = append(scan["service_account:"+s], g.Meta.ID)
		}
	}
	markers, err := store.Repo[model.GroupMemberSpec]{Kind: model.KindGroupMember}.ListAll(ctx, d.store, store.Query{TenantID: "acme"})
	if err != nil {
		d.t.Fatal(err)
	}
	principals := map[string]bool{}
	for p := range scan {
		principals[p] = true
	}
	for _, m := range markers {
		principals[m.Meta.ParentID] = true
	}
	for p := range principals {
		idx, err := store.Repo[model.GroupMemberSpec]{Kind: model.KindGroupMember}.ListAll(ctx, d.store, store.Query{TenantID: "acme", ParentID: p})
		if err != nil {
			d.t.Fatal(err)
		}
		var byIndex []string
		for _, m := range idx {
			if m.Spec.Principal != p {
				d.t.Fatalf("marker %s under parent %s names %s", m.Meta.Name, p, m.Spec.Principal)
			}
			byIndex = append(byIndex, m.Spec.GroupID)
		}
		sort.Strings(byIndex)
		want := scan[p]
		sort.Strings(want)
		if fmt.Sprint(byIndex) != fmt.Sprint(want) {
			d.t.Fatalf("groups of %s: by index %v, by scan %v", p, byIndex, want)
		}
	}
	projects, err := store.Repo[model.ProjectSpec]{Kind: model.KindProject}.ListAll(ctx, d.store, store.Query{TenantID: "acme"})
	if err != nil {
		d.t.Fatal(err)
	}
	links := map[string][]string{}
	pg, err := d.store.List(ctx, store.Query{Kind: "project-groups", TenantID: "acme"})
	if err != nil {
		d.t.Fatal(err)
	}
	for _, o := range pg.Items {
		var l struct {
			ProjectID string `json:"project_id"`
			GroupID   string `json:"group_id"`
		}
		if err := json.Unmarshal(o.Spec, &l); err != nil {
			d.t.Fatal(err)
		}
		if o.ParentID != "group:"+l.GroupID {
			d.t.Fatalf("project-group marker %s has parent %s", o.Name, o.ParentID)
		}
		links[l.ProjectID] = append(links[l.ProjectID], l.GroupID)
	}
	for _, p := range projects {
		got, want := links[p.Meta.ID], append([]string(nil), p.Spec.GroupIDs...)
		sort.Strings(got)
		sort.Strings(want)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			d.t.Fatalf("project %s: group links %v, group_ids %v", p.Meta.ID, got, want)
		}
		delete(links, p.Meta.ID)
	}
	if len(links) > 0 {
		d.t.Fatalf("group links of projects that do not exist: %v", links)
	}
}

// TestDirectoryRoutesAreTenantIsolated: tenant other's credential gets 403
// on every route of acme's service accounts, groups, projects and
// identities; an unknown tenant is 404.
func TestDirectoryRoutesAreTenantIsolated(t *testing.T) {
	d := newDirEnv(t)
	uid := d.createUser("ada@example.com", "Ada", "Lovelace")
	said := d.createAccount(map[string]any{"name": "ci"})["id"].(string)
	gid := d.expect(d.do("POST", "/api/admin/acme/groups", rootToken, map[string]any{"name": "g"}), 201).json(t)["id"].(string)
	pid := d.expect(d.do("POST", "/api/admin/acme/projects", rootToken, map[string]any{"name": "p"}), 201).json(t)["id"].(string)
	otherTok := d.credential("other")
	routes := func(tid string) [][2]string {
		a := "/api/admin/" + tid
		return [][2]string{
			{"GET", a + "/service-accounts"}, {"POST", a + "/service-accounts"}, {"GET", a + "/service-accounts/" + said},
			{"PUT", a + "/service-accounts/" + said}, {"PATCH", a + "/service-accounts/" + said}, {"DELETE", a + "/service-accounts/" + said},
			{"POST", a + "/service-accounts/" + said + "/rotate"}, {"GET", a + "/service-accounts/mapping/x"},
			{"GET", a + "/service-accounts/" + said + "/projects"},
			{"GET", a + "/groups"}, {"POST", a + "/groups"}, {"GET", a + "/groups/" + gid}, {"PUT", a + "/groups/" + gid},
			{"PATCH", a + "/groups/" + gid}, {"DELETE", a + "/groups/" + gid},
			{"GET", a + "/projects"}, {"POST", a + "/projects"}, {"GET", a + "/projects/" + pid}, {"PUT", a + "/projects/" + pid},
			{"PATCH", a + "/projects/" + pid}, {"DELETE", a + "/projects/" + pid},
			{"PUT", a + "/projects/" + pid + "/members/users/" + uid}, {"DELETE", a + "/projects/" + pid + "/members/users/" + uid},
			{"PUT", a + "/projects/" + pid + "/members/service-accounts/" + said}, {"DELETE", a + "/projects/" + pid + "/members/service-accounts/" + said},
			{"GET", a + "/users/" + uid + "/projects"}, {"GET", a + "/identities/" + uid}, {"POST", a + "/projects/" + pid + "/users"},
		}
	}
	before := d.dirState()
	for _, r := range routes("acme") {
		if got := d.do(r[0], r[1], otherTok, map[string]any{"name": "x"}, "Content-Type", contentTypeFor(r[0])); got.status != 403 {
			t.Errorf("%s %s with tenant other's credential: %d %s", r[0], r[1], got.status, got.body)
		}
	}
	for _, r := range routes("nosuch") {
		if got := d.do(r[0], r[1], rootToken, map[string]any{"name": "x"}, "Content-Type", contentTypeFor(r[0])); got.status != 404 {
			t.Errorf("%s %s of an unknown tenant: %d %s", r[0], r[1], got.status, got.body)
		}
	}
	if d.dirState() != before {
		t.Fatal("refused requests changed the store")
	}
	// /api/system/users is system-wide only.
	if got := d.do("GET", "/api/system/users?email=ada@example.com", d.credential("acme"), nil); got.status != 403 {
		t.Fatalf("/api/system/users with a tenant credential: %d", got.status)
	}
}
