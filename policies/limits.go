package policies

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
)

// Limits on what a policy may be, enforced when it is saved (a 400 naming
// the field) and documented in docs/bundles.md.
const (
	// MaxDefinitionBytes bounds a Rego policy's source.
	MaxDefinitionBytes = 64 << 10
	// MaxClosureBytes bounds the Rego of a policy and of the policies it
	// uses, together (what compiling it compiles).
	MaxClosureBytes = 1 << 20
	// MaxTestsBytes bounds a policy's tests module.
	MaxTestsBytes = 64 << 10
	// MaxValidators bounds the validators of one policy.
	MaxValidators = 200
	// MaxPoliciesPerTenant bounds the policies of one tenant.
	MaxPoliciesPerTenant = 500
)

// Evaluation deadlines.
const (
	// DefaultTestTimeout bounds one evaluation of the policy test API.
	DefaultTestTimeout = 2 * time.Second
)

// deniedBuiltins are the built-in functions policies may not call unless
// the operator allows them (serve --policy-allow-builtins), with why: they
// reach outside the evaluation — the network, the host's files, the
// process —, only write into traces, which the hot path never reads, or do
// work out of proportion to their arguments in one call, which the
// evaluation deadline cannot interrupt (each was measured: seconds to
// minutes and gigabytes past a 50 ms deadline). Every other built-in is
// computation over the input and the bundle that OPA cancels at the
// deadline or whose cost follows the size of its arguments.
var deniedBuiltins = map[string]string{
	"http.send":                 "it sends HTTP requests from the authorizer",
	"net.lookup_ip_addr":        "it resolves names over the network (DNS)",
	"opa.runtime":               "it exposes the authorizer's environment variables and configuration",
	"json.match_schema":         "a schema's $ref makes it read the host's files and fetch URLs",
	"json.verify_schema":        "a schema's $ref makes it read the host's files and fetch URLs",
	"trace":                     "it only writes into evaluation traces, which decisions never read",
	"bits.lsh":                  "its result grows with the shift, in one call the evaluation deadline cannot interrupt",
	"strings.render_template":   "nested ranges make one call of unbounded work that the evaluation deadline cannot interrupt",
	"json.marshal_with_options": "an indent or prefix repeats on every line, in one call the evaluation deadline cannot interrupt",
}

// maxFormatWidth bounds the widths and precisions of sprintf verbs in
// policies (Go's fmt allows a million per verb, in one call the deadline
// cannot interrupt).
const maxFormatWidth = 1000

// DeniedBuiltins returns the names of the built-in functions policies may
// not call unless allowed, sorted.
func DeniedBuiltins() []string {
	out := make([]string, 0, len(deniedBuiltins))
	for name := range deniedBuiltins {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

// NormalizeAllowedBuiltins checks an operator's allow-list: every name must
// be one of DeniedBuiltins (every other built-in is always available). It
// returns the names sorted, without duplicates.
func NormalizeAllowedBuiltins(names []string) ([]string, error) {
	set := map[string]bool{}
	for _, n := range names {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		if _, ok := deniedBuiltins[n]; !ok {
			return nil, fmt.Errorf("built-in %q is not one policies are denied (those are %s); every other built-in is always available",
				n, strings.Join(DeniedBuiltins(), ", "))
		}
		set[n] = true
	}
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	sort.Strings(out)
	return out, nil
}

// Capabilities is what Gatehouse lets policies use: this OPA's built-ins
// minus the denied ones that allowed does not name. Network access of the
// built-ins that have it (http.send, JSON schema references) is off unless
// one of them is allowed.
func Capabilities(allowed ...string) *ast.Capabilities {
	allow := map[string]bool{}
	for _, n := range allowed {
		allow[n] = true
	}
	caps := ast.CapabilitiesForThisVersion()
	kept := caps.Builtins[:0]
	for _, b := range caps.Builtins {
		if _, denied := deniedBuiltins[b.Name]; !denied || allow[b.Name] {
			kept = append(kept, b)
		}
	}
	caps.Builtins = kept
	if !allow["http.send"] && !allow["json.match_schema"] && !allow["json.verify_schema"] {
		caps.AllowNet = []string{} // empty: no host at all (nil would mean any)
	}
	return caps
}

// deniedCalls returns a problem, at its position, for every call of a
// denied built-in that allowed does not name.
func deniedCalls(m *ast.Module, allowed map[string]bool) []Problem {
	var out []Problem
	report := func(op ast.Ref, loc *ast.Location) {
		name := op.String()
		why, denied := deniedBuiltins[name]
		if !denied || allowed[name] {
			return
		}
		p := Problem{Code: "rego_builtin_denied",
			Message: fmt.Sprintf("%s is not available to policies: %s (an operator can allow it with --policy-allow-builtins)", name, why)}
		if loc != nil {
			p.Line, p.Column = loc.Row, loc.Col
		}
		out = append(out, p)
	}
	format := func(op ast.Ref, args []*ast.Term, loc *ast.Location) {
		if op.String() != ast.Sprintf.Name || len(args) == 0 {
			return
		}
		why := ""
		if lit, ok := args[0].Value.(ast.String); !ok {
			why = "the format must be a string literal"
		} else {
			why = checkFormat(string(lit))
		}
		if why == "" {
			return
		}
		p := Problem{Code: "rego_builtin_unbounded", Message: "sprintf: " + why +
			fmt.Sprintf(" (widths and precisions at most %d, no *: one call cannot be interrupted by the evaluation deadline)", maxFormatWidth)}
		if loc != nil {
			p.Line, p.Column = loc.Row, loc.Col
		}
		out = append(out, p)
	}
	ast.WalkExprs(m, func(e *ast.Expr) bool {
		if e.IsCall() {
			terms := e.Terms.([]*ast.Term)
			report(e.Operator(), e.Location)
			format(e.Operator(), terms[1:], e.Location)
		}
		return false
	})
	ast.WalkTerms(m, func(t *ast.Term) bool {
		if c, ok := t.Value.(ast.Call); ok && len(c) > 0 {
			if op, ok := c[0].Value.(ast.Ref); ok {
				report(op, t.Location)
				format(op, c[1:], t.Location)
			}
		}
		return false
	})
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Line != out[j].Line {
			return out[i].Line < out[j].Line
		}
		return out[i].Column < out[j].Column
	})
	return out
}

