package admin

import (
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/gatehouse-dev/gatehouse/internal/httpapi"
	"github.com/gatehouse-dev/gatehouse/openapiimport"
)

// importFetchTimeout bounds a URL import's fetch: connection, redirects
// and body. A variable so tests can shorten it.
var importFetchTimeout = openapiimport.DefaultFetchTimeout

// maxImportURLLength caps the url field of a URL import.
const maxImportURLLength = 8192

// importURLTypes are the media types POST …/import/url accepts.
var importURLTypes = []string{"application/json", "multipart/form-data", "application/x-www-form-urlencoded"}

// importFromURL fetches the document at the url field (JSON body,
// multipart/form-data or form-urlencoded) and imports it.
func (s *Server) importFromURL(c *gin.Context) {
	s.importWith(c, func(c *gin.Context) ([]byte, *Error) {
		raw, apiErr := importURLField(c)
		if apiErr != nil {
			return nil, apiErr
		}
		f := openapiimport.Fetcher{AllowPrivate: s.allowPrivateImportURLs, Timeout: importFetchTimeout}
		data, err := f.Fetch(c.Request.Context(), raw)
		if err != nil {
			return nil, fetchError(err)
		}
		return data, nil
	})
}

// importURLField reads the url field in any of importURLTypes.
func importURLField(c *gin.Context) (string, *Error) {
	mt, apiErr := mediaType(c, importURLTypes...)
	if apiErr != nil {
		return "", apiErr
	}
	var raw string
	switch {
	case mt == "" || mt == "application/json" || strings.HasSuffix(mt, "+json"):
		var body struct {
			URL string `json:"url"`
		}
		if apiErr := decodeJSON(c, &body); apiErr != nil {
			return "", apiErr
		}
		raw = body.URL
	case mt == "multipart/form-data":
		_, apiErr := readFormPart(c, "url", DefaultBodyLimit, func(p io.Reader) *Error {
			b, err := io.ReadAll(io.LimitReader(p, maxImportURLLength+1))
			if err != nil {
				return newError(http.StatusBadRequest, httpapi.CodeInvalidRequest, "reading the url field: "+err.Error(), nil)
			}
			raw = string(b)
			return nil
		})
		if apiErr != nil {
			return "", apiErr
		}
	case mt == "application/x-www-form-urlencoded":
		c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, DefaultBodyLimit)
		if err := c.Request.ParseForm(); err != nil {
			return "", newError(http.StatusBadRequest, httpapi.CodeInvalidRequest, "malformed form body: "+err.Error(), nil)
		}
		raw = c.Request.PostForm.Get("url")
	default:
		return "", unsupportedMedia(c.GetHeader("Content-Type"), importURLTypes...)
	}
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return "", missingField("url")
	}
	if len(raw) > maxImportURLLength {
		return "", fieldError("url", "must be at most %d characters", maxImportURLLength)
	}
	return raw, nil
}

// fetchError maps openapiimport.Fetcher's errors: a refused URL is a 400
// on url, a remote failure 400 fetch_failed; neither is ever a 5xx.
func fetchError(err error) *Error {
	var (
		refused *openapiimport.URLError
		failed  *openapiimport.FetchError
	)
	switch {
	case errors.As(err, &refused):
		return fieldError("url", "%s", refused.Reason)
	case errors.As(err, &failed):
		return newError(http.StatusBadRequest, CodeFetchFailed, "url: "+failed.Error(),
			map[string]any{"field": "url", "url": failed.URL, "reason": failed.Reason})
	}
	return internalError(err)
}
