package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/getkin/kin-openapi/openapi2"
	"github.com/getkin/kin-openapi/openapi2conv"
	"github.com/getkin/kin-openapi/openapi3"
	yaml "go.yaml.in/yaml/v3"

	"github.com/gatehouse-dev/gatehouse/routing"
)

// maxSpecErrors caps the problems listed for an invalid specification.
const maxSpecErrors = 50

// specOperation is one importable operation of an OpenAPI document.
type specOperation struct {
	route       apiRoute
	operationID string
}

// ignoredAPI is an operation the import could not turn into an API.
type ignoredAPI struct {
	Method      string `json:"method"`
	Path        string `json:"path"`
	OperationID string `json:"operation_id,omitempty"`
	Reason      string `json:"reason"`
}

// specScope is an OAuth2 scope declared by the document's security schemes.
type specScope struct {
	name, description string
}

// specification is what an import takes from an OpenAPI document.
type specification struct {
	version    string
	operations []specOperation
	ignored    []ignoredAPI
	scopes     []specScope
}

// specError collects the problems of an invalid document.
type specError struct{ problems []string }

func (e *specError) Error() string { return strings.Join(e.problems, "; ") }

func invalidSpec(problems ...string) *specError {
	if len(problems) > maxSpecErrors {
		problems = append(problems[:maxSpecErrors:maxSpecErrors], fmt.Sprintf("… and %d more problems", len(problems)-maxSpecErrors))
	}
	return &specError{problems: problems}
}

// parseSpecification parses and validates an OpenAPI 3.0/3.1 or Swagger 2.0
// document (JSON or YAML) and lists the operations to import, in the order
// they appear in the document.
func parseSpecification(ctx context.Context, data []byte) (*specification, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, invalidSpec("the document is empty")
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, invalidSpec(syntaxProblem(data, err))
	}
	if root.Kind != yaml.DocumentNode || len(root.Content) == 0 || root.Content[0].Kind != yaml.MappingNode {
		return nil, invalidSpec("the document must be a JSON or YAML object")
	}
	top := root.Content[0]
	var (
		doc     *openapi3.T
		version string
		err     error
	)
	switch swagger, openapi := scalarValue(top, "swagger"), scalarValue(top, "openapi"); {
	case swagger != "":
		if swagger != "2.0" {
			return nil, invalidSpec(fmt.Sprintf("swagger: unsupported version %q (2.0 is supported)", swagger))
		}
		version = "2.0"
		doc, err = loadSwagger(top)
	case openapi != "":
		if !strings.HasPrefix(openapi, "3.") {
			return nil, invalidSpec(fmt.Sprintf("openapi: unsupported version %q (3.0, 3.1 and 3.2 are supported)", openapi))
		}
		version = openapi
		loader := openapi3.NewLoader()
		loader.IsExternalRefsAllowed = false
		loader.Context = ctx
		doc, err = loader.LoadFromData(data)
	default:
		return nil, invalidSpec("not an OpenAPI document: neither an \"openapi\" (3.x) nor a \"swagger\" (2.0) version field")
	}
	if err != nil {
		return nil, invalidSpec(err.Error())
	}
	if err := doc.Validate(ctx, openapi3.EnableMultiError(), openapi3.DisableExamplesValidation()); err != nil {
		var me openapi3.MultiError
		if errors.As(err, &me) {
			problems := make([]string, 0, len(me))
			for _, e := range me {
				problems = append(problems, e.Error())
			}
			return nil, invalidSpec(problems...)
		}
		return nil, invalidSpec(err.Error())
	}
	spec := &specification{version: version, scopes: oauthScopes(doc)}
	spec.collect(doc, mappingValue(top, "paths"))
	return spec, nil
}

// syntaxProblem describes a JSON or YAML syntax error; JSON errors get a
// line and column.
func syntaxProblem(data []byte, yamlErr error) string {
	if t := bytes.TrimSpace(data); len(t) > 0 && (t[0] == '{' || t[0] == '[') {
		var v any
		var syn *json.SyntaxError
		if err := json.Unmarshal(data, &v); errors.As(err, &syn) {
			line := 1 + bytes.Count(data[:syn.Offset], []byte("\n"))
			col := int(syn.Offset) - bytes.LastIndexByte(data[:syn.Offset], '\n') - 1
			return fmt.Sprintf("JSON syntax error at line %d, column %d: %s", line, col, syn.Error())
		}
	}
	return "YAML syntax error: " + strings.TrimPrefix(yamlErr.Error(), "yaml: ")
}

// loadSwagger converts a Swagger 2.0 document to OpenAPI 3.
func loadSwagger(top *yaml.Node) (*openapi3.T, error) {
	var generic any
	if err := top.Decode(&generic); err != nil {
		return nil, err
	}
	raw, err := json.Marshal(jsonCompatible(generic))
	if err != nil {
		return nil, err
	}
	var doc2 openapi2.T
	if err := json.Unmarshal(raw, &doc2); err != nil {
		return nil, err
	}
	return openapi2conv.ToV3(&doc2)
}

// jsonCompatible turns YAML maps with non-string keys (such as response
// codes) into JSON objects.
func jsonCompatible(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = jsonCompatible(e)
		}
		return x
	case map[any]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[fmt.Sprint(k)] = jsonCompatible(e)
		}
		return m
	case []any:
		for i, e := range x {
			x[i] = jsonCompatible(e)
		}
		return x
	}
	return v
}

