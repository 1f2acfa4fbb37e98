package directory

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/store"
)

// CredentialVersion is a short digest of a user's credentials (epoch,
// password hash, TOTP enrolment). A login session records it and ends
// when the user's current version differs: a password change, an MFA
// reset or a recovery.
func CredentialVersion(u *model.UserSpec) string {
	h := sha256.New()
	h.Write([]byte(strconv.FormatInt(u.CredentialEpoch, 10)))
	h.Write([]byte{0})
	h.Write([]byte(u.PasswordHash))
	h.Write([]byte{0})
	h.Write([]byte(u.TOTPSeed))
	h.Write([]byte{0})
	h.Write([]byte(strconv.FormatBool(u.TOTPConfirmed)))
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil)[:12])
}

// ResetCredentials sets user uid's password hash (argon2id PHC; "" for
// none), clears its TOTP enrolment and advances its credential epoch, in
// tx (a recovery taken at the login page).
func ResetCredentials(ctx context.Context, tx store.Tx, tid, uid, newPasswordHash string) (*store.Typed[model.UserSpec], error) {
	return updateUser(ctx, tx, tid, uid, func(u *model.UserSpec) {
		u.PasswordHash = newPasswordHash
		u.TOTPSeed, u.TOTPConfirmed = "", false
		u.CredentialEpoch++
	})
}

// ResetMFA clears user uid's TOTP enrolment and advances its credential
// epoch, in tx.
func ResetMFA(ctx context.Context, tx store.Tx, tid, uid string) (*store.Typed[model.UserSpec], error) {
	return updateUser(ctx, tx, tid, uid, func(u *model.UserSpec) {
		u.TOTPSeed, u.TOTPConfirmed = "", false
		u.CredentialEpoch++
	})
}

func updateUser(ctx context.Context, tx store.Tx, tid, uid string, change func(*model.UserSpec)) (*store.Typed[model.UserSpec], error) {
	u, err := Users.Get(ctx, tx, tid, uid)
	if err != nil {
		return nil, fmt.Errorf("user %q: %w", uid, err)
	}
	change(&u.Spec)
	if err := Users.Update(ctx, tx, u, 0); err != nil {
		return nil, fmt.Errorf("update user %q: %w", uid, err)
	}
	return u, nil
}

// ActivityStateKind is the runtime state kind of users' last activity
// (id = the user id): written by the login, read by the admin API as
// status.last_active.
const ActivityStateKind = "user-activity"

type activity struct {
	LastActive time.Time `json:"last_active"`
}

// TouchUser records that user uid of tenant tid was active at at (a
// login). It takes no revision and is not audited.
func TouchUser(ctx context.Context, rt store.Runtime, tid, uid string, at time.Time) error {
	v, err := json.Marshal(activity{LastActive: at.UTC()})
	if err != nil {
		return err
	}
	if err := rt.PutState(ctx, ActivityStateKind, tid, uid, v); err != nil {
		return fmt.Errorf("record the activity of user %q: %w", uid, err)
	}
	return nil
}

// LastActive is when user uid was last active (TouchUser), nil when
// never.
func LastActive(ctx context.Context, rt store.Runtime, tid, uid string) (*time.Time, error) {
	e, err := rt.GetState(ctx, ActivityStateKind, tid, uid)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, nil
		}
		return nil, fmt.Errorf("read the activity of user %q: %w", uid, err)
	}
	var a activity
	if err := json.Unmarshal(e.Value, &a); err != nil {
		return nil, fmt.Errorf("read the activity of user %q: %w", uid, err)
	}
	return &a.LastActive, nil
}
