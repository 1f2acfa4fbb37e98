package admin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/gatehouse-dev/gatehouse/internal/httpapi"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/openapiimport"
	"github.com/gatehouse-dev/gatehouse/store"
)

// Error codes of the OpenAPI import.
const (
	// CodeInvalidSpecification: the document is not a valid OpenAPI 3.x or
	// Swagger 2.0 document, or cannot be imported as it is; details.errors
	// lists the problems.
	CodeInvalidSpecification = "invalid_specification"
	// CodeFetchFailed: the document could not be fetched from its URL.
	CodeFetchFailed = "fetch_failed"
)

// importDocumentLimit caps an imported document (file, text or URL).
const importDocumentLimit = openapiimport.MaxDocumentSize

// importTextTypes are the media types POST …/import/text accepts.
var importTextTypes = []string{"text/plain", "application/json", "application/yaml", "application/x-yaml"}

// importResult is the answer of an import (seed
// ImportServiceConfigurationResult). Imports create no policies, so the
// policy lists are always empty.
type importResult struct {
	CreatedAPIs []apiBody                  `json:"created_apis"`
	UpdatedAPIs []apiBody                  `json:"updated_apis"`
	RemovedAPIs []apiBody                  `json:"removed_apis"`
	IgnoredAPIs []openapiimport.IgnoredAPI `json:"ignored_apis"`
	// Warnings are the operations imported with a fallback template.
	Warnings           []openapiimport.ImportWarning `json:"warnings"`
	CreatedScopes      []scopeBody                   `json:"created_scopes"`
	IgnoredScopes      []openapiimport.IgnoredScope  `json:"ignored_scopes"`
	CreatedPolicies    []any                         `json:"created_policies"`
	RemovedPolicies    []any                         `json:"removed_policies"`
	NotRemovedPolicies []any                         `json:"not_removed_policies"`
}

func renderImport(r *openapiimport.Result) importResult {
	if r.Warnings == nil {
		r.Warnings = []openapiimport.ImportWarning{}
	}
	scopes := make([]scopeBody, 0, len(r.CreatedScopes))
	for _, sc := range r.CreatedScopes {
		scopes = append(scopes, renderScope(sc))
	}
	return importResult{
		CreatedAPIs: renderAPIs(r.Created), UpdatedAPIs: renderAPIs(r.Updated), RemovedAPIs: renderAPIs(r.Removed),
		IgnoredAPIs: r.Ignored, Warnings: r.Warnings, CreatedScopes: scopes, IgnoredScopes: r.IgnoredScopes,
		CreatedPolicies: []any{}, RemovedPolicies: []any{}, NotRemovedPolicies: []any{},
	}
}

func tooLarge(limit int64, details map[string]any) *Error {
	if details == nil {
		details = map[string]any{}
	}
	details["limit_bytes"] = limit
	return newError(http.StatusRequestEntityTooLarge, httpapi.CodeBodyTooLarge, fmt.Sprintf("the document exceeds %d bytes", limit), details)
}

func unsupportedMedia(ct string, supported ...string) *Error {
	return newError(http.StatusUnsupportedMediaType, httpapi.CodeUnsupportedMedia,
		fmt.Sprintf("Content-Type %q is not supported; send %s", ct, strings.Join(supported, ", ")), map[string]any{"header": "Content-Type"})
}

// mediaType is the request's media type ("" when absent); a malformed
// header is reported as unsupported.
func mediaType(c *gin.Context, supported ...string) (string, *Error) {
	ct := c.GetHeader("Content-Type")
	if ct == "" {
		return "", nil
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return "", unsupportedMedia(ct, supported...)
	}
	return mt, nil
}

// readLimited reads r up to limit bytes; more is a 413.
func readLimited(r io.Reader, limit int64) ([]byte, *Error) {
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return nil, tooLarge(limit, nil)
	case err != nil:
		return nil, newError(http.StatusBadRequest, httpapi.CodeInvalidRequest, "reading the request body: "+err.Error(), nil)
	case int64(len(data)) > limit:
		return nil, tooLarge(limit, nil)
	}
	return data, nil
}

// importFromText imports the raw request body.
func (s *Server) importFromText(c *gin.Context) {
	s.importWith(c, func(c *gin.Context) ([]byte, *Error) {
		mt, apiErr := mediaType(c, importTextTypes...)
		if apiErr != nil {
			return nil, apiErr
		}
		if mt != "" && !slices.Contains(importTextTypes, mt) {
			return nil, unsupportedMedia(c.GetHeader("Content-Type"), importTextTypes...)
		}
		return readLimited(http.MaxBytesReader(c.Writer, c.Request.Body, importDocumentLimit+1), importDocumentLimit)
	})
}

