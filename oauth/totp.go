package oauth

import (
	"context"
	"crypto/subtle"
	"encoding/base32"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"strings"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/gatehouse-dev/gatehouse/directory"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/oauth/grants"
	"github.com/gatehouse-dev/gatehouse/store"
)

// TOTP (RFC 6238: SHA-1, 6 digits, 30 s, one step of skew either way —
// what authenticator apps use), the second step of the password method
// when the tenant's mfa_provider is totp.
//
// After a right password the browser gets a login step: a 256-bit
// secret in the step form (field login_step) whose hash keys a runtime
// record (kindLoginSteps) naming the auth request, the user, the user's
// credential version and the lockout key, for loginStepTTL. The step
// form also needs the auth request's binding cookie and CSRF token (as
// every login form), and is refused once the user's credentials changed.
//
// A user without a confirmed seed enrols: a new seed is generated,
// sealed (Options.Box, AAD model.TOTPSealAAD) into the step record —
// not into the user, so an abandoned enrolment changes nothing — and
// shown once as an otpauth:// URI and as text; the first right code
// writes it to the user with TOTPConfirmed (the credential epoch is not
// advanced: enrolling ends no session, but the credential version,
// which covers the seed, changes). A user with a confirmed seed is asked
// for a code. Every code is good once: a used code is recorded
// (kindTOTPUsed, per user and code) for as long as it could be valid.
// Wrong and replayed codes count toward the lockout (password.go). The
// login then completes with amr ["pwd", "otp"].
const (
	kindLoginSteps = "oauth-login-steps"
	kindTOTPUsed   = "oauth-totp-used"
	// kindLoginStepBusy marks a step whose code is being checked: one
	// attempt per step at a time, so parallel guesses cannot all pass the
	// lockout check before the first failure is counted.
	kindLoginStepBusy = "oauth-login-step-busy"
	loginStepBusyTTL  = 30 * time.Second
	loginStepTTL      = 5 * time.Minute
	totpPeriod        = 30
	totpSkew          = 1
	// totpUsedTTL covers every step a code is accepted in.
	totpUsedTTL = (2*totpSkew + 2) * totpPeriod * time.Second
)

var totpOpts = totp.ValidateOpts{Period: totpPeriod, Skew: totpSkew, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1}

// loginStep is a pending second step (kindLoginSteps, id = Hash(secret)).
type loginStep struct {
	AuthRequestID string `json:"auth_request_id"`
	ServerID      string `json:"server_id"`
	MethodID      string `json:"method_id"`
	UserID        string `json:"user_id"`
	// Credential is the user's credential version at the password check.
	Credential string `json:"credential"`
	LockKey    string `json:"lock_key"`
	// EnrolSeed is the sealed seed being enrolled; "" when the user's
	// confirmed seed is asked for.
	EnrolSeed string    `json:"enrol_seed,omitempty"`
	ExpiresAt time.Time `json:"expires_at"`
}

