package directory

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/store"
)

// Invitations into a tenant (seed 002 §A.2.7): the admin API makes and
// answers them, the default server's anonymous key flow (oauth) shows,
// declines and accepts them. The key is 36 letters and digits (about
// 214 bits), shown once inside the create answer's invitation_url; only
// its SHA-256 is stored, as the invitation's envelope name.
var Invitations = store.Repo[model.InvitationSpec]{Kind: model.KindInvitation}

// InvitationKeyLen is the length of an invitation key.
const InvitationKeyLen = 36

const keyAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// NewInvitationKey is a new random key (uniform over the 62 letters and
// digits) and its hash.
func NewInvitationKey() (key, hash string, err error) {
	out := make([]byte, 0, InvitationKeyLen)
	buf := make([]byte, 64)
	for len(out) < InvitationKeyLen {
		if _, err := rand.Read(buf); err != nil {
			return "", "", fmt.Errorf("generate an invitation key: %w", err)
		}
		for _, b := range buf {
			// 248 = 4×62: rejecting the rest keeps every character
			// equally likely.
			if b < 248 && len(out) < InvitationKeyLen {
				out = append(out, keyAlphabet[int(b)%len(keyAlphabet)])
			}
		}
	}
	key = string(out)
	return key, InvitationKeyHash(key), nil
}

// InvitationKeyHash is the stored form of a key: hex SHA-256.
func InvitationKeyHash(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// ValidInvitationKey reports whether key has the form of a key.
func ValidInvitationKey(key string) bool {
	if len(key) != InvitationKeyLen {
		return false
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// InvitationByKey is the invitation of tenant tid whose key is key, or
// store.ErrNotFound (also for a key of the wrong form).
func InvitationByKey(ctx context.Context, rd store.Reader, tid, key string) (*store.Typed[model.InvitationSpec], error) {
	if !ValidInvitationKey(key) {
		return nil, store.ErrNotFound
	}
	return Invitations.GetByName(ctx, rd, tid, InvitationKeyHash(key))
}

// Answers to an invitation.
const (
	InvitationAccept  = "accept"
	InvitationDecline = "decline"
	InvitationRevoke  = "revoke"
)

// InvitationTransitionError refuses an answer the invitation's state
// does not allow.
type InvitationTransitionError struct {
	Action string
	From   model.InvitationState
}

func (e *InvitationTransitionError) Error() string {
	switch e.Action {
	case InvitationRevoke:
		return fmt.Sprintf("the invitation is %s; only an Open, Declined or Expired invitation can be revoked", e.From)
	default:
		return fmt.Sprintf("the invitation is %s; only an Open invitation can be %s", e.From, pastTense[e.Action])
	}
}

var pastTense = map[string]string{InvitationAccept: "accepted", InvitationDecline: "declined", InvitationRevoke: "revoked"}

// RespondInvitation applies action (InvitationAccept, InvitationDecline
// or InvitationRevoke) to inv at now, or returns an
// *InvitationTransitionError and changes nothing: accept and decline
// only from Open (accepted true or false, response_received_at now);
// revoke from Open, Declined or Expired, never from Accepted, and it is
// terminal (revoked_at now; response_received_at now unless a response
// came before).
func RespondInvitation(inv *model.InvitationSpec, action string, now time.Time) error {
	from := inv.State(now)
	now = now.UTC()
	switch action {
	case InvitationAccept, InvitationDecline:
		if from != model.InvitationOpen {
			return &InvitationTransitionError{Action: action, From: from}
		}
		accepted := action == InvitationAccept
		inv.Accepted, inv.ResponseReceivedAt = &accepted, &now
	case InvitationRevoke:
		switch from {
		case model.InvitationOpen, model.InvitationDeclined, model.InvitationExpired:
		default:
			return &InvitationTransitionError{Action: action, From: from}
		}
		inv.RevokedAt = &now
		if inv.ResponseReceivedAt == nil {
			inv.ResponseReceivedAt = &now
		}
	default:
		return fmt.Errorf("unknown invitation answer %q", action)
	}
	return nil
}
