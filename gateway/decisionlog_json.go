package gateway

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
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
		keys := make([]string, 0, len(x))
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
		keys := make([]string, 0, len(x))
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
		if !validJSONNumber(string(x)) {
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

// validJSONNumber reports whether s is a JSON number literal.
func validJSONNumber(s string) bool {
	if s == "" {
		return false
	}
	if s[0] == '-' {
		s = s[1:]
		if s == "" {
			return false
		}
	}
	switch {
	case s[0] == '0':
		s = s[1:]
	case '1' <= s[0] && s[0] <= '9':
		s = s[1:]
		for len(s) > 0 && '0' <= s[0] && s[0] <= '9' {
			s = s[1:]
		}
	default:
		return false
	}
	if len(s) >= 2 && s[0] == '.' && '0' <= s[1] && s[1] <= '9' {
		s = s[2:]
		for len(s) > 0 && '0' <= s[0] && s[0] <= '9' {
			s = s[1:]
		}
	}
	if len(s) >= 2 && (s[0] == 'e' || s[0] == 'E') {
		s = s[1:]
		if s[0] == '+' || s[0] == '-' {
			s = s[1:]
			if s == "" {
				return false
			}
		}
		for len(s) > 0 && '0' <= s[0] && s[0] <= '9' {
			s = s[1:]
		}
	}
	return s == ""
}
