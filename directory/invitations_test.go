package directory_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/directory"
	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/store"
	"github.com/gatehouse-dev/gatehouse/store/embedded"
)

func TestInvitationKeys(t *testing.T) {
	seen := map[string]bool{}
	counts := map[rune]int{}
	for i := 0; i < 200; i++ {
		key, hash, err := directory.NewInvitationKey()
		if err != nil {
			t.Fatal(err)
		}
		if !directory.ValidInvitationKey(key) || hash != directory.InvitationKeyHash(key) || len(hash) != 64 || seen[key] {
			t.Fatalf("key %q hash %q", key, hash)
		}
		seen[key] = true
		for _, r := range key {
			counts[r]++
		}
	}
	// 7200 characters over 62: every one shows up.
	if len(counts) != 62 {
		t.Fatalf("%d distinct characters in 200 keys", len(counts))
	}
	for _, bad := range []string{"", strings.Repeat("a", 35), strings.Repeat("a", 37), strings.Repeat("a", 35) + "-", strings.Repeat("é", 18)} {
		if directory.ValidInvitationKey(bad) {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestInvitationByKey(t *testing.T) {
	ctx := context.Background()
	st, err := embedded.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	key, hash, _ := directory.NewInvitationKey()
	testkit.Write(t, st, func(ctx context.Context, tx store.Tx) error {
		return directory.Invitations.Create(ctx, tx, &store.Typed[model.InvitationSpec]{
			Meta: store.Object{TenantID: "acme", ID: "i1", Name: hash},
			Spec: model.InvitationSpec{InvitedEmailAddress: "a@b.example", KeyHash: hash, Expiration: time.Now().Add(time.Hour)},
		})
	})
	if got, err := directory.InvitationByKey(ctx, st, "acme", key); err != nil || got.Meta.ID != "i1" {
		t.Fatalf("by key: %v %v", got, err)
	}
	for tid, k := range map[string]string{"other": key, "acme": strings.ToLower(key[:35]) + "x", "": "not-a-key"} {
		if _, err := directory.InvitationByKey(ctx, st, tid, k); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%q %q: %v", tid, k, err)
		}
	}
}

func TestRespondInvitation(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tru, fal := true, false
	earlier := now.Add(-time.Hour)
	states := map[model.InvitationState]func() *model.InvitationSpec{
		model.InvitationOpen: func() *model.InvitationSpec { return &model.InvitationSpec{Expiration: now.Add(time.Hour)} },
		model.InvitationAccepted: func() *model.InvitationSpec {
			return &model.InvitationSpec{Expiration: now.Add(time.Hour), Accepted: &tru, ResponseReceivedAt: &earlier}
		},
		model.InvitationDeclined: func() *model.InvitationSpec {
			return &model.InvitationSpec{Expiration: now.Add(time.Hour), Accepted: &fal, ResponseReceivedAt: &earlier}
		},
		model.InvitationExpired: func() *model.InvitationSpec { return &model.InvitationSpec{Expiration: now} },
		model.InvitationRevoked: func() *model.InvitationSpec {
			return &model.InvitationSpec{Expiration: now.Add(time.Hour), RevokedAt: &earlier}
		},
	}
	allowed := map[string][]model.InvitationState{
		directory.InvitationAccept:  {model.InvitationOpen},
		directory.InvitationDecline: {model.InvitationOpen},
		directory.InvitationRevoke:  {model.InvitationOpen, model.InvitationDeclined, model.InvitationExpired},
	}
	want := map[string]model.InvitationState{
		directory.InvitationAccept: model.InvitationAccepted, directory.InvitationDecline: model.InvitationDeclined,
		directory.InvitationRevoke: model.InvitationRevoked,
	}
	for action, ok := range allowed {
		for from, mk := range states {
			inv := mk()
			if got := inv.State(now); got != from {
				t.Fatalf("fixture %s is %s", from, got)
			}
			before := *inv
			err := directory.RespondInvitation(inv, action, now)
			legal := false
			for _, s := range ok {
				legal = legal || s == from
			}
			if !legal {
				var te *directory.InvitationTransitionError
				if !errors.As(err, &te) || te.From != from || te.Action != action {
					t.Errorf("%s from %s: %v", action, from, err)
				}
				if inv.Accepted != before.Accepted || inv.RevokedAt != before.RevokedAt || inv.ResponseReceivedAt != before.ResponseReceivedAt {
					t.Errorf("%s from %s changed the invitation", action, from)
				}
				continue
			}
			if err != nil || inv.State(now) != want[action] {
				t.Errorf("%s from %s: %v, now %s", action, from, err, inv.State(now))
			}
			if inv.ResponseReceivedAt == nil {
				t.Errorf("%s from %s: no response_received_at", action, from)
			}
			if action == directory.InvitationRevoke {
				if !inv.RevokedAt.Equal(now) || inv.Accepted != before.Accepted {
					t.Errorf("revoke from %s: %+v", from, inv)
				}
				if before.ResponseReceivedAt != nil && !inv.ResponseReceivedAt.Equal(*before.ResponseReceivedAt) {
					t.Errorf("revoke from %s moved response_received_at", from)
				}
			} else if !inv.ResponseReceivedAt.Equal(now) || *inv.Accepted != (action == directory.InvitationAccept) {
				t.Errorf("%s: %+v", action, inv)
			}
		}
	}
}
