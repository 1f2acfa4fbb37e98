package policies

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// Engine evaluates bundle content in-process with OPA: one compiler and one
// data store shared by every prepared query.
type Engine struct {
	compiler *ast.Compiler
	store    storage.Store
	decision rego.PreparedEvalQuery
	// prepared says decision is prepared (NewEngine).
	prepared bool
	// entry, for an engine made for given queries (NewEngineForQueries)
	// with its data kept, prepares the decision entrypoint at its first
	// use.
	entry func(context.Context) (rego.PreparedEvalQuery, error)
}

// NewEngine compiles modules (path → source) with data and prepares the
// decision entrypoint.
func NewEngine(ctx context.Context, modules []Module, data map[string]any) (*Engine, error) {
	parsed := make(map[string]*ast.Module, len(modules))
	for _, m := range modules {
		pm, err := ast.ParseModuleWithOpts(m.Path, m.Source, parserOptions)
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", m.Path, err)
		}
		parsed[m.Path] = pm
	}
	return NewEngineFromModules(ctx, parsed, data)
}

// NewEngineFromModules is NewEngine for parsed modules. Policies may call
// the denied built-ins the bundle's data.gatehouse.config.allowed_builtins
// names, and no others.
func NewEngineFromModules(ctx context.Context, modules map[string]*ast.Module, data map[string]any) (*Engine, error) {
	c, err := compileModules(modules, data)
	if err != nil {
		return nil, err
	}
	e := &Engine{compiler: c, store: newStore(data)}
	if e.decision, err = e.Prepare(ctx, DecisionQuery); err != nil {
		return nil, err
	}
	e.prepared = true
	return e, nil
}

// NewEngineForQueries is NewEngineFromModules for an engine that only
// evaluates the given queries (the authorizer's policy queries): every
// module is compiled as there, but the data store holds only the part of
// data those queries can read (readableData), which for most bundles is a
// small part of the configuration. Prepare and PrepareTerm must only be
// given those queries. Decision (the bundle's entrypoint, which reads the
// whole configuration) is only available with keepData: the engine then
// keeps data and builds a store of all of it at the first Decision.
func NewEngineForQueries(ctx context.Context, modules map[string]*ast.Module, data map[string]any, queries []string, keepData bool) (*Engine, error) {
	c, err := compileModules(modules, data)
	if err != nil {
		return nil, err
	}
	refs := make([]ast.Ref, 0, len(queries))
	for _, q := range queries {
		r, err := ast.ParseRef(q)
		if err != nil {
			return nil, fmt.Errorf("query %s: %w", q, err)
		}
		refs = append(refs, r)
	}
	e := &Engine{compiler: c, store: newStore(readableData(c, refs, data))}
	if keepData {
		var (
			once sync.Once
			pq   rego.PreparedEvalQuery
			err  error
		)
		e.entry = func(ctx context.Context) (rego.PreparedEvalQuery, error) {
			once.Do(func() {
				full := &Engine{compiler: c, store: newStore(data)}
				pq, err = full.Prepare(ctx, DecisionQuery)
				data = nil
			})
			return pq, err
		}
	}
	return e, nil
}

// compileModules compiles a bundle's modules with the capabilities its data
// allows.
func compileModules(modules map[string]*ast.Module, data map[string]any) (*ast.Compiler, error) {
	c := ast.NewCompiler().WithCapabilities(Capabilities(allowedBuiltinsOf(data)...)).WithEnablePrintStatements(false)
	c.Compile(modules)
	if c.Failed() {
		return nil, fmt.Errorf("compile bundle: %w", c.Errors)
	}
	return c, nil
}

// newStore is an in-memory store of data holding OPA values (read without
// conversion).
func newStore(data map[string]any) storage.Store {
	if data == nil {
		data = map[string]any{}
	}
	return inmem.NewFromObjectWithOpts(data, inmem.OptRoundTripOnWrite(false), inmem.OptReturnASTValuesOnRead(true))
}

