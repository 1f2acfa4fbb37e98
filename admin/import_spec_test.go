package admin

import (
	"net/netip"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
)

func TestSanitizeParams(t *testing.T) {
	for _, c := range []struct{ prefix, path, want string }{
		{"", "/pets/{id}", "/pets/{id}"},
		{"/api", "/pets/{pet-id}/x/{pet.id}", "/api/pets/{pet_id}/x/{pet_id_2}"},
		{"", "/a/{1st}/{}/{+path}", "/a/{_1st}/{_}/{_path}"},
		{"", "/files/{name}.json", "/files/{name}.json"},
		{"", "/", "/"},
	} {
		if got := sanitizeParams(c.prefix, c.path); got != c.want {
			t.Errorf("sanitizeParams(%q, %q) = %q, want %q", c.prefix, c.path, got, c.want)
		}
	}
}

func TestServerPrefix(t *testing.T) {
	for _, c := range []struct {
		url  string
		vars map[string]string
		want string
	}{
		{"https://api.example.com", nil, ""},
		{"https://api.example.com/", nil, ""},
		{"https://api.example.com/v1/", nil, "/v1"},
		{"https://{region}.example.com/{base}/v2", map[string]string{"region": "eu", "base": "api"}, "/api/v2"},
		{"/v3", nil, "/v3"},
		{"v3", nil, "/v3"},
		{"//cdn.example.com/x", nil, "/x"},
		{"http://h/a%20b", nil, "/a%20b"},
	} {
		sv := &openapi3.Server{URL: c.url, Variables: map[string]*openapi3.ServerVariable{}}
		for k, v := range c.vars {
			sv.Variables[k] = &openapi3.ServerVariable{Default: v}
		}
		got, err := serverPrefix(sv)
		if err != nil || got != c.want {
			t.Errorf("serverPrefix(%q) = %q, %v; want %q", c.url, got, err, c.want)
		}
	}
	if p, err := serverPrefix(nil); p != "" || err != nil {
		t.Errorf("no server: %q %v", p, err)
	}
}

func TestRestrictedAddress(t *testing.T) {
	for addr, want := range map[string]string{
		"127.0.0.1": "loopback", "::1": "loopback", "::ffff:127.0.0.1": "loopback",
		"10.1.2.3": "private", "172.16.0.1": "private", "192.168.1.1": "private", "fd00::1": "private", "100.64.0.1": "private",
		"169.254.169.254": "link-local", "fe80::1%eth0": "link-local",
		"0.0.0.0": "unspecified", "::": "unspecified", "0.1.2.3": "unspecified",
		"224.0.0.1": "link-local", "239.1.2.3": "multicast or broadcast", "255.255.255.255": "multicast or broadcast",
		"93.184.216.34": "", "2606:4700::1111": "",
	} {
		if got := restrictedAddress(netip.MustParseAddr(addr)); got != want {
			t.Errorf("restrictedAddress(%s) = %q, want %q", addr, got, want)
		}
	}
}