// mappingValue returns the value of key in a YAML mapping, or nil.
func mappingValue(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

func scalarValue(m *yaml.Node, key string) string {
	if v := mappingValue(m, key); v != nil && v.Kind == yaml.ScalarNode {
		return strings.TrimSpace(v.Value)
	}
	return ""
}

// mappingKeys lists the keys of a YAML mapping in document order.
func mappingKeys(m *yaml.Node) []string {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	keys := make([]string, 0, len(m.Content)/2)
	for i := 0; i+1 < len(m.Content); i += 2 {
		keys = append(keys, m.Content[i].Value)
	}
	return keys
}

// inDocumentOrder orders names by their position in order; names not in it
// follow, sorted.
func inDocumentOrder(names []string, order []string) []string {
	sort.Strings(names)
	pos := func(n string) int {
		if i := slices.Index(order, n); i >= 0 {
			return i
		}
		return len(order)
	}
	slices.SortStableFunc(names, func(a, b string) int { return pos(a) - pos(b) })
	return names
}

// collect turns the document's operations into routes: one per operation,
// path = the server's path prefix + the operation path, parameter names
// sanitised. Operations that cannot be routes, or that duplicate an earlier
// operation's method and path shape, are listed as ignored.
func (s *specification) collect(doc *openapi3.T, pathsNode *yaml.Node) {
	if doc.Paths == nil {
		return
	}
	seen := map[string]specOperation{}
	for _, p := range inDocumentOrder(doc.Paths.Keys(), mappingKeys(pathsNode)) {
		item := doc.Paths.Value(p)
		if item == nil {
			continue
		}
		ops := item.Operations()
		methodKeys := mappingKeys(mappingValue(pathsNode, p))
		for i, k := range methodKeys {
			methodKeys[i] = strings.ToUpper(k)
		}
		for _, method := range inDocumentOrder(slices.Collect(maps.Keys(ops)), methodKeys) {
			op := ops[method]
			prefix, err := serverPrefix(firstServer(derefOr(op.Servers, nil), item.Servers, doc.Servers))
			full := prefix + p
			ignore := func(reason string) {
				s.ignored = append(s.ignored, ignoredAPI{Method: method, Path: full, OperationID: op.OperationID, Reason: reason})
			}
			if err != nil {
				ignore(err.Error())
				continue
			}
			m, err := routing.NormalizeMethod(method)
			if err != nil || m == "*" {
				ignore(fmt.Sprintf("method %s is not supported by Gatehouse APIs", method))
				continue
			}
			tpl, err := routing.ParseTemplate(sanitizeParams(prefix, p))
			if err != nil {
				ignore("the path cannot be a Gatehouse path template: " + err.Error())
				continue
			}
			route := apiRoute{method: m, tpl: tpl}
			key := m + " " + tpl.Shape()
			if prev, dup := seen[key]; dup {
				ignore(fmt.Sprintf("duplicates %s %s (the same method and an equivalent path)", prev.route.method, prev.route.tpl.Raw))
				continue
			}
			so := specOperation{route: route, operationID: op.OperationID}
			seen[key] = so
			s.operations = append(s.operations, so)
		}
	}
}

// firstServer returns the first server of the most specific servers list
// (operation, then path item, then document).
func firstServer(lists ...openapi3.Servers) *openapi3.Server {
	for _, l := range lists {
		if len(l) > 0 && l[0] != nil {
			return l[0]
		}
	}
	return nil
}

// serverPrefix is the path of a server URL with its variables replaced by
// their defaults, without a trailing slash ("" for the root).
func serverPrefix(sv *openapi3.Server) (string, error) {
	if sv == nil {
		return "", nil
	}
	raw := sv.URL
	for name, v := range sv.Variables {
		if v != nil {
			raw = strings.ReplaceAll(raw, "{"+name+"}", v.Default)
		}
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("server URL %q: %v", sv.URL, errors.Unwrap(err))
	}
	p := strings.TrimRight(u.EscapedPath(), "/")
	if p != "" && !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	return p, nil
}

var (
	templateParam   = regexp.MustCompile(`\{([^{}]*)\}`)
	nonNameChar     = regexp.MustCompile(`[^A-Za-z0-9_]`)
	startsWithDigit = regexp.MustCompile(`^[0-9]`)
)

// sanitizeParams joins the server prefix and an OpenAPI path, turning
// parameter names into valid template names (other characters become '_',
// a leading digit gets a '_' before it) and keeping them unique.
func sanitizeParams(prefix, path string) string {
	used := map[string]bool{}
	return prefix + templateParam.ReplaceAllStringFunc(path, func(m string) string {
		name := nonNameChar.ReplaceAllString(m[1:len(m)-1], "_")
		if name == "" || startsWithDigit.MatchString(name) {
			name = "_" + name
		}
		unique := name
		for i := 2; used[unique]; i++ {
			unique = fmt.Sprintf("%s_%d", name, i)
		}
		used[unique] = true
		return "{" + unique + "}"
	})
}

// oauthScopes lists the scopes of the document's OAuth2 security schemes,
// sorted by name.
func oauthScopes(doc *openapi3.T) []specScope {
	if doc.Components == nil {
		return nil
	}
	found := map[string]string{}
	for _, ref := range doc.Components.SecuritySchemes {
		if ref == nil || ref.Value == nil || ref.Value.Type != "oauth2" || ref.Value.Flows == nil {
			continue
		}
		f := ref.Value.Flows
		for _, flow := range []*openapi3.OAuthFlow{f.Implicit, f.Password, f.ClientCredentials, f.AuthorizationCode} {
			if flow == nil {
				continue
			}
			for name, desc := range flow.Scopes {
				if _, ok := found[name]; !ok || found[name] == "" {
					found[name] = desc
				}
			}
		}
	}
	out := make([]specScope, 0, len(found))
	for name, desc := range found {
		out = append(out, specScope{name: name, description: desc})
	}
	slices.SortFunc(out, func(a, b specScope) int { return strings.Compare(a.name, b.name) })
	return out
}
