package admin

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/gatehouse-dev/gatehouse/internal/httpapi"
	"github.com/gatehouse-dev/gatehouse/store"
)

// storeError is httpapi.StoreError, except that a collision says which
// of id or name collided (conflictError).
func storeError(err error, what, id string) *Error {
	var (
		apiErr *Error
		ae     *store.AlreadyExistsError
	)
	if !errors.As(err, &apiErr) && errors.As(err, &ae) {
		return conflictError(what, id, ae)
	}
	return httpapi.StoreError(err, what, id)
}

// fail renders any error about the object (what, id), as storeError maps
// it.
func fail(c *gin.Context, err error, what, id string) { abort(c, storeError(err, what, id)) }

// conflictError is the 409 of a write that collided with a live object
// on ae.Field ("id" or "name"): the message names the field and its
// value, details carry kind, id (the object written), field and value.
func conflictError(what, id string, ae *store.AlreadyExistsError) *Error {
	if what == "" {
		what = "object"
	}
	details := map[string]any{"kind": what, "field": ae.Field, "value": ae.Value}
	if id != "" {
		details["id"] = id
	}
	return newError(http.StatusConflict, httpapi.CodeAlreadyExists,
		fmt.Sprintf("%s: a %s with %s %q already exists", ae.Field, what, ae.Field, ae.Value), details)
}
