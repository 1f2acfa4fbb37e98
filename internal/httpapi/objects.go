package httpapi

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"
)

// Paging limits for list endpoints.
const (
	DefaultPageSize = 100
	MaxPageSize     = 1000
)

// Page parses ?limit=&after=.
func Page(c *gin.Context) (limit int, after string, apiErr *Error) {
	limit = DefaultPageSize
	if v, ok := c.GetQuery("limit"); ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxPageSize {
			return 0, "", Invalid("limit", "must be an integer between 1 and %d", MaxPageSize)
		}
		limit = n
	}
	return limit, c.Query("after"), nil
}

// CursorError maps a malformed-cursor store error to a 400 on "after".
func CursorError(err error, what string) *Error {
	if strings.Contains(err.Error(), "malformed cursor") {
		return Invalid("after", "not a cursor returned by this listing")
	}
	return StoreError(err, what, "")
}

// BoolQuery parses an optional boolean query parameter.
func BoolQuery(c *gin.Context, name string) (bool, *Error) {
	v, ok := c.GetQuery(name)
	if !ok {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, Invalid(name, "must be true or false")
	}
	return b, nil
}

// ETag is the entity tag of an object revision.
func ETag(rev int64) string { return `"` + strconv.FormatInt(rev, 10) + `"` }

// IfMatch parses If-Match into the revision a write expects (0: none).
// "*" matches any current revision.
func IfMatch(c *gin.Context) (int64, *Error) {
	v := strings.TrimSpace(c.GetHeader("If-Match"))
	if v == "" || v == "*" {
		return 0, nil
	}
	raw := strings.Trim(v, `"`)
	rev, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || rev <= 0 || strings.HasPrefix(v, "W/") {
		return 0, New(http.StatusBadRequest, CodeInvalidHeader,
			"If-Match must be the ETag of the object (a quoted revision such as \"12\")", map[string]any{"header": "If-Match"})
	}
	return rev, nil
}

// RespondObject writes an object with its ETag, honouring If-None-Match
// on GET (304 when it matches).
func RespondObject(c *gin.Context, status int, rev int64, body any) {
	tag := ETag(rev)
	c.Header("ETag", tag)
	if status == http.StatusOK && c.Request.Method == http.MethodGet {
		for _, v := range strings.Split(c.GetHeader("If-None-Match"), ",") {
			if v = strings.TrimSpace(v); v == tag || v == "W/"+tag || v == "*" {
				c.Status(http.StatusNotModified)
				return
			}
		}
	}
	c.JSON(status, body)
}
