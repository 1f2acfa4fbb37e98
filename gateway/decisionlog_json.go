package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/gatehouse-dev/gatehouse/policies"
	"github.com/open-policy-agent/opa/v1/ast"
)

// appendJSON writes v as JSON. It handles the generic values an input
// document and a decision are made of (maps, slices, strings, numbers,
// booleans, json.Number) without reflection, object keys sorted as
// encoding/json sorts them, and falls back to encoding/json for anything
// else. On error, w may hold part of the value: the caller truncates.
func appendJSON(w *bytes.Buffer, v any, depth int) error {
	if depth > 512 {
		return fmt.Errorf("json: nesting deeper than 512 levels")
	}
	switch x := v.(type) {
	case nil:
		w.WriteString("null")
	case string:
		appendJSONString(w, x)
	case bool:
		w.WriteString(strconv.FormatBool(x))
	case map[string]any:
		if x == nil {
			w.WriteString("null")
			return nil
		}
		var small [16]string
		keys := small[:0]
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		w.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				w.WriteByte(',')
			}
			appendJSONString(w, k)
			w.WriteByte(':')
			if err := appendJSON(w, x[k], depth+1); err != nil {
				return err
			}
		}
		w.WriteByte('}')
	case []any:
		if x == nil {
			w.WriteString("null")
			return nil
		}
		w.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				w.WriteByte(',')
			}
			if err := appendJSON(w, e, depth+1); err != nil {
				return err
			}
		}
		w.WriteByte(']')
	case []string:
		if x == nil {
			w.WriteString("null")
			return nil
		}
		w.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				w.WriteByte(',')
			}
			appendJSONString(w, e)
		}
		w.WriteByte(']')
	case map[string]string:
		if x == nil {
			w.WriteString("null")
			return nil
		}
		var small [16]string
		keys := small[:0]
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		w.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				w.WriteByte(',')
			}
			appendJSONString(w, k)
			w.WriteByte(':')
			appendJSONString(w, x[k])
		}
		w.WriteByte('}')
	case json.Number:
		if x == "" {
			w.WriteByte('0')
			return nil
		}
		if !policies.IsValidNumber(string(x)) {
			return fmt.Errorf("json: invalid number literal %q", x)
		}
		w.WriteString(string(x))
	case float64:
		return appendJSONFloat(w, x, 64)
	case float32:
		return appendJSONFloat(w, float64(x), 32)
	case int:
		w.WriteString(strconv.FormatInt(int64(x), 10))
	case int64:
		w.WriteString(strconv.FormatInt(x, 10))
	case int32:
		w.WriteString(strconv.FormatInt(int64(x), 10))
	case uint64:
		w.WriteString(strconv.FormatUint(x, 10))
	case uint32:
		w.WriteString(strconv.FormatUint(uint64(x), 10))
	default:
		raw, err := json.Marshal(x)
		if err != nil {
			return err
		}
		w.Write(raw)
	}
	return nil
}

