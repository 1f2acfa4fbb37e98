package policies

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/topdown"

	"github.com/gatehouse-dev/gatehouse/internal/field"
	"github.com/gatehouse-dev/gatehouse/model"
)

// Replay (impact analysis): a draft of a saved policy evaluated against
// the inputs of the last logged decisions of the APIs bound to it, as the
// gateways logged them (masked fields stay masked), compared with the
// verdicts the saved policy gave then (the admin API's
// POST …/policies/{pid}/replay; docs/bundles.md, "Replay before
// publishing"). A replay takes a policy test slot and compiles as a test
// does (Tester.Check, Acquire, Prepare).

// Replay bounds.
const (
	// DefaultReplayLimit is how many logged decisions a replay takes
	// when the request does not say.
	DefaultReplayLimit = 1000
	// MaxReplayLimit is the most logged decisions one replay takes.
	MaxReplayLimit = 10000
	// MaxReplayScan is the most log events one replay reads to find its
	// decisions (events of other APIs included).
	MaxReplayScan = 100000
	// MaxReplayBytes is the most bytes of log events one replay reads
	// (events can be large: a logged request body).
	MaxReplayBytes = 256 << 20
	// MaxReplayExamples is how many flips of each direction a replay
	// describes (the newest).
	MaxReplayExamples = 10
	// ReplayTimeoutFactor: a replay runs at most this many policy test
	// deadlines (Tester.Timeout; 10 s by default).
	ReplayTimeoutFactor = 5
)

// Why a replay stopped before its limit (ReplayResult.Stopped).
const (
	// ReplayStoppedDeadline: the replay deadline passed.
	ReplayStoppedDeadline = "deadline"
	// ReplayStoppedScanLimit: MaxReplayScan events, or MaxReplayBytes
	// bytes of them, were read.
	ReplayStoppedScanLimit = "scan_limit"
)

// replayTimeoutReason is the gateway's reason for a policy that did not
// finish within the gateway's policy_timeout_ms (gateway.PolicyTimeoutReason).
const replayTimeoutReason = "policy evaluation timed out"

// LoggedDecision is one decision log event as the store keeps it.
type LoggedDecision struct {
	// GatewayID is the gateway whose log it is in.
	GatewayID string
	// ReceivedAt is when the control plane stored it.
	ReceivedAt time.Time
	// Event is OPA's decision log event (EventV1) as JSON.
	Event []byte
}

// ReplayRequest is one replay.
type ReplayRequest struct {
	// PolicyID is the saved policy the draft would replace; the
	// decisions replayed are those of the APIs bound to it.
	PolicyID string
	// Draft is checked like a policy being saved, then compiled into the
	// tenant's configuration in place of the saved policy.
	Draft model.PolicySpec
	// Limit is how many logged decisions of those APIs to take, newest
	// first (0: DefaultReplayLimit; at most MaxReplayLimit).
	Limit int
	// Config loads the tenant's configuration; it is called once the
	// replay holds a slot.
	Config func(ctx context.Context) (*Config, error)
	// Decisions yields the tenant's logged decisions (of the gateways
	// replayed), newest first, until yield returns false or ctx ends. It
	// is called once, after Config.
	Decisions func(ctx context.Context, yield func(LoggedDecision) bool) error
}

// DecisionsError is a failure of ReplayRequest.Decisions, as it returned
// it (Err).
type DecisionsError struct{ Err error }

func (e *DecisionsError) Error() string {
	return "policy replay: reading the decision logs: " + e.Err.Error()
}

// Unwrap is the error of ReplayRequest.Decisions.
func (e *DecisionsError) Unwrap() error { return e.Err }

