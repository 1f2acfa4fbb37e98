package admin

import (
	"errors"

	"github.com/gatehouse-dev/gatehouse/routing"
)

// parseRoute validates an API's method and path template
// (routing.ParseEndpoint); a refusal is a 400 naming the field.
func parseRoute(method, path string) (routing.Endpoint, *Error) {
	ep, err := routing.ParseEndpoint(method, path)
	if err == nil {
		return ep, nil
	}
	var ee *routing.EndpointError
	if errors.As(err, &ee) {
		return routing.Endpoint{}, fieldError(ee.Field, "%s", ee.Err.Error())
	}
	return routing.Endpoint{}, fieldError("path", "%s", err.Error())
}