// appendJSONFloat formats as encoding/json does.
func appendJSONFloat(w *bytes.Buffer, f float64, bits int) error {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return fmt.Errorf("json: unsupported value %v", f)
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (bits == 64 && (abs < 1e-6 || abs >= 1e21) || bits == 32 && (float32(abs) < 1e-6 || float32(abs) >= 1e21)) {
		format = 'e'
	}
	var buf [32]byte
	b := strconv.AppendFloat(buf[:0], f, format, -1, bits)
	if format == 'e' {
		// clean up e-09 to e-9
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	w.Write(b)
	return nil
}

// appendMaskedInput writes the input document exactly as mask would
// return it (appendJSON of mask's copy of its JSON form), straight from the
// OPA value the policy saw, without copying it, and returns the same erased
// and masked pointers. The decision log encoder uses it on every event;
// TestMaskedInputEncodingMatchesMask holds it to mask.
func (l *DecisionLogger) appendMaskedInput(w *bytes.Buffer, input ast.Value) (erased, masked []string, err error) {
	return l.appendMaskedInputMemo(w, input, nil)
}

// tokenMemo holds the JSON of input.gatehouse.token values: the token
// verifier hands out one value per token, shared by every request carrying
// it, so its (large) claims are encoded once. One encoder goroutine uses
// it; it is emptied when it holds maxTokenMemo values.
type tokenMemo map[ast.Object][]byte

const maxTokenMemo = 4096

// appendMaskedInputMemo is appendMaskedInput with a token memo (nil: none).
func (l *DecisionLogger) appendMaskedInputMemo(w *bytes.Buffer, input ast.Value, memo tokenMemo) (erased, masked []string, err error) {
	obj, ok := input.(ast.Object)
	if !ok {
		return nil, nil, appendValueJSON(w, input, 0)
	}
	m := &maskWriter{l: l, w: w}
	err = m.object(obj, func(k string, v ast.Value) (bool, error) {
		switch k {
		case "gatehouse":
			gh, ok := v.(ast.Object)
			if !ok || memo == nil {
				return false, nil
			}
			return true, m.object(gh, func(k string, v ast.Value) (bool, error) {
				tok, ok := v.(ast.Object)
				if k != "token" || !ok {
					return false, nil
				}
				if b, ok := memo[tok]; ok {
					w.Write(b)
					return true, nil
				}
				mark := w.Len()
				if err := appendValueJSON(w, tok, 2); err != nil {
					return true, err
				}
				if len(memo) >= maxTokenMemo {
					clear(memo)
				}
				memo[tok] = bytes.Clone(w.Bytes()[mark:])
				return true, nil
			})
		case "attributes":
			attrs, ok := v.(ast.Object)
			if !ok {
				return false, nil
			}
			return true, m.object(attrs, func(k string, v ast.Value) (bool, error) {
				req, ok := v.(ast.Object)
				if k != "request" || !ok {
					return false, nil
				}
				return true, m.object(req, func(k string, v ast.Value) (bool, error) {
					h, ok := v.(ast.Object)
					if k != "http" || !ok {
						return false, nil
					}
					return true, m.http(h)
				})
			})
		case "parsed_query":
			pq, ok := v.(ast.Object)
			if !ok || pq.Len() == 0 {
				return false, nil
			}
			return true, m.object(pq, func(k string, v ast.Value) (bool, error) {
				if l.maskedParams[strings.ToLower(k)] {
					m.erased = append(m.erased, "/input/parsed_query/"+pointerToken(k))
					return true, errSkip
				}
				return false, nil
			})
		}
		return false, nil
	})
	slices.Sort(m.erased)
	slices.Sort(m.masked)
	return m.erased, m.masked, err
}

// appendValueJSON writes an OPA value as JSON (object keys sorted, as
// appendJSON sorts them). Sets and non-string keys, which an input
// document never has, are errors.
func appendValueJSON(w *bytes.Buffer, v ast.Value, depth int) error {
	if depth > 512 {
		return fmt.Errorf("json: nesting deeper than 512 levels")
	}
	switch x := v.(type) {
	case nil, ast.Null:
		w.WriteString("null")
	case ast.Boolean:
		w.WriteString(strconv.FormatBool(bool(x)))
	case ast.String:
		appendJSONString(w, string(x))
	case ast.Number:
		if !policies.IsValidNumber(string(x)) {
			return fmt.Errorf("json: invalid number literal %q", string(x))
		}
		w.WriteString(string(x))
	case *ast.Array:
		w.WriteByte('[')
		for i := range x.Len() {
			if i > 0 {
				w.WriteByte(',')
			}
			if err := appendValueJSON(w, x.Elem(i).Value, depth+1); err != nil {
				return err
			}
		}
		w.WriteByte(']')
	case ast.Object:
		w.WriteByte('{')
		i := 0
		err := x.Iter(func(k, e *ast.Term) error {
			ks, ok := k.Value.(ast.String)
			if !ok {
				return fmt.Errorf("json: object key %v is not a string", k)
			}
			if i > 0 {
				w.WriteByte(',')
			}
			i++
			appendJSONString(w, string(ks))
			w.WriteByte(':')
			return appendValueJSON(w, e.Value, depth+1)
		})
		if err != nil {
			return err
		}
		w.WriteByte('}')
	default:
		return fmt.Errorf("json: cannot encode a %s", ast.ValueName(v))
	}
	return nil
}

// errSkip, from a maskWriter field function, leaves the field out.
var errSkip = errors.New("skip")

type maskWriter struct {
	l              *DecisionLogger
	w              *bytes.Buffer
	erased, masked []string
}

// object writes an object (keys in order); field may write a value itself
// (true), leave it to appendValueJSON (false) or leave the field out
// (errSkip).
func (m *maskWriter) object(x ast.Object, field func(k string, v ast.Value) (bool, error)) error {
	m.w.WriteByte('{')
	first := true
	err := x.Iter(func(kt, vt *ast.Term) error {
		ks, ok := kt.Value.(ast.String)
		if !ok {
			return fmt.Errorf("json: object key %v is not a string", kt)
		}
		k := string(ks)
		mark := m.w.Len()
		if !first {
			m.w.WriteByte(',')
		}
		appendJSONString(m.w, k)
		m.w.WriteByte(':')
		done, err := field(k, vt.Value)
		if errors.Is(err, errSkip) {
			m.w.Truncate(mark)
			return nil
		}
		if err != nil {
			return err
		}
		if !done {
			if err := appendValueJSON(m.w, vt.Value, 1); err != nil {
				return err
			}
		}
		first = false
		return nil
	})
	if err != nil {
		return err
	}
	m.w.WriteByte('}')
	return nil
}

// http writes attributes.request.http masked as mask does.
func (m *maskWriter) http(h ast.Object) error {
	const httpPtr = "/input/attributes/request/http/"
	l := m.l
	return m.object(h, func(k string, v ast.Value) (bool, error) {
		switch k {
		case "headers":
			headers, ok := v.(ast.Object)
			if !ok || headers.Len() == 0 {
				return false, nil
			}
			return true, m.object(headers, func(k string, v ast.Value) (bool, error) {
				name := strings.ToLower(k)
				str, isString := v.(ast.String)
				switch {
				case l.masked[name]:
					m.erased = append(m.erased, httpPtr+"headers/"+pointerToken(k))
					return true, errSkip
				case urlHeaders[name] && isString:
					if masked, ok := l.maskURL(string(str)); ok {
						m.masked = append(m.masked, httpPtr+"headers/"+pointerToken(k))
						appendJSONString(m.w, masked)
						return true, nil
					}
				}
				return false, nil
			})
		case "path", "query", "fragment":
			str, _ := v.(ast.String)
			var masked string
			var ok bool
			if k == "path" {
				masked, ok = l.maskURL(string(str))
			} else {
				masked, ok = l.maskParams(string(str))
			}
			if !ok {
				return false, nil
			}
			m.masked = append(m.masked, httpPtr+k)
			appendJSONString(m.w, masked)
			return true, nil
		}
		return false, nil
	})
}
