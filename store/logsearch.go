package store

import (
	"bytes"
	"encoding/json"
	"math/big"
	"strconv"
	"time"
	"unicode/utf8"
)

// LogFilter selects the entries of a log stream by when the store received
// them and by the fields of OPA decision log events (what "decisions"
// streams hold). The zero value matches every entry; each field set
// narrows it. An event field counts only when it has the JSON type named
// (read as PostgreSQL's jsonb reads it: member names exactly, the last of
// duplicate members): an event whose result.api_id is the number 5 has no
// api_id, and matches no APIID.
type LogFilter struct {
	// From and To bound the entry's Time (when the store received it),
	// inclusively; zero is unbounded.
	From, To time.Time
	// Since keeps the entries newer than the entry with this ID (an ID or
	// Next of an earlier listing; "" none): a follower's position.
	Since string
	// Allowed keeps the events whose result.allowed is this boolean.
	Allowed *bool
	// HTTPStatus keeps the events whose result.http_status is this
	// integer (0: any).
	HTTPStatus int
	// DecisionID keeps the events whose decision_id is this string.
	DecisionID string
	// APIID keeps the events whose result.api_id is this string.
	APIID string
	// PolicyID keeps the events whose result.policy_id is this string.
	PolicyID string
	// Subject keeps the events whose input.gatehouse.token.subject (the
	// subject of the request's valid token) is this string.
	Subject string
	// TokenReason keeps the events whose result.token_reason (why the
	// request's bearer token was refused: expired, audience_mismatch, …)
	// is this string.
	TokenReason string
}

// HasEventFields reports whether the filter reads the events' fields
// (anything but From, To and Since).
func (f *LogFilter) HasEventFields() bool {
	return f.Allowed != nil || f.HTTPStatus != 0 || f.DecisionID != "" || f.APIID != "" || f.PolicyID != "" || f.Subject != "" || f.TokenReason != ""
}

// MatchTime reports whether an entry received at t is inside From and To.
func (f *LogFilter) MatchTime(t time.Time) bool {
	return (f.From.IsZero() || !t.Before(f.From)) && (f.To.IsZero() || !t.After(f.To))
}

// MatchEvent reports whether an event with the fields d matches the
// filter's event fields (From, To and Since are not looked at).
func (f *LogFilter) MatchEvent(d *DecisionFields) bool {
	switch {
	case f.Allowed != nil && d.Outcome != outcomeOf(*f.Allowed),
		f.HTTPStatus != 0 && d.HTTPStatus != f.HTTPStatus,
		f.DecisionID != "" && d.DecisionID != f.DecisionID,
		f.APIID != "" && d.APIID != f.APIID,
		f.PolicyID != "" && d.PolicyID != f.PolicyID,
		f.Subject != "" && d.Subject != f.Subject,
		f.TokenReason != "" && d.TokenReason != f.TokenReason:
		return false
	}
	return true
}

// LogPolicyCount is how many entries matching a filter name one policy
// (result.policy_id; "" for events naming none, such as requests no API
// matched) and how many of those it allowed and denied. Total counts
// them all: Allowed + Denied is less than Total when some events have no
// boolean result.allowed.
type LogPolicyCount struct {
	PolicyID string `json:"policy_id"`
	Total    int    `json:"total"`
	Allowed  int    `json:"allowed"`
	Denied   int    `json:"denied"`
}

// Outcome is a decision event's result.allowed.
type Outcome uint8

// Outcomes of a decision event.
const (
	// OutcomeUnknown: result.allowed is missing or not a boolean.
	OutcomeUnknown Outcome = iota
	OutcomeAllowed
	OutcomeDenied
)

func outcomeOf(allowed bool) Outcome {
	if allowed {
		return OutcomeAllowed
	}
	return OutcomeDenied
}

// DecisionFields are the fields of a decision log event that a LogFilter
// reads and CountLog groups by; empty (zero) when the event lacks them or
// they have another JSON type.
type DecisionFields struct {
	DecisionID string
	Outcome    Outcome
	// HTTPStatus is result.http_status when it is an integer of magnitude
	// below 10⁹ (403, 403.0 and 4.03e2 alike), else 0.
	HTTPStatus  int
	APIID       string
	PolicyID    string
	Subject     string
	TokenReason string
}

// ParseDecisionFields reads the fields of a decision log event from its
// JSON (which must be valid, as AppendLog requires), in one pass without
// decoding the rest. It reads them as PostgreSQL reads them from jsonb
// (exact member names, escapes decoded, the last of duplicate members), so
// that both backends select the same events.
func ParseDecisionFields(data []byte) DecisionFields {
	var d DecisionFields
	s := &jsonScan{b: data}
	s.object(func(k []byte, esc bool) {
		switch {
		case keyIs(k, esc, "decision_id"):
			d.DecisionID = s.str()
		case keyIs(k, esc, "result"):
			d.Outcome, d.HTTPStatus, d.APIID, d.PolicyID, d.TokenReason = OutcomeUnknown, 0, "", "", ""
			s.object(func(k []byte, esc bool) {
				switch {
				case keyIs(k, esc, "allowed"):
					d.Outcome = s.outcome()
				case keyIs(k, esc, "http_status"):
					d.HTTPStatus = s.status()
				case keyIs(k, esc, "api_id"):
					d.APIID = s.str()
				case keyIs(k, esc, "policy_id"):
					d.PolicyID = s.str()
				case keyIs(k, esc, "token_reason"):
					d.TokenReason = s.str()
				default:
					s.skip()
				}
			})
		case keyIs(k, esc, "input"):
			d.Subject = ""
			s.object(func(k []byte, esc bool) {
				if !keyIs(k, esc, "gatehouse") {
					s.skip()
					return
				}
				d.Subject = ""
				s.object(func(k []byte, esc bool) {
					if !keyIs(k, esc, "token") {
						s.skip()
						return
					}
					d.Subject = ""
					s.object(func(k []byte, esc bool) {
						if !keyIs(k, esc, "subject") {
							s.skip()
							return
						}
						d.Subject = s.str()
					})
				})
			})
		default:
			s.skip()
		}
	})
	return d
}

