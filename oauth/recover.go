package oauth

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"time"
	"unicode/utf8"

	"github.com/gatehouse-dev/gatehouse/directory"
	"github.com/gatehouse-dev/gatehouse/internal/passwords"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/oauth/grants"
	"github.com/gatehouse-dev/gatehouse/store"
)

// Recovery links (POST /api/admin/{tid}/users/{uid}/recover makes them,
// package directory keeps them): {public_url}/{tid}/default/login/
// recover/{key}. GET shows a set-password form while the key is valid;
// POST checks the new password (a bad one changes nothing and keeps the
// key), consumes the key (once, atomically: directory.TakeRecovery),
// sets the password (argon2id), clears the TOTP enrolment (the next
// login enrols again when the tenant requires TOTP), advances the
// credential epoch (every session and refresh of the user ends), and
// revokes the user's access tokens at every server of the tenant (a
// not-before, which gateways enforce offline). A used, expired or
// unknown key is 410. Only the tenant's default server serves the link.
const pathRecover = directory.RecoveryPathPrefix

// Bounds of a new password (the admin API's).
const (
	minUserPassword = 8
	maxUserPassword = 256
)

// recoverPage serves GET and POST …/login/recover/{key}.
func (p *Provider) recoverPage(w http.ResponseWriter, r *http.Request, rq *request, key string) {
	if rq.serverID != directory.RecoveryServerID {
		writeOAuthError(w, http.StatusNotFound, "invalid_request", "path: recovery links are served by the tenant's "+directory.RecoveryServerID+" server")
		return
	}
	w.Header().Set("Referrer-Policy", "no-referrer")
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		if _, ok := p.liveRecovery(w, r, rq, key); ok {
			p.renderRecover(w, rq, key, "", http.StatusOK)
		}
	case http.MethodPost:
		p.recoverSubmit(w, r, rq, key)
	default:
		writeErrorPage(w, http.StatusMethodNotAllowed, "The recovery page takes GET and POST.")
	}
}

// recoveryGone answers a key that is not (or no longer) usable.
func recoveryGone(w http.ResponseWriter) {
	writeErrorPage(w, http.StatusGone, "This recovery link was used already or has expired; ask your administrator for a new one.")
}

// liveRecovery is the pending recovery of key whose user still exists;
// otherwise it answers (410, or 500) and reports false.
func (p *Provider) liveRecovery(w http.ResponseWriter, r *http.Request, rq *request, key string) (*directory.Recovery, bool) {
	rec, err := directory.LookupRecovery(r.Context(), p.store, rq.tenantID, key)
	switch {
	case errors.Is(err, store.ErrNotFound):
		recoveryGone(w)
		return nil, false
	case err != nil:
		p.serverError(w, "read the recovery", err)
		return nil, false
	}
	u, err := directory.Users.Get(r.Context(), p.store, rq.tenantID, rec.UserID)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			recoveryGone(w)
		} else {
			p.serverError(w, "read the user", err)
		}
		return nil, false
	}
	if !recoveryStillFor(rec, u) {
		recoveryGone(w)
		return nil, false
	}
	return rec, true
}