// importFromFile imports the multipart/form-data part "file".
func (s *Server) importFromFile(c *gin.Context) {
	s.importWith(c, func(c *gin.Context) ([]byte, *Error) {
		var data []byte
		found, apiErr := readFormPart(c, "file", importDocumentLimit, func(p io.Reader) *Error {
			var apiErr *Error
			data, apiErr = readLimited(p, importDocumentLimit)
			return apiErr
		})
		if apiErr == nil && !found {
			apiErr = missingField("file")
		}
		return data, apiErr
	})
}

// readFormPart streams a multipart/form-data body and hands the part named
// field to read. It reports whether the part was there.
func readFormPart(c *gin.Context, field string, limit int64, read func(io.Reader) *Error) (bool, *Error) {
	mt, apiErr := mediaType(c, "multipart/form-data")
	if apiErr != nil {
		return false, apiErr
	}
	if mt != "multipart/form-data" {
		return false, unsupportedMedia(c.GetHeader("Content-Type"), "multipart/form-data")
	}
	// The envelope (boundaries, part headers) gets 1 MiB beyond the part.
	c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, limit+1<<20)
	mr, err := c.Request.MultipartReader()
	if err != nil {
		return false, newError(http.StatusBadRequest, httpapi.CodeInvalidRequest, "malformed multipart/form-data body: "+err.Error(), nil)
	}
	for {
		p, err := mr.NextPart()
		var tooBig *http.MaxBytesError
		switch {
		case errors.Is(err, io.EOF):
			return false, nil
		case errors.As(err, &tooBig):
			return false, tooLarge(limit, nil)
		case err != nil:
			return false, newError(http.StatusBadRequest, httpapi.CodeInvalidRequest, "malformed multipart/form-data body: "+err.Error(), nil)
		}
		if p.FormName() == field {
			return true, read(p)
		}
	}
}

// importDefaultPolicy reads the policy_id query parameter: the policy of
// the operations without their own x-gatehouse-policy ("" when absent).
func importDefaultPolicy(c *gin.Context) (string, *Error) {
	v, ok := c.GetQuery(openapiimport.DefaultPolicyField)
	if ok && !model.ValidObjectID(v) {
		return "", fieldError(openapiimport.DefaultPolicyField, "invalid policy id %q (%s)", v, model.ObjectIDRule)
	}
	return v, nil
}

// importWith checks the service, reads the document with read, parses it
// and replaces the service's APIs (package openapiimport).
func (s *Server) importWith(c *gin.Context, read func(c *gin.Context) ([]byte, *Error)) {
	tid := tenantID(c)
	sid, expect, ok := pathIDAndIfMatch(c, "sid")
	if !ok {
		return
	}
	policyID, apiErr := importDefaultPolicy(c)
	if apiErr != nil {
		abort(c, apiErr)
		return
	}
	// Fail fast on an unknown service, before reading or fetching.
	if _, err := serviceRepo.Get(c.Request.Context(), s.store, tid, sid); err != nil {
		fail(c, err, "service", sid)
		return
	}
	data, apiErr := read(c)
	if apiErr != nil {
		abort(c, apiErr)
		return
	}
	doc, err := openapiimport.Parse(c.Request.Context(), data)
	if err != nil {
		abort(c, specificationError(err))
		return
	}
	target := openapiimport.Target{TenantID: tid, ServiceID: sid, ServiceRevision: expect, DefaultPolicyID: policyID}
	audit := openapiimport.Audit{Actor: actor(c), RequestID: requestID(c)}
	var res *openapiimport.Result
	ok = s.write(c, "service", sid, func(ctx context.Context, tx store.Tx) error {
		var err error
		if res, err = openapiimport.Apply(ctx, tx, target, doc, audit); err != nil {
			// Store errors map as for any write, and *openapiimport.PlanError
			// (unknown policies) is a field.ErrorList: a 400 listing each problem.
			return err
		}
		return checkRouteTakeover(ctx, tx, tid, takeoverScope{services: map[string]bool{sid: true}}, nil)
	})
	if ok {
		c.JSON(http.StatusOK, renderImport(res))
	}
}

// specificationError maps openapiimport.Parse's errors: an unusable
// document is 400 invalid_specification with details.errors.
func specificationError(err error) *Error {
	var se *openapiimport.SpecError
	if !errors.As(err, &se) {
		return internalError(err)
	}
	what := "the document is not a valid OpenAPI specification: "
	if se.Gatehouse {
		what = "the document cannot be imported: "
	}
	return newError(http.StatusBadRequest, CodeInvalidSpecification, what+se.Problems[0], map[string]any{"errors": se.Problems})
}
