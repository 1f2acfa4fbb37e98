package policies

import (
	"errors"
	"fmt"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/gatehouse-dev/gatehouse/model"
)

// Checker validates policies against the built-in library, the limits
// and the built-ins policies may call. It is safe for concurrent use.
type Checker struct {
	lib     map[string]*ast.Module
	caps    *ast.Capabilities
	allowed map[string]bool
	names   []string // allowed, sorted
}

// NewChecker parses the built-in library once. allowed names the denied
// built-ins (DeniedBuiltins) policies may call all the same.
func NewChecker(allowed ...string) (*Checker, error) {
	names, err := NormalizeAllowedBuiltins(allowed)
	if err != nil {
		return nil, err
	}
	lib, err := parseLibrary(false)
	if err != nil {
		return nil, err
	}
	set := make(map[string]bool, len(names))
	for _, n := range names {
		set[n] = true
	}
	return &Checker{lib: lib, caps: Capabilities(names...), allowed: set, names: names}, nil
}

// AllowedBuiltins are the denied built-ins the Checker lets policies call,
// sorted.
func (c *Checker) AllowedBuiltins() []string { return append([]string(nil), c.names...) }

// policyFile is the file name problems in a Rego policy are reported under.
const policyFile = "policy.rego"

// Check returns the problems of a policy on its own, without its tenant:
// it parses and compiles with the library, defines allow, has no test
// rules, calls no denied built-in, its result members can have their
// types (allow is not a string, …), and its tests module (if any)
// compiles with it. References to other policies are not resolved (they
// compile as data), so their types are not known: CheckInTenant, which
// saves run, adds what needs the tenant's policies. None means it will
// compile into every bundle.
func (c *Checker) Check(policyID string, spec *model.PolicySpec) []Problem {
	switch spec.Language {
	case model.LanguageRego:
		if problems := c.checkRego(policyID, spec.Definition); len(problems) > 0 {
			return problems
		}
		return c.checkTests(policyID, spec, nil)
	case model.LanguageValidators:
		if len(spec.Validators) > MaxValidators {
			return []Problem{{Field: "validators", Code: "limit_exceeded",
				Message: fmt.Sprintf("a policy may have at most %d validators (this one has %d)", MaxValidators, len(spec.Validators))}}
		}
		if problems := ValidateValidators(spec.Validators); len(problems) > 0 {
			return problems
		}
		src, err := TranslateValidators(policyID, spec.Validators)
		if err == nil {
			_, err = c.compile(map[string]string{policyFile: src})
		}
		if err != nil {
			return []Problem{{Code: "internal_error", Message: "the validators translate to invalid Rego: " + err.Error()}}
		}
		return c.checkTests(policyID, spec, nil)
	}
	return []Problem{{Field: "language", Code: "invalid_language", Message: fmt.Sprintf("must be %q or %q", model.LanguageRego, model.LanguageValidators)}}
}

func (c *Checker) checkRego(policyID, src string) []Problem {
	if src == "" {
		return []Problem{{Field: "definition", Code: "missing_definition", Message: "a Rego policy needs a definition"}}
	}
	if len(src) > MaxDefinitionBytes {
		return []Problem{{Field: "definition", Code: "limit_exceeded",
			Message: fmt.Sprintf("must be at most %d KiB (this one is %d bytes)", MaxDefinitionBytes>>10, len(src))}}
	}
	m, err := ast.ParseModuleWithOpts(policyFile, src, parserOptions)
	if err != nil {
		return astProblems(err)
	}
	if p := checkUserPackage(m); p != nil {
		return []Problem{*p}
	}
	if !definesAllow(m) {
		return []Problem{{Line: m.Package.Location.Row, Column: m.Package.Location.Col, Code: "rego_allow_missing",
			Message: "the policy must define allow (a boolean rule)"}}
	}
	if problems := testRulesIn(m); len(problems) > 0 {
		return problems
	}
	if problems := deniedCalls(m, c.allowed); len(problems) > 0 {
		return problems
	}
	pkg := strings.TrimPrefix(PolicyPackagePrefix+PolicyPackage(policyID), "data.")
	rewritten, sm, err := rewriteRego(src, m, pkg, nil)
	if err != nil {
		return astProblems(err)
	}
	comp, err := c.compile(map[string]string{policyFile: rewritten})
	if err != nil {
		return compileProblems(err, map[string]*sourceMap{policyFile: sm})
	}
	return resultTypeProblems(comp, m, PolicyPackagePrefix+PolicyPackage(policyID), false)
}

func definesAllow(m *ast.Module) bool {
	return len(rulesNamed(m, "allow")) > 0
}

