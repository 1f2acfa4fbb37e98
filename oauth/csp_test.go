package oauth

import "testing"

// A redirect URI's origin goes into the form pages' CSP as a source
// expression; nothing else of it does, and what is not a plain http(s)
// origin goes nowhere.
func TestCSPOrigin(t *testing.T) {
	for raw, want := range map[string]string{
		"https://app.example.com/cb?x=1":   "https://app.example.com",
		"http://127.0.0.1:8080/callback":   "http://127.0.0.1:8080",
		"http://[::1]:9000/cb":             "http://[::1]:9000",
		"com.example.app:/callback":        "",
		"javascript:alert(1)":              "",
		"https://a.example; script-src *":  "",
		"https://a.example%3B%20x/cb":      "",
		"https://user@a.example/cb":        "https://a.example",
		"":                                 "",
		"https://a.example:99999999999/cb": "https://a.example:99999999999",
		"https://a b.example/cb":           "",
	} {
		if got := cspOrigin(raw); got != want {
			t.Errorf("cspOrigin(%q) = %q, want %q", raw, got, want)
		}
	}
}