// jsonScan walks valid JSON without decoding what it skips. On invalid
// input it returns nonsense, never panics.
type jsonScan struct {
	b []byte
	i int
}

func (s *jsonScan) space() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// stringBody moves past the string whose opening quote is at s.i and
// returns its raw (still escaped) content, and whether it has escapes.
func (s *jsonScan) stringBody() (raw []byte, escaped bool) {
	start := s.i + 1
	for i := start; i < len(s.b); i++ {
		switch s.b[i] {
		case '\\':
			escaped = true
			i++
		case '"':
			s.i = i + 1
			return s.b[start:i], escaped
		}
	}
	s.i = len(s.b)
	return nil, escaped
}

// skip moves past one value.
func (s *jsonScan) skip() {
	s.space()
	if s.i >= len(s.b) {
		return
	}
	switch s.b[s.i] {
	case '"':
		s.stringBody()
	case '{', '[':
		depth := 0
		for s.i < len(s.b) {
			switch s.b[s.i] {
			case '"':
				s.stringBody()
				continue
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					s.i++
					return
				}
			}
			s.i++
		}
	default:
		s.token()
	}
}

// token moves past a literal or number and returns it.
func (s *jsonScan) token() []byte {
	start := s.i
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return s.b[start:s.i]
		}
		s.i++
	}
	return s.b[start:]
}

// object calls fn with the name of each member of the object at s.i;
// fn must move past the member's value (read, skip or descend). A value
// that is not an object is skipped.
func (s *jsonScan) object(fn func(key []byte, escaped bool)) {
	s.space()
	if s.i >= len(s.b) || s.b[s.i] != '{' {
		s.skip()
		return
	}
	s.i++
	for s.i < len(s.b) {
		s.space()
		if s.i >= len(s.b) {
			return
		}
		switch s.b[s.i] {
		case '}':
			s.i++
			return
		case ',':
			s.i++
			continue
		case '"':
		default:
			s.i = len(s.b) // not valid JSON
			return
		}
		key, esc := s.stringBody()
		s.space()
		if s.i < len(s.b) && s.b[s.i] == ':' {
			s.i++
		}
		start := s.i
		fn(key, esc)
		if s.i == start { // fn read nothing: do not loop on the value
			s.skip()
		}
	}
}

// str reads a string value ("" and the value skipped when it is not one).
func (s *jsonScan) str() string {
	s.space()
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		s.skip()
		return ""
	}
	start := s.i
	raw, esc := s.stringBody()
	if !esc && utf8.Valid(raw) {
		return string(raw)
	}
	var v string
	if json.Unmarshal(s.b[start:s.i], &v) != nil {
		return ""
	}
	return v
}

// outcome reads a boolean value as an Outcome.
func (s *jsonScan) outcome() Outcome {
	s.space()
	if s.i >= len(s.b) {
		return OutcomeUnknown
	}
	switch s.b[s.i] {
	case 't', 'f':
		switch string(s.token()) {
		case "true":
			return OutcomeAllowed
		case "false":
			return OutcomeDenied
		}
		return OutcomeUnknown
	}
	s.skip()
	return OutcomeUnknown
}

// maxStatus bounds the integers read as an HTTP status (PostgreSQL's
// column is an integer; a value this large is no status anyway).
const maxStatus = 1_000_000_000

// status reads an integral number of magnitude below maxStatus (0 for
// anything else).
func (s *jsonScan) status() int {
	s.space()
	if s.i >= len(s.b) {
		return 0
	}
	if c := s.b[s.i]; c != '-' && (c < '0' || c > '9') {
		s.skip()
		return 0
	}
	tok := s.token()
	if n, err := strconv.Atoi(string(tok)); err == nil {
		if n > -maxStatus && n < maxStatus {
			return n
		}
		return 0
	}
	// 403.0, 4.03e2: exact arithmetic, on a number of bounded size (a
	// huge exponent would make big.Rat compute a huge power).
	if len(tok) > 64 {
		return 0
	}
	if i := bytes.IndexAny(tok, "eE"); i >= 0 {
		if exp, err := strconv.Atoi(string(tok[i+1:])); err != nil || exp > 40 || exp < -40 {
			return 0
		}
	}
	r, ok := new(big.Rat).SetString(string(tok))
	if !ok || !r.IsInt() || !r.Num().IsInt64() {
		return 0
	}
	if n := r.Num().Int64(); n > -maxStatus && n < maxStatus {
		return int(n)
	}
	return 0
}

// keyIs reports whether a member name (raw, escaped when esc) is name.
func keyIs(raw []byte, esc bool, name string) bool {
	if !esc {
		return string(raw) == name
	}
	var v string
	q := make([]byte, 0, len(raw)+2)
	q = append(append(append(q, '"'), raw...), '"')
	return json.Unmarshal(q, &v) == nil && v == name
}
