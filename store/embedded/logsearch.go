package embedded

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/gatehouse-dev/gatehouse/store"
)

// Searching a log stream.
//
// Each entry's key in the logs_by_key index (stream\0tenant\0key\0seq) holds
// what a store.LogFilter reads of it: the time it was received and its
// decision fields (store.ParseDecisionFields, read once when appended), so a
// search reads the index, not the entries, and only the entries of the page
// it returns. Entries appended before the index held them (an empty value)
// are read and parsed instead.
//
// Times are non-decreasing in seq order (AppendLog never gives an entry a
// time before the newest entry's), so From stops a newest-first walk and To
// is found by a binary search over the stream's seqs. The cost of a search
// is therefore that of walking the index entries between To (or the page's
// cursor) and the page's last match, or From; counting (a page's Total,
// CountLog) walks every index entry in the window. On the 2-CPU VM of
// docs/benchmarks.md that is 0.2 to 0.5 µs an entry (20 to 50 ms for a
// gateway's default 100,000 kept events), and parsing an event's fields
// when it is appended about 3 µs (for a 1.5 KB event).

// ixVersion is the format of index values: 1 byte version, 8 bytes time
// (Unix µs), 1 byte outcome, 4 bytes http_status, then decision_id,
// api_id, policy_id, subject and token_reason, each a uvarint length and
// its bytes.
const ixVersion = 1

// logMeta is what the index holds of an entry.
type logMeta struct {
	time time.Time
	store.DecisionFields
}

func encodeLogMeta(at time.Time, d *store.DecisionFields) []byte {
	n := 14
	for _, s := range [...]string{d.DecisionID, d.APIID, d.PolicyID, d.Subject, d.TokenReason} {
		n += binary.MaxVarintLen64 + len(s)
	}
	b := make([]byte, 14, n)
	b[0] = ixVersion
	binary.BigEndian.PutUint64(b[1:9], uint64(at.UnixMicro()))
	b[9] = byte(d.Outcome)
	binary.BigEndian.PutUint32(b[10:14], uint32(int32(d.HTTPStatus)))
	for _, s := range [...]string{d.DecisionID, d.APIID, d.PolicyID, d.Subject, d.TokenReason} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	return b
}

var errBadLogMeta = errors.New("embedded store: malformed log index value")

func decodeLogMeta(v []byte, m *logMeta) error {
	if len(v) < 14 || v[0] != ixVersion {
		return errBadLogMeta
	}
	m.time = time.UnixMicro(int64(binary.BigEndian.Uint64(v[1:9]))).UTC()
	m.Outcome = store.Outcome(v[9])
	m.HTTPStatus = int(int32(binary.BigEndian.Uint32(v[10:14])))
	rest := v[14:]
	for _, dst := range [...]*string{&m.DecisionID, &m.APIID, &m.PolicyID, &m.Subject, &m.TokenReason} {
		n, w := binary.Uvarint(rest)
		if w <= 0 || uint64(len(rest)-w) < n {
			return errBadLogMeta
		}
		*dst = string(rest[w : w+int(n)])
		rest = rest[w+int(n):]
	}
	return nil
}

// readLogMeta reads an entry's index value v (key k), or the entry itself
// when v is empty (an entry appended before the index held its fields);
// ok is false when that entry is missing (skipped, as listings always
// skipped an index key without its entry).
func readLogMeta(logs *bolt.Bucket, k, v []byte, m *logMeta, withFields bool) (ok bool, err error) {
	if len(v) > 0 {
		return true, decodeLogMeta(v, m)
	}
	raw := logs.Get(k[len(k)-8:])
	if raw == nil {
		return false, nil
	}
	var e store.LogEntry
	if err := json.Unmarshal(raw, &e); err != nil {
		return false, fmt.Errorf("embedded store: log entry: %w", err)
	}
	m.time, m.DecisionFields = e.Time, store.DecisionFields{}
	if withFields {
		m.DecisionFields = store.ParseDecisionFields(e.Data)
	}
	return true, nil
}

