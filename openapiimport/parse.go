package openapiimport

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

	"github.com/gatehouse-dev/gatehouse/internal/field"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/routing"
)

// MaxDocumentSize caps an imported document (file, text or URL).
const MaxDocumentSize = 10 << 20

// PolicyExtension is the extension naming a policy id: on an operation it
// binds the operation's API, at the top level of the document it is the
// document's default policy.
const PolicyExtension = "x-gatehouse-policy"

// maxSpecErrors caps the problems listed for an invalid document.
const maxSpecErrors = 50

// Document is what an import takes from a valid OpenAPI document.
type Document struct {
	// Version is the document's "openapi" or "swagger" version.
	Version    string
	operations []operation
	ignored    []IgnoredAPI
	warnings   []ImportWarning
	scopes     []scope
	// policy is the top-level x-gatehouse-policy ("" when absent).
	policy string
	// refs are the policies the document names, in document order (the
	// top-level one first), ignored operations included.
	refs []policyRef
}

// operation is one importable operation.
type operation struct {
	endpoint    routing.Endpoint
	operationID string
	// id is APIID(operationID) ("" for none).
	id string
	// policy is the operation's x-gatehouse-policy ("" when absent).
	policy string
	// where locates the operation: paths.<path>.<method>.
	where *field.Path
	// what names it in messages: METHOD path (operationId "…").
	what string
}

// policyRef is a policy id the document names, and where.
type policyRef struct {
	id    string
	field string
	what  string // the operation ("" for the top level)
}

// IgnoredAPI is an operation the import could not turn into an API.
type IgnoredAPI struct {
	Method      string `json:"method"`
	Path        string `json:"path"`
	OperationID string `json:"operation_id,omitempty"`
	Reason      string `json:"reason"`
}

// ImportWarning is an operation imported with a fallback: its path has a
// form Gatehouse templates cannot express exactly (several parameters in
// one segment, like "/files/{name}.{ext}"), so the API's template is
// broader than the document's path (Path is what was imported,
// DocumentPath what the document says; Message explains).
type ImportWarning struct {
	Method       string `json:"method"`
	Path         string `json:"path"`
	DocumentPath string `json:"document_path"`
	OperationID  string `json:"operation_id,omitempty"`
	Message      string `json:"message"`
}

// scope is an OAuth2 scope declared by the document's security schemes.
type scope struct {
	name, description string
}

// SpecError is a document that cannot be imported; nothing was written.
type SpecError struct {
	// Problems lists what is wrong (at most 50, then a count of the rest).
	Problems []string
	// Gatehouse is set when the document is valid OpenAPI but cannot be
	// imported as it is: an x-gatehouse-policy that is not a policy id, or
	// operationIds that give the same API id.
	Gatehouse bool
}

func (e *SpecError) Error() string { return strings.Join(e.Problems, "; ") }

func invalidSpec(problems ...string) *SpecError {
	if len(problems) > maxSpecErrors {
		problems = append(problems[:maxSpecErrors:maxSpecErrors], fmt.Sprintf("… and %d more problems", len(problems)-maxSpecErrors))
	}
	return &SpecError{Problems: problems}
}

// Parse parses and validates an OpenAPI 3.0/3.1 or Swagger 2.0 document
// (JSON or YAML) and lists the operations to import, in the order they
// appear in the document. An unusable document is a *SpecError.
func Parse(ctx context.Context, data []byte) (*Document, error) {
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
	d := &Document{Version: version, scopes: oauthScopes(doc)}
	var problems []string
	if v, ok := doc.Extensions[PolicyExtension]; ok {
		id, problem := policyID(PolicyExtension, v)
		if problem != "" {
			problems = append(problems, problem)
		} else {
			d.policy = id
			d.refs = append(d.refs, policyRef{id: id, field: PolicyExtension})
		}
	}
	problems = append(problems, d.collect(doc, mappingValue(top, "paths"))...)
	problems = append(problems, d.idCollisions()...)
	if len(problems) > 0 {
		e := invalidSpec(problems...)
		e.Gatehouse = true
		return nil, e
	}
	return d, nil
}

// policyID checks an x-gatehouse-policy value: a policy id.
func policyID(where string, v any) (string, string) {
	s, ok := v.(string)
	if !ok || !model.ValidObjectID(s) {
		got, _ := json.Marshal(v)
		return "", fmt.Sprintf("%s: must be a policy id (%s), not %s", where, model.ObjectIDRule, got)
	}
	return s, ""
}

