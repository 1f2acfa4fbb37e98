package admin

import (
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
