// Package routing defines Gatehouse's route model, shared by the admin API
// (validation), the compiler (priority order, bundle data), the authorizer
// (fast matching) and the xDS translator (Envoy routes):
//
//   - Path templates: "/pets/{id}", "/files/{name}.json", "/api/v{version}",
//     "/files/{path...}". A segment is a literal, a {name} parameter (one
//     non-empty segment), a pattern — one parameter with literal text before
//     and/or after it within the segment ("{name}.json", "v{version}",
//     "img-{id}.png"), the parameter non-empty and never splitting a
//     percent-escape — or, last only, a {name...} catch-all (zero or more
//     segments). Two parameters in one segment ("{a}.{b}") and a catch-all
//     with text around it are refused (the OpenAPI import has a fallback).
//   - Virtual hosts: a request's host selects the services whose hosts list
//     it exactly, else the longest matching "*.suffix" wildcard, else the
//     services with no hosts (the default vhost) — as Envoy selects domains.
//   - Priority: within a vhost, routes are ordered once by specificity
//     (literal > pattern > parameter > catch-all, segment by segment, an
//     exact end beating a catch-all; then, between patterns, more literal
//     text first; then an exact method beating "*", and HEAD before GET;
//     then service id and API id).
//   - Methods: an API's method matches requests of that method; a GET API
//     also matches HEAD requests (HEAD follows GET's API), but an API
//     declared for HEAD on the same path comes first, so it wins. A request takes the first matching route in that order,
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
	// Pattern is a parameter with literal text around it in one segment:
	// Prefix + {Value} + Suffix.
	Pattern
	Literal
)

// Segment is one parsed template segment.
type Segment struct {
	Kind SegmentKind
	// Value is the literal text, or the parameter name.
	Value string
	// Prefix and Suffix are a Pattern's literal text before and after its
	// parameter, in canonical form (at least one of them is not empty).
	Prefix, Suffix string
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
	// patternSegment is literal text, one {...} and literal text.
	patternSegment = regexp.MustCompile(`^([^{}]*)\{([^{}]*)\}([^{}]*)$`)
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
			seg, err := parsePattern(p, i+1)
			if err != nil {
				return nil, err
			}
			if names[seg.Value] {
				return nil, fmt.Errorf("parameter {%s} appears twice", seg.Value)
			}
			names[seg.Value] = true
			t.Segments = append(t.Segments, seg)
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

// parsePattern parses a segment with one parameter and literal text around
// it ("{name}.json", "v{version}").
func parsePattern(p string, n int) (Segment, error) {
	m := patternSegment.FindStringSubmatch(p)
	if m == nil {
		return Segment{}, fmt.Errorf("segment %d (%q): a segment holds at most one parameter, like {name}, {name}.json or v{version}", n, p)
	}
	prefix, name, suffix := m[1], m[2], m[3]
	if strings.HasSuffix(name, "...") {
		return Segment{}, fmt.Errorf("segment %d (%q): a catch-all {%s} must be a whole segment", n, p, name)
	}
	if !paramName.MatchString(name) {
		return Segment{}, fmt.Errorf("invalid parameter name %q in segment %d (letters, digits and '_', not starting with a digit)", name, n)
	}
	for _, lit := range []string{prefix, suffix} {
		if !literalChars.MatchString(lit) {
			return Segment{}, fmt.Errorf("segment %d (%q) has characters not allowed in a URL path", n, p)
		}
	}
	// The literal parts in canonical form: canonicalised with a stand-in
	// for the parameter, so that a prefix may end with '.' but a segment
	// ending with '.' (never canonical) is refused.
	canon, err := CanonicalPath("/" + prefix + "x" + suffix)
	if err != nil {
		return Segment{}, fmt.Errorf("segment %d (%q) never matches a canonical request path: %s", n, p, err.(*PathError).Detail)
	}
	cp, err1 := CanonicalPath("/" + prefix + "x")
	cs, err2 := CanonicalPath("/x" + suffix)
	if err1 != nil || err2 != nil || canon != cp+cs[2:] {
		return Segment{}, fmt.Errorf("segment %d (%q) never matches a canonical request path", n, p)
	}
	return Segment{Kind: Pattern, Value: name, Prefix: cp[1 : len(cp)-1], Suffix: cs[2:]}, nil
}

// MatchPattern matches a canonical segment against a pattern's prefix and
// suffix and returns the parameter's value: what lies between them, not
// empty, and not ending inside a percent-escape ("%" or "%X" last), so that
// the parameter and the suffix split the segment on whole characters.
func MatchPattern(prefix, suffix, seg string) (string, bool) {
	if len(seg) <= len(prefix)+len(suffix) || !strings.HasPrefix(seg, prefix) || !strings.HasSuffix(seg, suffix) {
		return "", false
	}
	v := seg[len(prefix) : len(seg)-len(suffix)]
	if i := strings.LastIndexByte(v, '%'); i >= 0 && i+2 >= len(v) {
		return "", false
	}
	return v, true
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
		case Pattern:
			b.WriteString(s.Prefix + "{}" + s.Suffix)
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
// segment contributes '4' (literal), '3' (pattern), '2' (parameter) or '1'
// (catch-all), and the end of the template contributes '5', so that
// "/files" outranks "/files/{p...}" and "/a/{x}" outranks
// "/a/{x}/{rest...}".
func (t *Template) SpecificityKey() string {
	b := make([]byte, 0, len(t.Segments)+1)
	for _, s := range t.Segments {
		b = append(b, byte('0'+s.Kind))
	}
	return string(append(b, '5'))
}

// patternKey orders templates of equal SpecificityKey: for each pattern
// segment, the length of its literal text (4 digits; templates are at most
// 2048 bytes), so that "{n}.tar.gz" outranks "{n}.gz". A greater key is
// more specific.
func (t *Template) patternKey() string {
	var b strings.Builder
	for _, s := range t.Segments {
		if s.Kind == Pattern {
			fmt.Fprintf(&b, "%04d", len(s.Prefix)+len(s.Suffix))
		}
	}
	return b.String()
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
		case Pattern:
			v, ok := MatchPattern(s.Prefix, s.Suffix, segs[i])
			if !ok {
				return nil, false
			}
			if params == nil {
				params = map[string]string{}
			}
			params[s.Value] = v
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
