package gateway

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/klauspost/compress/gzip"

	"github.com/gatehouse-dev/gatehouse/model"
)

// logBatch is a sealed batch: in memory (body) or on disk (path).
type logBatch struct {
	seq    uint64
	key    model.GatewayRef // the gateway the batch belongs to
	events int
	body   []byte
	path   string
	size   int64
}

// logBuffer holds the sealed batches, oldest first, within a memory
// budget (the batches being filled count too, uncompressed) and, when
// spilling, a disk budget. Batches being uploaded stay counted until done.
type logBuffer struct {
	mu         sync.Mutex
	cond       *sync.Cond
	limit      int64
	spillDir   string
	spillLimit int64
	seq        uint64
	mem, disk  []*logBatch
	memBytes   int64
	diskBytes  int64
	// closing: nothing more is pushed, takers end once the queues are
	// empty; stopped: takers end now.
	closing, stopped bool
}

var errSpillFull = errors.New("the decision log spill directory is full")

func newLogBuffer(limit int64, spillDir string, spillLimit int64) *logBuffer {
	b := &logBuffer{limit: limit, spillDir: spillDir, spillLimit: spillLimit, seq: 1}
	b.cond = sync.NewCond(&b.mu)
	return b
}

func (b *logBuffer) usage() (mem, disk int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.memBytes, b.diskBytes
}

// reserve takes n bytes of the memory budget for an event being added to
// an open batch. When the budget is used up it moves the oldest queued
// batches to disk (when spilling) to make room; it reports false when
// there is no room.
func (b *logBuffer) reserve(n int64) bool {
	for {
		b.mu.Lock()
		if b.memBytes+n <= b.limit {
			b.memBytes += n
			b.mu.Unlock()
			return true
		}
		var victim *logBatch
		if b.spillDir != "" && len(b.mem) > 0 {
			victim = b.mem[0]
			b.mem = b.mem[1:]
		}
		b.mu.Unlock()
		if victim == nil {
			return false
		}
		if err := b.spillBatch(victim); err != nil {
			b.giveBack(victim)
			return false
		}
	}
}

// release returns reserved bytes that were not used.
func (b *logBuffer) release(n int64) {
	b.mu.Lock()
	b.memBytes -= n
	b.mu.Unlock()
}

// push queues a sealed batch whose events had reserved bytes.
func (b *logBuffer) push(bt *logBatch, reserved int64) {
	b.mu.Lock()
	bt.seq = b.seq
	b.seq++
	b.memBytes += bt.size - reserved
	b.mem = append(b.mem, bt)
	b.mu.Unlock()
	b.cond.Signal()
}

// take waits for the oldest batch; false once the buffer is stopped, or
// closing and empty.
func (b *logBuffer) take() (*logBatch, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for {
		if b.stopped {
			return nil, false
		}
		switch {
		case len(b.mem) > 0 && (len(b.disk) == 0 || b.mem[0].seq < b.disk[0].seq):
			bt := b.mem[0]
			b.mem = b.mem[1:]
			return bt, true
		case len(b.disk) > 0:
			bt := b.disk[0]
			b.disk = b.disk[1:]
			return bt, true
		}
		if b.closing {
			return nil, false
		}
		b.cond.Wait()
	}
}

// insert puts a batch back into its queue in sequence order. Called with
// mu held.
func (b *logBuffer) insert(bt *logBatch) {
	q := &b.mem
	if bt.body == nil {
		q = &b.disk
	}
	i, _ := slices.BinarySearchFunc(*q, bt.seq, func(x *logBatch, seq uint64) int {
		switch {
		case x.seq < seq:
			return -1
		case x.seq > seq:
			return 1
		}
		return 0
	})
	*q = slices.Insert(*q, i, bt)
}

// giveBack returns a batch that was taken but not delivered.
func (b *logBuffer) giveBack(bt *logBatch) {
	b.mu.Lock()
	b.insert(bt)
	b.mu.Unlock()
	b.cond.Signal()
}

// done forgets a delivered (or dropped) batch.
func (b *logBuffer) done(bt *logBatch) {
	b.mu.Lock()
	if bt.body == nil && bt.path != "" {
		b.diskBytes -= bt.size
	} else {
		b.memBytes -= bt.size
	}
	path := bt.path
	bt.body = nil
	b.mu.Unlock()
	if path != "" {
		_ = os.Remove(path)
	}
}

