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

	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/store"
)

// Error codes of the OpenAPI import.
const (
	// CodeInvalidSpecification: the document is not a valid OpenAPI 3.x or
	// Swagger 2.0 document; details.errors lists the problems.
	CodeInvalidSpecification = "invalid_specification"
	// CodeFetchFailed: the document could not be fetched from its URL.
	CodeFetchFailed = "fetch_failed"
)

// importDocumentLimit caps an imported document (file, text or URL).
const importDocumentLimit = 10 << 20

// importTextTypes are the media types POST …/import/text accepts.
var importTextTypes = []string{"text/plain", "application/json", "application/yaml", "application/x-yaml"}

// importResult is the answer of an import (seed
// ImportServiceConfigurationResult). Imports create no policies, so the
// policy lists are always empty.
type importResult struct {
	CreatedAPIs        []apiResponse   `json:"created_apis"`
	UpdatedAPIs        []apiResponse   `json:"updated_apis"`
	RemovedAPIs        []apiResponse   `json:"removed_apis"`
	IgnoredAPIs        []ignoredAPI    `json:"ignored_apis"`
	CreatedScopes      []scopeResponse `json:"created_scopes"`
	IgnoredScopes      []ignoredScope  `json:"ignored_scopes"`
	CreatedPolicies    []any           `json:"created_policies"`
	RemovedPolicies    []any           `json:"removed_policies"`
	NotRemovedPolicies []any           `json:"not_removed_policies"`
}

// ignoredScope is a declared OAuth2 scope the import did not create.
type ignoredScope struct {
	Name    string `json:"name"`
	ScopeID string `json:"scope_id,omitempty"`
	Reason  string `json:"reason"`
}

func tooLarge(limit int64, details map[string]any) *Error {
	if details == nil {
		details = map[string]any{}
	}
	details["limit_bytes"] = limit
	return newError(http.StatusRequestEntityTooLarge, CodeBodyTooLarge, fmt.Sprintf("the document exceeds %d bytes", limit), details)
}

func unsupportedMedia(ct string, supported ...string) *Error {
	return newError(http.StatusUnsupportedMediaType, CodeUnsupportedMedia,
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
		return nil, newError(http.StatusBadRequest, CodeInvalidRequest, "reading the request body: "+err.Error(), nil)
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
		return false, newError(http.StatusBadRequest, CodeInvalidRequest, "malformed multipart/form-data body: "+err.Error(), nil)
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
			return false, newError(http.StatusBadRequest, CodeInvalidRequest, "malformed multipart/form-data body: "+err.Error(), nil)
		}
		if p.FormName() == field {
			return true, read(p)
		}
	}
}

