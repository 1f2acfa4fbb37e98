package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-dev/gatehouse/internal/field"
	"github.com/gatehouse-dev/gatehouse/store"
)

func serve(t *testing.T, h gin.HandlerFunc, method, body string, header ...string) (*httptest.ResponseRecorder, map[string]any) {
	t.Helper()
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	e := NewEngine(discardLogger(), m)
	e.Handle(method, "/x", h)
	req := httptest.NewRequest(method, "/x", strings.NewReader(body))
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, req)
	var out map[string]any
	_ = json.Unmarshal(rec.Body.Bytes(), &out)
	return rec, out
}

func TestFieldErrorsListEveryProblemFirstInMessage(t *testing.T) {
	rec, out := serve(t, func(c *gin.Context) {
		var l field.ErrorList
		l.Add(field.Required(field.NewPath("name")), field.Invalid(field.NewPath("hosts").Index(1), "not a host"))
		Abort(c, FieldErrors(l))
	}, http.MethodPost, "{}")
	if rec.Code != http.StatusBadRequest || out["error_code"] != field.CodeRequired {
		t.Fatalf("status %d code %v, want 400 missing_field", rec.Code, out["error_code"])
	}
	if msg, _ := out["error"].(string); !strings.HasPrefix(msg, "name: is required") || !strings.Contains(msg, "1 more") {
		t.Errorf("message %q does not lead with the first problem and count the rest", msg)
	}
	d := out["details"].(map[string]any)
	errs, _ := d["errors"].([]any)
	if d["field"] != "name" || len(errs) != 2 || errs[1].(map[string]any)["field"] != "hosts[1]" {
		t.Errorf("details = %v", d)
	}
}

func TestDecodeJSONNamesTheField(t *testing.T) {
	var dst struct {
		Name string `json:"name"`
		N    int    `json:"n"`
	}
	for _, tc := range []struct{ body, code, field string }{
		{`{"colour":1}`, CodeUnknownField, "colour"},
		{`{"n":"x"}`, CodeInvalidField, "n"},
		{`null`, CodeInvalidJSON, ""},
		{`{"name":"a"} {}`, CodeInvalidJSON, ""},
	} {
		rec, out := serve(t, func(c *gin.Context) {
			if e := DecodeJSON(c, &dst); e != nil {
				Abort(c, e)
				return
			}
			c.Status(http.StatusNoContent)
		}, http.MethodPost, tc.body, "Content-Type", "application/json")
		d, _ := out["details"].(map[string]any)
		if rec.Code != http.StatusBadRequest || out["error_code"] != tc.code || (tc.field != "" && d["field"] != tc.field) {
			t.Errorf("%s: status %d body %v, want 400 %s on %q", tc.body, rec.Code, out, tc.code, tc.field)
		}
	}
}

func TestStoreErrorsMapToStatuses(t *testing.T) {
	for _, tc := range []struct {
		err    error
		status int
	}{
		{store.ErrNotFound, 404}, {store.ErrAlreadyExists, 409}, {store.ErrConflict, 412},
		{fmt.Errorf("x: %w", store.ErrUnavailable), 503}, {store.ErrStorageFull, 507},
		{errors.New("boom"), 500}, {field.ErrorList{field.Required(field.NewPath("a"))}, 400},
	} {
		if got := StoreError(tc.err, "thing", "t1"); got.StatusCode != tc.status {
			t.Errorf("%v: status %d, want %d", tc.err, got.StatusCode, tc.status)
		}
	}
	rec, _ := serve(t, func(c *gin.Context) { Fail(c, store.ErrUnavailable, "thing", "t1") }, http.MethodGet, "")
	if rec.Header().Get("Retry-After") != fmt.Sprint(StoreRetryAfter) {
		t.Errorf("503 without Retry-After: %v", rec.Header())
	}
}

func TestRecoverAnswers500InTheErrorShape(t *testing.T) {
	rec, out := serve(t, func(c *gin.Context) { panic("boom") }, http.MethodGet, "")
	if rec.Code != 500 || out["error_code"] != CodeInternal || strings.Contains(rec.Body.String(), "boom") {
		t.Errorf("panic answered %d %s", rec.Code, rec.Body.String())
	}
	if rec.Header().Get(RequestIDHeader) == "" {
		t.Error("no request id header")
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
