// Package httpapi is the HTTP plumbing every Gatehouse JSON API shares (the
// admin API, the bundle service and the OAuth endpoints): the one error
// shape, strict JSON and merge-patch decoding, request id / log / metrics /
// recover middleware, paging and ETag / If-Match handling. It knows gin and
// the store's error values, and nothing of any resource.
package httpapi

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/gatehouse-dev/gatehouse/internal/field"
	"github.com/gatehouse-dev/gatehouse/store"
)

// Machine-readable error codes, the error_code field of every error response.
const (
	CodeInvalidRequest     = "invalid_request"
	CodeInvalidJSON        = "invalid_json"
	CodeInvalidField       = field.CodeInvalid
	CodeUnknownField       = field.CodeUnknown
	CodeMissingField       = field.CodeRequired
	CodeInvalidHeader      = "invalid_header"
	CodeBodyTooLarge       = "body_too_large"
	CodeUnsupportedMedia   = "unsupported_media_type"
	CodeUnauthorized       = "unauthorized"
	CodeForbidden          = "forbidden"
	CodeTenantDisabled     = "tenant_disabled"
	CodeNotFound           = "not_found"
	CodeMethodNotAllowed   = "method_not_allowed"
	CodeAlreadyExists      = "already_exists"
	CodeConflict           = "conflict"
	CodeInvalidTransition  = "invalid_transition"
	CodeInUse              = "in_use"
	CodeEvaluation         = "evaluation_error"
	CodePreconditionFailed = "precondition_failed"
	CodeInternal           = "internal_error"
	CodeUnavailable        = "unavailable"
	// CodeStoreUnavailable (503, with Retry-After): the store is down, hung
	// or did not answer within --store-timeout. A write answered so may or
	// may not have been applied: re-read before retrying (If-Match makes
	// the retry safe).
	CodeStoreUnavailable = "store_unavailable"
	// CodeInsufficientStorage (507): the store is out of disk space;
	// nothing of the write was kept.
	CodeInsufficientStorage = "insufficient_storage"
)

// StoreRetryAfter is the Retry-After (seconds) of a store_unavailable
// answer.
const StoreRetryAfter = 5

// Error is the one error shape of Gatehouse's JSON APIs:
// {"status_code":400,"error":"…","error_code":"invalid_field","details":{…}}.
// A 400 about a request body lists every problem in details.errors
// ([{field, code, message}]); the first is also the top-level message,
// details.field and details.reason.
type Error struct {
	StatusCode int            `json:"status_code"`
	Message    string         `json:"error"`
	Code       string         `json:"error_code"`
	Details    map[string]any `json:"details"`
	// cause is logged for 5xx errors, never sent.
	cause error
	// retryAfter, when positive, is sent as Retry-After (seconds).
	retryAfter int
}

func (e *Error) Error() string { return fmt.Sprintf("%d %s: %s", e.StatusCode, e.Code, e.Message) }

// WithRetryAfter sets the Retry-After (seconds) the answer carries.
func (e *Error) WithRetryAfter(seconds int) *Error {
	e.retryAfter = seconds
	return e
}

// Fields is the list of field problems the error reports (empty when it
// is not about fields).
func (e *Error) Fields() field.ErrorList {
	l, _ := e.Details["errors"].(field.ErrorList)
	return l
}

// New is an error of the given status and code.
func New(status int, code, msg string, details map[string]any) *Error {
	if details == nil {
		details = map[string]any{}
	}
	return &Error{StatusCode: status, Message: msg, Code: code, Details: details}
}

// Errorf is New with a formatted message and no details.
func Errorf(status int, code, format string, args ...any) *Error {
	return New(status, code, fmt.Sprintf(format, args...), nil)
}

// Invalid is a 400 naming the offending field.
func Invalid(fieldName, format string, args ...any) *Error {
	return FieldErrors(field.ErrorList{{Field: fieldName, Code: field.CodeInvalid, Message: fmt.Sprintf(format, args...)}})
}

// Missing is a 400 for a required field that was not given.
func Missing(fieldName string) *Error {
	return FieldErrors(field.ErrorList{{Field: fieldName, Code: field.CodeRequired, Message: "is required"}})
}

