package oauth

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"testing"

	"golang.org/x/oauth2/clientcredentials"

	"github.com/gatehouse-dev/gatehouse/model"
)

// machineToken gets a client_credentials token at a server.
func (e *env) machineToken(tid, aid, client, secret string) string {
	e.t.Helper()
	cc := clientcredentials.Config{ClientID: client, ClientSecret: secret, TokenURL: e.issuer(tid, aid) + "/oauth2/token"}
	tok, err := cc.Token(context.Background())
	if err != nil {
		e.t.Fatalf("client_credentials at %s/%s: %v", tid, aid, err)
	}
	return tok.AccessToken
}

func (e *env) getJSON(u string, out any) int {
	e.t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		e.t.Fatalf("GET %s: %v", u, err)
	}
	return resp.StatusCode
}

func TestTenantsAndServersNeverCross(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		e.client("globex", "other-web", model.ClientSpec{ServerID: "default", SecretHash: "", Public: true,
			GrantTypes: []string{model.GrantAuthorizationCode}, RedirectURIs: []string{cliRedirect}})
		servers := []struct{ tid, aid, client, secret string }{
			{"acme", "default", "machine", machineSecret},
			{"acme", "other", "other-web", webSecret},
			{"globex", "default", "machine", machineSecret},
		}
		tokens := map[string]string{}
		kids := map[string]string{}
		for _, s := range servers {
			iss := e.issuer(s.tid, s.aid)
			var doc map[string]any
			if e.getJSON(iss+"/.well-known/openid-configuration", &doc) != http.StatusOK || doc["issuer"] != iss || doc["jwks_uri"] != iss+"/.well-known/jwks.json" {
				t.Fatalf("discovery of %s: %v", iss, doc)
			}
			tokens[iss] = e.machineToken(s.tid, s.aid, s.client, s.secret)
			var jwks struct {
				Keys []struct {
					KID string `json:"kid"`
				} `json:"keys"`
			}
			e.getJSON(iss+"/.well-known/jwks.json", &jwks)
			if len(jwks.Keys) != 1 {
				t.Fatalf("JWKS of %s: %+v", iss, jwks)
			}
			for other, kid := range kids {
				if kid == jwks.Keys[0].KID {
					t.Fatalf("%s and %s publish the same key %s", iss, other, kid)
				}
			}
			kids[iss] = jwks.Keys[0].KID
			if got := decodeJWT(t, tokens[iss]); got["iss"] != iss || got["gh_tid"] != s.tid {
				t.Fatalf("token of %s: %v", iss, got)
			}
		}
		for _, s := range servers {
			iss := e.issuer(s.tid, s.aid)
			for tokIss, tok := range tokens {
				status, body := e.postForm(iss+"/oauth2/introspect", url.Values{"token": {tok}}, s.client, s.secret)
				want := tokIss == iss
				if status != http.StatusOK || body["active"] != want {
					t.Errorf("introspection at %s of a token of %s: %d %v, want active %v", iss, tokIss, status, body, want)
				}
				req, _ := http.NewRequest(http.MethodGet, iss+"/userinfo", nil)
				req.Header.Set("Authorization", "Bearer "+tok)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if want != (resp.StatusCode == http.StatusOK) {
					t.Errorf("userinfo at %s with a token of %s: %d", iss, tokIss, resp.StatusCode)
				}
			}
		}
		// acme's machine secret does not authenticate at globex's introspection as acme's client.
		status, _ := e.postForm(e.issuer("globex", "default")+"/oauth2/introspect", url.Values{"token": {tokens[e.issuer("acme", "default")]}}, "other-web", webSecret)
		if status != http.StatusUnauthorized {
			t.Errorf("introspection with another tenant's client: %d, want 401", status)
		}
	})
}

func TestDiscoveryDocument(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		e.server("acme", "ec", func(s *model.ServerSpec) {
			s.KeyType = "ecdsa"
			s.GrantTypes = []string{model.GrantAuthorizationCode}
		})
		for _, path := range []string{"/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"} {
			var doc map[string]any
			iss := e.issuer("acme", "default")
			if status := e.getJSON(iss+path, &doc); status != http.StatusOK {
				t.Fatalf("%s: %d", path, status)
			}
			// The 16 fields of seed 000's openidConfiguration.
			for _, k := range []string{"issuer", "authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri",
				"scopes_supported", "claims_supported", "response_types_supported", "response_modes_supported", "grant_types_supported",
				"code_challenge_methods_supported", "id_token_signing_alg_values_supported", "token_endpoint_auth_methods_supported",
				"claims_parameter_supported", "request_parameter_supported", "request_uri_parameter_supported"} {
				if _, ok := doc[k]; !ok {
					t.Errorf("%s has no %s", path, k)
				}
			}
			for k, want := range map[string]any{"claims_parameter_supported": false, "request_parameter_supported": false,
				"request_uri_parameter_supported": false, "authorization_endpoint": iss + "/oauth2/authorize", "token_endpoint": iss + "/oauth2/token",
				"introspection_endpoint": iss + "/oauth2/introspect", "revocation_endpoint": iss + "/oauth2/revoke",
				"end_session_endpoint": iss + "/oauth2/logout", "userinfo_endpoint": iss + "/userinfo"} {
				if doc[k] != want {
					t.Errorf("%s %s = %v, want %v", path, k, doc[k], want)
				}
			}
			strs := func(k string) []string {
				var out []string
				for _, v := range doc[k].([]any) {
					out = append(out, v.(string))
				}
				return out
			}
			if g := strs("grant_types_supported"); !slices.Equal(g, []string{"authorization_code", "client_credentials", "refresh_token"}) {
				t.Errorf("grant_types_supported %v", g)
			}
			if c := strs("code_challenge_methods_supported"); !slices.Equal(c, []string{"S256"}) {
				t.Errorf("code_challenge_methods_supported %v", c)
			}
			if a := strs("id_token_signing_alg_values_supported"); !slices.Equal(a, []string{"RS256"}) {
				t.Errorf("id_token_signing_alg_values_supported %v", a)
			}
			if s := strs("scopes_supported"); !slices.Contains(s, "orders.read") || !slices.Contains(s, "openid") {
				t.Errorf("scopes_supported %v", s)
			}
			if c := strs("claims_supported"); !slices.Contains(c, "groups") || !slices.Contains(c, "gh_tid") {
				t.Errorf("claims_supported %v", c)
			}
			if _, ok := doc["device_authorization_endpoint"]; ok {
				t.Error("device authorization advertised")
			}
		}
		var ec map[string]any
		e.getJSON(e.issuer("acme", "ec")+"/.well-known/openid-configuration", &ec)
		if a := ec["id_token_signing_alg_values_supported"].([]any); len(a) != 1 || a[0] != "ES256" {
			t.Errorf("ecdsa server algs %v", a)
		}
		if g := ec["grant_types_supported"].([]any); len(g) != 1 || g[0] != "authorization_code" {
			t.Errorf("ecdsa server grants %v", g)
		}
		if s := ec["scopes_supported"].([]any); slices.Contains(s, any("offline_access")) || slices.Contains(s, any("orders.read")) {
			t.Errorf("scopes of a server without refresh tokens or bound scopes: %v", s)
		}
	})
}
