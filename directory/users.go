package directory

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/store"
)

// RestoreWindow is how long a soft-deleted user can be restored
// (POST …/users/{uid}/restore): the directory's retention.
const RestoreWindow = 30 * 24 * time.Hour

// ErrRestoreIDTaken: a live user has the id of the deleted user to
// restore.
var ErrRestoreIDTaken = errors.New("a live user has this id")

// Mappings lists the identity mappings of user uid (the live children
// of the user, read through the parent index), in id order.
func Mappings(ctx context.Context, rd store.Reader, tid, uid string) ([]*store.Typed[model.IdentityMappingSpec], error) {
	out, err := IdentityMappings.ListAll(ctx, rd, store.Query{TenantID: tid, ParentID: uid})
	if err != nil {
		return nil, fmt.Errorf("identity mappings of user %q: %w", uid, err)
	}
	return out, nil
}

// subjectMarkers lists the subject markers of user uid (one, normally).
func subjectMarkers(ctx context.Context, rd store.Reader, tid, uid string) ([]*store.Object, error) {
	pg, err := rd.List(ctx, store.Query{Kind: model.KindUserSubject, TenantID: tid, ParentID: uid})
	if err != nil {
		return nil, fmt.Errorf("subject of user %q: %w", uid, err)
	}
	return pg.Items, nil
}

// ChangeSubject moves the subject marker of user uid to subject, in tx:
// ErrSubjectTaken when another live user has it.
func ChangeSubject(ctx context.Context, tx store.Tx, tid, uid, subject string) error {
	markers, err := subjectMarkers(ctx, tx, tid, uid)
	if err != nil {
		return err
	}
	for _, m := range markers {
		if m.Name == subject {
			return nil
		}
		if _, err := tx.Delete(ctx, model.KindUserSubject, tid, m.ID, 0, false); err != nil {
			return fmt.Errorf("release the subject of user %q: %w", uid, err)
		}
	}
	return claimSubject(ctx, tx, tid, uid, subject)
}

// ReleaseUser deletes, in tx, what keeps a removed user's subject and
// external identities taken: its subject marker and its identity
// mappings. The delete of a user calls it in its transaction.
func ReleaseUser(ctx context.Context, tx store.Tx, tid, uid string) error {
	markers, err := subjectMarkers(ctx, tx, tid, uid)
	if err != nil {
		return err
	}
	for _, m := range markers {
		if _, err := tx.Delete(ctx, model.KindUserSubject, tid, m.ID, 0, false); err != nil {
			return fmt.Errorf("release the subject of user %q: %w", uid, err)
		}
	}
	maps, err := Mappings(ctx, tx, tid, uid)
	if err != nil {
		return err
	}
	for _, m := range maps {
		if _, err := tx.Delete(ctx, model.KindIdentityMapping, tid, m.Meta.ID, 0, false); err != nil {
			return fmt.Errorf("delete identity mapping %q of user %q: %w", m.Meta.ID, uid, err)
		}
	}
	return nil
}

// DeletedUser is the most recently soft-deleted incarnation of user uid
// (store.ErrNotFound when there is none). The store keeps deleted rows in
// its listing order (id, then uid), so the listing is read from just
// before uid, on either backend.
func DeletedUser(ctx context.Context, rd store.Reader, tid, uid string) (*store.Typed[model.UserSpec], error) {
	after := store.EncodeObjectCursor(&store.Object{ID: uid})
	var last *store.Typed[model.UserSpec]
	for {
		items, pg, err := Users.List(ctx, rd, store.Query{TenantID: tid, IncludeDeleted: true, After: after, Limit: 16})
		if err != nil {
			return nil, fmt.Errorf("deleted user %q: %w", uid, err)
		}
		for _, u := range items {
			if u.Meta.ID != uid {
				return orNotFound(last, uid)
			}
			if u.Meta.DeletedAt != nil && (last == nil || u.Meta.DeletedAt.After(*last.Meta.DeletedAt)) {
				last = u
			}
		}
		if pg.Next == "" {
			return orNotFound(last, uid)
		}
		after = pg.Next
	}
}

func orNotFound(u *store.Typed[model.UserSpec], uid string) (*store.Typed[model.UserSpec], error) {
	if u == nil {
		return nil, fmt.Errorf("deleted user %q: %w", uid, store.ErrNotFound)
	}
	return u, nil
}

