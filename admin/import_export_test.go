package admin

import "time"

// Test hooks for the OpenAPI import, used by the external tests.

// SetImportFetchTimeout shortens URL-import fetches; the returned function
// restores the default.
func SetImportFetchTimeout(d time.Duration) (restore func()) {
	prev := importFetchTimeout
	importFetchTimeout = d
	return func() { importFetchTimeout = prev }
}

// SetAllowPrivateImportURLs changes Options.AllowPrivateImportURLs of a
// running server (before the requests that depend on it).
func (s *Server) SetAllowPrivateImportURLs(allow bool) { s.allowPrivateImportURLs = allow }

// AllowsPrivateImportURLs reports the option.
func (s *Server) AllowsPrivateImportURLs() bool { return s.allowPrivateImportURLs }