// idCollisions reports operations whose operationIds give the same API id.
func (d *Document) idCollisions() []string {
	var problems []string
	first := map[string]*operation{}
	for i := range d.operations {
		op := &d.operations[i]
		if op.id == "" {
			continue
		}
		if prev, dup := first[op.id]; dup {
			problems = append(problems, fmt.Sprintf("operations %s and %s would both get the API id %q "+
				"(an operationId becomes the API id with accents dropped and other characters than letters, digits, '.', '_', '~' and '-' replaced by '-'): "+
				"change one of the operationIds", prev.what, op.what, op.id))
			continue
		}
		first[op.id] = op
	}
	return problems
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
// operation's method and path shape, are listed as ignored. It returns the
// operations' x-gatehouse-policy values that are not policy ids.
func (d *Document) collect(doc *openapi3.T, pathsNode *yaml.Node) (problems []string) {
	if doc.Paths == nil {
		return nil
	}
	seen := map[string]operation{}
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
			where := field.NewPath("paths", p, strings.ToLower(method))
			what := method + " " + full
			if op.OperationID != "" {
				what += fmt.Sprintf(" (operationId %q)", op.OperationID)
			}
			var policy string
			if v, ok := op.Extensions[PolicyExtension]; ok {
				f := where.Child(PolicyExtension).String()
				id, problem := policyID(f, v)
				if problem != "" {
					problems = append(problems, problem)
				} else {
					policy = id
					d.refs = append(d.refs, policyRef{id: id, field: f, what: what})
				}
			}
			ignore := func(reason string) {
				d.ignored = append(d.ignored, IgnoredAPI{Method: method, Path: full, OperationID: op.OperationID, Reason: reason})
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
			path := sanitizeParams(prefix, p)
			ep, err := routing.ParseEndpoint(m, path)
			var fallback string
			if err != nil {
				if fb, note, ok := fallbackTemplate(path); ok {
					if fep, ferr := routing.ParseEndpoint(m, fb); ferr == nil {
						ep, err, fallback = fep, nil, note
					}
				}
			}
			if err != nil {
				ignore("the path cannot be a Gatehouse path template: " + errors.Unwrap(err).Error())
				continue
			}
			key := m + " " + ep.Template.Shape()
			if prev, dup := seen[key]; dup {
				ignore(fmt.Sprintf("duplicates %s %s (the same method and an equivalent path)", prev.endpoint.Method, prev.endpoint.Template.Raw))
				continue
			}
			o := operation{endpoint: ep, operationID: op.OperationID, id: APIID(op.OperationID), policy: policy, where: where, what: what}
			seen[key] = o
			d.operations = append(d.operations, o)
			if fallback != "" {
				d.warnings = append(d.warnings, ImportWarning{Method: m, Path: ep.Template.Raw, DocumentPath: full,
					OperationID: op.OperationID, Message: fallback})
			}
		}
	}
	return problems
}

func derefOr[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
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

// multiParam is a segment's text from its first parameter to its last,
// when it holds several: "{a}.{b}" in "x{a}.{b}.json".
var multiParam = regexp.MustCompile(`\{[^{}/]*\}[^/]*\{[^{}/]*\}`)

// fallbackTemplate is the documented fallback for a path (parameter names
// already sanitised) whose segments hold several parameters, which a
// Gatehouse template cannot: in each such segment, the text from the first
// parameter to the last becomes one parameter named after them joined with
// '_' ("/files/{name}.{ext}" → "/files/{name_ext}", "/x{a}-{b}.json" →
// "/x{a_b}.json"). The template then matches every path the document's
// does and more (any non-empty text there), so the API's policy covers
// them all. It returns the new path and a note saying what was done, or
// false when the path has no such segment.
func fallbackTemplate(path string) (string, string, bool) {
	var notes []string
	used := map[string]bool{}
	for _, m := range templateParam.FindAllStringSubmatch(path, -1) {
		used[m[1]] = true
	}
	out := multiParam.ReplaceAllStringFunc(path, func(run string) string {
		var names []string
		for _, m := range templateParam.FindAllStringSubmatch(run, -1) {
			names = append(names, m[1])
		}
		name := strings.Join(names, "_")
		unique := name
		for i := 2; used[unique]; i++ {
			unique = fmt.Sprintf("%s_%d", name, i)
		}
		used[unique] = true
		notes = append(notes, fmt.Sprintf("%q became {%s}", run, unique))
		return "{" + unique + "}"
	})
	if len(notes) == 0 {
		return "", "", false
	}
	return out, "a path segment holds several parameters, which a Gatehouse template cannot express: " +
		strings.Join(notes, ", ") + " (one parameter matching any non-empty text there, so the API covers more paths than the document's, never fewer; its path parameter holds the whole text)", true
}

// oauthScopes lists the scopes of the document's OAuth2 security schemes,
// sorted by name.
func oauthScopes(doc *openapi3.T) []scope {
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
	out := make([]scope, 0, len(found))
	for name, desc := range found {
		out = append(out, scope{name: name, description: desc})
	}
	slices.SortFunc(out, func(a, b scope) int { return strings.Compare(a.name, b.name) })
	return out
}
