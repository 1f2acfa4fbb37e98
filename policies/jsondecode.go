package policies

import (
	"encoding/json"
	"errors"
	"fmt"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// decodeJSON decodes a JSON document as util.UnmarshalJSON does into an
// any (objects as map[string]any, arrays as []any, numbers as
// json.Number; a later duplicate key wins; invalid UTF-8 and unpaired
// surrogate escapes in strings become U+FFFD; at most 10,000 levels of
// nesting; nothing but white space after the value), several times
// faster. It refuses what encoding/json refuses, with errors of its own.
// Object keys, and short strings, are shared between their occurrences
// (a bundle repeats "id", "GET" or "literal" thousands of times); no
// string shares memory with data.
func decodeJSON(data []byte) (any, error) {
	d := &jsonDecoder{data: data, interned: map[string]string{}}
	d.skipSpace()
	v, err := d.value(0)
	if err != nil {
		return nil, err
	}
	d.skipSpace()
	if d.pos != len(d.data) {
		return nil, d.errorf("invalid character %q after top-level value", d.data[d.pos])
	}
	return v, nil
}

// maxJSONDepth is encoding/json's nesting limit.
const maxJSONDepth = 10000

type jsonDecoder struct {
	data     []byte
	pos      int
	interned map[string]string
	buf      []byte
	// members and elems are the stacks of the objects and arrays being
	// read.
	members []member
	elems   []any
}

type member struct {
	key   string
	value any
}

func (d *jsonDecoder) errorf(format string, args ...any) error {
	return fmt.Errorf("invalid JSON at offset %d: %s", d.pos, fmt.Sprintf(format, args...))
}

func (d *jsonDecoder) skipSpace() {
	for d.pos < len(d.data) {
		switch d.data[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

func (d *jsonDecoder) value(depth int) (any, error) {
	if d.pos >= len(d.data) {
		return nil, errors.New("invalid JSON: unexpected end of input")
	}
	switch c := d.data[d.pos]; {
	case c == '{':
		if depth+1 > maxJSONDepth {
			return nil, d.errorf("exceeded max depth")
		}
		return d.object(depth + 1)
	case c == '[':
		if depth+1 > maxJSONDepth {
			return nil, d.errorf("exceeded max depth")
		}
		return d.array(depth + 1)
	case c == '"':
		return d.string(false)
	case c == '-' || ('0' <= c && c <= '9'):
		return d.number()
	case c == 't':
		return true, d.literal("true")
	case c == 'f':
		return false, d.literal("false")
	case c == 'n':
		return nil, d.literal("null")
	default:
		return nil, d.errorf("invalid character %q looking for beginning of value", c)
	}
}

func (d *jsonDecoder) literal(word string) error {
	if len(d.data)-d.pos < len(word) || string(d.data[d.pos:d.pos+len(word)]) != word {
		return d.errorf("invalid literal")
	}
	d.pos += len(word)
	return nil
}

func (d *jsonDecoder) object(depth int) (any, error) {
	d.pos++ // {
	// The members are gathered on a stack shared by every level, so that
	// the map is made at its size.
	base := len(d.members)
	defer func() { d.members = d.members[:base] }()
	d.skipSpace()
	if d.pos < len(d.data) && d.data[d.pos] == '}' {
		d.pos++
		return map[string]any{}, nil
	}
	for {
		if d.pos >= len(d.data) || d.data[d.pos] != '"' {
			return nil, d.errorf("looking for beginning of object key string")
		}
		key, err := d.string(true)
		if err != nil {
			return nil, err
		}
		d.skipSpace()
		if d.pos >= len(d.data) || d.data[d.pos] != ':' {
			return nil, d.errorf("after object key")
		}
		d.pos++
		d.skipSpace()
		v, err := d.value(depth)
		if err != nil {
			return nil, err
		}
		d.members = append(d.members, member{key.(string), v})
		d.skipSpace()
		if d.pos >= len(d.data) {
			return nil, errors.New("invalid JSON: unexpected end of input")
		}
		switch d.data[d.pos] {
		case ',':
			d.pos++
			d.skipSpace()
		case '}':
			d.pos++
			out := make(map[string]any, len(d.members)-base)
			for _, m := range d.members[base:] {
				out[m.key] = m.value // in order: a later duplicate wins
			}
			return out, nil
		default:
			return nil, d.errorf("after object key:value pair")
		}
	}
}

func (d *jsonDecoder) array(depth int) (any, error) {
	d.pos++ // [
	base := len(d.elems)
	defer func() { d.elems = d.elems[:base] }()
	d.skipSpace()
	if d.pos < len(d.data) && d.data[d.pos] == ']' {
		d.pos++
		return []any{}, nil
	}
	for {
		v, err := d.value(depth)
		if err != nil {
			return nil, err
		}
		d.elems = append(d.elems, v)
		d.skipSpace()
		if d.pos >= len(d.data) {
			return nil, errors.New("invalid JSON: unexpected end of input")
		}
		switch d.data[d.pos] {
		case ',':
			d.pos++
			d.skipSpace()
		case ']':
			d.pos++
			return append([]any(nil), d.elems[base:]...), nil
		default:
			return nil, d.errorf("after array element")
		}
	}
}

func (d *jsonDecoder) number() (any, error) {
	start := d.pos
	digits := func() int {
		n := 0
		for d.pos < len(d.data) && '0' <= d.data[d.pos] && d.data[d.pos] <= '9' {
			d.pos++
			n++
		}
		return n
	}
	if d.data[d.pos] == '-' {
		d.pos++
	}
	switch {
	case d.pos < len(d.data) && d.data[d.pos] == '0':
		d.pos++
	case digits() == 0:
		return nil, d.errorf("in numeric literal")
	}
	if d.pos < len(d.data) && d.data[d.pos] == '.' {
		d.pos++
		if digits() == 0 {
			return nil, d.errorf("after decimal point in numeric literal")
		}
	}
	if d.pos < len(d.data) && (d.data[d.pos] == 'e' || d.data[d.pos] == 'E') {
		d.pos++
		if d.pos < len(d.data) && (d.data[d.pos] == '+' || d.data[d.pos] == '-') {
			d.pos++
		}
		if digits() == 0 {
			return nil, d.errorf("in exponent of numeric literal")
		}
	}
	return json.Number(d.data[start:d.pos]), nil
}

// internMax is the longest value string that is shared (keys always are).
const internMax = 16

// string reads a string (at its opening quote), as encoding/json
// unquotes it.
func (d *jsonDecoder) string(key bool) (any, error) {
	d.pos++ // "
	start := d.pos
	for d.pos < len(d.data) {
		c := d.data[d.pos]
		switch {
		case c == '"':
			raw := d.data[start:d.pos]
			d.pos++
			return d.intern(raw, key), nil
		case c == '\\' || c < 0x20 || c >= utf8.RuneSelf:
			return d.slowString(start, key)
		}
		d.pos++
	}
	return nil, errors.New("invalid JSON: unexpected end of input in string")
}

func (d *jsonDecoder) intern(b []byte, key bool) string {
	if !key && len(b) > internMax {
		return string(b)
	}
	if s, ok := d.interned[string(b)]; ok {
		return s
	}
	s := string(b)
	d.interned[s] = s
	return s
}

// slowString is string for one with escapes, control characters or
// non-ASCII bytes, from its first byte at start.
func (d *jsonDecoder) slowString(start int, key bool) (any, error) {
	b := append(d.buf[:0], d.data[start:d.pos]...)
	for d.pos < len(d.data) {
		c := d.data[d.pos]
		switch {
		case c == '"':
			d.pos++
			d.buf = b
			return d.intern(b, key), nil
		case c < 0x20:
			return nil, d.errorf("invalid character %q in string literal", c)
		case c == '\\':
			if d.pos+1 >= len(d.data) {
				return nil, errors.New("invalid JSON: unexpected end of input in string")
			}
			d.pos++
			switch e := d.data[d.pos]; e {
			case '"', '\\', '/':
				b = append(b, e)
			case 'b':
				b = append(b, '\b')
			case 'f':
				b = append(b, '\f')
			case 'n':
				b = append(b, '\n')
			case 'r':
				b = append(b, '\r')
			case 't':
				b = append(b, '\t')
			case 'u':
				r := d.hex4(d.pos + 1)
				if r < 0 {
					return nil, d.errorf("in \\u hexadecimal character escape")
				}
				d.pos += 4
				if utf16.IsSurrogate(r) {
					if d.pos+2 < len(d.data) && d.data[d.pos+1] == '\\' && d.data[d.pos+2] == 'u' {
						if r2 := d.hex4(d.pos + 3); r2 >= 0 {
							if dec := utf16.DecodeRune(r, r2); dec != unicode.ReplacementChar {
								d.pos += 6
								b = utf8.AppendRune(b, dec)
								break
							}
						}
					}
					r = unicode.ReplacementChar
				}
				b = utf8.AppendRune(b, r)
			default:
				return nil, d.errorf("invalid escape character %q in string", e)
			}
			d.pos++
		case c < utf8.RuneSelf:
			b = append(b, c)
			d.pos++
		default:
			r, size := utf8.DecodeRune(d.data[d.pos:])
			if r == utf8.RuneError && size == 1 {
				b = utf8.AppendRune(b, unicode.ReplacementChar)
			} else {
				b = append(b, d.data[d.pos:d.pos+size]...)
			}
			d.pos += size
		}
	}
	return nil, errors.New("invalid JSON: unexpected end of input in string")
}

// hex4 reads four hexadecimal digits at i (-1 if there are none).
func (d *jsonDecoder) hex4(i int) rune {
	if i+4 > len(d.data) {
		return -1
	}
	var r rune
	for _, c := range d.data[i : i+4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return -1
		}
		r = r*16 + rune(c)
	}
	return r
}
