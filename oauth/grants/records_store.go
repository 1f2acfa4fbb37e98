package grants

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/gatehouse-dev/gatehouse/store"
)

// ErrExpired: a record was written with an expiry already past.
var ErrExpired = errors.New("the record has already expired")

// Records reads and writes the records of this package in a store's
// runtime state. It is safe for concurrent use.
type Records struct {
	rt  store.Runtime
	now func() time.Time
}

// NewRecords returns the records kept in rt; now is the clock of the
// records' times (nil: time.Now).
func NewRecords(rt store.Runtime, now func() time.Time) *Records {
	if now == nil {
		now = time.Now
	}
	return &Records{rt: rt, now: now}
}

// Now is the records' clock.
func (r *Records) Now() time.Time { return r.now() }

// put writes v under kind/tid/id, expiring at expires.
func (r *Records) put(ctx context.Context, kind, tid, id string, v any, expires time.Time) error {
	ttl := expires.Sub(r.now())
	if ttl <= 0 {
		return fmt.Errorf("%s %s/%s: %w", kind, tid, id, ErrExpired)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", kind, err)
	}
	if err := r.rt.PutStateTTL(ctx, kind, tid, id, b, ttl); err != nil {
		return fmt.Errorf("write %s %s: %w", kind, tid, err)
	}
	return nil
}

// putOnce creates v under kind/tid/id only when absent, expiring at
// expires, and reports whether it did.
func (r *Records) putOnce(ctx context.Context, kind, tid, id string, v any, expires time.Time) (bool, error) {
	ttl := max(expires.Sub(r.now()), time.Second)
	b, err := json.Marshal(v)
	if err != nil {
		return false, fmt.Errorf("encode %s: %w", kind, err)
	}
	created, err := r.rt.PutStateIfAbsent(ctx, kind, tid, id, b, ttl)
	if err != nil {
		return false, fmt.Errorf("write %s %s: %w", kind, tid, err)
	}
	return created, nil
}

// get reads kind/tid/id into a new T; store.ErrNotFound (wrapped) when
// there is no live record.
func get[T any](ctx context.Context, rt store.Runtime, kind, tid, id string) (*T, error) {
	e, err := rt.GetState(ctx, kind, tid, id)
	if err != nil {
		return nil, fmt.Errorf("read %s %s: %w", kind, tid, err)
	}
	return decode[T](e)
}

func decode[T any](e *store.StateEntry) (*T, error) {
	v := new(T)
	if err := json.Unmarshal(e.Value, v); err != nil {
		return nil, fmt.Errorf("decode %s %s/%s: %w", e.Kind, e.TenantID, e.ID, err)
	}
	return v, nil
}

// list reads every live record of a kind in a tenant, by id.
func list[T any](ctx context.Context, rt store.Runtime, kind, tid string) (map[string]*T, error) {
	entries, err := rt.ListState(ctx, kind, tid)
	if err != nil {
		return nil, fmt.Errorf("list %s %s: %w", kind, tid, err)
	}
	out := make(map[string]*T, len(entries))
	for _, e := range entries {
		v, err := decode[T](e)
		if err != nil {
			return nil, err
		}
		out[e.ID] = v
	}
	return out, nil
}

func (r *Records) del(ctx context.Context, kind, tid, id string) error {
	if err := r.rt.DeleteState(ctx, kind, tid, id); err != nil {
		return fmt.Errorf("delete %s %s: %w", kind, tid, err)
	}
	return nil
}

// PutAuthRequest writes an auth request, expiring at its ExpiresAt.
func (r *Records) PutAuthRequest(ctx context.Context, tid string, a *AuthRequest) error {
	return r.put(ctx, KindAuthRequests, tid, a.ID, a, a.ExpiresAt)
}

// AuthRequest reads an auth request by id.
func (r *Records) AuthRequest(ctx context.Context, tid, id string) (*AuthRequest, error) {
	return get[AuthRequest](ctx, r.rt, KindAuthRequests, tid, id)
}

// DeleteAuthRequest deletes an auth request (none is not an error).
func (r *Records) DeleteAuthRequest(ctx context.Context, tid, id string) error {
	return r.del(ctx, KindAuthRequests, tid, id)
}