// recoverSubmit sets the new password of a recovery.
func (p *Provider) recoverSubmit(w http.ResponseWriter, r *http.Request, rq *request, key string) {
	ctx := r.Context()
	r.Body = http.MaxBytesReader(w, r.Body, maxLoginFormBytes)
	if err := r.ParseForm(); err != nil {
		writeErrorPage(w, http.StatusBadRequest, "body: the form could not be read (at most 16 KiB).")
		return
	}
	if _, ok := p.liveRecovery(w, r, rq, key); !ok {
		return
	}
	password, confirm := r.PostForm.Get("password"), r.PostForm.Get("password_confirm")
	switch n := utf8.RuneCountInString(password); {
	case !utf8.ValidString(password) || n < minUserPassword || n > maxUserPassword:
		p.renderRecover(w, rq, key, fmt.Sprintf("password: must be %d to %d characters.", minUserPassword, maxUserPassword), http.StatusBadRequest)
		return
	case password != confirm:
		p.renderRecover(w, rq, key, "password_confirm: the two passwords differ.", http.StatusBadRequest)
		return
	}
	if !p.acquireVerification(ctx) {
		w.Header().Set("Retry-After", "2")
		writeErrorPage(w, http.StatusServiceUnavailable, "password: too many passwords are being checked at once; try again in a moment.")
		return
	}
	hash, err := passwords.Hash(password)
	<-p.verifySlots
	if err != nil {
		p.serverError(w, "hash the password", err)
		return
	}
	rec, err := directory.TakeRecovery(ctx, p.store, rq.tenantID, key)
	switch {
	case errors.Is(err, store.ErrNotFound):
		recoveryGone(w)
		return
	case err != nil:
		p.serverError(w, "take the recovery", err)
		return
	}
	_, err = p.store.Update(ctx, func(ctx context.Context, tx store.Tx) error {
		cur, err := directory.Users.Get(ctx, tx, rq.tenantID, rec.UserID)
		if err != nil {
			return err
		}
		if !recoveryStillFor(rec, cur) {
			return store.ErrNotFound
		}
		u, err := directory.ResetCredentials(ctx, tx, rq.tenantID, rec.UserID, hash)
		if err != nil {
			return err
		}
		return p.revokeUserTokens(ctx, tx, rq.tenantID, u.Meta.ID)
	})
	switch {
	case errors.Is(err, store.ErrNotFound):
		recoveryGone(w)
		return
	case err != nil:
		p.serverError(w, "set the password", err)
		return
	}
	p.log.Info("oauth: a user set a password with a recovery link", "tenant", rq.tenantID, "user", rec.UserID)
	p.writeFormPage(w, http.StatusOK, recoverDoneTemplate, nil, "show the recovery's result")
}

// revokeUserTokens revokes, in tx, every token tenant user uid holds
// from the tenant's servers: a not-before of now for its subject at
// each issuer, until no token issued now is valid.
func (p *Provider) revokeUserTokens(ctx context.Context, tx store.Tx, tid, uid string) error {
	servers, err := serverRepo.ListAll(ctx, tx, store.Query{TenantID: tid})
	if err != nil {
		return fmt.Errorf("list the servers of tenant %q: %w", tid, err)
	}
	now := p.now()
	for _, s := range servers {
		until := now.Add(max(s.Spec.AccessTokenTTL.D(), s.Spec.IDTokenTTL.D(), s.Spec.RefreshTokenTTL.D(), time.Minute))
		if err := grants.RevokeSubject(ctx, tx, tid, p.issuerOf(tid, s.Meta.ID), uid, "", now, until); err != nil {
			return fmt.Errorf("revoke the tokens of user %q: %w", uid, err)
		}
	}
	return nil
}

type recoverView struct {
	Action string
	Error  string
}

// renderRecover shows the set-password form of a recovery.
func (p *Provider) renderRecover(w http.ResponseWriter, rq *request, key, msg string, status int) {
	p.writeFormPage(w, status, recoverTemplate, recoverView{Action: rq.issuer + pathRecover + key, Error: msg}, "show the recovery form")
}

var recoverTemplate = template.Must(template.New("recover").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Set a new password</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>` + pageStyle + `</style></head><body>
<h1>Set a new password</h1>
{{if .Error}}<p class="error" role="alert">{{.Error}}</p>{{end}}
<form method="post" action="{{.Action}}">
<label for="password">New password</label>
<input id="password" name="password" type="password" autocomplete="new-password" minlength="8" maxlength="256" required autofocus>
<label for="password_confirm">New password again</label>
<input id="password_confirm" name="password_confirm" type="password" autocomplete="new-password" minlength="8" maxlength="256" required>
<button type="submit">Set the password</button>
</form>
</body></html>
`))

var recoverDoneTemplate = template.Must(template.New("recover-done").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Password set</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>` + pageStyle + `</style></head><body>
<h1>Your password is set</h1>
<p>Go back to the application and sign in with it.</p>
</body></html>
`))

// recoveryStillFor reports whether a recovery still belongs to u: the
// user it was made for (not a user created later under the same id, or
// restored since), whose credentials have not changed since (a password
// set or an MFA reset ends the links made before it).
func recoveryStillFor(rec *directory.Recovery, u *store.Typed[model.UserSpec]) bool {
	if u.Meta.CreatedAt.After(rec.CreatedAt) {
		return false
	}
	return rec.CredentialVersion == "" || subtle.ConstantTimeCompare([]byte(rec.CredentialVersion), []byte(directory.CredentialVersion(&u.Spec))) == 1
}
