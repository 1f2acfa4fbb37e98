package policies

import (
	"context"
	"strconv"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// Failure is an expression of a policy that evaluated false (or was
// undefined) while deciding: where it is in the policy's own source, its
// text, and the values of its operands then.
type Failure struct {
	// File is the module the expression is in, as the bundle names it.
	File string `json:"file"`
	// Line and Column are the expression's place in that module, which
	// are the user's own: Gatehouse only renames the package, in place.
	Line   int `json:"line"`
	Column int `json:"column"`
	// Text is the expression as evaluated (the compiler may have split
	// a line's expression: "x in input.xs" fails first at input.xs when
	// that is undefined); Source is the whole line of the source it is on.
	Text   string `json:"text"`
	Source string `json:"source,omitempty"`
	// Operands are the values the expression compared, in order (none for
	// an expression that is a single term).
	Operands []Operand `json:"operands"`
}

// Operand is one operand of a failed expression: its text and its value
// at the failure. Resolved is false when the value could not be had
// (a rule of another module, a variable never bound): Value is then nil.
// Undefined says the operand is a reference to nothing (a missing input
// member, say).
type Operand struct {
	Text      string `json:"text"`
	Value     any    `json:"value,omitempty"`
	Resolved  bool   `json:"resolved"`
	Undefined bool   `json:"undefined,omitempty"`
}

// MaxFailures bounds the failures ExplainFailures keeps.
const MaxFailures = 32

// maxOperandBytes bounds the JSON size of one operand's value; a larger
// value is replaced by a note.
const maxOperandBytes = 4096

// ExplainFailures evaluates pq on input again with a tracer and returns
// the distinct expressions that failed in the modules of sources (by file
// name, with their source text; nil keeps every module), in evaluation
// order, with their operands'
// values, at most MaxFailures; truncated says some were left out. data is
// the bundle's base data, against which data references are resolved
// (nil: they are not). Rule indexing is off, so every rule body is tried
// and the first failure of each is seen.
func ExplainFailures(ctx context.Context, pq rego.PreparedEvalQuery, input ast.Value, data ast.Value, sources map[string]string) (failures []Failure, truncated bool, err error) {
	tr := &failureTracer{input: input, data: data, sources: sources, seen: map[string]bool{}}
	_, err = pq.Eval(ctx, rego.EvalParsedInput(input), rego.EvalQueryTracer(tr), rego.EvalRuleIndexing(false))
	return tr.failures, tr.truncated, err
}

// failureTracer collects Failures from FailOp events.
type failureTracer struct {
	input, data ast.Value
	sources     map[string]string
	seen        map[string]bool
	failures    []Failure
	truncated   bool
}

func (t *failureTracer) Enabled() bool { return true }

func (t *failureTracer) Config() topdown.TraceConfig { return topdown.TraceConfig{} }

func (t *failureTracer) TraceEvent(ev topdown.Event) {
	if ev.Op != topdown.FailOp || ev.Location == nil || len(ev.Location.Text) == 0 {
		return
	}
	expr, ok := ev.Node.(*ast.Expr)
	if !ok {
		return
	}
	file := strings.TrimPrefix(ev.Location.File, "/")
	src, known := t.sources[file]
	if t.sources != nil && !known {
		return
	}
	text := string(ev.Location.Text)
	if len(text) > maxExplainLineBytes {
		text = truncateUTF8(text, maxExplainLineBytes) + "…"
	}
	key := file + ":" + strconv.Itoa(ev.Location.Row) + ":" + strconv.Itoa(ev.Location.Col) + ":" + text
	if t.seen[key] {
		return
	}
	if len(t.failures) >= MaxFailures {
		t.truncated = true
		return
	}
	t.seen[key] = true
	f := Failure{File: file, Line: ev.Location.Row, Column: ev.Location.Col, Text: text, Source: sourceLine(src, ev.Location.Row), Operands: []Operand{}}
	for _, term := range operands(expr) {
		f.Operands = append(f.Operands, t.operand(&ev, term))
	}
	t.failures = append(t.failures, f)
}

// operands are the terms an expression evaluates: a call's arguments, or
// the single term (a negated one included). Generated terms (the
// compiler's rewritten output variables) are left out.
func operands(expr *ast.Expr) []*ast.Term {
	var terms []*ast.Term
	switch x := expr.Terms.(type) {
	case *ast.Term:
		terms = []*ast.Term{x}
	case []*ast.Term:
		if len(x) > 1 {
			terms = x[1:]
		}
	case *ast.SomeDecl, *ast.Every:
		return nil
	}
	out := terms[:0:0]
	for _, term := range terms {
		if v, ok := term.Value.(ast.Var); ok && (v.IsWildcard() || v.IsGenerated()) && term.Location == nil {
			continue
		}
		out = append(out, term)
	}
	return out
}

// operand is the value of term at the event: its variables plugged, then
// an input or data reference looked up.
func (t *failureTracer) operand(ev *topdown.Event, term *ast.Term) Operand {
	op := Operand{Text: term.String()}
	if term.Location != nil && len(term.Location.Text) > 0 {
		op.Text = string(term.Location.Text)
	}
	v := plug(ev, term)
	if v == nil {
		return op
	}
	if ref, ok := v.Value.(ast.Ref); ok {
		var root ast.Value
		switch {
		case ref.HasPrefix(ast.InputRootRef):
			root = t.input
		case ref.HasPrefix(ast.DefaultRootRef):
			root = t.data
		}
		if root == nil || !ref[1:].IsGround() {
			return op
		}
		found, err := root.Find(ref[1:])
		if err != nil {
			// A base document that is not there: the reference is
			// undefined only if no rule defines it either (unknown here,
			// except under input).
			if ref.HasPrefix(ast.InputRootRef) {
				op.Resolved, op.Undefined = true, true
			}
			return op
		}
		v = ast.NewTerm(found)
	}
	if !v.IsGround() {
		return op
	}
	x, err := ast.JSON(v.Value)
	if err != nil {
		return op
	}
	if len(v.Value.String()) > maxOperandBytes {
		x = "(a value of " + strconv.Itoa(len(v.Value.String())) + " bytes, not shown)"
	}
	op.Value, op.Resolved = x, true
	return op
}

// plug is ev.Plug(term), nil when the event carries no bindings.
func plug(ev *topdown.Event, term *ast.Term) (out *ast.Term) {
	defer func() {
		if recover() != nil {
			out = nil
		}
	}()
	return ev.Plug(term)
}

// sourceLine is line n (from 1) of src, trimmed and bounded ("" when
// there is none).
func sourceLine(src string, n int) string {
	for i := 1; src != ""; i++ {
		line, rest, _ := strings.Cut(src, "\n")
		if i == n {
			line = strings.TrimSpace(line)
			if len(line) > maxExplainLineBytes {
				line = truncateUTF8(line, maxExplainLineBytes) + "…"
			}
			return line
		}
		src = rest
	}
	return ""
}

// truncateUTF8 cuts s to at most n bytes on a rune boundary.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && (s[n]&0xC0) == 0x80 {
		n--
	}
	return s[:n]
}