// ReplayResult is what a draft would have changed.
type ReplayResult struct {
	PolicyID string `json:"policy_id"`
	Limit    int    `json:"limit"`
	// Scanned is how many log events were read (those of other APIs
	// included); Matched how many were decisions of the APIs bound to the
	// policy (at most Limit): Evaluated plus Skipped.
	Scanned   int           `json:"scanned"`
	Matched   int           `json:"matched"`
	Evaluated int           `json:"evaluated"`
	Skipped   ReplaySkipped `json:"skipped"`
	// Flips and Unchanged compare the policy's own verdicts: the logged
	// one (policy_allowed, which dry-run does not change) and the draft's.
	Flips     ReplayFlips     `json:"flips"`
	Unchanged ReplayUnchanged `json:"unchanged"`
	// Errors and Timeouts count the decisions whose draft evaluation
	// failed or passed the gateway's policy_timeout_ms (twice: a timeout
	// is tried again once): the gateway denies those (500, 503), and so
	// does the replay's verdict.
	Errors   int `json:"errors"`
	Timeouts int `json:"timeouts"`
	// Masked is about the fields the decision logs masked or erased.
	Masked ReplayMasked `json:"masked"`
	// APIs has one entry per API bound to the policy, by id.
	APIs []ReplayAPI `json:"apis"`
	// Examples are the newest flips, at most MaxReplayExamples of each
	// direction, newest first.
	Examples []ReplayExample `json:"examples"`
	// Oldest and Newest are the times of the oldest and newest decisions
	// evaluated.
	Oldest *time.Time `json:"oldest,omitempty"`
	Newest *time.Time `json:"newest,omitempty"`
	// Complete is false when the replay stopped before reading Limit
	// decisions or the whole log; Stopped says why (ReplayStopped*).
	Complete bool   `json:"complete"`
	Stopped  string `json:"stopped,omitempty"`
}

// ReplaySkipped counts decisions of the bound APIs that the draft would
// not decide either, so they were not evaluated.
type ReplaySkipped struct {
	// TokenInvalid: a bearer token that did not verify is denied (401)
	// before any policy runs.
	TokenInvalid int `json:"token_invalid"`
	// Unreadable: events without an input document (or not JSON).
	Unreadable int `json:"unreadable"`
}

// ReplayFlips counts the verdicts the draft changes.
type ReplayFlips struct {
	AllowToDeny int `json:"allow_to_deny"`
	DenyToAllow int `json:"deny_to_allow"`
}

// ReplayUnchanged counts the verdicts the draft keeps. StatusChanged
// counts the denials kept with another HTTP status (logged decisions not
// in dry-run only).
type ReplayUnchanged struct {
	Allowed       int `json:"allowed"`
	Denied        int `json:"denied"`
	StatusChanged int `json:"status_changed"`
}

// ReplayMasked is about the logged inputs' masked fields: decision logs
// erase credentials (the Authorization header, …) and mask the values of
// credential query parameters, and the draft sees the input as logged.
// Events counts the evaluated decisions that had such fields; Fields
// counts them by masked field (a JSON pointer, as the events name them).
// Read counts those where the draft may read a masked field — its rules,
// and those of the library and policies it calls, reference it, a member
// of it chosen at run time, or an object around it —, whose replayed
// verdict may differ from the one the real request would get; Reads are
// the draft's input references that did (input.a.b, [_] for a key chosen
// at run time).
type ReplayMasked struct {
	Events int            `json:"events"`
	Fields map[string]int `json:"fields"`
	Read   int            `json:"read"`
	Reads  []string       `json:"reads"`
}

// ReplayAPI is one bound API's share of the replay.
type ReplayAPI struct {
	APIID       string `json:"api_id"`
	Evaluated   int    `json:"evaluated"`
	AllowToDeny int    `json:"allow_to_deny"`
	DenyToAllow int    `json:"deny_to_allow"`
}

// Directions of a flip (ReplayExample.Flip).
const (
	FlipAllowToDeny = "allow_to_deny"
	FlipDenyToAllow = "deny_to_allow"
)

// ReplayExample is one decision the draft flips.
type ReplayExample struct {
	DecisionID string    `json:"decision_id"`
	GatewayID  string    `json:"gateway_id"`
	Time       time.Time `json:"time"`
	Method     string    `json:"method"`
	Path       string    `json:"path"`
	APIID      string    `json:"api_id"`
	Flip       string    `json:"flip"`
	Old        Verdict   `json:"old"`
	New        Verdict   `json:"new"`
	// ReadsMasked: the draft may read a masked field of this input
	// (ReplayMasked.Read).
	ReadsMasked bool `json:"reads_masked"`
}

