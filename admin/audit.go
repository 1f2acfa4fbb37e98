package admin

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/gatehouse-dev/gatehouse/store"
)

// The audit events' change summaries.
//
// Every admin write runs in an auditTx (Server.update): it remembers, per
// object it creates, updates or deletes, the object before the first and
// after the last write of the transaction, and record attaches to the
// event of that object the summary of what changed, field by field:
//
//	"changes": {"name": {"before": "a", "after": "b"}, "secret_hash": {"before": "***", "after": "***"}}
//
// The fields are the envelope's (name, description, labels, parent_id)
// and the stored spec's top-level fields. A side is absent where the
// field is unset (empty, or left out as the kind stores it): a create
// has only "after", a delete only "before", and an update that sets a
// field (or unsets it) only "after" (or "before"). Secrets are masked: a field whose name says it
// holds one (secret, password, private key, token, hash, sealed …) is
// "***" at any depth, so a rotation shows that the secret changed, never
// what it is. Values whose JSON is longer than maxChangeValue bytes (a
// Rego module, an OpenAPI document) are summarised by their size and
// hash.

// maxChangeValue is the longest value (JSON bytes) a summary shows.
const maxChangeValue = 512

// maskedValue replaces a secret in a summary.
const maskedValue = "***"

// auditTx is a store.Tx that remembers the objects it wrote.
type auditTx struct {
	store.Tx
	changes map[string]*objectChange
}

type objectChange struct {
	before, after *store.Object
	// seen: before holds the object as it was before the transaction
	// (nil: it did not exist).
	seen bool
}

func changeKey(kind, tenantID, id string) string { return kind + "\x00" + tenantID + "\x00" + id }

func (t *auditTx) note(kind, tenantID, id string) *objectChange {
	k := changeKey(kind, tenantID, id)
	ch := t.changes[k]
	if ch == nil {
		ch = &objectChange{}
		t.changes[k] = ch
	}
	return ch
}

func cloneObject(o *store.Object) *store.Object {
	if o == nil {
		return nil
	}
	c := *o
	c.Labels = maps.Clone(o.Labels)
	c.Spec = bytes.Clone(o.Spec)
	return &c
}

func (t *auditTx) Create(ctx context.Context, o *store.Object) error {
	if err := t.Tx.Create(ctx, o); err != nil {
		return err
	}
	ch := t.note(o.Kind, o.TenantID, o.ID)
	if !ch.seen {
		ch.before, ch.seen = nil, true
	}
	ch.after = cloneObject(o)
	return nil
}