// startTOTP begins the second step for user after its right password.
func (p *Provider) startTOTP(w http.ResponseWriter, r *http.Request, rq *request, a *authRequest, nonce string,
	m *model.AuthenticationMethod, user *store.Typed[model.UserSpec], lockKey string) {
	ctx := r.Context()
	step := &loginStep{AuthRequestID: a.r.ID, ServerID: rq.serverID, MethodID: m.ID, UserID: user.Meta.ID,
		Credential: directory.CredentialVersion(&user.Spec), LockKey: lockKey, ExpiresAt: p.now().UTC().Add(loginStepTTL)}
	if !user.Spec.TOTPConfirmed || user.Spec.TOTPSeed == "" {
		key, err := totp.Generate(totp.GenerateOpts{Issuer: totpIssuer(rq), AccountName: user.Spec.Email,
			Period: totpPeriod, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
		if err != nil {
			p.serverError(w, "generate a TOTP seed", err)
			return
		}
		if step.EnrolSeed, err = p.sealSeed(rq.tenantID, user.Meta.ID, key.Secret()); err != nil {
			p.serverError(w, "seal a TOTP seed", err)
			return
		}
	}
	secret, err := grants.NewSecret()
	if err != nil {
		p.serverError(w, "start the second step", err)
		return
	}
	raw, err := json.Marshal(step)
	if err != nil {
		p.serverError(w, "start the second step", err)
		return
	}
	if err := p.store.PutStateTTL(ctx, kindLoginSteps, rq.tenantID, grants.Hash(secret), raw, loginStepTTL); err != nil {
		p.serverError(w, "start the second step", err)
		return
	}
	p.renderTOTP(w, rq, a, nonce, secret, step, user, "", http.StatusOK)
}

// stepSubmit checks the code of a login step.
func (p *Provider) stepSubmit(w http.ResponseWriter, r *http.Request, rq *request, a *authRequest, nonce string) {
	ctx := r.Context()
	secret := r.PostForm.Get("login_step")
	step, err := p.loginStep(ctx, rq, a, secret)
	if err != nil {
		if errors.Is(err, errStepGone) {
			writeErrorPage(w, http.StatusBadRequest, "login_step: this sign-in step expired or is not this sign-in's; go back to the application and sign in again.")
			return
		}
		p.serverError(w, "read the login step", err)
		return
	}
	busyID := grants.Hash(secret)
	if created, err := p.store.PutStateIfAbsent(ctx, kindLoginStepBusy, rq.tenantID, busyID, json.RawMessage(`{}`), loginStepBusyTTL); err != nil {
		p.serverError(w, "check the login step", err)
		return
	} else if !created {
		w.Header().Set("Retry-After", "1")
		writeErrorPage(w, http.StatusTooManyRequests, "code: another code for this sign-in is being checked; try again in a moment.")
		return
	}
	defer func() {
		if err := p.store.DeleteState(context.WithoutCancel(ctx), kindLoginStepBusy, rq.tenantID, busyID); err != nil {
			p.log.Warn("oauth: free a login step (it expires)", "tenant", rq.tenantID, "error", err)
		}
	}()
	if until, locked, err := p.lockedUntil(ctx, rq.tenantID, step.LockKey); err != nil {
		p.serverError(w, "check the login lockout", err)
		return
	} else if locked {
		p.tooManyAttempts(w, until)
		return
	}
	user, err := p.tenantUser(ctx, rq.tenantID, step.UserID)
	switch {
	case errors.Is(err, errNoUser) || errors.Is(err, errUserInactive):
		p.dropStep(ctx, rq, secret)
		writeErrorPage(w, http.StatusForbidden, "This account is not active; ask your administrator.")
		return
	case err != nil:
		p.serverError(w, "read the user", err)
		return
	case subtle.ConstantTimeCompare([]byte(directory.CredentialVersion(&user.Spec)), []byte(step.Credential)) != 1:
		p.dropStep(ctx, rq, secret)
		writeErrorPage(w, http.StatusBadRequest, "This account's credentials changed during the sign-in; go back to the application and sign in again.")
		return
	}
	m := enabledMethod(rq.spec(), step.MethodID)
	if m == nil || m.Method != model.LoginPassword {
		p.dropStep(ctx, rq, secret)
		writeErrorPage(w, http.StatusBadRequest, "method: the sign-in's login method is no longer enabled; go back to the application and sign in again.")
		return
	}
	sealed := step.EnrolSeed
	if sealed == "" {
		sealed = user.Spec.TOTPSeed
	}
	seed, err := p.openSeed(rq.tenantID, user.Meta.ID, sealed)
	if err != nil {
		p.serverError(w, "open a TOTP seed", err)
		return
	}
	code := strings.Join(strings.Fields(r.PostForm.Get("code")), "")
	msg := ""
	if ok, _ := totp.ValidateCustom(code, seed, p.now(), totpOpts); !ok {
		msg = "The code is wrong; enter the code your authenticator app shows now."
	} else if first, err := p.useCode(ctx, rq.tenantID, user.Meta.ID, code); err != nil {
		p.serverError(w, "record a used TOTP code", err)
		return
	} else if !first {
		msg = "This code was used already; wait for the next one."
	}
	if msg != "" {
		until, locked, err := p.recordFailure(ctx, rq.tenantID, step.LockKey)
		switch {
		case err != nil:
			p.serverError(w, "count a failed login", err)
		case locked:
			p.dropStep(ctx, rq, secret)
			p.tooManyAttempts(w, until)
		default:
			p.renderTOTP(w, rq, a, nonce, secret, step, user, msg, http.StatusUnauthorized)
		}
		return
	}
	if step.EnrolSeed != "" {
		if err := p.confirmEnrolment(ctx, rq.tenantID, step); err != nil {
			if errors.Is(err, errCredentialChanged) || errors.Is(err, store.ErrNotFound) {
				p.dropStep(ctx, rq, secret)
				writeErrorPage(w, http.StatusBadRequest, "This account's credentials changed during the sign-in; go back to the application and sign in again.")
				return
			}
			p.serverError(w, "enrol the TOTP seed", err)
			return
		}
	}
	p.dropStep(ctx, rq, secret)
	p.clearFailures(ctx, rq.tenantID, step.LockKey)
	p.completeUserLogin(w, r, rq, a, user, step.MethodID, []string{"pwd", "otp"}, nil)
}

// errStepGone: no live login step of this auth request has the secret.
var errStepGone = errors.New("no such login step")

// loginStep reads the live step of secret for auth request a.
func (p *Provider) loginStep(ctx context.Context, rq *request, a *authRequest, secret string) (*loginStep, error) {
	e, err := p.store.GetState(ctx, kindLoginSteps, rq.tenantID, grants.Hash(secret))
	if errors.Is(err, store.ErrNotFound) {
		return nil, errStepGone
	}
	if err != nil {
		return nil, fmt.Errorf("read a login step: %w", err)
	}
	var s loginStep
	if err := json.Unmarshal(e.Value, &s); err != nil {
		return nil, fmt.Errorf("read a login step: %w", err)
	}
	if s.AuthRequestID != a.r.ID || s.ServerID != rq.serverID || !p.now().Before(s.ExpiresAt) {
		return nil, errStepGone
	}
	return &s, nil
}

// dropStep deletes a login step (a failure is logged: it expires).
func (p *Provider) dropStep(ctx context.Context, rq *request, secret string) {
	if err := p.store.DeleteState(ctx, kindLoginSteps, rq.tenantID, grants.Hash(secret)); err != nil {
		p.log.Warn("oauth: delete a login step (it expires)", "tenant", rq.tenantID, "error", err)
	}
}

// useCode records the use of a right code of user uid and reports
// whether it is its first use.
func (p *Provider) useCode(ctx context.Context, tid, uid, code string) (bool, error) {
	created, err := p.store.PutStateIfAbsent(ctx, kindTOTPUsed, tid, grants.Hash(uid+"\x00"+code), json.RawMessage(`{}`), totpUsedTTL)
	if err != nil {
		return false, fmt.Errorf("record a used TOTP code: %w", err)
	}
	return created, nil
}

// confirmEnrolment writes the step's seed to its user, confirmed, if the
// user's credentials are still those of the step.
func (p *Provider) confirmEnrolment(ctx context.Context, tid string, step *loginStep) error {
	_, err := p.store.Update(ctx, func(ctx context.Context, tx store.Tx) error {
		u, err := directory.Users.Get(ctx, tx, tid, step.UserID)
		if err != nil {
			return err
		}
		if directory.CredentialVersion(&u.Spec) != step.Credential {
			return errCredentialChanged
		}
		u.Spec.TOTPSeed, u.Spec.TOTPConfirmed = step.EnrolSeed, true
		return directory.Users.Update(ctx, tx, u, u.Meta.Revision)
	})
	return err
}

// errNoBox: the provider was built without Options.Box.
var errNoBox = errors.New("oauth: no secret box to seal TOTP seeds (Options.Box)")

// sealSeed seals a base32 TOTP secret for user uid of tenant tid.
func (p *Provider) sealSeed(tid, uid, secret string) (string, error) {
	if p.box == nil {
		return "", errNoBox
	}
	b, err := p.box.Seal([]byte(secret), model.TOTPSealAAD(tid, uid))
	if err != nil {
		return "", fmt.Errorf("seal a TOTP seed: %w", err)
	}
	return base64.StdEncoding.EncodeToString(b), nil
}

// openSeed opens a sealed TOTP secret of user uid of tenant tid.
func (p *Provider) openSeed(tid, uid, sealed string) (string, error) {
	if p.box == nil {
		return "", errNoBox
	}
	b, err := base64.StdEncoding.DecodeString(sealed)
	if err != nil {
		return "", fmt.Errorf("decode a sealed TOTP seed: %w", err)
	}
	secret, err := p.box.Open(b, model.TOTPSealAAD(tid, uid))
	if err != nil {
		return "", fmt.Errorf("open a TOTP seed: %w", err)
	}
	return string(secret), nil
}

// totpIssuer is the issuer label of enrolments: the tenant's name.
func totpIssuer(rq *request) string {
	if n := rq.cfg.tenant.Spec.Name; n != "" {
		return n
	}
	return rq.tenantID
}

type totpView struct {
	Action    string
	RequestID string
	CSRF      string
	Step      string
	Client    string
	Error     string
	// Enrol: the seed being enrolled, as a URI and as text.
	Enrol  bool
	URI    string
	Secret string
}

// renderTOTP shows the step form (with the seed when enrolling).
func (p *Provider) renderTOTP(w http.ResponseWriter, rq *request, a *authRequest, nonce, secret string, step *loginStep,
	user *store.Typed[model.UserSpec], msg string, status int) {
	view := totpView{Action: rq.issuer + pathLogin, RequestID: a.r.ID, CSRF: p.csrfToken(a.r.ID, nonce), Step: secret,
		Client: clientLabel(a), Error: msg}
	if step.EnrolSeed != "" {
		seed, err := p.openSeed(rq.tenantID, user.Meta.ID, step.EnrolSeed)
		if err != nil {
			p.serverError(w, "open a TOTP seed", err)
			return
		}
		raw, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(seed)
		if err != nil {
			p.serverError(w, "decode a TOTP seed", err)
			return
		}
		key, err := totp.Generate(totp.GenerateOpts{Issuer: totpIssuer(rq), AccountName: user.Spec.Email, Secret: raw,
			Period: totpPeriod, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
		if err != nil {
			p.serverError(w, "describe a TOTP seed", err)
			return
		}
		view.Enrol, view.URI, view.Secret = true, key.URL(), seed
	}
	p.writeFormPage(w, status, totpTemplate, view, "show the code form", a.r.RedirectURI)
}

var totpTemplate = template.Must(template.New("totp").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>` + pageStyle + `</style></head><body>
<h1>Sign in to {{.Client}}</h1>
{{if .Enrol}}<p>Add this account to your authenticator app, then enter the code it shows.</p>
<p>Setup URI: <code id="totp-uri">{{.URI}}</code></p>
<p>Or enter this key by hand: <code id="totp-secret">{{.Secret}}</code></p>
{{else}}<p>Enter the code your authenticator app shows.</p>{{end}}
{{if .Error}}<p class="error" role="alert">{{.Error}}</p>{{end}}
<form method="post" action="{{.Action}}">
<input type="hidden" name="auth_request" value="{{.RequestID}}">
<input type="hidden" name="csrf_token" value="{{.CSRF}}">
<input type="hidden" name="login_step" value="{{.Step}}">
<label for="code">Code</label>
<input id="code" name="code" inputmode="numeric" autocomplete="one-time-code" pattern="[0-9 ]*" required autofocus>
<button type="submit">Continue</button>
</form>
</body></html>
`))
