package routing

import (
	"fmt"

	"github.com/gatehouse-dev/gatehouse/model"
)

// Endpoint is an API's validated method and path template, as the admin API
// and the OpenAPI importer store them.
type Endpoint struct {
	// Method is normalised: an upper-case HTTP method of Methods, or "*".
	Method   string
	Template *Template
}

// EndpointError is a method or path ParseEndpoint refused. Field is
// "method" or "path".
type EndpointError struct {
	Field string
	Err   error
}

func (e *EndpointError) Error() string { return fmt.Sprintf("%s: %v", e.Field, e.Err) }

func (e *EndpointError) Unwrap() error { return e.Err }

// ParseEndpoint validates a method (NormalizeMethod) and a path template
// (ParseTemplate). Its errors are *EndpointError.
func ParseEndpoint(method, path string) (Endpoint, error) {
	m, err := NormalizeMethod(method)
	if err != nil {
		return Endpoint{}, &EndpointError{Field: "method", Err: err}
	}
	tpl, err := ParseTemplate(path)
	if err != nil {
		return Endpoint{}, &EndpointError{Field: "path", Err: err}
	}
	return Endpoint{Method: m, Template: tpl}, nil
}

// Name is the envelope name of an API of serviceID with this endpoint
// (model.APIName of the method and the template's shape): equivalent
// routes of a service have the same name, so the store refuses the second.
func (e Endpoint) Name(serviceID string) string {
	return model.APIName(serviceID, e.Method, e.Template.Shape())
}