// RestoreUser makes the deleted user d live again, in tx, as a new
// incarnation with the same id, email, subject and credentials (its
// credential epoch advanced, so sessions from before the delete stay
// ended); its identity mappings and memberships went with the delete and
// do not come back. ErrRestoreIDTaken, ErrEmailTaken or ErrSubjectTaken
// when another live user took them meanwhile.
func RestoreUser(ctx context.Context, tx store.Tx, d *store.Typed[model.UserSpec], actor string) (*store.Typed[model.UserSpec], error) {
	tid, uid := d.Meta.TenantID, d.Meta.ID
	if _, err := Users.Get(ctx, tx, tid, uid); err == nil {
		return nil, ErrRestoreIDTaken
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	if _, err := Users.GetByName(ctx, tx, tid, d.Meta.Name); err == nil {
		return nil, ErrEmailTaken
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	u := &store.Typed[model.UserSpec]{
		Meta: store.Object{TenantID: tid, ID: uid, Name: d.Meta.Name, Description: d.Meta.Description, Labels: d.Meta.Labels, CreatedBy: actor},
		Spec: d.Spec,
	}
	u.Spec.CredentialEpoch++
	if err := CreateUser(ctx, tx, u); err != nil {
		return nil, err
	}
	return u, nil
}

// UserFilter selects users (the admin API's list filters), AND-ed.
type UserFilter struct {
	// Email, when set, is compared normalized.
	Email string
	// IDs, when set, are the only users wanted.
	IDs []string
	// State, when set, is the only state wanted.
	State model.UserState
	// IncludeDeleted also returns soft-deleted users.
	IncludeDeleted bool
}

func (f *UserFilter) empty() bool { return f.Email == "" && len(f.IDs) == 0 && f.State == "" }

func (f *UserFilter) match(u *store.Typed[model.UserSpec]) bool {
	switch {
	case !f.IncludeDeleted && u.Meta.DeletedAt != nil:
		return false
	case f.Email != "" && u.Meta.Name != model.NormalizeEmail(f.Email):
		return false
	case len(f.IDs) > 0 && !slices.Contains(f.IDs, u.Meta.ID):
		return false
	case f.State != "" && u.Spec.State != f.State:
		return false
	}
	return true
}

// scanPage is the page size in which a filtered listing reads the store.
const scanPage = 1000

// ListUsers is one page (limit, after as store.Query) of the users of
// tid that f selects, in the store's list order (id, then uid), with
// the total and the next cursor, so paging is stable under concurrent
// inserts: a user that existed when the listing began is on exactly one
// page. Without filters it is one store listing; by email or ids it
// reads those users only; otherwise it scans the kind. Run it in one
// View for a consistent total.
func ListUsers(ctx context.Context, rd store.Reader, tid string, f UserFilter, limit int, after string) ([]*store.Typed[model.UserSpec], *store.Page, error) {
	if f.empty() {
		return Users.List(ctx, rd, store.Query{TenantID: tid, IncludeDeleted: f.IncludeDeleted, Limit: limit, After: after})
	}
	cur, err := store.DecodeObjectCursor(after)
	if err != nil {
		return nil, nil, err
	}
	var found []*store.Typed[model.UserSpec]
	switch {
	case len(f.IDs) > 0 && !f.IncludeDeleted:
		for _, id := range f.IDs {
			u, err := Users.Get(ctx, rd, tid, id)
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			if err != nil {
				return nil, nil, err
			}
			found = append(found, u)
		}
	case f.Email != "" && !f.IncludeDeleted:
		u, err := UserByEmail(ctx, rd, tid, f.Email)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, nil, err
		}
		if err == nil {
			found = append(found, u)
		}
	default:
		next := ""
		for {
			items, pg, err := Users.List(ctx, rd, store.Query{TenantID: tid, IncludeDeleted: f.IncludeDeleted, Limit: scanPage, After: next})
			if err != nil {
				return nil, nil, err
			}
			found = append(found, slices.DeleteFunc(items, func(u *store.Typed[model.UserSpec]) bool { return !f.match(u) })...)
			if next = pg.Next; next == "" {
				break
			}
		}
	}
	found = slices.DeleteFunc(found, func(u *store.Typed[model.UserSpec]) bool { return !f.match(u) })
	slices.SortFunc(found, func(a, b *store.Typed[model.UserSpec]) int {
		if c := strings.Compare(a.Meta.ID, b.Meta.ID); c != 0 {
			return c
		}
		return strings.Compare(a.Meta.UID, b.Meta.UID)
	})
	found = slices.CompactFunc(found, func(a, b *store.Typed[model.UserSpec]) bool { return a.Meta.UID == b.Meta.UID })
	page := &store.Page{Total: len(found)}
	out := make([]*store.Typed[model.UserSpec], 0, min(len(found), max(limit, 0)))
	for _, u := range found {
		o := u.Meta
		switch {
		case cur.Passed(&o):
		case limit > 0 && len(out) == limit:
			if page.Next == "" {
				last := out[len(out)-1].Meta
				page.Next = store.EncodeObjectCursor(&last)
			}
		default:
			out = append(out, u)
		}
	}
	return out, page, nil
}
