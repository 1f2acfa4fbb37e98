// Package archtest holds the module's dependency rules as a test: the
// arrows docs/architecture.md draws are the only ones the code may have.
package archtest

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/gatehouse-dev/gatehouse"

// pkgImports maps each package of the module (by path relative to the
// module root) to the module packages its non-test files import, and
// records the imports of each file.
func pkgImports(t *testing.T) (pkgs map[string][]string, files map[string][]string) {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root not found at %s: %v", root, err)
	}
	pkgs, files = map[string][]string{}, map[string][]string{}
	fset := token.NewFileSet()
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); n != "." && (strings.HasPrefix(n, ".") || n == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		rel = filepath.ToSlash(rel)
		relFile, _ := filepath.Rel(root, path)
		for _, imp := range f.Imports {
			p := strings.Trim(imp.Path.Value, `"`)
			if dep, ok := strings.CutPrefix(p, module+"/"); ok {
				if !slices.Contains(pkgs[rel], dep) {
					pkgs[rel] = append(pkgs[rel], dep)
				}
				files[filepath.ToSlash(relFile)] = append(files[filepath.ToSlash(relFile)], dep)
			}
		}
		if _, ok := pkgs[rel]; !ok {
			pkgs[rel] = nil
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return pkgs, files
}

// reaches reports whether from imports to, directly or not.
func reaches(pkgs map[string][]string, from, to string) bool {
	seen := map[string]bool{}
	var walk func(p string) bool
	walk = func(p string) bool {
		if seen[p] {
			return false
		}
		seen[p] = true
		for _, d := range pkgs[p] {
			if d == to || walk(d) {
				return true
			}
		}
		return false
	}
	return walk(from)
}

func under(p, dir string) bool { return p == dir || strings.HasPrefix(p, dir+"/") }

func TestDependencyRules(t *testing.T) {
	pkgs, files := pkgImports(t)
	if len(pkgs) < 10 {
		t.Fatalf("found only %d packages; is the walk rooted at the module?", len(pkgs))
	}
	for p := range pkgs {
		// The authorizer only knows bundles, never the store.
		if under(p, "gateway") && reaches(pkgs, p, "store") {
			t.Errorf("%s imports store (directly or not); nothing under gateway/ may", p)
		}
		// The admin API is composed by cmd only.
		if !under(p, "cmd") && p != "admin" && slices.Contains(pkgs[p], "admin") {
			t.Errorf("%s imports admin; only cmd may", p)
		}
		// Shared layers never reach up into the APIs built on them.
		for _, low := range []string{"internal/httpapi", "internal/field", "resource", "model", "routing", "policies", "bundles", "store", "openapiimport"} {
			if under(p, low) {
				for _, high := range []string{"admin", "bundleservice", "cmd/gatehouse"} {
					if reaches(pkgs, p, high) {
						t.Errorf("%s reaches %s; a lower layer may not", p, high)
					}
				}
			}
		}
	}
	if reaches(pkgs, "admin", "bundleservice") || reaches(pkgs, "bundleservice", "admin") {
		t.Error("admin and the bundle service must not import each other (cmd composes them)")
	}
	// The authorizer command does not need the admin API.
	for f, deps := range files {
		if strings.HasPrefix(f, "cmd/gatehouse/authorizer") && slices.Contains(deps, "admin") {
			t.Errorf("%s imports admin; the authorizer reads the package contract from model", f)
		}
	}
}
