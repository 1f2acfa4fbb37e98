package gateway

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/gatehouse-dev/gatehouse/model"
)

// LogBatch is one upload of decision log events: events of one gateway,
// as the gzip-compressed JSON array OPA's decision log API takes.
type LogBatch struct {
	TenantID, GatewayID string
	// Events is how many events Gzip holds.
	Events int
	// Gzip is the body: a gzip-compressed JSON array of events.
	Gzip []byte
}

// Decode returns the batch's events.
func (b *LogBatch) Decode() ([]json.RawMessage, error) {
	zr, err := gzip.NewReader(bytes.NewReader(b.Gzip))
	if err != nil {
		return nil, fmt.Errorf("decode decision log batch: %w", err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		return nil, fmt.Errorf("decode decision log batch: %w", err)
	}
	var events []json.RawMessage
	if err := json.Unmarshal(raw, &events); err != nil {
		return nil, fmt.Errorf("decode decision log batch: %w", err)
	}
	return events, nil
}

// LogSink delivers batches of decision log events. An error wrapping
// ErrLogRejected is final (the batch is dropped and counted as rejected);
// any other error is retried with backoff.
type LogSink interface {
	Send(ctx context.Context, batch *LogBatch) error
}

// ErrLogRejected marks a batch the receiver refused for good (it is
// malformed, too large, or its gateway does not exist).
var ErrLogRejected = errors.New("decision log batch rejected")

// Reasons a decision log event is dropped
// (gatehouse_decision_logs_dropped_total{reason}).
const (
	// DropBufferFull: the byte budget (memory, and disk when spilling)
	// was used up.
	DropBufferFull = "buffer_full"
	// DropQueueFull: the decisions waiting to be encoded filled the
	// intake queue (the encoder could not keep up).
	DropQueueFull = "queue_full"
	// DropEncodeError: the event could not be rendered as JSON.
	DropEncodeError = "encode_error"
	// DropRejected: the control plane refused the batch for good.
	DropRejected = "rejected"
	// DropShutdown: the logger stopped before the event was delivered,
	// and there was no spill directory to keep it in.
	DropShutdown = "shutdown"
	// DropSpillError: a batch on disk could not be written or read back.
	DropSpillError = "spill_error"
)

// DecisionLogDropReasons lists every reason, in a stable order.
func DecisionLogDropReasons() []string { return slices.Clone(dropReasonIndex[:]) }

// DefaultMaskedHeaders are always erased from logged inputs
// (attributes.request.http.headers), whatever the letter case of the name.
var DefaultMaskedHeaders = []string{"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key"}

// DefaultMaskedQueryParameters are query parameters that carry credentials
// (OAuth tokens and codes, client secrets, passwords, API keys). Their
// values are always replaced by MaskedValue in the logged path, query and
// fragment, and they are erased from parsed_query; names are compared
// case-insensitively, after percent-decoding.
var DefaultMaskedQueryParameters = []string{
	"access_token", "id_token", "refresh_token", "token", "code", "client_secret", "client_assertion",
	"password", "api_key", "apikey", "api-key", "x-api-key", "key",
}

// MaskedValue replaces a masked query parameter's value.
const MaskedValue = "REDACTED"

// DefaultDecisionLogBufferBytes is the default memory budget of the
// decision log buffer: a minute of 5,000 decisions a second of a typical
// event (about 1.4 KB of JSON, 120 bytes in a compressed batch) fits in it
// with room to spare (docs/authorizer.md, "Decision logs").
const DefaultDecisionLogBufferBytes = 64 << 20

// DefaultDecisionLogSpillBytes is the default disk budget when spilling.
const DefaultDecisionLogSpillBytes = 1 << 30

// DecisionLogOptions configures a DecisionLogger. Zero values take the
// defaults given.
type DecisionLogOptions struct {
	Sink LogSink
	// InstanceID labels every event (labels.id), like an OPA instance id.
	InstanceID string
	// MaskedHeaders are erased from the logged input in addition to
	// DefaultMaskedHeaders (names in any letter case).
	MaskedHeaders []string
	// MaskedQueryParameters are masked in addition to
	// DefaultMaskedQueryParameters (names in any letter case).
	MaskedQueryParameters []string
	// BufferBytes bounds the memory of the events waiting to be delivered:
	// the batches being filled (uncompressed) and the sealed batches
	// (compressed), including those being uploaded. Past it, events are
	// spilled to SpillDir, or dropped (buffer_full). Default
	// DefaultDecisionLogBufferBytes.
	BufferBytes int64
	// QueueSize bounds the decisions handed over but not yet encoded
	// (default 8192); past it, decisions are dropped (queue_full).
	QueueSize int
	// BatchEvents and BatchBytes seal a batch when it holds that many
	// events or uncompressed bytes (defaults 1000, 1 MiB); FlushInterval
	// seals it when its first event is that old (default 1 s).
	BatchEvents   int
	BatchBytes    int
	FlushInterval time.Duration
	// Uploads is how many batches are uploaded at once (default 4).
	Uploads int
	// RetryMin and RetryMax bound the backoff between two attempts of a
	// failing upload (defaults 100 ms and 5 s); a batch is retried until
	// it is delivered or rejected.
	RetryMin, RetryMax time.Duration
	// UploadTimeout bounds one upload attempt (default 30 s).
	UploadTimeout time.Duration
	// SpillDir, when set, keeps batches on disk that do not fit in
	// BufferBytes, and those still undelivered when the logger is
	// closed; a logger started on the same directory delivers them.
	SpillDir string
	// SpillBytes bounds SpillDir (default DefaultDecisionLogSpillBytes).
	SpillBytes int64
	// CloseGrace is how long Close keeps retrying while uploads fail
	// before it gives up on what is left (default 2 s; with SpillDir it
	// spills at once).
	CloseGrace time.Duration
	// DropLogInterval is the least time between two log lines about
	// dropped events (default 10 s).
	DropLogInterval time.Duration
	// Mode, when set, is the decision log mode of every gateway (the
	// authorizer's --decision-logs), overriding theirs; nil applies each
	// gateway's own, from its bundle (policies.GatewayData.DecisionLogMode).
	Mode    *model.DecisionLogMode
	Metrics *Metrics
	Logger  *slog.Logger
}

func (o *DecisionLogOptions) defaults() {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	if o.BufferBytes <= 0 {
		o.BufferBytes = DefaultDecisionLogBufferBytes
	}
	if o.SpillBytes <= 0 {
		o.SpillBytes = DefaultDecisionLogSpillBytes
	}
	def(&o.QueueSize, 8192)
	def(&o.BatchEvents, 1000)
	def(&o.BatchBytes, 1<<20)
	def(&o.Uploads, 4)
	defDur(&o.FlushInterval, time.Second)
	defDur(&o.RetryMin, 100*time.Millisecond)
	defDur(&o.RetryMax, 5*time.Second)
	defDur(&o.UploadTimeout, 30*time.Second)
	defDur(&o.DropLogInterval, 10*time.Second)
	defDur(&o.CloseGrace, 2*time.Second)
	if o.RetryMax < o.RetryMin {
		o.RetryMax = o.RetryMin
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.InstanceID == "" {
		o.InstanceID = uuid.NewString()
	}
}

// DecisionLogger records decisions and delivers them to a LogSink.
//
// Log, on the request path, first applies the decision log mode (the
// override of DecisionLogOptions.Mode, else the gateway's): a decision
// the mode leaves out is only counted (skipped, by mode; it is not
// lost), at the cost of an atomic add. A decision taken it only hands
// over (a pointer to it and to its engine) to a bounded intake queue; it
// never blocks and never encodes. An encoder goroutine masks and renders the events, packs them
// into per-gateway batches and seals a batch (gzip) when it is full or a
// second old. Uploaders send sealed batches concurrently, retrying with
// exponential backoff until the sink takes them: an event is only lost
// when the byte budget is used up (or the sink rejects its batch, or the
// logger stops without a spill directory), and every loss is counted by
// reason, reported in Status and logged (at most once per
// DropLogInterval).
type DecisionLogger struct {
	opts DecisionLogOptions
	// masked and maskedParams hold lower-case header and query parameter
	// names.
	masked       map[string]bool
	maskedParams map[string]bool

	// The intake: decisions handed over, not yet encoded.
	inMu   sync.Mutex
	in     []logItem
	closed bool
	wake   chan struct{}

	buf *logBuffer

	// Counters (Status and the metrics read them).
	events   atomic.Uint64
	sent     atomic.Uint64
	buffered atomic.Int64
	queued   atomic.Int64
	dropped  [len(dropReasonIndex)]atomic.Uint64
	uploads  [3]atomic.Uint64 // ok, error, rejected
	// skipped counts the decisions left out by the mode, by kind.
	skipped [model.DecisionLogKinds]atomic.Uint64

	// samples holds each gateway's decision counter of sample:N (copy on
	// write: read without a lock, added to under samplesMu).
	samples   atomic.Pointer[map[model.GatewayRef]*atomic.Uint64]
	samplesMu sync.Mutex

	stateMu  sync.Mutex
	lastErr  string
	httpCode int
	failing  bool
	// failingSince is when uploads started failing.
	failingSince time.Time

	dropSignal chan struct{}
	// dropLogStop ends the drop log (after its last line).
	dropLogStop chan struct{}

	encoderDone  chan struct{}
	uploaderDone sync.WaitGroup
	uploadsDone  chan struct{}
	dropLogDone  chan struct{}
	// abortCtx ends uploads in flight when Close runs out of time.
	abortCtx context.Context
	abort    context.CancelFunc
	stopOnce sync.Once
	stopped  chan struct{}
}

// dropReasonIndex maps a reason to its counter.
var dropReasonIndex = [...]string{DropBufferFull, DropQueueFull, DropEncodeError, DropRejected, DropShutdown, DropSpillError}

func dropIndex(reason string) int {
	for i, r := range dropReasonIndex {
		if r == reason {
			return i
		}
	}
	panic("unknown decision log drop reason " + reason)
}

type logItem struct {
	engine   *Engine
	decision *Decision
	at       time.Time
	took     time.Duration
}

// NewDecisionLogger starts the encoder and the uploaders (and, with a
// spill directory, queues the batches a previous logger left there);
// Close flushes and stops them.
func NewDecisionLogger(opts DecisionLogOptions) *DecisionLogger {
	opts.defaults()
	if opts.Mode != nil { // the logger's own copy
		m := *opts.Mode
		opts.Mode = &m
	}
	l := &DecisionLogger{opts: opts, masked: map[string]bool{}, maskedParams: map[string]bool{},
		wake: make(chan struct{}, 1), dropSignal: make(chan struct{}, 1), encoderDone: make(chan struct{}),
		uploadsDone: make(chan struct{}), dropLogDone: make(chan struct{}), dropLogStop: make(chan struct{}), stopped: make(chan struct{})}
	for _, h := range append(slices.Clone(DefaultMaskedHeaders), opts.MaskedHeaders...) {
		l.masked[strings.ToLower(h)] = true
	}
	for _, p := range append(slices.Clone(DefaultMaskedQueryParameters), opts.MaskedQueryParameters...) {
		l.maskedParams[strings.ToLower(p)] = true
	}
	l.abortCtx, l.abort = context.WithCancel(context.Background())
	l.buf = newLogBuffer(opts.BufferBytes, opts.SpillDir, opts.SpillBytes)
	if opts.SpillDir != "" {
		n, err := l.buf.recover()
		if err != nil {
			opts.Logger.Warn("cannot read the decision log spill directory", "dir", opts.SpillDir, "error", err.Error())
		}
		if n > 0 {
			l.buffered.Add(int64(n))
			opts.Logger.Info("decision log events from a previous run queued for delivery", "events", n, "dir", opts.SpillDir)
		}
	}
	if opts.Metrics != nil {
		opts.Metrics.attachDecisionLogs(l)
	}
	go l.encodeLoop()
	for range opts.Uploads {
		l.uploaderDone.Add(1)
		go l.uploadLoop()
	}
	go func() { l.uploaderDone.Wait(); close(l.uploadsDone) }()
	go l.dropLogLoop()
	return l
}

// Log hands a decision over without blocking; the decision and its input
// must not change afterwards. A decision the mode leaves out is counted
// as skipped and nothing else (no allocation); one taken is dropped (and
// counted) when the intake queue is full or the logger is closed.
func (l *DecisionLogger) Log(e *Engine, d *Decision, at time.Time, took time.Duration) {
	if !l.take(e, d) {
		return
	}
	l.events.Add(1)
	l.inMu.Lock()
	if l.closed || len(l.in) >= l.opts.QueueSize {
		closed := l.closed
		l.inMu.Unlock()
		if closed {
			l.drop(DropShutdown, 1)
		} else {
			l.drop(DropQueueFull, 1)
		}
		return
	}
	l.in = append(l.in, logItem{engine: e, decision: d, at: at, took: took})
	first := len(l.in) == 1
	l.queued.Add(1)
	l.inMu.Unlock()
	l.buffered.Add(1)
	if first {
		select {
		case l.wake <- struct{}{}:
		default:
		}
	}
}

// Mode is the decision log mode e's decisions are logged under: the
// override (DecisionLogOptions.Mode), else the gateway's from e's bundle
// (on without an engine).
func (l *DecisionLogger) Mode(e *Engine) model.DecisionLogMode {
	if l.opts.Mode != nil {
		return *l.opts.Mode
	}
	if e == nil {
		return model.DecisionLogMode{}
	}
	return e.Config().Gateway.DecisionLogMode
}

// take reports whether the mode logs the decision, and counts it skipped
// when not. Under sample:N the first decision of each gateway and every
// Nth after it are taken, allowed or denied alike.
func (l *DecisionLogger) take(e *Engine, d *Decision) bool {
	m := l.Mode(e)
	switch m.Kind {
	case model.DecisionLogsOff:
	case model.DecisionLogsDenied:
		if !d.Allowed || (d.DryRun && !d.PolicyAllowed) {
			return true
		}
	case model.DecisionLogsSample:
		if m.N <= 1 || e == nil || (l.sampleCounter(e).Add(1)-1)%uint64(m.N) == 0 {
			return true
		}
	default:
		return true
	}
	l.skipped[m.Kind].Add(1)
	return false
}

// sampleCounter is the decision counter of e's gateway under sample:N.
func (l *DecisionLogger) sampleCounter(e *Engine) *atomic.Uint64 {
	key := model.GatewayRef{TenantID: e.TenantID, GatewayID: e.GatewayID}
	if m := l.samples.Load(); m != nil {
		if c := (*m)[key]; c != nil {
			return c
		}
	}
	l.samplesMu.Lock()
	defer l.samplesMu.Unlock()
	old := l.samples.Load()
	if old != nil {
		if c := (*old)[key]; c != nil {
			return c
		}
	}
	next := make(map[model.GatewayRef]*atomic.Uint64, 1)
	if old != nil {
		for k, v := range *old {
			next[k] = v
		}
	}
	c := new(atomic.Uint64)
	next[key] = c
	l.samples.Store(&next)
	return c
}

// drop counts n events lost for reason and wakes the rate-limited log.
func (l *DecisionLogger) drop(reason string, n int) {
	if n <= 0 {
		return
	}
	l.dropped[dropIndex(reason)].Add(uint64(n))
	select {
	case l.dropSignal <- struct{}{}:
	default:
	}
}

// DecisionLogStatus is the decision log plugin's state, as the status
// report carries it.
type DecisionLogStatus struct {
	// State is OK, or ERROR while uploads fail (Message says why).
	State    string
	Message  string
	HTTPCode int
	// Events counts decisions taken since the start, Sent those
	// delivered, Dropped those lost by reason (every reason present).
	Events  uint64
	Sent    uint64
	Dropped map[string]uint64
	// Skipped counts the decisions the mode left out, by the kind of mode
	// (off, denied, sample; every kind present). They are not lost:
	// Events does not count them.
	Skipped map[string]uint64
	// Override is the mode set for every gateway (DecisionLogOptions.Mode;
	// nil when each gateway's own applies).
	Override *model.DecisionLogMode
	// BufferedEvents waits for delivery (QueuedEvents of them not encoded
	// yet), in BufferedBytes of memory and SpilledBytes on disk.
	BufferedEvents int64
	QueuedEvents   int64
	BufferedBytes  int64
	SpilledBytes   int64
	// Uploads counts upload attempts by result (ok, error, rejected).
	Uploads map[string]uint64
}

// SkippedTotal is the sum of Skipped.
func (s DecisionLogStatus) SkippedTotal() uint64 {
	var n uint64
	for _, v := range s.Skipped {
		n += v
	}
	return n
}

// DroppedTotal is the sum of Dropped.
func (s DecisionLogStatus) DroppedTotal() uint64 {
	var n uint64
	for _, v := range s.Dropped {
		n += v
	}
	return n
}

var uploadResults = [3]string{"ok", "error", "rejected"}

// Status reports the counters and the upload state.
func (l *DecisionLogger) Status() DecisionLogStatus {
	st := DecisionLogStatus{State: "OK", Events: l.events.Load(), Sent: l.sent.Load(), Dropped: map[string]uint64{},
		BufferedEvents: max(l.buffered.Load(), 0), QueuedEvents: max(l.queued.Load(), 0), Uploads: map[string]uint64{}}
	for i, r := range dropReasonIndex {
		st.Dropped[r] = l.dropped[i].Load()
	}
	for i, r := range uploadResults {
		st.Uploads[r] = l.uploads[i].Load()
	}
	st.Skipped = make(map[string]uint64, model.DecisionLogKinds-1)
	for k := model.DecisionLogsOff; k < model.DecisionLogKinds; k++ {
		st.Skipped[k.String()] = l.skipped[k].Load()
	}
	if l.opts.Mode != nil {
		m := *l.opts.Mode
		st.Override = &m
	}
	st.BufferedBytes, st.SpilledBytes = l.buf.usage()
	l.stateMu.Lock()
	if l.failing {
		st.State, st.Message, st.HTTPCode = "ERROR", l.lastErr, l.httpCode
	}
	l.stateMu.Unlock()
	return st
}

func (l *DecisionLogger) setUploadState(err error) {
	l.stateMu.Lock()
	defer l.stateMu.Unlock()
	if err != nil && !l.failing {
		l.failingSince = time.Now()
	}
	l.failing, l.lastErr, l.httpCode = err != nil, "", 0
	if err != nil {
		l.lastErr = err.Error()
		var ue *UploadError
		if errors.As(err, &ue) {
			l.httpCode = ue.StatusCode
		}
	}
}

func (l *DecisionLogger) uploadsFailing() bool {
	failing, _ := l.failingFor()
	return failing
}

// failingFor reports whether uploads fail, and since when.
func (l *DecisionLogger) failingFor() (bool, time.Time) {
	l.stateMu.Lock()
	defer l.stateMu.Unlock()
	return l.failing, l.failingSince
}

// Close stops taking decisions, seals what is buffered and delivers it
// until ctx ends. What is still undelivered then is written to the spill
// directory, or dropped (shutdown) without one. While uploads fail, it
// does not wait for ctx: with a spill directory it spills at once,
// without one it gives up after CloseGrace.
func (l *DecisionLogger) Close(ctx context.Context) {
	l.stopOnce.Do(func() {
		defer close(l.stopped)
		l.inMu.Lock()
		l.closed = true
		l.inMu.Unlock()
		select {
		case l.wake <- struct{}{}:
		default:
		}
		<-l.encoderDone // encodes and seals what was handed over
		l.buf.close()   // uploaders end once the queue is empty
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		closing := time.Now()
	wait:
		for {
			select {
			case <-l.uploadsDone:
				break wait
			case <-ctx.Done():
				break wait
			case <-tick.C:
				failing, since := l.failingFor()
				if since.Before(closing) {
					since = closing
				}
				if failing && (l.opts.SpillDir != "" || time.Since(since) >= l.opts.CloseGrace) {
					break wait
				}
			}
		}
		l.abort()
		l.buf.stop()
		<-l.uploadsDone
		for _, b := range l.buf.takeAll() {
			if l.opts.SpillDir != "" {
				if err := l.buf.spillBatch(b); err == nil {
					continue
				} else {
					l.opts.Logger.Warn("cannot spill decision logs at shutdown", "error", err.Error())
				}
			}
			l.buf.done(b)
			l.buffered.Add(-int64(b.events))
			l.drop(DropShutdown, b.events)
		}
		close(l.dropLogStop)
		<-l.dropLogDone
	})
	select {
	case <-l.stopped:
	case <-ctx.Done():
	}
}

// dropLogLoop logs dropped events: at once after a quiet period, then at
// most once per DropLogInterval, with the counts by reason since the last
// line.
func (l *DecisionLogger) dropLogLoop() {
	defer close(l.dropLogDone)
	var logged [len(dropReasonIndex)]uint64
	var last time.Time
	var timer *time.Timer
	var fire <-chan time.Time
	emit := func() {
		last = time.Now()
		var total uint64
		args := []any{}
		for i, r := range dropReasonIndex {
			n := l.dropped[i].Load()
			if d := n - logged[i]; d > 0 {
				args = append(args, r, d)
				total += d
			}
			logged[i] = n
		}
		if total > 0 {
			st := l.Status()
			l.opts.Logger.Warn("decision log events dropped", "dropped", total, slog.Group("by_reason", args...),
				"dropped_total", st.DroppedTotal(), "buffered_events", st.BufferedEvents, "buffered_bytes", st.BufferedBytes,
				"buffer_limit_bytes", l.opts.BufferBytes)
		}
	}
	for {
		select {
		case <-l.dropLogStop:
			if timer != nil {
				timer.Stop()
			}
			emit()
			return
		case <-l.dropSignal:
			if fire != nil {
				continue
			}
			if wait := l.opts.DropLogInterval - time.Since(last); wait > 0 {
				timer = time.NewTimer(wait)
				fire = timer.C
			} else {
				emit()
			}
		case <-fire:
			fire, timer = nil, nil
			emit()
		}
	}
}

// encodeLoop masks and renders the handed-over decisions into per-gateway
// batches and seals them.
func (l *DecisionLogger) encodeLoop() {
	defer close(l.encoderDone)
	enc := newEventEncoder(l)
	tick := time.NewTicker(max(l.opts.FlushInterval/4, time.Millisecond))
	defer tick.Stop()
	var items []logItem
	for {
		select {
		case <-l.wake:
		case <-tick.C:
		}
		l.inMu.Lock()
		items, l.in = l.in, items[:0]
		closed := l.closed
		l.inMu.Unlock()
		for i := range items {
			enc.add(&items[i])
			// Checks go first: on one core, encoding a backlog in one go
			// would delay every check behind it (p99).
			runtime.Gosched()
			items[i] = logItem{}
			l.queued.Add(-1)
		}
		enc.sealDue(time.Now(), closed)
		if closed {
			l.inMu.Lock()
			empty := len(l.in) == 0
			l.inMu.Unlock()
			if empty {
				enc.sealDue(time.Now(), true)
				return
			}
		}
	}
}

// event renders OPA's decision log event (plugins/logs EventV1).
func (l *DecisionLogger) event(it logItem) (json.RawMessage, error) {
	enc := newEventEncoder(l)
	var buf bytes.Buffer
	if err := enc.render(&buf, &it); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// urlHeaders hold a URL whose query parameters are masked like the path's
// (Envoy passes the pseudo-header :path among the headers).
var urlHeaders = map[string]bool{":path": true, "referer": true, "x-envoy-original-path": true}

// mask copies the input without credentials: the masked headers are
// erased; the masked query parameters' values in the path, query, fragment
// and URL-valued headers are replaced by MaskedValue; those parameters are
// erased from parsed_query. It returns the JSON pointers of what it erased
// and masked, as OPA's decision log masking does. The input itself is not
// changed (the policy saw it).
func (l *DecisionLogger) mask(input map[string]any) (out map[string]any, erased, masked []string) {
	const httpPtr = "/input/attributes/request/http/"
	attrs, _ := input["attributes"].(map[string]any)
	req, _ := attrs["request"].(map[string]any)
	h, _ := req["http"].(map[string]any)
	changes := map[string]any{} // new values of h's keys

	if headers, _ := h["headers"].(map[string]any); len(headers) > 0 {
		kept := make(map[string]any, len(headers))
		changed := false
		for k, v := range headers {
			name := strings.ToLower(k)
			switch str, isString := v.(string); {
			case l.masked[name]:
				erased = append(erased, httpPtr+"headers/"+pointerToken(k))
				changed = true
				continue
			case urlHeaders[name] && isString:
				if m, ok := l.maskURL(str); ok {
					v, changed = m, true
					masked = append(masked, httpPtr+"headers/"+pointerToken(k))
				}
			}
			kept[k] = v
		}
		if changed {
			changes["headers"] = kept
		}
	}
	for _, key := range []string{"path", "query", "fragment"} {
		v, _ := h[key].(string)
		var m string
		var ok bool
		if key == "path" {
			m, ok = l.maskURL(v)
		} else {
			m, ok = l.maskParams(v)
		}
		if ok {
			changes[key] = m
			masked = append(masked, httpPtr+key)
		}
	}
	out = input
	if len(changes) > 0 {
		newHTTP := make(map[string]any, len(h))
		for k, v := range h {
			newHTTP[k] = v
		}
		for k, v := range changes {
			newHTTP[k] = v
		}
		out = with(input, "attributes", with(attrs, "request", with(req, "http", newHTTP)))
	}
	if pq, _ := input["parsed_query"].(map[string]any); len(pq) > 0 {
		kept := make(map[string]any, len(pq))
		for k, v := range pq {
			if l.maskedParams[strings.ToLower(k)] {
				erased = append(erased, "/input/parsed_query/"+pointerToken(k))
				continue
			}
			kept[k] = v
		}
		if len(kept) != len(pq) {
			out = with(out, "parsed_query", kept)
		}
	}
	slices.Sort(erased)
	slices.Sort(masked)
	return out, erased, masked
}

// maskURL masks the parameters of a URL's (or request path's) query and
// fragment, keeping everything else byte for byte.
func (l *DecisionLogger) maskURL(raw string) (string, bool) {
	rest, frag, hasFrag := strings.Cut(raw, "#")
	path, query, hasQuery := strings.Cut(rest, "?")
	query, qChanged := l.maskParams(query)
	frag, fChanged := l.maskParams(frag)
	if !qChanged && !fChanged {
		return raw, false
	}
	out := path
	if hasQuery {
		out += "?" + query
	}
	if hasFrag {
		out += "#" + frag
	}
	return out, true
}

// maskParams replaces the values of masked parameters in an "a=1&b=2"
// list, keeping everything else byte for byte.
func (l *DecisionLogger) maskParams(raw string) (string, bool) {
	if raw == "" {
		return raw, false
	}
	parts := strings.Split(raw, "&")
	changed := false
	for i, part := range parts {
		name, _, hasValue := strings.Cut(part, "=")
		decoded, err := url.QueryUnescape(name)
		if err != nil {
			decoded = name
		}
		if hasValue && l.maskedParams[strings.ToLower(decoded)] {
			parts[i] = name + "=" + MaskedValue
			changed = true
		}
	}
	if !changed {
		return raw, false
	}
	return strings.Join(parts, "&"), true
}

// pointerToken escapes a JSON pointer reference token (RFC 6901).
func pointerToken(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// with returns a shallow copy of m with key set to v.
func with(m map[string]any, key string, v any) map[string]any {
	out := make(map[string]any, len(m))
	for k, x := range m {
		out[k] = x
	}
	out[key] = v
	return out
}

// UploadError is a refusal by the control plane's logs endpoint.
type UploadError struct {
	StatusCode int
	Message    string
}

func (e *UploadError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("upload decision logs: HTTP %d %s", e.StatusCode, http.StatusText(e.StatusCode))
	}
	return fmt.Sprintf("upload decision logs: HTTP %d %s: %s", e.StatusCode, http.StatusText(e.StatusCode), e.Message)
}

// Unwrap makes a final refusal (400, 404, 413, 415, 422: the batch, or
// the gateway, will not become acceptable by retrying) an ErrLogRejected.
func (e *UploadError) Unwrap() error {
	switch e.StatusCode {
	case http.StatusBadRequest, http.StatusNotFound, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType,
		http.StatusUnprocessableEntity:
		return ErrLogRejected
	}
	return nil
}

// HTTPLogSink posts batches to the control plane's bundle service
// (…/opa/logs, gzip JSON array) with a gateway credential.
type HTTPLogSink struct {
	// URL is the gateway's bundle service base, …/gateways/{gw}/opa.
	URL        string
	Credential string
	Client     *http.Client
	// TenantID and GatewayID, when set, are the gateway URL names: a
	// batch of another gateway (spilled by an authorizer of another
	// gateway into the same cache directory) is rejected, never sent to
	// this one.
	TenantID, GatewayID string
}

// Send implements LogSink.
func (s *HTTPLogSink) Send(ctx context.Context, batch *LogBatch) error {
	if (s.TenantID != "" && batch.TenantID != s.TenantID) || (s.GatewayID != "" && batch.GatewayID != s.GatewayID) {
		return fmt.Errorf("%w: the batch is of gateway %s, this sink uploads for %s", ErrLogRejected,
			model.GatewayRef{TenantID: batch.TenantID, GatewayID: batch.GatewayID}, model.GatewayRef{TenantID: s.TenantID, GatewayID: s.GatewayID})
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(s.URL, "/")+"/logs", bytes.NewReader(batch.Gzip))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+s.Credential)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Content-Encoding", "gzip")
	res, err := s.client().Do(req)
	if err != nil {
		return fmt.Errorf("upload decision logs: %w", err)
	}
	defer res.Body.Close()
	if res.StatusCode/100 != 2 {
		b, _ := io.ReadAll(io.LimitReader(res.Body, 1024))
		var apiErr struct {
			Message string `json:"error"`
		}
		msg := strings.TrimSpace(string(b))
		if json.Unmarshal(b, &apiErr) == nil && apiErr.Message != "" {
			msg = apiErr.Message
		}
		return &UploadError{StatusCode: res.StatusCode, Message: msg}
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 4096)) // keep the connection
	return nil
}

func (s *HTTPLogSink) client() *http.Client {
	if s.Client != nil {
		return s.Client
	}
	return http.DefaultClient
}