// Verdict is a policy's verdict on one request. HTTPStatus is absent from
// a logged decision in dry-run (the gateway let it through); PolicyID is
// the logged decision's.
type Verdict struct {
	Allowed    bool   `json:"allowed"`
	HTTPStatus int    `json:"http_status,omitempty"`
	Reason     string `json:"reason"`
	DryRun     bool   `json:"dry_run,omitempty"`
	PolicyID   string `json:"policy_id,omitempty"`
}

// ReplayTimeout is the deadline of one replay.
func (t *Tester) ReplayTimeout() time.Duration { return ReplayTimeoutFactor * t.Timeout() }

// Replay evaluates a draft of a saved policy against logged decisions.
// Its errors: a *CheckError (a draft the Checker refuses), a
// field.ErrorList (limit out of range, CodeInvalidPolicy), ErrBusy,
// ErrWaitEnded, a *ConfigError, a *DecisionsError, or the cause of ctx
// when it ends first; anything else is a fault. A replay that reaches its
// own deadline returns what it found, not Complete.
func (t *Tester) Replay(ctx context.Context, req ReplayRequest) (*ReplayResult, error) {
	limit := req.Limit
	if limit == 0 {
		limit = DefaultReplayLimit
	}
	if limit < 1 || limit > MaxReplayLimit {
		return nil, field.ErrorList{field.Invalid(field.NewPath("limit"), "must be between 1 and %d (default %d), not %d",
			MaxReplayLimit, DefaultReplayLimit, req.Limit)}
	}
	id, spec := req.PolicyID, req.Draft
	if err := t.Check(id, &spec); err != nil {
		return nil, err
	}
	release, err := t.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	cfg, err := req.Config(ctx)
	if err != nil {
		return nil, &ConfigError{Err: err}
	}
	r := &replay{res: &ReplayResult{PolicyID: id, Limit: limit, APIs: []ReplayAPI{}, Examples: []ReplayExample{},
		Masked: ReplayMasked{Fields: map[string]int{}, Reads: []string{}}}, policyID: id, apis: map[string]*ReplayAPI{},
		timeouts: map[string]time.Duration{}, readsMasked: map[string]bool{}}
	for _, a := range cfg.APIs {
		if a.Spec.PolicyID == id {
			r.apis[a.ID] = &ReplayAPI{APIID: a.ID}
		}
	}
	for _, g := range cfg.Gateways {
		r.timeouts[g.ID] = GatewayData{PolicyTimeoutMS: g.Spec.PolicyTimeoutMS}.PolicyTimeout()
	}
	pq, compiled, err := t.Prepare(ctx, cfg, id, spec)
	if err != nil {
		return nil, err
	}
	r.pq = pq
	closure := map[string]bool{}
	for pid := range PolicyClosure(cfg.Policies, id) {
		closure[Root+"/policies/"+PolicyPackage(pid)+".rego"] = true
	}
	if r.reads, err = policyInputReads(ctx, compiled, closure, id); err != nil {
		return nil, fmt.Errorf("policy replay: %w", err)
	}
	r.needles = make([][]byte, 0, len(r.apis))
	for api := range r.apis {
		r.needles = append(r.needles, []byte(strconv.Quote(api)))
	}
	runCtx, cancel := WithTimeout(ctx, t.ReplayTimeout())
	defer cancel()
	r.res.Complete = true
	if len(r.apis) > 0 {
		err = req.Decisions(runCtx, func(d LoggedDecision) bool { return r.add(runCtx, &d) })
		switch {
		case ctx.Err() != nil:
			// The caller's context, not the replay's deadline: nothing
			// to answer.
			return nil, fmt.Errorf("policy replay: %w", context.Cause(ctx))
		case TimedOut(runCtx):
			r.stop(ReplayStoppedDeadline)
		case err != nil:
			return nil, &DecisionsError{Err: err}
		}
	}
	for _, id := range slices.Sorted(maps.Keys(r.apis)) {
		r.res.APIs = append(r.res.APIs, *r.apis[id])
	}
	r.res.Masked.Reads = append(r.res.Masked.Reads, slices.Sorted(maps.Keys(r.readsMasked))...)
	return r.res, nil
}

