package admin

import (
	"github.com/gatehouse-dev/gatehouse/internal/httpapi"
)

// Short local names for the shared HTTP plumbing (internal/httpapi).

// Error is the one error shape (httpapi.Error).
type Error = httpapi.Error

// Machine-readable error codes (see httpapi).
const (
	CodeInvalidRequest      = httpapi.CodeInvalidRequest
	CodeInvalidJSON         = httpapi.CodeInvalidJSON
	CodeInvalidField        = httpapi.CodeInvalidField
	CodeUnknownField        = httpapi.CodeUnknownField
	CodeMissingField        = httpapi.CodeMissingField
	CodeInvalidHeader       = httpapi.CodeInvalidHeader
	CodeBodyTooLarge        = httpapi.CodeBodyTooLarge
	CodeUnsupportedMedia    = httpapi.CodeUnsupportedMedia
	CodeUnauthorized        = httpapi.CodeUnauthorized
	CodeForbidden           = httpapi.CodeForbidden
	CodeTenantDisabled      = httpapi.CodeTenantDisabled
	CodeNotFound            = httpapi.CodeNotFound
	CodeMethodNotAllowed    = httpapi.CodeMethodNotAllowed
	CodeAlreadyExists       = httpapi.CodeAlreadyExists
	CodeConflict            = httpapi.CodeConflict
	CodeInvalidTransition   = httpapi.CodeInvalidTransition
	CodeInUse               = httpapi.CodeInUse
	CodeEvaluation          = httpapi.CodeEvaluation
	CodePreconditionFailed  = httpapi.CodePreconditionFailed
	CodeInternal            = httpapi.CodeInternal
	CodeUnavailable         = httpapi.CodeUnavailable
	CodeStoreUnavailable    = httpapi.CodeStoreUnavailable
	CodeInsufficientStorage = httpapi.CodeInsufficientStorage
)

// DefaultBodyLimit caps JSON request bodies.
const DefaultBodyLimit = httpapi.DefaultBodyLimit

// StoreRetryAfter is the Retry-After (seconds) of a store_unavailable answer.
const StoreRetryAfter = httpapi.StoreRetryAfter

// RequestIDHeader carries the request id in and out.
const RequestIDHeader = httpapi.RequestIDHeader

var (
	newError         = httpapi.New
	errorf           = httpapi.Errorf
	fieldError       = httpapi.Invalid
	fieldErrors      = httpapi.FieldErrors
	missingField     = httpapi.Missing
	notFound         = httpapi.NotFound
	forbidden        = httpapi.Forbidden
	internalError    = httpapi.Internal
	storeUnavailable = httpapi.StoreUnavailable
	storeError       = httpapi.StoreError
	abort            = httpapi.Abort
	fail             = httpapi.Fail
	logger           = httpapi.Logger
	requestID        = httpapi.RequestID
	decodeJSON       = httpapi.DecodeJSON
	decodeJSONLimit  = httpapi.DecodeJSONLimit
	jsonError        = httpapi.JSONError
	notNull          = httpapi.NotNull
	page             = httpapi.Page
	cursorError      = httpapi.CursorError
	boolQuery        = httpapi.BoolQuery
	etag             = httpapi.ETag
	ifMatch          = httpapi.IfMatch
	respondObject    = httpapi.RespondObject
)