// takeAll removes the queued batches held in memory (for Close).
func (b *logBuffer) takeAll() []*logBatch {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := b.mem
	b.mem = nil
	return out
}

func (b *logBuffer) close() {
	b.mu.Lock()
	b.closing = true
	b.mu.Unlock()
	b.cond.Broadcast()
}

func (b *logBuffer) stop() {
	b.mu.Lock()
	b.stopped = true
	b.mu.Unlock()
	b.cond.Broadcast()
}

// spillName is a spilled batch's file name: its sequence number (so a
// restart keeps the order) and event count.
func spillName(seq uint64, events int) string {
	return fmt.Sprintf("%020d-%d.json.gz", seq, events)
}

func parseSpillName(name string) (seq uint64, events int, ok bool) {
	base, found := strings.CutSuffix(name, ".json.gz")
	s, e, found2 := strings.Cut(base, "-")
	if !found || !found2 || len(s) != 20 {
		return 0, 0, false
	}
	seq, err1 := strconv.ParseUint(s, 10, 64)
	n, err2 := strconv.Atoi(e)
	return seq, n, err1 == nil && err2 == nil && n > 0
}

// spillBatch writes an in-memory batch (not in any queue) to the spill
// directory and queues it there.
func (b *logBuffer) spillBatch(bt *logBatch) error {
	b.mu.Lock()
	full := b.diskBytes+bt.size > b.spillLimit
	b.mu.Unlock()
	if full {
		return errSpillFull
	}
	path := filepath.Join(b.spillDir, bt.key.TenantID, bt.key.GatewayID, spillName(bt.seq, bt.events))
	if err := writeFileAtomic(path, bt.body); err != nil {
		return fmt.Errorf("spill decision logs: %w", err)
	}
	b.mu.Lock()
	b.memBytes -= bt.size
	b.diskBytes += bt.size
	bt.body, bt.path = nil, path
	b.insert(bt)
	b.mu.Unlock()
	b.cond.Signal()
	return nil
}

// recover queues the batches a previous logger spilled and returns how
// many events they hold.
func (b *logBuffer) recover() (int, error) {
	tenants, err := os.ReadDir(b.spillDir)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	events := 0
	var errs []error
	for _, t := range tenants {
		if !t.IsDir() {
			continue
		}
		gateways, err := os.ReadDir(filepath.Join(b.spillDir, t.Name()))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, g := range gateways {
			if !g.IsDir() {
				continue
			}
			dir := filepath.Join(b.spillDir, t.Name(), g.Name())
			files, err := os.ReadDir(dir)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			for _, f := range files {
				if strings.HasPrefix(f.Name(), ".tmp-") {
					_ = os.Remove(filepath.Join(dir, f.Name())) // an interrupted write
					continue
				}
				seq, n, ok := parseSpillName(f.Name())
				info, err := f.Info()
				if !ok || err != nil || !info.Mode().IsRegular() {
					continue
				}
				b.mu.Lock()
				b.insert(&logBatch{seq: seq, key: model.GatewayRef{TenantID: t.Name(), GatewayID: g.Name()}, events: n, path: filepath.Join(dir, f.Name()), size: info.Size()})
				b.diskBytes += info.Size()
				b.seq = max(b.seq, seq+1)
				b.mu.Unlock()
				events += n
			}
		}
	}
	return events, errors.Join(errs...)
}

// uploadLoop delivers batches until the buffer ends.
func (l *DecisionLogger) uploadLoop() {
	defer l.uploaderDone.Done()
	for {
		bt, ok := l.buf.take()
		if !ok {
			return
		}
		l.deliver(bt)
	}
}