// checkFormat returns why a sprintf format is refused ("" when fine): a
// width or precision over maxFormatWidth, or one taken from the arguments
// (*).
func checkFormat(f string) string {
	for i := 0; i < len(f); i++ {
		if f[i] != '%' {
			continue
		}
		i++
		if i < len(f) && f[i] == '%' {
			continue
		}
		for i < len(f) && strings.IndexByte("+-# 0", f[i]) >= 0 {
			i++
		}
		number := func(what string) string {
			if i < len(f) && f[i] == '[' { // explicit argument index
				for i < len(f) && f[i] != ']' {
					i++
				}
				i++
			}
			if i < len(f) && f[i] == '*' {
				return what + " from the arguments (*)"
			}
			n := 0
			for i < len(f) && f[i] >= '0' && f[i] <= '9' {
				if n = n*10 + int(f[i]-'0'); n > maxFormatWidth {
					return fmt.Sprintf("a %s over %d", what, maxFormatWidth)
				}
				i++
			}
			return ""
		}
		if why := number("width"); why != "" {
			return why
		}
		if i < len(f) && f[i] == '.' {
			i++
			if why := number("precision"); why != "" {
				return why
			}
		}
	}
	return ""
}

// allowedBuiltinsOf reads data.gatehouse.config.allowed_builtins from a
// bundle's data document (JSON-typed); names that are not denied
// built-ins are ignored.
func allowedBuiltinsOf(data map[string]any) []string {
	gh, _ := data[Root].(map[string]any)
	cfg, _ := gh["config"].(map[string]any)
	list, _ := cfg["allowed_builtins"].([]any)
	var out []string
	for _, x := range list {
		if s, ok := x.(string); ok {
			if _, denied := deniedBuiltins[s]; denied {
				out = append(out, s)
			}
		}
	}
	return out
}

// TimeoutError is a policy evaluation stopped at its deadline.
type TimeoutError struct {
	// PolicyID is the policy evaluated; APIID and ServiceID, when set, the
	// API whose check it was.
	PolicyID  string
	APIID     string
	ServiceID string
	Timeout   time.Duration
}

func (e *TimeoutError) Error() string {
	return fmt.Sprintf("policy %s: evaluation timed out after %s", e.PolicyID, e.Timeout)
}

// errDeadline is the cause of a context ended by WithTimeout.
var errDeadline = errors.New("policy evaluation deadline exceeded")

// WithTimeout bounds an evaluation: OPA checks the context between
// expressions (and inside built-ins that iterate, such as numbers.range)
// and stops when it ends. TimedOut tells that deadline from the caller's.
func WithTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeoutCause(ctx, d, errDeadline)
}

// TimedOut reports whether ctx, from WithTimeout, ended at its own
// deadline (rather than because its parent ended).
func TimedOut(ctx context.Context) bool {
	return errors.Is(context.Cause(ctx), errDeadline)
}
