package model

import (
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/gatehouse-dev/gatehouse/internal/field"
)

// CORSSettings lets browsers call a service from other origins: the
// gateway answers the CORS preflights (OPTIONS with Origin and
// Access-Control-Request-Method) of its allowed origins itself, without
// authorization, and adds Access-Control-Allow-Origin (and, when set,
// -Allow-Credentials and -Expose-Headers) to the responses of requests
// from them. Everything else is authorized as before. Envoy gateways get
// it as Envoy's CORS filter (envoy.filters.http.cors); the authorizer's
// reverse proxy answers the same way.
type CORSSettings struct {
	// AllowedOrigins are exact origins ("https://app.example.com",
	// scheme://host[:port], lower-case) or "*" alone (any origin).
	AllowedOrigins []string `json:"allowed_origins"`
	// AllowedMethods is Access-Control-Allow-Methods ("*" alone: the
	// requested method); none sends no such header.
	AllowedMethods []string `json:"allowed_methods,omitempty"`
	// AllowedHeaders is Access-Control-Allow-Headers ("*" alone: the
	// requested headers); none sends no such header.
	AllowedHeaders []string `json:"allowed_headers,omitempty"`
	// ExposedHeaders is Access-Control-Expose-Headers of actual responses.
	ExposedHeaders []string `json:"exposed_headers,omitempty"`
	// MaxAge is Access-Control-Max-Age in seconds (0: not sent).
	MaxAge int `json:"max_age,omitempty"`
	// AllowCredentials sends Access-Control-Allow-Credentials: true; it
	// cannot be combined with the "*" origin.
	AllowCredentials bool `json:"allow_credentials,omitempty"`
}

// Limits of CORS settings.
const (
	MaxCORSOrigins = 100
	MaxCORSHeaders = 100
	MaxCORSMaxAge  = 86400
)

// corsMethods are the methods allowed_methods may list.
var corsMethods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"}

// headerToken is an HTTP field name (RFC 9110 token).
var headerToken = regexp.MustCompile("^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")

// Validate returns every problem of the settings, with paths under p.
func (c *CORSSettings) Validate(p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if c == nil {
		return nil
	}
	op := p.Child("allowed_origins")
	switch {
	case len(c.AllowedOrigins) == 0:
		errs.Add(field.Required(op))
	case len(c.AllowedOrigins) > MaxCORSOrigins:
		errs.Add(field.Invalid(op, "at most %d origins are allowed", MaxCORSOrigins))
	}
	for i, o := range c.AllowedOrigins {
		switch {
		case o == "*" && len(c.AllowedOrigins) > 1:
			errs.Add(field.Invalid(op.Index(i), `"*" (any origin) must be the only origin`))
		case o == "*":
		case slices.Contains(c.AllowedOrigins[:i], o):
			errs.Add(field.Invalid(op.Index(i), "duplicate origin %q", o))
		default:
			if msg := originProblem(o); msg != "" {
				errs.Add(field.Invalid(op.Index(i), "%s", msg))
			}
		}
	}
	if c.AllowCredentials && c.AnyOrigin() {
		errs.Add(field.Invalid(p.Child("allow_credentials"), `cannot be true with the "*" origin (browsers refuse credentials for a wildcard origin); list the origins instead`))
	}
	errs.Extend(tokenList(p.Child("allowed_methods"), c.AllowedMethods, func(m string) string {
		if !slices.Contains(corsMethods, m) {
			return fmt.Sprintf("unknown method %q (one of %s, or \"*\" alone)", m, strings.Join(corsMethods, ", "))
		}
		return ""
	}))
	header := func(h string) string {
		if !headerToken.MatchString(h) {
			return fmt.Sprintf("%q is not a header name", h)
		}
		return ""
	}
	errs.Extend(tokenList(p.Child("allowed_headers"), c.AllowedHeaders, header))
	errs.Extend(tokenList(p.Child("exposed_headers"), c.ExposedHeaders, header))
	if c.MaxAge < 0 || c.MaxAge > MaxCORSMaxAge {
		errs.Add(field.Invalid(p.Child("max_age"), "must be between 0 and %d seconds", MaxCORSMaxAge))
	}
	return errs
}

// tokenList checks a list of tokens: each valid (check), no duplicates
// (case-insensitively), "*" only alone.
func tokenList(p *field.Path, list []string, check func(string) string) field.ErrorList {
	var errs field.ErrorList
	if len(list) > MaxCORSHeaders {
		errs.Add(field.Invalid(p, "at most %d entries are allowed", MaxCORSHeaders))
		return errs
	}
	for i, v := range list {
		switch {
		case v == "*" && len(list) > 1:
			errs.Add(field.Invalid(p.Index(i), `"*" must be the only entry`))
		case v == "*":
		case slices.ContainsFunc(list[:i], func(w string) bool { return strings.EqualFold(v, w) }):
			errs.Add(field.Invalid(p.Index(i), "duplicate entry %q", v))
		default:
			if msg := check(v); msg != "" {
				errs.Add(field.Invalid(p.Index(i), "%s", msg))
			}
		}
	}
	return errs
}

// originProblem says why o is not a serialised origin (RFC 6454):
// "http" or "https", "://", a lower-case host, an optional port, nothing
// else.
func originProblem(o string) string {
	u, err := url.Parse(o)
	switch {
	case err != nil || u.Scheme != "http" && u.Scheme != "https" || u.Host == "" || u.Opaque != "":
		return fmt.Sprintf("%q is not an origin like https://app.example.com (http or https, a host, an optional port)", o)
	case u.User != nil || u.Path != "" || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(o, "#"):
		return fmt.Sprintf("%q is not an origin: no path, query, fragment or user information (like https://app.example.com)", o)
	case o != strings.ToLower(o):
		return fmt.Sprintf("%q is not an origin as browsers send it: write it in lower case", o)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != p {
			return fmt.Sprintf("%q: the port must be between 1 and 65535", o)
		}
	}
	if u.Hostname() == "" || strings.ContainsAny(u.Hostname(), " %") {
		return fmt.Sprintf("%q is not an origin like https://app.example.com", o)
	}
	return ""
}

// AnyOrigin reports whether every origin is allowed ("*").
func (c *CORSSettings) AnyOrigin() bool {
	return c != nil && len(c.AllowedOrigins) == 1 && c.AllowedOrigins[0] == "*"
}

// AllowsOrigin reports whether a request's Origin value is allowed: not
// empty, and "*" or one of the origins exactly (case-sensitively, as
// Envoy's CORS filter compares).
func (c *CORSSettings) AllowsOrigin(origin string) bool {
	if c == nil || origin == "" {
		return false
	}
	return c.AnyOrigin() || slices.Contains(c.AllowedOrigins, origin)
}

// AllowMethodsValue, AllowHeadersValue and ExposeHeadersValue are the
// header values ("" for none), the entries joined with ", ".
func (c *CORSSettings) AllowMethodsValue() string { return strings.Join(c.AllowedMethods, ", ") }

// AllowHeadersValue is Access-Control-Allow-Headers ("" for none).
func (c *CORSSettings) AllowHeadersValue() string { return strings.Join(c.AllowedHeaders, ", ") }

// ExposeHeadersValue is Access-Control-Expose-Headers ("" for none).
func (c *CORSSettings) ExposeHeadersValue() string { return strings.Join(c.ExposedHeaders, ", ") }

// MaxAgeValue is Access-Control-Max-Age ("" when not sent).
func (c *CORSSettings) MaxAgeValue() string {
	if c.MaxAge <= 0 {
		return ""
	}
	return strconv.Itoa(c.MaxAge)
}