// PutCode writes an issued code, keyed by its hash, expiring at its ExpiresAt.
func (r *Records) PutCode(ctx context.Context, tid, code string, c *Code) error {
	return r.put(ctx, KindCodes, tid, Hash(code), c, c.ExpiresAt)
}

// Code reads a code that was not redeemed yet.
func (r *Records) Code(ctx context.Context, tid, code string) (*Code, error) {
	return get[Code](ctx, r.rt, KindCodes, tid, Hash(code))
}

// TakeCode redeems a code: of all callers exactly one gets it and true.
func (r *Records) TakeCode(ctx context.Context, tid, code string) (*Code, bool, error) {
	e, ok, err := r.rt.TakeState(ctx, KindCodes, tid, Hash(code))
	if err != nil || !ok {
		if err != nil {
			err = fmt.Errorf("take %s %s: %w", KindCodes, tid, err)
		}
		return nil, false, err
	}
	c, err := decode[Code](e)
	return c, err == nil, err
}

// PutCodeUse records that a code was redeemed, until u.FamilyExpiresAt.
func (r *Records) PutCodeUse(ctx context.Context, tid, code string, u *CodeUse) error {
	return r.put(ctx, KindCodesUsed, tid, Hash(code), u, u.FamilyExpiresAt)
}

// CodeUse reads the record of a redeemed code.
func (r *Records) CodeUse(ctx context.Context, tid, code string) (*CodeUse, error) {
	return get[CodeUse](ctx, r.rt, KindCodesUsed, tid, Hash(code))
}

// PutAccessToken writes an issued access token, expiring at its ExpiresAt.
func (r *Records) PutAccessToken(ctx context.Context, tid string, t *AccessToken) error {
	return r.put(ctx, KindAccessTokens, tid, t.JTI, t, t.ExpiresAt)
}

// AccessToken reads an access token's record by jti.
func (r *Records) AccessToken(ctx context.Context, tid, jti string) (*AccessToken, error) {
	return get[AccessToken](ctx, r.rt, KindAccessTokens, tid, jti)
}

// AccessTokens lists the tenant's unexpired access tokens, by jti.
func (r *Records) AccessTokens(ctx context.Context, tid string) (map[string]*AccessToken, error) {
	return list[AccessToken](ctx, r.rt, KindAccessTokens, tid)
}

// PutRefreshToken writes an issued refresh token, keyed by its hash.
func (r *Records) PutRefreshToken(ctx context.Context, tid, token string, t *RefreshToken) error {
	return r.put(ctx, KindRefreshTokens, tid, Hash(token), t, t.ExpiresAt)
}

// RefreshToken reads a refresh token's record by the token.
func (r *Records) RefreshToken(ctx context.Context, tid, token string) (*RefreshToken, error) {
	return r.RefreshTokenByHash(ctx, tid, Hash(token))
}

// RefreshTokenByHash reads a refresh token's record by its hash.
func (r *Records) RefreshTokenByHash(ctx context.Context, tid, hash string) (*RefreshToken, error) {
	return get[RefreshToken](ctx, r.rt, KindRefreshTokens, tid, hash)
}

// RefreshTokens lists the tenant's unexpired refresh tokens, by hash.
func (r *Records) RefreshTokens(ctx context.Context, tid string) (map[string]*RefreshToken, error) {
	return list[RefreshToken](ctx, r.rt, KindRefreshTokens, tid)
}

// DeleteRefreshToken deletes a refresh token by its hash.
func (r *Records) DeleteRefreshToken(ctx context.Context, tid, hash string) error {
	if err := r.del(ctx, KindRefreshUsed, tid, hash); err != nil {
		return err
	}
	return r.del(ctx, KindRefreshTokens, tid, hash)
}

// MarkRefreshUsed marks the refresh token of hash used, atomically: of
// all callers exactly one gets true; the others are reuses.
func (r *Records) MarkRefreshUsed(ctx context.Context, tid, hash string, t *RefreshToken) (bool, error) {
	return r.putOnce(ctx, KindRefreshUsed, tid, hash, &RefreshUse{FamilyID: t.FamilyID, UsedAt: r.now().UTC()}, t.ExpiresAt)
}