// appendTime is the time an AppendLog in tx gives its entries: now, or the
// newest entry's time if the clock went back since it was appended.
func appendTime(tx *bolt.Tx) (time.Time, error) {
	at := now()
	_, v := tx.Bucket(bucketLogs).Cursor().Last()
	if v == nil {
		return at, nil
	}
	var last struct {
		Time time.Time `json:"time"`
	}
	if err := json.Unmarshal(v, &last); err != nil {
		return time.Time{}, fmt.Errorf("embedded store: newest log entry: %w", err)
	}
	if last.Time.After(at) {
		return last.Time, nil
	}
	return at, nil
}

// streamSearch walks one stream's index entries newest first.
type streamSearch struct {
	idx, logs *bolt.Bucket
	prefix    []byte
	f         *store.LogFilter
	since     uint64
}

func newStreamSearch(tx *bolt.Tx, st store.LogStream, f *store.LogFilter) (*streamSearch, error) {
	since, err := store.DecodeEventCursor(f.Since)
	if err != nil {
		return nil, err
	}
	return &streamSearch{idx: tx.Bucket(bucketLogIx), logs: tx.Bucket(bucketLogs), prefix: logPrefix(st), f: f, since: uint64(since)}, nil
}

// seqOf is the seq of an index key of the stream, ok false for a key of
// another stream (or none).
func (s *streamSearch) seqOf(k []byte) (uint64, bool) {
	if k == nil || len(k) != len(s.prefix)+8 || !bytes.HasPrefix(k, s.prefix) {
		return 0, false
	}
	return binary.BigEndian.Uint64(k[len(s.prefix):]), true
}

func (s *streamSearch) key(seq uint64) []byte {
	return binary.BigEndian.AppendUint64(append(make([]byte, 0, len(s.prefix)+8), s.prefix...), seq)
}

// endOfWindow is the smallest seq of the stream's entries received after
// f.To (math.MaxUint64 when there is no To or no such entry): a binary
// search over seqs, as times do not decrease with them.
func (s *streamSearch) endOfWindow() (uint64, error) {
	if s.f.To.IsZero() {
		return math.MaxUint64, nil
	}
	c := s.idx.Cursor()
	k, _ := c.Seek(s.prefix)
	first, ok := s.seqOf(k)
	if !ok {
		return math.MaxUint64, nil
	}
	k, _ = c.Seek(s.key(math.MaxUint64))
	if k == nil {
		k, _ = c.Last()
	} else {
		k, _ = c.Prev()
	}
	last, ok := s.seqOf(k)
	if !ok {
		return math.MaxUint64, nil
	}
	// Entries below lo are in the window; entries at hi and above are past it.
	lo, hi := first, last+1
	var m logMeta
	for lo < hi {
		mid := lo + (hi-lo)/2
		k, v := c.Seek(s.key(mid))
		seq, ok := s.seqOf(k)
		if !ok || seq >= hi {
			hi = mid
			continue
		}
		found, err := readLogMeta(s.logs, k, v, &m, false)
		if err != nil {
			return 0, err
		}
		if found && m.time.After(s.f.To) {
			hi = mid
		} else {
			lo = seq + 1
		}
	}
	if lo > last {
		return math.MaxUint64, nil
	}
	return lo, nil
}

// walk calls fn with each entry below the seq upper (exclusive) that
// matches the filter, newest first, until fn returns false. The entries'
// decision fields are read when the filter needs them or withFields says.
func (s *streamSearch) walk(upper uint64, withFields bool, fn func(seq uint64, m *logMeta) bool) error {
	end, err := s.endOfWindow()
	if err != nil {
		return err
	}
	upper = min(upper, end)
	c := s.idx.Cursor()
	k, v := c.Seek(s.key(upper))
	if k == nil {
		k, v = c.Last()
	} else {
		k, v = c.Prev()
	}
	match := s.f.HasEventFields()
	fields := match || withFields
	var m logMeta
	for ; ; k, v = c.Prev() {
		seq, ok := s.seqOf(k)
		if !ok || seq >= upper || seq <= s.since {
			return nil
		}
		found, err := readLogMeta(s.logs, k, v, &m, fields)
		if err != nil {
			return err
		}
		if !found {
			continue
		}
		if !s.f.From.IsZero() && m.time.Before(s.f.From) {
			return nil
		}
		if !s.f.MatchTime(m.time) || (match && !s.f.MatchEvent(&m.DecisionFields)) {
			continue
		}
		if !fn(seq, &m) {
			return nil
		}
	}
}

