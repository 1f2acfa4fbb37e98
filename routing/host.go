package routing

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
)

var (
	hostLabel = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
)

// NormalizeHost lower-cases a request host and strips a trailing ":port"
// ("[::1]:8080" -> "[::1]"). It is exactly the Rego library's rule:
// regex.replace(lower(host), ":[0-9]*$", "").
func NormalizeHost(host string) string {
	h := strings.ToLower(host)
	// Only the last ':' can start a match of ":[0-9]*$".
	i := strings.LastIndexByte(h, ':')
	if i < 0 {
		return h
	}
	for j := i + 1; j < len(h); j++ {
		if h[j] < '0' || h[j] > '9' {
			return h
		}
	}
	return h[:i]
}

// ValidateDomain checks a service host pattern: a DNS name ("api.example.com"),
// a wildcard ("*.example.com"), an IPv4 address or a bracketed IPv6 address.
// It returns the normalised (lower-case) form.
func ValidateDomain(d string) (string, error) {
	d = strings.ToLower(strings.TrimSpace(d))
	if d == "" {
		return "", errors.New("host is empty")
	}
	if d == "*" {
		return "", errors.New(`"*" is implied by listing no hosts`)
	}
	if strings.HasPrefix(d, "[") && strings.HasSuffix(d, "]") {
		return d, nil
	}
	name := strings.TrimPrefix(d, "*.")
	if len(name) > 253 {
		return "", fmt.Errorf("host %q is longer than 253 characters", d)
	}
	for _, l := range strings.Split(name, ".") {
		if !hostLabel.MatchString(l) {
			return "", fmt.Errorf("host %q is not a valid DNS name (a wildcard may only be a leading \"*.\")", d)
		}
	}
	return d, nil
}