// Prepare prepares a query against the engine's compiler and data.
func (e *Engine) Prepare(ctx context.Context, query string) (rego.PreparedEvalQuery, error) {
	pq, err := rego.New(rego.Query(query), rego.Compiler(e.compiler), rego.Store(e.store)).PrepareForEval(ctx)
	if err != nil {
		return pq, fmt.Errorf("prepare %s: %w", query, err)
	}
	return pq, nil
}

// Decision evaluates data.gatehouse.authz.decision for an input document.
func (e *Engine) Decision(ctx context.Context, input any) (map[string]any, error) {
	pq := e.decision
	if e.entry != nil {
		var err error
		if pq, err = e.entry(ctx); err != nil {
			return nil, err
		}
	} else if !e.prepared {
		return nil, errors.New("this engine does not evaluate the decision entrypoint (it keeps only the data its policies read)")
	}
	return EvalObject(ctx, pq, input)
}

// EvalObject evaluates a prepared query whose single result is an object.
func EvalObject(ctx context.Context, pq rego.PreparedEvalQuery, input any, opts ...rego.EvalOption) (map[string]any, error) {
	v, err := ast.InterfaceToValue(input)
	if err != nil {
		return nil, fmt.Errorf("input: %w", err)
	}
	rs, err := pq.Eval(ctx, append(opts, rego.EvalParsedInput(v))...)
	if err != nil {
		return nil, err
	}
	if len(rs) != 1 || len(rs[0].Expressions) != 1 {
		return nil, fmt.Errorf("undefined result (%d results)", len(rs))
	}
	obj, ok := rs[0].Expressions[0].Value.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("result is a %T, not an object", rs[0].Expressions[0].Value)
	}
	return obj, nil
}

// Bounds of an explanation (the policy test API's failed expressions).
const (
	MaxExplainLines     = 100
	MaxExplainBytes     = 16 << 10
	maxExplainLineBytes = 512
)

// Explain evaluates a query with rule indexing off and returns the
// expressions that failed, one line each ("file:row: expression"), at most
// MaxExplainLines lines and MaxExplainBytes bytes (each line at most 512
// bytes); truncated says something was left out. Only those lines are
// kept while evaluating, never the whole trace. On an error (a deadline)
// the lines found so far come back with it.
func Explain(ctx context.Context, pq rego.PreparedEvalQuery, input any) (lines []string, truncated bool, err error) {
	v, err := ast.InterfaceToValue(input)
	if err != nil {
		return nil, false, err
	}
	tr := &failTracer{seen: map[string]bool{}}
	_, err = pq.Eval(ctx, rego.EvalParsedInput(v), rego.EvalQueryTracer(tr), rego.EvalRuleIndexing(false))
	return tr.lines, tr.truncated, err
}

// failTracer keeps the distinct failed expressions of an evaluation,
// within the explanation bounds.
type failTracer struct {
	lines     []string
	seen      map[string]bool
	bytes     int
	truncated bool
}

func (t *failTracer) Enabled() bool { return true }

func (t *failTracer) Config() topdown.TraceConfig { return topdown.TraceConfig{} }

func (t *failTracer) TraceEvent(ev topdown.Event) {
	if ev.Op != topdown.FailOp || !ev.HasExpr() || ev.Location == nil || len(ev.Location.Text) == 0 {
		return
	}
	text := ev.Location.Text
	cut := len(text) > maxExplainLineBytes
	if cut {
		n := maxExplainLineBytes
		for n > 0 && !utf8.RuneStart(text[n]) {
			n--
		}
		text = text[:n]
	}
	line := fmt.Sprintf("%s:%d: %s", strings.TrimPrefix(ev.Location.File, "/"), ev.Location.Row, text)
	if cut {
		line += "…"
	}
	if t.seen[line] {
		return
	}
	if len(t.lines) >= MaxExplainLines || t.bytes+len(line) > MaxExplainBytes {
		t.truncated = true
		return
	}
	t.seen[line] = true
	t.lines = append(t.lines, line)
	t.bytes += len(line)
	if cut {
		t.truncated = true
	}
}