// entry reads the entry of seq (nil when it is missing).
func (s *streamSearch) entry(seq uint64) (*store.LogEntry, error) {
	v := s.logs.Get(u64(seq))
	if v == nil {
		return nil, nil
	}
	var e store.LogEntry
	if err := json.Unmarshal(v, &e); err != nil {
		return nil, fmt.Errorf("embedded store: log entry %d: %w", seq, err)
	}
	return &e, nil
}

// ctxCheck returns a check of ctx for a long walk: every 4096th call
// reports ctx's error (nil while it lives), so a count over a large
// window stops at the caller's deadline.
func ctxCheck(ctx context.Context) func() error {
	n := 0
	return func() error {
		if n++; n%4096 != 0 {
			return nil
		}
		return ctx.Err()
	}
}

// ListLog implements store.Runtime.
func (s *Store) ListLog(ctx context.Context, q store.LogQuery) (*store.LogPage, error) {
	after, err := store.DecodeEventCursor(q.After)
	if err != nil {
		return nil, err
	}
	upper := uint64(math.MaxUint64)
	if after > 0 {
		upper = uint64(after)
	}
	page := &store.LogPage{Items: []*store.LogEntry{}}
	err = s.db.View(func(tx *bolt.Tx) error {
		ss, err := newStreamSearch(tx, q.Stream, &q.Filter)
		if err != nil {
			return err
		}
		from := upper
		if q.WithTotal {
			from = math.MaxUint64 // the whole window is counted
		}
		var readErr error
		live := ctxCheck(ctx)
		err = ss.walk(from, false, func(seq uint64, _ *logMeta) bool {
			if readErr = live(); readErr != nil {
				return false
			}
			if q.WithTotal {
				page.Total++
			}
			if seq >= upper { // newer than the page: only counted
				return true
			}
			if q.Limit > 0 && len(page.Items) == q.Limit {
				page.Next = page.Items[len(page.Items)-1].ID // there is more
				return q.WithTotal
			}
			e, err := ss.entry(seq)
			if err != nil {
				readErr = err
				return false
			}
			if e != nil {
				page.Items = append(page.Items, e)
			}
			return true
		})
		return errors.Join(err, readErr)
	})
	return page, err
}

// CountLog implements store.Runtime with one walk of the window.
func (s *Store) CountLog(ctx context.Context, st store.LogStream, f store.LogFilter) ([]store.LogPolicyCount, error) {
	by := map[string]*store.LogPolicyCount{}
	err := s.db.View(func(tx *bolt.Tx) error {
		ss, err := newStreamSearch(tx, st, &f)
		if err != nil {
			return err
		}
		live := ctxCheck(ctx)
		var ctxErr error
		err = ss.walk(math.MaxUint64, true, func(_ uint64, m *logMeta) bool {
			if ctxErr = live(); ctxErr != nil {
				return false
			}
			c := by[m.PolicyID]
			if c == nil {
				c = &store.LogPolicyCount{PolicyID: m.PolicyID}
				by[m.PolicyID] = c
			}
			c.Total++
			switch m.Outcome {
			case store.OutcomeAllowed:
				c.Allowed++
			case store.OutcomeDenied:
				c.Denied++
			}
			return true
		})
		return errors.Join(err, ctxErr)
	})
	if err != nil {
		return nil, err
	}
	out := make([]store.LogPolicyCount, 0, len(by))
	for _, c := range by {
		out = append(out, *c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].PolicyID < out[j].PolicyID })
	return out, nil
}