// importWith checks the service, reads the document with read, parses it
// and replaces the service's APIs.
func (s *Server) importWith(c *gin.Context, read func(c *gin.Context) ([]byte, *Error)) {
	tid := tenantID(c)
	sid, expect, ok := pathIDAndIfMatch(c, "sid")
	if !ok {
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
	spec, err := parseSpecification(c.Request.Context(), data)
	if err != nil {
		var se *specError
		if errors.As(err, &se) {
			abort(c, newError(http.StatusBadRequest, CodeInvalidSpecification,
				"the document is not a valid OpenAPI specification: "+se.problems[0], map[string]any{"errors": se.problems}))
			return
		}
		abort(c, internalError(err))
		return
	}
	var res *importResult
	ok = s.write(c, "service", sid, func(ctx context.Context, tx store.Tx) error {
		var err error
		if res, err = applySpecification(ctx, tx, c, tid, sid, expect, spec); err != nil {
			return err
		}
		return checkRouteTakeover(ctx, tx, tid, takeoverScope{services: map[string]bool{sid: true}}, nil)
	})
	if ok {
		c.JSON(http.StatusOK, res)
	}
}

// applySpecification replaces the service's APIs with the document's
// operations. APIs whose method and path shape remain keep their id and
// the fields users own (policy binding, data classifications, public,
// can_have_policy, labels); the others are removed.
func applySpecification(ctx context.Context, tx store.Tx, c *gin.Context, tid, sid string, expect int64, spec *specification) (*importResult, error) {
	svc, err := serviceRepo.Get(ctx, tx, tid, sid)
	if err != nil {
		return nil, err
	}
	if err := checkRevision(&svc.Meta, expect); err != nil {
		return nil, err
	}
	existing, err := serviceAPIs(ctx, tx, tid, sid)
	if err != nil {
		return nil, err
	}
	res := &importResult{
		CreatedAPIs: []apiResponse{}, UpdatedAPIs: []apiResponse{}, RemovedAPIs: []apiResponse{},
		IgnoredAPIs: spec.ignored, CreatedScopes: []scopeResponse{}, IgnoredScopes: []ignoredScope{},
		CreatedPolicies: []any{}, RemovedPolicies: []any{}, NotRemovedPolicies: []any{},
	}
	if res.IgnoredAPIs == nil {
		res.IgnoredAPIs = []ignoredAPI{}
	}
	kept := map[string]*store.Typed[model.APISpec]{}
	for _, op := range spec.operations {
		kept[op.route.name(sid)] = nil
	}
	// Removals first, so no name is briefly held twice.
	for _, a := range existing {
		if _, ok := kept[a.Meta.Name]; ok {
			kept[a.Meta.Name] = a
			continue
		}
		if err := deleteAPI(ctx, tx, c, tid, a.Meta.ID, 0); err != nil {
			return nil, err
		}
		res.RemovedAPIs = append(res.RemovedAPIs, renderAPI(a))
	}
	for i, op := range spec.operations {
		name := op.route.name(sid)
		a := kept[name]
		if a == nil {
			a = &store.Typed[model.APISpec]{
				Meta: store.Object{TenantID: tid, ID: newUUID(), ParentID: sid, CreatedBy: actor(c)},
				Spec: model.APISpec{ServiceID: sid, CanHavePolicy: true},
			}
		}
		a.Meta.Name, a.Meta.UpdatedBy = name, actor(c)
		a.Spec.Method, a.Spec.Path = op.route.method, op.route.tpl.Raw
		a.Spec.Imported, a.Spec.OperationID, a.Spec.Position = true, op.operationID, i
		if kept[name] == nil {
			if err := apiRepo.Create(ctx, tx, a); err != nil {
				return nil, err
			}
			if err := record(ctx, tx, c, tid, "create", model.KindAPI, a.Meta.ID); err != nil {
				return nil, err
			}
			res.CreatedAPIs = append(res.CreatedAPIs, renderAPI(a))
			continue
		}
		if err := apiRepo.Update(ctx, tx, a, 0); err != nil {
			return nil, err
		}
		if err := record(ctx, tx, c, tid, "update", model.KindAPI, a.Meta.ID); err != nil {
			return nil, err
		}
		res.UpdatedAPIs = append(res.UpdatedAPIs, renderAPI(a))
	}
	if err := importScopes(ctx, tx, c, tid, sid, spec.scopes, res); err != nil {
		return nil, err
	}
	svc.Spec.WithSpecification = true
	svc.Meta.UpdatedBy = actor(c)
	if err := serviceRepo.Update(ctx, tx, svc, 0); err != nil {
		return nil, err
	}
	return res, record(ctx, tx, c, tid, "update", model.KindService, sid)
}

// importScopes creates the declared OAuth2 scopes that do not exist yet,
// bound to the service.
func importScopes(ctx context.Context, tx store.Tx, c *gin.Context, tid, sid string, scopes []specScope, res *importResult) error {
	for _, sc := range scopes {
		if !scopeNamePattern.MatchString(sc.name) {
			res.IgnoredScopes = append(res.IgnoredScopes, ignoredScope{Name: sc.name, Reason: "not a valid scope name (1-256 printable ASCII characters without spaces, '\"' or '\\')"})
			continue
		}
		prev, err := scopeRepo.GetByName(ctx, tx, tid, sc.name)
		if err == nil {
			res.IgnoredScopes = append(res.IgnoredScopes, ignoredScope{Name: sc.name, ScopeID: prev.Meta.ID, Reason: "a scope with this name already exists"})
			continue
		}
		if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		desc := []rune(sc.description)
		if len(desc) > 4096 {
			desc = desc[:4096]
		}
		t := &store.Typed[model.ScopeSpec]{
			Meta: store.Object{TenantID: tid, ID: newUUID(), Name: sc.name, Description: string(desc), CreatedBy: actor(c)},
			Spec: model.ScopeSpec{ServiceID: sid},
		}
		if err := scopeRepo.Create(ctx, tx, t); err != nil {
			return err
		}
		if err := record(ctx, tx, c, tid, "create", model.KindScope, t.Meta.ID); err != nil {
			return err
		}
		res.CreatedScopes = append(res.CreatedScopes, renderScope(t))
	}
	return nil
}

// newUUID is a generated object id.
func newUUID() string {
	id, _ := newObjectID("id", "")
	return id
}
