package admin

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/gatehouse-dev/gatehouse/store"
)

// Machine-readable error codes, the error_code field of every error response.
const (
	CodeInvalidRequest     = "invalid_request"
	CodeInvalidJSON        = "invalid_json"
	CodeInvalidField       = "invalid_field"
	CodeUnknownField       = "unknown_field"
	CodeMissingField       = "missing_field"
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

// Error is the one error shape of the admin API:
// {"status_code":400,"error":"…","error_code":"invalid_field","details":{…}}.
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

func newError(status int, code, msg string, details map[string]any) *Error {
	if details == nil {
		details = map[string]any{}
	}
	return &Error{StatusCode: status, Message: msg, Code: code, Details: details}
}

// fieldError is a 400 naming the offending field.
func fieldError(field, format string, args ...any) *Error {
	msg := fmt.Sprintf(format, args...)
	return newError(http.StatusBadRequest, CodeInvalidField, field+": "+msg, map[string]any{"field": field, "reason": msg})
}

func missingField(field string) *Error {
	return newError(http.StatusBadRequest, CodeMissingField, field+": is required", map[string]any{"field": field, "reason": "is required"})
}

func notFound(what, id string) *Error {
	return newError(http.StatusNotFound, CodeNotFound, fmt.Sprintf("%s %q not found", what, id), map[string]any{"kind": what, "id": id})
}

func forbidden(msg string) *Error { return newError(http.StatusForbidden, CodeForbidden, msg, nil) }

// internalError is a 500 for a fault, except that a store that is
// unavailable or out of space is said so (503 store_unavailable, 507
// insufficient_storage): every handler that passes a store error here
// answers that way.
func internalError(cause error) *Error {
	var e *Error
	switch {
	case errors.Is(cause, store.ErrStorageFull):
		e = newError(http.StatusInsufficientStorage, CodeInsufficientStorage,
			"the store is out of disk space; nothing was written", nil)
	case errors.Is(cause, store.ErrUnavailable):
		e = storeUnavailable()
	default:
		e = newError(http.StatusInternalServerError, CodeInternal, "internal server error", nil)
	}
	e.cause = cause
	return e
}

// storeUnavailable is the 503 of a store that is down or did not answer
// in time.
func storeUnavailable() *Error {
	e := newError(http.StatusServiceUnavailable, CodeStoreUnavailable,
		"the store is unavailable or did not answer in time; retry later (a write may or may not have been applied)", nil)
	e.retryAfter = StoreRetryAfter
	return e
}

// storeError maps a store error to an API error about the object (what, id).
func storeError(err error, what, id string) *Error {
	var apiErr *Error
	switch {
	case errors.As(err, &apiErr):
		return apiErr
	case errors.Is(err, store.ErrNotFound):
		return notFound(what, id)
	case errors.Is(err, store.ErrAlreadyExists):
		return newError(http.StatusConflict, CodeAlreadyExists, fmt.Sprintf("a %s with this id or name already exists", what),
			map[string]any{"kind": what, "id": id})
	case errors.Is(err, store.ErrConflict):
		return newError(http.StatusPreconditionFailed, CodePreconditionFailed,
			fmt.Sprintf("%s %q was modified concurrently; re-read it and retry", what, id), map[string]any{"kind": what, "id": id})
	case errors.Is(err, store.ErrInvalid):
		return newError(http.StatusBadRequest, CodeInvalidRequest, err.Error(), nil)
	default:
		return internalError(err)
	}
}

// abort renders err and stops the handler chain. 5xx causes are logged with
// the request id; clients only see a generic message.
func abort(c *gin.Context, err *Error) {
	if err.StatusCode >= 500 && err.cause != nil {
		logger(c).ErrorContext(c.Request.Context(), "request failed", "error", err.cause.Error())
	}
	if err.StatusCode == http.StatusUnauthorized {
		c.Header("WWW-Authenticate", `Bearer realm="gatehouse"`)
	}
	if err.retryAfter > 0 {
		c.Header("Retry-After", strconv.Itoa(err.retryAfter))
	}
	c.AbortWithStatusJSON(err.StatusCode, err)
}

// fail renders any error: API errors as they are, anything else as a 500.
func fail(c *gin.Context, err error, what, id string) {
	abort(c, storeError(err, what, id))
}

func logger(c *gin.Context) *slog.Logger {
	if l, ok := c.Get(ctxLogger); ok {
		return l.(*slog.Logger)
	}
	return slog.Default()
}
