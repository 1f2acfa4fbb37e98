package tests

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/testkit/browser"
)

// TestInvitationEndToEnd runs the real binary: an admin invites a
// pending user of tenant acme over the admin API; the invitee opens the
// key's summary, accepts, signs in at acme's identity provider — another
// Gatehouse tenant's server (upstream), federated through
// --idp-allow-private-urls — and lands on the done page; the user is now
// active and mapped to the upstream identity, and the invitation
// Accepted. The key is nowhere in the admin API afterwards; accepting
// again, declining and revoking it are 409s.
func TestInvitationEndToEnd(t *testing.T) {
	o := backends()[0].options(t)
	o.Args = append(o.Args, "--idp-allow-private-urls")
	cp := startServe(t, o)
	c := newClient(t, cp.URL, testToken)
	// The upstream: tenant upstream's default server, a static user, and
	// the client acme's federation uses.
	c.must(201, "POST", "/api/system/tenants", map[string]any{"id": "upstream", "name": "Upstream"})
	c.must(200, "PUT", "/api/admin/upstream/servers/default/authentications", map[string]any{"methods": []any{map[string]any{
		"id": "staff", "method": "static", "static": map[string]any{"users": []any{map[string]any{"username": "alice", "password": rpPassword,
			"authentication_context": map[string]any{"email": "alice@upstream.example", "email_verified": true, "given_name": "Alice"}}}},
	}}})
	fed := c.must(201, "POST", "/api/admin/upstream/clients", map[string]any{"client_id": "acme-fed", "authorization_server_id": "default",
		"grant_types": []string{"authorization_code"}, "redirect_uris": []string{cp.URL + "/acme/default/login/callback"},
		"scopes": []string{"openid", "email", "profile"}}).JSON(t)
	// Acme federates its default server to it, and has a pending user.
	c.must(201, "POST", "/api/system/tenants", map[string]any{"id": "acme", "name": "Acme", "identity_provider": map[string]any{
		"id": "up", "name": "Upstream", "type": "oidc", "issuer": cp.URL + "/upstream/default",
		"client_id": "acme-fed", "client_secret": fed["client_secret"]}})
	c.must(200, "PUT", "/api/admin/acme/servers/default/authentications", map[string]any{"methods": []any{map[string]any{
		"id": "corp", "method": "oidc", "oidc": map[string]any{"identity_provider_id": "up"}}}})
	user := c.must(201, "POST", "/api/admin/acme/users", map[string]any{"email": "alice@acme.example", "state": "pending"}).JSON(t)
	uid := user["id"].(string)

	inv := c.must(201, "POST", "/api/admin/acme/invitations", map[string]any{"invited_email_address": "alice@acme.example",
		"invitation_url": "https://app.example/join", "target_user_identity_id": uid}).JSON(t)
	link, err := url.Parse(inv["invitation_url"].(string))
	if err != nil {
		t.Fatal(err)
	}
	key := link.Query().Get("key")
	keyBase := cp.URL + "/acme/default/login/invitations/" + key

	b := browser.New(nil)
	get := func(target string) (int, string) {
		res, err := b.Client.Get(target)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(body)
	}
	if st, body := get(keyBase); st != 200 || !strings.Contains(body, `"state":"Open"`) || !strings.Contains(body, `"to_tenant_name":"Acme"`) || strings.Contains(body, uid) {
		t.Fatalf("summary: %d %s", st, body)
	}
	res, err := b.Client.Post(keyBase+"/accept", "application/x-www-form-urlencoded", nil)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusSeeOther || !strings.HasPrefix(res.Header.Get("Location"), cp.URL+"/acme/default/login?auth_request=") {
		t.Fatalf("accept: %d %s", res.StatusCode, res.Header.Get("Location"))
	}
	done := cp.URL + "/acme/default/login/invitations/done"
	flow, err := b.Drive(res.Header.Get("Location"), done, "alice", rpPassword)
	if err != nil {
		t.Fatal(err)
	}
	if flow.Callback == nil || !flow.LoginShown {
		t.Fatalf("the sign-in did not reach the done page: %d %s", flow.Status, flow.Body)
	}
	if st, body := get(flow.Callback.String()); st != 200 || !strings.Contains(body, "Invitation accepted") {
		t.Fatalf("done page: %d %s", st, body)
	}

	got := c.must(200, "GET", "/api/admin/acme/users/"+uid, nil).JSON(t)
	maps, _ := got["identity_mappings"].([]any)
	if got["state"] != "active" || len(maps) != 1 || maps[0].(map[string]any)["identity_provider_id"] != "up" {
		t.Fatalf("the invited user: %v", got)
	}
	after := c.must(200, "GET", "/api/admin/acme/invitations/"+inv["id"].(string), nil)
	if m := after.JSON(t); m["state"] != "Accepted" || m["accepted"] != true {
		t.Fatalf("invitation: %v", m)
	}
	for _, p := range []string{"/api/admin/acme/invitations", "/api/admin/acme/events?limit=200", "/api/admin/acme/configuration"} {
		if body := string(c.must(200, "GET", p, nil).Body); strings.Contains(body, key) {
			t.Fatalf("%s holds the key", p)
		}
	}
	if st, _ := get(keyBase); st != 200 {
		t.Fatalf("summary of an accepted invitation: %d", st)
	}
	res, err = b.Client.Post(keyBase+"/accept", "application/x-www-form-urlencoded", nil)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusConflict {
		t.Fatalf("accept again: %d", res.StatusCode)
	}
	c.must(409, "PUT", "/api/admin/acme/invitations/"+inv["id"].(string)+"/revoke", nil)
	c.must(409, "PUT", "/api/admin/acme/invitations/"+inv["id"].(string)+"/decline", nil)
}
