package store

import (
	"context"
	"encoding/json"
	"fmt"
)

// Typed is an object whose spec is decoded into S. Meta.Spec is ignored on
// write (Spec is encoded instead) and left empty on read.
type Typed[S any] struct {
	Meta Object
	Spec S
}

// Repo is a typed view of one kind: it encodes and decodes specs and applies
// the kind's delete policy, so resource code never touches raw JSON.
type Repo[S any] struct {
	Kind string
	// SoftDelete keeps deleted objects (with DeletedAt set) instead of
	// removing them; their ID and name become free for reuse.
	SoftDelete bool
}

func (r Repo[S]) decode(o *Object) (*Typed[S], error) {
	t := &Typed[S]{Meta: *o}
	t.Meta.Spec = nil
	if len(o.Spec) > 0 {
		if err := json.Unmarshal(o.Spec, &t.Spec); err != nil {
			return nil, fmt.Errorf("decode %s %q: %w", r.Kind, o.ID, err)
		}
	}
	return t, nil
}

func (r Repo[S]) encode(t *Typed[S]) (*Object, error) {
	spec, err := json.Marshal(t.Spec)
	if err != nil {
		return nil, fmt.Errorf("encode %s %q: %w", r.Kind, t.Meta.ID, err)
	}
	o := t.Meta
	o.Kind = r.Kind
	o.Spec = spec
	return &o, nil
}

// Get returns the live object or ErrNotFound.
func (r Repo[S]) Get(ctx context.Context, rd Reader, tenantID, id string) (*Typed[S], error) {
	o, err := rd.Get(ctx, r.Kind, tenantID, id)
	if err != nil {
		return nil, err
	}
	return r.decode(o)
}

// GetByName returns the live object with that name or ErrNotFound.
func (r Repo[S]) GetByName(ctx context.Context, rd Reader, tenantID, name string) (*Typed[S], error) {
	o, err := rd.GetByName(ctx, r.Kind, tenantID, name)
	if err != nil {
		return nil, err
	}
	return r.decode(o)
}

// List returns one page of objects; q.Kind is set to the repo's kind.
func (r Repo[S]) List(ctx context.Context, rd Reader, q Query) ([]*Typed[S], *Page, error) {
	q.Kind = r.Kind
	page, err := rd.List(ctx, q)
	if err != nil {
		return nil, nil, err
	}
	out := make([]*Typed[S], 0, len(page.Items))
	for _, o := range page.Items {
		t, err := r.decode(o)
		if err != nil {
			return nil, nil, err
		}
		out = append(out, t)
	}
	return out, page, nil
}

// ListAll returns every object matching q, following cursors.
func (r Repo[S]) ListAll(ctx context.Context, rd Reader, q Query) ([]*Typed[S], error) {
	q.Limit, q.After = 0, ""
	items, _, err := r.List(ctx, rd, q)
	return items, err
}

// Create inserts t and fills in the envelope fields the store sets.
func (r Repo[S]) Create(ctx context.Context, tx Tx, t *Typed[S]) error {
	o, err := r.encode(t)
	if err != nil {
		return err
	}
	if err := tx.Create(ctx, o); err != nil {
		return err
	}
	o.Spec = nil
	t.Meta = *o
	return nil
}

// Update replaces t (optimistic when expectRevision != 0) and refreshes its
// envelope.
func (r Repo[S]) Update(ctx context.Context, tx Tx, t *Typed[S], expectRevision int64) error {
	o, err := r.encode(t)
	if err != nil {
		return err
	}
	if err := tx.Update(ctx, o, expectRevision); err != nil {
		return err
	}
	o.Spec = nil
	t.Meta = *o
	return nil
}

// Delete removes (or soft-deletes) the object and returns its last state.
func (r Repo[S]) Delete(ctx context.Context, tx Tx, tenantID, id string, expectRevision int64) (*Typed[S], error) {
	o, err := tx.Delete(ctx, r.Kind, tenantID, id, expectRevision, r.SoftDelete)
	if err != nil {
		return nil, err
	}
	return r.decode(o)
}
