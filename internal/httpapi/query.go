package httpapi

import (
	"slices"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/gatehouse-dev/gatehouse/internal/field"
)

// KnownQuery checks that the request's query has only the parameters
// named, each at most once: an unknown one is a 400 unknown_field naming
// it (and listing the known ones), a repeated one a 400 invalid_field.
// The first problem in name order is reported, so the answer does not
// depend on map order.
func KnownQuery(c *gin.Context, known ...string) *Error {
	q := c.Request.URL.Query()
	names := make([]string, 0, len(q))
	for name := range q {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if !slices.Contains(known, name) {
			return FieldErrors(field.ErrorList{{Field: name, Code: field.CodeUnknown,
				Message: "unknown query parameter (known: " + strings.Join(known, ", ") + ")"}})
		}
		if len(q[name]) > 1 {
			return Invalid(name, "given more than once")
		}
	}
	return nil
}
