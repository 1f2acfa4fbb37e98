package httpapi

import (
	"net/http/httptest"
	"testing"

	"github.com/gin-gonic/gin"
)

func TestKnownQuery(t *testing.T) {
	for _, c := range []struct {
		query, field, code string
	}{
		{"", "", ""},
		{"?a=1&b=", "", ""},
		{"?a=1&zz=2&c=3", "c", "unknown_field"},
		{"?b=1&b=2", "b", "invalid_field"},
		{"?a=1&a=2&c=1", "a", "invalid_field"},
	} {
		ctx, _ := gin.CreateTestContext(httptest.NewRecorder())
		ctx.Request = httptest.NewRequest("GET", "/x"+c.query, nil)
		err := KnownQuery(ctx, "a", "b")
		if c.field == "" {
			if err != nil {
				t.Errorf("%q: %v", c.query, err)
			}
			continue
		}
		if err == nil || err.StatusCode != 400 || err.Code != c.code || err.Details["field"] != c.field {
			t.Errorf("%q: %+v, want a 400 %s naming %s", c.query, err, c.code, c.field)
		}
	}
}
