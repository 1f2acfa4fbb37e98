package admin

import (
	"github.com/gatehouse-dev/gatehouse/internal/httpapi"
)

// Short local names for the shared HTTP plumbing (internal/httpapi).

// Error is the one error shape (httpapi.Error).
type Error = httpapi.Error

// DefaultBodyLimit caps JSON request bodies.
const DefaultBodyLimit = httpapi.DefaultBodyLimit

// StoreRetryAfter is the Retry-After (seconds) of a store_unavailable answer.
const StoreRetryAfter = httpapi.StoreRetryAfter

// RequestIDHeader carries the request id in and out.
const RequestIDHeader = httpapi.RequestIDHeader

var (
	newError         = httpapi.New
	fieldError       = httpapi.Invalid
	fieldErrors      = httpapi.FieldErrors
	missingField     = httpapi.Missing
	notFound         = httpapi.NotFound
	forbidden        = httpapi.Forbidden
	internalError    = httpapi.Internal
	storeUnavailable = httpapi.StoreUnavailable
	abort            = httpapi.Abort
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
