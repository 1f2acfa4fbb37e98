package policies

import (
	"context"
	"fmt"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/topdown"
	"github.com/open-policy-agent/opa/v1/topdown/lineage"
)

// Engine evaluates bundle content in-process with OPA: one compiler and one
// data store shared by every prepared query.
type Engine struct {
	compiler *ast.Compiler
	store    storage.Store
	decision rego.PreparedEvalQuery
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

// NewEngineFromModules is NewEngine for parsed modules.
func NewEngineFromModules(ctx context.Context, modules map[string]*ast.Module, data map[string]any) (*Engine, error) {
	c := ast.NewCompiler().WithCapabilities(Capabilities()).WithEnablePrintStatements(false)
	c.Compile(modules)
	if c.Failed() {
		return nil, fmt.Errorf("compile bundle: %w", c.Errors)
	}
	if data == nil {
		data = map[string]any{}
	}
	st := inmem.NewFromObjectWithOpts(data, inmem.OptRoundTripOnWrite(false), inmem.OptReturnASTValuesOnRead(true))
	e := &Engine{compiler: c, store: st}
	var err error
	if e.decision, err = e.Prepare(ctx, DecisionQuery); err != nil {
		return nil, err
	}
	return e, nil
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
	return EvalObject(ctx, e.decision, input)
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

// Explain evaluates a query with rule indexing off and returns the trace of
// the expressions that failed, one line each ("file:row: expression").
func Explain(ctx context.Context, pq rego.PreparedEvalQuery, input any) ([]string, error) {
	v, err := ast.InterfaceToValue(input)
	if err != nil {
		return nil, err
	}
	buf := topdown.NewBufferTracer()
	if _, err := pq.Eval(ctx, rego.EvalParsedInput(v), rego.EvalQueryTracer(buf), rego.EvalRuleIndexing(false)); err != nil {
		return nil, err
	}
	var lines []string
	seen := map[string]bool{}
	for _, ev := range lineage.Fails(*buf) {
		if ev.Op != topdown.FailOp || !ev.HasExpr() || ev.Location == nil || len(ev.Location.Text) == 0 {
			continue
		}
		line := fmt.Sprintf("%s:%d: %s", strings.TrimPrefix(ev.Location.File, "/"), ev.Location.Row, ev.Location.Text)
		if !seen[line] {
			seen[line] = true
			lines = append(lines, line)
		}
	}
	return lines, nil
}
