package envoy

import (
	"fmt"
	"regexp"
	"strings"
	"unicode"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"

	"github.com/gatehouse-dev/gatehouse/routing"
)

// Path matching. Every route must match exactly the paths its template
// matches in Gatehouse (routing.Template.Match), because the authorizer
// trusts the API Envoy names in the context extensions. The path Envoy
// matches is the raw :path without the query string (the HCM neither
// normalises nor merges slashes), which is what routing.SplitPath sees.
//
//   - only literals ("/pets/mine", "/", "/a/"): an exact path match;
//   - literals then a catch-all ("/files/{p...}"): path_separated_prefix
//     "/files", which matches "/files", "/files/" and "/files/a/b" but not
//     "/filesx" (Envoy only: gRPC clients do not know it, they get the regex);
//     "/{p...}" alone is prefix "/";
//   - anything with a parameter: an anchored safe_regex where a parameter is
//     one non-empty segment "[^/]+", a catch-all is "(/.*)?" (zero or more
//     segments) and literals are quoted with regexp.QuoteMeta; a pattern
//     segment ("{name}.json", "v{version}") is its quoted prefix, the
//     parameter as whole characters "(?:[^/%]|%[0-9A-Fa-f]{2})+" (so that it
//     never ends inside an escape, as routing.MatchPattern) and its quoted
//     suffix.
//
// Methods: a GET route also matches HEAD (routing.MethodMatches), so its
// :method matcher is the regex "GET|HEAD"; a HEAD API of the same path is
// ordered before it by the routing table, and wins.
//
// uri_template is not used: its segment alphabet is narrower than
// "[^/]+", so it is not provably identical.

// templateRegex is the anchored RE2 expression matching exactly the paths t
// matches.
func templateRegex(t *routing.Template) string {
	var b strings.Builder
	b.WriteString("^")
	for _, s := range t.Segments {
		switch s.Kind {
		case routing.Literal:
			b.WriteString("/")
			b.WriteString(literalRegex(s.Value))
		case routing.Param:
			b.WriteString("/[^/]+")
		case routing.Pattern:
			b.WriteString("/")
			b.WriteString(literalRegex(s.Prefix))
			b.WriteString("(?:[^/%]|%[0-9A-Fa-f]{2})+")
			b.WriteString(literalRegex(s.Suffix))
		case routing.CatchAll:
			// (?s:...) so that even a (never valid) newline in a path
			// matches as it does in routing.Template.Match.
			b.WriteString("(?s:/.*)?")
		}
	}
	b.WriteString("$")
	return b.String()
}

// literalRegex quotes a canonical literal segment, matching its escapes'
// hex digits in either case: Envoy does not normalise the case of
// escapes, the authorizer's canonical path does.
func literalRegex(lit string) string {
	var b strings.Builder
	for i := 0; i < len(lit); i++ {
		if lit[i] == '%' && i+2 < len(lit) {
			b.WriteByte('%')
			for _, c := range lit[i+1 : i+3] {
				if lo := unicode.ToLower(c); lo != c {
					fmt.Fprintf(&b, "[%c%c]", c, lo)
				} else {
					b.WriteRune(c)
				}
			}
			i += 2
			continue
		}
		b.WriteString(regexp.QuoteMeta(lit[i : i+1]))
	}
	return b.String()
}

// literalPrefix returns the template's path when every segment is a literal,
// or, with catchAll true, the path of the literals before a final
// catch-all. ok is false when the template has a parameter, or an escape
// (matched in either case by the regex).
func literalPrefix(t *routing.Template) (path string, catchAll, ok bool) {
	var b strings.Builder
	for _, s := range t.Segments {
		switch s.Kind {
		case routing.Literal:
			if strings.Contains(s.Value, "%") {
				return "", false, false
			}
			b.WriteString("/")
			b.WriteString(s.Value)
		case routing.Param, routing.Pattern:
			return "", false, false
		case routing.CatchAll:
			return b.String(), true, true
		}
	}
	return b.String(), false, true
}

// pathMatch sets m's path specifier for t. grpc selects the specifiers
// grpc-go understands (prefix, path, safe_regex).
func pathMatch(m *routev3.RouteMatch, t *routing.Template, grpc bool) {
	path, catchAll, ok := literalPrefix(t)
	switch {
	case ok && !catchAll:
		m.PathSpecifier = &routev3.RouteMatch_Path{Path: path}
	case ok && path == "":
		m.PathSpecifier = &routev3.RouteMatch_Prefix{Prefix: "/"}
	case ok && !grpc:
		m.PathSpecifier = &routev3.RouteMatch_PathSeparatedPrefix{PathSeparatedPrefix: path}
	default:
		m.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: templateRegex(t)}}
	}
}

// methodMatch is the :method header matcher of an API method, nil for "*";
// a GET API matches GET and HEAD (routing.MethodMatches).
func methodMatch(method string) []*routev3.HeaderMatcher {
	if method == "*" {
		return nil
	}
	return []*routev3.HeaderMatcher{methodHeaderMatcher(":method", method)}
}

// methodHeaderMatcher matches a header holding a request method the way
// routing.MethodMatches matches an API method ("*": any non-empty value).
func methodHeaderMatcher(name, method string) *routev3.HeaderMatcher {
	sm := &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: method}}
	switch method {
	case "*":
		sm.MatchPattern = &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: ".+"}}
	case "GET":
		sm.MatchPattern = &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "GET|HEAD"}}
	}
	return &routev3.HeaderMatcher{Name: name, HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: sm}}
}
