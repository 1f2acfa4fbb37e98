package admin

import (
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"sort"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/gin-gonic/gin"
	yaml "go.yaml.in/yaml/v3"
)

// The OpenAPI description is written by hand, one fragment per resource:
// openapi/base.yaml holds info and shared components; every other fragment
// holds "paths" and, optionally, "components". They are merged at start.
//
//go:embed openapi/*.yaml
var openAPIFragments embed.FS

// OpenAPI assembles, parses and validates the admin API description.
func OpenAPI(ctx context.Context) (*openapi3.T, error) {
	raw, err := mergeOpenAPI()
	if err != nil {
		return nil, err
	}
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(raw)
	if err != nil {
		return nil, fmt.Errorf("parse the OpenAPI description: %w", err)
	}
	if err := doc.Validate(ctx); err != nil {
		return nil, fmt.Errorf("validate the OpenAPI description: %w", err)
	}
	return doc, nil
}

func mergeOpenAPI() ([]byte, error) {
	names, err := fs.Glob(openAPIFragments, "openapi/*.yaml")
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	var doc map[string]any
	if doc, err = readFragment("openapi/base.yaml"); err != nil {
		return nil, err
	}
	paths := map[string]any{}
	doc["paths"] = paths
	components, _ := doc["components"].(map[string]any)
	if components == nil {
		components = map[string]any{}
		doc["components"] = components
	}
	for _, name := range names {
		if name == "openapi/base.yaml" {
			continue
		}
		frag, err := readFragment(name)
		if err != nil {
			return nil, err
		}
		for key, v := range frag {
			switch key {
			case "paths":
				if err := mergeInto(paths, v, name+": paths"); err != nil {
					return nil, err
				}
			case "components":
				sections, _ := v.(map[string]any)
				for section, entries := range sections {
					dst, _ := components[section].(map[string]any)
					if dst == nil {
						dst = map[string]any{}
						components[section] = dst
					}
					if err := mergeInto(dst, entries, name+": components."+section); err != nil {
						return nil, err
					}
				}
			default:
				return nil, fmt.Errorf("%s: fragments may only hold paths and components, not %q", name, key)
			}
		}
	}
	return json.Marshal(doc)
}

func readFragment(name string) (map[string]any, error) {
	b, err := openAPIFragments.ReadFile(name)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := yaml.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return m, nil
}

func mergeInto(dst map[string]any, src any, where string) error {
	entries, ok := src.(map[string]any)
	if !ok && src != nil {
		return fmt.Errorf("%s must be a mapping", where)
	}
	for k, v := range entries {
		if _, dup := dst[k]; dup {
			return fmt.Errorf("%s: %q is defined twice", where, k)
		}
		dst[k] = v
	}
	return nil
}

func (s *Server) openAPI(c *gin.Context) {
	c.Data(http.StatusOK, "application/json", s.openAPIJSON)
}

func openAPIDocument(ctx context.Context) ([]byte, error) {
	doc, err := OpenAPI(ctx)
	if err != nil {
		return nil, err
	}
	return json.Marshal(doc)
}