// replay is one replay's state.
type replay struct {
	res      *ReplayResult
	policyID string
	pq       rego.PreparedEvalQuery
	apis     map[string]*ReplayAPI
	// needles are the bound API ids as JSON strings: an event that holds
	// none of them is of another API.
	needles [][]byte
	// timeouts are the gateways' policy evaluation deadlines.
	timeouts map[string]time.Duration
	// reads is what the draft may read of its input; readsMasked the
	// reads (rendered) that touched a masked field.
	reads       inputReads
	readsMasked map[string]bool
	examples    [2]int
	// interned are the strings the decoded events share.
	interned map[string]string
	// read is how many bytes of events the replay read.
	read int
}

// stop ends the replay early for a reason.
func (r *replay) stop(why string) {
	r.res.Complete, r.res.Stopped = false, why
}

// add replays one logged decision and says whether to go on.
func (r *replay) add(ctx context.Context, d *LoggedDecision) bool {
	if ctx.Err() != nil {
		return false
	}
	if r.res.Scanned >= MaxReplayScan || r.read+len(d.Event) > MaxReplayBytes {
		r.stop(ReplayStoppedScanLimit)
		return false
	}
	r.res.Scanned++
	r.read += len(d.Event)
	if !r.mayConcern(d.Event) {
		return true
	}
	ev, ok := r.parse(d.Event)
	if !ok {
		return true // not a decision of a bound API we can tell
	}
	api := r.apis[ev.apiID]
	if api == nil {
		return true
	}
	r.res.Matched++
	switch {
	case ev.input == nil:
		r.res.Skipped.Unreadable++
	case ev.tokenInvalid:
		r.res.Skipped.TokenInvalid++
	default:
		if !r.evaluate(ctx, d, ev, api) {
			r.res.Matched--
			return false
		}
	}
	return r.res.Matched < r.res.Limit
}

// mayConcern reports whether an event names a bound API's id as a JSON
// string (a fast test before parsing it).
func (r *replay) mayConcern(event []byte) bool {
	for _, n := range r.needles {
		if bytes.Contains(event, n) {
			return true
		}
	}
	return false
}

// evaluate runs the draft on one decision's input and counts the outcome;
// false when the replay's deadline ended it (nothing counted).
func (r *replay) evaluate(ctx context.Context, d *LoggedDecision, ev *loggedEvent, api *ReplayAPI) bool {
	timeout := r.timeouts[d.GatewayID]
	if timeout == 0 {
		timeout = GatewayData{}.PolicyTimeout()
	}
	input, err := ast.InterfaceToValue(ev.input)
	if err != nil {
		r.res.Skipped.Unreadable++
		return true
	}
	now, failed, err := r.verdict(ctx, input, ev.tokenPresent, timeout)
	if err == nil && failed == evalTimedOut {
		// The control plane is not the gateway: a busy moment here must
		// not pass for a slow draft. A timeout counts when it happens
		// twice.
		now, failed, err = r.verdict(ctx, input, ev.tokenPresent, timeout)
	}
	if err != nil {
		return false
	}
	switch failed {
	case evalFailed:
		r.res.Errors++
	case evalTimedOut:
		r.res.Timeouts++
	}
	reads := false
	if len(ev.masked) > 0 {
		r.res.Masked.Events++
		for _, p := range ev.masked {
			r.res.Masked.Fields[p]++
			toks, ok := inputPointer(p)
			if !ok {
				continue
			}
			for _, read := range r.reads.touching(toks) {
				reads = true
				if len(r.readsMasked) < 64 {
					r.readsMasked[renderRead(read)] = true
				}
			}
		}
		if reads {
			r.res.Masked.Read++
		}
	}
	r.res.Evaluated++
	api.Evaluated++
	at := ev.at
	if at.IsZero() {
		at = d.ReceivedAt
	}
	if r.res.Newest == nil || at.After(*r.res.Newest) {
		r.res.Newest = &at
	}
	if r.res.Oldest == nil || at.Before(*r.res.Oldest) {
		r.res.Oldest = &at
	}
	old := ev.old
	flip := ""
	switch {
	case old.Allowed && !now.Allowed:
		flip = FlipAllowToDeny
		r.res.Flips.AllowToDeny++
		api.AllowToDeny++
	case !old.Allowed && now.Allowed:
		flip = FlipDenyToAllow
		r.res.Flips.DenyToAllow++
		api.DenyToAllow++
	case now.Allowed:
		r.res.Unchanged.Allowed++
	default:
		r.res.Unchanged.Denied++
		if !old.DryRun && old.HTTPStatus != now.HTTPStatus {
			r.res.Unchanged.StatusChanged++
		}
	}
	dir := 0
	if flip == FlipDenyToAllow {
		dir = 1
	}
	if flip != "" && r.examples[dir] < MaxReplayExamples {
		r.examples[dir]++
		r.res.Examples = append(r.res.Examples, ReplayExample{DecisionID: ev.decisionID, GatewayID: d.GatewayID, Time: at,
			Method: ev.method, Path: ev.path, APIID: ev.apiID, Flip: flip, Old: old, New: now, ReadsMasked: reads})
	}
	return true
}