// rulesNamed are m's rules whose head is name (allow, not allow.x).
func rulesNamed(m *ast.Module, name string) []*ast.Rule {
	var out []*ast.Rule
	for _, r := range m.Rules {
		if ref := r.Head.Ref(); len(ref) == 1 && ref[0].Value.Compare(ast.Var(name)) == 0 {
			out = append(out, r)
		}
	}
	return out
}

// compile compiles modules (file → source) together with the library.
func (c *Checker) compile(files map[string]string) (*ast.Compiler, error) {
	mods := make(map[string]*ast.Module, len(c.lib)+len(files))
	for file, src := range files {
		m, err := ast.ParseModuleWithOpts(file, src, parserOptions)
		if err != nil {
			return nil, err
		}
		mods[file] = m
	}
	return c.compileParsed(mods)
}

// compileParsed compiles parsed modules (which it keeps) with copies of
// the library modules they need.
func (c *Checker) compileParsed(mods map[string]*ast.Module) (*ast.Compiler, error) {
	c.addLibrary(mods)
	comp := ast.NewCompiler().WithCapabilities(c.caps)
	comp.Compile(mods)
	if comp.Failed() {
		return nil, comp.Errors
	}
	return comp, nil
}

// compileProblems are the problems of a compile of modules whose files
// are the policy's (policyFile, testsFile: their positions mapped back to
// the author's with maps) and others (named in the message).
func compileProblems(err error, maps map[string]*sourceMap) []Problem {
	var errs ast.Errors
	if !errors.As(err, &errs) {
		return astProblems(err)
	}
	out := make([]Problem, 0, len(errs))
	for _, e := range errs {
		p := Problem{Code: e.Code, Message: e.Message}
		if e.Location != nil {
			if sm, ours := maps[e.Location.File]; ours {
				p.Line, p.Column = sm.position(e.Location.Row, e.Location.Col)
				if e.Location.File == testsFile {
					p.Field = "tests"
				}
			} else if e.Location.File != "" {
				p.Message = fmt.Sprintf("%s (in %s)", p.Message, describeFile(e.Location.File))
			}
		}
		out = append(out, p)
	}
	return out
}

// describeFile names a module of a check's compile in messages: a
// tenant's policy by its package, else the library file.
func describeFile(file string) string {
	if pkg, ok := strings.CutPrefix(file, Root+"/policies/"); ok {
		return "policy package " + strings.TrimSuffix(pkg, ".rego")
	}
	return file
}

// astProblems turns OPA parse/compile errors into problems with positions.
func astProblems(err error) []Problem {
	var errs ast.Errors
	if !errors.As(err, &errs) {
		var p *Problem
		if errors.As(err, &p) {
			return []Problem{*p}
		}
		return []Problem{{Code: "rego_error", Message: err.Error()}}
	}
	out := make([]Problem, 0, len(errs))
	for _, e := range errs {
		p := Problem{Code: e.Code, Message: e.Message}
		if e.Location != nil {
			p.Line, p.Column = e.Location.Row, e.Location.Col
			if e.Location.File != "" && e.Location.File != policyFile {
				p.Message = fmt.Sprintf("%s (in %s)", p.Message, e.Location.File)
				p.Line, p.Column = 0, 0
			}
		}
		out = append(out, p)
	}
	return out
}

// addLibrary adds to mods copies of the library modules they refer to,
// transitively: compiling the whole library costs ~50 times what a
// policy does, and a module that is not referred to cannot change a
// policy's compile (its package is its own).
func (c *Checker) addLibrary(mods map[string]*ast.Module) {
	var refs []ast.Ref
	collect := func(m *ast.Module) {
		for _, imp := range m.Imports {
			if r, ok := imp.Path.Value.(ast.Ref); ok && r[0].Equal(ast.DefaultRootDocument) {
				refs = append(refs, r)
			}
		}
		ast.WalkRefs(m, func(r ast.Ref) bool {
			if r[0].Equal(ast.DefaultRootDocument) {
				refs = append(refs, r)
			}
			return false
		})
	}
	for _, m := range mods {
		collect(m)
	}
	for added := true; added; {
		added = false
		for path, lm := range c.lib {
			if _, in := mods[path]; in || !refersTo(refs, lm.Package.Path) {
				continue
			}
			mods[path] = lm.Copy()
			collect(lm)
			added = true
		}
	}
}

// refersTo says whether one of refs may reach package pkg: it is pkg,
// under it or above it, or not static before it diverges.
func refersTo(refs []ast.Ref, pkg ast.Ref) bool {
	for _, r := range refs {
		reaches := true
		for i := 1; i < len(r) && i < len(pkg); i++ {
			s, ok := r[i].Value.(ast.String)
			if !ok {
				break // data[x]…: any document
			}
			if !pkg[i].Value.(ast.String).Equal(s) {
				reaches = false
				break
			}
		}
		if reaches {
			return true
		}
	}
	return false
}
