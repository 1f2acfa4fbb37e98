package grants

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/store"
)

var revocations = store.Repo[model.TokenRevocationSpec]{Kind: model.KindTokenRevocation}

// revocationID is the object id of a revocation: the hex SHA-256 of its
// form and key fields, NUL-separated.
func revocationID(fields ...string) string {
	h := sha256.New()
	for _, f := range fields {
		h.Write([]byte(f))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// RevokeJTI revokes the access token jti of issuer until exp (its
// expiry), in tx. Revoking it again changes nothing.
func RevokeJTI(ctx context.Context, tx store.Tx, tid, issuer, jti string, exp time.Time) error {
	if issuer == "" || jti == "" {
		return fmt.Errorf("%w: a jti revocation needs an issuer and a jti", store.ErrInvalid)
	}
	id := revocationID("jti", issuer, jti)
	cur, err := revocations.Get(ctx, tx, tid, id)
	switch {
	case err == nil:
		if !exp.After(cur.Spec.ExpiresAt) {
			return nil
		}
		cur.Spec.ExpiresAt = exp.UTC()
		return wrapRevoke(revocations.Update(ctx, tx, cur, 0), tid, jti)
	case !errors.Is(err, store.ErrNotFound):
		return wrapRevoke(err, tid, jti)
	}
	t := &store.Typed[model.TokenRevocationSpec]{
		Meta: store.Object{TenantID: tid, ID: id, CreatedBy: "system", UpdatedBy: "system"},
		Spec: model.TokenRevocationSpec{Issuer: issuer, JTI: jti, ExpiresAt: exp.UTC()},
	}
	return wrapRevoke(revocations.Create(ctx, tx, t), tid, jti)
}

// RevokeSubject revokes, in tx, the tokens of issuer for sub (only those
// of clientID when it is set) issued before notBefore; until is when no
// such token can be valid any more (notBefore plus the longest token
// TTL). A revocation of the same (issuer, sub, client) is moved later,
// never earlier.
func RevokeSubject(ctx context.Context, tx store.Tx, tid, issuer, sub, clientID string, notBefore, until time.Time) error {
	if issuer == "" || sub == "" {
		return fmt.Errorf("%w: a subject revocation needs an issuer and a subject", store.ErrInvalid)
	}
	nb := notBefore.UTC()
	id := revocationID("not_before", issuer, sub, clientID)
	cur, err := revocations.Get(ctx, tx, tid, id)
	switch {
	case err == nil:
		changed := false
		if cur.Spec.NotBefore == nil || nb.After(*cur.Spec.NotBefore) {
			cur.Spec.NotBefore, changed = &nb, true
		}
		if until.After(cur.Spec.ExpiresAt) {
			cur.Spec.ExpiresAt, changed = until.UTC(), true
		}
		if !changed {
			return nil
		}
		return wrapRevoke(revocations.Update(ctx, tx, cur, 0), tid, sub)
	case !errors.Is(err, store.ErrNotFound):
		return wrapRevoke(err, tid, sub)
	}
	t := &store.Typed[model.TokenRevocationSpec]{
		Meta: store.Object{TenantID: tid, ID: id, CreatedBy: "system", UpdatedBy: "system"},
		Spec: model.TokenRevocationSpec{Issuer: issuer, Subject: sub, ClientID: clientID, NotBefore: &nb, ExpiresAt: until.UTC()},
	}
	return wrapRevoke(revocations.Create(ctx, tx, t), tid, sub)
}

func wrapRevoke(err error, tid, what string) error {
	if err != nil {
		return fmt.Errorf("revoke %s in tenant %s: %w", what, tid, err)
	}
	return nil
}

// RevokeClient adds each unexpired access token that server serverID
// issued to clientID to the revocation list, in tx (the transaction that
// deletes the client). It only reads rt: a runtime write inside a
// configuration transaction would wait for itself on the embedded store.
// The client's refresh tokens are dead with the client — every refresh
// checks the client still exists with the UID the token was issued to —
// and DeleteClientRefreshTokens removes them once tx has committed.
// issuer is the server's issuer URL, for tokens recorded without one.
func RevokeClient(ctx context.Context, tx store.Tx, rt store.Runtime, tid, serverID, clientID, issuer string) error {
	tokens, err := list[AccessToken](ctx, rt, KindAccessTokens, tid)
	if err != nil {
		return fmt.Errorf("revoke the tokens of client %s/%s: %w", tid, clientID, err)
	}
	now := time.Now()
	for jti, t := range tokens {
		if t.ClientID != clientID || t.ServerID != serverID || !t.ExpiresAt.After(now) {
			continue
		}
		iss := t.Issuer
		if iss == "" {
			iss = issuer
		}
		if err := RevokeJTI(ctx, tx, tid, iss, jti, t.ExpiresAt); err != nil {
			return err
		}
	}
	return nil
}

// DeleteClientRefreshTokens deletes the refresh tokens server serverID
// issued to clientID (after the client's deletion has committed).
func (r *Records) DeleteClientRefreshTokens(ctx context.Context, tid, serverID, clientID string) error {
	tokens, err := r.RefreshTokens(ctx, tid)
	if err != nil {
		return err
	}
	for hash, t := range tokens {
		if t.ClientID == clientID && t.ServerID == serverID {
			if err := r.DeleteRefreshToken(ctx, tid, hash); err != nil {
				return err
			}
		}
	}
	return nil
}

// Family reasons (FamilyRevoked.Reason).
const (
	ReasonCodeReplay    = "code_replay"
	ReasonRefreshReuse  = "refresh_token_reuse"
	ReasonRevoked       = "revoked"
	ReasonLogout        = "logout"
	ReasonSingleSession = "single_session"
)

// RevokeFamily revokes every token of a family: it marks the family
// revoked until until (the longest expiry any of its tokens can have),
// deletes its refresh tokens and adds its unexpired access tokens' jti to
// the revocation list (one configuration transaction in st).
func (r *Records) RevokeFamily(ctx context.Context, st store.Store, tid, familyID, reason string, until time.Time) error {
	if familyID == "" {
		return nil
	}
	now := r.now()
	if !until.After(now) {
		until = now.Add(time.Minute)
	}
	if err := r.put(ctx, KindRevokedFamilies, tid, familyID, &FamilyRevoked{RevokedAt: now.UTC(), Reason: reason}, until); err != nil {
		return err
	}
	return r.revokeMatching(ctx, st, tid, func(family, _, _, _ string) bool { return family == familyID })
}

// RevokeSubjectClient revokes every token of server serverID for sub and
// clientID (a logout, or single_session_per_client): refresh tokens are
// deleted and the unexpired access tokens' jti revoked.
func (r *Records) RevokeSubjectClient(ctx context.Context, st store.Store, tid, serverID, sub, clientID string) error {
	return r.revokeMatching(ctx, st, tid, func(_, server, s, client string) bool {
		return server == serverID && s == sub && (clientID == "" || client == clientID)
	})
}

// revokeMatching deletes the refresh tokens and revokes the access tokens
// for which match(family, server, sub, client) holds.
func (r *Records) revokeMatching(ctx context.Context, st store.Store, tid string, match func(family, server, sub, client string) bool) error {
	refresh, err := r.RefreshTokens(ctx, tid)
	if err != nil {
		return err
	}
	for hash, t := range refresh {
		if match(t.FamilyID, t.ServerID, t.Subject, t.ClientID) {
			if err := r.DeleteRefreshToken(ctx, tid, hash); err != nil {
				return err
			}
		}
	}
	access, err := r.AccessTokens(ctx, tid)
	if err != nil {
		return err
	}
	now := r.now()
	var revoke []*AccessToken
	for _, t := range access {
		if match(t.FamilyID, t.ServerID, t.Subject, t.ClientID) && t.ExpiresAt.After(now) {
			revoke = append(revoke, t)
		}
	}
	if len(revoke) == 0 {
		return nil
	}
	_, err = st.Update(ctx, func(ctx context.Context, tx store.Tx) error {
		for _, t := range revoke {
			if err := RevokeJTI(ctx, tx, tid, t.Issuer, t.JTI, t.ExpiresAt); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("revoke %d access tokens in tenant %s: %w", len(revoke), tid, err)
	}
	return nil
}

// IsRevoked reports whether the access token t is revoked: its jti is on
// the revocation list, a not_before of its subject (at every client or
// at its client) is after its issue, or its family was revoked.
func (r *Records) IsRevoked(ctx context.Context, rd store.Reader, tid string, t *AccessToken) (bool, error) {
	now := r.now()
	if rev, err := revocations.Get(ctx, rd, tid, revocationID("jti", t.Issuer, t.JTI)); err == nil {
		if rev.Spec.ExpiresAt.After(now) {
			return true, nil
		}
	} else if !errors.Is(err, store.ErrNotFound) {
		return false, err
	}
	for _, client := range []string{"", t.ClientID} {
		rev, err := revocations.Get(ctx, rd, tid, revocationID("not_before", t.Issuer, t.Subject, client))
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return false, err
		}
		if rev.Spec.NotBefore != nil && t.IssuedAt.Before(*rev.Spec.NotBefore) {
			return true, nil
		}
	}
	return r.FamilyRevoked(ctx, tid, t.FamilyID)
}
