// Package field describes what is wrong with a request body, field by
// field, in the spirit of Kubernetes apimachinery's validation/field: a
// Path locates a field ("services[2].hosts[0]"), an Error says what is
// wrong with it, and an ErrorList collects every problem of one body so a
// client can fix them all at once.
package field

import (
	"fmt"
	"strconv"
	"strings"
)

// Machine-readable codes of field errors. They are also the error_code of
// the 400 answer whose first problem they describe.
const (
	CodeInvalid  = "invalid_field"
	CodeRequired = "missing_field"
	CodeUnknown  = "unknown_field"
	// CodeReadOnly: a read-only field was sent with another value than
	// the stored one.
	CodeReadOnly = "read_only_field"
	// CodeImmutable: the field cannot change once the object exists.
	CodeImmutable = "immutable_field"
)

// Path is the location of a field in a JSON document. The zero/nil Path
// is the document itself.
type Path struct {
	parent *Path
	name   string // a member name; empty for an index
	index  int
}

// NewPath starts a path at the member name (then more, nested).
func NewPath(name string, more ...string) *Path {
	p := &Path{name: name}
	for _, m := range more {
		p = p.Child(m)
	}
	return p
}

// Child is the member name (then more, nested) of p.
func (p *Path) Child(name string, more ...string) *Path {
	c := &Path{parent: p, name: name}
	for _, m := range more {
		c = c.Child(m)
	}
	return c
}

// Index is element i of the array at p.
func (p *Path) Index(i int) *Path { return &Path{parent: p, index: i} }

// String renders the path as the API writes field names: a.b[2].c.
func (p *Path) String() string {
	if p == nil {
		return ""
	}
	var parts []*Path
	for q := p; q != nil; q = q.parent {
		parts = append(parts, q)
	}
	var b strings.Builder
	for i := len(parts) - 1; i >= 0; i-- {
		q := parts[i]
		if q.name == "" {
			b.WriteString("[" + strconv.Itoa(q.index) + "]")
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(q.name)
	}
	return b.String()
}

// Error is one problem with one field.
type Error struct {
	Field   string `json:"field"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Error renders "field: message".
func (e *Error) Error() string {
	if e.Field == "" {
		return e.Message
	}
	return e.Field + ": " + e.Message
}

func newError(p *Path, code, format string, args []any) *Error {
	msg := format
	if len(args) > 0 {
		msg = fmt.Sprintf(format, args...)
	}
	return &Error{Field: p.String(), Code: code, Message: msg}
}

// Invalid: the value of p is not acceptable.
func Invalid(p *Path, format string, args ...any) *Error {
	return newError(p, CodeInvalid, format, args)
}

// Required: p must be given.
func Required(p *Path) *Error { return newError(p, CodeRequired, "is required", nil) }

// Unknown: p is not a field of this body.
func Unknown(p *Path) *Error { return newError(p, CodeUnknown, "unknown field", nil) }

// ReadOnly: p is read-only and was sent with a value other than the
// stored one.
func ReadOnly(p *Path, format string, args ...any) *Error {
	return newError(p, CodeReadOnly, format, args)
}

// Immutable: p cannot change once the object exists.
func Immutable(p *Path, format string, args ...any) *Error {
	return newError(p, CodeImmutable, format, args)
}

// ErrorList is every problem found in one body, in the order found.
type ErrorList []*Error

// Add appends the non-nil errors.
func (l *ErrorList) Add(errs ...*Error) {
	for _, e := range errs {
		if e != nil {
			*l = append(*l, e)
		}
	}
}

// Extend appends another list.
func (l *ErrorList) Extend(other ErrorList) { *l = append(*l, other...) }

// Under re-addresses the errors of a nested object to their place in the
// enclosing document: "url" under services[2] becomes "services[2].url".
func (l ErrorList) Under(p *Path) ErrorList {
	prefix := p.String()
	if prefix == "" {
		return l
	}
	out := make(ErrorList, len(l))
	for i, e := range l {
		c := *e
		switch {
		case c.Field == "":
			c.Field = prefix
		case strings.HasPrefix(c.Field, "["):
			c.Field = prefix + c.Field
		default:
			c.Field = prefix + "." + c.Field
		}
		out[i] = &c
	}
	return out
}

// Error renders the first problem and how many more there are.
func (l ErrorList) Error() string {
	switch len(l) {
	case 0:
		return "no errors"
	case 1:
		return l[0].Error()
	}
	return fmt.Sprintf("%s (and %d more)", l[0].Error(), len(l)-1)
}

// OrNil is nil for an empty list, so a validation can end with
// `return errs.OrNil()` where an error is expected.
func (l ErrorList) OrNil() error {
	if len(l) == 0 {
		return nil
	}
	return l
}
