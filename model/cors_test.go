package model

import (
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/field"
)

func TestCORSSettingsValidate(t *testing.T) {
	p := field.NewPath("cors")
	good := []*CORSSettings{
		nil,
		{AllowedOrigins: []string{"*"}},
		{AllowedOrigins: []string{"https://app.example.com", "http://localhost:3000", "http://[::1]:8080"}, AllowCredentials: true,
			AllowedMethods: []string{"GET", "PUT"}, AllowedHeaders: []string{"Authorization"}, ExposedHeaders: []string{"X-Id"}, MaxAge: 86400},
		{AllowedOrigins: []string{"*"}, AllowedMethods: []string{"*"}, AllowedHeaders: []string{"*"}},
	}
	for _, c := range good {
		if errs := c.Validate(p); len(errs) != 0 {
			t.Errorf("%+v: %v", c, errs)
		}
	}
	for _, c := range []struct {
		cors  CORSSettings
		field string
	}{
		{CORSSettings{AllowedOrigins: []string{"*"}, AllowCredentials: true}, "cors.allow_credentials"},
		{CORSSettings{}, "cors.allowed_origins"},
		{CORSSettings{AllowedOrigins: []string{"*", "https://a.example"}}, "cors.allowed_origins[0]"},
		{CORSSettings{AllowedOrigins: []string{"https://a.example", "https://a.example"}}, "cors.allowed_origins[1]"},
		{CORSSettings{AllowedOrigins: []string{"ftp://a.example"}}, "cors.allowed_origins[0]"},
		{CORSSettings{AllowedOrigins: []string{"https://a.example/"}}, "cors.allowed_origins[0]"},
		{CORSSettings{AllowedOrigins: []string{"https://a.example?x"}}, "cors.allowed_origins[0]"},
		{CORSSettings{AllowedOrigins: []string{"https://u@a.example"}}, "cors.allowed_origins[0]"},
		{CORSSettings{AllowedOrigins: []string{"https://A.example"}}, "cors.allowed_origins[0]"},
		{CORSSettings{AllowedOrigins: []string{"https://a.example:0"}}, "cors.allowed_origins[0]"},
		{CORSSettings{AllowedOrigins: []string{"null"}}, "cors.allowed_origins[0]"},
		{CORSSettings{AllowedOrigins: []string{"*"}, AllowedMethods: []string{"get"}}, "cors.allowed_methods[0]"},
		{CORSSettings{AllowedOrigins: []string{"*"}, AllowedMethods: []string{"GET", "*"}}, "cors.allowed_methods[1]"},
		{CORSSettings{AllowedOrigins: []string{"*"}, AllowedHeaders: []string{"X-A", "x-a"}}, "cors.allowed_headers[1]"},
		{CORSSettings{AllowedOrigins: []string{"*"}, ExposedHeaders: []string{"a b"}}, "cors.exposed_headers[0]"},
		{CORSSettings{AllowedOrigins: []string{"*"}, MaxAge: -1}, "cors.max_age"},
	} {
		errs := c.cors.Validate(p)
		if len(errs) == 0 || errs[0].Field != c.field {
			t.Errorf("%+v: %v, want an error on %s", c.cors, errs, c.field)
		}
	}
	// Every problem is listed.
	if errs := (&CORSSettings{AllowedOrigins: []string{"*"}, AllowCredentials: true, MaxAge: -1}).Validate(p); len(errs) != 2 {
		t.Errorf("errors: %v", errs)
	}
	c := &CORSSettings{AllowedOrigins: []string{"https://a.example"}}
	if !c.AllowsOrigin("https://a.example") || c.AllowsOrigin("https://A.example") || c.AllowsOrigin("") ||
		!(&CORSSettings{AllowedOrigins: []string{"*"}}).AllowsOrigin("x") || (*CORSSettings)(nil).AllowsOrigin("x") {
		t.Error("AllowsOrigin")
	}
}
