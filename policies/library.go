// Package policies compiles a tenant's configuration into OPA bundles: the
// built-in Rego library (rego/, embedded), one Rego package per policy
// (declarative validators are translated to Rego), the configuration as
// data, a manifest and a signature. It also validates Rego policies with
// line and column errors and evaluates policies for the policy test API.
package policies

import (
	"embed"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
)

//go:embed rego
var libraryFS embed.FS

// LibraryFile is one file of the built-in Rego library.
type LibraryFile struct {
	// Path is the file's path inside bundles, e.g. "gatehouse/lib/route.rego".
	Path   string
	Source string
}

// Library returns the built-in Rego library (without its tests), sorted by
// path. withTests also returns the _test.rego files.
func Library(withTests bool) ([]LibraryFile, error) {
	var out []LibraryFile
	err := fs.WalkDir(libraryFS, "rego", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || path.Ext(p) != ".rego" {
			return err
		}
		if strings.HasSuffix(p, "_test.rego") && !withTests {
			return nil
		}
		src, err := libraryFS.ReadFile(p)
		if err != nil {
			return err
		}
		out = append(out, LibraryFile{Path: strings.TrimPrefix(p, "rego/"), Source: string(src)})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the built-in Rego library: %w", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

// parserOptions are used for every module Gatehouse parses: Rego v1.
var parserOptions = ast.ParserOptions{RegoVersion: ast.RegoV1, ProcessAnnotation: true}

// parseLibrary parses the library modules, keyed by path.
func parseLibrary(withTests bool) (map[string]*ast.Module, error) {
	files, err := Library(withTests)
	if err != nil {
		return nil, err
	}
	mods := make(map[string]*ast.Module, len(files))
	for _, f := range files {
		m, err := ast.ParseModuleWithOpts(f.Path, f.Source, parserOptions)
		if err != nil {
			return nil, fmt.Errorf("parse built-in %s: %w", f.Path, err)
		}
		mods[f.Path] = m
	}
	return mods, nil
}
