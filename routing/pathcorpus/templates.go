package pathcorpus

// TemplateCase is one request path against one path template: whether the
// template matches the path (after canonicalisation) and with which
// parameters. Every enforcement point must agree with it: the Go route
// table, the Rego library, the generated Envoy routes.
type TemplateCase struct {
	Template string
	// Path is the raw request path.
	Path string
	// Params is nil when the template does not match, else its
	// parameters (values as in the canonical path).
	Params map[string]string
}

// TemplateCases enumerates pattern segments (a parameter with literal text
// around it in one segment), next to the plain forms, with the paths on
// their edges: empty parameters, suffixes that would split a
// percent-escape, escapes in either case, dots.
func TemplateCases() []TemplateCase {
	p := func(kv ...string) map[string]string {
		m := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	return []TemplateCase{
		{"/files/{name}.json", "/files/a.json", p("name", "a")},
		{"/files/{name}.json", "/files/a.b.json", p("name", "a.b")},
		{"/files/{name}.json", "/files/%61.json", p("name", "a")},
		{"/files/{name}.json", "/files/.json", nil},
		{"/files/{name}.json", "/files/a.jsonx", nil},
		{"/files/{name}.json", "/files/a.JSON", nil},
		{"/files/{name}.json", "/files/a.json/", nil},
		{"/files/{name}.json", "/files//a.json", p("name", "a")},
		{"/files/{name}.json", "/files/caf%c3%a9.json", p("name", "caf%C3%A9")},
		{"/api/v{version}/pets", "/api/v2/pets", p("version", "2")},
		{"/api/v{version}/pets", "/api/v/pets", nil},
		{"/api/v{version}/pets", "/api/V2/pets", nil},
		{"/api/v{version}/pets", "/api/v2.1/pets", p("version", "2.1")},
		{"/img-{id}.png", "/img-7.png", p("id", "7")},
		{"/img-{id}.png", "/img-.png", nil},
		{"/img-{id}.png", "/img-a-b.png", p("id", "a-b")},
		{"/{x}C3", "/a%C3", nil},
		{"/{x}C3", "/a%c3", nil},
		{"/{x}3", "/a%C3", nil},
		{"/{x}C3", "/ab%C3C3", p("x", "ab%C3")},
		{"/{x}%C3%A9", "/caf%C3%A9", p("x", "caf")},
		{"/{x}%C3%A9", "/caf%c3%a9", p("x", "caf")},
		{"/%C3{x}", "/%C3%A9", p("x", "%A9")},
		{"/%C3{x}", "/%c3%a9", p("x", "%A9")},
		{"/x.{ext}", "/x.y", p("ext", "y")},
		{"/x.{ext}", "/x.y.z", p("ext", "y.z")},
		{"/x.{ext}", "/xy", nil},
		{"/a/{id}.json/{rest...}", "/a/1.json/b/c", p("id", "1", "rest", "b/c")},
		{"/a/{id}.json/{rest...}", "/a/1.json", p("id", "1", "rest", "")},
		{"/pets/{id}", "/pets/a.json", p("id", "a.json")},
		{"/pets/{id}", "/pets/", nil},
	}
}