// RefreshUsed reports whether the refresh token of hash was used.
func (r *Records) RefreshUsed(ctx context.Context, tid, hash string) (bool, error) {
	_, err := r.rt.GetState(ctx, KindRefreshUsed, tid, hash)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("read %s %s: %w", KindRefreshUsed, tid, err)
	}
	return true, nil
}

// FamilyRevoked reports whether a family was revoked.
func (r *Records) FamilyRevoked(ctx context.Context, tid, familyID string) (bool, error) {
	if familyID == "" {
		return false, nil
	}
	_, err := r.rt.GetState(ctx, KindRevokedFamilies, tid, familyID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("read %s %s: %w", KindRevokedFamilies, tid, err)
	}
	return true, nil
}

// PutSession writes a login session keyed by the hash of its cookie value.
func (r *Records) PutSession(ctx context.Context, tid, cookie string, s *Session) error {
	return r.put(ctx, KindSessions, tid, Hash(cookie), s, s.ExpiresAt)
}

// SessionByHash reads a session by the hash of its cookie value.
func (r *Records) SessionByHash(ctx context.Context, tid, hash string) (*Session, error) {
	return get[Session](ctx, r.rt, KindSessions, tid, hash)
}

// Sessions lists the tenant's live sessions, by hash.
func (r *Records) Sessions(ctx context.Context, tid string) (map[string]*Session, error) {
	return list[Session](ctx, r.rt, KindSessions, tid)
}

// DeleteSessionByHash deletes a session by the hash of its cookie value.
func (r *Records) DeleteSessionByHash(ctx context.Context, tid, hash string) error {
	return r.del(ctx, KindSessions, tid, hash)
}

// slotTries is how many slots AcquireAuthRequestSlot tries (every slot
// when there are no more than this).
const slotTries = 16

// AcquireAuthRequestSlot takes one of the limit slots of server serverID
// for an auth request waiting for its login, until expires, and returns
// its id; ok is false when the slots it tried were all taken. A slot is
// a state entry created only when absent (PutStateIfAbsent), so the
// bound holds across every replica sharing the store: never more than
// limit live slots. It tries up to slotTries random slots (all of them,
// in turn, when limit is at most slotTries), so with many slots a
// request may be refused a little before all are taken (at 80 % taken,
// about 3 % of requests).
func (r *Records) AcquireAuthRequestSlot(ctx context.Context, tid, serverID string, limit int, expires time.Time) (string, bool, error) {
	if limit <= 0 {
		return "", false, nil
	}
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", false, fmt.Errorf("pick a slot: %w", err)
	}
	start := int(binary.BigEndian.Uint64(b[:]) % uint64(limit))
	for i := range min(limit, slotTries) {
		n := (start + i) % limit
		if limit > slotTries && i > 0 {
			if _, err := rand.Read(b[:]); err != nil {
				return "", false, fmt.Errorf("pick a slot: %w", err)
			}
			n = int(binary.BigEndian.Uint64(b[:]) % uint64(limit))
		}
		id := serverID + "/" + strconv.Itoa(n)
		created, err := r.putOnce(ctx, KindAuthRequestSlots, tid, id, struct{}{}, expires)
		if err != nil {
			return "", false, err
		}
		if created {
			return id, true, nil
		}
	}
	return "", false, nil
}

// ReleaseAuthRequestSlot frees a slot ("" frees nothing).
func (r *Records) ReleaseAuthRequestSlot(ctx context.Context, tid, slot string) error {
	if slot == "" {
		return nil
	}
	return r.del(ctx, KindAuthRequestSlots, tid, slot)
}

// UseAssertion records the use of a client assertion (private_key_jwt,
// RFC 7523) of clientID at server serverID, identified by its jti, until
// it expires, and reports whether this is its first use: an assertion is
// good for one request (OpenID Connect Core §9), however long it lives.
func (r *Records) UseAssertion(ctx context.Context, tid, serverID, clientID, jti string, expires time.Time) (bool, error) {
	id := Hash(serverID + "\x00" + clientID + "\x00" + jti)
	return r.putOnce(ctx, KindAssertionsUsed, tid, id, struct{}{}, expires)
}
