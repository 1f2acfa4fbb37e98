package store

import (
	"encoding/base64"
	"fmt"
	"strings"
)

// ObjectCursor is the position after which a List page starts.
type ObjectCursor struct {
	ID  string
	UID string
}

// EncodeObjectCursor makes the opaque After/Next token for an object listing.
func EncodeObjectCursor(o *Object) string {
	return base64.RawURLEncoding.EncodeToString([]byte(o.ID + "\x00" + o.UID))
}

// DecodeObjectCursor parses a token made by EncodeObjectCursor. The empty
// token is the start of the listing.
func DecodeObjectCursor(token string) (ObjectCursor, error) {
	if token == "" {
		return ObjectCursor{}, nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil {
		return ObjectCursor{}, fmt.Errorf("%w: malformed cursor", ErrInvalid)
	}
	id, uid, ok := strings.Cut(string(raw), "\x00")
	if !ok || id == "" {
		return ObjectCursor{}, fmt.Errorf("%w: malformed cursor", ErrInvalid)
	}
	return ObjectCursor{ID: id, UID: uid}, nil
}

// Passed reports whether o is at or before the cursor position in (ID, UID)
// order, i.e. whether a page starting after c must skip it.
func (c ObjectCursor) Passed(o *Object) bool {
	if c.ID == "" {
		return false
	}
	if o.ID != c.ID {
		return o.ID < c.ID
	}
	return o.UID <= c.UID
}

// EncodeEventCursor makes the After/Next token for an event listing; event IDs
// are decimal sequence numbers.
func EncodeEventCursor(e *Event) string { return e.ID }

// DecodeEventCursor parses an event cursor into its sequence number; 0 means
// the start of the listing.
func DecodeEventCursor(token string) (int64, error) {
	if token == "" {
		return 0, nil
	}
	var seq int64
	if _, err := fmt.Sscanf(token, "%d", &seq); err != nil || seq <= 0 || fmt.Sprint(seq) != token {
		return 0, fmt.Errorf("%w: malformed cursor", ErrInvalid)
	}
	return seq, nil
}

// ValidateObject checks the envelope fields a backend relies on.
func ValidateObject(o *Object) error {
	switch {
	case o == nil:
		return fmt.Errorf("%w: nil object", ErrInvalid)
	case o.Kind == "":
		return fmt.Errorf("%w: kind is required", ErrInvalid)
	case o.ID == "":
		return fmt.Errorf("%w: id is required", ErrInvalid)
	case strings.ContainsRune(o.ID, 0) || strings.ContainsRune(o.Kind, 0) ||
		strings.ContainsRune(o.TenantID, 0) || strings.ContainsRune(o.Name, 0):
		return fmt.Errorf("%w: NUL byte in key fields", ErrInvalid)
	}
	return nil
}