// FieldErrors is the 400 of a body with these problems (nil for none): the
// first names the error code and the message, all are in details.errors.
func FieldErrors(errs field.ErrorList) *Error {
	if len(errs) == 0 {
		return nil
	}
	first := errs[0]
	msg := first.Message
	if first.Field != "" {
		msg = first.Field + ": " + msg
	}
	if len(errs) > 1 {
		msg += fmt.Sprintf(" (and %d more problems, listed in details.errors)", len(errs)-1)
	}
	details := map[string]any{"reason": first.Message, "errors": errs}
	if first.Field != "" {
		details["field"] = first.Field
	}
	return New(http.StatusBadRequest, first.Code, msg, details)
}

// AsFieldErrors is err's field problems when err is a 400 about fields
// (an *Error made by Invalid, Missing or FieldErrors, or a field.ErrorList).
func AsFieldErrors(err error) (field.ErrorList, bool) {
	var l field.ErrorList
	if errors.As(err, &l) {
		return l, true
	}
	var e *Error
	if errors.As(err, &e) && e.StatusCode == http.StatusBadRequest {
		if l := e.Fields(); len(l) > 0 {
			return l, true
		}
	}
	return nil, false
}

// NotFound is a 404 for the object (what, id).
func NotFound(what, id string) *Error {
	return New(http.StatusNotFound, CodeNotFound, fmt.Sprintf("%s %q not found", what, id), map[string]any{"kind": what, "id": id})
}

// Forbidden is a 403.
func Forbidden(msg string) *Error { return New(http.StatusForbidden, CodeForbidden, msg, nil) }

// Internal is a 500 for a fault, except that a store that is unavailable
// or out of space is said so (503 store_unavailable, 507
// insufficient_storage): every handler that passes a store error here
// answers that way. The cause is logged, never sent.
func Internal(cause error) *Error {
	var e *Error
	switch {
	case errors.Is(cause, store.ErrStorageFull):
		e = New(http.StatusInsufficientStorage, CodeInsufficientStorage,
			"the store is out of disk space; nothing was written", nil)
	case errors.Is(cause, store.ErrUnavailable):
		e = StoreUnavailable()
	default:
		e = New(http.StatusInternalServerError, CodeInternal, "internal server error", nil)
	}
	e.cause = cause
	return e
}

// StoreUnavailable is the 503 of a store that is down or did not answer
// in time.
func StoreUnavailable() *Error {
	e := New(http.StatusServiceUnavailable, CodeStoreUnavailable,
		"the store is unavailable or did not answer in time; retry later (a write may or may not have been applied)", nil)
	e.retryAfter = StoreRetryAfter
	return e
}

// StoreError maps an error to an API error about the object (what, id):
// API errors and field lists as they are, store errors to 404/409/412/400,
// anything else through Internal.
func StoreError(err error, what, id string) *Error {
	var (
		apiErr *Error
		fields field.ErrorList
	)
	switch {
	case errors.As(err, &apiErr):
		return apiErr
	case errors.As(err, &fields):
		return FieldErrors(fields)
	case errors.Is(err, store.ErrNotFound):
		return NotFound(what, id)
	case errors.Is(err, store.ErrAlreadyExists):
		return New(http.StatusConflict, CodeAlreadyExists, fmt.Sprintf("a %s with this id or name already exists", what),
			map[string]any{"kind": what, "id": id})
	case errors.Is(err, store.ErrConflict):
		return New(http.StatusPreconditionFailed, CodePreconditionFailed,
			fmt.Sprintf("%s %q was modified concurrently; re-read it and retry", what, id), map[string]any{"kind": what, "id": id})
	case errors.Is(err, store.ErrInvalid):
		return New(http.StatusBadRequest, CodeInvalidRequest, err.Error(), nil)
	default:
		return Internal(err)
	}
}

// Abort renders err and stops the handler chain. 5xx causes are logged with
// the request id; clients only see a generic message.
func Abort(c *gin.Context, err *Error) {
	if err.StatusCode >= 500 && err.cause != nil {
		Logger(c).ErrorContext(c.Request.Context(), "request failed", "error", err.cause.Error())
	}
	if err.StatusCode == http.StatusUnauthorized {
		c.Header("WWW-Authenticate", `Bearer realm="gatehouse"`)
	}
	if err.retryAfter > 0 {
		c.Header("Retry-After", strconv.Itoa(err.retryAfter))
	}
	c.AbortWithStatusJSON(err.StatusCode, err)
}

// Fail renders any error about the object (what, id), as StoreError maps it.
func Fail(c *gin.Context, err error, what, id string) {
	Abort(c, StoreError(err, what, id))
}
