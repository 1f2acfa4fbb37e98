package gateway

import (
	"encoding/json"
	"net/http"
	"strings"
)

// denialBody is the JSON body of a denial the gateway words itself (a
// denial without a policy body in the reverse proxy, a check without an
// engine): the one error shape of Gatehouse's JSON APIs
// (internal/httpapi.Error, which the gateway does not import) —
// {"status_code":403,"error":"<the decision's reason>","error_code":"forbidden"}.
type denialBody struct {
	StatusCode int    `json:"status_code"`
	Message    string `json:"error"`
	Code       string `json:"error_code"`
}

// denialJSON renders a denial body; code empty: the status's (errorCode).
func denialJSON(status int, code, message string) string {
	if code == "" {
		code = errorCode(status)
	}
	b, _ := json.Marshal(denialBody{StatusCode: status, Message: message, Code: code})
	return string(b)
}

// errorCodes are the error_code of the statuses the admin API also
// answers with (internal/httpapi's codes).
var errorCodes = map[int]string{
	http.StatusBadRequest:            "invalid_request",
	http.StatusUnauthorized:          "unauthorized",
	http.StatusForbidden:             "forbidden",
	http.StatusNotFound:              "not_found",
	http.StatusMethodNotAllowed:      "method_not_allowed",
	http.StatusRequestEntityTooLarge: "body_too_large",
	http.StatusInternalServerError:   "internal_error",
	http.StatusBadGateway:            "bad_gateway",
	http.StatusServiceUnavailable:    "unavailable",
}

// errorCode is a status's machine-readable code: the admin API's for the
// statuses it shares, else the status text in snake case ("locked",
// "too_many_requests").
func errorCode(status int) string {
	if c, ok := errorCodes[status]; ok {
		return c
	}
	text := http.StatusText(status)
	if text == "" {
		return "denied"
	}
	var b strings.Builder
	for _, r := range strings.ToLower(text) {
		switch {
		case r >= 'a' && r <= 'z' || r >= '0' && r <= '9':
			b.WriteRune(r)
		case r == ' ' || r == '-':
			b.WriteByte('_')
		}
	}
	return b.String()
}