// noReplayMetrics is OPA's no-op metrics: the evaluation's timers are not
// read.
var noReplayMetrics = metrics.NoOp()

// errReplayEnded: the replay's own deadline (or its caller) ended an
// evaluation.
var errReplayEnded = errors.New("the replay ended")

// How an evaluation of the draft ended (besides a verdict).
const (
	evalDone = iota
	evalFailed
	evalTimedOut
)

// verdict evaluates the draft on an input as the gateway's fast path does
// (gateway.Engine's evalPolicy): under the gateway's policy timeout,
// allow, http_status and reason read from the result with the gateway's
// defaults. A failed evaluation is the gateway's 500 denial (evalFailed),
// one past the timeout its 503 (evalTimedOut); errReplayEnded when ctx
// ended first.
func (r *replay) verdict(ctx context.Context, input ast.Value, tokenPresent bool, timeout time.Duration) (Verdict, int, error) {
	evalCtx, cancel := WithTimeout(ctx, timeout)
	defer cancel()
	// OPA would otherwise start a goroutine per evaluation to watch the
	// context; a callback on the context cancels it instead.
	stop := topdown.NewCancel()
	unwatch := context.AfterFunc(evalCtx, stop.Cancel)
	rs, err := r.pq.Eval(evalCtx, rego.EvalParsedInput(input), rego.EvalExternalCancel(stop), rego.EvalMetrics(noReplayMetrics))
	unwatch()
	switch {
	case err != nil && ctx.Err() != nil:
		return Verdict{}, evalDone, errReplayEnded
	case err != nil && TimedOut(evalCtx):
		return Verdict{HTTPStatus: 503, Reason: replayTimeoutReason}, evalTimedOut, nil
	case err != nil:
		return Verdict{HTTPStatus: 500, Reason: "policy evaluation failed: " + err.Error()}, evalFailed, nil
	}
	var res map[string]any
	if len(rs) == 1 && len(rs[0].Expressions) == 1 {
		res, _ = rs[0].Expressions[0].Value.(map[string]any)
	}
	v := Verdict{Allowed: res["allow"] == true}
	status, statusSet := jsonInt(res["http_status"])
	switch {
	case statusSet:
		v.HTTPStatus = status
	case v.Allowed:
		v.HTTPStatus = 200
	case !tokenPresent:
		v.HTTPStatus = 401
	default:
		v.HTTPStatus = 403
	}
	if s, ok := res["reason"].(string); ok {
		v.Reason = s
	} else if v.Allowed {
		v.Reason = "allowed by policy " + r.policyID
	} else {
		v.Reason = "denied by policy " + r.policyID
	}
	return v, evalDone, nil
}

