package policies

import (
	"errors"
	"fmt"

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

// Check returns the problems of a policy; none means it will compile into
// every bundle.
func (c *Checker) Check(policyID string, spec *model.PolicySpec) []Problem {
	switch spec.Language {
	case model.LanguageRego:
		return c.checkRego(policyID, spec.Definition)
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
			err = c.compile(policyFile, src)
		}
		if err != nil {
			return []Problem{{Code: "internal_error", Message: "the validators translate to invalid Rego: " + err.Error()}}
		}
		return nil
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
	if problems := deniedCalls(m, c.allowed); len(problems) > 0 {
		return problems
	}
	rewritten, err := rewritePackage(src, PolicyPackagePrefix+PolicyPackage(policyID))
	if err != nil {
		return astProblems(err)
	}
	if err := c.compile(policyFile, rewritten); err != nil {
		return astProblems(err)
	}
	return nil
}

func definesAllow(m *ast.Module) bool {
	for _, r := range m.Rules {
		if ref := r.Head.Ref(); len(ref) == 1 && ref[0].Value.Compare(ast.Var("allow")) == 0 {
			return true
		}
	}
	return false
}

// compile compiles one module together with the library.
func (c *Checker) compile(file, src string) error {
	m, err := ast.ParseModuleWithOpts(file, src, parserOptions)
	if err != nil {
		return err
	}
	mods := make(map[string]*ast.Module, len(c.lib)+1)
	for k, v := range c.lib {
		mods[k] = v.Copy()
	}
	mods[file] = m
	comp := ast.NewCompiler().WithCapabilities(c.caps)
	comp.Compile(mods)
	if comp.Failed() {
		return comp.Errors
	}
	return nil
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
