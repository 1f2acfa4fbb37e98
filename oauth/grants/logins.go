package grants

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gatehouse-dev/gatehouse/store"
)

// Custom logins (login method custom): the login page hands the browser
// to the application at the method's login_url with a login id and a
// login state; the application decides through the admin API (POST
// /api/system/{tid}/logins/{login}/accept|reject, package admin), and
// sends the browser back to {issuer}/login/custom/callback, which takes
// the decision once and completes the auth request (package oauth). Both
// sides meet in these records.
//
//	kind                          id         value                expires
//	oauth-custom-logins           login id   CustomLogin          with the auth request's login window
//	oauth-custom-login-decisions  login id   CustomLoginDecision  with the login (created once)
const (
	KindCustomLogins         = "oauth-custom-logins"
	KindCustomLoginDecisions = "oauth-custom-login-decisions"
)

// CustomLogin is a login handed to an application (KindCustomLogins, id
// = ID).
type CustomLogin struct {
	ID            string `json:"id"`
	ServerID      string `json:"server_id"`
	MethodID      string `json:"method_id"`
	AuthRequestID string `json:"auth_request_id"`
	ClientID      string `json:"client_id"`
	// State is the login_state the application was given and returns
	// with the browser: a correlation value, not a credential (the
	// callback also needs the browser that started the auth request).
	State     string    `json:"state"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
}

// CustomLoginDecision is the application's answer to a custom login
// (KindCustomLoginDecisions, id = the login id): accepted with a user of
// the login's tenant, or rejected with an OAuth error.
type CustomLoginDecision struct {
	Accepted    bool           `json:"accepted"`
	UserID      string         `json:"user_id,omitempty"`
	AMR         []string       `json:"amr,omitempty"`
	AuthContext map[string]any `json:"authentication_context,omitempty"`
	// Error and ErrorDescription are a rejection's (Error an OAuth error
	// code: access_denied, login_required, …).
	Error            string    `json:"error,omitempty"`
	ErrorDescription string    `json:"error_description,omitempty"`
	DecidedAt        time.Time `json:"decided_at"`
	// DecidedBy is the admin principal that decided.
	DecidedBy string `json:"decided_by,omitempty"`
}

// CustomRejectErrors are the OAuth errors an application may reject a
// custom login with; the client gets it at its redirect URI.
var CustomRejectErrors = []string{"access_denied", "login_required", "interaction_required", "temporarily_unavailable"}

// ErrDecided: the custom login was accepted or rejected already.
var ErrDecided = errors.New("the login was accepted or rejected already")

// PutCustomLogin writes a custom login, expiring at its ExpiresAt.
func (r *Records) PutCustomLogin(ctx context.Context, tid string, l *CustomLogin) error {
	return r.put(ctx, KindCustomLogins, tid, l.ID, l, l.ExpiresAt)
}

// CustomLogin reads a live custom login (store.ErrNotFound, wrapped,
// when there is none, or it expired by the records' clock).
func (r *Records) CustomLogin(ctx context.Context, tid, id string) (*CustomLogin, error) {
	l, err := get[CustomLogin](ctx, r.rt, KindCustomLogins, tid, id)
	if err != nil {
		return nil, err
	}
	if !r.now().Before(l.ExpiresAt) {
		return nil, fmt.Errorf("%s %s/%s: %w", KindCustomLogins, tid, id, store.ErrNotFound)
	}
	return l, nil
}

// DecideCustomLogin records the decision of login l, once: ErrDecided
// when it has one already.
func (r *Records) DecideCustomLogin(ctx context.Context, tid string, l *CustomLogin, d *CustomLoginDecision) error {
	created, err := r.putOnce(ctx, KindCustomLoginDecisions, tid, l.ID, d, l.ExpiresAt)
	if err != nil {
		return err
	}
	if !created {
		return ErrDecided
	}
	return nil
}

// TakeCustomLoginDecision consumes the decision of a login: of all
// callers exactly one gets it and true; false when there is none (yet).
func (r *Records) TakeCustomLoginDecision(ctx context.Context, tid, id string) (*CustomLoginDecision, bool, error) {
	e, ok, err := r.rt.TakeState(ctx, KindCustomLoginDecisions, tid, id)
	if err != nil || !ok {
		if err != nil {
			err = fmt.Errorf("take %s %s: %w", KindCustomLoginDecisions, tid, err)
		}
		return nil, false, err
	}
	d, err := decode[CustomLoginDecision](e)
	return d, err == nil, err
}

// DeleteCustomLogin deletes a custom login and its decision.
func (r *Records) DeleteCustomLogin(ctx context.Context, tid, id string) error {
	if err := r.del(ctx, KindCustomLoginDecisions, tid, id); err != nil {
		return err
	}
	return r.del(ctx, KindCustomLogins, tid, id)
}
