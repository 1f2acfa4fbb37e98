package admin

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/gatehouse-dev/gatehouse/internal/field"
	"github.com/gatehouse-dev/gatehouse/internal/httpapi"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/store"
)

// Metadata is the read-only envelope rendered on every object. Clients may
// send it back on PUT (it is ignored), so a GET response can be edited and
// written as it is.
type Metadata struct {
	UID       string     `json:"uid"`
	Revision  int64      `json:"revision"`
	CreatedAt time.Time  `json:"created_at"`
	CreatedBy string     `json:"created_by,omitempty"`
	UpdatedAt time.Time  `json:"updated_at"`
	UpdatedBy string     `json:"updated_by,omitempty"`
	DeletedAt *time.Time `json:"deleted_at,omitempty"`
}

func metadataOf(o *store.Object) *Metadata {
	return &Metadata{
		UID: o.UID, Revision: o.Revision, CreatedAt: o.CreatedAt, CreatedBy: o.CreatedBy,
		UpdatedAt: o.UpdatedAt, UpdatedBy: o.UpdatedBy, DeletedAt: o.DeletedAt,
	}
}

// record appends the audit event of one admin write to the transaction.
func record(ctx context.Context, tx store.Tx, c *gin.Context, tenantID, action, kind, objectID string) error {
	e := &store.Event{TenantID: tenantID, Actor: actor(c), Action: action, Kind: kind, ObjectID: objectID, RequestID: requestID(c)}
	if at, ok := tx.(*auditTx); ok {
		e.Changes = at.summary(kind, tenantID, objectID)
	}
	return tx.AppendEvent(ctx, e)
}

var labelKeyPattern = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._/-]{0,61}[A-Za-z0-9])?$`)

// labelErrors: at most 64 labels; keys like Kubernetes label keys,
// values up to 256 characters. The envelope rule of every kind.
func labelErrors(labels map[string]string) field.ErrorList {
	var errs field.ErrorList
	if len(labels) > 64 {
		errs.Add(field.Invalid(field.NewPath("labels"), "at most 64 labels are allowed"))
	}
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		if !labelKeyPattern.MatchString(k) {
			errs.Add(field.Invalid(field.NewPath("labels", k), "label keys are 1-63 letters, digits, '.', '_', '/' or '-', starting and ending with a letter or digit"))
		}
		if utf8.RuneCountInString(labels[k]) > 256 {
			errs.Add(field.Invalid(field.NewPath("labels", k), "label values are at most 256 characters"))
		}
	}
	return errs
}

// validateLabels is labelErrors as one error (its first problem and the
// rest in details.errors).
func validateLabels(labels map[string]string) *Error { return fieldErrors(labelErrors(labels)) }

// textErrors checks a free-text field's length; required fields must not
// be blank. The envelope rule of names and descriptions.
func textErrors(name, v string, required bool, max int) field.ErrorList {
	p := field.NewPath(name)
	switch {
	case required && strings.TrimSpace(v) == "":
		return field.ErrorList{field.Required(p)}
	case !utf8.ValidString(v):
		return field.ErrorList{field.Invalid(p, "must be valid UTF-8")}
	}
	if n := utf8.RuneCountInString(v); n > max {
		return field.ErrorList{field.Invalid(p, "must be at most %d characters (got %d)", max, n)}
	}
	return nil
}

// validateText is textErrors as one error.
func validateText(name, v string, required bool, max int) *Error {
	return fieldErrors(textErrors(name, v, required, max))
}

// parseTime accepts RFC 3339 or Unix seconds.
func parseTime(field, v string) (time.Time, *Error) {
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		return time.Unix(n, 0).UTC(), nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, fieldError(field, "must be an RFC 3339 time or Unix seconds, got %q", v)
	}
	return t, nil
}

// objectIDParam reads and validates an object id path parameter.
func objectIDParam(c *gin.Context, param string) (string, *Error) {
	id := c.Param(param)
	if !model.ValidObjectID(id) {
		return "", fieldError(param, "invalid id %q (%s)", id, model.ObjectIDRule)
	}
	return id, nil
}

// newObjectID validates a caller-chosen id, or generates one.
func newObjectID(field, id string) (string, *Error) {
	if id == "" {
		return uuid.NewString(), nil
	}
	if !model.ValidObjectID(id) {
		return "", fieldError(field, "invalid id %q (%s)", id, model.ObjectIDRule)
	}
	return id, nil
}

// tenantID is the tenant of an /api/admin/{tid} route (set by loadTenant).
func tenantID(c *gin.Context) string { return currentTenant(c).Meta.ID }

// write runs fn in a store transaction; errors are mapped for (what, id).
// It reports whether the write succeeded (the response is written if not).
func (s *Server) write(c *gin.Context, what, id string, fn func(ctx context.Context, tx store.Tx) error) bool {
	if _, err := s.update(c.Request.Context(), fn); err != nil {
		fail(c, err, what, id)
		return false
	}
	return true
}

// checkRevision returns ErrConflict when If-Match named another revision.
func checkRevision(o *store.Object, expect int64) error {
	if expect != 0 && o.Revision != expect {
		return store.ErrConflict
	}
	return nil
}

// labelsOrEmpty renders nil labels as {}.
func labelsOrEmpty(l map[string]string) map[string]string {
	if l == nil {
		return map[string]string{}
	}
	return l
}

// unknownReference is a 400 for a field naming an object that does not exist.
func unknownReference(field, what, id string) *Error {
	return fieldError(field, "%s %q does not exist", what, id)
}

// inUse is a 409 for deleting an object others still reference.
func inUse(what, id string, users map[string][]string) *Error {
	return newError(http.StatusConflict, httpapi.CodeInUse, fmt.Sprintf("%s %q is in use", what, id),
		map[string]any{"kind": what, "id": id, "used_by": users})
}

// collect is the answer to a body checked field by field: every check's
// problems (nil checks passed) in one 400, or the first check that failed
// in some other way (a limit, say) as it is.
func collect(checks ...*Error) *Error {
	var errs field.ErrorList
	for _, e := range checks {
		if e == nil {
			continue
		}
		l := e.Fields()
		if len(l) == 0 {
			return e
		}
		errs.Extend(l)
	}
	return fieldErrors(errs)
}

// tenantMatch checks a body's tenant_id, when given, against the path's
// tenant (tid "": a configuration document, nothing to match).
func tenantMatch(got, tid string) *Error {
	if got != "" && tid != "" && got != tid {
		return fieldError("tenant_id", "does not match the tenant in the path")
	}
	return nil
}
