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

// The OpenAPI description is written by hand, one fragment per resource
// kind: openapi/base.yaml holds info, security, tags and the shared
// components (the Error schema and response, Metadata, Labels, the paging
// and If-Match parameters, the ETag header); every other fragment holds
// "paths" and, optionally, "components". They are merged at start, so a new
// resource kind adds one fragment.
//
//go:embed openapi/*.yaml
var openAPIFragments embed.FS

// openAPIBase is the fragment the others are merged into.
const openAPIBase = "openapi/base.yaml"

// OpenAPI assembles, parses and validates the admin API description.
func OpenAPI(ctx context.Context) (*openapi3.T, error) {
	return loadOpenAPI(ctx, openAPIFragments)
}

// loadOpenAPI merges the fragments openapi/*.yaml of fsys, then parses and
// validates the result.
func loadOpenAPI(ctx context.Context, fsys fs.FS) (*openapi3.T, error) {
	raw, err := mergeOpenAPI(fsys)
	if err != nil {
		return nil, fmt.Errorf("assemble the OpenAPI description: %w", err)
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

// mergeOpenAPI merges the fragments into one document, as JSON. A path or a
// component (schema, parameter, response, …) defined by two fragments is an
// error naming both; so is a fragment key other than paths and components.
func mergeOpenAPI(fsys fs.FS) ([]byte, error) {
	names, err := fs.Glob(fsys, "openapi/*.yaml")
	if err != nil {
		return nil, fmt.Errorf("list the fragments: %w", err)
	}
	sort.Strings(names)
	doc, err := readFragment(fsys, openAPIBase)
	if err != nil {
		return nil, err
	}
	m := merger{origin: map[string]string{}}
	paths, err := m.section(doc, "paths", openAPIBase)
	if err != nil {
		return nil, err
	}
	components, err := m.section(doc, "components", openAPIBase)
	if err != nil {
		return nil, err
	}
	for section, entries := range components {
		if _, err := m.section(components, section, openAPIBase); err != nil {
			return nil, err
		}
		m.claim("components."+section, entries, openAPIBase)
	}
	m.claim("paths", paths, openAPIBase)
	for _, name := range names {
		if name == openAPIBase {
			continue
		}
		frag, err := readFragment(fsys, name)
		if err != nil {
			return nil, err
		}
		keys := make([]string, 0, len(frag))
		for key := range frag {
			keys = append(keys, key)
		}
		sort.Strings(keys)
		for _, key := range keys {
			switch key {
			case "paths":
				if err := m.merge(paths, "paths", frag[key], name); err != nil {
					return nil, err
				}
			case "components":
				sections, ok := frag[key].(map[string]any)
				if !ok && frag[key] != nil {
					return nil, fmt.Errorf("%s: components must be a mapping", name)
				}
				for section, entries := range sections {
					dst, err := m.section(components, section, openAPIBase)
					if err != nil {
						return nil, err
					}
					if err := m.merge(dst, "components."+section, entries, name); err != nil {
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

// merger remembers which fragment defined each path and component.
type merger struct {
	// origin maps "paths./x" or "components.schemas.X" to its fragment.
	origin map[string]string
}

// section returns parent[key] as a mapping, creating it when absent.
func (m merger) section(parent map[string]any, key, fragment string) (map[string]any, error) {
	v, ok := parent[key]
	if !ok || v == nil {
		s := map[string]any{}
		parent[key] = s
		return s, nil
	}
	s, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s: %s must be a mapping", fragment, key)
	}
	return s, nil
}

// claim records the entries of a base section as the base's.
func (m merger) claim(where string, entries any, fragment string) {
	s, _ := entries.(map[string]any)
	for k := range s {
		m.origin[where+"."+k] = fragment
	}
}

// merge adds the entries of src (a fragment's section) to dst.
func (m merger) merge(dst map[string]any, where string, src any, fragment string) error {
	entries, ok := src.(map[string]any)
	if !ok && src != nil {
		return fmt.Errorf("%s: %s must be a mapping", fragment, where)
	}
	keys := make([]string, 0, len(entries))
	for k := range entries {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if _, dup := dst[k]; dup {
			return fmt.Errorf("%s: %s %q is already defined in %s", fragment, where, k, m.origin[where+"."+k])
		}
		dst[k] = entries[k]
		m.origin[where+"."+k] = fragment
	}
	return nil
}

func readFragment(fsys fs.FS, name string) (map[string]any, error) {
	b, err := fs.ReadFile(fsys, name)
	if err != nil {
		return nil, fmt.Errorf("read fragment: %w", err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if m == nil {
		m = map[string]any{}
	}
	return m, nil
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