// jsonInt is a JSON number that is an integer (as the gateway reads
// http_status).
func jsonInt(v any) (int, bool) {
	var f float64
	switch x := v.(type) {
	case float64:
		f = x
	case int:
		return x, true
	case interface{ Float64() (float64, error) }: // json.Number
		var err error
		if f, err = x.Float64(); err != nil {
			return 0, false
		}
	default:
		return 0, false
	}
	if f != float64(int(f)) {
		return 0, false
	}
	return int(f), true
}

// loggedEvent is what a replay reads of a decision log event.
type loggedEvent struct {
	decisionID string
	at         time.Time
	apiID      string
	method     string
	path       string
	// input is the logged (masked) input document; nil when absent.
	input map[string]any
	// tokenPresent and tokenInvalid are input.gatehouse.token's.
	tokenPresent, tokenInvalid bool
	// old is the logged verdict of the policy.
	old Verdict
	// masked lists the erased and masked fields (JSON pointers).
	masked []string
}

// maxReplayInterned bounds the strings a replay's decoder shares between
// events (object keys and short values: "attributes", "GET", …).
const maxReplayInterned = 1 << 14

// parse reads a decision log event: false when it is not a JSON object
// with a result naming an API. The events share one decoder's strings.
func (r *replay) parse(raw []byte) (*loggedEvent, bool) {
	if r.interned == nil || len(r.interned) > maxReplayInterned {
		r.interned = make(map[string]string, 256)
	}
	d := &jsonDecoder{data: raw, interned: r.interned}
	d.skipSpace()
	doc, err := d.value(0)
	if d.skipSpace(); err != nil || d.pos != len(d.data) {
		return nil, false
	}
	m, _ := doc.(map[string]any)
	result, _ := m["result"].(map[string]any)
	apiID, _ := result["api_id"].(string)
	if apiID == "" {
		return nil, false
	}
	ev := &loggedEvent{apiID: apiID}
	ev.decisionID, _ = m["decision_id"].(string)
	if ts, ok := m["timestamp"].(string); ok {
		ev.at, _ = time.Parse(time.RFC3339Nano, ts)
	}
	ev.input, _ = m["input"].(map[string]any)
	http := jsonChild(jsonChild(jsonChild(ev.input, "attributes"), "request"), "http")
	ev.method, _ = http["method"].(string)
	ev.path, _ = http["path"].(string)
	tok := jsonChild(jsonChild(ev.input, "gatehouse"), "token")
	ev.tokenPresent = tok["present"] == true
	ev.tokenInvalid = ev.tokenPresent && tok["valid"] != true
	allowed, _ := result["allowed"].(bool)
	if pa, ok := result["policy_allowed"].(bool); ok {
		allowed = pa // the policy's own verdict, whatever dry-run let through
	}
	dry, _ := result["dry_run"].(bool)
	ev.old = Verdict{Allowed: allowed, DryRun: dry}
	ev.old.Reason, _ = result["reason"].(string)
	ev.old.PolicyID, _ = result["policy_id"].(string)
	if !dry {
		ev.old.HTTPStatus, _ = jsonInt(result["http_status"])
	}
	ev.masked = append(stringList(m["erased"]), stringList(m["masked"])...)
	return ev, true
}

// jsonChild is the object member key of m (nil when m is nil or the
// member is not an object).
func jsonChild(m map[string]any, key string) map[string]any {
	c, _ := m[key].(map[string]any)
	return c
}

// stringList is a JSON array's strings.
func stringList(v any) []string {
	l, _ := v.([]any)
	out := make([]string, 0, len(l))
	for _, x := range l {
		if s, ok := x.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// inputPointer splits a JSON pointer into the input ("/input/a/b") into
// its unescaped tokens.
func inputPointer(p string) ([]string, bool) {
	rest, ok := strings.CutPrefix(p, "/input/")
	if !ok || rest == "" {
		return nil, false
	}
	toks := strings.Split(rest, "/")
	for i, t := range toks {
		toks[i] = strings.ReplaceAll(strings.ReplaceAll(t, "~1", "/"), "~0", "~")
	}
	return toks, true
}