func (t *auditTx) Update(ctx context.Context, o *store.Object, expectRevision int64) error {
	var old *store.Object
	ch := t.changes[changeKey(o.Kind, o.TenantID, o.ID)]
	if ch == nil || !ch.seen {
		var err error
		if old, err = t.Tx.Get(ctx, o.Kind, o.TenantID, o.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
	}
	if err := t.Tx.Update(ctx, o, expectRevision); err != nil {
		return err
	}
	ch = t.note(o.Kind, o.TenantID, o.ID)
	if !ch.seen {
		ch.before, ch.seen = cloneObject(old), true
	}
	ch.after = cloneObject(o)
	return nil
}

func (t *auditTx) Delete(ctx context.Context, kind, tenantID, id string, expectRevision int64, soft bool) (*store.Object, error) {
	o, err := t.Tx.Delete(ctx, kind, tenantID, id, expectRevision, soft)
	if err != nil {
		return o, err
	}
	ch := t.note(kind, tenantID, id)
	if !ch.seen {
		ch.before, ch.seen = cloneObject(o), true
	}
	ch.after = nil
	return o, nil
}

// summary is the change summary of the object (kind, id) written in this
// transaction under tenant tid (or system-level), nil when it wrote none.
func (t *auditTx) summary(kind, tid, id string) json.RawMessage {
	ch := t.changes[changeKey(kind, tid, id)]
	if ch == nil {
		ch = t.changes[changeKey(kind, "", id)]
	}
	if ch == nil {
		return nil
	}
	return changeSummary(ch.before, ch.after)
}

// update runs fn in a store transaction whose writes the audit events
// summarise (auditTx).
func (s *Server) update(ctx context.Context, fn func(ctx context.Context, tx store.Tx) error) (int64, error) {
	return s.store.Update(ctx, func(ctx context.Context, tx store.Tx) error {
		return fn(ctx, &auditTx{Tx: tx, changes: map[string]*objectChange{}})
	})
}

// changeSummary compares two versions of an object (nil: it does not
// exist) field by field; nil when nothing differs.
func changeSummary(before, after *store.Object) json.RawMessage {
	b, a := summaryFields(before), summaryFields(after)
	keys := slices.Sorted(maps.Keys(b))
	for k := range a {
		if _, ok := b[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	out := map[string]map[string]json.RawMessage{}
	for _, k := range keys {
		bv, inB := b[k]
		av, inA := a[k]
		if inB && inA && jsonEqual(bv, av) {
			continue
		}
		c := map[string]json.RawMessage{}
		if inB {
			c["before"] = summaryValue(k, bv)
		}
		if inA {
			c["after"] = summaryValue(k, av)
		}
		out[k] = c
	}
	if len(out) == 0 {
		return nil
	}
	raw, err := json.Marshal(out)
	if err != nil {
		return nil
	}
	return raw
}

// summaryFields are an object's envelope and spec fields, empty ones left
// out; nil for no object.
func summaryFields(o *store.Object) map[string]json.RawMessage {
	if o == nil {
		return nil
	}
	f := map[string]json.RawMessage{}
	if len(o.Spec) > 0 {
		var spec map[string]json.RawMessage
		if json.Unmarshal(o.Spec, &spec) == nil {
			for k, v := range spec {
				if !emptyJSON(v) {
					f[k] = v
				}
			}
		}
	}
	set := func(k string, v any) {
		raw, err := json.Marshal(v)
		if err != nil || emptyJSON(raw) {
			return
		}
		if _, clash := f[k]; clash {
			f["spec."+k] = f[k]
		}
		f[k] = raw
	}
	set("name", o.Name)
	set("description", o.Description)
	set("labels", o.Labels)
	set("parent_id", o.ParentID)
	return f
}

func emptyJSON(v json.RawMessage) bool {
	switch strings.TrimSpace(string(v)) {
	case "", "null", `""`, "{}", "[]":
		return true
	}
	return false
}

func jsonEqual(a, b json.RawMessage) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return bytes.Equal(a, b)
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return bytes.Equal(xa, ya)
}

// secretFieldWords mark a field that holds a secret (compared in lower
// case, as substrings of the field name).
var secretFieldWords = []string{"secret", "password", "passwd", "private", "token", "hash", "sealed", "api_key", "apikey", "seed"}

func secretField(name string) bool {
	n := strings.ToLower(name)
	for _, w := range secretFieldWords {
		if strings.Contains(n, w) {
			return true
		}
	}
	return false
}

// summaryValue is a field's value as a summary shows it: secrets masked
// (at any depth), long values as their size and hash.
func summaryValue(field string, v json.RawMessage) json.RawMessage {
	if secretField(field) {
		return json.RawMessage(`"` + maskedValue + `"`)
	}
	var x any
	if err := json.Unmarshal(v, &x); err != nil {
		return json.RawMessage(`"` + maskedValue + `"`)
	}
	x = maskSecrets(x)
	raw, err := json.Marshal(x)
	if err != nil {
		return json.RawMessage(`"` + maskedValue + `"`)
	}
	if len(raw) > maxChangeValue {
		sum := sha256.Sum256(raw)
		raw, _ = json.Marshal(fmt.Sprintf("(%d bytes, sha256 %s…)", len(raw), hex.EncodeToString(sum[:8])))
	}
	return raw
}

func maskSecrets(x any) any {
	switch v := x.(type) {
	case map[string]any:
		for k, e := range v {
			if secretField(k) {
				if e != nil && e != "" {
					v[k] = maskedValue
				}
				continue
			}
			v[k] = maskSecrets(e)
		}
	case []any:
		for i, e := range v {
			v[i] = maskSecrets(e)
		}
	}
	return x
}
