package model

import "regexp"

// scopeNamePattern: an OAuth scope token (RFC 6749 §3.3), 1-256 characters.
var scopeNamePattern = regexp.MustCompile(`^[\x21\x23-\x5B\x5D-\x7E]{1,256}$`)

// ValidScopeName reports whether name can be a scope's name: 1-256
// printable ASCII characters without spaces, '"' or '\'.
func ValidScopeName(name string) bool { return scopeNamePattern.MatchString(name) }

// ScopeNameRule describes the scope name rule in messages.
const ScopeNameRule = `1-256 printable ASCII characters without spaces, '"' or '\'`
