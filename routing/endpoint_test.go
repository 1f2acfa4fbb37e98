package routing

import (
	"errors"
	"testing"
)

func TestParseEndpoint(t *testing.T) {
	ep, err := ParseEndpoint(" get ", "/pets/{id}")
	if err != nil || ep.Method != "GET" || ep.Template.Raw != "/pets/{id}" {
		t.Fatalf("ParseEndpoint: %+v %v", ep, err)
	}
	if got := ep.Name("pets"); got != "pets GET /pets/{}" {
		t.Fatalf("Name = %q", got)
	}
	// Equivalent routes of a service share the name; other services and
	// methods do not.
	same, _ := ParseEndpoint("GET", "/pets/{key}")
	other, _ := ParseEndpoint("*", "/pets/{id}")
	if same.Name("pets") != ep.Name("pets") || ep.Name("shop") == ep.Name("pets") || other.Name("pets") == ep.Name("pets") {
		t.Fatalf("names: %q %q %q", same.Name("pets"), ep.Name("shop"), other.Name("pets"))
	}
	for _, c := range []struct{ method, path, field string }{
		{"FETCH", "/pets", "method"},
		{"", "/pets", "method"},
		{"GET", "pets", "path"},
		{"GET", "/pets/{id}.{ext}", "path"},
		{"BREW", "not a path", "method"}, // the method is checked first
	} {
		_, err := ParseEndpoint(c.method, c.path)
		var ee *EndpointError
		if !errors.As(err, &ee) || ee.Field != c.field || ee.Err == nil || errors.Unwrap(err) != ee.Err {
			t.Errorf("ParseEndpoint(%q, %q) = %v, want an error on %s", c.method, c.path, err, c.field)
		}
	}
}
