// Package routing defines Gatehouse's route model, shared by the admin API
// (validation), the compiler (priority order, bundle data), the authorizer
// (fast matching) and the xDS translator (Envoy routes):
//
//   - Path templates: "/pets/{id}", "/files/{path...}". A segment is a
//     literal, a {name} parameter (one non-empty segment) or, last only, a
//     {name...} catch-all (zero or more segments).
//   - Virtual hosts: a request's host selects the services whose hosts list
//     it exactly, else the longest matching "*.suffix" wildcard, else the
//     services with no hosts (the default vhost) — as Envoy selects domains.
//   - Priority: within a vhost, routes are ordered once by specificity
//     (literal > parameter > catch-all, segment by segment, an exact end
//     beating a catch-all; then an exact method beating "*"; then service id
//     and API id). A request takes the first matching route in that order,
//     which is Envoy's first-match rule, the Rego matcher's rule and the
//     indexed Go matcher's rule alike.
package routing

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// SegmentKind says how a template segment matches.
type SegmentKind int

// Segment kinds, in increasing specificity.
const (
	CatchAll SegmentKind = iota + 1
	Param
	Literal
)

// Segment is one parsed template segment.
type Segment struct {
	Kind SegmentKind
	// Value is the literal text, or the parameter name.
	Value string
}

// Template is a parsed path template.
type Template struct {
	Raw      string
	Segments []Segment
}

// Limits on templates.
const (
	MaxTemplateLength = 2048
	MaxSegments       = 64
)

var (
	paramName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	// literalChars: RFC 3986 pchar (unreserved, sub-delims, ':', '@',
	// pct-encoded) without '{' and '}'.
	literalChars = regexp.MustCompile(`^([A-Za-z0-9\-._~!$&'()*+,;=:@]|%[0-9A-Fa-f]{2})*$`)
)

// ParseTemplate parses and validates a path template.
func ParseTemplate(raw string) (*Template, error) {
	switch {
	case raw == "":
		return nil, errors.New("path is empty")
	case !strings.HasPrefix(raw, "/"):
		return nil, errors.New("path must start with '/'")
	case len(raw) > MaxTemplateLength:
		return nil, fmt.Errorf("path is longer than %d characters", MaxTemplateLength)
	}
	parts := SplitPath(raw)
	if len(parts) > MaxSegments {
		return nil, fmt.Errorf("path has more than %d segments", MaxSegments)
	}
	t := &Template{Raw: raw, Segments: make([]Segment, 0, len(parts))}
	names := map[string]bool{}
	for i, p := range parts {
		last := i == len(parts)-1
		switch {
		case p == "" && !last:
			return nil, fmt.Errorf("segment %d is empty (\"//\" is not allowed)", i+1)
		case strings.HasPrefix(p, "{") && strings.HasSuffix(p, "}"):
			name := p[1 : len(p)-1]
			kind := Param
			if n, ok := strings.CutSuffix(name, "..."); ok {
				if !last {
					return nil, fmt.Errorf("catch-all {%s} must be the last segment", name)
				}
				name, kind = n, CatchAll
			}
			if !paramName.MatchString(name) {
				return nil, fmt.Errorf("invalid parameter name %q in segment %d (letters, digits and '_', not starting with a digit)", name, i+1)
			}
			if names[name] {
				return nil, fmt.Errorf("parameter {%s} appears twice", name)
			}
			names[name] = true
			t.Segments = append(t.Segments, Segment{Kind: kind, Value: name})
		case strings.ContainsAny(p, "{}"):
			return nil, fmt.Errorf("segment %d (%q): a parameter must be a whole segment like {name}", i+1, p)
		case !literalChars.MatchString(p):
			return nil, fmt.Errorf("segment %d (%q) has characters not allowed in a URL path", i+1, p)
		default:
			// A literal is kept in canonical form; one that no canonical
			// path holds (dot segments, trailing dots, ';', encoded
			// separators) is refused.
			canon, err := CanonicalPath("/" + p)
			if err != nil {
				return nil, fmt.Errorf("segment %d (%q) never matches a canonical request path: %s", i+1, p, err.(*PathError).Detail)
			}
			t.Segments = append(t.Segments, Segment{Kind: Literal, Value: canon[1:]})
		}
	}
	return t, nil
}

// SplitPath splits a request path (without query) into segments the way
// templates are split: "/" is [""], "/a/b/" is ["a" "b" ""].
func SplitPath(path string) []string {
	return strings.Split(strings.TrimPrefix(path, "/"), "/")
}

// RequestPath strips the query and fragment from an HTTP request target.
// Routing matches canonical paths only (CanonicalPath).
func RequestPath(target string) string {
	if i := strings.IndexAny(target, "?#"); i >= 0 {
		return target[:i]
	}
	return target
}

// Shape is the template with parameter names erased: two templates with the
// same shape match exactly the same paths.
func (t *Template) Shape() string {
	var b strings.Builder
	for _, s := range t.Segments {
		b.WriteByte('/')
		switch s.Kind {
		case Literal:
			b.WriteString(s.Value)
		case Param:
			b.WriteString("{}")
		case CatchAll:
			b.WriteString("{...}")
		}
	}
	return b.String()
}

// HasCatchAll reports whether the template ends with a catch-all.
func (t *Template) HasCatchAll() bool {
	return len(t.Segments) > 0 && t.Segments[len(t.Segments)-1].Kind == CatchAll
}

// SpecificityKey orders templates: a greater key is more specific. Each
// segment contributes '3' (literal), '2' (parameter) or '1' (catch-all), and
// the end of the template contributes '4', so that "/files" outranks
// "/files/{p...}" and "/a/{x}" outranks "/a/{x}/{rest...}".
func (t *Template) SpecificityKey() string {
	b := make([]byte, 0, len(t.Segments)+1)
	for _, s := range t.Segments {
		b = append(b, byte('0'+s.Kind))
	}
	return string(append(b, '4'))
}

// Match matches request segments and returns the path parameters, or false.
// A catch-all captures the remaining segments joined with '/'.
func (t *Template) Match(segs []string) (map[string]string, bool) {
	var params map[string]string
	for i, s := range t.Segments {
		if s.Kind == CatchAll {
			if params == nil {
				params = map[string]string{}
			}
			params[s.Value] = strings.Join(segs[min(i, len(segs)):], "/")
			return params, true
		}
		if i >= len(segs) {
			return nil, false
		}
		switch s.Kind {
		case Literal:
			if segs[i] != s.Value {
				return nil, false
			}
		case Param:
			if segs[i] == "" {
				return nil, false
			}
			if params == nil {
				params = map[string]string{}
			}
			params[s.Value] = segs[i]
		}
	}
	return params, len(segs) == len(t.Segments)
}

// Methods accepted on APIs: one HTTP method, or "*" for any.
var Methods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT", "*"}

// NormalizeMethod upper-cases and validates an API method.
func NormalizeMethod(m string) (string, error) {
	u := strings.ToUpper(strings.TrimSpace(m))
	for _, ok := range Methods {
		if u == ok {
			return u, nil
		}
	}
	return "", fmt.Errorf("unknown method %q (one of %s)", m, strings.Join(Methods, ", "))
}