// deliver uploads one batch, retrying with exponential backoff (and
// jitter) until it is taken or rejected; when the logger aborts, the batch
// goes back to the buffer.
func (l *DecisionLogger) deliver(bt *logBatch) {
	body := bt.body
	if body == nil {
		raw, err := os.ReadFile(bt.path)
		if err != nil {
			l.opts.Logger.Warn("cannot read spilled decision logs", "path", bt.path, "error", err.Error())
			l.buf.done(bt)
			l.buffered.Add(-int64(bt.events))
			l.drop(DropSpillError, bt.events)
			return
		}
		body = raw
	}
	batch := &LogBatch{TenantID: bt.key.TenantID, GatewayID: bt.key.GatewayID, Events: bt.events, Gzip: body}
	backoff := l.opts.RetryMin
	for {
		ctx, cancel := context.WithTimeout(l.abortCtx, l.opts.UploadTimeout)
		start := time.Now()
		err := l.opts.Sink.Send(ctx, batch)
		cancel()
		if l.opts.Metrics != nil {
			l.opts.Metrics.logUploadDuration.Observe(time.Since(start).Seconds())
		}
		switch {
		case err == nil:
			l.uploads[0].Add(1)
			l.buf.done(bt)
			l.sent.Add(uint64(bt.events))
			l.buffered.Add(-int64(bt.events))
			l.uploadResult(nil)
			return
		case errors.Is(err, ErrLogRejected):
			l.uploads[2].Add(1)
			l.buf.done(bt)
			l.buffered.Add(-int64(bt.events))
			l.drop(DropRejected, bt.events)
			l.opts.Logger.Warn("decision log batch rejected by the control plane", "events", bt.events, "error", err.Error())
			return
		}
		l.uploads[1].Add(1)
		l.uploadResult(err)
		if l.abortCtx.Err() != nil {
			l.buf.giveBack(bt)
			return
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		select {
		case <-l.abortCtx.Done():
			l.buf.giveBack(bt)
			return
		case <-time.After(wait):
		}
		backoff = min(2*backoff, l.opts.RetryMax)
	}
}

// uploadResult records the state and logs its changes (failing,
// recovered), not every attempt.
func (l *DecisionLogger) uploadResult(err error) {
	was := l.uploadsFailing()
	l.setUploadState(err)
	switch {
	case err != nil && !was:
		l.opts.Logger.Warn("decision log uploads failing; events stay buffered and are retried", "error", err.Error(),
			"buffer_limit_bytes", l.opts.BufferBytes)
	case err == nil && was:
		st := l.Status()
		l.opts.Logger.Info("decision log uploads recovered", "buffered_events", st.BufferedEvents)
	}
}

// eventEncoder renders events into the open batches of one encoder
// goroutine and seals them.
type eventEncoder struct {
	l    *DecisionLogger
	open map[model.GatewayRef]*openBatch
	// prefixes are keyed by what a prefix is made of, not by engine, so
	// that they never keep a replaced engine alive.
	prefixes map[prefixKey][]byte
	ids      idSource
	zw       *gzip.Writer
	// tokens memoises the JSON of input.gatehouse.token values.
	tokens tokenMemo
	// spare holds sealed batches' buffers for reuse.
	spare []*openBatch
}

// openBatch is a batch being filled: a JSON array without its closing
// bracket.
type openBatch struct {
	buf      bytes.Buffer
	n        int
	first    time.Time
	reserved int64
}

func newEventEncoder(l *DecisionLogger) *eventEncoder {
	return &eventEncoder{l: l, open: map[model.GatewayRef]*openBatch{}, prefixes: map[prefixKey][]byte{}, tokens: tokenMemo{}}
}

// add renders one decision into its gateway's batch (or drops it).
func (e *eventEncoder) add(it *logItem) {
	l := e.l
	key := model.GatewayRef{TenantID: it.engine.TenantID, GatewayID: it.engine.GatewayID}
	ob := e.open[key]
	if ob == nil {
		if n := len(e.spare); n > 0 {
			ob, e.spare = e.spare[n-1], e.spare[:n-1]
		} else {
			ob = &openBatch{}
		}
		ob.buf.WriteByte('[')
		e.open[key] = ob
	}
	mark := ob.buf.Len()
	if ob.n > 0 {
		ob.buf.WriteByte(',')
	}
	if err := e.render(&ob.buf, it); err != nil {
		ob.buf.Truncate(mark)
		l.buffered.Add(-1)
		l.drop(DropEncodeError, 1)
		l.opts.Logger.Debug("encode decision log event", "error", err.Error())
		return
	}
	size := int64(ob.buf.Len() - mark)
	if !l.buf.reserve(size) {
		ob.buf.Truncate(mark)
		l.buffered.Add(-1)
		l.drop(DropBufferFull, 1)
		return
	}
	ob.reserved += size
	if ob.n++; ob.n == 1 {
		ob.first = time.Now()
	}
	if ob.n >= l.opts.BatchEvents || ob.buf.Len() >= l.opts.BatchBytes {
		e.seal(key, ob)
	}
}

// sealDue seals the batches whose first event waited FlushInterval (all
// of them when all is set).
func (e *eventEncoder) sealDue(now time.Time, all bool) {
	for key, ob := range e.open {
		if all || now.Sub(ob.first) >= e.l.opts.FlushInterval {
			e.seal(key, ob)
		}
	}
}

// seal compresses a batch and queues it for upload.
func (e *eventEncoder) seal(key model.GatewayRef, ob *openBatch) {
	delete(e.open, key)
	defer e.recycle(ob)
	if ob.n == 0 {
		return
	}
	ob.buf.WriteByte(']')
	var out bytes.Buffer
	out.Grow(ob.buf.Len()/6 + 64)
	if e.zw == nil {
		e.zw, _ = gzip.NewWriterLevel(&out, gzip.BestSpeed)
	} else {
		e.zw.Reset(&out)
	}
	werr := compressYielding(e.zw, ob.buf.Bytes())
	if err := errors.Join(werr, e.zw.Close()); err != nil {
		e.l.buf.release(ob.reserved)
		e.l.buffered.Add(-int64(ob.n))
		e.l.drop(DropEncodeError, ob.n)
		return
	}
	e.l.buf.push(&logBatch{key: key, events: ob.n, body: out.Bytes(), size: int64(out.Len())}, ob.reserved)
}

// recycle keeps a sealed batch's buffer for the next batch (a few, of a
// bounded size).
func (e *eventEncoder) recycle(ob *openBatch) {
	if len(e.spare) >= 4 || ob.buf.Cap() > 2*e.l.opts.BatchBytes+(64<<10) {
		return
	}
	ob.buf.Reset()
	ob.n, ob.reserved, ob.first = 0, 0, time.Time{}
	e.spare = append(e.spare, ob)
}

// render writes OPA's decision log event (plugins/logs EventV1) for a
// decision, its input masked.
func (e *eventEncoder) render(w *bytes.Buffer, it *logItem) error {
	d := it.decision
	w.WriteString(`{"decision_id":"`)
	e.ids.write(w)
	w.WriteString(`",`)
	w.Write(e.prefix(it.engine))
	w.WriteString(`,"input":`)
	erased, masked, err := e.l.appendMaskedInputMemo(w, d.Input(), e.tokens)
	if err != nil {
		return fmt.Errorf("input: %w", err)
	}
	w.WriteString(`,"result":{"allowed":`)
	w.WriteString(strconv.FormatBool(d.Allowed))
	w.WriteString(`,"http_status":`)
	w.WriteString(strconv.Itoa(d.HTTPStatus))
	for _, f := range []struct {
		name string
		v    any
	}{{"headers", d.Headers}, {"response_headers_to_add", d.ResponseHeadersToAdd},
		{"request_headers_to_remove", d.RequestHeadersToRemove}, {"dynamic_metadata", d.DynamicMetadata}} {
		w.WriteString(`,"` + f.name + `":`)
		if err := appendJSON(w, f.v, 0); err != nil {
			return fmt.Errorf("result.%s: %w", f.name, err)
		}
	}
	for _, f := range [...]struct{ name, v string }{{"body", d.Body}, {"reason", d.Reason}, {"api_id", d.APIID},
		{"service_id", d.ServiceID}, {"policy_id", d.PolicyID}} {
		w.WriteString(`,"` + f.name + `":`)
		appendJSONString(w, f.v)
	}
	w.WriteString(`,"dry_run":`)
	w.WriteString(strconv.FormatBool(d.DryRun))
	w.WriteString(`,"policy_allowed":`)
	w.WriteString(strconv.FormatBool(d.PolicyAllowed))
	if d.TokenReason != "" {
		// Why the bearer token was refused: for the operator, never sent
		// to the client.
		w.WriteString(`,"token_reason":`)
		appendJSONString(w, d.TokenReason)
	}
	w.WriteString(`},"timestamp":"`)
	var ts [40]byte
	w.Write(it.at.UTC().AppendFormat(ts[:0], time.RFC3339Nano))
	w.WriteString(`","metrics":{"timer_gatehouse_check_ns":`)
	w.WriteString(strconv.FormatInt(it.took.Nanoseconds(), 10))
	w.WriteByte('}')
	for _, f := range [...]struct {
		name string
		v    []string
	}{{"erased", erased}, {"masked", masked}} {
		if len(f.v) == 0 {
			continue
		}
		w.WriteString(`,"` + f.name + `":[`)
		for i, p := range f.v {
			if i > 0 {
				w.WriteByte(',')
			}
			appendJSONString(w, p)
		}
		w.WriteByte(']')
	}
	if d.DryRun {
		w.WriteString(`,"custom":{"dry_run":true}`)
	}
	w.WriteByte('}')
	return nil
}

// prefix is the part of an event that only depends on the engine: labels,
// bundles and path.
func (e *eventEncoder) prefix(eng *Engine) []byte {
	key := prefixKey{eng.TenantID, eng.GatewayID, eng.Revision}
	if p, ok := e.prefixes[key]; ok {
		return p
	}
	if len(e.prefixes) >= 64 {
		clear(e.prefixes)
	}
	var w bytes.Buffer
	w.WriteString(`"labels":{"id":`)
	appendJSONString(&w, e.l.opts.InstanceID)
	w.WriteString(`,"tenant":`)
	appendJSONString(&w, eng.TenantID)
	w.WriteString(`,"gateway":`)
	appendJSONString(&w, eng.GatewayID)
	w.WriteString(`,"app":"gatehouse-authorizer"},"bundles":{"gatehouse":{"revision":`)
	appendJSONString(&w, eng.Revision)
	w.WriteString(`}},"path":"gatehouse/authz/decision"`)
	e.prefixes[key] = w.Bytes()
	return w.Bytes()
}

// prefixKey is what an event prefix depends on: the engine's gateway and
// bundle revision.
type prefixKey struct{ tenant, gateway, revision string }

// appendJSONString writes s as a JSON string (invalid UTF-8 becomes
// U+FFFD, as encoding/json does).
func appendJSONString(w *bytes.Buffer, s string) {
	const hexDigits = "0123456789abcdef"
	w.WriteByte('"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			w.WriteString(s[start:i])
			switch c {
			case '"', '\\':
				w.WriteByte('\\')
				w.WriteByte(c)
			case '\n':
				w.WriteString(`\n`)
			case '\r':
				w.WriteString(`\r`)
			case '\t':
				w.WriteString(`\t`)
			default:
				w.WriteString(`\u00`)
				w.WriteByte(hexDigits[c>>4])
				w.WriteByte(hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			w.WriteString(s[start:i])
			w.WriteString(`\ufffd`)
			i += size
			start = i
			continue
		}
		i += size
	}
	w.WriteString(s[start:])
	w.WriteByte('"')
}

// idSource makes random (version 4) UUIDs from a block of randomness read
// at once.
type idSource struct {
	pool [4096]byte
	off  int
	init bool
}

func (s *idSource) write(w *bytes.Buffer) {
	if !s.init || s.off+16 > len(s.pool) {
		_, _ = crand.Read(s.pool[:])
		s.off, s.init = 0, true
	}
	var u [16]byte
	copy(u[:], s.pool[s.off:s.off+16])
	s.off += 16
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	var out [36]byte
	hex.Encode(out[0:8], u[0:4])
	out[8] = '-'
	hex.Encode(out[9:13], u[4:6])
	out[13] = '-'
	hex.Encode(out[14:18], u[6:8])
	out[18] = '-'
	hex.Encode(out[19:23], u[8:10])
	out[23] = '-'
	hex.Encode(out[24:], u[10:])
	w.Write(out[:])
}

// yieldBytes is how much a decision log goroutine compresses between two
// yields of the processor.
const yieldBytes = 32 << 10

// compressYielding writes b to zw in pieces, yielding the processor after
// each: on a one-core authorizer a 1 MiB batch would otherwise hold it for
// milliseconds, and every check waiting behind it.
func compressYielding(zw io.Writer, b []byte) error {
	for len(b) > 0 {
		n := min(len(b), yieldBytes)
		if _, err := zw.Write(b[:n]); err != nil {
			return err
		}
		b = b[n:]
		runtime.Gosched()
	}
	return nil
}
