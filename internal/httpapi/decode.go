package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/gatehouse-dev/gatehouse/internal/field"
)

// DefaultBodyLimit caps JSON request bodies.
const DefaultBodyLimit = 1 << 20

// DecodeJSON strictly decodes the request body into dst: JSON only, unknown
// fields, trailing data and a null body rejected, size capped. Errors name
// the field.
func DecodeJSON(c *gin.Context, dst any) *Error {
	return DecodeJSONLimit(c, dst, DefaultBodyLimit)
}

// DecodeJSONLimit is DecodeJSON with another size cap.
func DecodeJSONLimit(c *gin.Context, dst any, limit int64) *Error {
	if ct := c.GetHeader("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return New(http.StatusUnsupportedMediaType, CodeUnsupportedMedia,
				fmt.Sprintf("Content-Type %q is not supported; send application/json", ct), map[string]any{"header": "Content-Type"})
		}
	}
	raw, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, limit))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return JSONError(err, limit)
		}
		return New(http.StatusBadRequest, CodeInvalidRequest, "cannot read the request body: "+err.Error(), nil)
	}
	if apiErr := NotNull(raw); apiErr != nil {
		return apiErr
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return JSONError(err, limit)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return New(http.StatusBadRequest, CodeInvalidJSON, "request body must hold a single JSON object", nil)
	}
	return nil
}

// NotNull refuses a body that is the JSON literal null: decoding it into a
// struct would silently give the zero value, as if {} had been sent.
func NotNull(raw []byte) *Error {
	if bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return New(http.StatusBadRequest, CodeInvalidJSON, "request body must be a JSON object, not null", nil)
	}
	return nil
}

// JSONError maps a json decoding error of a body capped at limit bytes
// to the API error naming the field.
func JSONError(err error, limit int64) *Error {
	var (
		syntax *json.SyntaxError
		typ    *json.UnmarshalTypeError
		tooBig *http.MaxBytesError
	)
	switch {
	case errors.As(err, &tooBig):
		return New(http.StatusRequestEntityTooLarge, CodeBodyTooLarge,
			fmt.Sprintf("request body exceeds %d bytes", limit), map[string]any{"limit_bytes": limit})
	case errors.Is(err, io.EOF):
		return New(http.StatusBadRequest, CodeInvalidJSON, "request body is empty; send a JSON object", nil)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return New(http.StatusBadRequest, CodeInvalidJSON, "request body is truncated JSON", nil)
	case errors.As(err, &syntax):
		return New(http.StatusBadRequest, CodeInvalidJSON, "malformed JSON: "+syntax.Error(), map[string]any{"offset": syntax.Offset})
	case errors.As(err, &typ):
		name := typ.Field
		if name == "" {
			return New(http.StatusBadRequest, CodeInvalidJSON, fmt.Sprintf("request body must be a JSON object, not %s", typ.Value), nil)
		}
		msg := fmt.Sprintf("must be %s, not %s", jsonTypeName(typ.Type.String()), typ.Value)
		return FieldErrors(field.ErrorList{{Field: name, Code: field.CodeInvalid, Message: msg}})
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		name = strings.Trim(name, `"`)
		return FieldErrors(field.ErrorList{field.Unknown(field.NewPath(name))})
	}
	return New(http.StatusBadRequest, CodeInvalidJSON, "malformed JSON: "+err.Error(), nil)
}

// jsonTypeName turns a Go type into the JSON type a client should send.
func jsonTypeName(goType string) string {
	switch {
	case goType == "string" || strings.HasSuffix(goType, "Status"):
		return "a string"
	case goType == "bool":
		return "a boolean"
	case strings.HasPrefix(goType, "int") || strings.HasPrefix(goType, "uint") || strings.HasPrefix(goType, "float"):
		return "a number"
	case strings.HasPrefix(goType, "[]"):
		return "an array"
	case strings.HasPrefix(goType, "map[") || strings.HasPrefix(goType, "struct") || strings.Contains(goType, "."):
		return "an object"
	}
	return goType
}
