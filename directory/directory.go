// Package directory holds the rules of the tenant directory (issue F)
// that more than one component applies: finding users by email, subject
// and identity mapping, creating a user with its uniqueness markers, and
// mapping an external identity to a user. The admin API and the login
// (package oauth) both write users through it, so a user made by a
// federated login obeys the same invariants as one made by an admin.
package directory

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"

	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/store"
)

// Repositories of the directory's kinds.
var (
	Users             = store.Repo[model.UserSpec]{Kind: model.KindUser, SoftDelete: true}
	IdentityMappings  = store.Repo[model.IdentityMappingSpec]{Kind: model.KindIdentityMapping}
	IdentityProviders = store.Repo[model.IdentityProviderSpec]{Kind: model.KindIdentityProvider, SoftDelete: true}
)

// ErrEmailTaken and ErrSubjectTaken: another live user has the email
// (or subject). ErrMappingTaken: the external identity is mapped already.
var (
	ErrEmailTaken   = errors.New("another user has this email")
	ErrSubjectTaken = errors.New("another user has this subject")
	ErrMappingTaken = errors.New("this external identity is mapped to a user already")
)

// UserByEmail is the live user of tenant tid with email (compared
// normalized), or store.ErrNotFound.
func UserByEmail(ctx context.Context, rd store.Reader, tid, email string) (*store.Typed[model.UserSpec], error) {
	return Users.GetByName(ctx, rd, tid, model.NormalizeEmail(email))
}

// UserByMapping is the live user the external subject of identity
// provider idp maps to, or store.ErrNotFound.
func UserByMapping(ctx context.Context, rd store.Reader, tid, idp, externalSubject string) (*store.Typed[model.UserSpec], error) {
	m, err := IdentityMappings.GetByName(ctx, rd, tid, model.IdentityMappingName(idp, externalSubject))
	if err != nil {
		return nil, err
	}
	return Users.Get(ctx, rd, tid, m.Spec.UserID)
}

// CreateUser writes a new user (t.Meta holds tenant, id, description and
// labels; the envelope name is set here from the email) and the marker
// keeping its subject unique, in tx.
func CreateUser(ctx context.Context, tx store.Tx, t *store.Typed[model.UserSpec]) error {
	t.Meta.Kind = model.KindUser
	t.Meta.Name = model.NormalizeEmail(t.Spec.Email)
	if t.Spec.Subject == "" {
		t.Spec.Subject = t.Meta.Name
	}
	if err := Users.Create(ctx, tx, t); err != nil {
		if errors.Is(err, store.ErrAlreadyExists) {
			if _, e := Users.GetByName(ctx, tx, t.Meta.TenantID, t.Meta.Name); e == nil {
				return ErrEmailTaken
			}
		}
		return err
	}
	return claimSubject(ctx, tx, t.Meta.TenantID, t.Meta.ID, t.Spec.Subject)
}

// claimSubject writes the marker of a user's subject.
func claimSubject(ctx context.Context, tx store.Tx, tid, userID, subject string) error {
	err := tx.Create(ctx, &store.Object{Kind: model.KindUserSubject, TenantID: tid, ID: uuid.NewString(), Name: subject, ParentID: userID})
	if errors.Is(err, store.ErrAlreadyExists) {
		return ErrSubjectTaken
	}
	if err != nil {
		return fmt.Errorf("record the subject of user %q: %w", userID, err)
	}
	return nil
}

// AddMapping maps the external subject of identity provider idp to user
// userID, in tx: ErrMappingTaken when it is mapped already.
func AddMapping(ctx context.Context, tx store.Tx, tid, userID, idp, externalSubject string) (*store.Typed[model.IdentityMappingSpec], error) {
	m := &store.Typed[model.IdentityMappingSpec]{
		Meta: store.Object{Kind: model.KindIdentityMapping, TenantID: tid, ID: uuid.NewString(),
			Name: model.IdentityMappingName(idp, externalSubject), ParentID: userID},
		Spec: model.IdentityMappingSpec{UserID: userID, IdentityProviderID: idp, ExternalSubject: externalSubject},
	}
	if err := IdentityMappings.Create(ctx, tx, m); err != nil {
		if errors.Is(err, store.ErrAlreadyExists) {
			return nil, ErrMappingTaken
		}
		return nil, fmt.Errorf("map %s of %q to user %q: %w", externalSubject, idp, userID, err)
	}
	return m, nil
}
