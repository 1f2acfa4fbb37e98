package policies

import (
	"context"
	"testing"

	"github.com/open-policy-agent/opa/v1/tester"
)

// TestRegoLibrary runs the library's own opa-test-style tests
// (policies/rego/**/*_test.rego).
func TestRegoLibrary(t *testing.T) {
	mods, err := parseLibrary(true)
	if err != nil {
		t.Fatal(err)
	}
	ch, err := tester.NewRunner().SetModules(mods).RunTests(context.Background(), nil)
	if err != nil {
		t.Fatalf("compile the library and its tests: %v", err)
	}
	n := 0
	for r := range ch {
		n++
		switch {
		case r.Error != nil:
			t.Errorf("%s.%s (%v): error: %v", r.Package, r.Name, r.Location, r.Error)
		case r.Fail:
			t.Errorf("%s.%s (%v): FAIL\n%s", r.Package, r.Name, r.Location, r.Output)
		case r.Skip:
			t.Errorf("%s.%s: skipped (todo_ tests are not allowed)", r.Package, r.Name)
		}
	}
	if n < 10 {
		t.Fatalf("only %d Rego tests ran", n)
	}
}
