package resource

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/gatehouse-dev/gatehouse/internal/field"
	"github.com/gatehouse-dev/gatehouse/store"
)

// InUseError refuses deleting an object that objects of other kinds still
// reference with OnDelete Restrict.
type InUseError struct {
	Kind *Kind
	ID   string
	// UsedBy lists the referrers' ids by kind name.
	UsedBy map[string][]string
}

func (e *InUseError) Error() string { return fmt.Sprintf("%s %q is in use", e.Kind.Singular, e.ID) }

// CheckReferences reports every reference of o that names no live object
// of the tenant (field errors naming the referring field); Unlink
// references are the referring kind's to check.
func (s *Scheme) CheckReferences(ctx context.Context, rd store.Reader, o *store.Object) (field.ErrorList, error) {
	k, ok := s.Kind(o.Kind)
	if !ok {
		return nil, fmt.Errorf("check references: kind %q is not registered", o.Kind)
	}
	var errs field.ErrorList
	for _, r := range k.Refs {
		if r.OnDelete == Unlink {
			continue
		}
		targets, err := r.Targets(o)
		if err != nil {
			return nil, err
		}
		for _, t := range targets {
			_, err := rd.Get(ctx, t.Kind, o.TenantID, t.ID)
			switch {
			case errors.Is(err, store.ErrNotFound):
				errs.Add(field.Invalid(field.NewPath(t.Field), "%s %q does not exist", s.MustKind(t.Kind).Singular, t.ID))
			case err != nil:
				return nil, err
			}
		}
	}
	return errs, nil
}

// referrers lists, per referring reference, the objects of the tenant that
// name id through it (Unlink references are not looked at).
func (s *Scheme) referrers(ctx context.Context, rd store.Reader, kind, tid, id string) (map[*Referrer][]*store.Object, []*Referrer, error) {
	out := map[*Referrer][]*store.Object{}
	var order []*Referrer
	refs := s.Referrers(kind)
	for i := range refs {
		ref := &refs[i]
		if ref.Ref.OnDelete == Unlink {
			continue
		}
		pg, err := rd.List(ctx, store.Query{Kind: ref.Kind.Name, TenantID: tid})
		if err != nil {
			return nil, nil, fmt.Errorf("list %s: %w", ref.Kind.Name, err)
		}
		for _, o := range pg.Items {
			ids, err := ref.Ref.IDs(o)
			if err != nil {
				return nil, nil, fmt.Errorf("references of %s %q: %w", o.Kind, o.ID, err)
			}
			if slices.Contains(ids, id) {
				if out[ref] == nil {
					order = append(order, ref)
				}
				out[ref] = append(out[ref], o)
			}
		}
	}
	return out, order, nil
}

// InUse returns an *InUseError when objects reference (kind, tid, id) with
// OnDelete Restrict, nil otherwise.
func (s *Scheme) InUse(ctx context.Context, rd store.Reader, kind, tid, id string) error {
	users, order, err := s.referrers(ctx, rd, kind, tid, id)
	if err != nil {
		return err
	}
	used := map[string][]string{}
	for _, ref := range order {
		if ref.Ref.OnDelete != Restrict {
			continue
		}
		for _, o := range users[ref] {
			if !slices.Contains(used[ref.Kind.Name], o.ID) {
				used[ref.Kind.Name] = append(used[ref.Kind.Name], o.ID)
			}
		}
	}
	if len(used) > 0 {
		return &InUseError{Kind: s.MustKind(kind), ID: id, UsedBy: used}
	}
	return nil
}

// Deleted is told of every object a Delete removes, cascaded ones first.
type Deleted func(ctx context.Context, k *Kind, o *store.Object) error

// Delete deletes (kind, tid, id) in tx (expectRevision as in store.Tx):
// refused with *InUseError while Restrict references to it exist;
// objects referencing it with Cascade are deleted first, recursively, the
// same way. deleted (optional) is called for each object removed, the
// named one last.
func (s *Scheme) Delete(ctx context.Context, tx store.Tx, kind, tid, id string, expectRevision int64, deleted Deleted) (*store.Object, error) {
	k, ok := s.Kind(kind)
	if !ok {
		return nil, fmt.Errorf("delete: kind %q is not registered", kind)
	}
	cur, err := tx.Get(ctx, kind, tid, id)
	if err != nil {
		return nil, err
	}
	if expectRevision != 0 && cur.Revision != expectRevision {
		return nil, store.ErrConflict
	}
	if err := s.InUse(ctx, tx, kind, tid, id); err != nil {
		return nil, err
	}
	users, order, err := s.referrers(ctx, tx, kind, tid, id)
	if err != nil {
		return nil, err
	}
	for _, ref := range order {
		if ref.Ref.OnDelete != Cascade {
			continue
		}
		for _, o := range users[ref] {
			if _, err := s.Delete(ctx, tx, o.Kind, tid, o.ID, 0, deleted); err != nil && !errors.Is(err, store.ErrNotFound) {
				return nil, err
			}
		}
	}
	last, err := tx.Delete(ctx, kind, tid, id, expectRevision, k.SoftDelete)
	if err != nil {
		return nil, err
	}
	if deleted != nil {
		if err := deleted(ctx, k, last); err != nil {
			return nil, err
		}
	}
	return last, nil
}
